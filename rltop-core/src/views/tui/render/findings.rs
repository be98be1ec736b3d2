//! Findings: newest first; Enter opens the full report (lockdep-shaped for
//! ordering problems and deadlocks) with its evidence events.

use std::collections::HashMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{scroll_to, secs};
use crate::analysis::{Severity, Verdict};
use crate::views::findings as report;
use crate::views::tui::app::AppState;
use crate::views::tui::snapshot::{FindingRow, Snapshot};

pub fn render(frame: &mut Frame, area: Rect, snap: &Snapshot, app: &AppState) {
    let f = &snap.findings;
    let certain = f
        .iter()
        .filter(|r| r.finding.certain && r.finding.severity == Severity::Error)
        .count();
    let block = Block::bordered().title(format!(
        " Findings: {} ({certain} certain errors), newest first ",
        f.len()
    ));
    if f.is_empty() {
        frame.render_widget(
            Paragraph::new("No findings: every rule holds so far.").block(block),
            area,
        );
        return;
    }
    let sel = app.findings_sel.min(f.len() - 1);
    if app.detail {
        let text = detail(&f[sel], snap.status.first_ts);
        let title = format!(
            " Finding {} of {}: {} (Esc: back) ",
            sel + 1,
            f.len(),
            f[sel].finding.kind.as_str()
        );
        frame.render_widget(
            Paragraph::new(text)
                .block(Block::bordered().title(title))
                .scroll((app.detail_scroll, 0)),
            area,
        );
        return;
    }
    let height = area.height.saturating_sub(3) as usize;
    let first = scroll_to(sel, height);
    let rows = f.iter().enumerate().skip(first).take(height).map(|(i, r)| {
        let x = &r.finding;
        let (sev, color) = match x.severity {
            Severity::Error => ("error", Color::Red),
            Severity::Warning => ("warning", Color::Yellow),
        };
        let mut row = Row::new(vec![
            Cell::from(secs(x.ts.saturating_sub(snap.status.first_ts))),
            Cell::from(sev).style(Style::new().fg(color)),
            Cell::from(if x.certain { "yes" } else { "no" }),
            Cell::from(x.kind.as_str()),
            Cell::from(if x.repeats > 0 {
                format!("{} (+{} more)", x.message, x.repeats)
            } else {
                x.message.clone()
            }),
        ]);
        if i == sel {
            row = row.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        row
    });
    let header = Row::new(["TIME", "SEVERITY", "CERTAIN", "KIND", "WHAT"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let widths = [
        Constraint::Length(16),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(20),
        Constraint::Min(20),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// The full text report of one finding, as `rltop check` prints it.
pub fn detail(r: &FindingRow, first_ts: u64) -> String {
    let v = Verdict {
        first_ts,
        findings: vec![r.finding.clone()],
        ..Verdict::default()
    };
    let lines: HashMap<u64, String> = r
        .evidence
        .iter()
        .filter_map(|(i, t)| Some((*i, t.clone()?)))
        .collect();
    let mut text = report::text(&v, &lines);
    // Drop the verdict line: it counts this one finding, not the trace.
    if let Some(end) = text.trim_end().rfind('\n') {
        text.truncate(end);
    }
    text
}
