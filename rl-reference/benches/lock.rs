//! Side-by-side: rl-reference vs the `range-lock` and `range-mutex` crates.
//!
//! `cargo bench -p rl-reference --bench lock -- table` (or `cargo xtask bench
//! lock`) prints the table: N = 10, 1 000, 100 000 ranges already held, and
//! every lock runs the same precomputed sequence of random ranges:
//!
//! - `probe`: lock + unlock (the guard dropped at once) of a random free
//!   range; the held set stays.
//! - `churn`: lock a random free range, then unlock a random held one (not
//!   the one just taken): the held set moves, locks and unlocks come in
//!   random order. The guards live in a table indexed by slot, as an
//!   application holding N ranges needs; its cache misses are the same for
//!   every lock (and dilute the ratios at N = 100 000).
//!
//! The ops are precomputed, ranges inline, and replayed in a cycle.
//!
//! Ranges: M = 2N slots, slot i is `[16i + a, 16i + a + b]` with random
//! `a, b < 8`, so slots never overlap and every lock is granted at once
//! (`range-lock` cannot wait, `range-mutex` would deadlock); the held set is
//! N random slots taken in random order. The exclusive rows use
//! `RangeLock`; the rw rows `RwRangeLock` with a random mode per request
//! (half read, half write). The crates have no shared mode: they lock the
//! same ranges exclusively, so their figures serve both rows. All locks run
//! in turn within each round (order rotated), several rounds; the table
//! gives the median ns per op of each, and rl-reference's speed relative to
//! the faster crate (its time / rl-reference's: above 1 is faster) as the
//! median, min and max of the per-round ratios.
//!
//! Without `table`, criterion runs the two-thread cases:
//! - `disjoint_2threads/<lock>`: two threads, each lock + unlock of its own
//!   range; time per iteration = both threads doing one op each.
//! - `handoff/<lock>`: two threads take strict turns on one range (each turn
//!   is checked under the lock); time per turn = one handoff.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::Criterion;
use range_lock::{VecRangeLock, VecRangeLockGuard};
use range_mutex::{RangeMutex, RangeMutexGuard};
use rl_reference::{RangeGuard, RangeLock, ReadGuard, RwRangeLock, WriteGuard};

fn r(start: usize, last: usize) -> std::ops::RangeInclusive<u64> {
    start as u64..=last as u64
}

// ----- the table -----------------------------------------------------------

/// splitmix64: a fixed seed, so every lock sees the same ranges.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Probe,
    Churn,
}

/// One op: lock slot `lock` (in mode `write`), then unlock slot `unlock`
/// (the same slot for a probe).
/// The range is inline, so that replaying the plan reads it sequentially
/// (a random look-up would add the same cache miss to every lock's time).
#[derive(Clone, Copy)]
struct Op {
    start: usize,
    last: usize,
    lock: u32,
    unlock: u32,
    write: bool,
}

struct Plan {
    /// `(start, last)` of each slot.
    slots: Vec<(usize, usize)>,
    /// Initially held slots, in the order they are taken, and their mode.
    held: Vec<(u32, bool)>,
    /// A cycle: after the last op the held set is the initial one again.
    ops: Vec<Op>,
    workload: Workload,
}

impl Plan {
    fn new(n: usize, workload: Workload, seed: u64) -> Plan {
        let mut rng = Rng(seed);
        let m = 2 * n;
        let slots: Vec<(usize, usize)> = (0..m)
            .map(|i| {
                let a = 16 * i + rng.below(8);
                (a, a + rng.below(8))
            })
            .collect();
        // A random half, in random order (Fisher-Yates).
        let mut perm: Vec<u32> = (0..m as u32).collect();
        for i in (1..m).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        let held: Vec<(u32, bool)> = perm[..n]
            .iter()
            .map(|&s| (s, rng.next() & 1 == 1))
            .collect();
        let mut busy: Vec<u32> = perm[..n].to_vec();
        let mut free: Vec<u32> = perm[n..].to_vec();
        let len = 1 << 16;
        let mut ops = Vec::with_capacity(len + n);
        for _ in 0..len {
            let fi = rng.below(free.len());
            let a = free[fi];
            let write = rng.next() & 1 == 1;
            match workload {
                Workload::Probe => ops.push(Op {
                    start: 0,
                    last: 0,
                    lock: a,
                    unlock: a,
                    write,
                }),
                Workload::Churn => {
                    let bi = rng.below(busy.len());
                    let b = busy[bi];
                    ops.push(Op {
                        start: 0,
                        last: 0,
                        lock: a,
                        unlock: b,
                        write,
                    });
                    free[fi] = b;
                    busy[bi] = a;
                }
            }
        }
        if workload == Workload::Churn {
            // Close the cycle: take back the initial slots that are free
            // while dropping the ones that were not held initially.
            let mut initial = vec![false; m];
            for &(s, _) in &held {
                initial[s as usize] = true;
            }
            let back: Vec<u32> = free
                .iter()
                .copied()
                .filter(|&s| initial[s as usize])
                .collect();
            let gone: Vec<u32> = busy
                .iter()
                .copied()
                .filter(|&s| !initial[s as usize])
                .collect();
            assert_eq!(back.len(), gone.len());
            let mut mode = vec![false; m];
            for &(s, w) in &held {
                mode[s as usize] = w;
            }
            for (&a, &b) in back.iter().zip(&gone) {
                ops.push(Op {
                    start: 0,
                    last: 0,
                    lock: a,
                    unlock: b,
                    write: mode[a as usize],
                });
            }
        }
        let slots: Vec<(usize, usize)> = slots;
        for op in &mut ops {
            (op.start, op.last) = slots[op.lock as usize];
        }
        Plan {
            slots,
            held,
            ops,
            workload,
        }
    }
}

/// A lock under test: its guards, one per slot, and the cursor in the plan.
trait Subject {
    /// Run `count` ops of the plan from the cursor on.
    fn run(&mut self, plan: &Plan, count: usize);
}

macro_rules! subject {
    ($ty:ident, $lock:ty, $guard:ty, |$l:ident, $range:ident, $write:ident| $take:expr) => {
        struct $ty {
            lock: &'static $lock,
            guards: Vec<Option<$guard>>,
            cursor: usize,
        }

        impl $ty {
            fn new($l: $lock, plan: &Plan, sorted_setup: bool) -> Self {
                // Leaked, so that the guards can live beside it (a few MB
                // in all for the whole run).
                let lock: &'static $lock = Box::leak(Box::new($l));
                let mut guards: Vec<Option<$guard>> = Vec::new();
                guards.resize_with(plan.slots.len(), || None);
                let mut s = Self {
                    lock,
                    guards,
                    cursor: 0,
                };
                let mut held = plan.held.clone();
                if sorted_setup {
                    held.sort();
                }
                for (slot, w) in held {
                    let g = s.take(plan, slot, w);
                    s.guards[slot as usize] = Some(g);
                }
                s
            }

            #[inline]
            fn take(&self, plan: &Plan, slot: u32, $write: bool) -> $guard {
                let $range = plan.slots[slot as usize];
                let $l = self.lock;
                $take
            }

            #[inline]
            fn take_op(&self, op: &Op) -> $guard {
                let $range = (op.start, op.last);
                let $write = op.write;
                let $l = self.lock;
                $take
            }
        }

        impl Subject for $ty {
            fn run(&mut self, plan: &Plan, count: usize) {
                let mut c = self.cursor;
                let probe = plan.workload == Workload::Probe;
                for _ in 0..count {
                    let op = &plan.ops[c];
                    let g = self.take_op(op);
                    if probe {
                        drop(black_box(g));
                    } else {
                        self.guards[op.lock as usize] = Some(black_box(g));
                        self.guards[op.unlock as usize] = None;
                    }
                    c += 1;
                    if c == plan.ops.len() {
                        c = 0;
                    }
                }
                self.cursor = c;
            }
        }

        impl Drop for $ty {
            fn drop(&mut self) {
                // range-mutex's unlock shifts a sorted Vec: drop from the end.
                while self.guards.pop().is_some() {}
            }
        }
    };
}

subject!(RefExcl, RangeLock, RangeGuard<'static>, |l, range, _w| l
    .lock(r(range.0, range.1)));
enum RwGuard {
    R(#[allow(dead_code)] ReadGuard<'static>),
    W(#[allow(dead_code)] WriteGuard<'static>),
}
subject!(RefRw, RwRangeLock, RwGuard, |l, range, w| if w {
    RwGuard::W(l.write(r(range.0, range.1)))
} else {
    RwGuard::R(l.read(r(range.0, range.1)))
});
subject!(
    CrateRangeLock,
    VecRangeLock<u8>,
    VecRangeLockGuard<'static, u8>,
    |l, range, _w| l.try_lock(range.0..range.1 + 1).expect("disjoint")
);
subject!(CrateRangeMutex, RangeMutex<u8, Vec<u8>>, RangeMutexGuard<'static, u8>,
    |l, range, _w| l.lock(range.0..range.1 + 1));

/// ns per op of `s`: ops in batches until `target` has passed.
fn measure(s: &mut dyn Subject, plan: &Plan, target: Duration) -> f64 {
    let start = Instant::now();
    let mut ops = 0usize;
    let mut batch = 16;
    loop {
        s.run(plan, batch);
        ops += batch;
        let t = start.elapsed();
        if t >= target {
            return t.as_nanos() as f64 / ops as f64;
        }
        batch = (batch * 2).min(1 << 14);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Args {
    rounds: usize,
    ms: u64,
    ns: Vec<usize>,
    /// Profiling: run only this lock (`ref`, `rw`, `range-lock`,
    /// `range-mutex`) and this workload, for `ops` ops, and print nothing.
    only: Option<(String, String, usize)>,
}

/// One lock alone, for a profiler: `--only ref|rw|range-lock|range-mutex
/// probe|churn OPS`.
fn profile(args: &Args, who: &str, workload: &str, ops: usize) {
    let workload = match workload {
        "probe" => Workload::Probe,
        "churn" => Workload::Churn,
        w => panic!("unknown workload {w}"),
    };
    for &n in &args.ns {
        let plan = Plan::new(n, workload, 0x5eed ^ n as u64);
        let data = || vec![0u8; 16 * plan.slots.len() + 16];
        let mut s: Box<dyn Subject> = match who {
            "ref" => Box::new(RefExcl::new(RangeLock::new(), &plan, false)),
            "rw" => Box::new(RefRw::new(RwRangeLock::new(), &plan, false)),
            "range-lock" => Box::new(CrateRangeLock::new(VecRangeLock::new(data()), &plan, false)),
            "range-mutex" => Box::new(CrateRangeMutex::new(RangeMutex::new(data()), &plan, true)),
            w => panic!("unknown lock {w}"),
        };
        // Warm up, then the measured part.
        s.run(&plan, ops);
        let t = Instant::now();
        s.run(&plan, ops);
        eprintln!(
            "{who} {workload:?} N={n}: {:.1} ns/op",
            t.elapsed().as_nanos() as f64 / ops as f64
        );
    }
}

fn table(args: &Args) {
    println!(
        "| workload | N | mode | rl-reference | range-lock 0.2 | range-mutex 0.1 | speed vs best crate: median (min..max) of {} rounds |",
        args.rounds
    );
    println!("|---|---|---|---|---|---|---|");
    for workload in [Workload::Probe, Workload::Churn] {
        for &n in &args.ns {
            let plan = Plan::new(n, workload, 0x5eed ^ n as u64);
            let data = || vec![0u8; 16 * plan.slots.len() + 16];
            let mut subjects: Vec<Box<dyn Subject>> = vec![
                Box::new(RefExcl::new(RangeLock::new(), &plan, false)),
                Box::new(RefRw::new(RwRangeLock::new(), &plan, false)),
                Box::new(CrateRangeLock::new(VecRangeLock::new(data()), &plan, false)),
                // The held set of a sorted Vec does not depend on the order
                // it was taken in; sorted is O(N) instead of O(N²) to set up.
                Box::new(CrateRangeMutex::new(RangeMutex::new(data()), &plan, true)),
            ];
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
            let target = Duration::from_millis(args.ms);
            for round in 0..args.rounds {
                for k in 0..subjects.len() {
                    let i = (k + round) % subjects.len();
                    times[i].push(measure(subjects[i].as_mut(), &plan, target));
                }
            }
            // Within a round the locks run back to back, so a ratio taken
            // per round cancels most of what other jobs on the machine do.
            let ratios = |i: usize| -> (f64, f64, f64) {
                let mut r: Vec<f64> = (0..args.rounds)
                    .map(|k| times[2][k].min(times[3][k]) / times[i][k])
                    .collect();
                let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.iter().copied().fold(0.0, f64::max);
                (median(&mut r), lo, hi)
            };
            let med: Vec<f64> = times.iter().map(|t| median(&mut t.clone())).collect();
            for (mode, i) in [("exclusive", 0), ("rw (half read)", 1)] {
                let (r, lo, hi) = ratios(i);
                println!(
                    "| {:?} | {} | {} | {:.1} ns | {:.1} ns | {:.1} ns | **{:.2}x** ({:.2}..{:.2}) |",
                    workload, n, mode, med[i], med[2], med[3], r, lo, hi,
                );
            }
            drop(subjects);
        }
    }
}

// ----- criterion: two threads ----------------------------------------------

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

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "table") {
        let mut args = Args {
            rounds: 15,
            ms: 50,
            ns: vec![10, 1_000, 100_000],
            only: None,
        };
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().expect("a value after the option").clone();
            match a.as_str() {
                "--rounds" => args.rounds = val().parse().expect("--rounds N"),
                "--ms" => args.ms = val().parse().expect("--ms MILLISECONDS"),
                "--only" => {
                    let who = val();
                    let workload = val();
                    let ops = val().parse().expect("--only LOCK WORKLOAD OPS");
                    args.only = Some((who, workload, ops));
                }
                "--n" => {
                    args.ns = val()
                        .split(',')
                        .map(|s| s.parse().expect("--n 10,1000"))
                        .collect()
                }
                _ => {}
            }
        }
        match &args.only {
            Some((who, w, ops)) => profile(&args, who, w, *ops),
            None => table(&args),
        }
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    disjoint(&mut c);
    handoff(&mut c);
    c.final_summary();
}
