//! Wait chains: every waiter, what blocks it, and what those wait for in
//! turn (range locks and mmap_lock), as a tree; cycles in red.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::scroll_to;
use crate::views::report::fmt_ns;
use crate::views::tui::app::AppState;
use crate::views::tui::snapshot::{Snapshot, WaitNode};

pub fn render(frame: &mut Frame, area: Rect, snap: &Snapshot, app: &AppState) {
    let waits = &snap.waits;
    let roots = waits.iter().filter(|n| n.depth == 0).count();
    let cycles = waits.iter().filter(|n| n.cycle).count();
    let mut title = format!(" Wait chains: {roots} waiting ");
    if cycles > 0 {
        title = format!(" Wait chains: {roots} waiting, {cycles} cycle(s): DEADLOCK ");
    }
    let block = Block::bordered().title(title);
    if waits.is_empty() {
        frame.render_widget(Paragraph::new("Nobody waits.").block(block), area);
        return;
    }
    let now = snap.status.now + snap.status.first_ts;
    let height = area.height.saturating_sub(2) as usize;
    let sel = app.waits_sel.min(waits.len() - 1);
    let first = scroll_to(sel, height);
    let lines: Vec<Line> = waits
        .iter()
        .enumerate()
        .skip(first)
        .take(height)
        .map(|(i, n)| {
            let mut l = line(n, now);
            if i == sel {
                l = l.patch_style(Style::new().add_modifier(Modifier::REVERSED));
            }
            l
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn line(n: &WaitNode, now: u64) -> Line<'static> {
    let mut spans = Vec::new();
    let indent = "   ".repeat(n.depth.saturating_sub(1));
    if n.depth > 0 {
        spans.push(Span::raw(format!("{indent}└─ ")));
    }
    let task = match &n.comm {
        Some(c) => format!("{c}/{}", n.tid),
        None => n.tid.to_string(),
    };
    let bold = Style::new().add_modifier(Modifier::BOLD);
    if n.cycle {
        let red = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
        spans.push(Span::styled(format!("⟲ {task}"), red));
        if let Some(o) = &n.owns {
            let verb = if n.held { "holds" } else { "queued first for" };
            spans.push(Span::styled(format!(" {verb} {o}"), red));
        }
        spans.push(Span::styled("  cycle: deadlock", red));
        return Line::from(spans);
    }
    spans.push(Span::styled(task, bold));
    if let Some(o) = &n.owns {
        let verb = if n.held { "holds" } else { "queued first for" };
        spans.push(Span::raw(format!(" {verb} {o}")));
        if n.dio {
            spans.push(Span::styled(
                " (DIO: completion releases it)",
                Style::new().fg(Color::Cyan),
            ));
        }
    }
    if let Some(w) = &n.waits {
        spans.push(Span::styled(
            " → waits for ",
            Style::new().fg(Color::Yellow),
        ));
        spans.push(Span::raw(w.clone()));
        if let Some(s) = n.since {
            spans.push(Span::raw(format!(" for {}", fmt_ns(now.saturating_sub(s)))));
        }
    }
    Line::from(spans)
}
