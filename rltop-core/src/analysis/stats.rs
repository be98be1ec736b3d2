//! Contention statistics, lock_stat style: per lock class, acquisitions,
//! contentions, wait and hold times (min/avg/max/total, p50/p99), and the
//! longest waits with the wait chain that caused them.
//!
//! Classes (rows):
//! - a range lock tree, per operation and mode (`Op` comes from the model:
//!   what the task was doing when it asked);
//! - an mmap_lock, per mm and read/write;
//! - a file operation without a range lock (DIO, punch, truncate, fault) per
//!   inode: its "hold" is the time it was in flight;
//! - a kernel lock seen by `lock:contention_begin/end`, per address.
//!
//! As in `/proc/lock_stat`, wait times are those of contended acquisitions
//! only; a range lock request is contended when the reference lock could
//! not grant it on arrival, an mmap_lock request when a conflicting holder
//! or earlier writer was there. Unmatched begins and ends are never counted
//! (a release whose acquire was lost, an end whose begin was not seen): the
//! numbers come from pairs the model saw whole.
//!
//! [`Stats::before`] runs before the model applies an event (it reads the
//! state the event ends), [`Stats::after`] after it (a new waiter's chain).
//! Memory follows the live state and the number of classes, not the trace.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::engine::Analysis;
use super::scope::ScopeFilter;
use super::waitfor::{self, Owned};
use crate::events::{Body, Dev, Event, Mode};
use crate::model::{FastMap, FileLock, LockSource, LockState, Model, Op, Seen, Wait, flock};

/// Wait chains kept by [`Stats`] (the longest waits).
pub const TOP_CHAINS: usize = 10;
/// Steps of a wait chain followed.
pub const CHAIN_STEPS: usize = 8;
/// A range-lock grant this long after its request is a wait, whatever
/// the reference predicted: an uncontended lock call takes microseconds.
pub const SLOW_GRANT_NS: u64 = 1_000_000;

/// What a row of statistics is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    RangeLock {
        tree: u64,
        op: Op,
        mode: Mode,
    },
    Mmap {
        mm: u64,
        write: bool,
    },
    FileOp {
        dev: Dev,
        ino: u64,
        op: Op,
    },
    Kernel {
        addr: u64,
    },
    /// A file's `i_rwsem` or `invalidate_lock`, by mode and by how its
    /// holds are known (see [`crate::model::flock`]).
    FileLock {
        lock: FileLock,
        write: bool,
        seen: Seen,
    },
}

/// A distribution of durations in ns: exact count, sum, min and max, and an
/// HDR histogram (2 significant digits) for percentiles.
#[derive(Clone, Debug)]
pub struct Hist {
    h: Histogram<u64>,
    pub count: u64,
    pub total: u64,
    pub min: u64,
    pub max: u64,
}

impl Default for Hist {
    fn default() -> Hist {
        Hist {
            // 2 significant digits, auto-resizing: small until long waits come.
            h: Histogram::new(2).expect("2 significant digits is valid"),
            count: 0,
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Hist {
    pub fn record(&mut self, ns: u64) {
        // Auto-resize grows the histogram to fit; should that ever fail,
        // clamp to the largest trackable value rather than lose the sample.
        if self.h.record(ns).is_err() {
            self.h.saturating_record(ns);
        }
        self.count += 1;
        self.total = self.total.saturating_add(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A distribution from its parts, as `rltop hist --format hdr` wrote
    /// them. `None` when they disagree (the count is not the histogram's,
    /// min or max outside its range): the figures would lie.
    pub fn from_parts(mut h: Histogram<u64>, total: u64, min: u64, max: u64) -> Option<Hist> {
        let count = h.len();
        if count == 0 {
            return (total == 0).then(Hist::default);
        }
        if min > max || !h.equivalent(h.min(), min) || !h.equivalent(h.max(), max) {
            return None;
        }
        if total < min.saturating_mul(count) || total > max.saturating_mul(count) {
            return None;
        }
        h.auto(true);
        Some(Hist {
            h,
            count,
            total,
            min,
            max,
        })
    }

    /// The HDR histogram behind the distribution (2 significant digits,
    /// values in ns): what `rltop hist --format hdr` serializes.
    pub fn hdr(&self) -> &Histogram<u64> {
        &self.h
    }

    pub fn mean(&self) -> u64 {
        self.total.checked_div(self.count).unwrap_or(0)
    }

    /// The value at quantile `q` (0..=1), 0 when empty. Clamped to the exact
    /// min and max (the histogram's buckets are 1% wide).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        self.h.value_at_quantile(q).clamp(self.min, self.max)
    }

    /// Log2 buckets `(low, high_exclusive, count)`, bcc/bpftrace style,
    /// from the bucket of the smallest value to that of the largest.
    pub fn log2(&self) -> Vec<(u64, u64, u64)> {
        if self.count == 0 {
            return Vec::new();
        }
        let bucket = |v: u64| 64 - v.leading_zeros();
        let (lo, hi) = (bucket(self.min), bucket(self.max));
        let mut out: Vec<(u64, u64, u64)> = (lo..=hi)
            .map(|b| {
                let low = if b == 0 { 0 } else { 1u64 << (b - 1) };
                let high = if b >= 64 { u64::MAX } else { 1u64 << b };
                (low, high, 0)
            })
            .collect();
        for v in self.h.iter_recorded() {
            let b = bucket(v.value_iterated_to()).clamp(lo, hi);
            out[(b - lo) as usize].2 += v.count_at_value();
        }
        out
    }

    /// Summary for reports.
    pub fn summary(&self) -> Option<Summary> {
        (self.count > 0).then(|| Summary {
            count: self.count,
            min: self.min,
            avg: self.mean(),
            max: self.max,
            total: self.total,
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
        })
    }

    /// Adds another distribution (merging rows).
    pub fn merge(&mut self, other: &Hist) {
        if other.count == 0 {
            return;
        }
        // Both auto-resize, so adding cannot fail for lack of range.
        let _ = self.h.add(&other.h);
        self.count += other.count;
        self.total = self.total.saturating_add(other.total);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// The figures of one distribution, in ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub avg: u64,
    pub max: u64,
    pub total: u64,
    pub p50: u64,
    pub p99: u64,
}

/// One class's statistics.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub acquisitions: u64,
    pub contentions: u64,
    pub wait: Hist,
    pub hold: Hist,
    /// Some sample came from a task outside the command's scope
    /// (`--all-tasks`), and none from inside (`inside`).
    pub outside: bool,
    pub inside: bool,
}

/// What a wait chain step waits for or owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Range {
        tree: u64,
        start: u64,
        last: u64,
        mode: Mode,
        op: Op,
    },
    Mmap {
        mm: u64,
        write: bool,
    },
    File {
        lock: FileLock,
        write: bool,
    },
}

/// One task of a recorded wait chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainStep {
    pub tid: u32,
    pub comm: Option<String>,
    /// What it owns that the previous step waits for (none for the first).
    pub owns: Option<Target>,
    /// It holds `owns` (else it is queued earlier for it, and waits).
    pub held: bool,
    /// `owns` is held for a direct IO in flight: IO completion releases it.
    pub dio: bool,
    /// What it waits for itself (none for the last step of an open chain).
    pub waits: Option<Target>,
    /// Outside the command's scope (`--all-tasks` shows it, marked).
    pub outside: bool,
}

/// A long wait and the chain of tasks behind it, as seen when it began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitChain {
    /// Request event and time; `wait` is how long until it was granted.
    pub idx: u64,
    pub ts: u64,
    pub wait: u64,
    pub steps: Vec<ChainStep>,
    pub cycle: bool,
}

/// Which duration a sample is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// A contended acquisition's wait (lock_stat's waittime).
    Wait,
    /// How long it was held (or, for a file operation, in flight).
    Hold,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Wait => "wait",
            Metric::Hold => "hold",
        }
    }
}

/// One duration [`Stats`] recorded, with the task it belongs to (the
/// waiter, or the holder: the task that took the lock, not the one that
/// released it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub class: Class,
    pub metric: Metric,
    pub tid: u32,
    pub ns: u64,
}

/// The statistics analysis. See the module docs.
#[derive(Debug, Default)]
pub struct Stats {
    rows: FastMap<Class, Row>,
    /// The samples of the last [`Stats::before`], when asked for.
    samples: Option<Vec<Sample>>,
    /// mmap_lock requests in flight by task: `(mm, ts, contended)`.
    mmap_wait: FastMap<u32, (u64, u64, bool)>,
    /// Range locks downgraded to read while held: when, by `(tree, lock)`.
    downgraded: FastMap<(u64, u64), u64>,
    /// Kernel lock contentions in flight by task: `(addr, flags, ts)`.
    kernel_wait: FastMap<u32, (u64, u32, u64)>,
    /// Per kernel lock address, its contention flags and the caller that
    /// first contended for it (`perf lock contention` names locks so).
    kernel_names: FastMap<u64, (u32, Option<String>)>,
    /// Tasks whose page-cache lock request contended (seen by a source that
    /// also sees the acquisition): the wait is counted when it is acquired.
    fl_contended: FastMap<u32, FileLock>,
    /// Keep wait chains (costs a graph walk per contended request).
    chains: bool,
    /// Chains of waits in progress, by waiting task.
    open_chains: FastMap<u32, WaitChain>,
    /// The longest finished waits, longest first.
    top: Vec<WaitChain>,
    /// Only these tasks' samples count (`record -- CMD` traces, without
    /// `--all-tasks`).
    scope: Option<ScopeFilter>,
    /// Count everyone's samples, only marking those outside the scope.
    all_tasks: bool,
    /// Where samples of tasks outside the scope go.
    scratch: Option<Box<Row>>,
    /// How many samples the scope left out.
    left_out: u64,
}

impl Stats {
    /// `chains`: also keep the [`TOP_CHAINS`] longest waits' chains.
    pub fn new(chains: bool) -> Stats {
        Stats {
            chains,
            ..Stats::default()
        }
    }

    /// Counts only the samples of the tasks in `scope` (the holder of a
    /// hold, the waiter of a wait); with `all_tasks`, counts everyone's but
    /// marks the wait chains' tasks outside it.
    pub fn with_scope(mut self, scope: ScopeFilter, all_tasks: bool) -> Stats {
        self.scope = Some(scope);
        self.all_tasks = all_tasks;
        self
    }

    /// Whether views leave `tid` (as it is now) out: it is outside the
    /// command's scope, and `--all-tasks` was not asked for.
    pub fn hides(&self, tid: u32) -> bool {
        !self.in_scope(tid)
    }

    /// Whether samples of `tid` (as it is now) count.
    fn in_scope(&self, tid: u32) -> bool {
        self.all_tasks || self.scope.as_ref().is_none_or(|s| s.contains(tid))
    }

    /// Whether `tid` (as it is now) is outside the command's scope (never,
    /// without one).
    pub fn outside(&self, tid: u32) -> bool {
        self.scope.as_ref().is_some_and(|s| !s.contains(tid))
    }

    /// The scope, if any.
    pub fn scope(&self) -> Option<&ScopeFilter> {
        self.scope.as_ref()
    }

    /// How many samples the scope left out.
    pub fn left_out(&self) -> u64 {
        self.left_out
    }

    /// Also keep each event's samples, for [`Stats::samples`] (grouping
    /// them by other keys than the class: `rltop hist --by task|test`).
    pub fn with_samples(mut self) -> Stats {
        self.samples = Some(Vec::new());
        self
    }

    /// The durations the last [`Stats::before`] recorded (empty unless
    /// [`Stats::with_samples`]).
    pub fn samples(&self) -> &[Sample] {
        self.samples.as_deref().unwrap_or(&[])
    }

    fn note(&mut self, class: Class, metric: Metric, tid: u32, ns: u64) {
        if !self.in_scope(tid) {
            return;
        }
        if let Some(s) = &mut self.samples {
            s.push(Sample {
                class,
                metric,
                tid,
                ns,
            });
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = (&Class, &Row)> {
        self.rows.iter()
    }

    pub fn row(&self, class: &Class) -> Option<&Row> {
        self.rows.get(class)
    }

    /// How a kernel lock contended for (`lock:contention_*`) was named:
    /// its `LCB_F_*` flags and its first caller.
    pub fn kernel_name(&self, addr: u64) -> Option<(u32, Option<&str>)> {
        self.kernel_names
            .get(&addr)
            .map(|(f, c)| (*f, c.as_deref()))
    }

    /// The longest waits with their chains, longest first.
    pub fn top_chains(&self) -> &[WaitChain] {
        &self.top
    }

    /// Takes the rows and longest waits counted so far out, leaving what is
    /// in flight: a wait or hold that began before and ends after is counted
    /// in the next part. Splits a stream's statistics in parts (xfstests
    /// tests) without losing a pair that spans the split.
    pub fn take_rows(&mut self) -> Stats {
        Stats {
            rows: std::mem::take(&mut self.rows),
            top: std::mem::take(&mut self.top),
            chains: self.chains,
            ..Stats::default()
        }
    }

    /// The row of `class`, for a sample of task `tid`: a scratch row when
    /// the scope leaves `tid` out.
    fn row_mut(&mut self, class: Class, tid: u32) -> &mut Row {
        if !self.in_scope(tid) {
            self.left_out += 1;
            return self.scratch.get_or_insert_with(Box::default);
        }
        let outside = self.outside(tid);
        let r = self.rows.entry(class).or_default();
        if outside {
            r.outside = true;
        } else {
            r.inside = true;
        }
        r
    }

    /// Counts what event `ev` ends, from the model's state before it.
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    fn ends(&mut self, m: &Model, ev: &Event) {
        if let Some(s) = &mut self.samples {
            s.clear();
        }
        let tid = ev.tid;
        match &ev.body {
            Body::RlAcquired { tree, lock } => {
                // A new hold of this lock address (its release was lost).
                self.downgraded.remove(&(*tree, *lock));
                let Some(l) = m.lock(*tree, *lock) else {
                    return;
                };
                if l.is_held() {
                    return;
                }
                let waited = ev.ts.saturating_sub(l.req_ts);
                // A wait as the kernel showed it: the reference made it
                // wait, or the kernel took at least SLOW_GRANT_NS from the
                // call to the grant (a wait the reference did not predict:
                // a lost wakeup, a preemption inside the call).
                let contended = l.contended || waited >= SLOW_GRANT_NS;
                let (op, mode) = (l.op, l.mode);
                let owner = l.tid;
                let class = Class::RangeLock {
                    tree: *tree,
                    op,
                    mode,
                };
                let r = self.row_mut(class, owner);
                r.acquisitions += 1;
                if contended {
                    r.contentions += 1;
                    r.wait.record(waited);
                    self.note(class, Metric::Wait, owner, waited);
                }
                self.close_chain(owner, ev.ts);
            }
            Body::RlRelease { tree, lock } => {
                let downgraded = self.downgraded.remove(&(*tree, *lock));
                if let Some(l) = m.lock(*tree, *lock)
                    && let LockState::Held { ts, .. } = l.state
                {
                    let class = Class::RangeLock {
                        tree: *tree,
                        op: l.op,
                        mode: l.mode,
                    };
                    // A downgraded lock's read hold runs from the downgrade.
                    let held = ev.ts.saturating_sub(downgraded.unwrap_or(ts));
                    self.row_mut(class, l.tid).hold.record(held);
                    self.note(class, Metric::Hold, l.tid, held);
                }
            }
            // The write hold ends here; the read hold begins (counted at
            // the release). Not an acquisition: nothing was waited for.
            Body::RlDowngrade { tree, lock } => {
                if let Some(l) = m.lock(*tree, *lock)
                    && let LockState::Held { ts, .. } = l.state
                    && l.mode == Mode::Write
                {
                    let class = Class::RangeLock {
                        tree: *tree,
                        op: l.op,
                        mode: Mode::Write,
                    };
                    let held = ev.ts.saturating_sub(ts);
                    let owner = l.tid;
                    self.row_mut(class, owner).hold.record(held);
                    self.note(class, Metric::Hold, owner, held);
                    self.downgraded.insert((*tree, *lock), ev.ts);
                }
            }
            Body::RlCancel { tree, lock } | Body::RlTrylockFailed { tree, lock } => {
                if let Some(l) = m.lock(*tree, *lock) {
                    self.open_chains.remove(&l.tid);
                }
            }
            Body::MmapLockRequest { mm, write } => {
                let contended = m
                    .mms
                    .get(mm)
                    .is_some_and(|s| waitfor::mmap_blockers(s, tid, *write).next().is_some());
                self.mmap_wait.insert(tid, (*mm, ev.ts, contended));
            }
            Body::MmapLockAcquired { mm, write, success } => {
                let req = self.mmap_wait.remove(&tid).filter(|r| r.0 == *mm);
                // mmap_write_downgrade(): the write hold ends here (the
                // model turns it into the read hold acquired now).
                if *success
                    && !*write
                    && let Some(h) = m
                        .mms
                        .get(mm)
                        .and_then(|s| s.holders.iter().rfind(|h| h.tid == tid && h.write))
                {
                    let held = ev.ts.saturating_sub(h.ts);
                    self.row_mut(
                        Class::Mmap {
                            mm: *mm,
                            write: true,
                        },
                        tid,
                    )
                    .hold
                    .record(held);
                }
                if !success {
                    self.open_chains.remove(&tid);
                    return;
                }
                let class = Class::Mmap {
                    mm: *mm,
                    write: *write,
                };
                let r = self.row_mut(class, tid);
                r.acquisitions += 1;
                if let Some((_, ts, true)) = req {
                    let waited = ev.ts.saturating_sub(ts);
                    r.contentions += 1;
                    r.wait.record(waited);
                    self.note(class, Metric::Wait, tid, waited);
                }
                self.close_chain(tid, ev.ts);
            }
            Body::MmapLockRelease { mm, write } => {
                // The same holder the model will drop.
                if let Some(h) = m.mms.get(mm).and_then(|s| {
                    s.holders
                        .iter()
                        .rfind(|h| h.tid == tid && h.write == *write)
                }) {
                    let held = ev.ts.saturating_sub(h.ts);
                    let class = Class::Mmap {
                        mm: *mm,
                        write: *write,
                    };
                    self.row_mut(class, tid).hold.record(held);
                    self.note(class, Metric::Hold, tid, held);
                }
            }
            Body::DioEnd { io, .. } => {
                if let Some(d) = m.dios.get(io) {
                    let op = if d.write { Op::DioWrite } else { Op::DioRead };
                    let class = Class::FileOp {
                        dev: d.dev,
                        ino: d.ino,
                        op,
                    };
                    let held = ev.ts.saturating_sub(d.ts);
                    let dtid = d.tid;
                    let r = self.row_mut(class, dtid);
                    r.acquisitions += 1;
                    r.hold.record(held);
                    self.note(class, Metric::Hold, dtid, held);
                }
            }
            Body::PunchEnd { .. } | Body::TruncateEnd { .. } => {
                // By id when the trace has ids: the end may come from
                // another task than the begin.
                if let Some(p) = m.punch_ending(tid, &ev.body) {
                    let class = Class::FileOp {
                        dev: p.dev,
                        ino: p.ino,
                        op: p.op,
                    };
                    let held = ev.ts.saturating_sub(p.ts);
                    let ptid = p.tid;
                    let r = self.row_mut(class, ptid);
                    r.acquisitions += 1;
                    r.hold.record(held);
                    self.note(class, Metric::Hold, ptid, held);
                    self.inferred_holds_end(m, ptid, p.dev, p.ino, ev.ts);
                }
            }
            Body::Fault { dev, ino, .. } => {
                self.row_mut(
                    Class::FileOp {
                        dev: *dev,
                        ino: *ino,
                        op: Op::Fault,
                    },
                    tid,
                )
                .acquisitions += 1;
            }
            Body::ContentionBegin {
                addr,
                flags,
                caller,
            } => {
                self.kernel_wait.insert(tid, (*addr, *flags, ev.ts));
                if m.file_lock_at(*addr).is_none() && !self.kernel_names.contains_key(addr) {
                    self.kernel_names.insert(*addr, (*flags, caller.clone()));
                }
            }
            Body::ContentionEnd { .. } => {
                if let Some((addr, flags, ts)) = self.kernel_wait.remove(&tid) {
                    self.contention_ended(m, tid, addr, flags, ts, ev.ts);
                }
            }
            Body::FileLockRequest { trylock, .. }
                if matches!(m.lock_source(), LockSource::Requests { .. })
                    && *trylock != Some(true) =>
            {
                // Held from here on (its acquisition is not traced).
                if let Some((lock, write)) = ev.body.file_lock() {
                    self.row_mut(
                        Class::FileLock {
                            lock,
                            write,
                            seen: Seen::AtRequest,
                        },
                        tid,
                    )
                    .acquisitions += 1;
                }
            }
            Body::FileLockAcquired { success: true, .. } => {
                let Some((lock, write)) = ev.body.file_lock() else {
                    return;
                };
                let asked = m
                    .flocks
                    .get(&lock)
                    .and_then(|s| s.waiters.iter().find(|w| w.tid == tid))
                    .map(|w| w.ts);
                let key = Class::FileLock {
                    lock,
                    write,
                    seen: Seen::Exact,
                };
                let contended = self.fl_contended.remove(&tid) == Some(lock);
                let r = self.row_mut(key, tid);
                r.acquisitions += 1;
                if let (true, Some(asked)) = (contended, asked) {
                    let waited = ev.ts.saturating_sub(asked);
                    r.contentions += 1;
                    r.wait.record(waited);
                    self.note(key, Metric::Wait, tid, waited);
                }
                self.close_chain(tid, ev.ts);
            }
            Body::FileLockRelease { .. } => {
                let Some((lock, write)) = ev.body.file_lock() else {
                    return;
                };
                if let Some(h) = m.fl_releasing(tid, lock, write) {
                    let key = Class::FileLock {
                        lock,
                        write: h.write,
                        seen: h.seen,
                    };
                    let held = ev.ts.saturating_sub(h.ts);
                    self.row_mut(key, tid).hold.record(held);
                    self.note(key, Metric::Hold, tid, held);
                }
            }
            Body::Exit => {
                self.mmap_wait.remove(&tid);
                self.kernel_wait.remove(&tid);
                self.fl_contended.remove(&tid);
                self.open_chains.remove(&tid);
            }
            Body::Lost { .. } => self.forget_begins(),
            _ => {}
        }
    }

    /// A gap (lost events, a damaged part of a trace): begins whose ends
    /// may be lost would pair with a later, unrelated end. Forget them.
    fn forget_begins(&mut self) {
        self.downgraded.clear();
        self.mmap_wait.clear();
        self.kernel_wait.clear();
        self.fl_contended.clear();
    }

    /// A `lock:contention_*` pair ended: a kernel lock's wait, or, on a
    /// learned page-cache lock's address, that lock's (counted at the
    /// acquisition instead where the source sees it).
    fn contention_ended(
        &mut self,
        m: &Model,
        tid: u32,
        addr: u64,
        flags: u32,
        begin: u64,
        end: u64,
    ) {
        let waited = end.saturating_sub(begin);
        let key = match m.file_lock_at(addr) {
            Some((dev, ino, class)) => {
                let lock = FileLock { dev, ino, class };
                let seen = match m.lock_source() {
                    s if !s.covers(m.fs_of(dev, ino)) => Seen::Inferred,
                    LockSource::Full => {
                        self.fl_contended.insert(tid, lock);
                        return;
                    }
                    _ => Seen::AtRequest,
                };
                // LCB_F_WRITE: a writer's wait.
                Class::FileLock {
                    lock,
                    write: flags & 4 != 0,
                    seen,
                }
            }
            None => Class::Kernel { addr },
        };
        let r = self.row_mut(key, tid);
        r.contentions += 1;
        r.wait.record(waited);
        self.note(key, Metric::Wait, tid, waited);
    }

    /// The holds inferred for an operation end with it.
    fn inferred_holds_end(&mut self, m: &Model, tid: u32, dev: Dev, ino: u64, ts: u64) {
        let Some(fs) = m.fs_of(dev, ino) else {
            return;
        };
        if !m.locks_inferred(dev, ino) {
            return;
        }
        for &class in flock::op_locks(fs) {
            let held = m
                .flocks
                .get(&FileLock { dev, ino, class })
                .and_then(|s| {
                    s.holders
                        .iter()
                        .find(|h| h.tid == tid && h.seen == Seen::Inferred)
                })
                .map(|h| ts.saturating_sub(h.ts));
            if let Some(held) = held {
                let key = Class::FileLock {
                    lock: FileLock { dev, ino, class },
                    write: true,
                    seen: Seen::Inferred,
                };
                let r = self.row_mut(key, tid);
                r.acquisitions += 1;
                r.hold.record(held);
                self.note(key, Metric::Hold, tid, held);
            }
        }
    }

    /// Records the chain behind a new wait, from the model's state after
    /// event `idx`.
    fn chain_of_wait(&mut self, m: &Model, idx: u64, ev: &Event) {
        if !self.chains {
            return;
        }
        let waits = match &ev.body {
            Body::RlRequest { tree, lock, .. } => m
                .lock(*tree, *lock)
                .is_some_and(|l| l.contended && !l.is_held()),
            Body::MmapLockRequest { .. } => self.mmap_wait.get(&ev.tid).is_some_and(|w| w.2),
            _ => false,
        };
        if !waits {
            return;
        }
        let c = waitfor::chain(m, ev.tid, CHAIN_STEPS);
        let mut steps = Vec::with_capacity(c.steps.len());
        let n = c.steps.len();
        for (i, &(tid, _)) in c.steps.iter().enumerate() {
            let task = m.tasks.get(&tid);
            // What this step owns that the previous one waits for.
            let owns = i
                .checked_sub(1)
                .and_then(|p| c.owns.get(p))
                .and_then(|&o| owned(m, o));
            let wait = task.and_then(|t| t.waiting);
            steps.push(ChainStep {
                tid,
                comm: task.and_then(|t| t.comm.clone()),
                owns: owns.map(|o| o.0),
                held: owns.is_some_and(|o| o.1),
                dio: c.dio && i + 1 == n,
                waits: wait.and_then(|w| target(m, w)),
                outside: self.outside(tid),
            });
        }
        self.open_chains.insert(
            ev.tid,
            WaitChain {
                idx,
                ts: ev.ts,
                wait: 0,
                steps,
                cycle: c.cycle,
            },
        );
    }

    /// `tid` got what it waited for at `ts`: keep its chain if long enough.
    fn close_chain(&mut self, tid: u32, ts: u64) {
        let Some(mut c) = self.open_chains.remove(&tid) else {
            return;
        };
        c.wait = ts.saturating_sub(c.ts);
        if self.top.len() == TOP_CHAINS && self.top.last().is_some_and(|l| l.wait >= c.wait) {
            return;
        }
        let at = self.top.partition_point(|x| x.wait >= c.wait);
        self.top.insert(at, c);
        self.top.truncate(TOP_CHAINS);
    }
}

impl Analysis for Stats {
    fn before(&mut self, m: &Model, _idx: u64, ev: &Event) {
        if let Some(s) = &mut self.scope {
            s.observe(ev);
        }
        self.ends(m, ev);
    }
    fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
        if !self.in_scope(ev.tid) {
            return;
        }
        self.chain_of_wait(m, idx, ev);
    }
    fn gap(&mut self, _m: &Model, _idx: u64) {
        self.forget_begins();
    }
}

/// What a wait is for.
fn target(m: &Model, w: Wait) -> Option<Target> {
    match w {
        Wait::Range { tree, lock } => {
            let l = m.lock(tree, lock)?;
            Some(Target::Range {
                tree,
                start: l.start,
                last: l.last,
                mode: l.mode,
                op: l.op,
            })
        }
        Wait::Mmap { mm, write, .. } => Some(Target::Mmap { mm, write }),
        Wait::File { lock, write, .. } => Some(Target::File { lock, write }),
    }
}

/// What a blocker owns, and whether it holds it (else it is queued for it).
fn owned(m: &Model, o: Owned) -> Option<(Target, bool)> {
    match o {
        Owned::Range { tree, lock } => {
            let l = m.lock(tree, lock)?;
            let t = Target::Range {
                tree,
                start: l.start,
                last: l.last,
                mode: l.mode,
                op: l.op,
            };
            Some((t, l.is_held()))
        }
        Owned::Mmap { mm, write, held } => Some((Target::Mmap { mm, write }, held)),
        Owned::File {
            lock, write, held, ..
        } => Some((Target::File { lock, write }, held)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PunchOp;
    use crate::testing::{acq, ev, rel, req};

    fn run(evs: &[Event]) -> Stats {
        let mut e = crate::analysis::Engine::new(Model::new(None), Stats::new(true));
        for (i, ev) in evs.iter().enumerate() {
            e.event(i as u64, ev);
        }
        e.into_parts().1
    }

    /// munmap()'s mmap_write_downgrade(): the write hold ends at the
    /// downgrade, the read hold runs from there to the read release.
    #[test]
    fn mmap_write_downgrade_splits_the_hold() {
        let acq = |ts, write| {
            ev(
                ts,
                1,
                Body::MmapLockAcquired {
                    mm: 5,
                    write,
                    success: true,
                },
            )
        };
        let s = run(&[
            ev(100, 1, Body::MmapLockRequest { mm: 5, write: true }),
            acq(200, true),
            acq(1_200, false),
            ev(
                1_700,
                1,
                Body::MmapLockRelease {
                    mm: 5,
                    write: false,
                },
            ),
        ]);
        let hold = |write| {
            let h = &s.row(&Class::Mmap { mm: 5, write }).unwrap().hold;
            (h.count, h.total)
        };
        assert_eq!(hold(true), (1, 1_000));
        assert_eq!(hold(false), (1, 500));
    }

    /// range_downgrade_write(): the write hold ends at the downgrade, the
    /// read hold runs from there to the release.
    #[test]
    fn range_write_downgrade_splits_the_hold() {
        let s = run(&[
            req(100, 1, 10, 0, 9, Mode::Write),
            acq(200, 1, 10),
            ev(1_200, 1, Body::RlDowngrade { tree: 1, lock: 10 }),
            rel(1_700, 1, 10),
        ]);
        let hold = |mode| {
            let class = Class::RangeLock {
                tree: 1,
                op: Op::Buffered,
                mode,
            };
            let h = &s.row(&class).unwrap().hold;
            (h.count, h.total)
        };
        assert_eq!(hold(Mode::Write), (1, 1_000));
        assert_eq!(hold(Mode::Read), (1, 500));
    }

    #[test]
    fn contended_range_lock_counts_wait_and_hold() {
        let s = run(&[
            req(100, 1, 10, 0, 9, Mode::Excl),
            acq(110, 1, 10),
            req(200, 2, 20, 5, 5, Mode::Excl),
            rel(1_110, 1, 10),
            acq(1_200, 2, 20),
            rel(1_300, 2, 20),
        ]);
        let r = s
            .row(&Class::RangeLock {
                tree: 1,
                op: Op::Buffered,
                mode: Mode::Excl,
            })
            .unwrap();
        assert_eq!((r.acquisitions, r.contentions), (2, 1));
        // Only the contended acquisition's wait counts (lock_stat).
        assert_eq!((r.wait.count, r.wait.min, r.wait.max), (1, 1_000, 1_000));
        assert_eq!((r.hold.count, r.hold.min, r.hold.max), (2, 100, 1_000));
        assert_eq!(r.hold.total, 1_100);
        // The chain: task 2 waited behind task 1's lock [0, 9].
        let c = &s.top_chains()[0];
        assert_eq!(c.wait, 1_000);
        assert_eq!(c.steps.len(), 2);
        assert_eq!((c.steps[0].tid, c.steps[1].tid), (2, 1));
        assert!(matches!(
            c.steps[1].owns,
            Some(Target::Range {
                start: 0,
                last: 9,
                ..
            })
        ));
    }

    /// A grant the reference would have made at once, but which the
    /// kernel made 1.5 s after the request (a lost wakeup): a wait, as the
    /// kernel showed it. A quick uncontended grant is none.
    #[test]
    fn a_slow_grant_is_a_wait_whatever_the_reference_predicted() {
        let s = run(&[
            req(100, 1, 10, 0, 9, Mode::Excl),
            acq(110, 1, 10),
            rel(200, 1, 10),
            req(1_000, 2, 20, 0, 9, Mode::Excl),
            acq(1_000 + 1_500_000_000, 2, 20),
            rel(1_000 + 1_500_000_100, 2, 20),
        ]);
        let r = s
            .row(&Class::RangeLock {
                tree: 1,
                op: Op::Buffered,
                mode: Mode::Excl,
            })
            .unwrap();
        assert_eq!((r.acquisitions, r.contentions), (2, 1));
        assert_eq!((r.wait.count, r.wait.max), (1, 1_500_000_000));
    }

    #[test]
    fn unmatched_ends_are_not_counted() {
        let s = run(&[
            // A release and a DIO end whose beginnings were never seen.
            rel(100, 1, 10),
            ev(200, 1, Body::DioEnd { io: 7, ret: 0 }),
            ev(300, 1, Body::ContentionEnd { addr: None, ret: 0 }),
            // An acquire whose request was lost.
            acq(400, 1, 11),
            ev(
                500,
                1,
                Body::MmapLockRelease {
                    mm: 9,
                    write: false,
                },
            ),
        ]);
        assert_eq!(s.rows().count(), 0);
    }

    #[test]
    fn lost_events_forget_open_begins() {
        let s = run(&[
            ev(
                100,
                1,
                Body::ContentionBegin {
                    addr: 5,
                    flags: 0,
                    caller: None,
                },
            ),
            ev(
                150,
                1,
                Body::Lost {
                    count: 3,
                    cpu: 0,
                    since: None,
                    probe: None,
                },
            ),
            ev(9_000, 1, Body::ContentionEnd { addr: None, ret: 0 }),
        ]);
        assert!(s.row(&Class::Kernel { addr: 5 }).is_none());
    }

    #[test]
    fn ops_are_attributed_from_what_the_task_does() {
        let dev = Dev { major: 8, minor: 1 };
        let s = run(&[
            ev(
                1,
                1,
                Body::PunchBegin {
                    dev,
                    ino: 3,
                    pos: 0,
                    len: 8192,
                    op: PunchOp::Punch,
                    id: None,
                },
            ),
            req(2, 1, 10, 0, 1, Mode::Excl),
            acq(3, 1, 10),
            rel(4, 1, 10),
            ev(5, 1, Body::PunchEnd { ret: 0, id: None }),
            ev(
                6,
                2,
                Body::DioBegin {
                    io: 77,
                    dev,
                    ino: 3,
                    pos: 4096 * 8,
                    len: 4096,
                    write: true,
                },
            ),
            req(7, 2, 20, 8, 8, Mode::Excl),
            acq(8, 2, 20),
            // Completion on another task.
            rel(20, 0, 20),
            ev(21, 0, Body::DioEnd { io: 77, ret: 4096 }),
            ev(
                30,
                3,
                Body::Fault {
                    dev,
                    ino: 3,
                    index: 4,
                },
            ),
            req(31, 3, 30, 4, 4, Mode::Excl),
            acq(32, 3, 30),
            rel(33, 3, 30),
            // The fault's page is consumed: the next lock is buffered.
            req(40, 3, 31, 4, 4, Mode::Excl),
            acq(41, 3, 31),
            rel(42, 3, 31),
        ]);
        let hold = |op| {
            s.row(&Class::RangeLock {
                tree: 1,
                op,
                mode: Mode::Excl,
            })
            .map(|r| r.hold.total)
        };
        assert_eq!(hold(Op::Punch), Some(1));
        assert_eq!(hold(Op::DioWrite), Some(12));
        assert_eq!(hold(Op::Fault), Some(1));
        assert_eq!(hold(Op::Buffered), Some(1));
        let dio = s
            .row(&Class::FileOp {
                dev,
                ino: 3,
                op: Op::DioWrite,
            })
            .unwrap();
        assert_eq!((dio.acquisitions, dio.hold.total), (1, 15));
        let punch = s
            .row(&Class::FileOp {
                dev,
                ino: 3,
                op: Op::Punch,
            })
            .unwrap();
        assert_eq!(punch.hold.total, 4);
    }

    /// Zero, collapse and insert are rows of their own; an end with an id
    /// counts the operation of that id, whichever task emits it, and an
    /// end whose id began nothing counts nothing.
    #[test]
    fn file_ops_pair_by_id_and_each_op_has_its_row() {
        let dev = Dev { major: 7, minor: 1 };
        let begin = |ts, tid, op, id| {
            ev(
                ts,
                tid,
                Body::PunchBegin {
                    dev,
                    ino: 3,
                    pos: 0,
                    len: 4096,
                    op,
                    id: Some(id),
                },
            )
        };
        let end = |ts, tid, id| {
            ev(
                ts,
                tid,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(id),
                },
            )
        };
        let s = run(&[
            begin(1, 1, PunchOp::Zero, 1),
            begin(2, 2, PunchOp::Collapse, 2),
            begin(3, 3, PunchOp::Insert, 3),
            // A loop kworker (tid 9) ends the collapse.
            end(12, 9, 2),
            end(21, 1, 1),
            end(33, 3, 3),
            end(40, 3, 77),
            ev(
                41,
                4,
                Body::TruncateBegin {
                    dev,
                    ino: 3,
                    size: 0,
                    id: Some(4),
                },
            ),
            // A punch end never closes a truncate of the same id.
            end(42, 4, 4),
            ev(
                50,
                4,
                Body::TruncateEnd {
                    ret: 0,
                    id: Some(4),
                },
            ),
        ]);
        let hold = |op| {
            s.row(&Class::FileOp { dev, ino: 3, op })
                .map(|r| (r.acquisitions, r.hold.max))
        };
        assert_eq!(hold(Op::Zero), Some((1, 20)));
        assert_eq!(hold(Op::Collapse), Some((1, 10)));
        assert_eq!(hold(Op::Insert), Some((1, 30)));
        assert_eq!(hold(Op::Truncate), Some((1, 9)));
        assert_eq!(hold(Op::Punch), None);
    }

    #[test]
    fn quantiles_and_log2_buckets() {
        let mut h = Hist::default();
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((49_000..=51_000).contains(&p50), "{p50}");
        assert!(h.quantile(0.99) >= 98_000);
        assert_eq!(h.quantile(1.0), 100_000);
        let b = h.log2();
        assert_eq!(b.iter().map(|x| x.2).sum::<u64>(), 100);
        // 1000 falls in [512, 1024), 100000 in [65536, 131072).
        assert_eq!((b[0].0, b[0].1, b[0].2), (512, 1024, 1));
        assert_eq!(b.last().unwrap().0, 65_536);
    }

    #[test]
    fn top_chains_keep_the_longest() {
        let mut evs = Vec::new();
        let mut ts = 0;
        // Task 1 holds [0,0]; tasks 2.. each wait i*100 ns for it in turn.
        for i in 0..(TOP_CHAINS as u64 + 5) {
            let lock = 100 + i;
            ts += 10;
            evs.push(req(ts, 1, 1, 0, 0, Mode::Excl));
            evs.push(acq(ts, 1, 1));
            evs.push(req(ts + 1, 2, lock, 0, 0, Mode::Excl));
            ts += (i + 1) * 100;
            evs.push(rel(ts, 1, 1));
            evs.push(acq(ts, 2, lock));
            evs.push(rel(ts + 1, 2, lock));
        }
        let s = run(&evs);
        let waits: Vec<u64> = s.top_chains().iter().map(|c| c.wait).collect();
        assert_eq!(waits.len(), TOP_CHAINS);
        assert!(waits.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(waits[0], (TOP_CHAINS as u64 + 5) * 100 - 1);
    }
}
