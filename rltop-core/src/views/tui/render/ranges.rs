//! Ranges: one file's page space as a map (held ranges coloured by
//! operation, shaded by mode; waiters on their own line against the pages
//! they want), then the list of ranges with holder, state and age.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{op_color, scroll_to};
use crate::events::Mode;
use crate::model::Op;
use crate::views::report::fmt_ns;
use crate::views::tui::app::{AppState, extent, ranges_file, span};
use crate::views::tui::snapshot::{FileRow, RangeState, Snapshot, pages};

/// Map glyphs: exclusive or write hold, read hold, operation in flight
/// without a range lock, pages a waiter wants.
const EXCL: char = '█';
const READ: char = '▓';
const FLIGHT: char = '▒';
const WANT: char = '░';

pub fn render(frame: &mut Frame, area: Rect, snap: &Snapshot, app: &AppState) {
    let Some(file) = ranges_file(snap, app) else {
        let msg = if app.file.is_some() {
            "This file has no ranges any more (Esc: back to the Overview)."
        } else {
            "No file to show yet: nothing locked or in flight."
        };
        frame.render_widget(
            Paragraph::new(msg).block(Block::bordered().title(" Ranges ")),
            area,
        );
        return;
    };
    let [map, list] = Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(area);
    render_map(frame, map, file, app);
    render_list(frame, list, snap, file, app);
}

/// The column range `[c0, c1]` of pages `[s, l]` on a map of `w` columns
/// showing pages `[off, off + span)`, or `None` when not in view.
fn cols(s: u64, l: u64, off: u64, span: u64, w: usize) -> Option<(usize, usize)> {
    let end = off.saturating_add(span - 1);
    if l < off || s > end {
        return None;
    }
    let (s, l) = (s.max(off) - off, l.min(end) - off);
    let (w128, span128) = (w as u128, span as u128);
    let c0 = (s as u128 * w128 / span128) as usize;
    // When zoomed past one page per column a page spans several columns.
    let a = (l as u128 * w128 / span128) as usize;
    let b = ((l as u128 + 1) * w128 / span128) as usize;
    let c1 = a.max(b.saturating_sub(1)).max(c0);
    Some((c0.min(w - 1), c1.min(w - 1)))
}

fn render_map(frame: &mut Frame, area: Rect, file: &FileRow, app: &AppState) {
    let ext = extent(file);
    let span = span(ext, app.zoom);
    let off = app.offset.min(ext.saturating_sub(span));
    let inner_w = area.width.saturating_sub(2) as usize;
    const LABEL: usize = 6;
    let w = inner_w.saturating_sub(LABEL).max(1);
    // Per column: the strongest hold (rank, op, glyph), and a wanted op.
    let mut held: Vec<Option<(u8, Op, char)>> = vec![None; w];
    let mut want: Vec<Option<Op>> = vec![None; w];
    for r in &file.ranges {
        // A page-cache lock covers the whole file: it is in the list below,
        // not painted over every range of the map.
        if r.file_lock.is_some() {
            continue;
        }
        let Some((c0, c1)) = cols(r.start, r.last, off, span, w) else {
            continue;
        };
        let (rank, glyph) = match (r.state, r.mode) {
            (RangeState::Waiting, _) => {
                for c in &mut want[c0..=c1] {
                    c.get_or_insert(r.op);
                }
                continue;
            }
            (RangeState::InFlight, _) => (1, FLIGHT),
            (RangeState::Held, Some(Mode::Read)) => (2, READ),
            (RangeState::Held, _) => (3, EXCL),
        };
        for c in &mut held[c0..=c1] {
            if c.is_none_or(|(k, _, _)| k < rank) {
                *c = Some((rank, r.op, glyph));
            }
        }
    }
    let cell_line = |label: &str, cells: Vec<Span<'static>>| {
        let mut v = vec![Span::raw(format!("{label:<LABEL$}"))];
        v.extend(cells);
        Line::from(v)
    };
    let held_spans = held
        .iter()
        .map(|c| match c {
            Some((_, op, g)) => Span::styled(g.to_string(), Style::new().fg(op_color(*op))),
            None => Span::styled("·", Style::new().add_modifier(Modifier::DIM)),
        })
        .collect();
    let want_spans = want
        .iter()
        .map(|c| match c {
            Some(op) => Span::styled(WANT.to_string(), Style::new().fg(op_color(*op))),
            None => Span::raw(" "),
        })
        .collect();
    let last = off.saturating_add(span - 1);
    let left = off.to_string();
    let right = last.to_string();
    let gap = w.saturating_sub(left.len() + right.len());
    let axis = format!("{:<LABEL$}{left}{}{right}", "page", " ".repeat(gap));
    let per_col = span as f64 / w as f64;
    let scale = if per_col >= 1.0 {
        format!("{per_col:.1} pages per column")
    } else {
        format!("{:.1} columns per page", 1.0 / per_col)
    };
    let mut legend = vec![Span::raw(format!(
        "{EXCL} excl/write  {READ} read  {FLIGHT} in flight  {WANT} wanted   "
    ))];
    for op in Op::ALL {
        legend.push(Span::styled(op.as_str(), Style::new().fg(op_color(op))));
        legend.push(Span::raw(" "));
    }
    if file.ranges.is_empty() {
        let title = format!(" Ranges of {} ", file.name);
        let msg = "Nothing held, waiting or in flight on this file now.";
        frame.render_widget(
            Paragraph::new(msg).block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let lines = vec![
        cell_line("held", held_spans),
        cell_line("wait", want_spans),
        Line::raw(selected_marks(file, app, off, span, w)),
        Line::raw(axis),
        Line::from(legend),
        Line::raw(format!(
            "pages [0, {ext}) of the ranges seen, zoom {}x, {scale}",
            1u64 << app.zoom.min(63)
        )),
    ];
    let title = format!(
        " Ranges of {}: {} held, {} waiting, {} in flight ",
        file.name, file.held, file.waiters, file.in_flight
    );
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

/// `^` under the pages of the range selected in the list (when in view).
fn selected_marks(file: &FileRow, app: &AppState, off: u64, span: u64, w: usize) -> String {
    const LABEL: usize = 6;
    let mut line = format!("{:<LABEL$}", "sel");
    let sel = app.ranges_sel.min(file.ranges.len().saturating_sub(1));
    match file
        .ranges
        .get(sel)
        .and_then(|r| cols(r.start, r.last, off, span, w))
    {
        Some((c0, c1)) => {
            line.push_str(&" ".repeat(c0));
            line.push_str(&"^".repeat(c1 - c0 + 1));
        }
        None => line.push_str("(the selected range is outside the view)"),
    }
    line
}

fn render_list(frame: &mut Frame, area: Rect, snap: &Snapshot, file: &FileRow, app: &AppState) {
    let now = snap.status.now + snap.status.first_ts;
    let height = area.height.saturating_sub(3) as usize;
    let sel = app.ranges_sel.min(file.ranges.len().saturating_sub(1));
    let first = scroll_to(sel, height);
    let rows = file
        .ranges
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, r)| {
            let state = match r.state {
                RangeState::Held => "held",
                RangeState::Waiting => "waiting",
                RangeState::InFlight => "in flight",
            };
            let task = match &r.comm {
                Some(c) => format!("{c}/{}", r.tid),
                None => r.tid.to_string(),
            };
            let blockers = if r.blockers.is_empty() {
                String::new()
            } else {
                r.blockers
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let row = Row::new(vec![
                Cell::from(state),
                Cell::from(pages(r.start, r.last)),
                Cell::from(r.mode.map_or("-", Mode::as_str)),
                Cell::from(r.op.as_str()).style(Style::new().fg(op_color(r.op))),
                Cell::from(task),
                Cell::from(fmt_ns(now.saturating_sub(r.since))),
                Cell::from(match r.file_lock {
                    // `*`: the hold is not traced itself (see the findings'
                    // and report's notes).
                    Some((class, seen)) => format!(
                        "{}{}",
                        class.as_str(),
                        if seen == crate::model::Seen::Exact {
                            ""
                        } else {
                            "*"
                        }
                    ),
                    None => r.lock.map_or_else(|| "-".into(), |l| format!("{l:#x}")),
                }),
                Cell::from(blockers),
            ]);
            if i == sel {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        });
    let header = Row::new([
        "STATE",
        "PAGES",
        "MODE",
        "OP",
        "TASK",
        "SINCE",
        "LOCK",
        "WAITS FOR",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Length(10),
        Constraint::Length(20),
        Constraint::Min(10),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(format!(" {} ranges ", file.ranges.len()))),
        area,
    );
}
