//! What if: how much would Kara's range locking gain or cost, on the file
//! operations of a trace recorded on a kernel *without* range locks?
//!
//! The trace's file operations are collected ([`Collector`]) and replayed,
//! in a discrete-event simulation over the trace's own timestamps and
//! durations ([`replay`]), through the reference exclusive FIFO range lock
//! ([`rl_reference::StateMachine<ExclFifo>`], one per file) under two
//! policies:
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
//! Memory follows the number of file operations of the trace (they are
//! replayed after the whole trace was read). Pure: no I/O, no clocks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rl_reference::{ExclFifo, Mode as RefMode, Outcome, Rw, StateMachine};
use serde::Serialize;

use crate::events::{Body, Dev, Event};
use crate::model::{FastMap, PAGE_SHIFT, byte_pages};

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

/// Collects the file operations of a stream (pairs begins with ends).
#[derive(Debug, Default)]
pub struct Collector {
    cfg: Config,
    ops: Vec<FileOp>,
    /// Begun DIOs by `io`: the op with its hold still unknown.
    dios: FastMap<u64, FileOp>,
    /// Begun punches and truncates by task.
    punches: FastMap<u32, FileOp>,
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

    pub fn event(&mut self, ev: &Event) {
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
                self.ops.push(op(
                    OpKind::PageAdd,
                    dev,
                    ino,
                    index,
                    last,
                    self.cfg.page_hold_ns,
                ));
            }
            Body::Fault { dev, ino, index } => {
                self.ops.push(op(
                    OpKind::Fault,
                    dev,
                    ino,
                    index,
                    index,
                    self.cfg.page_hold_ns,
                ));
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
                if let Some((s, l)) = byte_pages(pos, len)
                    && self.dios.insert(io, op(kind, dev, ino, s, l, 0)).is_some()
                {
                    self.unmatched += 1;
                }
            }
            Body::DioEnd { io, .. } => match self.dios.remove(&io) {
                Some(mut o) => {
                    o.hold = ev.ts.saturating_sub(o.ts);
                    self.ops.push(o);
                }
                None => self.unmatched += 1,
            },
            Body::PunchBegin { dev, ino, pos, len } => {
                if let Some((s, l)) = byte_pages(pos, len)
                    && self
                        .punches
                        .insert(ev.tid, op(OpKind::Punch, dev, ino, s, l, 0))
                        .is_some()
                {
                    self.unmatched += 1;
                }
            }
            Body::TruncateBegin { dev, ino, size } => {
                let first = size.div_ceil(1 << PAGE_SHIFT);
                if self
                    .punches
                    .insert(ev.tid, op(OpKind::Truncate, dev, ino, first, u64::MAX, 0))
                    .is_some()
                {
                    self.unmatched += 1;
                }
            }
            Body::PunchEnd { .. } | Body::TruncateEnd { .. } => {
                let truncate = matches!(ev.body, Body::TruncateEnd { .. });
                match self.punches.remove(&ev.tid) {
                    Some(mut o) if (o.kind == OpKind::Truncate) == truncate => {
                        o.hold = ev.ts.saturating_sub(o.ts);
                        self.ops.push(o);
                    }
                    _ => self.unmatched += 1,
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
    }

    /// The operations, in arrival order (by time, then trace order), and
    /// the count of unmatched begins and ends.
    pub fn finish(mut self) -> (Vec<FileOp>, u64) {
        let unmatched = self.unmatched + (self.dios.len() + self.punches.len()) as u64;
        // Stable: equal times keep the order in which operations completed
        // in the trace, which for instants is trace order.
        self.ops.sort_by_key(|o| o.ts);
        (self.ops, unmatched)
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

/// Replays `ops` (arrival order, as [`Collector::finish`] gives them) under
/// `policy`. Returns the figures per file, keyed by `(dev, ino)`.
pub fn replay(ops: &[FileOp], policy: Policy) -> BTreeMap<(Dev, u64), Figures> {
    // Each task's operations, in order.
    let mut per_task: FastMap<u32, VecDeque<usize>> = FastMap::default();
    for (i, o) in ops.iter().enumerate() {
        per_task.entry(o.tid).or_default().push_back(i);
    }
    let mut lag: FastMap<u32, u64> = FastMap::default();
    let mut arrived = vec![0u64; ops.len()];
    let mut files: FastMap<(Dev, u64), FileState> = FastMap::default();
    // (time, 0 = release / 1 = arrival, op): releases first at equal times,
    // then by op index (trace order).
    let mut queue: BinaryHeap<Reverse<(u64, u8, usize)>> = BinaryHeap::new();
    for q in per_task.values_mut() {
        if let Some(i) = q.pop_front() {
            queue.push(Reverse((ops[i].ts, 1, i)));
        }
    }
    let range = |o: &FileOp| match policy {
        Policy::Range => (o.start, o.last),
        Policy::WholeFile | Policy::FileShared => (0, u64::MAX),
    };
    let mode = |o: &FileOp| match o.kind {
        OpKind::Punch | OpKind::Truncate => RefMode::Write,
        _ => RefMode::Read,
    };
    let mut granted_now: Vec<(usize, u64)> = Vec::new();
    while let Some(Reverse((t, what, i))) = queue.pop() {
        let o = &ops[i];
        let f = files.entry((o.dev, o.ino)).or_insert_with(|| FileState {
            sm: Sm::new(policy),
            fig: Figures::default(),
            held: 0,
            busy_since: 0,
            first: None,
        });
        granted_now.clear();
        if what == 1 {
            arrived[i] = t;
            f.fig.ops += 1;
            f.first.get_or_insert(t);
            let (s, l) = range(o);
            if f.sm.request(i as u64, s, l, mode(o)) {
                granted_now.push((i, t));
            }
        } else {
            f.held -= 1;
            if f.held == 0 {
                f.fig.busy_ns += t - f.busy_since;
            }
            f.fig.span_ns = t - f.first.unwrap_or(t);
            for g in f.sm.release(i as u64) {
                granted_now.push((g as usize, t));
            }
        }
        for &(g, at) in &granted_now {
            let go = &ops[g];
            let wait = at - arrived[g];
            if f.held == 0 {
                f.busy_since = at;
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
            queue.push(Reverse((at + go.hold, 0, g)));
            // The task goes on, `wait` later than it did in the trace.
            let lag = lag.entry(go.tid).or_default();
            *lag += wait;
            if let Some(next) = per_task.get_mut(&go.tid).and_then(|q| q.pop_front()) {
                queue.push(Reverse(((ops[next].ts + *lag).max(at), 1, next)));
            }
        }
    }
    files
        .into_iter()
        .map(|(k, mut f)| {
            f.fig.parallelism = ratio(f.fig.hold_total_ns, f.fig.busy_ns);
            (k, f.fig)
        })
        .collect()
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

/// Replays under both policies and puts the figures together.
pub fn whatif(ops: &[FileOp], unmatched: u64, cfg: Config) -> WhatIf {
    let range = replay(ops, Policy::Range);
    let whole = replay(ops, Policy::WholeFile);
    let shared = replay(ops, Policy::FileShared);
    let mut kinds: BTreeMap<(Dev, u64), BTreeMap<OpKind, u64>> = BTreeMap::new();
    for o in ops {
        *kinds
            .entry((o.dev, o.ino))
            .or_default()
            .entry(o.kind)
            .or_default() += 1;
    }
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
        ops: ops.len() as u64,
        unmatched,
        range: total(&files.iter().map(|f| &f.range).collect::<Vec<_>>()),
        whole_file: total(&files.iter().map(|f| &f.whole_file).collect::<Vec<_>>()),
        file_shared: total(&files.iter().map(|f| &f.file_shared).collect::<Vec<_>>()),
        files,
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
            ev(40, 2, Body::TruncateEnd { ret: 0 }),
            ev(50, 4, Body::PunchEnd { ret: 0 }),
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
}
