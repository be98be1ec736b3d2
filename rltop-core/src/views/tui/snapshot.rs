//! What one frame shows: a plain copy of the state the analyses hold,
//! built by [`build`] from the model, the statistics and the findings.
//!
//! The pipeline thread builds a snapshot at most ~20 times a second and
//! hands it to the drawing thread, which never touches the model: drawing
//! and key handling cannot slow the event pipeline, and the render functions
//! are pure over this struct (the snapshot tests build one from a handful of
//! events). Building is pure too: no I/O, no clocks (times come in `Extra`).

use std::sync::Arc;

use crate::analysis::Finding;
use crate::analysis::describe;
use crate::analysis::stats::{Class, Hist, Stats, Summary};
use crate::analysis::waitfor::{self, Owned};
use crate::events::{Dev, FileLockClass, Mode};
use crate::model::{FastMap, LockState, Model, Op, Seen, Wait};

/// Most nodes of the wait-chain forest (a pathological trace stays cheap).
pub const MAX_WAIT_NODES: usize = 2000;
/// Deepest wait chain followed.
pub const MAX_WAIT_DEPTH: usize = 12;

/// One frame's worth of state.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub status: Status,
    /// One row per tree or inode (unsorted; the view sorts and filters).
    pub files: Vec<FileRow>,
    /// Newest first. Shared between snapshots while unchanged.
    pub findings: Arc<Vec<FindingRow>>,
    /// The wait-for forest, depth-first: waiter, then what blocks it.
    pub waits: Vec<WaitNode>,
    /// Log2 histograms per operation, then mmap_lock.
    pub hists: Vec<HistPanel>,
}

/// The status line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// `live`, `replay FILE`, `demo (deadlock)`.
    pub source: String,
    pub profile: String,
    /// Probes attached and known, live only.
    pub probes: Option<(usize, usize)>,
    pub events: u64,
    /// Events per second of trace time (live: of wall time).
    pub rate: f64,
    /// Events lost so far: always shown.
    pub lost: u64,
    /// Of those, what each probe missed in the kernel, most first.
    pub missed: Vec<(String, u64)>,
    /// Trace time of the latest event, relative to the first.
    pub now: u64,
    /// Absolute time of the first event (the origin of relative times).
    pub first_ts: u64,
    /// Trace time of the last event of the whole trace, when known (replay).
    pub end: Option<u64>,
    pub flavour: Option<&'static str>,
    /// Replay and demo only.
    pub play: Option<Play>,
    /// Something the user should know (a trace problem, "end of trace").
    pub note: Option<String>,
    /// Which tasks are shown, for a recording of a command (issue 16).
    pub scope: Option<String>,
}

/// Replay state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Play {
    pub paused: bool,
    pub speed: f64,
    /// The source has no more events.
    pub finished: bool,
    /// Seeking backwards is possible (a file, not a generated stream).
    pub seekable: bool,
}

/// Identity of an Overview row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKey {
    /// A range lock tree (linked to its inode when a `tree` event said so).
    Tree(u64),
    /// An inode without a known tree: file operations only (mainline kernels).
    Inode(Dev, u64),
}

/// One tree or inode.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRow {
    pub key: FileKey,
    /// `dev:ino` when known, else the tree address.
    pub name: String,
    pub held: usize,
    pub waiters: usize,
    /// DIO, punch and truncate in flight.
    pub in_flight: usize,
    pub acquisitions: u64,
    pub contentions: u64,
    /// Contentions per second over the last second of trace time.
    pub cont_rate: f64,
    /// Range lock waits (contended acquisitions).
    pub wait: Option<Summary>,
    /// Longest range lock hold (or operation in flight).
    pub hold_max: Option<u64>,
    /// Held ranges, waiters and operations in flight, by start page.
    pub ranges: Vec<RangeRow>,
}

/// What a [`RangeRow`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RangeState {
    Held,
    Waiting,
    /// A file operation without a range lock (DIO, punch, truncate).
    InFlight,
}

/// One range of a file's page space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeRow {
    /// The range lock, when it is one.
    pub lock: Option<u64>,
    pub tid: u32,
    pub comm: Option<String>,
    /// Pages, inclusive (`last` is `u64::MAX` for "to EOF").
    pub start: u64,
    pub last: u64,
    pub mode: Option<Mode>,
    pub op: Op,
    pub state: RangeState,
    /// Held since, or waiting since (absolute trace time).
    pub since: u64,
    /// For a waiter: the tasks it waits for.
    pub blockers: Vec<u32>,
    /// A file's page-cache lock (whole file), and how its hold is known.
    pub file_lock: Option<(FileLockClass, Seen)>,
}

/// A finding and the text of its evidence events.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingRow {
    pub finding: Finding,
    /// `(event index, its text line)`; `None` when the event is no longer
    /// kept (live: only recent events are).
    pub evidence: Vec<(u64, Option<String>)>,
}

/// One node of the wait-for forest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitNode {
    pub depth: usize,
    pub tid: u32,
    pub comm: Option<String>,
    /// What it owns that its parent waits for (none for a root).
    pub owns: Option<String>,
    /// Holds `owns` (else is queued earlier for it).
    pub held: bool,
    /// `owns` is a lock held for a direct IO: IO completion releases it.
    pub dio: bool,
    /// What it waits for itself.
    pub waits: Option<String>,
    /// Waiting since (absolute trace time).
    pub since: Option<u64>,
    /// This task already appears above on the path: the wait closes a cycle.
    pub cycle: bool,
}

/// One log2 histogram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistPanel {
    pub title: String,
    pub summary: Option<Summary>,
    /// `(low, high exclusive, count)` in ns.
    pub buckets: Vec<(u64, u64, u64)>,
}

/// Inputs the model does not hold.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    pub status: Status,
    /// Contentions per tree/inode at the start of the rate window, and the
    /// window's length in ns (see [`crate::views::tui::pipeline`]).
    pub cont_base: FastMap<FileKey, u64>,
    pub window_ns: u64,
    pub findings: Arc<Vec<FindingRow>>,
    /// The time now, when it runs ahead of the last event (live, idle).
    pub now: Option<u64>,
    /// Paths of inodes, where known (live).
    pub paths: Arc<FastMap<(Dev, u64), String>>,
}

fn dio_op(write: bool) -> Op {
    if write { Op::DioWrite } else { Op::DioRead }
}

/// Builds a snapshot.
pub fn build(m: &Model, stats: &Stats, extra: Extra) -> Snapshot {
    let mut status = extra.status;
    status.events = m.events;
    status.lost = m.lost;
    status.missed = m
        .lost_by_probe
        .iter()
        .map(|(p, n)| (p.clone(), *n))
        .collect();
    status
        .missed
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    status.flavour = m.flavour().map(|f| f.as_str());
    let first = m.first_ts.unwrap_or(0);
    status.now = m.now.max(extra.now.unwrap_or(0)).saturating_sub(first);
    status.first_ts = first;
    // What each waiting task waits on, asked of the reference lock once
    // for both the Ranges list and the wait chains.
    let blockers: Blockers = m
        .tasks
        .iter()
        .filter(|&(&tid, t)| t.waiting.is_some() && !stats.hides(tid))
        .map(|(&tid, _)| (tid, waitfor::blockers(m, tid)))
        .collect();
    let files = files(
        m,
        stats,
        &blockers,
        &extra.cont_base,
        extra.window_ns,
        &extra.paths,
    );
    Snapshot {
        status,
        files,
        findings: extra.findings,
        waits: wait_forest(m, &blockers),
        hists: hists(stats),
    }
}

/// Current contentions per row key (the pipeline keeps them for rates).
pub fn contentions(stats: &Stats) -> FastMap<FileKey, u64> {
    let mut out: FastMap<FileKey, u64> = FastMap::default();
    for (c, r) in stats.rows() {
        if let Class::RangeLock { tree, .. } = c {
            *out.entry(FileKey::Tree(*tree)).or_default() += r.contentions;
        }
    }
    out
}

/// The row of a file: its tree when one is linked, else the inode.
fn key_of_file(m: &Model, dev: Dev, ino: u64) -> FileKey {
    match m.tree_of(dev, ino) {
        Some(t) => FileKey::Tree(t),
        None => FileKey::Inode(dev, ino),
    }
}

#[derive(Default)]
struct Acc {
    held: usize,
    waiters: usize,
    in_flight: usize,
    acquisitions: u64,
    contentions: u64,
    wait: Option<Hist>,
    hold_max: Option<u64>,
    ranges: Vec<RangeRow>,
    /// Ranges left out: of tasks outside the command's scope.
    hidden: usize,
}

/// The blockers of each waiting task.
type Blockers = FastMap<u32, Vec<waitfor::Blocker>>;

#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
fn files(
    m: &Model,
    stats: &Stats,
    blockers: &Blockers,
    base: &FastMap<FileKey, u64>,
    window_ns: u64,
    paths: &FastMap<(Dev, u64), String>,
) -> Vec<FileRow> {
    let mut acc: FastMap<FileKey, Acc> = FastMap::default();
    let comm = |tid: u32| m.comm(tid).map(str::to_string);
    for (&tree, t) in &m.trees {
        let a = acc.entry(FileKey::Tree(tree)).or_default();
        a.ranges.reserve(t.locks.len());
        for (&lock, l) in &t.locks {
            if stats.hides(l.tid) {
                a.hidden += 1;
                continue;
            }
            let (state, since, blockers) = match l.state {
                LockState::Held { ts, .. } => {
                    a.held += 1;
                    (RangeState::Held, ts, Vec::new())
                }
                LockState::Waiting => {
                    a.waiters += 1;
                    let waits_here = m.tasks.get(&l.tid).and_then(|t| t.waiting)
                        == Some(Wait::Range { tree, lock });
                    let mut b: Vec<u32> = match blockers.get(&l.tid) {
                        Some(b) if waits_here => b.iter().map(|b| b.tid).collect(),
                        _ => Vec::new(),
                    };
                    b.sort_unstable();
                    b.dedup();
                    (RangeState::Waiting, l.req_ts, b)
                }
            };
            a.ranges.push(RangeRow {
                lock: Some(lock),
                tid: l.tid,
                comm: comm(l.tid),
                start: l.start,
                last: l.last,
                mode: Some(l.mode),
                op: l.op,
                state,
                since,
                blockers,
                file_lock: None,
            });
        }
    }
    for (lock, st) in &m.flocks {
        let a = acc.entry(key_of_file(m, lock.dev, lock.ino)).or_default();
        let holders = st.holders.iter().map(|u| (u, RangeState::Held));
        let waiters = st.waiters.iter().map(|u| (u, RangeState::Waiting));
        for (u, state) in holders.chain(waiters) {
            if stats.hides(u.tid) {
                a.hidden += 1;
                continue;
            }
            let blockers = match state {
                RangeState::Waiting => {
                    let mut b: Vec<u32> = blockers
                        .get(&u.tid)
                        .map(|b| b.iter().map(|b| b.tid).collect())
                        .unwrap_or_default();
                    b.sort_unstable();
                    b.dedup();
                    a.waiters += 1;
                    b
                }
                _ => {
                    a.held += 1;
                    Vec::new()
                }
            };
            a.ranges.push(RangeRow {
                lock: m.file_lock_addr(*lock),
                tid: u.tid,
                comm: comm(u.tid),
                start: 0,
                last: u64::MAX,
                mode: Some(if u.write { Mode::Write } else { Mode::Read }),
                // What the task is doing, as the model attributes it.
                op: m.punch_of_task(u.tid).map_or(Op::Buffered, |p| p.op),
                state,
                since: u.ts,
                blockers,
                file_lock: Some((lock.class, u.seen)),
            });
        }
    }
    for d in m.dios.values() {
        let Some((first, last)) = d.pages else {
            continue;
        };
        let a = acc.entry(key_of_file(m, d.dev, d.ino)).or_default();
        if stats.hides(d.tid) {
            a.hidden += 1;
            continue;
        }
        a.in_flight += 1;
        a.ranges.push(RangeRow {
            lock: None,
            tid: d.tid,
            comm: comm(d.tid),
            start: first,
            last,
            mode: None,
            op: dio_op(d.write),
            state: RangeState::InFlight,
            since: d.ts,
            blockers: Vec::new(),
            file_lock: None,
        });
    }
    for p in m.punches.values() {
        let tid = p.tid;
        let a = acc.entry(key_of_file(m, p.dev, p.ino)).or_default();
        if stats.hides(tid) {
            a.hidden += 1;
            continue;
        }
        a.in_flight += 1;
        a.ranges.push(RangeRow {
            lock: None,
            tid,
            comm: comm(tid),
            start: p.first,
            last: p.last,
            mode: None,
            op: p.op,
            state: RangeState::InFlight,
            since: p.ts,
            blockers: Vec::new(),
            file_lock: None,
        });
    }
    for (c, r) in stats.rows() {
        let key = match *c {
            Class::RangeLock { tree, .. } => FileKey::Tree(tree),
            Class::FileOp { dev, ino, .. } => key_of_file(m, dev, ino),
            Class::FileLock { lock, .. } => key_of_file(m, lock.dev, lock.ino),
            Class::Mmap { .. } | Class::Kernel { .. } => continue,
        };
        let a = acc.entry(key).or_default();
        if !r.hold.is_empty() {
            a.hold_max = Some(a.hold_max.unwrap_or(0).max(r.hold.max));
        }
        if let Class::RangeLock { .. } | Class::FileLock { .. } = c {
            a.acquisitions += r.acquisitions;
            a.contentions += r.contentions;
            if !r.wait.is_empty() {
                match &mut a.wait {
                    Some(h) => h.merge(&r.wait),
                    None => a.wait = Some(r.wait.clone()),
                }
            }
        }
    }
    let mut rows: Vec<FileRow> = acc
        .into_iter()
        // A file only tasks outside the command's scope work on is theirs.
        .filter(|(_, a)| {
            a.hidden == 0 || !a.ranges.is_empty() || a.acquisitions > 0 || a.hold_max.is_some()
        })
        .map(|(key, mut a)| {
            // Starts mostly differ: compare field by field, not whole keys.
            a.ranges.sort_unstable_by(|x, y| {
                x.start
                    .cmp(&y.start)
                    .then_with(|| x.last.cmp(&y.last))
                    .then_with(|| x.state.cmp(&y.state))
                    .then_with(|| x.tid.cmp(&y.tid))
                    .then_with(|| x.lock.cmp(&y.lock))
                    .then_with(|| x.since.cmp(&y.since))
            });
            let cont_rate = if window_ns == 0 {
                0.0
            } else {
                let d = a
                    .contentions
                    .saturating_sub(base.get(&key).copied().unwrap_or(0));
                d as f64 * 1e9 / window_ns as f64
            };
            FileRow {
                key,
                name: match file_of(m, key).and_then(|(dev, ino)| {
                    m.file_info(dev, ino)
                        .and_then(|i| i.path.as_ref())
                        .or_else(|| paths.get(&(dev, ino)))
                }) {
                    Some(p) => format!("{p} ({})", name(m, key)),
                    None => name(m, key),
                },
                held: a.held,
                waiters: a.waiters,
                in_flight: a.in_flight,
                acquisitions: a.acquisitions,
                contentions: a.contentions,
                cont_rate,
                wait: a.wait.and_then(|h| h.summary()),
                hold_max: a.hold_max,
                ranges: a.ranges,
            }
        })
        .collect();
    rows.sort_by_key(|r| r.key);
    rows
}

/// The inode of a row, when known.
fn file_of(m: &Model, key: FileKey) -> Option<(Dev, u64)> {
    match key {
        FileKey::Tree(t) => m.file_of(t),
        FileKey::Inode(dev, ino) => Some((dev, ino)),
    }
}

/// `dev:ino` (and the tree when there is one), else the tree address.
fn name(m: &Model, key: FileKey) -> String {
    match key {
        FileKey::Tree(t) => describe::file_or_tree(m, t),
        FileKey::Inode(dev, ino) => format!("{dev}:{ino}"),
    }
}

pub use crate::analysis::describe::pages;

fn describe_wait(m: &Model, w: Wait) -> Option<String> {
    match w {
        Wait::Range { tree, lock } => {
            let l = m.lock(tree, lock)?;
            Some(format!(
                "{} of {}",
                describe::range(l.start, l.last, l.mode, l.op),
                describe::file_or_tree(m, tree)
            ))
        }
        Wait::Mmap { mm, write, .. } => Some(describe::mmap_lock_short(m, mm, write)),
        Wait::File { lock, write, .. } => Some(describe::file_lock(m, lock, write)),
    }
}

/// Everything waiting, as a forest: each root is a waiter nobody waits
/// for; its children are what blocks it, and theirs what blocks them.
/// Tasks on a cycle (where no root exists) are taken as roots too, lowest
/// tid first, and the edge that closes the cycle is marked.
fn wait_forest(m: &Model, blockers: &Blockers) -> Vec<WaitNode> {
    let mut waiters: Vec<u32> = blockers.keys().copied().collect();
    if waiters.is_empty() {
        return Vec::new();
    }
    waiters.sort_unstable();
    let blocking: crate::model::FastSet<u32> = blockers
        .values()
        .flat_map(|b| b.iter().map(|b| b.tid))
        .collect();
    let mut out = Vec::new();
    let mut shown: crate::model::FastSet<u32> = crate::model::FastSet::default();
    let roots: Vec<u32> = waiters
        .iter()
        .copied()
        .filter(|t| !blocking.contains(t))
        .chain(waiters.iter().copied())
        .collect();
    for root in roots {
        if shown.contains(&root) || out.len() >= MAX_WAIT_NODES {
            continue;
        }
        let mut path = Vec::new();
        walk(m, blockers, root, None, &mut path, &mut shown, &mut out);
    }
    out
}

/// What a blocker owns that its waiter waits on, and whether it holds it
/// (else it is queued ahead).
fn owned(m: &Model, b: &waitfor::Blocker) -> (Option<String>, bool) {
    match b.owns {
        Owned::Range { tree, lock } => match m.lock(tree, lock) {
            Some(l) => (
                Some(describe::range(l.start, l.last, l.mode, l.op)),
                l.is_held(),
            ),
            None => (None, false),
        },
        Owned::Mmap { mm, write, held } => (Some(describe::mmap_lock_short(m, mm, write)), held),
        Owned::File {
            lock,
            write,
            held,
            seen,
        } => (
            Some(format!(
                "{}{}",
                describe::file_lock(m, lock, write),
                describe::seen(seen)
            )),
            held,
        ),
    }
}

fn walk(
    m: &Model,
    blockers: &Blockers,
    tid: u32,
    owns: Option<(String, bool, bool)>,
    path: &mut Vec<u32>,
    shown: &mut crate::model::FastSet<u32>,
    out: &mut Vec<WaitNode>,
) {
    if out.len() >= MAX_WAIT_NODES {
        return;
    }
    let task = m.tasks.get(&tid);
    let wait = task.and_then(|t| t.waiting);
    let (owns, held, dio) = match owns {
        Some((o, h, d)) => (Some(o), h, d),
        None => (None, false, false),
    };
    // A lock held for a direct IO is released by IO completion, not by its
    // submitter: the chain ends there, and what the submitter waits for in
    // turn is no part of it (nor a cycle: Kara's design lets a task fault
    // on pages its own DIO holds, waiting only for the IO).
    let cycle = !dio && path.contains(&tid);
    let since = wait.and_then(|w| match w {
        Wait::Range { tree, lock } => m.lock(tree, lock).map(|l| l.req_ts),
        Wait::Mmap { mm, .. } => m
            .mms
            .get(&mm)
            .and_then(|s| s.waiters.iter().find(|u| u.tid == tid).map(|u| u.ts)),
        Wait::File { lock, .. } => m
            .flocks
            .get(&lock)
            .and_then(|s| s.waiters.iter().find(|u| u.tid == tid).map(|u| u.ts)),
    });
    out.push(WaitNode {
        depth: path.len(),
        tid,
        comm: task.and_then(|t| t.comm.clone()),
        owns,
        held,
        dio,
        waits: if cycle || dio {
            None
        } else {
            wait.and_then(|w| describe_wait(m, w))
        },
        since,
        cycle,
    });
    // A cycle is shown once, where it closes; a task already expanded
    // elsewhere is not expanded again (its subtree is above).
    if cycle || dio || path.len() >= MAX_WAIT_DEPTH || !shown.insert(tid) {
        return;
    }
    let (Some(_), Some(bs)) = (wait, blockers.get(&tid)) else {
        return;
    };
    path.push(tid);
    for b in bs {
        let (o, h) = owned(m, b);
        let o = o.unwrap_or_else(|| "(unknown)".into());
        walk(m, blockers, b.tid, Some((o, h, b.dio)), path, shown, out);
    }
    path.pop();
}

/// Log2 histograms per operation (range lock wait and hold; time in flight
/// for operations without a range lock), then mmap_lock wait and hold.
fn hists(stats: &Stats) -> Vec<HistPanel> {
    let mut wait: FastMap<Op, Hist> = FastMap::default();
    let mut hold: FastMap<Op, Hist> = FastMap::default();
    let mut flight: FastMap<Op, Hist> = FastMap::default();
    let (mut mwait, mut mhold) = (Hist::default(), Hist::default());
    // i_rwsem, then invalidate_lock: wait and hold.
    let mut fwait = [Hist::default(), Hist::default()];
    let mut fhold = [Hist::default(), Hist::default()];
    let merge = |m: &mut FastMap<Op, Hist>, op: Op, h: &Hist| {
        if !h.is_empty() {
            m.entry(op).or_default().merge(h);
        }
    };
    for (c, r) in stats.rows() {
        match *c {
            Class::RangeLock { op, .. } => {
                merge(&mut wait, op, &r.wait);
                merge(&mut hold, op, &r.hold);
            }
            Class::FileOp { op, .. } => merge(&mut flight, op, &r.hold),
            Class::Mmap { .. } => {
                mwait.merge(&r.wait);
                mhold.merge(&r.hold);
            }
            Class::FileLock { lock, .. } => {
                let i = lock.class as usize;
                fwait[i].merge(&r.wait);
                fhold[i].merge(&r.hold);
            }
            Class::Kernel { .. } => {}
        }
    }
    let panel = |title: String, h: &Hist| HistPanel {
        title,
        summary: h.summary(),
        buckets: h.log2(),
    };
    let mut out = Vec::new();
    for op in Op::ALL {
        let name = op.as_str();
        if let Some(h) = wait.get(&op) {
            out.push(panel(format!("{name}: range lock wait"), h));
        }
        if let Some(h) = hold.get(&op) {
            out.push(panel(format!("{name}: range lock hold"), h));
        }
        if let Some(h) = flight.get(&op) {
            out.push(panel(format!("{name}: time in flight"), h));
        }
    }
    if !mwait.is_empty() {
        out.push(panel("mmap_lock wait".into(), &mwait));
    }
    if !mhold.is_empty() {
        out.push(panel("mmap_lock hold".into(), &mhold));
    }
    for class in [FileLockClass::IRwsem, FileLockClass::InvalidateLock] {
        let i = class as usize;
        if !fwait[i].is_empty() {
            out.push(panel(format!("{} wait", class.as_str()), &fwait[i]));
        }
        if !fhold[i].is_empty() {
            out.push(panel(format!("{} hold", class.as_str()), &fhold[i]));
        }
    }
    out
}
