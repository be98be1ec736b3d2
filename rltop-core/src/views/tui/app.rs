//! View state (which view, selection, sort, filter, zoom) and what keys do
//! to it. Pure: a key and a snapshot in, a changed state and an [`Action`]
//! out, so key handling is tested without a terminal.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::snapshot::{FileKey, FileRow, Snapshot};

/// The views, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Overview,
    Ranges,
    Waits,
    Findings,
    Hists,
}

impl View {
    pub const ALL: [View; 5] = [
        View::Overview,
        View::Ranges,
        View::Waits,
        View::Findings,
        View::Hists,
    ];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Ranges => "Ranges",
            View::Waits => "Wait chains",
            View::Findings => "Findings",
            View::Hists => "Histograms",
        }
    }

    fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

/// Overview columns one can sort by (descending; the name ascending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortCol {
    Name,
    Held,
    Waiters,
    ContRate,
    Contentions,
    WaitP50,
    WaitP99,
    WaitMax,
    HoldMax,
}

impl SortCol {
    pub const ALL: [SortCol; 9] = [
        SortCol::Name,
        SortCol::Held,
        SortCol::Waiters,
        SortCol::ContRate,
        SortCol::Contentions,
        SortCol::WaitP50,
        SortCol::WaitP99,
        SortCol::WaitMax,
        SortCol::HoldMax,
    ];

    /// The Overview column header.
    pub fn header(self) -> &'static str {
        match self {
            SortCol::Name => "FILE",
            SortCol::Held => "HELD",
            SortCol::Waiters => "WAIT",
            SortCol::ContRate => "CONT/s",
            SortCol::Contentions => "CONT",
            SortCol::WaitP50 => "WAIT p50",
            SortCol::WaitP99 => "WAIT p99",
            SortCol::WaitMax => "WAIT max",
            SortCol::HoldMax => "HOLD max",
        }
    }

    fn key(self, r: &FileRow) -> u64 {
        let w = |f: fn(&crate::analysis::stats::Summary) -> u64| r.wait.as_ref().map_or(0, f);
        match self {
            SortCol::Name => 0,
            SortCol::Held => r.held as u64,
            SortCol::Waiters => r.waiters as u64,
            // Hundredths: rates below one per second still order.
            SortCol::ContRate => (r.cont_rate * 100.0) as u64,
            SortCol::Contentions => r.contentions,
            SortCol::WaitP50 => w(|s| s.p50),
            SortCol::WaitP99 => w(|s| s.p99),
            SortCol::WaitMax => w(|s| s.max),
            SortCol::HoldMax => r.hold_max.unwrap_or(0),
        }
    }
}

/// What the keyboard is typing into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Normal,
    /// `/`: the Overview filter, applied as typed.
    Filter,
    /// `g`: a time to seek to, in seconds.
    Seek,
}

/// Requests to the pipeline thread (replay and demo).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Control {
    TogglePause,
    /// Multiply the speed by this.
    Speed(f64),
    /// One event, then pause.
    Step,
    /// To this trace time (ns from the first event), then pause.
    Seek(u64),
    /// Run until a new finding appears, then pause.
    NextFinding,
}

/// What the caller must do after a key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Action {
    None,
    Quit,
    Control(Control),
}

/// Everything the views remember between frames.
#[derive(Clone, Debug)]
pub struct AppState {
    pub view: View,
    pub help: bool,
    pub input: Input,
    /// Text being typed (seek time).
    pub edit: String,
    /// Overview filter: a case-insensitive substring of the file name.
    pub filter: String,
    pub sort: SortCol,
    pub overview_sel: usize,
    /// The file the Ranges view shows (default: the Overview's first row).
    pub file: Option<FileKey>,
    pub ranges_sel: usize,
    /// Ranges map zoom: the page space shown is `extent >> zoom` pages.
    pub zoom: u32,
    /// First page shown.
    pub offset: u64,
    pub waits_sel: usize,
    pub findings_sel: usize,
    /// The selected finding's full report is open.
    pub detail: bool,
    pub detail_scroll: u16,
    pub hists_scroll: usize,
    /// Replay/demo keys are live.
    pub replay: bool,
    /// A one-line message (bad input), until the next key.
    pub message: Option<String>,
}

impl AppState {
    pub fn new(replay: bool) -> AppState {
        AppState {
            view: View::Overview,
            help: false,
            input: Input::Normal,
            edit: String::new(),
            filter: String::new(),
            sort: SortCol::ContRate,
            overview_sel: 0,
            file: None,
            ranges_sel: 0,
            zoom: 0,
            offset: 0,
            waits_sel: 0,
            findings_sel: 0,
            detail: false,
            detail_scroll: 0,
            hists_scroll: 0,
            replay,
            message: None,
        }
    }
}

/// The Overview rows: filtered, then sorted by the sort column (ties by
/// name, so the order is stable from frame to frame).
pub fn overview_rows<'a>(snap: &'a Snapshot, app: &AppState) -> Vec<&'a FileRow> {
    let filter = app.filter.to_lowercase();
    let mut rows: Vec<&FileRow> = snap
        .files
        .iter()
        .filter(|r| filter.is_empty() || r.name.to_lowercase().contains(&filter))
        .collect();
    let col = app.sort;
    // Ties: what is going on now, then the longest hold, then the name.
    let live = |r: &FileRow| r.held + r.waiters + r.in_flight;
    rows.sort_by(|a, b| {
        col.key(b)
            .cmp(&col.key(a))
            .then_with(|| live(b).cmp(&live(a)))
            .then_with(|| b.hold_max.cmp(&a.hold_max))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

/// The file the Ranges view shows: the chosen one, else the Overview's
/// first row that has ranges now (else its first row).
pub fn ranges_file<'a>(snap: &'a Snapshot, app: &AppState) -> Option<&'a FileRow> {
    match app.file {
        Some(k) => snap.files.iter().find(|r| r.key == k),
        None => {
            let rows = overview_rows(snap, app);
            rows.iter()
                .find(|r| !r.ranges.is_empty())
                .or(rows.first())
                .copied()
        }
    }
}

/// Pages `[0, extent)` the Ranges map spans: past the last finite range
/// (ranges to EOF are drawn to the end).
pub fn extent(file: &FileRow) -> u64 {
    file.ranges
        .iter()
        .map(|r| {
            if r.last == u64::MAX {
                r.start.saturating_add(1)
            } else {
                r.last.saturating_add(1)
            }
        })
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Pages the map shows at `zoom` (at least one).
pub fn span(extent: u64, zoom: u32) -> u64 {
    (extent >> zoom.min(63)).max(1)
}

fn clamp_sel(sel: &mut usize, len: usize) {
    *sel = (*sel).min(len.saturating_sub(1));
}

fn move_sel(sel: &mut usize, len: usize, delta: isize) {
    let v = (*sel as isize).saturating_add(delta).max(0) as usize;
    *sel = v;
    clamp_sel(sel, len);
}

/// Applies one key. `snap` is what is on screen.
pub fn handle_key(app: &mut AppState, key: KeyEvent, snap: &Snapshot) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    app.message = None;
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    match app.input {
        Input::Filter => {
            match key.code {
                KeyCode::Enter => app.input = Input::Normal,
                KeyCode::Esc => {
                    app.filter.clear();
                    app.input = Input::Normal;
                }
                KeyCode::Backspace => {
                    app.filter.pop();
                }
                KeyCode::Char(c) => app.filter.push(c),
                _ => {}
            }
            app.overview_sel = 0;
            return Action::None;
        }
        Input::Seek => {
            match key.code {
                KeyCode::Enter => {
                    app.input = Input::Normal;
                    let text = std::mem::take(&mut app.edit);
                    match text.trim().parse::<f64>() {
                        Ok(s) if s.is_finite() && s >= 0.0 => {
                            return Action::Control(Control::Seek((s * 1e9) as u64));
                        }
                        _ => app.message = Some(format!("not a time in seconds: {text:?}")),
                    }
                }
                KeyCode::Esc => {
                    app.edit.clear();
                    app.input = Input::Normal;
                }
                KeyCode::Backspace => {
                    app.edit.pop();
                }
                KeyCode::Char(c) if c.is_ascii_digit() || c == '.' => app.edit.push(c),
                _ => {}
            }
            return Action::None;
        }
        Input::Normal => {}
    }
    if app.help {
        // Any key closes help; `q` still quits.
        app.help = false;
        return if key.code == KeyCode::Char('q') {
            Action::Quit
        } else {
            Action::None
        };
    }
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') | KeyCode::F(1) => app.help = true,
        KeyCode::Tab => app.view = View::ALL[(app.view.index() + 1) % View::ALL.len()],
        KeyCode::BackTab => {
            app.view = View::ALL[(app.view.index() + View::ALL.len() - 1) % View::ALL.len()]
        }
        KeyCode::Char(c @ '1'..='5') => app.view = View::ALL[(c as u8 - b'1') as usize],
        KeyCode::Char(' ') if app.replay => return Action::Control(Control::TogglePause),
        KeyCode::Char('>') if app.replay => return Action::Control(Control::Speed(2.0)),
        KeyCode::Char('<') if app.replay => return Action::Control(Control::Speed(0.5)),
        KeyCode::Char('.') if app.replay => return Action::Control(Control::Step),
        KeyCode::Char('n') if app.replay => return Action::Control(Control::NextFinding),
        KeyCode::Char('g') if app.replay => {
            app.input = Input::Seek;
            app.edit.clear();
        }
        _ => return view_key(app, key, snap),
    }
    Action::None
}

/// Keys that mean something in one view only.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
fn view_key(app: &mut AppState, key: KeyEvent, snap: &Snapshot) -> Action {
    let (up, down, page) = (
        matches!(key.code, KeyCode::Up | KeyCode::Char('k')),
        matches!(key.code, KeyCode::Down | KeyCode::Char('j')),
        match key.code {
            KeyCode::PageUp => -20,
            KeyCode::PageDown => 20,
            KeyCode::Home => isize::MIN / 2,
            KeyCode::End => isize::MAX / 2,
            _ => 0,
        },
    );
    let delta = if up {
        -1
    } else if down {
        1
    } else {
        page
    };
    match app.view {
        View::Overview => {
            let rows = overview_rows(snap, app);
            match key.code {
                KeyCode::Char('/') => {
                    app.input = Input::Filter;
                }
                KeyCode::Esc => app.filter.clear(),
                KeyCode::Char('s') | KeyCode::Char('S') => {
                    let n = SortCol::ALL.len();
                    let i = SortCol::ALL
                        .iter()
                        .position(|c| *c == app.sort)
                        .unwrap_or(0);
                    let step = if key.code == KeyCode::Char('s') {
                        1
                    } else {
                        n - 1
                    };
                    app.sort = SortCol::ALL[(i + step) % n];
                }
                KeyCode::Enter => {
                    if let Some(r) = rows.get(app.overview_sel) {
                        app.file = Some(r.key);
                        app.view = View::Ranges;
                        app.ranges_sel = 0;
                        app.zoom = 0;
                        app.offset = 0;
                    }
                }
                _ => move_sel(&mut app.overview_sel, rows.len(), delta),
            }
        }
        View::Ranges => {
            let Some(file) = ranges_file(snap, app) else {
                return Action::None;
            };
            let ext = extent(file);
            let span = span(ext, app.zoom);
            let max_off = ext.saturating_sub(span);
            match key.code {
                KeyCode::Char('+') | KeyCode::Char('=') => {
                    if span > 1 {
                        // Zoom on the middle of what is shown.
                        let mid = app.offset.saturating_add(span / 2);
                        app.zoom += 1;
                        let s = self::span(ext, app.zoom);
                        app.offset = mid.saturating_sub(s / 2).min(ext.saturating_sub(s));
                    }
                }
                KeyCode::Char('-') => {
                    if app.zoom > 0 {
                        let mid = app.offset.saturating_add(span / 2);
                        app.zoom -= 1;
                        let s = self::span(ext, app.zoom);
                        app.offset = mid.saturating_sub(s / 2).min(ext.saturating_sub(s));
                    }
                }
                KeyCode::Char('0') => {
                    app.zoom = 0;
                    app.offset = 0;
                }
                KeyCode::Left | KeyCode::Char('h') => {
                    app.offset = app.offset.saturating_sub((span / 4).max(1));
                }
                KeyCode::Right | KeyCode::Char('l') => {
                    app.offset = app.offset.saturating_add((span / 4).max(1)).min(max_off);
                }
                KeyCode::Esc => app.view = View::Overview,
                _ => move_sel(&mut app.ranges_sel, file.ranges.len(), delta),
            }
        }
        View::Waits => move_sel(&mut app.waits_sel, snap.waits.len(), delta),
        View::Findings => {
            if app.detail {
                match key.code {
                    KeyCode::Enter | KeyCode::Esc => app.detail = false,
                    _ => {
                        let d = delta.clamp(-10_000, 10_000);
                        app.detail_scroll =
                            (app.detail_scroll as isize + d).clamp(0, 10_000) as u16;
                    }
                }
            } else {
                match key.code {
                    KeyCode::Enter => {
                        if !snap.findings.is_empty() {
                            app.detail = true;
                            app.detail_scroll = 0;
                        }
                    }
                    _ => move_sel(&mut app.findings_sel, snap.findings.len(), delta),
                }
            }
        }
        View::Hists => move_sel(&mut app.hists_scroll, snap.hists.len(), delta),
    }
    Action::None
}
