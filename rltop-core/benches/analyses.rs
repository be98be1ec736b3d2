//! The analyses' event rate, in memory (no decoding): the engine over the
//! model alone, with the statistics of `report`, and with the checker of
//! `check`, on an uncontended-to-lightly-contended stream of 3 million
//! range-lock events (64 tasks on 16 trees taking and releasing small
//! ranges). `cargo xtask bench check` measures the same commands end to end
//! from a trace file.
//!
//! `cargo bench -p rltop-core --bench analyses`

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rltop_core::analysis::stats::Stats;
use rltop_core::analysis::{Checker, Config, Engine};
use rltop_core::events::{Body, Event, Mode};
use rltop_core::model::Model;

fn stream() -> Vec<Event> {
    let mut evs = Vec::with_capacity(3_000_000);
    let mut ts = 0u64;
    'rounds: for round in 0..40_000u64 {
        for task in 0..64u32 {
            let tree = 0xffff_8881_0000_0000 + u64::from(task % 16) * 0x1000;
            let lock = 0xffff_c900_0000_0000 + u64::from(task) * 0x100;
            let start = (round * 7 + u64::from(task) * 13) % 4096;
            for body in [
                Body::RlRequest {
                    tree,
                    lock,
                    start,
                    last: start + 3,
                    mode: Mode::Excl,
                },
                Body::RlAcquired { tree, lock },
                Body::RlRelease { tree, lock },
            ] {
                ts += 10;
                evs.push(Event {
                    ts,
                    tid: 1000 + task,
                    pid: 1000,
                    cpu: Some(task % 4),
                    body,
                });
            }
            if evs.len() >= 3_000_000 {
                break 'rounds;
            }
        }
    }
    evs
}

fn run<A: rltop_core::analysis::Analysis>(evs: &[Event], a: A) -> Engine<A> {
    let mut e = Engine::new(Model::new(None), a);
    for (i, ev) in evs.iter().enumerate() {
        e.event(i as u64, ev);
    }
    e
}

fn analyses(c: &mut Criterion) {
    let evs = stream();
    let mut g = c.benchmark_group("analyses");
    g.sample_size(10);
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.bench_function("model", |b| b.iter(|| black_box(run(&evs, ()))));
    g.bench_function("model+stats", |b| {
        b.iter(|| black_box(run(&evs, Stats::new(true))))
    });
    g.bench_function("model+checker", |b| {
        b.iter(|| black_box(run(&evs, Checker::new(Config::default())).finish()))
    });
    g.finish();
}

criterion_group!(benches, analyses);
criterion_main!(benches);
