//! Side-by-side: rl-reference vs the `range-lock` and `range-mutex` crates.
//!
//! `cargo bench -p rl-reference --bench lock`
//!
//! - `uncontended/<lock>/<N>`: lock + unlock of one small range while N other
//!   disjoint small ranges are held (guards alive), one op per iteration.
//! - `disjoint_2threads/<lock>`: two threads, each lock + unlock of its own
//!   range; time per iteration = both threads doing one op each.
//! - `handoff/<lock>`: two threads take strict turns on one range (each turn
//!   is checked under the lock); time per turn = one handoff.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use range_lock::VecRangeLock;
use range_mutex::RangeMutex;
use rl_reference::{RangeLock, RwRangeLock};

/// Held range i is pages `[8i, 8i+3]`; the measured one sits in the gap in
/// the middle, so every lock has to search past half of the held ranges.
fn held(i: usize) -> (usize, usize) {
    (8 * i, 8 * i + 3)
}

fn probe(n: usize) -> (usize, usize) {
    (8 * (n / 2) + 4, 8 * (n / 2) + 7)
}

fn r(start: usize, last: usize) -> std::ops::RangeInclusive<u64> {
    start as u64..=last as u64
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    for n in [10usize, 1_000, 100_000] {
        let (ps, pl) = probe(n);
        {
            let lock = RangeLock::new();
            let guards: Vec<_> = (0..n).map(|i| lock.lock(r(held(i).0, held(i).1))).collect();
            g.bench_function(BenchmarkId::new("rl-reference RangeLock", n), |b| {
                b.iter(|| drop(black_box(lock.lock(r(ps, pl)))))
            });
            drop(guards);
        }
        {
            let lock = RwRangeLock::new();
            let guards: Vec<_> = (0..n)
                .map(|i| lock.write(r(held(i).0, held(i).1)))
                .collect();
            g.bench_function(BenchmarkId::new("rl-reference RwRangeLock write", n), |b| {
                b.iter(|| drop(black_box(lock.write(r(ps, pl)))))
            });
            drop(guards);
        }
        {
            let lock = VecRangeLock::new(vec![0u8; 8 * n + 8]);
            let guards: Vec<_> = (0..n)
                .map(|i| lock.try_lock(held(i).0..held(i).1 + 1).unwrap())
                .collect();
            g.bench_function(BenchmarkId::new("range-lock try_lock", n), |b| {
                b.iter(|| drop(black_box(lock.try_lock(ps..pl + 1).unwrap())))
            });
            drop(guards);
        }
        {
            let lock = RangeMutex::new(vec![0u8; 8 * n + 8]);
            let mut guards: Vec<_> = (0..n)
                .map(|i| lock.lock(held(i).0..held(i).1 + 1))
                .collect();
            g.bench_function(BenchmarkId::new("range-mutex", n), |b| {
                b.iter(|| drop(black_box(lock.lock(ps..pl + 1))))
            });
            // Its unlock shifts a sorted Vec: drop from the end, not O(N²).
            while guards.pop().is_some() {}
        }
    }
    g.finish();
}

/// Run `op(thread)` `iters` times on each of two threads; wall time.
fn two_threads(iters: u64, op: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let op = &op;
            s.spawn(move || {
                for _ in 0..iters {
                    op(t);
                }
            });
        }
    });
    start.elapsed()
}

fn disjoint(c: &mut Criterion) {
    let mut g = c.benchmark_group("disjoint_2threads");
    g.bench_function("rl-reference RangeLock", |b| {
        let lock = RangeLock::new();
        b.iter_custom(|iters| {
            two_threads(iters, |t| drop(black_box(lock.lock(r(8 * t, 8 * t + 3)))))
        })
    });
    g.bench_function("rl-reference RwRangeLock write", |b| {
        let lock = RwRangeLock::new();
        b.iter_custom(|iters| {
            two_threads(iters, |t| drop(black_box(lock.write(r(8 * t, 8 * t + 3)))))
        })
    });
    g.bench_function("range-lock try_lock", |b| {
        let lock = VecRangeLock::new(vec![0u8; 16]);
        b.iter_custom(|iters| {
            two_threads(iters, |t| {
                drop(black_box(lock.try_lock(8 * t..8 * t + 4).unwrap()))
            })
        })
    });
    g.bench_function("range-mutex", |b| {
        let lock = RangeMutex::new(vec![0u8; 16]);
        b.iter_custom(|iters| two_threads(iters, |t| drop(black_box(lock.lock(8 * t..8 * t + 4)))))
    });
    g.finish();
}

/// Two threads alternate strictly: thread `me` owns the turns `t % 2 == me`.
/// `take(check)` locks the range, runs `check` under it and unlocks; `check`
/// advances the turn only if it is the caller's. One turn = one handoff.
fn handoff_run(iters: u64, take: impl Fn(&dyn Fn()) + Sync) -> Duration {
    let turn = AtomicUsize::new(0);
    let total = iters as usize;
    let start = Instant::now();
    std::thread::scope(|s| {
        for me in 0..2usize {
            let (turn, take) = (&turn, &take);
            s.spawn(move || {
                while turn.load(Relaxed) < total {
                    take(&|| {
                        let t = turn.load(Relaxed);
                        if t < total && t % 2 == me {
                            turn.store(t + 1, Relaxed);
                        }
                    });
                }
            });
        }
    });
    start.elapsed()
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    g.bench_function("rl-reference RangeLock", |b| {
        let lock = RangeLock::new();
        b.iter_custom(|iters| {
            handoff_run(iters, |f| {
                let _g = lock.lock(0..=3);
                f()
            })
        })
    });
    g.bench_function("rl-reference RwRangeLock write", |b| {
        let lock = RwRangeLock::new();
        b.iter_custom(|iters| {
            handoff_run(iters, |f| {
                let _g = lock.write(0..=3);
                f()
            })
        })
    });
    g.bench_function("range-lock try_lock spin+yield", |b| {
        let lock = VecRangeLock::new(vec![0u8; 4]);
        b.iter_custom(|iters| {
            handoff_run(iters, |f| {
                loop {
                    if let Ok(_g) = lock.try_lock(0..4) {
                        return f();
                    }
                    std::thread::yield_now();
                }
            })
        })
    });
    g.bench_function("range-mutex", |b| {
        let lock = RangeMutex::new(vec![0u8; 4]);
        b.iter_custom(|iters| {
            handoff_run(iters, |f| {
                let _g = lock.lock(0..4);
                f()
            })
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = uncontended, disjoint, handoff }
criterion_main!(benches);
