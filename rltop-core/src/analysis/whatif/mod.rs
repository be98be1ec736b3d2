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


mod collect;
mod replay;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use self::collect::Collector;
pub use self::replay::{Policy, Replay, replay};
use super::engine::Analysis;
use crate::events::{Body, Dev, Event};

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

