//! The TUI's frame cost: building a snapshot from the analyses' state and
//! drawing it, with 10 000 held ranges and 1 000 waiters (issue 6's
//! figure). Two shapes: all on one file (the Ranges map and list of that
//! file are the heaviest view), and spread over 100 files (the Overview).
//!
//! Also the pipeline's event rate (`tui_pipeline`), which decides whether
//! the TUI keeps up with a live stream.
//!
//! `cargo bench -p rltop-core --bench tui`

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rltop_core::analysis::Config;
use rltop_core::events::{Body, Dev, Event, Mode};
use rltop_core::model::Model;
use rltop_core::views::tui::app::{AppState, View};
use rltop_core::views::tui::pipeline::Pipeline;
use rltop_core::views::tui::render::render;
use rltop_core::views::tui::snapshot::Status;

const HELD: u64 = 10_000;
const WAITERS: u64 = 1_000;

/// `files` trees; `HELD` disjoint 4-page ranges held by as many tasks,
/// then `WAITERS` tasks each waiting for a page of a held range.
fn pipeline(files: u64) -> Pipeline {
    let mut p = Pipeline::new(Model::new(None), Config::default());
    let mut ts = 1_000u64;
    let mut push = |p: &mut Pipeline, tid: u32, body: Body| {
        ts += 100;
        p.event(Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        });
    };
    let tree = |i: u64| 0xffff_8880_0000_0000 + (i % files) * 0x1000;
    for f in 0..files {
        let body = Body::Tree {
            tree: tree(f),
            dev: Dev { major: 8, minor: 1 },
            ino: 1000 + f,
        };
        push(&mut p, 1, body);
    }
    for i in 0..HELD {
        let tid = 10_000 + i as u32;
        let (tree, lock) = (tree(i), 0xffff_c900_0000_0000 + i * 0x48);
        let start = (i / files) * 4;
        push(
            &mut p,
            tid,
            Body::RlRequest {
                tree,
                lock,
                start,
                last: start + 3,
                mode: Mode::Excl,
            },
        );
        push(&mut p, tid, Body::RlAcquired { tree, lock });
    }
    for w in 0..WAITERS {
        let tid = 100_000 + w as u32;
        let i = w * (HELD / WAITERS);
        let (tree, lock) = (tree(i), 0xffff_c901_0000_0000 + w * 0x48);
        let page = (i / files) * 4 + 1;
        push(
            &mut p,
            tid,
            Body::RlRequest {
                tree,
                lock,
                start: page,
                last: page,
                mode: Mode::Excl,
            },
        );
    }
    p
}

fn bench(c: &mut Criterion) {
    for (name, files, view) in [
        ("one_file_ranges", 1, View::Ranges),
        ("100_files_overview", 100, View::Overview),
    ] {
        let mut p = pipeline(files);
        let snap = p.snapshot(Status::default());
        let held: usize = snap.files.iter().map(|f| f.held).sum();
        let waiting: usize = snap.files.iter().map(|f| f.waiters).sum();
        assert_eq!((held, waiting), (HELD as usize, WAITERS as usize));
        let mut app = AppState::new(false);
        app.view = view;
        let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
        c.bench_function(&format!("tui_frame_{name}_snapshot_and_render"), |b| {
            b.iter(|| {
                let s = p.snapshot(Status::default());
                term.draw(|f| render(f, black_box(&s), &app)).unwrap();
            })
        });
        c.bench_function(&format!("tui_frame_{name}_snapshot_only"), |b| {
            b.iter(|| black_box(p.snapshot(Status::default())))
        });
        c.bench_function(&format!("tui_frame_{name}_render_only"), |b| {
            b.iter(|| {
                term.draw(|f| render(f, black_box(&snap), &app)).unwrap();
            })
        });
        // The wait chains view over the same state.
        app.view = View::Waits;
        c.bench_function(&format!("tui_frame_{name}_waits_render_only"), |b| {
            b.iter(|| {
                term.draw(|f| render(f, black_box(&snap), &app)).unwrap();
            })
        });
    }
}

/// Events per second through the TUI's pipeline (checker, statistics,
/// evidence ring), snapshots aside: a simulated mixed workload.
fn throughput(c: &mut Criterion) {
    let events = rltop_core::sim::simulate(&rltop_core::sim::Config {
        scenario: "mixed".into(),
        seed: 3,
        events: 100_000,
        threads: 4,
    })
    .unwrap();
    let mut g = c.benchmark_group("tui_pipeline");
    g.throughput(criterion::Throughput::Elements(events.len() as u64));
    g.sample_size(10);
    g.bench_function("mixed_100k_events", |b| {
        b.iter(|| {
            let mut p = Pipeline::new(Model::new(None), Config::default());
            for e in &events {
                p.event(e.clone());
            }
            black_box(p.events())
        })
    });
    g.finish();
}

criterion_group!(benches, bench, throughput);
criterion_main!(benches);
