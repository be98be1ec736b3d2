//! The simulator: real threads on rl-reference's range lock, following
//! Kara's 2013 design, recording the events the kernel side would.
//!
//! - Buffered IO and page-cache fills lock the single page index, add the
//!   page, and unlock.
//! - Faults take mmap_lock (read) first, then the page's range lock: mmap_lock
//!   ranks above the range lock.
//! - Direct IO locks the pages of each bio at submit and unlocks from
//!   completion, on another thread (`tid` of the completion thread, as a
//!   kernel completion runs in irq or kworker context).
//! - Punch hole locks the whole range; truncate locks from the new EOF to
//!   the end of the page space (`~0`).
//!
//! Every lock operation is logged under the log's mutex together with the
//! lock call itself (a request is logged and enqueued in one step through
//! the async API's first poll; a release is logged before the guard is
//! dropped), so the log's order is the order the lock saw. Timestamps are
//! CLOCK_MONOTONIC, like the kernel's.
//!
//! Defect scenarios run the same workload and inject exactly one bug, as a
//! synthetic event sequence on a second tree, so the bug is deterministic
//! and the rest of the trace stays correct.

mod defects;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use rl_reference::{RangeGuard, RangeLock};

use crate::events::{Body, Dev, Event, Mode, PunchOp};

/// The scenarios `rltop simulate` knows.
pub const SCENARIOS: &[&str] = &[
    "mixed",
    "inversion",
    "overlap",
    "unlocked-page",
    "unlock-unheld",
    "unfair",
    "lost-wakeup",
    "deadlock",
    "leak",
];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: String,
    pub seed: u64,
    /// About how many events to record (the workload stops once reached).
    pub events: u64,
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown scenario {0:?}: known scenarios are {list}", list = SCENARIOS.join(", "))]
    UnknownScenario(String),
    #[error("--threads must be between 1 and 64")]
    Threads,
}

/// The simulated file: one range lock tree over its page cache.
pub const TREE: u64 = 0xffff_8880_1000_0000;
pub const DEV: Dev = Dev { major: 8, minor: 1 };
pub const INO: u64 = 12;
/// The simulated process's mm.
pub const MM: u64 = 0xffff_8880_2000_0000;
/// The process id of the simulated tasks; task `i` has tid `PID + i`.
pub const PID: u32 = 4000;
/// Pages in the simulated file.
const FILE_PAGES: u64 = 256;
const PAGE: u64 = 4096;

/// The event log shared by every simulated task.
pub(crate) struct Log {
    start_mono: u64,
    start: Instant,
    events: Mutex<Vec<Event>>,
    budget: u64,
    next_lock: AtomicU64,
}

impl Log {
    fn new(budget: u64) -> Log {
        Log {
            start_mono: crate::clock::monotonic_ns(),
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            budget,
            next_lock: AtomicU64::new(1),
        }
    }

    fn now(&self) -> u64 {
        self.start_mono + self.start.elapsed().as_nanos() as u64
    }

    /// Logs one event of task `tid` (`pid` is the simulated process).
    fn push(&self, tid: u32, body: Body) {
        let mut g = self.events.lock().expect("log poisoned");
        Self::push_locked(&mut g, self.now(), tid, body);
    }

    fn push_locked(g: &mut Vec<Event>, ts: u64, tid: u32, body: Body) {
        // Keep timestamps strictly ordered with the log, as a reader expects.
        let ts = g.last().map_or(ts, |l| ts.max(l.ts + 1));
        let pid = if tid == 0 { 0 } else { PID };
        g.push(Event {
            ts,
            tid,
            pid,
            cpu: None,
            body,
        });
    }

    fn full(&self) -> bool {
        self.events.lock().expect("log poisoned").len() as u64 >= self.budget
    }

    /// A fresh lock id (the kernel's `struct range_lock` address).
    fn lock_id(&self) -> u64 {
        0xffff_c900_0000_0000 + 0x48 * self.next_lock.fetch_add(1, Ordering::Relaxed)
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A held range lock and the id it was logged under.
pub(crate) struct Held<'a> {
    guard: RangeGuard<'a>,
    id: u64,
}

/// Locks `[start, last]` on `lock` as task `tid`, logging `rl_request` and
/// `rl_acquired` in the order the lock queues and grants.
fn acquire<'a>(log: &Log, tid: u32, lock: &'a RangeLock, start: u64, last: u64) -> Held<'a> {
    let id = log.lock_id();
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(lock.lock_async(start..=last));
    {
        let mut g = log.events.lock().expect("log poisoned");
        Log::push_locked(
            &mut g,
            log.now(),
            tid,
            Body::RlRequest {
                tree: TREE,
                lock: id,
                start,
                last,
                mode: Mode::Excl,
            },
        );
        // The first poll joins the lock's queue, under the log's mutex.
        if let Some(held) = poll_logged(log, &mut g, tid, id, fut.as_mut(), &mut cx) {
            return held;
        }
    }
    loop {
        std::thread::park();
        let mut g = log.events.lock().expect("log poisoned");
        if let Some(held) = poll_logged(log, &mut g, tid, id, fut.as_mut(), &mut cx) {
            return held;
        }
    }
}

/// Polls a lock future with the log held; when it is granted, logs
/// `rl_acquired` before anyone else can log anything.
fn poll_logged<'a>(
    log: &Log,
    g: &mut Vec<Event>,
    tid: u32,
    id: u64,
    fut: std::pin::Pin<&mut rl_reference::LockFuture<'a>>,
    cx: &mut Context<'_>,
) -> Option<Held<'a>> {
    let Poll::Ready(guard) = fut.poll(cx) else {
        return None;
    };
    Log::push_locked(
        g,
        log.now(),
        tid,
        Body::RlAcquired {
            tree: TREE,
            lock: id,
        },
    );
    Some(Held { guard, id })
}

/// Unlocks as task `tid` (which may differ from the locker), logging
/// `rl_release` before the lock lets anyone else in.
fn release(log: &Log, tid: u32, held: Held<'_>) {
    let mut g = log.events.lock().expect("log poisoned");
    Log::push_locked(
        &mut g,
        log.now(),
        tid,
        Body::RlRelease {
            tree: TREE,
            lock: held.id,
        },
    );
    drop(held.guard);
}

/// A small deterministic PRNG (splitmix64): simulations replay by seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A DIO whose range lock is handed to the completion thread.
struct Completion<'a> {
    held: Held<'a>,
    io: u64,
    len: u64,
}

/// One simulated task's loop of file operations, until the log is full.
#[allow(clippy::too_many_lines)] // one arm per scenario or step of the simulated task
fn task<'a>(
    log: &Log,
    lock: &'a RangeLock,
    tid: u32,
    seed: u64,
    complete: &mpsc::Sender<Completion<'a>>,
) {
    let mut rng = Rng::new(seed);
    // Per-task io ids (the kernel's kiocb addresses): unique across tasks.
    let mut next_io = 0xffff_8881_0000_0000 + (u64::from(tid) << 24);
    while !log.full() {
        let page = rng.below(FILE_PAGES);
        match rng.below(100) {
            // Buffered read filling one page: lock the index, add, unlock.
            0..=34 => {
                let h = acquire(log, tid, lock, page, page);
                log.push(
                    tid,
                    Body::PageAdd {
                        dev: DEV,
                        ino: INO,
                        index: page,
                        order: Some(0),
                    },
                );
                release(log, tid, h);
            }
            // A fault: mmap_lock first, then the page's range lock.
            35..=69 => {
                log.push(
                    tid,
                    Body::MmapLockRequest {
                        mm: MM,
                        write: false,
                    },
                );
                log.push(
                    tid,
                    Body::MmapLockAcquired {
                        mm: MM,
                        write: false,
                        success: true,
                    },
                );
                log.push(
                    tid,
                    Body::Fault {
                        dev: DEV,
                        ino: INO,
                        index: page,
                    },
                );
                let h = acquire(log, tid, lock, page, page);
                log.push(
                    tid,
                    Body::PageAdd {
                        dev: DEV,
                        ino: INO,
                        index: page,
                        order: Some(0),
                    },
                );
                release(log, tid, h);
                log.push(
                    tid,
                    Body::MmapLockRelease {
                        mm: MM,
                        write: false,
                    },
                );
            }
            // Direct IO of one bio: lock at submit, unlock at completion.
            70..=89 => {
                let pages = 1 + rng.below(8);
                let last = (page + pages - 1).min(FILE_PAGES - 1);
                next_io += 1;
                let io = next_io;
                let len = (last - page + 1) * PAGE;
                log.push(
                    tid,
                    Body::DioBegin {
                        io,
                        dev: DEV,
                        ino: INO,
                        pos: page * PAGE,
                        len,
                        write: rng.below(2) == 0,
                    },
                );
                let held = acquire(log, tid, lock, page, last);
                if complete.send(Completion { held, io, len }).is_err() {
                    return;
                }
            }
            // Punch hole: the whole range, until the blocks are freed.
            90..=96 => {
                let pages = 1 + rng.below(16);
                let last = (page + pages - 1).min(FILE_PAGES - 1);
                log.push(
                    tid,
                    Body::PunchBegin {
                        dev: DEV,
                        ino: INO,
                        pos: page * PAGE,
                        len: (last - page + 1) * PAGE,
                        op: PunchOp::Punch,
                        id: None,
                    },
                );
                let h = acquire(log, tid, lock, page, last);
                std::thread::yield_now();
                release(log, tid, h);
                log.push(tid, Body::PunchEnd { ret: 0, id: None });
            }
            // Truncate to `page`: punch from the new EOF to ~0.
            _ => {
                log.push(
                    tid,
                    Body::TruncateBegin {
                        dev: DEV,
                        ino: INO,
                        size: page * PAGE,
                        id: None,
                    },
                );
                let h = acquire(log, tid, lock, page, u64::MAX);
                release(log, tid, h);
                log.push(tid, Body::TruncateEnd { ret: 0, id: None });
            }
        }
    }
}

/// Runs a scenario and returns its events, in order.
pub fn simulate(cfg: &Config) -> Result<Vec<Event>, SimError> {
    if !SCENARIOS.contains(&cfg.scenario.as_str()) {
        return Err(SimError::UnknownScenario(cfg.scenario.clone()));
    }
    if cfg.threads == 0 || cfg.threads > 64 {
        return Err(SimError::Threads);
    }
    let log = Log::new(cfg.events.max(16));
    log.push(
        PID,
        Body::Task {
            comm: "simfs".into(),
            kthread: false,
        },
    );
    log.push(
        PID,
        Body::Tree {
            tree: TREE,
            dev: DEV,
            ino: INO,
        },
    );
    let lock = RangeLock::new();
    // The completion "context": one thread, like a kworker.
    const COMPLETION_TID: u32 = PID + 999;
    log.push(
        COMPLETION_TID,
        Body::Task {
            comm: "kworker/sim".into(),
            kthread: true,
        },
    );
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<Completion<'_>>();
        let log = &log;
        let lock = &lock;
        s.spawn(move || {
            // The bio's pages are unlocked as it completes; the DIO ends after.
            for c in rx {
                release(log, COMPLETION_TID, c.held);
                log.push(
                    COMPLETION_TID,
                    Body::DioEnd {
                        io: c.io,
                        ret: c.len as i64,
                    },
                );
            }
        });
        for i in 0..cfg.threads {
            let tid = PID + 1 + i as u32;
            let tx = tx.clone();
            let seed = cfg.seed ^ (0x5151_0000 + i as u64);
            s.spawn(move || {
                log.push(
                    tid,
                    Body::Task {
                        comm: format!("fsx.{i}"),
                        kthread: false,
                    },
                );
                task(log, lock, tid, seed, &tx);
                log.push(tid, Body::Exit);
            });
        }
        drop(tx);
    });
    let mut events = log.events.into_inner().expect("log poisoned");
    defects::inject(&cfg.scenario, &mut events, cfg.seed);
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_trace_is_consistent_with_a_range_lock() {
        let events = simulate(&Config {
            scenario: "mixed".into(),
            seed: 7,
            events: 4000,
            threads: 4,
        })
        .unwrap();
        assert!(events.len() >= 4000);
        assert!(
            events.windows(2).all(|w| w[0].ts < w[1].ts),
            "timestamps strictly increase"
        );
        // Replaying the lock events through the reference state machine:
        // every acquisition is one the reference grants at that point.
        let mut sm = rl_reference::excl_fifo::StateMachine::new();
        let mut granted = std::collections::HashSet::new();
        for e in &events {
            match &e.body {
                Body::RlRequest {
                    lock, start, last, ..
                } if sm
                    .request(*lock, *start, *last, rl_reference::Mode::Write)
                    .unwrap()
                    == rl_reference::Outcome::Granted =>
                {
                    granted.insert(*lock);
                }
                Body::RlAcquired { lock, .. } => assert!(
                    granted.contains(lock),
                    "lock {lock:#x} acquired before the reference grants it"
                ),
                Body::RlRelease { lock, .. } => {
                    granted.remove(lock);
                    granted.extend(sm.release(*lock).unwrap());
                }
                _ => {}
            }
        }
        assert_eq!(sm.len(), 0, "every lock released at the end");
    }

    #[test]
    fn unknown_scenario_is_named() {
        let e = simulate(&Config {
            scenario: "nope".into(),
            seed: 1,
            events: 10,
            threads: 1,
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown scenario \"nope\""));
    }
}
