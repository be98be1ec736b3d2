//! The TUI's views, drawn with ratatui's `TestBackend` from snapshots built
//! by the real pipeline over small event lists, compared with accepted
//! `insta` snapshots (text; colours are checked by the assertions beside).
//! Inputs: nothing (empty state), many trees, the hand-written deadlocks
//! of the checker's tests, and the bundled demo trace.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use rltop::analysis::Config;
use rltop::events::{Body, Dev, Event, Mode};
use rltop::model::Model;
use rltop::views::tui::app::{Action, AppState, Control, Input, SortCol, View, handle_key};
use rltop::views::tui::pipeline::Pipeline;
use rltop::views::tui::render::render;
use rltop::views::tui::snapshot::{Play, Snapshot, Status};

mod common;
use common::{data, ev, rl_acquired, rl_release, rl_request, trace_events};

const W: u16 = 120;
const H: u16 = 32;

fn status(source: &str) -> Status {
    Status {
        source: source.into(),
        profile: "test".into(),
        ..Status::default()
    }
}

/// Runs events through the pipeline; `end`: the stream ended (the
/// verdict's findings join, as at the end of a replay).
fn pipeline_snapshot(events: Vec<Event>, end: bool) -> Snapshot {
    let mut p = Pipeline::new(Model::new(None), Config::default());
    for e in events {
        p.event(e);
    }
    if end {
        p.finish(status("test"))
    } else {
        p.snapshot(status("test"))
    }
}

fn draw(snap: &Snapshot, app: &AppState) -> Buffer {
    draw_sized(snap, app, W, H)
}

fn draw_sized(snap: &Snapshot, app: &AppState, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, snap, app)).unwrap();
    t.backend().buffer().clone()
}

fn text(b: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..b.area.height {
        let mut line = String::new();
        for x in 0..b.area.width {
            line.push_str(b[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn screen(snap: &Snapshot, app: &AppState) -> String {
    text(&draw(snap, app))
}

fn app_at(view: View) -> AppState {
    let mut a = AppState::new(false);
    a.view = view;
    a
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// The position of `needle` on screen.
fn find(b: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let t = text(b);
    for (y, line) in t.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            let x = line[..byte].chars().count();
            return Some((x as u16, y as u16));
        }
    }
    None
}

// ---------------------------------------------------------------- empty

#[test]
fn empty_state_every_view() {
    let snap = Snapshot {
        status: status("live"),
        ..Snapshot::default()
    };
    for v in View::ALL {
        let s = screen(&snap, &app_at(v));
        insta::assert_snapshot!(format!("empty_{}", v.title().replace(' ', "_")), s);
    }
}

#[test]
fn status_line_always_shows_lost_events_and_red_when_some() {
    let mut snap = Snapshot {
        status: status("live"),
        ..Snapshot::default()
    };
    let b = draw(&snap, &app_at(View::Overview));
    assert!(text(&b).contains("lost 0"), "lost shown at zero too");
    snap.status.lost = 42;
    snap.status.probes = Some((14, 16));
    let b = draw(&snap, &app_at(View::Overview));
    let (x, y) = find(&b, "lost 42").expect("lost count on screen");
    assert_eq!(b[(x, y)].bg, Color::Red);
    assert!(text(&b).contains("probes 14/16"));
}

// ---------------------------------------------------------- many trees

const TREE0: u64 = 0xffff_8880_4000_0000;

/// `n` files, file `i` with `i % 4` held ranges and `i % 3` waiters on a
/// held range, contended so the stats have waits.
fn many_trees(n: u64) -> Vec<Event> {
    let mut v = Vec::new();
    let mut ts = 1_000;
    let next = |ts: &mut u64| {
        *ts += 1_000;
        *ts
    };
    for i in 0..n {
        let tree = TREE0 + i * 0x1000;
        v.push(ev(
            next(&mut ts),
            1,
            Body::Tree {
                tree,
                dev: Dev { major: 8, minor: 3 },
                ino: 100 + i,
            },
        ));
        let lock = |k: u64| 0xffff_c900_0000_0000 + i * 0x10000 + k * 0x48;
        let holders = i % 4;
        for h in 0..holders {
            let tid = (1000 + i * 10 + h) as u32;
            v.push(ev(
                next(&mut ts),
                tid,
                rl_request(tree, lock(h), h * 16, h * 16 + 7, Mode::Excl),
            ));
            v.push(ev(next(&mut ts), tid, rl_acquired(tree, lock(h))));
        }
        if holders > 0 {
            for w in 0..i % 3 {
                let tid = (1000 + i * 10 + 5 + w) as u32;
                v.push(ev(
                    next(&mut ts),
                    tid,
                    rl_request(tree, lock(5 + w), 0, 3, Mode::Excl),
                ));
            }
        }
    }
    // One finished contended wait, on the last tree with a holder and no
    // waiter, so the wait columns have numbers.
    let tree = TREE0;
    let (a, b) = (0xffff_c900_1000_0000, 0xffff_c900_1000_0048);
    v.push(ev(next(&mut ts), 7, rl_request(tree, a, 0, 0, Mode::Excl)));
    v.push(ev(next(&mut ts), 7, rl_acquired(tree, a)));
    v.push(ev(next(&mut ts), 8, rl_request(tree, b, 0, 0, Mode::Excl)));
    ts += 50_000;
    v.push(ev(next(&mut ts), 7, rl_release(tree, a)));
    v.push(ev(next(&mut ts), 8, rl_acquired(tree, b)));
    ts += 20_000;
    v.push(ev(next(&mut ts), 8, rl_release(tree, b)));
    v
}

#[test]
fn many_trees_overview_sorted_and_filtered() {
    let snap = pipeline_snapshot(many_trees(40), false);
    // Files with no lock ever (i % 4 == 0, but for the first) have no row.
    assert_eq!(snap.files.len(), 31);
    let mut app = app_at(View::Overview);
    app.sort = SortCol::Held;
    insta::assert_snapshot!("many_trees_overview_by_held", screen(&snap, &app));
    // `/` then typing filters as typed; Enter keeps it.
    for k in [
        KeyCode::Char('/'),
        KeyCode::Char('1'),
        KeyCode::Char('2'),
        KeyCode::Enter,
    ] {
        handle_key(&mut app, key(k), &snap);
    }
    assert_eq!(app.filter, "12");
    assert_eq!(app.input, Input::Normal);
    let s = screen(&snap, &app);
    assert!(s.contains("of 31 files match \"12\""), "{s}");
    insta::assert_snapshot!("many_trees_overview_filtered", s);
}

#[test]
fn many_trees_ranges_of_the_selected_file() {
    let snap = pipeline_snapshot(many_trees(40), false);
    let mut app = app_at(View::Overview);
    app.sort = SortCol::Waiters;
    // The first row (most waiters), Enter: its ranges.
    assert_eq!(
        handle_key(&mut app, key(KeyCode::Enter), &snap),
        Action::None
    );
    assert_eq!(app.view, View::Ranges);
    let s = screen(&snap, &app);
    insta::assert_snapshot!("many_trees_ranges", s);
    // Zoom in (on the middle), scroll left to the start: the map shows
    // the first half of the page space.
    for k in [
        KeyCode::Char('+'),
        KeyCode::Left,
        KeyCode::Left,
        KeyCode::Left,
    ] {
        handle_key(&mut app, key(k), &snap);
    }
    assert_eq!((app.zoom, app.offset), (1, 0));
    insta::assert_snapshot!("many_trees_ranges_zoomed", screen(&snap, &app));
}

// -------------------------------------------------------------- deadlock

#[test]
fn deadlock_every_view() {
    let snap = pipeline_snapshot(trace_events(&data("check/deadlock.jsonl")), false);
    assert_eq!(snap.findings.len(), 1, "the checker finds the deadlock");
    for v in View::ALL {
        insta::assert_snapshot!(
            format!("deadlock_{}", v.title().replace(' ', "_")),
            screen(&snap, &app_at(v))
        );
    }
    // The cycle is red in the wait chains.
    let b = draw(&snap, &app_at(View::Waits));
    let (x, y) = find(&b, "⟲").expect("cycle mark");
    assert_eq!(b[(x, y)].fg, Color::Red);
    // Enter opens the lockdep-style report with its evidence events.
    let mut app = app_at(View::Findings);
    handle_key(&mut app, key(KeyCode::Enter), &snap);
    assert!(app.detail);
    let s = screen(&snap, &app);
    assert!(
        s.contains("WARNING: circular locking deadlock detected"),
        "{s}"
    );
    assert!(s.contains("the existing dependency chain"), "{s}");
    insta::assert_snapshot!("deadlock_finding_detail", s);
    // Scrolled to the evidence.
    for _ in 0..20 {
        handle_key(&mut app, key(KeyCode::Down), &snap);
    }
    let s = screen(&snap, &app);
    assert!(s.contains("evidence:"), "{s}");
    assert!(s.contains("rl_request"), "evidence events as text: {s}");
    insta::assert_snapshot!("deadlock_finding_evidence", s);
}

#[test]
fn deadlock_through_mmap_lock_in_wait_chains() {
    let snap = pipeline_snapshot(trace_events(&data("check/deadlock_mmap.jsonl")), false);
    let s = screen(&snap, &app_at(View::Waits));
    assert!(s.contains("mmap_lock"), "{s}");
    assert!(s.contains("cycle: deadlock"), "{s}");
    insta::assert_snapshot!("deadlock_mmap_waits", s);
}

#[test]
fn a_task_waiting_on_its_own_dio_is_no_deadlock() {
    // Task 1 submits a DIO over pages [0, 7] (its lock is the IO's until
    // completion), then faults on page 3 and waits for that IO; task 2
    // waits behind task 1's fault. The chain ends at the DIO: no cycle.
    let dev = Dev { major: 8, minor: 1 };
    let rl = |ts, tid, lock, start, last| ev(ts, tid, rl_request(9, lock, start, last, Mode::Excl));
    let evs = vec![
        ev(
            1,
            1,
            Body::Tree {
                tree: 9,
                dev,
                ino: 5,
            },
        ),
        ev(
            2,
            1,
            Body::DioBegin {
                io: 77,
                dev,
                ino: 5,
                pos: 0,
                len: 8 * 4096,
                write: true,
            },
        ),
        rl(3, 1, 100, 0, 7),
        ev(4, 1, rl_acquired(9, 100)),
        ev(
            5,
            1,
            Body::Fault {
                dev,
                ino: 5,
                index: 3,
            },
        ),
        rl(6, 1, 101, 3, 3),
        rl(7, 2, 102, 3, 3),
    ];
    let snap = pipeline_snapshot(evs, false);
    assert!(snap.waits.iter().all(|n| !n.cycle), "{:#?}", snap.waits);
    let s = screen(&snap, &app_at(View::Waits));
    assert!(!s.contains("DEADLOCK") && !s.contains("cycle"), "{s}");
    assert!(s.contains("completion releases it"), "{s}");
}

// ------------------------------------------------------------ demo trace

#[test]
fn bundled_demo_trace_at_the_end() {
    let mut snap = pipeline_snapshot(trace_events(&data("demo.jsonl")), true);
    snap.status.play = Some(Play {
        paused: true,
        speed: 1.0,
        finished: true,
        seekable: true,
    });
    let mut app = AppState::new(true);
    for v in View::ALL {
        app.view = v;
        insta::assert_snapshot!(
            format!("demo_{}", v.title().replace(' ', "_")),
            screen(&snap, &app)
        );
    }
    app.help = true;
    insta::assert_snapshot!("demo_help", screen(&snap, &app));
}

#[test]
fn bundled_demo_trace_at_its_busiest() {
    // The moment with the most ranges held, waiting or in flight.
    let events = trace_events(&data("demo.jsonl"));
    let busy = |s: &Snapshot| s.files.iter().map(|f| f.ranges.len()).sum::<usize>();
    let (mut best, mut at) = (0, 0);
    let mut p = Pipeline::new(Model::new(None), Config::default());
    for (i, e) in events.iter().enumerate() {
        p.event(e.clone());
        let n = busy(&p.snapshot(status("test")));
        if n > best {
            (best, at) = (n, i);
        }
    }
    assert!(best > 0);
    let snap = pipeline_snapshot(events[..=at].to_vec(), false);
    for v in [View::Overview, View::Ranges, View::Waits] {
        insta::assert_snapshot!(
            format!("demo_busiest_{}", v.title().replace(' ', "_")),
            screen(&snap, &app_at(v))
        );
    }
}

// ------------------------------------------------------------------ keys

#[test]
fn keys_switch_views_sort_and_quit() {
    let snap = pipeline_snapshot(many_trees(5), false);
    let mut app = AppState::new(true);
    handle_key(&mut app, key(KeyCode::Tab), &snap);
    assert_eq!(app.view, View::Ranges);
    handle_key(&mut app, key(KeyCode::Char('4')), &snap);
    assert_eq!(app.view, View::Findings);
    handle_key(&mut app, key(KeyCode::BackTab), &snap);
    assert_eq!(app.view, View::Waits);
    handle_key(&mut app, key(KeyCode::Char('1')), &snap);
    let before = app.sort;
    handle_key(&mut app, key(KeyCode::Char('s')), &snap);
    assert_ne!(app.sort, before);
    handle_key(&mut app, key(KeyCode::Char('S')), &snap);
    assert_eq!(app.sort, before);
    handle_key(&mut app, key(KeyCode::Char('?')), &snap);
    assert!(app.help);
    handle_key(&mut app, key(KeyCode::Char('x')), &snap);
    assert!(!app.help, "any key closes help");
    assert_eq!(
        handle_key(&mut app, key(KeyCode::Char(' ')), &snap),
        Action::Control(Control::TogglePause)
    );
    assert_eq!(
        handle_key(&mut app, key(KeyCode::Char('>')), &snap),
        Action::Control(Control::Speed(2.0))
    );
    // Seek: `g`, a time, Enter.
    for k in [
        KeyCode::Char('g'),
        KeyCode::Char('1'),
        KeyCode::Char('.'),
        KeyCode::Char('5'),
    ] {
        assert_eq!(handle_key(&mut app, key(k), &snap), Action::None);
    }
    assert_eq!(
        handle_key(&mut app, key(KeyCode::Enter), &snap),
        Action::Control(Control::Seek(1_500_000_000))
    );
    assert_eq!(
        handle_key(
            &mut app,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
            &snap
        ),
        Action::Quit
    );
    assert_eq!(
        handle_key(&mut app, key(KeyCode::Char('q')), &snap),
        Action::Quit
    );
    // Live: no replay keys.
    let mut live = AppState::new(false);
    assert_eq!(
        handle_key(&mut live, key(KeyCode::Char(' ')), &snap),
        Action::None
    );
}

#[test]
fn resolved_paths_name_the_files() {
    let mut p = Pipeline::new(Model::new(None), Config::default());
    for e in trace_events(&data("check/deadlock.jsonl")) {
        p.event(e);
    }
    let dev = Dev { major: 8, minor: 3 };
    let paths = [((dev, 12), "/mnt/scratch/a".to_string())]
        .into_iter()
        .collect();
    p.set_paths(std::sync::Arc::new(paths));
    let snap = p.snapshot(status("live"));
    let s = screen(&snap, &app_at(View::Overview));
    assert!(s.contains("/mnt/scratch/a (8:3:12)"), "{s}");
    assert!(s.contains("8:3:13"), "unresolved: dev:ino: {s}");
    // The filter matches paths.
    let mut app = app_at(View::Overview);
    for c in "scratch".chars() {
        app.filter.push(c);
    }
    let s = screen(&snap, &app);
    assert!(s.contains("1 of 2 files match"), "{s}");
}

#[test]
fn histograms_take_two_columns_on_a_wide_screen() {
    let snap = pipeline_snapshot(trace_events(&data("demo.jsonl")), true);
    assert!(snap.hists.len() >= 2);
    let s = text(&draw_sized(&snap, &app_at(View::Hists), 160, 24));
    // The second column starts at column 1 + 79 (border, half the inside).
    let second = snap.hists.iter().any(|h| {
        s.lines().any(|l| {
            l.chars()
                .skip(80)
                .collect::<String>()
                .starts_with(h.title.as_str())
        })
    });
    assert!(second, "a panel title in the second column: {s}");
    insta::assert_snapshot!("demo_histograms_wide", s);
}

#[test]
fn every_view_draws_on_tiny_and_odd_terminals() {
    let mut snap = pipeline_snapshot(trace_events(&data("check/deadlock_mmap.jsonl")), true);
    snap.status.lost = 3;
    let busy = pipeline_snapshot(many_trees(12), false);
    for s in [&snap, &busy, &Snapshot::default()] {
        for v in View::ALL {
            for (w, h) in [
                (1, 1),
                (2, 3),
                (10, 4),
                (30, 7),
                (80, 5),
                (200, 12),
                (13, 50),
            ] {
                let mut app = AppState::new(true);
                app.view = v;
                draw_sized(s, &app, w, h);
                app.help = true;
                app.detail = true;
                app.zoom = 5;
                app.offset = 1_000;
                app.ranges_sel = 99;
                app.findings_sel = 99;
                draw_sized(s, &app, w, h);
            }
        }
    }
}
