//! The discrete-event replay of one policy through the reference lock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rl_reference::{ExclFifo, Mode as RefMode, Outcome, Rw, StateMachine};
use serde::Serialize;

use super::{Figures, FileOp, Fs, MAINLINE_LOCKS, OpKind, ratio};
use crate::events::{Dev, FileLockClass};
use crate::model::{FastMap, flock};

/// How the replay locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Kara's range locking.
    Range,
    /// The whole file, exclusively.
    WholeFile,
    /// The whole file, shared by page-cache fills, faults and DIO,
    /// exclusive for punch and truncate.
    FileShared,
    /// What mainline takes (`docs/kernel-fs-ops.md`): two whole-file
    /// rw_semaphores per file, `i_rwsem` then `invalidate_lock`:
    /// - a page-cache fill (`page_add`): `invalidate_lock` shared;
    /// - a fault: nothing (a fault that must read the page in fills it,
    ///   and that `page_add` takes the lock);
    /// - a DIO: `i_rwsem` from submit to completion, shared for reads and
    ///   for the writes the filesystem shares (`FileOp::shares_i_rwsem`),
    ///   else exclusive. A punch or truncate that has `i_rwsem` still
    ///   waits for DIOs in flight (`inode_dio_wait`): holding `i_rwsem`
    ///   to completion models both;
    /// - punch, zero, collapse, insert and truncate: `i_rwsem` exclusive,
    ///   then `invalidate_lock` exclusive where the filesystem takes it
    ///   (not btrfs), for the operation's duration.
    Mainline,
}

impl Policy {
    /// Every policy, in the order of the report's rows.
    pub const ALL: [Policy; 4] = [
        Policy::Range,
        Policy::WholeFile,
        Policy::FileShared,
        Policy::Mainline,
    ];

    /// How many locks a file has under the policy.
    fn locks(self) -> usize {
        match self {
            Policy::Mainline => MAINLINE_LOCKS.len(),
            _ => 1,
        }
    }
}

/// One lock an operation takes, in order.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// Which of the file's locks.
    lock: usize,
    start: u64,
    last: u64,
    mode: RefMode,
}

/// The locks operation `o` takes under `policy`, in order (at most two).
fn steps(policy: Policy, o: &FileOp) -> ([Step; 2], usize) {
    let whole = |lock, mode| Step {
        lock,
        start: 0,
        last: u64::MAX,
        mode,
    };
    let none = whole(0, RefMode::Read);
    let write = matches!(o.kind, OpKind::Punch | OpKind::Truncate);
    let mode = if write { RefMode::Write } else { RefMode::Read };
    match policy {
        Policy::Range => (
            [
                Step {
                    lock: 0,
                    start: o.start,
                    last: o.last,
                    mode: RefMode::EXCLUSIVE,
                },
                none,
            ],
            1,
        ),
        Policy::WholeFile => ([whole(0, RefMode::EXCLUSIVE), none], 1),
        Policy::FileShared => ([whole(0, mode), none], 1),
        Policy::Mainline => {
            let (ir, il) = (0, 1);
            match o.kind {
                OpKind::PageAdd => ([whole(il, RefMode::Read), none], 1),
                OpKind::Fault => ([none, none], 0),
                OpKind::DioRead | OpKind::DioWrite => {
                    let m = if o.shares_i_rwsem {
                        RefMode::Read
                    } else {
                        RefMode::Write
                    };
                    ([whole(ir, m), none], 1)
                }
                OpKind::Punch | OpKind::Truncate => {
                    // The filesystem's own table; an unknown one as ext4
                    // and XFS (the generic `truncate_pagecache` callers
                    // take both).
                    let takes_il = match o.fs {
                        Fs::Ext4 => "ext4",
                        Fs::Xfs => "xfs",
                        Fs::Btrfs => "btrfs",
                        Fs::Other => "ext4",
                    };
                    if flock::op_locks(takes_il).contains(&FileLockClass::InvalidateLock) {
                        ([whole(ir, RefMode::Write), whole(il, RefMode::Write)], 2)
                    } else {
                        ([whole(ir, RefMode::Write), none], 1)
                    }
                }
            }
        }
    }
}

/// One reference lock of a file under a policy.
enum Sm {
    Excl(StateMachine<ExclFifo>),
    Rw(StateMachine<Rw>),
}

impl Sm {
    fn new(policy: Policy) -> Sm {
        match policy {
            Policy::FileShared | Policy::Mainline => Sm::Rw(StateMachine::new()),
            Policy::Range | Policy::WholeFile => Sm::Excl(StateMachine::new()),
        }
    }

    /// Whether request `id` is granted at once.
    fn request(&mut self, id: u64, s: Step) -> bool {
        let r = match self {
            Sm::Excl(sm) => sm.request(id, s.start, s.last, RefMode::EXCLUSIVE),
            Sm::Rw(sm) => sm.request(id, s.start, s.last, s.mode),
        };
        // Ids are op indices (unique) and ranges valid: never an error.
        matches!(r, Ok(Outcome::Granted))
    }

    fn release(&mut self, id: u64) -> Vec<u64> {
        match self {
            Sm::Excl(sm) => sm.release(id),
            Sm::Rw(sm) => sm.release(id),
        }
        .unwrap_or_default()
    }
}

/// Per-file state of a replay.
struct FileState {
    locks: Vec<Sm>,
    fig: Figures,
    /// Operations holding all their locks.
    held: u64,
    busy_since: u64,
    first: Option<u64>,
}

/// An operation that arrived and is not yet granted all its locks.
#[derive(Clone, Copy)]
struct Arrived {
    at: u64,
    /// The step it waits for.
    step: usize,
    /// When it asked for that step's lock.
    step_at: u64,
}

/// Per-task state of a replay.
#[derive(Default)]
struct TaskState {
    /// Its operations released but not yet arrived, in order.
    queue: VecDeque<u64>,
    /// An operation of it is arriving or waiting: the next one must wait
    /// for its grant.
    busy: bool,
    /// How much later than in the trace it runs: the waits predicted so
    /// far less those measured in the trace; negative (earlier) only
    /// from an operation's arrival to its grant.
    lag: i64,
    /// When its last operation was granted.
    ready_at: u64,
}

/// The discrete-event replay of one policy (see the module docs). Push
/// operations in arrival order; `advance(h)` runs the simulation up to
/// (not including) time `h`, which is safe once every operation arriving
/// before `h` was pushed.
pub struct Replay {
    policy: Policy,
    next_id: u64,
    /// Operations pushed and not yet released, by id.
    ops: FastMap<u64, FileOp>,
    arrived: FastMap<u64, Arrived>,
    tasks: FastMap<u32, TaskState>,
    files: FastMap<(Dev, u64), FileState>,
    /// `(time, 0 = release / 1 = arrival, id)`: releases first at equal
    /// times, then by id (arrival order): deterministic.
    queue: BinaryHeap<Reverse<(u64, u8, u64)>>,
    /// The tasks' negative lags (a multiset): a task running earlier than
    /// the trace may arrive before the time its trace events were seen,
    /// so the simulation stays that far behind what was pushed.
    early: BTreeMap<i64, u32>,
    /// The simulated time reached.
    clock: u64,
}

const RELEASE: u8 = 0;
const ARRIVAL: u8 = 1;

impl Replay {
    pub fn new(policy: Policy) -> Replay {
        Replay {
            policy,
            next_id: 0,
            ops: FastMap::default(),
            arrived: FastMap::default(),
            tasks: FastMap::default(),
            files: FastMap::default(),
            queue: BinaryHeap::new(),
            early: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The next operation, in arrival order.
    pub fn push(&mut self, op: FileOp) {
        let id = self.next_id;
        self.next_id += 1;
        self.ops.insert(id, op);
        let t = self.tasks.entry(op.tid).or_default();
        t.queue.push_back(id);
        if !t.busy {
            self.schedule_next(op.tid);
        }
    }

    /// Sets a task's lag, keeping `early` up to date.
    fn set_lag(&mut self, tid: u32, lag: i64) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        let old = std::mem::replace(&mut t.lag, lag);
        if old < 0
            && let Some(n) = self.early.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.early.remove(&old);
            }
        }
        if lag < 0 {
            *self.early.entry(lag).or_default() += 1;
        }
    }

    /// Schedules the arrival of the task's next released operation.
    fn schedule_next(&mut self, tid: u32) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        let Some(id) = t.queue.pop_front() else {
            t.busy = false;
            return;
        };
        t.busy = true;
        let (ts, measured) = self
            .ops
            .get(&id)
            .map_or((0, 0), |o| (o.ts, o.measured_wait()));
        // The trace's time already holds the wait measured before it.
        let lag = t
            .lag
            .saturating_sub(i64::try_from(measured).unwrap_or(i64::MAX));
        let ready_at = t.ready_at;
        self.set_lag(tid, lag);
        // Never in the simulation's past (a trace out of order).
        let natural = (i128::from(ts) + i128::from(lag)).clamp(0, i128::from(u64::MAX));
        let at = u64::try_from(natural)
            .unwrap_or(0)
            .max(ready_at)
            .max(self.clock);
        self.queue.push(Reverse((at, ARRIVAL, id)));
    }

    /// Runs every simulation event before time `until`, less how early a
    /// task may run (see `early`).
    pub fn advance(&mut self, until: u64) {
        let behind = self.early.keys().next().map_or(0, |&l| l.unsigned_abs());
        let until = until.saturating_sub(behind);
        while let Some(&Reverse((t, what, id))) = self.queue.peek() {
            if t >= until {
                break;
            }
            self.queue.pop();
            self.clock = t;
            self.step(t, what, id);
        }
    }

    fn file(&mut self, o: &FileOp) -> &mut FileState {
        let policy = self.policy;
        self.files
            .entry((o.dev, o.ino))
            .or_insert_with(|| FileState {
                locks: (0..policy.locks()).map(|_| Sm::new(policy)).collect(),
                fig: Figures::default(),
                held: 0,
                busy_since: 0,
                first: None,
            })
    }

    fn step(&mut self, t: u64, what: u8, id: u64) {
        let Some(&o) = self.ops.get(&id) else { return };
        if what == ARRIVAL {
            let f = self.file(&o);
            f.fig.ops += 1;
            f.first.get_or_insert(t);
            self.arrived.insert(
                id,
                Arrived {
                    at: t,
                    step: 0,
                    step_at: t,
                },
            );
            self.proceed(id, t);
            return;
        }
        let policy = self.policy;
        let f = self.file(&o);
        f.held -= 1;
        if f.held == 0 {
            f.fig.busy_ns += t.saturating_sub(f.busy_since);
        }
        f.fig.span_ns = t.saturating_sub(f.first.unwrap_or(t));
        let (st, n) = steps(policy, &o);
        let mut granted = Vec::new();
        for s in &st[..n] {
            granted.extend(f.locks[s.lock].release(id));
        }
        self.ops.remove(&id);
        for g in granted {
            self.step_granted(g, t);
            self.proceed(g, t);
        }
    }

    /// Operation `id`'s current step was granted at `t` after a wait.
    fn step_granted(&mut self, id: u64, t: u64) {
        let Some(&o) = self.ops.get(&id) else { return };
        let policy = self.policy;
        let Some(a) = self.arrived.get_mut(&id) else {
            return;
        };
        let (st, _) = steps(policy, &o);
        let waited = t.saturating_sub(a.step_at);
        let lock = st[a.step].lock;
        a.step += 1;
        a.step_at = t;
        if policy == Policy::Mainline && waited > 0 {
            let f = self.file(&o);
            f.fig
                .waits_by_lock
                .entry(MAINLINE_LOCKS[lock].as_str())
                .or_default()
                .one(waited);
        }
    }

    /// Asks for operation `id`'s remaining locks, in order, until one
    /// makes it wait; granted all of them, it runs.
    fn proceed(&mut self, id: u64, t: u64) {
        let Some(&o) = self.ops.get(&id) else { return };
        let (st, n) = steps(self.policy, &o);
        let Some(mut step) = self.arrived.get(&id).map(|a| a.step) else {
            return;
        };
        while step < n {
            let s = st[step];
            if !self.file(&o).locks[s.lock].request(id, s) {
                if let Some(a) = self.arrived.get_mut(&id) {
                    a.step = step;
                    a.step_at = t;
                }
                return;
            }
            step += 1;
        }
        self.granted(id, t);
    }

    /// Operation `id` holds all its locks from `t`.
    fn granted(&mut self, id: u64, t: u64) {
        let Some(&o) = self.ops.get(&id) else { return };
        let wait = t.saturating_sub(self.arrived.remove(&id).map_or(t, |a| a.at));
        let f = self.file(&o);
        if f.held == 0 {
            f.busy_since = t;
        }
        f.held += 1;
        f.fig.max_concurrent = f.fig.max_concurrent.max(f.held);
        f.fig.hold_total_ns += o.hold;
        let policy = self.policy;
        let f = self.file(&o);
        if policy == Policy::Mainline {
            f.fig.vs_measured.one(wait, o.measured_wait());
        }
        if wait > 0 {
            f.fig.waited += 1;
            f.fig.wait_total_ns += wait;
            f.fig.wait_max_ns = f.fig.wait_max_ns.max(wait);
            f.fig.waits_by_kind.entry(o.kind).or_default().one(wait);
        }
        self.queue
            .push(Reverse((t.saturating_add(o.hold), RELEASE, id)));
        // The task goes on, `wait` later than it did in the trace; never
        // earlier than the trace: a wait shorter than the one measured
        // starts this operation earlier, not all that follow (the model's
        // holds are not the kernel's, and a lead would grow op by op: a
        // punch loop that waited behind readahead would drift away from
        // the readers it raced with).
        let task = self.tasks.entry(o.tid).or_default();
        task.ready_at = t;
        let lag = task
            .lag
            .saturating_add(i64::try_from(wait).unwrap_or(i64::MAX))
            .max(0);
        self.set_lag(o.tid, lag);
        self.schedule_next(o.tid);
    }

    /// Runs the simulation to its end; the figures per file.
    pub fn finish(mut self) -> BTreeMap<(Dev, u64), Figures> {
        self.early.clear();
        self.advance(u64::MAX);
        // Releases at u64::MAX (saturated) are the only ones left.
        while let Some(Reverse((t, what, id))) = self.queue.pop() {
            self.clock = t;
            self.step(t, what, id);
        }
        self.files
            .into_iter()
            .map(|(k, mut f)| {
                f.fig.parallelism = ratio(f.fig.hold_total_ns, f.fig.busy_ns);
                (k, f.fig)
            })
            .collect()
    }
}

/// Replays `ops` (in arrival order, as [`super::Collector`] releases them)
/// under `policy`. Returns the figures per file, keyed by `(dev, ino)`.
pub fn replay(ops: &[FileOp], policy: Policy) -> BTreeMap<(Dev, u64), Figures> {
    let mut r = Replay::new(policy);
    for &o in ops {
        r.push(o);
    }
    r.finish()
}
