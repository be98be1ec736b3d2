//! Drawing: pure functions of a [`Snapshot`] and the [`AppState`] into a
//! ratatui frame. One module per view; this one draws the frame around
//! them: the tabs, the status line, the keys, help.

mod findings;
mod hists;
mod overview;
mod ranges;
mod waits;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::app::{AppState, Input, View};
use super::snapshot::Snapshot;
use crate::model::Op;

/// Draws one frame.
pub fn render(frame: &mut Frame, snap: &Snapshot, app: &AppState) {
    let [tabs, body, status, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(tab_line(snap, app), tabs);
    match app.view {
        View::Overview => overview::render(frame, body, snap, app),
        View::Ranges => ranges::render(frame, body, snap, app),
        View::Waits => waits::render(frame, body, snap, app),
        View::Findings => findings::render(frame, body, snap, app),
        View::Hists => hists::render(frame, body, snap, app),
    }
    frame.render_widget(status_line(snap), status);
    frame.render_widget(key_line(app), keys);
    if app.help {
        help(frame, body, app);
    }
}

fn tab_line(snap: &Snapshot, app: &AppState) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " rltop ",
        Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    for (i, v) in View::ALL.iter().enumerate() {
        let mut title = format!(" {} {} ", i + 1, v.title());
        if *v == View::Findings && !snap.findings.is_empty() {
            title = format!(" {} {} ({}) ", i + 1, v.title(), snap.findings.len());
        }
        let style = if *v == app.view {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else if *v == View::Findings && !snap.findings.is_empty() {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(title, style));
    }
    Line::from(spans)
}

/// `12.345678` seconds.
pub(crate) fn secs(ns: u64) -> String {
    format!("{}.{:06}s", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

/// A rate with a k/M suffix.
pub(crate) fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else if r >= 10.0 || r == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn status_line(snap: &Snapshot) -> Line<'static> {
    let s = &snap.status;
    let sep = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
    let mut spans = Vec::new();
    if let Some(p) = s.play {
        let (sym, what) = if p.finished {
            ("■", "end")
        } else if p.paused {
            ("⏸", "paused")
        } else {
            ("▶", "playing")
        };
        spans.push(Span::styled(
            format!("{sym} {what} {}x", fmt_speed(p.speed)),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        spans.push(sep());
    }
    spans.push(Span::raw(s.source.clone()));
    spans.push(sep());
    let mut t = format!("t {}", secs(s.now));
    if let Some(end) = s.end {
        t.push_str(&format!(" / {}", secs(end)));
    }
    spans.push(Span::raw(t));
    spans.push(sep());
    spans.push(Span::raw(format!(
        "{} events, {} ev/s",
        s.events,
        rate(s.rate)
    )));
    spans.push(sep());
    // Lost events are never hidden: shown at zero too, red when not.
    let lost_style = if s.lost > 0 {
        Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    spans.push(Span::styled(format!("lost {}", s.lost), lost_style));
    // Of those, the probes that missed hits in the kernel (two at most
    // here; `report` lists them all).
    if !s.missed.is_empty() {
        let mut by: Vec<String> = s
            .missed
            .iter()
            .take(2)
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        if s.missed.len() > 2 {
            by.push(format!("+{} probes", s.missed.len() - 2));
        }
        spans.push(Span::styled(
            format!(" (missed: {})", by.join(", ")),
            lost_style,
        ));
    }
    if let Some((a, n)) = s.probes {
        spans.push(sep());
        spans.push(Span::raw(format!("probes {a}/{n}")));
    }
    spans.push(sep());
    spans.push(Span::raw(format!("profile {}", s.profile)));
    if let Some(f) = s.flavour {
        spans.push(sep());
        spans.push(Span::raw(f));
    }
    if let Some(sc) = &s.scope {
        spans.push(sep());
        spans.push(Span::raw(sc.clone()));
    }
    if let Some(n) = &s.note {
        spans.push(sep());
        spans.push(Span::styled(n.clone(), Style::new().fg(Color::Yellow)));
    }
    Line::from(spans)
}

fn fmt_speed(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').to_string()
    }
}

fn key_line(app: &AppState) -> Line<'static> {
    let key = |k: &str| Span::styled(k.to_string(), Style::new().fg(Color::Black).bg(Color::Cyan));
    let mut spans = Vec::new();
    let mut push = |k: &str, what: &str| {
        spans.push(key(k));
        spans.push(Span::raw(format!(" {what}  ")));
    };
    match app.input {
        Input::Filter => {
            push("Enter", "keep filter");
            push("Esc", "clear");
            return Line::from(spans).into_iter_spans_with(format!("filter: {}▏", app.filter));
        }
        Input::Seek => {
            push("Enter", "seek");
            push("Esc", "cancel");
            return Line::from(spans)
                .into_iter_spans_with(format!("seek to (seconds): {}▏", app.edit));
        }
        Input::Normal => {}
    }
    if let Some(m) = &app.message {
        return Line::from(Span::styled(m.clone(), Style::new().fg(Color::Red)));
    }
    push("q", "quit");
    push("?", "help");
    push("Tab/1-5", "views");
    match app.view {
        View::Overview => {
            push("↑↓", "select");
            push("Enter", "ranges");
            push("s", "sort");
            push("/", "filter");
        }
        View::Ranges => {
            push("+-", "zoom");
            push("←→", "scroll");
            push("↑↓", "select");
        }
        View::Findings if app.detail => {
            push("↑↓", "scroll");
            push("Esc", "back");
        }
        View::Findings => {
            push("↑↓", "select");
            push("Enter", "explain");
        }
        View::Waits | View::Hists => push("↑↓", "scroll"),
    }
    if app.replay {
        push("space", "play/pause");
        push("<>", "speed");
        push(".", "step");
        push("g", "seek");
        push("n", "next finding");
    }
    Line::from(spans)
}

trait LineExt {
    fn into_iter_spans_with(self, tail: String) -> Line<'static>;
}

impl LineExt for Line<'static> {
    /// The line with `tail` (what is being typed) in front.
    fn into_iter_spans_with(self, tail: String) -> Line<'static> {
        let mut spans = vec![Span::styled(
            tail,
            Style::new().add_modifier(Modifier::BOLD),
        )];
        spans.push(Span::raw("   "));
        spans.extend(self.spans);
        Line::from(spans)
    }
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit (the terminal is restored)"),
    ("?", "this help (any key closes it)"),
    ("Tab, Shift-Tab, 1-5", "switch view"),
    (
        "↑ ↓ j k, PgUp PgDn, Home End",
        "move the selection / scroll",
    ),
    ("Overview: Enter", "show the selected file's ranges"),
    ("Overview: s, S", "sort by the next / previous column"),
    ("Overview: /", "filter files by name (Esc clears)"),
    ("Ranges: + -", "zoom in / out of the page space"),
    ("Ranges: ← → h l, 0", "scroll the page space, reset zoom"),
    ("Findings: Enter", "open the full report and its events"),
    ("replay: space", "play / pause (at the end: again)"),
    ("replay: < >", "half / double speed"),
    ("replay: .", "one event, then pause"),
    ("replay: g", "seek to a time, in seconds"),
    ("replay: n", "run to the next finding"),
];

fn help(frame: &mut Frame, area: Rect, app: &AppState) {
    let w = 72.min(area.width);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .filter(|(k, _)| app.replay || !k.starts_with("replay"))
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>30}  "), Style::new().fg(Color::Cyan)),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        r,
    );
}

/// The colour of an operation, in the map and the lists.
pub(crate) fn op_color(op: Op) -> Color {
    match op {
        Op::Fault => Color::Yellow,
        Op::DioRead => Color::Cyan,
        Op::DioWrite => Color::Blue,
        Op::Punch => Color::Red,
        Op::Truncate => Color::Magenta,
        Op::Buffered => Color::Green,
        Op::Zero => Color::LightRed,
        Op::Collapse => Color::LightMagenta,
        Op::Insert => Color::LightBlue,
    }
}

/// The first row to show so that `sel` is visible in `height` rows.
pub(crate) fn scroll_to(sel: usize, height: usize) -> usize {
    if height == 0 {
        0
    } else {
        sel.saturating_sub(height - 1)
    }
}

/// A duration, or `-`.
pub(crate) fn dur(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), crate::views::report::fmt_ns)
}
