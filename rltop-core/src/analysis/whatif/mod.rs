//! What if: how much would Kara's range locking gain or cost, on the file
//! operations of a trace recorded on a kernel *without* range locks?
//!
//! The trace's file operations are collected ([`Collector`]) and replayed,
//! in a discrete-event simulation over the trace's own timestamps and
//! durations ([`Replay`]), through the reference range lock
//! ([`rl_reference::StateMachine`], one per file and lock) under four policies:
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
//!   and truncate take it exclusively;
//! - [`Policy::Mainline`], what today's kernels take: `i_rwsem` and
//!   `invalidate_lock` as each filesystem takes them.
//!
//! Waits the trace measured on a file's `i_rwsem` / `invalidate_lock`
//! (`lock:contention_*` on the learned addresses) right before an
//! operation of the same task are already in the trace's times: the
//! replay starts that operation that much earlier, and reports mainline's
//! predicted waits per lock beside the measured ones ([`Measured`]).
//!
//! All policies see the same operations with the same hold times, so the
//! differences are those of the locking granularity and modes alone.
//!
//! # The replay
//!
//! - An operation arrives at its begin event's time and holds its lock for
//!   its observed duration (`dio_end - dio_begin`, `punch_end -
//!   punch_begin`, `truncate_end - truncate_begin`). `page_add` and `fault`
//!   are instants in the trace. A task's page adds at consecutive indices
//!   of one file ([`Config::readahead_gap_ns`] apart at most) are one
//!   operation over their pages, as the readahead or write loop that adds
//!   them; it holds from its first page to its last, then
//!   [`Config::page_hold_ns`] more, as a fault does. The synchronous
//!   readahead of the task's fault (its pages hold the faulting index)
//!   holds until the task's next event instead, at most
//!   [`Config::fault_read_max_ns`] after its last page: `filemap_fault`
//!   keeps `invalidate_lock` shared while it waits for the read. These are
//!   assumptions of the model that the output states.
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

pub use self::collect::{ATTRIBUTE_WINDOW_NS, Collector};
pub use self::replay::{Policy, Replay, replay};
use super::engine::Analysis;
use crate::events::{Body, Dev, Event, FileLockClass};
use crate::model::Model;

/// Replay settings: what the trace does not time.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How long a fault, or a run of page adds, holds its lock after its
    /// last page (the trace has no end event for these).
    pub page_hold_ns: u64,
    /// Page adds of one task on one file, each at the next index and
    /// within this long of the previous one, are one operation (one
    /// readahead or one write's pages): 100 us, far above the ~1 us
    /// between the adds of one readahead loop.
    pub readahead_gap_ns: u64,
    /// A fault's own readahead holds `invalidate_lock` until the fault
    /// returns, which the trace shows as the task's next event, but at
    /// most this long after its last page (a task with nothing traced
    /// after its fault): 10 ms, a slow disk's read.
    pub fault_read_max_ns: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            page_hold_ns: 1_000,
            readahead_gap_ns: 100_000,
            fault_read_max_ns: 10_000_000,
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

/// A file's filesystem, as far as [`Policy::Mainline`] locks differently
/// (from the trace's `file` events; `Other` when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    Xfs,
    Btrfs,
    #[default]
    Other,
}

impl Fs {
    pub fn of(name: Option<&str>) -> Fs {
        match name {
            Some("ext4") => Fs::Ext4,
            Some("xfs") => Fs::Xfs,
            Some("btrfs") => Fs::Btrfs,
            _ => Fs::Other,
        }
    }
}

/// The page-cache locks [`Policy::Mainline`] replays, in the order the
/// kernel takes them (`i_rwsem` before `invalidate_lock`).
pub const MAINLINE_LOCKS: [FileLockClass; 2] =
    [FileLockClass::IRwsem, FileLockClass::InvalidateLock];

/// The index of `class` in [`MAINLINE_LOCKS`].
pub fn lock_index(class: FileLockClass) -> usize {
    match class {
        FileLockClass::IRwsem => 0,
        FileLockClass::InvalidateLock => 1,
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
    pub fs: Fs,
    /// A DIO write that mainline would do under a shared `i_rwsem` (see
    /// [`Policy::Mainline`]).
    pub shares_i_rwsem: bool,
    /// What the task waited, in the trace, for its file's `i_rwsem` and
    /// `invalidate_lock` (indexed as [`MAINLINE_LOCKS`]) just before this
    /// operation began. The trace's times already contain those waits: the
    /// replay starts the operation that much earlier.
    pub measured: [KindWaits; 2],
}

impl FileOp {
    /// An operation of an unknown filesystem with nothing measured before it.
    #[allow(clippy::too_many_arguments)] // the fields of an operation, in order
    pub fn new(
        ts: u64,
        tid: u32,
        dev: Dev,
        ino: u64,
        kind: OpKind,
        start: u64,
        last: u64,
        hold: u64,
    ) -> FileOp {
        FileOp {
            ts,
            tid,
            dev,
            ino,
            kind,
            start,
            last,
            hold,
            fs: Fs::Other,
            shares_i_rwsem: false,
            measured: [KindWaits::default(); 2],
        }
    }

    /// The measured wait before the operation, all locks together.
    pub fn measured_wait(&self) -> u64 {
        self.measured.iter().map(|w| w.wait_total_ns).sum()
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
    /// [`Policy::Mainline`] only: the waits per lock (`i_rwsem`,
    /// `invalidate_lock`); an operation that waits for both counts in each.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub waits_by_lock: BTreeMap<&'static str, KindWaits>,
    /// [`Policy::Mainline`] only: operation by operation, whether the
    /// prediction waits where the trace measured a wait.
    #[serde(skip_serializing_if = "Agreement::is_empty")]
    pub vs_measured: Agreement,
}

/// Predicted against measured waits, per replayed operation (a measured
/// wait is one before the operation on a lock mainline takes for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// Operations that waited in both.
    pub both: u64,
    /// Predicted to wait; no wait measured.
    pub predicted_only: u64,
    /// Measured a wait; none predicted.
    pub measured_only: u64,
    /// Over the operations of `both`: the predicted and the measured waits.
    pub both_predicted_ns: u64,
    pub both_measured_ns: u64,
}

impl Agreement {
    fn is_empty(&self) -> bool {
        self.both + self.predicted_only + self.measured_only == 0
    }

    fn one(&mut self, predicted: u64, measured: u64) {
        match (predicted > 0, measured > 0) {
            (true, true) => {
                self.both += 1;
                self.both_predicted_ns = self.both_predicted_ns.saturating_add(predicted);
                self.both_measured_ns = self.both_measured_ns.saturating_add(measured);
            }
            (true, false) => self.predicted_only += 1,
            (false, true) => self.measured_only += 1,
            (false, false) => {}
        }
    }

    fn add(&mut self, o: Agreement) {
        self.both += o.both;
        self.predicted_only += o.predicted_only;
        self.measured_only += o.measured_only;
        self.both_predicted_ns = self.both_predicted_ns.saturating_add(o.both_predicted_ns);
        self.both_measured_ns = self.both_measured_ns.saturating_add(o.both_measured_ns);
    }
}

/// The waits of one kind of operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KindWaits {
    pub waited: u64,
    pub wait_total_ns: u64,
}

impl KindWaits {
    fn add(&mut self, o: KindWaits) {
        self.waited += o.waited;
        self.wait_total_ns = self.wait_total_ns.saturating_add(o.wait_total_ns);
    }

    fn one(&mut self, ns: u64) {
        self.add(KindWaits {
            waited: 1,
            wait_total_ns: ns,
        });
    }
}

impl Figures {
    pub fn wait_mean_ns(&self) -> u64 {
        self.wait_total_ns.checked_div(self.ops).unwrap_or(0)
    }
}

/// The waits for one of a file's page-cache locks that the trace measured
/// (`lock:contention_begin/end` on the lock's learned address): what
/// [`Policy::Mainline`]'s predictions are held against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Measured {
    /// Every contended acquisition and its wait.
    pub waited: u64,
    pub wait_total_ns: u64,
    /// Those right before a replayed operation of the same task on the same
    /// file: the waits the replay can predict (a buffered write's, a
    /// setattr's or an unmatched operation's are not replayed).
    pub replayed_waited: u64,
    pub replayed_wait_total_ns: u64,
    /// The replayed operations those waits came before (one operation may
    /// wait more than once): what the prediction's `waited` counts.
    pub replayed_ops: u64,
}

/// Measured waits per lock class (`i_rwsem`, `invalidate_lock`); classes
/// never contended are left out.
pub type MeasuredByLock = BTreeMap<&'static str, Measured>;

/// One file's predictions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileWhatIf {
    /// `major:minor`, as the JSONL events spell it.
    pub dev: String,
    pub ino: u64,
    /// The file's path, when a `file` event gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Operations by kind.
    pub kinds: BTreeMap<OpKind, u64>,
    pub range: Figures,
    pub whole_file: Figures,
    pub file_shared: Figures,
    pub mainline: Figures,
    pub measured: MeasuredByLock,
}

/// Everything `rltop whatif` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WhatIf {
    pub page_hold_ns: u64,
    /// [`Config::readahead_gap_ns`].
    pub readahead_gap_ns: u64,
    /// [`Config::fault_read_max_ns`].
    pub fault_read_max_ns: u64,
    pub ops: u64,
    pub unmatched: u64,
    /// All files together (busy time and parallelism summed per file).
    pub range: Figures,
    pub whole_file: Figures,
    pub file_shared: Figures,
    pub mainline: Figures,
    pub measured: MeasuredByLock,
    /// Whether the trace's probes had `lock:contention_*` (its header's
    /// probe list), so that no measured wait means none happened; `None`:
    /// the trace does not list its probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contention_traced: Option<bool>,
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
            t.waits_by_kind.entry(*k).or_default().add(*w);
        }
        for (k, w) in &f.waits_by_lock {
            t.waits_by_lock.entry(k).or_default().add(*w);
        }
        t.vs_measured.add(f.vs_measured);
    }
    t.parallelism = ratio(t.hold_total_ns, t.busy_ns);
    t
}

/// What is known of each file apart from its replays: operations by kind,
/// and the measured waits (all of them from the collector, the replayed
/// ones from the operations).
#[derive(Default)]
struct Tally {
    kinds: BTreeMap<(Dev, u64), BTreeMap<OpKind, u64>>,
    measured: BTreeMap<(Dev, u64), [Measured; 2]>,
    ops: u64,
}

impl Tally {
    fn op(&mut self, o: &FileOp) {
        self.ops += 1;
        *self
            .kinds
            .entry((o.dev, o.ino))
            .or_default()
            .entry(o.kind)
            .or_default() += 1;
        if o.measured_wait() > 0 {
            let m = self.measured.entry((o.dev, o.ino)).or_default();
            for (m, w) in m.iter_mut().zip(o.measured) {
                m.replayed_waited += w.waited;
                m.replayed_wait_total_ns += w.wait_total_ns;
                m.replayed_ops += u64::from(w.waited > 0);
            }
        }
    }

    /// Every measured wait, from [`Collector::measured`].
    fn all_measured(&mut self, all: &BTreeMap<(Dev, u64), [KindWaits; 2]>) {
        for (file, w) in all {
            let m = self.measured.entry(*file).or_default();
            for (m, w) in m.iter_mut().zip(w) {
                m.waited += w.waited;
                m.wait_total_ns += w.wait_total_ns;
            }
        }
    }
}

/// The whole `rltop whatif` analysis over a stream: collects operations
/// and replays them under the four policies as the stream goes.
pub struct WhatIfRun {
    cfg: Config,
    collector: Collector,
    replays: [Replay; 4],
    tally: Tally,
    buf: Vec<FileOp>,
    /// Range lock requests seen: a trace recorded with range locks already.
    range_locks: u64,
}

impl WhatIfRun {
    pub fn new(cfg: Config) -> WhatIfRun {
        WhatIfRun {
            cfg,
            collector: Collector::new(cfg),
            replays: Policy::ALL.map(Replay::new),
            tally: Tally::default(),
            buf: Vec::new(),
            range_locks: 0,
        }
    }

    /// Range lock requests seen so far.
    pub fn range_locks(&self) -> u64 {
        self.range_locks
    }

    /// The next event, without the model's facts (filesystems, lock
    /// addresses): see [`WhatIfRun::event_in`].
    pub fn event(&mut self, ev: &Event) {
        self.event_in(None, ev);
    }

    /// The next event; `m` (the model before the event) names the files'
    /// filesystems and the page-cache locks of `contention_*` addresses.
    pub fn event_in(&mut self, m: Option<&Model>, ev: &Event) {
        if matches!(ev.body, Body::RlRequest { .. }) {
            self.range_locks += 1;
        }
        self.collector.event_in(m, ev);
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
            self.tally.op(&o);
            for r in &mut self.replays {
                r.push(o);
            }
        }
    }

    /// [`WhatIfRun::finish`], with each file's path from the model (the
    /// trace's `file` events).
    pub fn finish_named(self, m: &Model) -> WhatIf {
        let mut w = self.finish();
        for f in &mut w.files {
            if let Ok(dev) = f.dev.parse::<Dev>() {
                f.path = m.file_info(dev, f.ino).and_then(|i| i.path.clone());
            }
        }
        w
    }

    pub fn finish(mut self) -> WhatIf {
        let collector = std::mem::take(&mut self.collector);
        self.tally.all_measured(collector.measured());
        let (rest, unmatched) = collector.finish();
        self.buf = rest;
        self.feed();
        let per_file = self.replays.map(Replay::finish);
        assemble(self.cfg, unmatched, self.tally, per_file)
    }
}

/// Replays operations (in arrival order) under the four policies and puts
/// the figures together; `measured` is [`Collector::measured`].
pub fn whatif(
    ops: &[FileOp],
    unmatched: u64,
    measured: &BTreeMap<(Dev, u64), [KindWaits; 2]>,
    cfg: Config,
) -> WhatIf {
    let mut tally = Tally::default();
    for o in ops {
        tally.op(o);
    }
    tally.all_measured(measured);
    assemble(cfg, unmatched, tally, Policy::ALL.map(|p| replay(ops, p)))
}

type PerFile = BTreeMap<(Dev, u64), Figures>;

fn by_lock(m: &[Measured; 2]) -> MeasuredByLock {
    MAINLINE_LOCKS
        .iter()
        .zip(m)
        .filter(|(_, m)| m.waited > 0)
        .map(|(c, m)| (c.as_str(), *m))
        .collect()
}

fn assemble(cfg: Config, unmatched: u64, mut tally: Tally, per_file: [PerFile; 4]) -> WhatIf {
    let [range, whole, shared, mainline] = per_file;
    let mut all_measured = [Measured::default(); 2];
    for m in tally.measured.values() {
        for (a, m) in all_measured.iter_mut().zip(m) {
            a.waited += m.waited;
            a.wait_total_ns += m.wait_total_ns;
            a.replayed_waited += m.replayed_waited;
            a.replayed_wait_total_ns += m.replayed_wait_total_ns;
            a.replayed_ops += m.replayed_ops;
        }
    }
    let mut files: Vec<FileWhatIf> = range
        .iter()
        .map(|(&(dev, ino), r)| FileWhatIf {
            dev: dev.to_string(),
            ino,
            path: None,
            kinds: tally.kinds.remove(&(dev, ino)).unwrap_or_default(),
            range: r.clone(),
            whole_file: whole.get(&(dev, ino)).cloned().unwrap_or_default(),
            file_shared: shared.get(&(dev, ino)).cloned().unwrap_or_default(),
            mainline: mainline.get(&(dev, ino)).cloned().unwrap_or_default(),
            measured: tally
                .measured
                .get(&(dev, ino))
                .map(by_lock)
                .unwrap_or_default(),
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
        readahead_gap_ns: cfg.readahead_gap_ns,
        fault_read_max_ns: cfg.fault_read_max_ns,
        ops: tally.ops,
        unmatched,
        range: total(&files.iter().map(|f| &f.range).collect::<Vec<_>>()),
        whole_file: total(&files.iter().map(|f| &f.whole_file).collect::<Vec<_>>()),
        file_shared: total(&files.iter().map(|f| &f.file_shared).collect::<Vec<_>>()),
        mainline: total(&files.iter().map(|f| &f.mainline).collect::<Vec<_>>()),
        measured: by_lock(&all_measured),
        contention_traced: None,
        files,
    }
}

/// The replay reads the events themselves, and from the model only the
/// facts the events gave earlier (a file's filesystem, a lock address's
/// file): it simulates other locks than the trace's.
impl Analysis for WhatIfRun {
    fn before(&mut self, m: &Model, _idx: u64, ev: &Event) {
        self.event_in(Some(m), ev);
    }
    fn gap(&mut self, _m: &Model, _idx: u64) {
        WhatIfRun::gap(self);
    }
}
