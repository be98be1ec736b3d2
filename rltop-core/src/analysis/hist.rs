//! Histograms of wait or hold times, grouped into series (`rltop hist`).
//!
//! The durations are those of [`Stats`] (same pairing, same rules: only
//! contended acquisitions have a wait, unmatched begins and ends are never
//! counted), taken one by one ([`Stats::with_samples`]) and grouped by a
//! key: the operation, the lock tree (or mm, kernel lock, file), the task,
//! or the xfstests test running at the time (`run fstests <seq> at ...`
//! markers). Each series is a [`Hist`]: exact count, sum, min and max, and
//! an HDR histogram, so series from several traces (or machines) add up
//! exactly ([`HistSet::merge`]).
//!
//! Pure: no I/O, no clocks. Memory follows the live state and the number of
//! series, not the trace length.

use std::collections::BTreeMap;

use super::engine::Analysis;
use super::scope::{OUTSIDE, ScopeFilter};
use super::stats::{Class, Hist, Metric, Stats};
use crate::events::{Body, Dev, Event};
use crate::model::Model;

/// How samples are grouped into series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Op,
    Tree,
    Task,
    Test,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Op => "op",
            By::Tree => "tree",
            By::Task => "task",
            By::Test => "test",
        }
    }
}

/// What kind of lock a series is about (the report's class names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockKind {
    RangeLock,
    MmapLock,
    FileOp,
    KernelLock,
    IRwsem,
    InvalidateLock,
}

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::RangeLock => "range_lock",
            LockKind::MmapLock => "mmap_lock",
            LockKind::FileOp => "file_op",
            LockKind::KernelLock => "kernel_lock",
            LockKind::IRwsem => "i_rwsem",
            LockKind::InvalidateLock => "invalidate_lock",
        }
    }

    /// From [`LockKind::as_str`] (HDR logs name their series so).
    pub fn parse(s: &str) -> Option<LockKind> {
        [
            LockKind::RangeLock,
            LockKind::MmapLock,
            LockKind::FileOp,
            LockKind::KernelLock,
            LockKind::IRwsem,
            LockKind::InvalidateLock,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    fn of(class: &Class) -> LockKind {
        match class {
            Class::RangeLock { .. } => LockKind::RangeLock,
            Class::Mmap { .. } => LockKind::MmapLock,
            Class::FileOp { .. } => LockKind::FileOp,
            Class::Kernel { .. } => LockKind::KernelLock,
            Class::FileLock { lock, .. } => match lock.class {
                crate::events::FileLockClass::IRwsem => LockKind::IRwsem,
                crate::events::FileLockClass::InvalidateLock => LockKind::InvalidateLock,
            },
        }
    }
}

/// The key of one series: which trace (when several are shown side by
/// side), which kind of lock, and the value of the `--by` key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub trace: Option<String>,
    pub lock: LockKind,
    /// `op`: the operation (`fault`, `dio_write`, ..., `read`/`write` for
    /// mmap_lock, `contention` for a kernel lock); `tree`: the tree, mm or
    /// kernel lock address in hex, or the file `dev/ino` of a file
    /// operation; `task`: the tid; `test`: the test's sequence name, or
    /// [`NO_TEST`] before the first test.
    pub key: String,
}

/// The `test` key of samples before the first xfstests marker.
pub const NO_TEST: &str = "none";

/// The name of the `--by` label of a series, as Prometheus and CSV show
/// it: for `--by tree` it says what the object is.
pub fn key_label(by: By, lock: LockKind) -> &'static str {
    match (by, lock) {
        (By::Op, _) => "op",
        (By::Tree, LockKind::RangeLock) => "tree",
        (By::Tree, LockKind::MmapLock) => "mm",
        (By::Tree, LockKind::FileOp) => "file",
        (By::Tree, LockKind::KernelLock) => "addr",
        (By::Tree, LockKind::IRwsem | LockKind::InvalidateLock) => "file",
        (By::Task, _) => "tid",
        (By::Test, _) => "test",
    }
}

/// The histograms of one or more traces.
#[derive(Clone, Debug)]
pub struct HistSet {
    pub metric: Metric,
    pub by: By,
    pub series: BTreeMap<SeriesKey, Hist>,
    /// What the keys name, where known: a tree's file (`dev/ino`), a
    /// task's name.
    pub notes: BTreeMap<String, String>,
    /// Which tasks each recording of a command counted (the text form's
    /// first lines).
    pub scope: Vec<String>,
}

impl HistSet {
    pub fn new(metric: Metric, by: By) -> HistSet {
        HistSet {
            metric,
            by,
            series: BTreeMap::new(),
            notes: BTreeMap::new(),
            scope: Vec::new(),
        }
    }

    /// Adds another set's series to this one's (HDR add: exact). Series
    /// with the same key add up.
    pub fn merge(&mut self, other: &HistSet) {
        for (k, h) in &other.series {
            self.series.entry(k.clone()).or_default().merge(h);
        }
        for (k, n) in &other.notes {
            self.notes.entry(k.clone()).or_insert_with(|| n.clone());
        }
        self.scope.extend(other.scope.iter().cloned());
    }

    /// Names every series of this set after trace `name` (to show several
    /// traces side by side).
    pub fn label_trace(&mut self, name: &str) {
        let series = std::mem::take(&mut self.series);
        self.series = series
            .into_iter()
            .map(|(mut k, h)| {
                k.trace = Some(name.to_string());
                (k, h)
            })
            .collect();
    }
}

/// Builds a [`HistSet`] from an event stream. See the module docs.
#[derive(Debug)]
pub struct Histograms {
    stats: Stats,
    set: HistSet,
    test: Option<String>,
}

impl Histograms {
    pub fn new(metric: Metric, by: By) -> Histograms {
        Histograms {
            stats: Stats::new(false).with_samples(),
            set: HistSet::new(metric, by),
            test: None,
        }
    }

    /// Counts only the tasks of `scope` (see [`Stats::with_scope`]);
    /// `note` is the line that says so.
    pub fn with_scope(mut self, scope: ScopeFilter, all_tasks: bool, note: String) -> Histograms {
        self.stats = self.stats.with_scope(scope, all_tasks);
        self.set.scope.push(note);
        self
    }

    pub fn finish(self) -> HistSet {
        self.set
    }
}

impl Analysis for Histograms {
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        self.stats.before(m, idx, ev);
    }

    /// Files the durations the event ended (`Stats::before`) under their
    /// series; a marker first starts a new test.
    fn after(&mut self, m: &Model, _idx: u64, ev: &Event) {
        match &ev.body {
            Body::Marker { text } => {
                if let Some(seq) = super::xfstests::test_name(text) {
                    self.test = Some(seq.to_string());
                }
            }
            Body::Tree { tree, dev, ino } if self.set.by == By::Tree => {
                self.set
                    .notes
                    .insert(format!("{tree:#x}"), file_name(*dev, *ino));
            }
            _ => {}
        }
        let by = self.set.by;
        for s in self.stats.samples() {
            if s.metric != self.set.metric {
                continue;
            }
            let key = match (by, s.class) {
                (By::Op, Class::RangeLock { op, .. } | Class::FileOp { op, .. }) => {
                    op.as_str().to_string()
                }
                (By::Op, Class::Mmap { write, .. }) => {
                    if write { "write" } else { "read" }.to_string()
                }
                (By::Op, Class::Kernel { .. }) => "contention".to_string(),
                (By::Op, Class::FileLock { write, .. }) => {
                    if write { "write" } else { "read" }.to_string()
                }
                (By::Tree, Class::FileLock { lock, .. }) => file_name(lock.dev, lock.ino),
                (By::Tree, Class::RangeLock { tree, .. }) => format!("{tree:#x}"),
                (By::Tree, Class::Mmap { mm, .. }) => format!("{mm:#x}"),
                (By::Tree, Class::Kernel { addr }) => format!("{addr:#x}"),
                (By::Tree, Class::FileOp { dev, ino, .. }) => file_name(dev, ino),
                (By::Task, _) => {
                    let key = s.tid.to_string();
                    if let Some(comm) = m.comm(s.tid) {
                        let note = if self.stats.outside(s.tid) {
                            format!("{comm} {OUTSIDE}")
                        } else {
                            comm.to_string()
                        };
                        if self.set.notes.get(&key).is_none_or(|c| *c != note) {
                            self.set.notes.insert(key.clone(), note);
                        }
                    }
                    key
                }
                (By::Test, _) => self.test.as_deref().unwrap_or(NO_TEST).to_string(),
            };
            let k = SeriesKey {
                trace: None,
                lock: LockKind::of(&s.class),
                key,
            };
            self.set.series.entry(k).or_default().record(s.ns);
        }
    }

    /// A damaged part of the stream (see [`Stats::gap`]).
    fn gap(&mut self, m: &Model, idx: u64) {
        self.stats.gap(m, idx);
    }
}

/// A file as series keys name it: `major:minor/ino`.
pub fn file_name(dev: Dev, ino: u64) -> String {
    format!("{dev}/{ino}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Mode;
    use crate::testing::ev;

    fn run(by: By, metric: Metric, evs: &[Event]) -> HistSet {
        let mut e = crate::analysis::Engine::new(Model::new(None), Histograms::new(metric, by));
        for (i, ev) in evs.iter().enumerate() {
            e.event(i as u64, ev);
        }
        e.into_parts().1.finish()
    }

    fn lock_cycle(t0: u64, tid: u32, lock: u64, wait: u64, hold: u64) -> Vec<Event> {
        // `tid` holds [0,0] of tree 1 for `hold` ns; another task (tid+100)
        // waits `wait` ns behind it when `wait` > 0.
        let req = |ts, tid, lock| {
            ev(
                ts,
                tid,
                Body::RlRequest {
                    tree: 1,
                    lock,
                    start: 0,
                    last: 0,
                    mode: Mode::Excl,
                },
            )
        };
        let mut v = vec![
            req(t0, tid, lock),
            ev(t0, tid, Body::RlAcquired { tree: 1, lock }),
        ];
        if wait > 0 {
            v.push(req(t0 + hold - wait, tid + 100, lock + 1));
        }
        v.push(ev(t0 + hold, tid, Body::RlRelease { tree: 1, lock }));
        if wait > 0 {
            v.push(ev(
                t0 + hold,
                tid + 100,
                Body::RlAcquired {
                    tree: 1,
                    lock: lock + 1,
                },
            ));
            v.push(ev(
                t0 + hold + 1,
                tid + 100,
                Body::RlRelease {
                    tree: 1,
                    lock: lock + 1,
                },
            ));
        }
        v
    }

    #[test]
    fn by_test_splits_at_fstests_markers() {
        let mut evs = vec![ev(
            0,
            1,
            Body::Marker {
                text: "run fstests generic/001 at 2026-11-29 10:00:00".into(),
            },
        )];
        evs.extend(lock_cycle(10, 1, 10, 300, 1000));
        evs.push(ev(
            5000,
            1,
            Body::Marker {
                text: "run fstests generic/002 at 2026-11-29 10:00:01".into(),
            },
        ));
        evs.extend(lock_cycle(6000, 2, 20, 700, 1000));
        evs.extend(lock_cycle(9000, 3, 30, 900, 1000));
        let s = run(By::Test, Metric::Wait, &evs);
        let get = |t: &str| {
            s.series
                .get(&SeriesKey {
                    trace: None,
                    lock: LockKind::RangeLock,
                    key: t.into(),
                })
                .map(|h| (h.count, h.total))
        };
        assert_eq!(get("generic/001"), Some((1, 300)));
        assert_eq!(get("generic/002"), Some((2, 1600)));
        assert_eq!(get(NO_TEST), None);
        assert_eq!(s.series.len(), 2);
    }

    #[test]
    fn by_task_names_holders_and_merge_adds_up() {
        let mut evs = vec![ev(
            0,
            1,
            Body::Task {
                comm: "fsx".into(),
                kthread: false,
            },
        )];
        evs.extend(lock_cycle(10, 1, 10, 0, 1000));
        evs.extend(lock_cycle(2000, 1, 10, 0, 3000));
        let a = run(By::Task, Metric::Hold, &evs);
        let k = SeriesKey {
            trace: None,
            lock: LockKind::RangeLock,
            key: "1".into(),
        };
        assert_eq!(a.series[&k].count, 2);
        assert_eq!((a.series[&k].min, a.series[&k].max), (1000, 3000));
        assert_eq!(a.notes["1"], "fsx");
        let mut m = a.clone();
        m.merge(&a);
        assert_eq!(m.series[&k].count, 4);
        assert_eq!(m.series[&k].total, 8000);
        assert_eq!(m.series[&k].hdr().len(), 4);
    }

    #[test]
    fn marker_parsing() {
        assert_eq!(
            crate::analysis::xfstests::test_name("run fstests xfs/123 at 2026-01-01 00:00:00"),
            Some("xfs/123")
        );
        assert_eq!(crate::analysis::xfstests::test_name("hello"), None);
        assert_eq!(
            crate::analysis::xfstests::test_name("[  12.5] run fstests generic/002 at 2026-01-01"),
            Some("generic/002")
        );
        assert_eq!(crate::analysis::xfstests::test_name("run fstests "), None);
    }
}
