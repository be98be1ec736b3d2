//! Timelines (`rltop export`): the trace as slices on tracks, for Perfetto
//! and Chrome's trace viewer.
//!
//! - a track per task: its waits (range locks, mmap_lock, kernel locks),
//!   its holds (a range lock from acquisition to release, wherever the
//!   release ran: identity is `(tree, lock)`), its file operations in
//!   flight (DIO from submission to completion, punch, truncate);
//! - a track per tree: its held ranges, by whom;
//! - flows from a release to the waiter it woke: when a contended lock is
//!   acquired, the release that made the reference lock grant it (the
//!   model's `grantable_since`) is the one that woke it;
//! - a counter of waiters per tree (contended requests not yet acquired:
//!   those with a wait slice);
//! - markers (and lost events) and the checker's findings as instants, and
//!   a slice per xfstests test (from its marker to the next).
//!
//! Slices on one track may overlap without nesting (a task holds two
//! locks, released out of order; a tree has concurrent readers): the views
//! lay them out in lanes. Pure: no I/O, no clocks. Unlike the other
//! analyses, the result is kept whole: a timeline is as long as the trace.

use std::collections::{BTreeMap, VecDeque};

use super::Verdict;
use super::engine::Analysis;
use crate::events::{Body, Dev, Event};
use crate::model::{FastMap, Model, OpKey};

/// Which track a slice is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Track {
    Task(u32),
    Tree(u64),
    /// xfstests tests: a slice per test, from its `run fstests` marker to
    /// the next one (xfstests marks no end).
    Tests,
}

/// What kind of slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceKind {
    Wait,
    Hold,
    Io,
    Test,
}

impl SliceKind {
    /// The category Chrome JSON and Perfetto show.
    pub fn as_str(self) -> &'static str {
        match self {
            SliceKind::Wait => "wait",
            SliceKind::Hold => "hold",
            SliceKind::Io => "io",
            SliceKind::Test => "test",
        }
    }
}

/// A span of time on a track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    pub track: Track,
    pub begin: u64,
    pub end: u64,
    pub kind: SliceKind,
    pub name: String,
    pub args: Vec<(&'static str, String)>,
    /// Still open when the trace ended (`end` is the trace's last time).
    pub unfinished: bool,
    /// Flows starting at this slice (it released what the waiter waited for).
    pub flow_out: Vec<u64>,
    /// Flows ending at this slice (its hold began when that release woke it).
    pub flow_in: Vec<u64>,
}

/// Where an instant goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstantTrack {
    /// Markers (`marker` events, e.g. xfstests test starts) and lost events.
    Markers,
    /// The checker's findings.
    Findings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instant {
    pub track: InstantTrack,
    pub ts: u64,
    pub name: String,
    pub args: Vec<(&'static str, String)>,
}

/// The number of requests waiting on a tree, from `ts` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub tree: u64,
    pub ts: u64,
    pub waiters: u64,
}

/// A task of the timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    pub pid: u32,
    pub comm: Option<String>,
}

impl TaskInfo {
    /// `comm/tid`, or `tid N` for a task never named.
    pub fn label(&self, tid: u32) -> String {
        match &self.comm {
            Some(c) => format!("{c}/{tid}"),
            None => format!("tid {tid}"),
        }
    }
}

/// A whole timeline.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub slices: Vec<Slice>,
    pub instants: Vec<Instant>,
    pub counters: Vec<Counter>,
    /// Every task with a slice, by tid.
    pub tasks: BTreeMap<u32, TaskInfo>,
    /// Every tree with a slice or counter, and its file when known.
    pub trees: BTreeMap<u64, Option<(Dev, u64)>>,
    /// Flows made (ids are 1..=flows).
    pub flows: u64,
    pub first_ts: u64,
    pub last_ts: u64,
}

impl Timeline {
    /// A tree's name: `tree 0x... (dev/ino)`.
    pub fn tree_label(&self, tree: u64) -> String {
        match self.trees.get(&tree).copied().flatten() {
            Some((dev, ino)) => format!("tree {tree:#x} ({dev}/{ino})"),
            None => format!("tree {tree:#x}"),
        }
    }

    /// A task's name.
    pub fn task_label(&self, tid: u32) -> String {
        self.tasks.get(&tid).cloned().unwrap_or_default().label(tid)
    }
}

/// A range of pages as slice names show it: `[48, EOF]` for a range to the
/// end of the file (truncate).
pub fn range_name(start: u64, last: u64) -> String {
    if last == u64::MAX {
        format!("[{start}, EOF]")
    } else {
        format!("[{start}, {last}]")
    }
}

/// Releases remembered for flows: a waiter is woken by a recent one.
const RECENT_RELEASES: usize = 4096;

const OPEN: u64 = u64::MAX;

/// Builds a [`Timeline`] from an event stream. See the module docs.
#[derive(Debug)]
pub struct Builder {
    tl: Timeline,
    /// Open slices by what ends them.
    waits: FastMap<(u64, u64), usize>,
    holds: FastMap<(u64, u64), (usize, usize)>,
    mmap_waits: FastMap<u32, usize>,
    mmap_holds: FastMap<(u32, u64, bool), Vec<usize>>,
    /// Page-cache lock holds seen by the lock source: (task, lock) -> slices.
    file_holds: FastMap<(u32, crate::model::FileLock), Vec<usize>>,
    dios: FastMap<u64, usize>,
    /// Punch and truncate slices open, keyed as the model keys them (by id
    /// when the trace has ids).
    punches: FastMap<OpKey, usize>,
    kernel: FastMap<u32, usize>,
    /// Recent releases: (event index, the released hold's task slice).
    released: VecDeque<(u64, usize)>,
    /// Last waiter count per tree.
    waiters: FastMap<u64, u64>,
    /// The xfstests test running, as its slice.
    test: Option<usize>,
    started: bool,
    /// Carried from `before` to `after` of one event: the slice of the
    /// release that woke this acquisition, and whether an mmap_lock
    /// request must wait.
    flow_from: Option<usize>,
    mmap_contended: bool,
}

impl Builder {
    pub fn new() -> Builder {
        Builder {
            tl: Timeline::default(),
            waits: FastMap::default(),
            holds: FastMap::default(),
            mmap_waits: FastMap::default(),
            mmap_holds: FastMap::default(),
            file_holds: FastMap::default(),
            dios: FastMap::default(),
            punches: FastMap::default(),
            kernel: FastMap::default(),
            released: VecDeque::new(),
            waiters: FastMap::default(),
            test: None,
            started: false,
            flow_from: None,
            mmap_contended: false,
        }
    }

    fn task(&mut self, m: &Model, tid: u32, pid: u32) {
        let t = self.tl.tasks.entry(tid).or_default();
        if t.pid == 0 {
            t.pid = pid;
        }
        if t.comm.is_none()
            && let Some(c) = m.comm(tid)
        {
            t.comm = Some(c.to_string());
        }
    }

    fn open(
        &mut self,
        m: &Model,
        track: Track,
        begin: u64,
        kind: SliceKind,
        name: String,
        args: Vec<(&'static str, String)>,
    ) -> usize {
        if let Track::Tree(tree) = track {
            let file = m.file_of(tree);
            let slot = self.tl.trees.entry(tree).or_default();
            if file.is_some() {
                *slot = file;
            }
        }
        self.tl.slices.push(Slice {
            track,
            begin,
            end: OPEN,
            kind,
            name,
            args,
            unfinished: false,
            flow_out: Vec::new(),
            flow_in: Vec::new(),
        });
        self.tl.slices.len() - 1
    }

    /// A punch or truncate of task `tid` begins: a slice on its track
    /// until the matching end (one still open lost its end).
    fn begin_punch(&mut self, m: &Model, key: OpKey, tid: u32, pid: u32, ts: u64, name: String) {
        self.task(m, tid, pid);
        if let Some(p) = self.punches.remove(&key) {
            self.close(p, ts, Some("lost"));
        }
        let p = self.open(m, Track::Task(tid), ts, SliceKind::Io, name, Vec::new());
        self.punches.insert(key, p);
    }

    fn close(&mut self, i: usize, ts: u64, outcome: Option<&str>) {
        let s = &mut self.tl.slices[i];
        if s.end == OPEN {
            s.end = ts.max(s.begin);
            if let Some(o) = outcome {
                s.args.push(("outcome", o.to_string()));
            }
        }
    }

    /// What event `idx` ends, from the model's state before it.
    fn ends(&mut self, m: &Model, idx: u64, ev: &Event) {
        if !self.started {
            self.started = true;
            self.tl.first_ts = ev.ts;
        }
        self.tl.last_ts = self.tl.last_ts.max(ev.ts);
        let ts = ev.ts;
        let tid = ev.tid;
        let mut flow_from = None;
        let mut mmap_contended = false;
        match &ev.body {
            Body::RlAcquired { tree, lock } => {
                if let Some(l) = m.lock(*tree, *lock)
                    && !l.is_held()
                {
                    if l.contended
                        && let Some((_, gidx)) = l.grantable_since
                    {
                        flow_from = self
                            .released
                            .iter()
                            .rev()
                            .find(|r| r.0 == gidx)
                            .map(|r| r.1);
                    }
                    if let Some(w) = self.waits.remove(&(*tree, *lock)) {
                        self.close(w, ts, None);
                    }
                }
            }
            Body::RlRelease { tree, lock }
            | Body::RlCancel { tree, lock }
            | Body::RlTrylockFailed { tree, lock } => {
                let outcome = match ev.body {
                    Body::RlCancel { .. } => Some("cancelled"),
                    Body::RlTrylockFailed { .. } => Some("trylock failed"),
                    _ => Some("released before acquired"),
                };
                if let Some(w) = self.waits.remove(&(*tree, *lock)) {
                    self.close(w, ts, outcome);
                }
                if let Some((t, r)) = self.holds.remove(&(*tree, *lock)) {
                    self.close(t, ts, None);
                    self.close(r, ts, None);
                    if matches!(ev.body, Body::RlRelease { .. }) {
                        if self.released.len() == RECENT_RELEASES {
                            self.released.pop_front();
                        }
                        self.released.push_back((idx, t));
                    }
                }
            }
            Body::RlRequest { tree, lock, .. } => {
                // A request for a lock still known: the old one is gone.
                if let Some(w) = self.waits.remove(&(*tree, *lock)) {
                    self.close(w, ts, Some("lost"));
                }
                if let Some((t, r)) = self.holds.remove(&(*tree, *lock)) {
                    self.close(t, ts, Some("lost"));
                    self.close(r, ts, Some("lost"));
                }
            }
            Body::MmapLockRequest { mm, write } => {
                mmap_contended = m.mms.get(mm).is_some_and(|s| {
                    super::waitfor::mmap_blockers(s, tid, *write)
                        .next()
                        .is_some()
                });
            }
            _ => {}
        }
        self.flow_from = flow_from;
        self.mmap_contended = mmap_contended;
    }

    /// What event `idx` begins, from the model's state after it.
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    fn begins(&mut self, m: &Model, ev: &Event) {
        let ts = ev.ts;
        let tid = ev.tid;
        let flow_from = self.flow_from.take();
        let mmap_contended = std::mem::take(&mut self.mmap_contended);

        let pid = ev.pid;
        match &ev.body {
            Body::Task { comm, .. } => {
                if let Some(t) = self.tl.tasks.get_mut(&tid) {
                    t.comm = Some(comm.clone());
                }
            }
            Body::Tree { tree, dev, ino } => {
                if let Some(slot) = self.tl.trees.get_mut(tree) {
                    *slot = Some((*dev, *ino));
                }
            }
            Body::RlRequest {
                tree,
                lock,
                start,
                last,
                mode,
            } => {
                if let Some(l) = m.lock(*tree, *lock)
                    && l.contended
                    && !l.is_held()
                {
                    let op = l.op.as_str();
                    let args = vec![
                        ("tree", format!("{tree:#x}")),
                        ("lock", format!("{lock:#x}")),
                        ("range", format!("[{start}, {last}]")),
                        ("mode", mode.as_str().to_string()),
                        ("op", op.to_string()),
                    ];
                    self.task(m, tid, pid);
                    let name = format!("wait {op} {}", range_name(*start, *last));
                    let w = self.open(m, Track::Task(tid), ts, SliceKind::Wait, name, args);
                    self.waits.insert((*tree, *lock), w);
                }
            }
            Body::RlAcquired { tree, lock } => {
                if let Some(l) = m.lock(*tree, *lock)
                    && l.is_held()
                    && !self.holds.contains_key(&(*tree, *lock))
                {
                    let (owner, start, last, mode, op) =
                        (l.tid, l.start, l.last, l.mode.as_str(), l.op.as_str());
                    let owner_pid = m.tasks.get(&owner).map(|t| t.pid).unwrap_or(pid);
                    self.task(m, owner, owner_pid);
                    let args = vec![
                        ("tree", format!("{tree:#x}")),
                        ("lock", format!("{lock:#x}")),
                        ("range", format!("[{start}, {last}]")),
                        ("mode", mode.to_string()),
                        ("op", op.to_string()),
                        ("tid", owner.to_string()),
                    ];
                    let t = self.open(
                        m,
                        Track::Task(owner),
                        ts,
                        SliceKind::Hold,
                        format!("hold {op} {}", range_name(start, last)),
                        args.clone(),
                    );
                    let who = self.tl.task_label(owner);
                    let r = self.open(
                        m,
                        Track::Tree(*tree),
                        ts,
                        SliceKind::Hold,
                        format!("{} {mode} {op} by {who}", range_name(start, last)),
                        args,
                    );
                    self.holds.insert((*tree, *lock), (t, r));
                    if let Some(src) = flow_from {
                        self.tl.flows += 1;
                        let id = self.tl.flows;
                        self.tl.slices[src].flow_out.push(id);
                        self.tl.slices[t].flow_in.push(id);
                    }
                }
            }
            Body::MmapLockRequest { mm, write } => {
                if let Some(w) = self.mmap_waits.remove(&tid) {
                    self.close(w, ts, Some("lost"));
                }
                if mmap_contended {
                    self.task(m, tid, pid);
                    let rw = if *write { "write" } else { "read" };
                    let w = self.open(
                        m,
                        Track::Task(tid),
                        ts,
                        SliceKind::Wait,
                        format!("wait mmap_lock {rw}"),
                        vec![("mm", format!("{mm:#x}"))],
                    );
                    self.mmap_waits.insert(tid, w);
                }
            }
            Body::MmapLockAcquired { mm, write, success } => {
                if let Some(w) = self.mmap_waits.remove(&tid) {
                    self.close(w, ts, (!success).then_some("failed"));
                }
                if *success {
                    self.task(m, tid, pid);
                    let rw = if *write { "write" } else { "read" };
                    let h = self.open(
                        m,
                        Track::Task(tid),
                        ts,
                        SliceKind::Hold,
                        format!("hold mmap_lock {rw}"),
                        vec![("mm", format!("{mm:#x}"))],
                    );
                    self.mmap_holds
                        .entry((tid, *mm, *write))
                        .or_default()
                        .push(h);
                }
            }
            Body::MmapLockRelease { mm, write } => {
                if let Some(v) = self.mmap_holds.get_mut(&(tid, *mm, *write))
                    && let Some(h) = v.pop()
                {
                    if v.is_empty() {
                        self.mmap_holds.remove(&(tid, *mm, *write));
                    }
                    self.close(h, ts, None);
                }
            }
            Body::DioBegin {
                io,
                dev,
                ino,
                pos,
                len,
                write,
            } => {
                if let Some(d) = self.dios.remove(io) {
                    self.close(d, ts, Some("lost"));
                }
                self.task(m, tid, pid);
                let rw = if *write { "write" } else { "read" };
                let d = self.open(
                    m,
                    Track::Task(tid),
                    ts,
                    SliceKind::Io,
                    format!("dio {rw} {dev}/{ino} pos {pos} len {len}"),
                    vec![("io", format!("{io:#x}"))],
                );
                self.dios.insert(*io, d);
            }
            Body::DioEnd { io, ret } => {
                if let Some(d) = self.dios.remove(io) {
                    self.tl.slices[d].args.push(("ret", ret.to_string()));
                    self.close(d, ts, None);
                }
            }
            Body::PunchBegin {
                dev,
                ino,
                pos,
                len,
                op,
                id,
            } => {
                self.begin_punch(
                    m,
                    OpKey::new(tid, *id),
                    tid,
                    pid,
                    ts,
                    format!("{} {dev}/{ino} pos {pos} len {len}", op.as_str()),
                );
            }
            Body::TruncateBegin { dev, ino, size, id } => {
                self.begin_punch(
                    m,
                    OpKey::new(tid, *id),
                    tid,
                    pid,
                    ts,
                    format!("truncate {dev}/{ino} to {size}"),
                );
            }
            Body::PunchEnd { ret, id } | Body::TruncateEnd { ret, id } => {
                if let Some(p) = self.punches.remove(&OpKey::new(tid, *id)) {
                    self.tl.slices[p].args.push(("ret", ret.to_string()));
                    self.close(p, ts, None);
                }
            }
            Body::ContentionBegin {
                addr,
                flags,
                caller,
            } => {
                self.task(m, tid, pid);
                if let Some(k) = self.kernel.remove(&tid) {
                    self.close(k, ts, Some("lost"));
                }
                // A learned page-cache lock by name, else the kernel lock
                // by type and caller, as `perf lock contention` names it.
                let name = match m.file_lock_at(*addr) {
                    Some((dev, ino, class)) => format!(
                        "wait {}",
                        super::describe::file_lock(
                            m,
                            crate::model::FileLock { dev, ino, class },
                            flags & 4 != 0
                        )
                    ),
                    None if caller.is_some() => format!(
                        "wait {}",
                        super::describe::kernel_lock(*addr, *flags, caller.as_deref())
                    ),
                    None => format!("wait kernel lock {addr:#x}"),
                };
                let k = self.open(m, Track::Task(tid), ts, SliceKind::Wait, name, Vec::new());
                self.kernel.insert(tid, k);
            }
            Body::ContentionEnd { .. } => {
                if let Some(k) = self.kernel.remove(&tid) {
                    self.close(k, ts, None);
                }
            }
            Body::FileLockAcquired { success: true, .. } | Body::FileLockRequest { .. } => {
                // A hold once the model has it (an acquisition, or the
                // request of a source that does not see acquisitions).
                let Some((lock, write)) = ev.body.file_lock() else {
                    return;
                };
                let holds = m.flocks.get(&lock).is_some_and(|s| {
                    s.holders
                        .iter()
                        .any(|h| h.tid == tid && h.ts == ts && h.write == write)
                });
                if holds {
                    self.task(m, tid, pid);
                    let name = format!("hold {}", super::describe::file_lock(m, lock, write));
                    let h = self.open(m, Track::Task(tid), ts, SliceKind::Hold, name, Vec::new());
                    self.file_holds.entry((tid, lock)).or_default().push(h);
                }
            }
            Body::FileLockRelease { .. } => {
                let Some((lock, _)) = ev.body.file_lock() else {
                    return;
                };
                if let Some(v) = self.file_holds.get_mut(&(tid, lock))
                    && let Some(h) = v.pop()
                {
                    if v.is_empty() {
                        self.file_holds.remove(&(tid, lock));
                    }
                    self.close(h, ts, None);
                }
            }
            Body::Marker { text } => {
                self.tl.instants.push(Instant {
                    track: InstantTrack::Markers,
                    ts,
                    name: text.clone(),
                    args: vec![("tid", tid.to_string())],
                });
                if let Some(seq) = super::xfstests::test_name(text) {
                    if let Some(t) = self.test.take() {
                        self.close(t, ts, None);
                    }
                    let t = self.open(
                        m,
                        Track::Tests,
                        ts,
                        SliceKind::Test,
                        seq.to_string(),
                        vec![("marker", text.clone())],
                    );
                    self.test = Some(t);
                }
            }
            Body::Lost { count, cpu, .. } => self.tl.instants.push(Instant {
                track: InstantTrack::Markers,
                ts,
                name: format!("lost {count} events (cpu {cpu})"),
                args: Vec::new(),
            }),
            _ => {}
        }

        // Waiters per tree, when a range lock event may have changed them.
        if let Body::RlRequest { tree, .. }
        | Body::RlAcquired { tree, .. }
        | Body::RlRelease { tree, .. }
        | Body::RlDowngrade { tree, .. }
        | Body::RlCancel { tree, .. }
        | Body::RlTrylockFailed { tree, .. } = ev.body
        {
            let n = m.trees.get(&tree).map_or(0, |t| {
                t.locks
                    .values()
                    .filter(|l| l.contended && !l.is_held())
                    .count()
            }) as u64;
            let last = self.waiters.get(&tree).copied();
            if last != Some(n) && (last.is_some() || n > 0) {
                self.waiters.insert(tree, n);
                let file = m.file_of(tree);
                let slot = self.tl.trees.entry(tree).or_default();
                if file.is_some() {
                    *slot = file;
                }
                self.tl.counters.push(Counter {
                    tree,
                    ts,
                    waiters: n,
                });
            }
        }
    }

    /// Ends the stream: open slices end at the last time (marked
    /// unfinished), findings become instants.
    pub fn finish(mut self, verdict: Verdict) -> Timeline {
        let last = self.tl.last_ts;
        for s in &mut self.tl.slices {
            if s.end == OPEN {
                s.end = last.max(s.begin);
                s.unfinished = true;
            }
        }
        for f in verdict.findings {
            let mut args = vec![
                ("severity", format!("{:?}", f.severity).to_lowercase()),
                ("certain", f.certain.to_string()),
                ("message", f.message.clone()),
                (
                    "tids",
                    f.tids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                (
                    "evidence",
                    f.evidence
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ];
            if let Some(t) = f.tree {
                args.push(("tree", format!("{t:#x}")));
            }
            if let Some((a, b)) = f.range {
                args.push(("range", format!("[{a}, {b}]")));
            }
            self.tl.instants.push(Instant {
                track: InstantTrack::Findings,
                ts: f.ts,
                name: f.kind.as_str().to_string(),
                args,
            });
        }
        self.tl
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Analysis for Builder {
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        self.ends(m, idx, ev);
    }
    fn after(&mut self, m: &Model, _idx: u64, ev: &Event) {
        self.begins(m, ev);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::Mode;
    use crate::testing::{acq, ev, rel, req};

    pub(crate) fn build(evs: &[Event]) -> Timeline {
        let mut e = crate::analysis::Engine::new(
            Model::new(None),
            (
                crate::analysis::Checker::new(Default::default()),
                Builder::new(),
            ),
        );
        for (i, ev) in evs.iter().enumerate() {
            e.event(i as u64, ev);
        }
        let (m, (c, b)) = e.into_parts();
        b.finish(c.finish(&m))
    }

    fn hold(tl: &Timeline, tid: u32) -> &Slice {
        tl.slices
            .iter()
            .find(|s| s.track == Track::Task(tid) && s.kind == SliceKind::Hold)
            .unwrap()
    }

    /// A holds; B then C queue for the same page. A's release wakes B,
    /// B's wakes C: two flows, B's hold in the middle of the chain.
    pub(crate) fn chain() -> Vec<Event> {
        let x = Mode::Excl;
        vec![
            req(10, 1, 100, 0, 0, x),
            acq(10, 1, 100),
            req(20, 2, 200, 0, 0, x),
            req(30, 3, 300, 0, 0, x),
            rel(100, 1, 100),
            acq(110, 2, 200),
            rel(200, 2, 200),
            acq(210, 3, 300),
            rel(300, 3, 300),
        ]
    }

    #[test]
    fn flows_follow_wakeups_down_a_chain() {
        let tl = build(&chain());
        assert_eq!(tl.flows, 2);
        assert_eq!(hold(&tl, 1).flow_out, vec![1]);
        assert_eq!(hold(&tl, 2).flow_in, vec![1]);
        assert_eq!(hold(&tl, 2).flow_out, vec![2]);
        assert_eq!(hold(&tl, 3).flow_in, vec![2]);
        // Waits: B 20..110, C 30..210; waiters 1, 2, 1, 0.
        let waits: Vec<(u32, u64, u64)> = tl
            .slices
            .iter()
            .filter(|s| s.kind == SliceKind::Wait)
            .map(|s| match s.track {
                Track::Task(t) => (t, s.begin, s.end),
                _ => panic!("a wait off a task track"),
            })
            .collect();
        assert_eq!(waits, vec![(2, 20, 110), (3, 30, 210)]);
        let w: Vec<(u64, u64)> = tl.counters.iter().map(|c| (c.ts, c.waiters)).collect();
        assert_eq!(w, vec![(20, 1), (30, 2), (110, 1), (210, 0)]);
    }

    /// One writer's release grants two readers at once: two flows.
    pub(crate) fn readers() -> Vec<Event> {
        vec![
            req(10, 1, 100, 0, 9, Mode::Write),
            acq(10, 1, 100),
            req(20, 2, 200, 1, 1, Mode::Read),
            req(30, 3, 300, 5, 5, Mode::Read),
            rel(100, 1, 100),
            acq(110, 2, 200),
            acq(120, 3, 300),
            rel(200, 2, 200),
            rel(300, 3, 300),
        ]
    }

    #[test]
    fn one_release_may_wake_several() {
        let tl = build(&readers());
        assert_eq!(hold(&tl, 1).flow_out, vec![1, 2]);
        assert_eq!(hold(&tl, 2).flow_in, vec![1]);
        assert_eq!(hold(&tl, 3).flow_in, vec![2]);
        // The tree shows both readers' ranges, overlapping in time.
        let tree: Vec<&str> = tl
            .slices
            .iter()
            .filter(|s| s.track == Track::Tree(1))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            tree,
            vec![
                "[0, 9] write buffered by tid 1",
                "[1, 1] read buffered by tid 2",
                "[5, 5] read buffered by tid 3"
            ]
        );
    }

    #[test]
    fn open_slices_end_with_the_trace_and_uncontended_locks_have_no_wait() {
        let x = Mode::Excl;
        let tl = build(&[
            req(10, 1, 100, 0, 0, x),
            acq(12, 1, 100),
            req(20, 2, 200, 0, 0, x),
            ev(50, 9, Body::Marker { text: "end".into() }),
        ]);
        let open: Vec<(SliceKind, u64, u64, bool)> = tl
            .slices
            .iter()
            .filter(|s| matches!(s.track, Track::Task(_)))
            .map(|s| (s.kind, s.begin, s.end, s.unfinished))
            .collect();
        assert_eq!(
            open,
            vec![
                (SliceKind::Hold, 12, 50, true),
                (SliceKind::Wait, 20, 50, true)
            ]
        );
        assert_eq!(tl.instants.len(), 1);
        assert_eq!(range_name(48, u64::MAX), "[48, EOF]");
    }
}
