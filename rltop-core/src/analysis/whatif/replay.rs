//! The discrete-event replay of one policy through the reference lock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rl_reference::{ExclFifo, Mode as RefMode, Outcome, Rw, StateMachine};
use serde::Serialize;

use super::{Figures, FileOp, OpKind, ratio};
use crate::events::Dev;
use crate::model::FastMap;

/// How the replay locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Kara's range locking.
    Range,
    /// The whole file, exclusively.
    WholeFile,
    /// The whole file, shared by page-cache fills, faults and DIO,
    /// exclusive for punch and truncate (invalidate_lock style).
    FileShared,
}

/// The reference lock of one file under a policy.
enum Sm {
    Excl(StateMachine<ExclFifo>),
    Rw(StateMachine<Rw>),
}

impl Sm {
    fn new(policy: Policy) -> Sm {
        match policy {
            Policy::FileShared => Sm::Rw(StateMachine::new()),
            _ => Sm::Excl(StateMachine::new()),
        }
    }

    /// Whether request `id` is granted at once.
    fn request(&mut self, id: u64, start: u64, last: u64, mode: RefMode) -> bool {
        let r = match self {
            Sm::Excl(sm) => sm.request(id, start, last, RefMode::EXCLUSIVE),
            Sm::Rw(sm) => sm.request(id, start, last, mode),
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
    sm: Sm,
    fig: Figures,
    held: u64,
    busy_since: u64,
    first: Option<u64>,
}

/// Per-task state of a replay.
#[derive(Default)]
struct TaskState {
    /// Its operations released but not yet arrived, in order.
    queue: VecDeque<u64>,
    /// An operation of it is arriving or waiting: the next one must wait
    /// for its grant.
    busy: bool,
    /// How much later than in the trace it runs.
    lag: u64,
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
    /// When each operation arrived (until granted).
    arrived: FastMap<u64, u64>,
    tasks: FastMap<u32, TaskState>,
    files: FastMap<(Dev, u64), FileState>,
    /// `(time, 0 = release / 1 = arrival, id)`: releases first at equal
    /// times, then by id (arrival order): deterministic.
    queue: BinaryHeap<Reverse<(u64, u8, u64)>>,
    /// The simulated time reached.
    clock: u64,
}

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

    /// Schedules the arrival of the task's next released operation.
    fn schedule_next(&mut self, tid: u32) {
        let Some(t) = self.tasks.get_mut(&tid) else {
            return;
        };
        match t.queue.pop_front() {
            Some(id) => {
                t.busy = true;
                let ts = self.ops.get(&id).map_or(0, |o| o.ts);
                // Never in the simulation's past (a trace out of order).
                let at = ts.saturating_add(t.lag).max(t.ready_at).max(self.clock);
                self.queue.push(Reverse((at, 1, id)));
            }
            None => t.busy = false,
        }
    }

    /// Runs every simulation event before time `until`.
    pub fn advance(&mut self, until: u64) {
        while let Some(&Reverse((t, what, id))) = self.queue.peek() {
            if t >= until {
                break;
            }
            self.queue.pop();
            self.clock = t;
            self.step(t, what, id);
        }
    }

    fn step(&mut self, t: u64, what: u8, id: u64) {
        let Some(&o) = self.ops.get(&id) else { return };
        let policy = self.policy;
        let f = self
            .files
            .entry((o.dev, o.ino))
            .or_insert_with(|| FileState {
                sm: Sm::new(policy),
                fig: Figures::default(),
                held: 0,
                busy_since: 0,
                first: None,
            });
        let mut granted: Vec<u64> = Vec::new();
        if what == 1 {
            self.arrived.insert(id, t);
            f.fig.ops += 1;
            f.first.get_or_insert(t);
            let (s, l) = match policy {
                Policy::Range => (o.start, o.last),
                Policy::WholeFile | Policy::FileShared => (0, u64::MAX),
            };
            let mode = match o.kind {
                OpKind::Punch | OpKind::Truncate => RefMode::Write,
                _ => RefMode::Read,
            };
            if f.sm.request(id, s, l, mode) {
                granted.push(id);
            }
        } else {
            f.held -= 1;
            if f.held == 0 {
                f.fig.busy_ns += t.saturating_sub(f.busy_since);
            }
            f.fig.span_ns = t.saturating_sub(f.first.unwrap_or(t));
            granted = f.sm.release(id);
            self.ops.remove(&id);
        }
        for g in granted {
            let Some(&go) = self.ops.get(&g) else {
                continue;
            };
            let f = self
                .files
                .get_mut(&(go.dev, go.ino))
                .expect("the same file");
            let wait = t.saturating_sub(self.arrived.remove(&g).unwrap_or(t));
            if f.held == 0 {
                f.busy_since = t;
            }
            f.held += 1;
            f.fig.max_concurrent = f.fig.max_concurrent.max(f.held);
            f.fig.hold_total_ns += go.hold;
            if wait > 0 {
                f.fig.waited += 1;
                f.fig.wait_total_ns += wait;
                f.fig.wait_max_ns = f.fig.wait_max_ns.max(wait);
                let k = f.fig.waits_by_kind.entry(go.kind).or_default();
                k.waited += 1;
                k.wait_total_ns += wait;
            }
            self.queue.push(Reverse((t.saturating_add(go.hold), 0, g)));
            // The task goes on, `wait` later than it did in the trace.
            let task = self.tasks.entry(go.tid).or_default();
            task.lag += wait;
            task.ready_at = t;
            self.schedule_next(go.tid);
        }
    }

    /// Runs the simulation to its end; the figures per file.
    pub fn finish(mut self) -> BTreeMap<(Dev, u64), Figures> {
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

/// Replays `ops` (in arrival order, as [`Collector`] releases them) under
/// `policy`. Returns the figures per file, keyed by `(dev, ino)`.
pub fn replay(ops: &[FileOp], policy: Policy) -> BTreeMap<(Dev, u64), Figures> {
    let mut r = Replay::new(policy);
    for &o in ops {
        r.push(o);
    }
    r.finish()
}

