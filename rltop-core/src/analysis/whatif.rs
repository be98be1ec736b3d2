//! What if: how much would Kara's range locking gain or cost, on the file
//! operations of a trace recorded on a kernel *without* range locks?
//!
//! The trace's file operations are collected ([`Collector`]) and replayed,
//! in a discrete-event simulation over the trace's own timestamps and
//! durations ([`Replay`]), through the reference range lock
//! ([`rl_reference::StateMachine`], one per file) under three policies:
//!
//! - [`Policy::Range`], Kara's 2013 design: buffered IO and page-cache fills
//!   lock the page (`page_add`, the folio's pages for a large folio), faults
//!   the faulting page, DIO the request's byte range from submit to
//!   completion, punch the punched range, truncate from the new EOF to the
//!   end of the page space (`~0`);
//! - [`Policy::WholeFile`], today's serialization (an i_rwsem /
//!   invalidate_lock taken exclusively): the same operations, each holding
//!   the whole file;
//! - [`Policy::FileShared`], the gentler whole-file baseline of
//!   invalidate_lock as mainline uses it: page-cache fills, faults and DIO
//!   share the whole file (reader/writer reference lock, read mode), punch
//!   and truncate take it exclusively.
//!
//! All policies see the same operations with the same hold times, so the
//! differences are those of the locking granularity and modes alone.
//!
//! # The replay
//!
//! - An operation arrives at its begin event's time and holds its lock for
//!   its observed duration (`dio_end - dio_begin`, `punch_end -
//!   punch_begin`, `truncate_end - truncate_begin`). `page_add` and `fault`
//!   are instants in the trace: they hold for [`Config::page_hold_ns`], an
//!   assumption of the model that the output states.
//! - A task does one thing at a time: when one of its operations waits for
//!   `w` ns, everything the task does afterwards arrives `w` ns later (its
//!   *lag*); the next operation of a task arrives only once the previous one
//!   was granted. The hold itself does not delay the task beyond what the
//!   trace shows (a DIO's task goes on after submitting it, as recorded).
//! - Requests are granted by the reference lock: FIFO among overlapping
//!   requests. At equal times releases go first, then arrivals, in trace
//!   order: the replay is deterministic.
//! - Operations whose begin or end is missing (lost, or outside the trace)
//!   are not replayed; they are counted as `unmatched`.
//!
//! Figures per file and policy: how many operations waited, total / max /
//! mean wait, the time the file's lock was busy (some range held), the
//! *parallelism* (sum of hold times over busy time: the mean number of
//! operations running at once while any runs; 1.0 under whole-file
//! serialization by construction) and the most operations held at once.
//!
//! The replay streams ([`WhatIfRun`]): the [`Collector`] releases an
//! operation once no operation can still arrive before it (none begun
//! earlier is still in flight), and each policy's [`Replay`] simulates up
//! to that horizon. Memory follows the operations in flight in the trace
//! and the simulation's own backlog, not the trace's length (a begin that
//! never ends holds the horizon back until the end or a gap). Pure: no
//! I/O, no clocks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rl_reference::{ExclFifo, Mode as RefMode, Outcome, Rw, StateMachine};
use serde::Serialize;

use super::engine::Analysis;
use crate::events::{Body, Dev, Event, PunchOp};
use crate::model::{FastMap, OpKey, PAGE_SHIFT, byte_pages};

/// Replay settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long a per-page lock (page_add, fault) is held: the trace has no
    /// duration for these.
    pub page_hold_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            page_hold_ns: 1_000,
        }
    }
}

/// What kind of file operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A page entering the page cache (buffered IO, readahead).
    PageAdd,
    Fault,
    DioRead,
    DioWrite,
    Punch,
    Truncate,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::PageAdd => "page_add",
            OpKind::Fault => "fault",
            OpKind::DioRead => "dio_read",
            OpKind::DioWrite => "dio_write",
            OpKind::Punch => "punch",
            OpKind::Truncate => "truncate",
        }
    }
}

/// One file operation to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileOp {
    pub ts: u64,
    pub tid: u32,
    pub dev: Dev,
    pub ino: u64,
    pub kind: OpKind,
    /// Pages locked under Kara's design (inclusive).
    pub start: u64,
    pub last: u64,
    /// How long the lock is held.
    pub hold: u64,
}

/// Collects the file operations of a stream (pairs begins with ends) and
/// releases them in arrival order as soon as no operation can still arrive
/// earlier: memory follows the operations in flight in the trace, not the
/// trace's length.
#[derive(Debug, Default)]
pub struct Collector {
    cfg: Config,
    /// Completed operations not yet released: `(ts, completion order)`.
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    pending_ops: FastMap<u64, FileOp>,
    seq: u64,
    /// Begun DIOs by `io`: the op with its hold still unknown.
    dios: FastMap<u64, FileOp>,
    /// Begun punches and truncates, by id (by task in traces without ids:
    /// an end with an id may come from another task than its begin).
    punches: FastMap<OpKey, FileOp>,
    /// Begin times of the operations in flight (a multiset).
    in_flight: BTreeMap<u64, u32>,
    /// The latest time seen.
    now: u64,
    /// Begins never ended, ends never begun.
    pub unmatched: u64,
}

impl Collector {
    pub fn new(cfg: Config) -> Collector {
        Collector {
            cfg,
            ..Collector::default()
        }
    }

    fn complete(&mut self, o: FileOp) {
        self.pending.push(Reverse((o.ts, self.seq)));
        self.pending_ops.insert(self.seq, o);
        self.seq += 1;
    }

    fn begin(&mut self, ts: u64) {
        *self.in_flight.entry(ts).or_default() += 1;
    }

    fn end(&mut self, ts: u64) {
        if let Some(n) = self.in_flight.get_mut(&ts) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&ts);
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub fn event(&mut self, ev: &Event) {
        self.now = self.now.max(ev.ts);
        let op = |kind, dev, ino, start, last, hold| FileOp {
            ts: ev.ts,
            tid: ev.tid,
            dev,
            ino,
            kind,
            start,
            last,
            hold,
        };
        match ev.body {
            Body::PageAdd {
                dev,
                ino,
                index,
                order,
            } => {
                let n = 1u64 << order.unwrap_or(0).min(20);
                let last = index.saturating_add(n - 1);
                let hold = self.cfg.page_hold_ns;
                self.complete(op(OpKind::PageAdd, dev, ino, index, last, hold));
            }
            Body::Fault { dev, ino, index } => {
                let hold = self.cfg.page_hold_ns;
                self.complete(op(OpKind::Fault, dev, ino, index, index, hold));
            }
            Body::DioBegin {
                io,
                dev,
                ino,
                pos,
                len,
                write,
            } => {
                let kind = if write {
                    OpKind::DioWrite
                } else {
                    OpKind::DioRead
                };
                if let Some((s, l)) = byte_pages(pos, len) {
                    self.begin(ev.ts);
                    if let Some(old) = self.dios.insert(io, op(kind, dev, ino, s, l, 0)) {
                        self.end(old.ts);
                        self.unmatched += 1;
                    }
                }
            }
            Body::DioEnd { io, .. } => match self.dios.remove(&io) {
                Some(mut o) => {
                    self.end(o.ts);
                    o.hold = ev.ts.saturating_sub(o.ts);
                    self.complete(o);
                }
                None => self.unmatched += 1,
            },
            Body::PunchBegin {
                dev,
                ino,
                pos,
                len,
                op: pop,
                id,
            } => {
                // Zero locks its range as a punch does; collapse and insert
                // move every page from `pos` on, so they lock to ~0.
                let pages = match pop {
                    PunchOp::Collapse | PunchOp::Insert if len > 0 => {
                        Some((pos >> PAGE_SHIFT, u64::MAX))
                    }
                    _ => byte_pages(pos, len),
                };
                if let Some((s, l)) = pages {
                    self.begin(ev.ts);
                    let o = op(OpKind::Punch, dev, ino, s, l, 0);
                    if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                        self.end(old.ts);
                        self.unmatched += 1;
                    }
                }
            }
            Body::TruncateBegin { dev, ino, size, id } => {
                let first = size.div_ceil(1 << PAGE_SHIFT);
                self.begin(ev.ts);
                let o = op(OpKind::Truncate, dev, ino, first, u64::MAX, 0);
                if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                    self.end(old.ts);
                    self.unmatched += 1;
                }
            }
            Body::PunchEnd { id, .. } | Body::TruncateEnd { id, .. } => {
                let truncate = matches!(ev.body, Body::TruncateEnd { .. });
                match self.punches.remove(&OpKey::new(ev.tid, id)) {
                    Some(mut o) if (o.kind == OpKind::Truncate) == truncate => {
                        self.end(o.ts);
                        o.hold = ev.ts.saturating_sub(o.ts);
                        self.complete(o);
                    }
                    Some(o) => {
                        // A begin of the other kind: both ends unmatched.
                        self.end(o.ts);
                        self.unmatched += 2;
                    }
                    None => self.unmatched += 1,
                }
            }
            Body::Lost { .. } => self.gap(),
            _ => {}
        }
    }

    /// Lost events or a damaged part of the trace: begins in flight may
    /// have lost their ends (and would pair with unrelated ones). Forget
    /// them; they count as unmatched.
    pub fn gap(&mut self) {
        self.unmatched += (self.dios.len() + self.punches.len()) as u64;
        self.dios.clear();
        self.punches.clear();
        self.in_flight.clear();
    }

    /// Moves the operations that no later event can precede into `out`,
    /// in arrival order (by time, then completion order), and returns the
    /// time before which every operation has now been released.
    pub fn ready(&mut self, out: &mut Vec<FileOp>) -> u64 {
        let horizon = self
            .in_flight
            .keys()
            .next()
            .map_or(self.now, |&t| t.min(self.now));
        while let Some(&Reverse((ts, seq))) = self.pending.peek() {
            if ts >= horizon {
                break;
            }
            self.pending.pop();
            if let Some(o) = self.pending_ops.remove(&seq) {
                out.push(o);
            }
        }
        horizon
    }

    /// The operations not yet released, in arrival order, and the count of
    /// unmatched begins and ends.
    pub fn finish(mut self) -> (Vec<FileOp>, u64) {
        let unmatched = self.unmatched + (self.dios.len() + self.punches.len()) as u64;
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(Reverse((_, seq))) = self.pending.pop() {
            if let Some(o) = self.pending_ops.remove(&seq) {
                out.push(o);
            }
        }
        (out, unmatched)
    }
}

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

/// The predicted figures of one file (or all files) under one policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub ops: u64,
    /// Operations that had to wait.
    pub waited: u64,
    pub wait_total_ns: u64,
    pub wait_max_ns: u64,
    /// Time during which some lock on the file was held.
    pub busy_ns: u64,
    /// Sum of hold times.
    pub hold_total_ns: u64,
    /// `hold_total / busy`: mean operations running at once while any ran.
    pub parallelism: f64,
    /// The most operations holding the file's lock at once.
    pub max_concurrent: u64,
    /// From the first arrival to the last release.
    pub span_ns: u64,
    /// Who waits: per kind of operation, how many waited and how long in
    /// total (kinds that never waited are left out).
    pub waits_by_kind: BTreeMap<OpKind, KindWaits>,
}

/// The waits of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindWaits {
    pub waited: u64,
    pub wait_total_ns: u64,
}

impl Figures {
    pub fn wait_mean_ns(&self) -> u64 {
        self.wait_total_ns.checked_div(self.ops).unwrap_or(0)
    }
}

/// One file's predictions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileWhatIf {
    /// `major:minor`, as the JSONL events spell it.
    pub dev: String,
    pub ino: u64,
    /// Operations by kind.
    pub kinds: BTreeMap<OpKind, u64>,
    pub range: Figures,
    pub whole_file: Figures,
    pub file_shared: Figures,
}

/// Everything `rltop whatif` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhatIf {
    pub page_hold_ns: u64,
    pub ops: u64,
    pub unmatched: u64,
    /// All files together (busy time and parallelism summed per file).
    pub range: Figures,
    pub whole_file: Figures,
    pub file_shared: Figures,
    /// Files, most whole-file wait first.
    pub files: Vec<FileWhatIf>,
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

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn total(figs: &[&Figures]) -> Figures {
    let mut t = Figures::default();
    for f in figs {
        t.ops += f.ops;
        t.waited += f.waited;
        t.wait_total_ns += f.wait_total_ns;
        t.wait_max_ns = t.wait_max_ns.max(f.wait_max_ns);
        t.busy_ns += f.busy_ns;
        t.hold_total_ns += f.hold_total_ns;
        t.max_concurrent = t.max_concurrent.max(f.max_concurrent);
        t.span_ns = t.span_ns.max(f.span_ns);
        for (k, w) in &f.waits_by_kind {
            let e = t.waits_by_kind.entry(*k).or_default();
            e.waited += w.waited;
            e.wait_total_ns += w.wait_total_ns;
        }
    }
    t.parallelism = ratio(t.hold_total_ns, t.busy_ns);
    t
}

/// The whole `rltop whatif` analysis over a stream: collects operations
/// and replays them under the three policies as the stream goes.
pub struct WhatIfRun {
    cfg: Config,
    collector: Collector,
    replays: [Replay; 3],
    kinds: BTreeMap<(Dev, u64), BTreeMap<OpKind, u64>>,
    ops: u64,
    buf: Vec<FileOp>,
    /// Range lock requests seen: a trace recorded with range locks already.
    range_locks: u64,
}

impl WhatIfRun {
    pub fn new(cfg: Config) -> WhatIfRun {
        WhatIfRun {
            cfg,
            collector: Collector::new(cfg),
            replays: [
                Replay::new(Policy::Range),
                Replay::new(Policy::WholeFile),
                Replay::new(Policy::FileShared),
            ],
            kinds: BTreeMap::new(),
            ops: 0,
            buf: Vec::new(),
            range_locks: 0,
        }
    }

    /// Range lock requests seen so far.
    pub fn range_locks(&self) -> u64 {
        self.range_locks
    }

    pub fn event(&mut self, ev: &Event) {
        if matches!(ev.body, Body::RlRequest { .. }) {
            self.range_locks += 1;
        }
        self.collector.event(ev);
        let horizon = self.collector.ready(&mut self.buf);
        self.feed();
        for r in &mut self.replays {
            r.advance(horizon);
        }
    }

    /// A damaged part of the trace (see [`Collector::gap`]).
    pub fn gap(&mut self) {
        self.collector.gap();
    }

    fn feed(&mut self) {
        for o in self.buf.drain(..) {
            self.ops += 1;
            *self
                .kinds
                .entry((o.dev, o.ino))
                .or_default()
                .entry(o.kind)
                .or_default() += 1;
            for r in &mut self.replays {
                r.push(o);
            }
        }
    }

    pub fn finish(mut self) -> WhatIf {
        let (rest, unmatched) = std::mem::take(&mut self.collector).finish();
        self.buf = rest;
        self.feed();
        let [range, whole, shared] = self.replays;
        assemble(
            self.cfg,
            self.ops,
            unmatched,
            self.kinds,
            range.finish(),
            whole.finish(),
            shared.finish(),
        )
    }
}

/// Replays operations (in arrival order) under the three policies and puts
/// the figures together.
pub fn whatif(ops: &[FileOp], unmatched: u64, cfg: Config) -> WhatIf {
    let mut kinds: BTreeMap<(Dev, u64), BTreeMap<OpKind, u64>> = BTreeMap::new();
    for o in ops {
        *kinds
            .entry((o.dev, o.ino))
            .or_default()
            .entry(o.kind)
            .or_default() += 1;
    }
    assemble(
        cfg,
        ops.len() as u64,
        unmatched,
        kinds,
        replay(ops, Policy::Range),
        replay(ops, Policy::WholeFile),
        replay(ops, Policy::FileShared),
    )
}

type PerFile = BTreeMap<(Dev, u64), Figures>;

fn assemble(
    cfg: Config,
    ops: u64,
    unmatched: u64,
    mut kinds: BTreeMap<(Dev, u64), BTreeMap<OpKind, u64>>,
    range: PerFile,
    whole: PerFile,
    shared: PerFile,
) -> WhatIf {
    let mut files: Vec<FileWhatIf> = range
        .iter()
        .map(|(&(dev, ino), r)| FileWhatIf {
            dev: dev.to_string(),
            ino,
            kinds: kinds.remove(&(dev, ino)).unwrap_or_default(),
            range: r.clone(),
            whole_file: whole.get(&(dev, ino)).cloned().unwrap_or_default(),
            file_shared: shared.get(&(dev, ino)).cloned().unwrap_or_default(),
        })
        .collect();
    files.sort_by(|a, b| {
        b.whole_file
            .wait_total_ns
            .cmp(&a.whole_file.wait_total_ns)
            .then((&a.dev, a.ino).cmp(&(&b.dev, b.ino)))
    });
    WhatIf {
        page_hold_ns: cfg.page_hold_ns,
        ops,
        unmatched,
        range: total(&files.iter().map(|f| &f.range).collect::<Vec<_>>()),
        whole_file: total(&files.iter().map(|f| &f.whole_file).collect::<Vec<_>>()),
        file_shared: total(&files.iter().map(|f| &f.file_shared).collect::<Vec<_>>()),
        files,
    }
}

/// The replay reads the events themselves, not the model: it simulates
/// other locks than the trace's.
impl Analysis for WhatIfRun {
    fn before(&mut self, _m: &crate::model::Model, _idx: u64, ev: &Event) {
        self.event(ev);
    }
    fn gap(&mut self, _m: &crate::model::Model, _idx: u64) {
        WhatIfRun::gap(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: Dev = Dev { major: 8, minor: 1 };

    fn op(ts: u64, tid: u32, start: u64, last: u64, hold: u64) -> FileOp {
        FileOp {
            ts,
            tid,
            dev: DEV,
            ino: 1,
            kind: OpKind::DioWrite,
            start,
            last,
            hold,
        }
    }

    /// Worked by hand (times in us):
    /// A: [0,3] at 0 for 100; B: [10,13] at 10 for 100; C: [2,2] at 20 for 50.
    /// Range: A 0-100, B 10-110 (disjoint), C waits for A: 100-150 (wait 80).
    ///   busy 0-150 = 150, holds 250: parallelism 250/150; at most 2 at once.
    /// Whole file: A 0-100, B waits 90: 100-200, C waits 180: 200-250.
    ///   busy 250, holds 250: parallelism 1.
    #[test]
    fn three_operations_worked_by_hand() {
        let ops = [
            op(0, 1, 0, 3, 100),
            op(10, 2, 10, 13, 100),
            op(20, 3, 2, 2, 50),
        ];
        let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
        assert_eq!(
            (r.ops, r.waited, r.wait_total_ns, r.wait_max_ns),
            (3, 1, 80, 80)
        );
        assert_eq!(
            (r.busy_ns, r.hold_total_ns, r.max_concurrent, r.span_ns),
            (150, 250, 2, 150)
        );
        assert!((r.parallelism - 250.0 / 150.0).abs() < 1e-12);
        let w = &replay(&ops, Policy::WholeFile)[&(DEV, 1)];
        assert_eq!(
            (w.ops, w.waited, w.wait_total_ns, w.wait_max_ns),
            (3, 2, 270, 180)
        );
        assert_eq!(
            (w.busy_ns, w.hold_total_ns, w.max_concurrent, w.span_ns),
            (250, 250, 1, 250)
        );
        assert_eq!(w.parallelism, 1.0);
        // Under range locking only C (a DIO write here) waited.
        assert_eq!(
            r.waits_by_kind
                .iter()
                .map(|(k, w)| (*k, w.waited, w.wait_total_ns))
                .collect::<Vec<_>>(),
            [(OpKind::DioWrite, 1, 80)]
        );
    }

    /// invalidate_lock style: DIOs and page ops share the file, punch is
    /// exclusive. Same ops as above but C is a punch: A 0-100 and B 10-110
    /// share; C (punch) waits for both: 110-160 (wait 90). Busy 0-160.
    #[test]
    fn shared_whole_file_lets_io_run_together_but_not_punch() {
        let mut ops = [
            op(0, 1, 0, 3, 100),
            op(10, 2, 10, 13, 100),
            op(20, 3, 2, 2, 50),
        ];
        ops[2].kind = OpKind::Punch;
        let r = &replay(&ops, Policy::FileShared)[&(DEV, 1)];
        assert_eq!(
            (
                r.waited,
                r.wait_total_ns,
                r.busy_ns,
                r.max_concurrent,
                r.span_ns
            ),
            (1, 90, 160, 2, 160)
        );
        // A later DIO queues behind the waiting punch (FIFO): D at 30 for 10
        // waits until the punch ends at 160 (130).
        let ops2 = [ops[0], ops[1], ops[2], op(30, 4, 40, 40, 10)];
        let r = &replay(&ops2, Policy::FileShared)[&(DEV, 1)];
        assert_eq!(
            (r.waited, r.wait_total_ns, r.wait_max_ns),
            (2, 90 + 130, 130)
        );
    }

    /// A task that waits does everything after it that much later.
    /// Task 1: [0,0] at 0 for 100. Task 2: [0,0] at 10 for 10, then [50,50]
    /// at 30 for 10 (disjoint from everything).
    /// Range: task 2's first op waits 90 (granted at 100, held to 110); its
    /// second op arrives at 30 + 90 = 120, runs at once (120-130).
    #[test]
    fn a_waiting_task_is_delayed_afterwards() {
        let ops = [
            op(0, 1, 0, 0, 100),
            op(10, 2, 0, 0, 10),
            op(30, 2, 50, 50, 10),
        ];
        let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
        assert_eq!((r.waited, r.wait_total_ns), (1, 90));
        // busy: 0-110, then 120-130.
        assert_eq!((r.busy_ns, r.span_ns), (120, 130));
        assert_eq!(r.max_concurrent, 1);
    }

    /// FIFO among overlapping requests: C ([5,5]) queues behind B ([0,9],
    /// waiting for A) although A ([0,2]) does not touch page 5.
    /// A 0-100; B arrives 10, waits for A: 100-200 (wait 90); C arrives 20,
    /// waits for B: 200-210 (wait 180).
    #[test]
    fn overlapping_requests_keep_fifo_order() {
        let ops = [
            op(0, 1, 0, 2, 100),
            op(10, 2, 0, 9, 100),
            op(20, 3, 5, 5, 10),
        ];
        let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
        assert_eq!((r.waited, r.wait_total_ns, r.wait_max_ns), (2, 270, 180));
    }

    proptest::proptest! {
        /// Any operations: every one is replayed once under each policy
        /// with its own hold; the whole file never runs two at once;
        /// pairwise disjoint ranges never wait under range locking; and
        /// parallelism never exceeds the most running at once.
        #[test]
        fn replays_are_complete_and_consistent(
            raw in proptest::collection::vec(
                (0u64..1_000, 1u32..5, 0u64..64, 0u64..8, 0u64..200, 0u8..6, 0u64..2),
                1..40,
            )
        ) {
            let mut ops: Vec<FileOp> = raw
                .iter()
                .map(|&(ts, tid, start, len, hold, kind, ino)| FileOp {
                    ts,
                    tid,
                    dev: DEV,
                    ino,
                    kind: [
                        OpKind::PageAdd,
                        OpKind::Fault,
                        OpKind::DioRead,
                        OpKind::DioWrite,
                        OpKind::Punch,
                        OpKind::Truncate,
                    ][kind as usize],
                    start,
                    last: start + len,
                    hold,
                })
                .collect();
            ops.sort_by_key(|o| o.ts);
            let holds: u64 = ops.iter().map(|o| o.hold).sum();
            for policy in [Policy::Range, Policy::WholeFile, Policy::FileShared] {
                let r = replay(&ops, policy);
                let n: u64 = r.values().map(|f| f.ops).sum();
                let h: u64 = r.values().map(|f| f.hold_total_ns).sum();
                proptest::prop_assert_eq!(n, ops.len() as u64);
                proptest::prop_assert_eq!(h, holds);
                for f in r.values() {
                    proptest::prop_assert!(f.busy_ns <= f.hold_total_ns);
                    proptest::prop_assert!(f.parallelism <= f.max_concurrent as f64 + 1e-9);
                    if policy == Policy::WholeFile {
                        proptest::prop_assert!(f.max_concurrent <= 1);
                    }
                }
            }
            let disjoint = ops.iter().enumerate().all(|(i, a)| {
                ops[i + 1..]
                    .iter()
                    .all(|b| a.ino != b.ino || a.last < b.start || b.last < a.start)
            });
            if disjoint {
                let r = replay(&ops, Policy::Range);
                proptest::prop_assert!(r.values().all(|f| f.waited == 0));
            }
        }
    }

    proptest::proptest! {
        /// Streaming: running the simulation up to any safe horizon between
        /// pushes (every later operation arrives at or after it) gives the
        /// figures of the batch replay.
        #[test]
        fn advancing_between_pushes_changes_nothing(
            raw in proptest::collection::vec(
                (0u64..300, 1u32..4, 0u64..16, 0u64..4, 0u64..100, 0u8..6, 0u64..50),
                1..40,
            )
        ) {
            let mut ops: Vec<(FileOp, u64)> = raw
                .iter()
                .map(|&(ts, tid, start, len, hold, kind, back)| (FileOp {
                    ts,
                    tid,
                    dev: DEV,
                    ino: 1,
                    kind: [
                        OpKind::PageAdd,
                        OpKind::Fault,
                        OpKind::DioRead,
                        OpKind::DioWrite,
                        OpKind::Punch,
                        OpKind::Truncate,
                    ][kind as usize],
                    start,
                    last: start + len,
                    hold,
                }, back))
                .collect();
            ops.sort_by_key(|o| o.0.ts);
            let plain: Vec<FileOp> = ops.iter().map(|o| o.0).collect();
            for policy in [Policy::Range, Policy::WholeFile, Policy::FileShared] {
                let mut r = Replay::new(policy);
                for (i, &(o, back)) in ops.iter().enumerate() {
                    r.push(o);
                    // Any horizon up to the next arrival is safe.
                    if let Some(next) = ops.get(i + 1) {
                        r.advance(next.0.ts.saturating_sub(back));
                    }
                }
                proptest::prop_assert_eq!(r.finish(), replay(&plain, policy));
            }
        }
    }

    /// The collector releases operations only once nothing can arrive
    /// before them: a DIO in flight holds back the page ops after it.
    #[test]
    fn collector_releases_in_arrival_order_behind_operations_in_flight() {
        let ev = |ts, tid, body| Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        };
        let page = |ts| {
            ev(
                ts,
                2,
                Body::PageAdd {
                    dev: DEV,
                    ino: 1,
                    index: 0,
                    order: None,
                },
            )
        };
        let mut c = Collector::new(Config::default());
        let mut out = Vec::new();
        c.event(&page(5));
        c.event(&ev(
            10,
            1,
            Body::DioBegin {
                io: 7,
                dev: DEV,
                ino: 1,
                pos: 0,
                len: 4096,
                write: false,
            },
        ));
        assert_eq!(c.ready(&mut out), 10);
        assert_eq!(out.iter().map(|o| o.ts).collect::<Vec<_>>(), [5]);
        c.event(&page(20));
        c.event(&page(30));
        // Still held back by the DIO begun at 10.
        assert_eq!(c.ready(&mut out), 10);
        assert_eq!(out.len(), 1);
        c.event(&ev(40, 0, Body::DioEnd { io: 7, ret: 4096 }));
        assert_eq!(c.ready(&mut out), 40);
        let got: Vec<_> = out.iter().map(|o| (o.ts, o.kind, o.hold)).collect();
        assert_eq!(
            got,
            [
                (5, OpKind::PageAdd, 1000),
                (10, OpKind::DioRead, 30),
                (20, OpKind::PageAdd, 1000),
                (30, OpKind::PageAdd, 1000),
            ]
        );
    }

    #[test]
    fn collector_pairs_operations_and_uses_kara_ranges() {
        let ev = |ts, tid, body| Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        };
        let evs = [
            ev(
                10,
                1,
                Body::DioBegin {
                    io: 7,
                    dev: DEV,
                    ino: 1,
                    pos: 4096,
                    len: 8192,
                    write: true,
                },
            ),
            ev(
                15,
                2,
                Body::TruncateBegin {
                    dev: DEV,
                    ino: 1,
                    size: 5000,
                    id: None,
                },
            ),
            ev(
                20,
                3,
                Body::PageAdd {
                    dev: DEV,
                    ino: 1,
                    index: 8,
                    order: Some(2),
                },
            ),
            ev(30, 0, Body::DioEnd { io: 7, ret: 8192 }),
            ev(40, 2, Body::TruncateEnd { ret: 0, id: None }),
            ev(50, 4, Body::PunchEnd { ret: 0, id: None }),
        ];
        let mut c = Collector::new(Config { page_hold_ns: 5 });
        for e in &evs {
            c.event(e);
        }
        let (ops, unmatched) = c.finish();
        let got: Vec<_> = ops
            .iter()
            .map(|o| (o.ts, o.tid, o.kind, o.start, o.last, o.hold))
            .collect();
        assert_eq!(
            got,
            [
                (10, 1, OpKind::DioWrite, 1, 2, 20),
                (15, 2, OpKind::Truncate, 2, u64::MAX, 25),
                (20, 3, OpKind::PageAdd, 8, 11, 5),
            ]
        );
        assert_eq!(unmatched, 1);
    }

    /// With ids, an end pairs with the begin of its id whichever task emits
    /// it; collapse locks from its position to ~0.
    #[test]
    fn collector_pairs_by_id_across_tasks() {
        let ev = |ts, tid, body| Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        };
        let punch = |ts, tid, op, id| {
            ev(
                ts,
                tid,
                Body::PunchBegin {
                    dev: DEV,
                    ino: 1,
                    pos: 8192,
                    len: 4096,
                    op,
                    id: Some(id),
                },
            )
        };
        let evs = [
            punch(10, 1, PunchOp::Punch, 5),
            punch(11, 1, PunchOp::Collapse, 6),
            ev(
                20,
                9,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(6),
                },
            ),
            ev(
                30,
                8,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(5),
                },
            ),
            ev(
                31,
                1,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(7),
                },
            ),
        ];
        let mut c = Collector::new(Config::default());
        for e in &evs {
            c.event(e);
        }
        let (ops, unmatched) = c.finish();
        let got: Vec<_> = ops
            .iter()
            .map(|o| (o.ts, o.tid, o.kind, o.start, o.last, o.hold))
            .collect();
        assert_eq!(
            got,
            [
                (10, 1, OpKind::Punch, 2, 2, 20),
                (11, 1, OpKind::Punch, 2, u64::MAX, 9),
            ]
        );
        assert_eq!(unmatched, 1);
    }
}
