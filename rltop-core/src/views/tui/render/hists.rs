//! Histograms: log2 wait and hold times per operation, as bpftrace prints
//! `hist()`: `[256, 512)  12 |@@@@      |`, bounds in ns with K/M/G. Unlike
//! bpftrace, a bucket that is not empty always gets at least one `@`.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::dur;
use crate::views::tui::app::AppState;
use crate::views::tui::snapshot::{HistPanel, Snapshot};

/// Width of the `@` bar.
const BAR: usize = 40;

pub fn render(frame: &mut Frame, area: Rect, snap: &Snapshot, app: &AppState) {
    let block = Block::bordered().title(format!(
        " Histograms: {} (ns, log2; ↑↓ scroll) ",
        snap.hists.len()
    ));
    if snap.hists.is_empty() {
        frame.render_widget(
            Paragraph::new("No wait or hold completed yet.").block(block),
            area,
        );
        return;
    }
    let first = app.hists_scroll.min(snap.hists.len() - 1);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Wide screens get two columns, filled one after the other.
    let ncols: u16 = if inner.width >= 2 * COL_W { 2 } else { 1 };
    let w = inner.width / ncols;
    let mut panels = snap.hists[first..].iter().map(panel).peekable();
    for c in 0..ncols {
        let mut lines: Vec<Line> = Vec::new();
        while let Some(p) = panels.peek() {
            // A panel that does not fit waits for the next column (unless
            // the column is empty: then it is cut).
            if !lines.is_empty() && lines.len() + p.len() > inner.height as usize {
                break;
            }
            lines.extend(panels.next().into_iter().flatten());
            lines.push(Line::raw(""));
        }
        let col = Rect {
            x: inner.x + c * w,
            y: inner.y,
            width: w,
            height: inner.height,
        };
        frame.render_widget(Paragraph::new(lines), col);
    }
}

/// Width of one column of histograms.
const COL_W: u16 = 72;

/// bpftrace's bound labels: 1K = 1024.
pub fn bound(v: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (u, s) in UNITS {
        if v >= u && v.is_multiple_of(u) {
            return format!("{}{s}", v / u);
        }
    }
    v.to_string()
}

/// One histogram as text lines.
pub fn panel(p: &HistPanel) -> Vec<Line<'static>> {
    let mut out = vec![];
    let head = match &p.summary {
        Some(s) => format!(
            "{}: count {}, p50 {}, p99 {}, max {}",
            p.title,
            s.count,
            dur(Some(s.p50)),
            dur(Some(s.p99)),
            dur(Some(s.max))
        ),
        None => p.title.clone(),
    };
    out.push(Line::styled(
        head,
        Style::new().add_modifier(Modifier::BOLD),
    ));
    let max = p.buckets.iter().map(|b| b.2).max().unwrap_or(0).max(1);
    let labels: Vec<String> = p
        .buckets
        .iter()
        .map(|&(lo, hi, _)| {
            let hi = if hi == u64::MAX {
                "...".into()
            } else {
                bound(hi)
            };
            format!("[{}, {hi})", bound(lo))
        })
        .collect();
    let lw = labels.iter().map(String::len).max().unwrap_or(0);
    let cw = p
        .buckets
        .iter()
        .map(|b| b.2.to_string().len())
        .max()
        .unwrap_or(1);
    for (l, &(_, _, n)) in labels.iter().zip(&p.buckets) {
        let bar = (n as u128 * BAR as u128).div_ceil(max as u128) as usize;
        out.push(Line::raw(format!(
            "{l:<lw$} {n:>cw$} |{}{}|",
            "@".repeat(bar),
            " ".repeat(BAR - bar)
        )));
    }
    out
}
