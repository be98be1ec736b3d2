//! Overview: one row per tree or inode, sortable and filterable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use super::{dur, rate, scroll_to};
use crate::views::tui::app::{AppState, SortCol, overview_rows};
use crate::views::tui::snapshot::Snapshot;

pub fn render(frame: &mut Frame, area: Rect, snap: &Snapshot, app: &AppState) {
    let rows = overview_rows(snap, app);
    let mut title = format!(" Overview: {} files ", rows.len());
    if !app.filter.is_empty() {
        title = format!(
            " Overview: {} of {} files match \"{}\" ",
            rows.len(),
            snap.files.len(),
            app.filter
        );
    }
    if rows.iter().any(|r| r.in_flight > 0) {
        title.push_str("(HELD +N: DIO, punch or truncate in flight) ");
    }
    let block = Block::bordered().title(title);
    if rows.is_empty() {
        let text = if snap.files.is_empty() {
            vec![
                Line::raw("No range lock or file operation seen yet."),
                Line::raw(format!("{} events so far.", snap.status.events)),
            ]
        } else {
            vec![Line::raw("No file matches the filter (Esc clears it).")]
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let header = Row::new(SortCol::ALL.iter().map(|c| {
        let mut h = c.header().to_string();
        if *c == app.sort {
            h.push('▼');
        }
        let style = if *c == app.sort {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        Cell::from(h).style(style)
    }))
    .style(Style::new().fg(Color::Cyan));
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(8, 48) as u16;
    // Border and header take three rows.
    let height = area.height.saturating_sub(3) as usize;
    let sel = app.overview_sel.min(rows.len() - 1);
    let first = scroll_to(sel, height);
    let body = rows
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, r)| {
            let w = r.wait.as_ref();
            let mut held = r.held.to_string();
            if r.in_flight > 0 {
                held = format!("{held}+{}", r.in_flight);
            }
            let row = Row::new(vec![
                Cell::from(tail(&r.name, name_w as usize)),
                Cell::from(held),
                Cell::from(r.waiters.to_string()).style(if r.waiters > 0 {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                }),
                Cell::from(rate(r.cont_rate)),
                Cell::from(r.contentions.to_string()),
                Cell::from(dur(w.map(|s| s.p50))),
                Cell::from(dur(w.map(|s| s.p99))),
                Cell::from(dur(w.map(|s| s.max))),
                Cell::from(dur(r.hold_max)),
            ]);
            if i == sel {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        });
    let widths = [
        Constraint::Length(name_w),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    frame.render_widget(Table::new(body, widths).header(header).block(block), area);
}

/// The end of `name` in `width` columns: a path's last components and the
/// `(dev:ino)` after them matter most.
fn tail(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width {
        return name.to_string();
    }
    let keep = width.saturating_sub(1);
    let mut out = String::from("…");
    out.extend(name.chars().skip(n - keep));
    out
}
