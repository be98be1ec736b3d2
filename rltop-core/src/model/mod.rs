//! The model: the *current* state reconstructed from the event stream.
//!
//! [`Model::apply`] takes events one at a time and keeps only what is live:
//! tasks and their names, lock trees (linked to `(dev, ino)` by `tree`
//! events), range lock requests (held or waiting, keyed by `(tree, lock)`:
//! the releasing task may differ from the locker, e.g. DIO completion in irq
//! context, tid 0), mmap_lock holders and waiters per `mm`, and file
//! operations in flight (DIO by `io`; punch, zero, collapse, insert and
//! truncate by their `id`, or by task in traces without ids), with the
//! invalidation windows the kernel side proved (`invalidate_begin`/`_end`).
//! Memory is proportional to that live state, never to the trace length.
//!
//! Each tree also drives a reference [`rl_reference::StateMachine`] of the
//! trace's flavour (ids are lock addresses), so "what blocks X now" and "may
//! X be granted" come from the reference lock, not from this module. The
//! model keeps the *kernel's* view (what the events said) next to it: the two
//! differ exactly when the kernel misbehaves, which is what the analyses look
//! for.
//!
//! No I/O, no clocks, no globals: the same events give the same state. No
//! input makes it panic: unknown locks, double releases and events out of
//! order are absorbed (the analyses report them).

pub mod flock;
pub mod hash;

pub use flock::{FileLock, FlState, FlUse, LockSource, Seen};
pub use hash::{FastMap, FastSet};

use rl_reference::{ExclFifo, Mode as RefMode, Rw, StateMachine};

use crate::events::{Body, Dev, Event, FileLockClass, Mode, PunchOp};

/// Page shift used to turn byte positions into page indices when the trace
/// does not say its page size (`page_size` in its header): 4 KiB.
pub const PAGE_SHIFT: u32 = 12;

/// Empty trees are swept when there are more trees than this.
const MIN_SWEEP: usize = 1024;

/// Which reference semantics the range locks follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// Kara 2013 / Lustre: exclusive, FIFO among overlapping requests.
    ExclFifo,
    /// Bueso 2017-2019: reader/writer, blocking-count rule.
    Rw,
}

impl Flavour {
    /// Parses the names used by trace headers and `--flavour`.
    pub fn parse(s: &str) -> Option<Flavour> {
        match s {
            "excl_fifo" | "excl" | "kara" | "lustre" => Some(Flavour::ExclFifo),
            "rw" | "bueso" => Some(Flavour::Rw),
            _ => None,
        }
    }

    /// The flavour a request mode implies (`excl` -> exclusive, else rw).
    pub fn from_mode(mode: Mode) -> Flavour {
        match mode {
            Mode::Excl => Flavour::ExclFifo,
            Mode::Read | Mode::Write => Flavour::Rw,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::ExclFifo => "excl_fifo",
            Flavour::Rw => "rw",
        }
    }

    fn ref_mode(self, mode: Mode) -> RefMode {
        match (self, mode) {
            // A read request in an exclusive flavour is treated as exclusive:
            // conservative, the kernel cannot share either.
            (Flavour::Rw, Mode::Read) => RefMode::Read,
            _ => RefMode::Write,
        }
    }
}

/// The reference state machine of one tree.
#[derive(Debug)]
pub enum Oracle {
    ExclFifo(StateMachine<ExclFifo>),
    Rw(StateMachine<Rw>),
}

macro_rules! oracle {
    ($self:expr, $sm:ident => $e:expr) => {
        match $self {
            Oracle::ExclFifo($sm) => $e,
            Oracle::Rw($sm) => $e,
        }
    };
}

impl Oracle {
    fn new(f: Flavour) -> Oracle {
        match f {
            Flavour::ExclFifo => Oracle::ExclFifo(StateMachine::new()),
            Flavour::Rw => Oracle::Rw(StateMachine::new()),
        }
    }

    /// Whether request `id` may own its range now (false if unknown).
    pub fn is_grantable(&self, id: u64) -> bool {
        oracle!(self, sm => sm.is_grantable(id).unwrap_or(false))
    }

    /// The earlier-queued conflicting requests blocking `id` (empty if
    /// unknown or grantable).
    pub fn blockers(&self, id: u64) -> Vec<u64> {
        oracle!(self, sm => sm.blockers(id).unwrap_or_default())
    }

    /// Whether a new request for the range in `mode` would be granted now.
    pub fn would_grant(&self, start: u64, last: u64, mode: RefMode) -> bool {
        oracle!(self, sm => sm.would_grant(start, last, mode).unwrap_or(true))
    }

    /// Every queued request conflicting with the range in `mode`.
    pub fn conflicts(&self, start: u64, last: u64, mode: RefMode) -> Vec<u64> {
        oracle!(self, sm => sm.conflicts(start, last, mode).unwrap_or_default())
    }

    /// Queues `id`; returns whether it was granted at once.
    fn request(&mut self, id: u64, start: u64, last: u64, mode: RefMode) -> bool {
        oracle!(self, sm => matches!(sm.request(id, start, last, mode), Ok(rl_reference::Outcome::Granted)))
    }

    /// Held writer `id` becomes a reader (`range_downgrade_write`); returns
    /// the ids granted as a result (later readers it alone blocked), or
    /// `None` when the reference refuses it (not held, not a writer, or an
    /// exclusive flavour's lock).
    fn downgrade(&mut self, id: u64) -> Option<Vec<u64>> {
        oracle!(self, sm => sm.downgrade(id).ok())
    }

    /// Removes `id` whatever its state; returns the ids granted as a result.
    fn remove(&mut self, id: u64) -> Vec<u64> {
        oracle!(self, sm => match sm.release(id) {
            Ok(g) => g,
            Err(rl_reference::Error::NotHeld(_)) => sm.cancel(id).unwrap_or_default(),
            Err(_) => Vec::new(),
        })
    }
}

/// What a range lock (or a file operation) was taken for, judged from what
/// its task was doing when it asked: a punch or truncate in flight, a fault
/// on a page in the range, a direct IO over the range; else buffered IO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Fault,
    DioRead,
    DioWrite,
    Punch,
    Truncate,
    Buffered,
    /// Zero, collapse and insert range (`punch_begin` with that `op`).
    Zero,
    Collapse,
    Insert,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Fault,
        Op::DioRead,
        Op::DioWrite,
        Op::Punch,
        Op::Truncate,
        Op::Buffered,
        Op::Zero,
        Op::Collapse,
        Op::Insert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Fault => "fault",
            Op::DioRead => "dio_read",
            Op::DioWrite => "dio_write",
            Op::Punch => "punch",
            Op::Truncate => "truncate",
            Op::Buffered => "buffered",
            Op::Zero => "zero",
            Op::Collapse => "collapse",
            Op::Insert => "insert",
        }
    }

    /// The operation a `punch_begin` of `op` does.
    pub fn of_punch(op: PunchOp) -> Op {
        match op {
            PunchOp::Punch => Op::Punch,
            PunchOp::Zero => Op::Zero,
            PunchOp::Collapse => Op::Collapse,
            PunchOp::Insert => Op::Insert,
        }
    }
}

/// Where a range lock request stands in the kernel's view (the events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// Requested, not yet acquired.
    Waiting,
    /// `rl_acquired` seen at event `idx`, time `ts`.
    Held { idx: u64, ts: u64 },
}

/// One range lock request, identified by `(tree, lock)`.
#[derive(Clone, Debug)]
pub struct Lock {
    /// The task that requested it (the holder, once acquired).
    pub tid: u32,
    pub start: u64,
    pub last: u64,
    pub mode: Mode,
    /// What it was taken for.
    pub op: Op,
    /// The reference lock could not grant it when it was requested.
    pub contended: bool,
    /// The `rl_request` event.
    pub req_idx: u64,
    pub req_ts: u64,
    /// The `rl_queued` event (index, time): when the request entered the
    /// tree's queue, where the profile observes it.
    pub queued: Option<(u64, u64)>,
    /// The `rl_queue_seq` event (its number, its index): the request's
    /// place in the queue, read as its lock call returned.
    pub seq: Option<(u64, u64)>,
    /// Not yet in the reference's queue: the trace shows requests entering
    /// the queue, and this one has not yet (see [`Model::queues_observed`]).
    pub deferred: bool,
    pub state: LockState,
    /// When the reference lock first allowed it to own its range, while the
    /// kernel still had it waiting (`None` once acquired or while blocked).
    pub grantable_since: Option<(u64, u64)>,
    /// The holder task exited while this was held.
    pub holder_exited: bool,
}

impl Lock {
    pub fn is_held(&self) -> bool {
        matches!(self.state, LockState::Held { .. })
    }

    /// Excl or write: no other holder may share the range.
    pub fn is_exclusive(&self) -> bool {
        self.mode != Mode::Read
    }
}

/// One range lock tree.
#[derive(Debug)]
pub struct Tree {
    pub oracle: Oracle,
    pub locks: FastMap<u64, Lock>,
    /// Locks the kernel holds while the reference says they still wait:
    /// zero on the fast path, where no conflict is possible.
    pub divergent: u32,
}

/// What a task is blocked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Range {
        tree: u64,
        lock: u64,
    },
    Mmap {
        mm: u64,
        write: bool,
        idx: u64,
    },
    /// A page-cache lock of a file (see [`flock`]).
    File {
        lock: FileLock,
        write: bool,
        idx: u64,
    },
}

/// One task.
#[derive(Clone, Debug, Default)]
pub struct Task {
    pub comm: Option<String>,
    pub pid: u32,
    /// A kernel thread, as its `task` event said.
    pub kthread: bool,
    /// Range locks this task acquired and still holds, `(tree, lock)`.
    pub held: Vec<(u64, u64)>,
    pub waiting: Option<Wait>,
    /// The page of a fault that has not yet taken its range lock:
    /// `(dev, ino, index)`.
    pub fault: Option<(Dev, u64, u64)>,
    /// A file lock this task just asked for, from a source that does not
    /// see acquisitions: it holds it unless its next event is contention
    /// on it (see [`flock`]).
    pub fl_asked: Option<FileLock>,
}

/// An mmap_lock holder or waiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmapUse {
    pub tid: u32,
    pub write: bool,
    pub idx: u64,
    pub ts: u64,
}

/// One mm's mmap_lock.
#[derive(Clone, Debug, Default)]
pub struct Mm {
    pub holders: Vec<MmapUse>,
    pub waiters: Vec<MmapUse>,
}

/// The process an mm is named after: the first seen taking its mmap_lock.
/// An mm is one process's (its threads share it); others reach it only
/// through `/proc/<pid>/mem`, ptrace or `kthread_use_mm`. Kept after its
/// process exits, so a report at the end still names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmUser {
    pub pid: u32,
    /// The process's name (its leader's, else the taking thread's) when it
    /// last took the lock, once a `task` event gave it.
    pub comm: Option<String>,
}

/// How a punch or truncate in flight is found again: by the `id` its
/// events carry (its end may come from any task), or, in traces without
/// ids, by the task that began it (it ends at that task's next end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKey {
    Id(u64),
    Task(u32),
}

impl OpKey {
    pub fn new(tid: u32, id: Option<u64>) -> OpKey {
        match id {
            Some(id) => OpKey::Id(id),
            None => OpKey::Task(tid),
        }
    }
}

/// A punch, zero, collapse, insert or truncate in flight: pages
/// `[first, last]` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Punch {
    /// The task that began it.
    pub tid: u32,
    pub dev: Dev,
    pub ino: u64,
    pub first: u64,
    pub last: u64,
    pub idx: u64,
    pub ts: u64,
    pub truncate: bool,
    /// [`Op::Punch`], [`Op::Zero`], [`Op::Collapse`], [`Op::Insert`] or
    /// [`Op::Truncate`].
    pub op: Op,
}

/// An invalidation window the kernel side proved: from `invalidate_begin`
/// (the operation's task holds the mapping's `invalidate_lock` exclusively,
/// and has not begun invalidating pages `[first, last]`) until its
/// `invalidate_end` (still held, the range's blocks freed). Open until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub tid: u32,
    pub dev: Dev,
    pub ino: u64,
    pub first: u64,
    pub last: u64,
    pub idx: u64,
    pub ts: u64,
}

/// A direct IO in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dio {
    pub tid: u32,
    pub dev: Dev,
    pub ino: u64,
    /// Pages `[first, last]` (`None` for an empty IO).
    pub pages: Option<(u64, u64)>,
    pub write: bool,
    pub idx: u64,
    pub ts: u64,
}

/// What `file` events said about a file (issue 14): its name, filesystem
/// and the kernel addresses of its page-cache locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub path: Option<String>,
    pub fs: Option<String>,
    pub i_rwsem: Option<u64>,
    pub invalidate_lock: Option<u64>,
}

/// The requests of `tree` that the reference grants at event `idx`
/// (after a release or a downgrade): each one the kernel still has
/// waiting is grantable from now on.
fn granted_now(
    t: &mut Tree,
    grantable: &mut FastMap<(u64, u64), (u64, u64)>,
    tree: u64,
    granted: Vec<u64>,
    ts: u64,
    idx: u64,
) {
    for id in granted {
        if let Some(w) = t.locks.get_mut(&id) {
            if !w.is_held() {
                w.grantable_since = Some((ts, idx));
                grantable.insert((tree, id), (ts, idx));
            } else {
                // Held by the kernel before the reference allowed it;
                // now they agree again.
                t.divergent = t.divergent.saturating_sub(1);
            }
        }
    }
}

/// The largest page index of a file: `MAX_LFS_FILESIZE` (`LLONG_MAX` on
/// 64-bit) in 4 KiB pages, the most any page size allows.
pub const MAX_PAGE_INDEX: u64 = (i64::MAX as u64) >> 12;

/// Whether `[start, last]` (pages) can be a range of a file: start at most
/// last, start a page index. `last` may be "to the end": any value up to
/// `u64::MAX` (`~0`, or `~0` shifted to pages).
pub fn valid_range(start: u64, last: u64) -> bool {
    start <= last && start <= MAX_PAGE_INDEX
}

/// The current state. See the module docs.
#[derive(Debug, Default)]
pub struct Model {
    flavour: Option<Flavour>,
    pub tasks: FastMap<u32, Task>,
    pub trees: FastMap<u64, Tree>,
    /// `(dev, ino)` -> tree, from `tree` events.
    pub files: FastMap<(Dev, u64), u64>,
    /// tree -> `(dev, ino)`, the other way.
    pub tree_files: FastMap<u64, (Dev, u64)>,
    pub mms: FastMap<u64, Mm>,
    /// Who takes each mm's mmap_lock, for its name: an mm is a process's,
    /// and a bare `mm` address tells a reader nothing.
    pub mm_users: FastMap<u64, MmUser>,
    /// Punches, zeroes, collapses, inserts and truncates in flight, by
    /// their id (by task in traces without ids).
    pub punches: FastMap<OpKey, Punch>,
    /// Open invalidation windows, keyed as their operation.
    pub windows: FastMap<OpKey, Window>,
    /// `page_add` events whose size is unknown (the kernel's tracepoint had
    /// no folio order): taken as their first page only, and counted here
    /// so that views can say so.
    pub page_adds_unknown_size: u64,
    /// log2 of the trace's page size (see [`Model::set_page_size`]).
    page_shift: u32,
    pub dios: FastMap<u64, Dio>,
    /// Trees where a lock unknown to the model was released: they had state
    /// from before the trace (or from a gap) that the model never saw.
    pub unknown_trees: FastSet<u64>,
    /// Requests that their own task released while it still waited for
    /// them: `(tree, lock)` -> tid. A task asleep in its lock call does
    /// nothing else, so such a release runs inside the call: Lustre's
    /// `range_lock()` unlocks its never-granted lock when a signal
    /// interrupts the wait, then returns the error. That error return
    /// (`rl_cancel` of the same task) ends the entry, and is a lock the
    /// model knew.
    pub released_in_call: FastMap<(u64, u64), u32>,
    /// Requests whose range is no range of a file: start after last, or a
    /// start past the largest page index (`MAX_LFS_FILESIZE >> 12`). A
    /// profile that reads the lock struct at the wrong offsets gives them;
    /// they are set aside, with every later event of that lock, until it
    /// is released, cancelled or asked for again.
    pub invalid_ranges: u64,
    /// Trees whose init function ran in the trace: every lock of them
    /// since is in it (no hold from before the recording). Tree structs
    /// live in inodes, whose addresses the kernel reuses, so this stays
    /// as large as the set of tree addresses seen.
    pub inited_trees: FastSet<u64>,
    /// The trace shows requests entering their tree's queue (`rl_queued`,
    /// from the profile's insertion probe): requests join the reference's
    /// queue then, not at the lock call's entry, which a preemption may
    /// put earlier (`might_sleep()` at the top of the lock function).
    pub queues_observed: bool,
    pub invalid_locks: FastSet<(u64, u64)>,
    /// Kernel-waiting requests the reference would grant: `(tree, lock)` ->
    /// `(ts, idx)` since when. Live only while the kernel lags the reference.
    pub grantable_waiters: FastMap<(u64, u64), (u64, u64)>,
    /// Sweep empty trees once there are more trees than this.
    sweep_at: usize,
    /// Events lost (sum of `lost` counts).
    pub lost: u64,
    /// Of those, the hits each probe missed in the kernel (`lost` events
    /// with a `probe`), by probe name.
    pub lost_by_probe: std::collections::BTreeMap<String, u64>,
    /// Index of the latest gap (a `lost` event or a damaged part).
    pub last_gap: Option<u64>,
    /// Events applied.
    pub events: u64,
    /// Latest timestamp seen (events may be slightly out of order).
    pub now: u64,
    /// Timestamp of the first event, the origin of relative times.
    pub first_ts: Option<u64>,
    /// Files named by `file` events. Grows with the files traced (one
    /// entry per inode), not with the trace length.
    file_info: FastMap<(Dev, u64), FileInfo>,
    /// Lock address -> the file and class it belongs to, from `file` events.
    file_locks: FastMap<u64, (Dev, u64, FileLockClass)>,
    /// The page-cache locks' holders and waiters, by file and class.
    pub flocks: FastMap<FileLock, FlState>,
    /// Where a task asked for a file lock it still holds or waits for, when
    /// the request carried its kernel stack (see `Body::FileLockRequest`):
    /// at most one entry per held lock.
    pub fl_stacks: FastMap<(FileLock, u32), String>,
    /// What the trace's lock source sees (its header's `lock_source`).
    lock_source: LockSource,
}

/// Byte range `[pos, pos + len)` to inclusive 4 KiB pages, `None` when empty.
pub fn byte_pages(pos: u64, len: u64) -> Option<(u64, u64)> {
    byte_pages_shift(pos, len, PAGE_SHIFT)
}

/// Byte range `[pos, pos + len)` to inclusive pages of `1 << shift` bytes.
pub fn byte_pages_shift(pos: u64, len: u64, shift: u32) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    let end = pos.saturating_add(len - 1);
    Some((pos >> shift, end >> shift))
}

/// log2 of a page size in bytes; None unless it is a power of two of at
/// least 512 bytes.
pub fn page_shift_of(bytes: u64) -> Option<u32> {
    (bytes.is_power_of_two() && bytes >= 512).then(|| bytes.trailing_zeros())
}

impl Model {
    /// An empty model. `flavour` `None` decides from the first request mode.
    pub fn new(flavour: Option<Flavour>) -> Model {
        Model {
            flavour,
            sweep_at: MIN_SWEEP,
            page_shift: PAGE_SHIFT,
            ..Model::default()
        }
    }

    /// Uses the trace's page size (its header's `page_size`, bytes) for
    /// byte-to-page conversions; `None`, or a value that is not a power of
    /// two, keeps 4 KiB.
    pub fn set_page_size(&mut self, bytes: Option<u64>) {
        self.page_shift = bytes.and_then(page_shift_of).unwrap_or(PAGE_SHIFT);
    }

    /// Uses the trace's lock source (its header's `lock_source`) to know
    /// what `file_lock_*` events mean and which holds to infer.
    pub fn set_lock_source(&mut self, source: Option<&str>) {
        self.lock_source = LockSource::parse(source);
    }

    pub fn lock_source(&self) -> LockSource {
        self.lock_source
    }

    /// The filesystem type of a file, when a `file` event said.
    pub fn fs_of(&self, dev: Dev, ino: u64) -> Option<&str> {
        self.file_info
            .get(&(dev, ino))
            .and_then(|i| i.fs.as_deref())
    }

    /// Whether the holds of this file's locks are inferred from its
    /// operations (no lock source covers its filesystem).
    pub fn locks_inferred(&self, dev: Dev, ino: u64) -> bool {
        !self.lock_source.covers(self.fs_of(dev, ino))
    }

    /// The kernel address of a file lock, when a `file` event said.
    pub fn file_lock_addr(&self, l: FileLock) -> Option<u64> {
        let i = self.file_info.get(&(l.dev, l.ino))?;
        match l.class {
            FileLockClass::IRwsem => i.i_rwsem,
            FileLockClass::InvalidateLock => i.invalidate_lock,
        }
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> u64 {
        1 << self.page_shift
    }

    /// Bytes `[pos, pos + len)` as inclusive pages of this trace.
    pub fn pages(&self, pos: u64, len: u64) -> Option<(u64, u64)> {
        byte_pages_shift(pos, len, self.page_shift)
    }

    /// The punch or truncate in flight that task `tid` began, if any.
    pub fn punch_of_task(&self, tid: u32) -> Option<&Punch> {
        match self.punches.get(&OpKey::Task(tid)) {
            Some(p) => Some(p),
            None if self.punches.is_empty() => None,
            None => self.punches.values().find(|p| p.tid == tid),
        }
    }

    /// Whether task `tid` has a punch or truncate in flight.
    pub fn punching(&self, tid: u32) -> bool {
        self.punch_of_task(tid).is_some()
    }

    /// The punch or truncate that a `punch_end`/`truncate_end` of task
    /// `tid` with `id` ends, before the model applies it (None: unmatched,
    /// or its begin was of the other kind).
    pub fn punch_ending(&self, tid: u32, body: &Body) -> Option<&Punch> {
        let (truncate, id) = match body {
            Body::PunchEnd { id, .. } => (false, *id),
            Body::TruncateEnd { id, .. } => (true, *id),
            _ => return None,
        };
        self.punches
            .get(&OpKey::new(tid, id))
            .filter(|p| p.truncate == truncate)
    }

    /// The flavour, once known.
    pub fn flavour(&self) -> Option<Flavour> {
        self.flavour
    }

    /// The reference mode of `mode` in this trace's flavour.
    pub fn ref_mode(&self, mode: Mode) -> RefMode {
        self.flavour
            .unwrap_or(Flavour::from_mode(mode))
            .ref_mode(mode)
    }

    /// The name of `tid`, when a `task` event gave one.
    pub fn comm(&self, tid: u32) -> Option<&str> {
        self.tasks.get(&tid).and_then(|t| t.comm.as_deref())
    }

    pub fn lock(&self, tree: u64, lock: u64) -> Option<&Lock> {
        self.trees.get(&tree).and_then(|t| t.locks.get(&lock))
    }

    /// The file a tree is linked to.
    pub fn file_of(&self, tree: u64) -> Option<(Dev, u64)> {
        self.tree_files.get(&tree).copied()
    }

    /// The tree linked to a file.
    pub fn tree_of(&self, dev: Dev, ino: u64) -> Option<u64> {
        self.files.get(&(dev, ino)).copied()
    }

    /// What `file` events said about a file.
    pub fn file_info(&self, dev: Dev, ino: u64) -> Option<&FileInfo> {
        self.file_info.get(&(dev, ino))
    }

    /// The file and page-cache lock class a kernel lock address belongs to
    /// (from `file` events), e.g. to name a `contention_begin` address.
    pub fn file_lock_at(&self, addr: u64) -> Option<(Dev, u64, FileLockClass)> {
        self.file_locks.get(&addr).copied()
    }

    /// Keeps a `file` event's facts; a later event for the same inode fills
    /// in what the earlier one lacked and moves addresses that changed (the
    /// inode was freed and another took its number).
    fn learn_file(&mut self, dev: Dev, ino: u64, info: &FileInfo) {
        let e = self.file_info.entry((dev, ino)).or_default();
        for (old, new, class) in [
            (&mut e.i_rwsem, info.i_rwsem, FileLockClass::IRwsem),
            (
                &mut e.invalidate_lock,
                info.invalidate_lock,
                FileLockClass::InvalidateLock,
            ),
        ] {
            if let Some(a) = new {
                if let Some(prev) = old.replace(a)
                    && prev != a
                    && self.file_locks.get(&prev) == Some(&(dev, ino, class))
                {
                    self.file_locks.remove(&prev);
                }
                self.file_locks.insert(a, (dev, ino, class));
            }
        }
        if info.path.is_some() {
            e.path.clone_from(&info.path);
        }
        if info.fs.is_some() {
            e.fs.clone_from(&info.fs);
        }
    }

    /// Records a gap (lost events or a damaged part of the trace) at `idx`.
    pub fn gap(&mut self, idx: u64, count: u64) {
        self.lost = self.lost.saturating_add(count);
        self.last_gap = Some(idx);
    }

    fn tree_mut(&mut self, tree: u64, mode: Mode) -> &mut Tree {
        let f = *self.flavour.get_or_insert(Flavour::from_mode(mode));
        self.trees.entry(tree).or_insert_with(|| Tree {
            oracle: Oracle::new(f),
            locks: FastMap::default(),
            divergent: 0,
        })
    }

    /// Applies event number `idx` (0-based position in the stream).
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub fn apply(&mut self, idx: u64, ev: &Event) {
        self.events = self.events.max(idx + 1);
        self.now = self.now.max(ev.ts);
        self.first_ts.get_or_insert(ev.ts);
        let tid = ev.tid;
        if !matches!(ev.body, Body::ContentionBegin { .. })
            && let Some(t) = self.tasks.get_mut(&tid)
        {
            // Its next event is not contention: it has the lock it asked for.
            t.fl_asked = None;
        }
        match &ev.body {
            Body::Task { comm, kthread } => {
                let t = self.tasks.entry(tid).or_default();
                t.pid = ev.pid;
                t.kthread = *kthread;
                // Names change rarely; reuse the allocation when they do.
                match &mut t.comm {
                    Some(c) if c == comm => {}
                    slot => *slot = Some(comm.clone()),
                }
            }
            Body::Exit => {
                if let Some(t) = self.tasks.remove(&tid) {
                    for (tree, lock) in t.held {
                        if let Some(l) = self
                            .trees
                            .get_mut(&tree)
                            .and_then(|t| t.locks.get_mut(&lock))
                        {
                            l.holder_exited = true;
                        }
                    }
                }
                // Operations run in their task: one begun by a task that
                // exits is over (its end lost), whatever its key.
                if !self.punches.is_empty() {
                    self.punches.retain(|_, p| p.tid != tid);
                    self.windows.retain(|_, w| w.tid != tid);
                }
                // No rw_semaphore outlives its holder's task.
                if !self.flocks.is_empty() {
                    self.flocks.retain(|_, s| {
                        s.holders.retain(|u| u.tid != tid);
                        s.waiters.retain(|u| u.tid != tid);
                        !s.is_empty()
                    });
                }
            }
            Body::Tree { tree, dev, ino } => {
                if let Some(old) = self.tree_files.insert(*tree, (*dev, *ino)) {
                    self.files.remove(&old);
                }
                if let Some(old_tree) = self.files.insert((*dev, *ino), *tree) {
                    // The inode got a new tree: the old one is unlinked.
                    if old_tree != *tree {
                        self.tree_files.remove(&old_tree);
                    }
                }
            }
            Body::RlRequest {
                tree,
                lock,
                start,
                last,
                mode,
            } => self.rl_request(idx, ev, *tree, *lock, *start, *last, *mode),
            Body::RlQueued { tree, lock } => self.rl_queued(idx, ev.ts, *tree, *lock),
            Body::RlQueueSeq { tree, lock, seq } => {
                if let Some(l) = self.trees.get_mut(tree).and_then(|t| t.locks.get_mut(lock)) {
                    l.seq = Some((*seq, idx));
                }
            }
            Body::RlAcquired { tree, lock } => {
                // Acquired before it was seen entering the queue (its
                // `rl_queued` was lost): it enters the reference's now.
                if self.lock(*tree, *lock).is_some_and(|l| l.deferred) {
                    self.enqueue(idx, ev.ts, *tree, *lock);
                }
                let Some(t) = self.trees.get_mut(tree) else {
                    return;
                };
                let Some(l) = t.locks.get_mut(lock) else {
                    return;
                };
                if l.is_held() {
                    return;
                }
                l.state = LockState::Held { idx, ts: ev.ts };
                l.grantable_since = None;
                if !t.oracle.is_grantable(*lock) {
                    t.divergent += 1;
                }
                let holder = l.tid;
                self.grantable_waiters.remove(&(*tree, *lock));
                let task = self.tasks.entry(holder).or_default();
                task.held.push((*tree, *lock));
                if task.waiting
                    == Some(Wait::Range {
                        tree: *tree,
                        lock: *lock,
                    })
                {
                    task.waiting = None;
                }
            }
            Body::RlCancel { tree, lock }
                if self.released_in_call.get(&(*tree, *lock)) == Some(&tid) =>
            {
                self.released_in_call.remove(&(*tree, *lock));
            }
            Body::RlTrylockFailed { tree, lock }
            | Body::RlCancel { tree, lock }
            | Body::RlRelease { tree, lock }
                if self.invalid_locks.contains(&(*tree, *lock)) =>
            {
                self.invalid_locks.remove(&(*tree, *lock));
            }
            Body::RlTrylockFailed { tree, lock }
            | Body::RlCancel { tree, lock }
            | Body::RlRelease { tree, lock } => {
                if matches!(ev.body, Body::RlRelease { .. })
                    && self
                        .lock(*tree, *lock)
                        .is_some_and(|l| !l.is_held() && l.tid == tid)
                {
                    self.released_in_call.insert((*tree, *lock), tid);
                }
                let known = self.remove_lock(idx, ev.ts, *tree, *lock);
                if !known {
                    self.unknown_trees.insert(*tree);
                }
            }
            Body::RlDowngrade { tree, lock } => self.rl_downgrade(idx, ev.ts, *tree, *lock),
            Body::RlTreeInit { tree } => {
                // A new life for the struct: what the model had of an
                // earlier one is gone with it.
                if let Some(t) = self.trees.remove(tree) {
                    for lock in t.locks.keys() {
                        self.grantable_waiters.remove(&(*tree, *lock));
                    }
                }
                self.unknown_trees.remove(tree);
                self.inited_trees.insert(*tree);
            }
            Body::MmapLockRequest { mm, write } => {
                self.mm_user(*mm, ev.pid, tid);
                let u = MmapUse {
                    tid,
                    write: *write,
                    idx,
                    ts: ev.ts,
                };
                let m = self.mms.entry(*mm).or_default();
                m.waiters.retain(|w| w.tid != tid);
                m.waiters.push(u);
                self.tasks.entry(tid).or_default().waiting = Some(Wait::Mmap {
                    mm: *mm,
                    write: *write,
                    idx,
                });
            }
            Body::MmapLockAcquired { mm, write, success } => {
                self.mm_user(*mm, ev.pid, tid);
                let m = self.mms.entry(*mm).or_default();
                m.waiters.retain(|w| w.tid != tid);
                // mmap_write_downgrade() reports a read acquisition (no
                // request, no release of the write hold): the task's write
                // hold becomes a read hold. Nothing else makes a write
                // holder acquire the same mm for reading.
                let downgrade = *success && !*write;
                if let Some(h) = m
                    .holders
                    .iter_mut()
                    .rfind(|h| downgrade && h.tid == tid && h.write)
                {
                    h.write = false;
                    h.idx = idx;
                    h.ts = ev.ts;
                } else if *success {
                    m.holders.push(MmapUse {
                        tid,
                        write: *write,
                        idx,
                        ts: ev.ts,
                    });
                }
                if let Some(t) = self.tasks.get_mut(&tid)
                    && matches!(t.waiting, Some(Wait::Mmap { mm: w, .. }) if w == *mm)
                {
                    t.waiting = None;
                }
                self.drop_empty_mm(*mm);
            }
            Body::MmapLockRelease { mm, write } => {
                // A fault ends with its mmap_lock.
                if let Some(t) = self.tasks.get_mut(&tid) {
                    t.fault = None;
                }
                if let Some(m) = self.mms.get_mut(mm) {
                    let own = m
                        .holders
                        .iter()
                        .rposition(|h| h.tid == tid && h.write == *write);
                    // `mmap_read_unlock_non_owner()` (BPF's `bpf_mmap_unlock_mm()`
                    // irq_work: stack map build ids) ends a read hold another task took,
                    // from whatever task runs. It ends that task's hold when
                    // it alone can be meant: the only other reader. With
                    // several, which one is not in the events; they stay.
                    let other = || {
                        let mut others = m
                            .holders
                            .iter()
                            .enumerate()
                            .filter(|(_, h)| !h.write && h.tid != tid);
                        match (others.next(), others.next()) {
                            (Some((i, _)), None) => Some(i),
                            _ => None,
                        }
                    };
                    let i = match own {
                        Some(i) => Some(i),
                        None if !*write => other(),
                        None => None,
                    };
                    if let Some(i) = i {
                        m.holders.swap_remove(i);
                    }
                }
                self.drop_empty_mm(*mm);
            }
            Body::PunchBegin {
                dev,
                ino,
                pos,
                len,
                op,
                id,
            } => {
                let key = OpKey::new(tid, *id);
                // Collapse and insert move every page from `pos` on.
                let pages = match op {
                    PunchOp::Collapse | PunchOp::Insert if *len > 0 => {
                        Some((*pos >> self.page_shift, u64::MAX))
                    }
                    _ => self.pages(*pos, *len),
                };
                match pages {
                    Some((first, last)) => {
                        self.punches.insert(
                            key,
                            Punch {
                                tid,
                                dev: *dev,
                                ino: *ino,
                                first,
                                last,
                                idx,
                                ts: ev.ts,
                                truncate: false,
                                op: Op::of_punch(*op),
                            },
                        );
                        self.infer_op_locks(idx, ev, *dev, *ino);
                    }
                    // An empty range: its end pairs with nothing.
                    None => {
                        self.punches.remove(&key);
                    }
                }
            }
            Body::TruncateBegin { dev, ino, size, id } => {
                // Truncate to `size` = punch from the first whole page past it.
                let first = size.div_ceil(self.page_size());
                self.punches.insert(
                    OpKey::new(tid, *id),
                    Punch {
                        tid,
                        dev: *dev,
                        ino: *ino,
                        first,
                        last: u64::MAX,
                        idx,
                        ts: ev.ts,
                        truncate: true,
                        op: Op::Truncate,
                    },
                );
                self.infer_op_locks(idx, ev, *dev, *ino);
            }
            Body::PunchEnd { id, .. } | Body::TruncateEnd { id, .. } => {
                let key = OpKey::new(tid, *id);
                // An id names one operation: an end of the other kind is
                // not its end. Without ids, a task's end ends whatever it
                // had begun, as before.
                let truncate = matches!(ev.body, Body::TruncateEnd { .. });
                if (id.is_none()
                    || self
                        .punches
                        .get(&key)
                        .is_some_and(|p| p.truncate == truncate))
                    && let Some(p) = self.punches.remove(&key)
                {
                    self.end_inferred(p.tid, p.dev, p.ino);
                }
                // A window its task did not close ends with the operation:
                // the lock's release was not seen, so it proves nothing more.
                self.windows.remove(&key);
            }
            Body::InvalidateBegin {
                dev,
                ino,
                first,
                last,
                id,
            } => {
                self.windows.insert(
                    OpKey::new(tid, *id),
                    Window {
                        tid,
                        dev: *dev,
                        ino: *ino,
                        first: *first,
                        last: *last,
                        idx,
                        ts: ev.ts,
                    },
                );
            }
            Body::InvalidateEnd { id, .. } => {
                self.windows.remove(&OpKey::new(tid, *id));
            }
            Body::DioBegin {
                io,
                dev,
                ino,
                pos,
                len,
                write,
            } => {
                self.dios.insert(
                    *io,
                    Dio {
                        tid,
                        dev: *dev,
                        ino: *ino,
                        pages: self.pages(*pos, *len),
                        write: *write,
                        idx,
                        ts: ev.ts,
                    },
                );
            }
            Body::DioEnd { io, .. } => {
                self.dios.remove(io);
            }
            Body::Lost { count, probe, .. } => {
                if let Some(p) = probe {
                    let n = self.lost_by_probe.entry(p.clone()).or_default();
                    *n = n.saturating_add(*count);
                }
                self.gap(idx, *count);
            }
            Body::Fault { dev, ino, index } => {
                self.tasks.entry(tid).or_default().fault = Some((*dev, *ino, *index));
            }
            Body::PageAdd { order: None, .. } => self.page_adds_unknown_size += 1,
            Body::ContentionBegin { addr, flags, .. } => {
                self.contention_begin(idx, ev, *addr, *flags)
            }
            Body::ContentionEnd {
                addr: Some(addr), ..
            } => self.contention_end(idx, ev, *addr),
            Body::PageAdd { .. }
            | Body::ContentionEnd { .. }
            | Body::Marker { .. }
            | Body::Fork { .. } => {}
            // Evidence only: the mmap_lock request it accompanies is what
            // the ordering analysis checks.
            Body::OrderingEvidence { .. } => {}
            Body::File {
                dev,
                ino,
                path,
                fs,
                i_rwsem,
                invalidate_lock,
            } => {
                let info = FileInfo {
                    path: path.clone(),
                    fs: fs.clone(),
                    i_rwsem: *i_rwsem,
                    invalidate_lock: *invalidate_lock,
                };
                self.learn_file(*dev, *ino, &info);
            }
            Body::FileLockRequest { trylock, stack, .. } => {
                if let Some((lock, write)) = ev.body.file_lock() {
                    match stack {
                        Some(s) => {
                            self.fl_stacks.insert((lock, tid), s.clone());
                        }
                        None => {
                            self.fl_stacks.remove(&(lock, tid));
                        }
                    }
                    self.fl_request(idx, ev, lock, write, *trylock);
                }
            }
            Body::FileLockAcquired { write, success, .. } => {
                let Some((lock, _)) = ev.body.file_lock() else {
                    return;
                };
                let u = FlUse {
                    tid,
                    write: *write,
                    idx,
                    ts: ev.ts,
                    seen: Seen::Exact,
                };
                let s = self.flocks.entry(lock).or_default();
                s.waiters.retain(|w| w.tid != tid);
                if *success {
                    s.holders.push(u);
                } else {
                    self.fl_stacks.remove(&(lock, tid));
                }
                self.fl_stop_waiting(tid, lock);
            }
            Body::FileLockRelease { write, .. } => {
                let Some((lock, _)) = ev.body.file_lock() else {
                    return;
                };
                if let Some(i) = self.fl_releasing_at(tid, lock, *write)
                    && let Some(s) = self.flocks.get_mut(&lock)
                {
                    s.holders.swap_remove(i);
                }
                self.fl_stacks.remove(&(lock, tid));
                self.drop_empty_flock(lock);
            }
            // Evidence for the ordering rule: no state.
            Body::PageFault { .. } => {}
        }
    }

    /// The hold a `file_lock_release` of `tid` ends: its latest of that
    /// mode, else its latest (a source may not know the mode it releases).
    /// Inferred holds end with their operation, not here.
    pub fn fl_releasing(&self, tid: u32, lock: FileLock, write: bool) -> Option<&FlUse> {
        let i = self.fl_releasing_at(tid, lock, write)?;
        self.flocks.get(&lock)?.holders.get(i)
    }

    fn fl_releasing_at(&self, tid: u32, lock: FileLock, write: bool) -> Option<usize> {
        let s = self.flocks.get(&lock)?;
        let mine = |h: &FlUse| h.tid == tid && h.seen != Seen::Inferred;
        s.holders
            .iter()
            .rposition(|h| mine(h) && h.write == write)
            .or_else(|| s.holders.iter().rposition(mine))
    }

    /// A request for a file lock (see [`flock`] for what each source sees).
    fn fl_request(
        &mut self,
        idx: u64,
        ev: &Event,
        lock: FileLock,
        write: bool,
        try_: Option<bool>,
    ) {
        let tid = ev.tid;
        let u = FlUse {
            tid,
            write,
            idx,
            ts: ev.ts,
            seen: Seen::Exact,
        };
        match self.lock_source {
            // A trylock never waits; its acquisition says whether it got it.
            LockSource::Full if try_ == Some(true) => {}
            LockSource::Full => {
                let s = self.flocks.entry(lock).or_default();
                s.waiters.retain(|w| w.tid != tid);
                s.waiters.push(u);
                self.tasks.entry(tid).or_default().waiting = Some(Wait::File { lock, write, idx });
            }
            // A nowait attempt's outcome is not seen: no hold.
            LockSource::Requests { .. } if try_ == Some(true) => {}
            LockSource::Requests { .. } => {
                self.flocks.entry(lock).or_default().holders.push(FlUse {
                    seen: Seen::AtRequest,
                    ..u
                });
                self.tasks.entry(tid).or_default().fl_asked = Some(lock);
            }
            LockSource::None => {}
        }
    }

    /// `lock:contention_begin` on a learned file lock's address: its task
    /// waits for it. Where the source saw the request, the wait is already
    /// modelled (fentry, kprobe) or the request's hold becomes this wait
    /// (xfs_ilock, lockdep); where nothing sees the lock, the wait is
    /// measured here alone.
    fn contention_begin(&mut self, idx: u64, ev: &Event, addr: u64, flags: u32) {
        let Some(&(dev, ino, class)) = self.file_locks.get(&addr) else {
            return;
        };
        let lock = FileLock { dev, ino, class };
        let tid = ev.tid;
        let asked = self.tasks.get(&tid).and_then(|t| t.fl_asked) == Some(lock);
        // LCB_F_WRITE: a writer's wait.
        let write = flags & 4 != 0;
        let seen = if asked {
            let Some(s) = self.flocks.get_mut(&lock) else {
                return;
            };
            let Some(i) = s
                .holders
                .iter()
                .rposition(|h| h.tid == tid && h.seen == Seen::AtRequest)
            else {
                return;
            };
            let h = s.holders.swap_remove(i);
            s.waiters.push(FlUse {
                idx,
                ts: ev.ts,
                ..h
            });
            Seen::AtRequest
        } else if self.locks_inferred(dev, ino) {
            let s = self.flocks.entry(lock).or_default();
            s.waiters.retain(|w| w.tid != tid);
            s.waiters.push(FlUse {
                tid,
                write,
                idx,
                ts: ev.ts,
                seen: Seen::Inferred,
            });
            Seen::Inferred
        } else {
            return;
        };
        let t = self.tasks.entry(tid).or_default();
        t.fl_asked = None;
        let write = if seen == Seen::AtRequest {
            self.flocks[&lock].waiters.last().is_some_and(|w| w.write)
        } else {
            write
        };
        self.tasks.entry(tid).or_default().waiting = Some(Wait::File { lock, write, idx });
    }

    /// The end of a contention on a file lock: a request-only source's
    /// waiter now holds it; a measured-only wait is over (what follows is
    /// not seen).
    fn contention_end(&mut self, idx: u64, ev: &Event, addr: u64) {
        let Some(&(dev, ino, class)) = self.file_locks.get(&addr) else {
            return;
        };
        let lock = FileLock { dev, ino, class };
        let tid = ev.tid;
        let Some(s) = self.flocks.get_mut(&lock) else {
            return;
        };
        let Some(i) = s
            .waiters
            .iter()
            .position(|w| w.tid == tid && w.seen != Seen::Exact)
        else {
            return;
        };
        let w = s.waiters.remove(i);
        if w.seen == Seen::AtRequest {
            s.holders.push(FlUse {
                idx,
                ts: ev.ts,
                ..w
            });
        }
        self.fl_stop_waiting(tid, lock);
        self.drop_empty_flock(lock);
    }

    fn fl_stop_waiting(&mut self, tid: u32, lock: FileLock) {
        if let Some(t) = self.tasks.get_mut(&tid)
            && matches!(t.waiting, Some(Wait::File { lock: l, .. }) if l == lock)
        {
            t.waiting = None;
        }
    }

    fn drop_empty_flock(&mut self, lock: FileLock) {
        if self.flocks.get(&lock).is_some_and(FlState::is_empty) {
            self.flocks.remove(&lock);
        }
    }

    /// An operation began on a file no lock source covers: it holds the
    /// locks its filesystem takes for it (see [`flock::op_locks`]).
    fn infer_op_locks(&mut self, idx: u64, ev: &Event, dev: Dev, ino: u64) {
        if !self.locks_inferred(dev, ino) {
            return;
        }
        let Some(fs) = self.fs_of(dev, ino) else {
            return;
        };
        for &class in flock::op_locks(fs) {
            let s = self.flocks.entry(FileLock { dev, ino, class }).or_default();
            s.holders.push(FlUse {
                tid: ev.tid,
                write: true,
                idx,
                ts: ev.ts,
                seen: Seen::Inferred,
            });
        }
    }

    /// An operation ended: the holds inferred for it end.
    fn end_inferred(&mut self, tid: u32, dev: Dev, ino: u64) {
        for class in [FileLockClass::IRwsem, FileLockClass::InvalidateLock] {
            let lock = FileLock { dev, ino, class };
            if let Some(s) = self.flocks.get_mut(&lock)
                && let Some(i) = s
                    .holders
                    .iter()
                    .position(|h| h.tid == tid && h.seen == Seen::Inferred)
            {
                s.holders.remove(i);
            }
            self.drop_empty_flock(lock);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rl_request(
        &mut self,
        idx: u64,
        ev: &Event,
        tree: u64,
        lock: u64,
        start: u64,
        last: u64,
        mode: Mode,
    ) {
        // The same lock struct asked for again: a cancel of its last call
        // is no longer to come.
        if !self.released_in_call.is_empty() {
            self.released_in_call.remove(&(tree, lock));
        }
        // A request for a lock still queued: its release was lost (or the
        // kernel reused a live lock). Forget the old one first.
        if self.lock(tree, lock).is_some() {
            self.remove_lock(idx, ev.ts, tree, lock);
        }
        if !self.invalid_locks.is_empty() {
            self.invalid_locks.remove(&(tree, lock));
        }
        if !valid_range(start, last) {
            self.invalid_ranges += 1;
            self.invalid_locks.insert((tree, lock));
            return;
        }
        let rmode = self.ref_mode(mode);
        let op = self.op_of(ev.tid, tree, start, last);
        // Where insertion is observed, the request joins the reference's
        // queue at its `rl_queued`, in the kernel's queue order.
        let deferred = self.queues_observed;
        let t = self.tree_mut(tree, mode);
        let granted = !deferred && t.oracle.request(lock, start, last, rmode);
        t.locks.insert(
            lock,
            Lock {
                tid: ev.tid,
                start,
                last,
                mode,
                op,
                contended: !granted,
                req_idx: idx,
                req_ts: ev.ts,
                queued: None,
                seq: None,
                deferred,
                state: LockState::Waiting,
                grantable_since: granted.then_some((ev.ts, idx)),
                holder_exited: false,
            },
        );
        if granted {
            self.grantable_waiters.insert((tree, lock), (ev.ts, idx));
        }
        let task = self.tasks.entry(ev.tid).or_default();
        task.pid = ev.pid;
        task.waiting = Some(Wait::Range { tree, lock });
    }

    /// `rl_queued`: the request entered the tree's queue. From now on
    /// requests join the reference's queue when they enter the kernel's
    /// (those asked before this was known are already there).
    fn rl_queued(&mut self, idx: u64, ts: u64, tree: u64, lock: u64) {
        self.queues_observed = true;
        let Some(t) = self.trees.get_mut(&tree) else {
            return;
        };
        let Some(l) = t.locks.get_mut(&lock) else {
            return;
        };
        if l.queued.is_some() || l.is_held() {
            return;
        }
        l.queued = Some((idx, ts));
        if l.deferred {
            self.enqueue(idx, ts, tree, lock);
        }
    }

    /// Puts a deferred request into the reference's queue (see
    /// [`Lock::deferred`]).
    fn enqueue(&mut self, idx: u64, ts: u64, tree: u64, lock: u64) {
        let Some(l) = self.lock(tree, lock) else {
            return;
        };
        let (start, last, rmode) = (l.start, l.last, self.ref_mode(l.mode));
        let Some(t) = self.trees.get_mut(&tree) else {
            return;
        };
        let granted = t.oracle.request(lock, start, last, rmode);
        let Some(l) = t.locks.get_mut(&lock) else {
            return;
        };
        l.deferred = false;
        l.contended = !granted;
        if granted {
            l.grantable_since = Some((ts, idx));
            self.grantable_waiters.insert((tree, lock), (ts, idx));
        }
    }

    /// What task `tid` takes range `[start, last]` of `tree` for (see
    /// [`Op`]). A fault's page is consumed by the lock that covers it.
    fn op_of(&mut self, tid: u32, tree: u64, start: u64, last: u64) -> Op {
        let overlaps = |a: u64, b: u64| a <= last && start <= b;
        let file = self.tree_files.get(&tree).copied();
        let same_file = |dev: Dev, ino: u64| file.is_none_or(|f| f == (dev, ino));
        if let Some(p) = self.punch_of_task(tid)
            && same_file(p.dev, p.ino)
            && overlaps(p.first, p.last)
        {
            return p.op;
        }
        if let Some(t) = self.tasks.get_mut(&tid)
            && let Some((dev, ino, index)) = t.fault
            && same_file(dev, ino)
            && overlaps(index, index)
        {
            t.fault = None;
            return Op::Fault;
        }
        // In-flight DIOs are few; the map is empty on most workloads.
        if !self.dios.is_empty()
            && let Some(d) = self.dios.values().find(|d| {
                d.tid == tid
                    && same_file(d.dev, d.ino)
                    && d.pages.is_some_and(|(a, b)| overlaps(a, b))
            })
        {
            return if d.write { Op::DioWrite } else { Op::DioRead };
        }
        Op::Buffered
    }

    /// Removes a lock (release, cancel, failed trylock). Returns whether it
    /// was known.
    /// A held write lock becomes a read lock in one step: it keeps its place
    /// in the queue, and what only it blocked may go (the reference's
    /// downgrade: later overlapping readers, never writers). A downgrade of
    /// a lock the model does not hold as a writer changes nothing the
    /// reference would not (an unknown lock: a tree with unseen state).
    fn rl_downgrade(&mut self, idx: u64, ts: u64, tree: u64, lock: u64) {
        if self.invalid_locks.contains(&(tree, lock)) {
            return;
        }
        let Some(t) = self.trees.get_mut(&tree) else {
            self.unknown_trees.insert(tree);
            return;
        };
        let Some(l) = t.locks.get_mut(&lock) else {
            self.unknown_trees.insert(tree);
            return;
        };
        if !l.is_held() || l.mode != Mode::Write {
            return;
        }
        l.mode = Mode::Read;
        let Some(granted) = t.oracle.downgrade(lock) else {
            return;
        };
        granted_now(t, &mut self.grantable_waiters, tree, granted, ts, idx);
    }

    fn remove_lock(&mut self, idx: u64, ts: u64, tree: u64, lock: u64) -> bool {
        let Some(t) = self.trees.get_mut(&tree) else {
            return false;
        };
        let Some(l) = t.locks.remove(&lock) else {
            return false;
        };
        if l.is_held() && !t.oracle.is_grantable(lock) {
            t.divergent = t.divergent.saturating_sub(1);
        }
        let granted = t.oracle.remove(lock);
        granted_now(t, &mut self.grantable_waiters, tree, granted, ts, idx);
        self.grantable_waiters.remove(&(tree, lock));
        if t.locks.is_empty() && self.trees.len() > self.sweep_at {
            // Empty trees hold nothing a new one would not; they are kept
            // (recreating one per lock costs) and swept now and then, so
            // memory follows the live trees.
            self.trees.retain(|_, t| !t.locks.is_empty());
            self.sweep_at = (2 * self.trees.len()).max(MIN_SWEEP);
        }
        if let Some(task) = self.tasks.get_mut(&l.tid) {
            if let Some(i) = task.held.iter().position(|&h| h == (tree, lock)) {
                task.held.swap_remove(i);
            }
            if task.waiting == Some(Wait::Range { tree, lock }) {
                task.waiting = None;
            }
        }
        true
    }

    /// Names `mm` after `pid` if no one took it before, and keeps the
    /// name current while that process takes it (an exec takes the new mm
    /// before it renames the task).
    fn mm_user(&mut self, mm: u64, pid: u32, tid: u32) {
        let comm = self.tasks.get(&pid).or(self.tasks.get(&tid));
        let comm = comm.and_then(|t| t.comm.as_deref());
        match self.mm_users.get_mut(&mm) {
            Some(u) if u.pid != pid || u.comm.as_deref() == comm => {}
            Some(u) => u.comm = comm.map(str::to_owned),
            None => {
                let comm = comm.map(str::to_owned);
                self.mm_users.insert(mm, MmUser { pid, comm });
            }
        }
    }

    fn drop_empty_mm(&mut self, mm: u64) {
        if self
            .mms
            .get(&mm)
            .is_some_and(|m| m.holders.is_empty() && m.waiters.is_empty())
        {
            self.mms.remove(&mm);
        }
    }

    /// Whether a DIO on this file is still in flight.
    pub fn dio_in_flight(&self, file: Option<(Dev, u64)>) -> bool {
        file.is_some_and(|(dev, ino)| self.dios.values().any(|d| d.dev == dev && d.ino == ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ev, rl_request};

    #[test]
    fn file_events_name_files_and_their_lock_addresses() {
        let dev = Dev { major: 8, minor: 3 };
        let file = |ino, path: Option<&str>, a: Option<u64>, b: Option<u64>| Body::File {
            dev,
            ino,
            path: path.map(str::to_owned),
            fs: Some("ext4".into()),
            i_rwsem: a,
            invalidate_lock: b,
        };
        let mut m = Model::new(None);
        m.apply(0, &ev(1, 1, file(12, None, Some(0x100), Some(0x200))));
        assert_eq!(
            m.file_lock_at(0x200),
            Some((dev, 12, FileLockClass::InvalidateLock))
        );
        assert_eq!(m.file_info(dev, 12).unwrap().path, None);
        // The path learned later fills in; the addresses stay.
        m.apply(1, &ev(2, 1, file(12, Some("/mnt/f"), None, None)));
        let info = m.file_info(dev, 12).unwrap();
        assert_eq!(info.path.as_deref(), Some("/mnt/f"));
        assert_eq!(info.i_rwsem, Some(0x100));
        // The inode number came back with another inode: its old addresses
        // no longer name it.
        m.apply(2, &ev(3, 1, file(12, None, Some(0x300), Some(0x400))));
        assert_eq!(m.file_lock_at(0x100), None);
        assert_eq!(
            m.file_lock_at(0x300),
            Some((dev, 12, FileLockClass::IRwsem))
        );
        // The lock kinds are accepted (modelled elsewhere).
        m.apply(
            3,
            &ev(
                4,
                1,
                Body::FileLockRequest {
                    dev,
                    ino: 12,
                    class: FileLockClass::IRwsem,
                    write: true,
                    trylock: None,
                    stack: None,
                },
            ),
        );
        assert_eq!(m.events, 4);
    }

    #[test]
    fn tracks_holders_waiters_and_reference_grants() {
        let mut m = Model::new(None);
        let evs = [
            ev(1, 10, rl_request(1, 100, 0, 9, Mode::Excl)),
            ev(2, 10, Body::RlAcquired { tree: 1, lock: 100 }),
            ev(3, 11, rl_request(1, 101, 5, 5, Mode::Excl)),
        ];
        for (i, e) in evs.iter().enumerate() {
            m.apply(i as u64, e);
        }
        assert_eq!(m.flavour(), Some(Flavour::ExclFifo));
        assert!(m.lock(1, 100).unwrap().is_held());
        assert_eq!(m.tasks[&10].held, vec![(1, 100)]);
        assert_eq!(
            m.tasks[&11].waiting,
            Some(Wait::Range { tree: 1, lock: 101 })
        );
        assert_eq!(m.trees[&1].oracle.blockers(101), vec![100]);
        assert!(m.grantable_waiters.is_empty());
        // Released from irq context (tid 0): identity is (tree, lock).
        m.apply(3, &ev(4, 0, Body::RlRelease { tree: 1, lock: 100 }));
        assert!(m.lock(1, 100).is_none());
        assert!(m.tasks[&10].held.is_empty());
        assert_eq!(m.lock(1, 101).unwrap().grantable_since, Some((4, 3)));
        assert_eq!(m.grantable_waiters.len(), 1);
        m.apply(4, &ev(5, 11, Body::RlAcquired { tree: 1, lock: 101 }));
        assert!(m.grantable_waiters.is_empty());
        assert_eq!(m.trees[&1].divergent, 0);
    }

    #[test]
    fn absorbs_garbage() {
        let mut m = Model::new(Some(Flavour::Rw));
        m.apply(0, &ev(1, 1, Body::RlRelease { tree: 9, lock: 9 }));
        m.apply(1, &ev(1, 1, Body::RlAcquired { tree: 9, lock: 9 }));
        m.apply(2, &ev(0, 1, rl_request(9, 9, 7, 3, Mode::Excl)));
        m.apply(3, &ev(0, 1, rl_request(9, 9, 1, 1, Mode::Read)));
        m.apply(4, &ev(0, 1, Body::MmapLockRelease { mm: 1, write: true }));
        m.apply(5, &ev(0, 1, Body::PunchEnd { ret: 0, id: None }));
        m.apply(6, &ev(0, 1, Body::Exit));
        m.apply(7, &ev(0, 1, Body::RlRelease { tree: 9, lock: 9 }));
        m.apply(8, &ev(0, 1, Body::RlRelease { tree: 9, lock: 9 }));
        assert!(m.trees[&9].locks.is_empty());
        assert!(m.unknown_trees.contains(&9));
        assert!(m.mms.is_empty());
    }

    /// An mm is named after the process first seen taking its mmap_lock,
    /// with that process's current name (an exec takes the new mm before
    /// the task is renamed); another process reaching into it (ptrace,
    /// `/proc/<pid>/mem`) does not rename it, and the name outlives the
    /// process.
    #[test]
    fn an_mm_is_named_after_its_process() {
        let mut m = Model::new(None);
        let task = |comm: &str| Body::Task {
            comm: comm.to_owned(),
            kthread: false,
        };
        let take = |mm| Body::MmapLockRequest { mm, write: false };
        m.apply(0, &ev(1, 5, task("rltop")));
        m.apply(1, &ev(2, 5, take(7)));
        assert_eq!(m.mm_users[&7].comm.as_deref(), Some("rltop"));
        m.apply(2, &ev(3, 5, task("rl-locktest")));
        m.apply(3, &ev(4, 5, take(7)));
        assert_eq!(m.mm_users[&7].comm.as_deref(), Some("rl-locktest"));
        m.apply(4, &ev(5, 9, task("gdb")));
        m.apply(5, &ev(6, 9, take(7)));
        m.apply(6, &ev(7, 5, Body::Exit));
        let u = &m.mm_users[&7];
        assert_eq!((u.pid, u.comm.as_deref()), (5, Some("rl-locktest")));
    }

    /// `mmap_read_unlock_non_owner()`: another task's release ends the
    /// only other read hold; with two other readers, neither is guessed.
    #[test]
    fn a_non_owner_read_unlock_ends_the_only_other_read_hold() {
        let mut m = Model::new(None);
        let acq = |tid| {
            ev(
                0,
                tid,
                Body::MmapLockAcquired {
                    mm: 5,
                    write: false,
                    success: true,
                },
            )
        };
        let rel = |tid| {
            ev(
                1,
                tid,
                Body::MmapLockRelease {
                    mm: 5,
                    write: false,
                },
            )
        };
        m.apply(0, &acq(1));
        m.apply(1, &rel(9));
        assert!(m.mms.get(&5).is_none_or(|s| s.holders.is_empty()));
        m.apply(2, &acq(1));
        m.apply(3, &acq(2));
        m.apply(4, &rel(9));
        assert_eq!(m.mms[&5].holders.len(), 2);
        // Its own hold first, when it has one.
        m.apply(5, &acq(9));
        m.apply(6, &rel(9));
        let tids: Vec<u32> = m.mms[&5].holders.iter().map(|h| h.tid).collect();
        assert_eq!(tids.len(), 2);
        assert!(!tids.contains(&9));
    }

    /// mmap_write_downgrade(): a read acquisition by the write holder,
    /// without a request, turns its hold into a read hold; its read
    /// release then leaves nothing behind (no phantom writer for others to
    /// wait on).
    #[test]
    fn mmap_write_downgrade_turns_the_write_hold_into_a_read_hold() {
        let mut m = Model::new(None);
        let acq = |write| Body::MmapLockAcquired {
            mm: 7,
            write,
            success: true,
        };
        m.apply(0, &ev(1, 1, Body::MmapLockRequest { mm: 7, write: true }));
        m.apply(1, &ev(2, 1, acq(true)));
        m.apply(2, &ev(3, 1, acq(false)));
        let h: Vec<_> = m.mms[&7]
            .holders
            .iter()
            .map(|h| (h.tid, h.write, h.idx))
            .collect();
        assert_eq!(h, [(1, false, 2)]);
        // A reader may join; a writer waits for both.
        m.apply(
            3,
            &ev(
                4,
                2,
                Body::MmapLockRequest {
                    mm: 7,
                    write: false,
                },
            ),
        );
        m.apply(4, &ev(5, 2, acq(false)));
        m.apply(5, &ev(6, 3, Body::MmapLockRequest { mm: 7, write: true }));
        let b: Vec<_> = crate::analysis::waitfor::mmap_blockers(&m.mms[&7], 3, true).collect();
        assert_eq!(b, [(1, 2), (2, 4)]);
        m.apply(
            6,
            &ev(
                7,
                1,
                Body::MmapLockRelease {
                    mm: 7,
                    write: false,
                },
            ),
        );
        m.apply(
            7,
            &ev(
                8,
                2,
                Body::MmapLockRelease {
                    mm: 7,
                    write: false,
                },
            ),
        );
        assert!(m.mms[&7].holders.is_empty());
        // A reader that is not the write holder just joins.
        m.apply(8, &ev(9, 3, acq(true)));
        m.apply(9, &ev(10, 4, acq(false)));
        assert_eq!(m.mms[&7].holders.len(), 2);
    }

    #[test]
    fn mmap_lock_and_file_ops() {
        let mut m = Model::new(None);
        let dev = Dev { major: 8, minor: 3 };
        m.apply(0, &ev(1, 1, Body::MmapLockRequest { mm: 7, write: true }));
        assert_eq!(m.mms[&7].waiters.len(), 1);
        m.apply(
            1,
            &ev(
                2,
                1,
                Body::MmapLockAcquired {
                    mm: 7,
                    write: true,
                    success: true,
                },
            ),
        );
        assert_eq!(m.mms[&7].holders.len(), 1);
        assert_eq!(m.tasks[&1].waiting, None);
        m.apply(2, &ev(3, 1, Body::MmapLockRelease { mm: 7, write: true }));
        assert!(m.mms.is_empty());
        m.apply(
            3,
            &ev(
                4,
                2,
                Body::PunchBegin {
                    dev,
                    ino: 5,
                    pos: 4096,
                    len: 8192,
                    op: PunchOp::Punch,
                    id: None,
                },
            ),
        );
        let p = m.punch_of_task(2).unwrap();
        assert_eq!((p.first, p.last, p.op), (1, 2, Op::Punch));
        m.apply(4, &ev(5, 2, Body::PunchEnd { ret: 0, id: None }));
        assert!(m.punches.is_empty());
        assert_eq!(byte_pages(4095, 2), Some((0, 1)));
        assert_eq!(byte_pages(0, 0), None);
    }

    fn punch(tid: u32, pos: u64, len: u64, op: PunchOp, id: Option<u64>) -> Event {
        ev(
            0,
            tid,
            Body::PunchBegin {
                dev: Dev { major: 7, minor: 1 },
                ino: 12,
                pos,
                len,
                op,
                id,
            },
        )
    }

    fn run(m: &mut Model, evs: &[Event]) {
        for (i, e) in evs.iter().enumerate() {
            m.apply(m.events.max(i as u64), e);
        }
    }

    /// With ids, an end closes the operation of its id whichever task
    /// emits it (a loop kworker's discard, an ioctl), and never another.
    #[test]
    fn ops_pair_by_id_across_tasks() {
        let mut m = Model::new(None);
        run(
            &mut m,
            &[
                punch(10, 0, 8192, PunchOp::Punch, Some(1)),
                punch(11, 8192, 4096, PunchOp::Zero, Some(2)),
                // Task 10 ends an operation it did not begin: id 2's.
                ev(
                    3,
                    10,
                    Body::PunchEnd {
                        ret: 0,
                        id: Some(2),
                    },
                ),
            ],
        );
        assert_eq!(m.punches.len(), 1);
        let p = m.punches[&OpKey::Id(1)];
        assert_eq!((p.tid, p.first, p.last, p.op), (10, 0, 1, Op::Punch));
        assert_eq!(m.punch_of_task(10).map(|p| p.op), Some(Op::Punch));
        assert!(m.punch_of_task(11).is_none());
        // An end of an unknown id closes nothing.
        m.apply(
            3,
            &ev(
                4,
                10,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(9),
                },
            ),
        );
        assert_eq!(m.punches.len(), 1);
        let end = Body::PunchEnd {
            ret: 0,
            id: Some(1),
        };
        assert_eq!(m.punch_ending(99, &end).map(|p| p.tid), Some(10));
        // A truncate end never closes a punch of the same id.
        let tend = Body::TruncateEnd {
            ret: 0,
            id: Some(1),
        };
        assert!(m.punch_ending(10, &tend).is_none());
        m.apply(4, &ev(5, 99, end));
        assert!(m.punches.is_empty());
    }

    /// Old traces (no ids) pair by task, as before.
    #[test]
    fn ops_without_ids_pair_by_task() {
        let mut m = Model::new(None);
        run(
            &mut m,
            &[
                punch(10, 0, 4096, PunchOp::Punch, None),
                ev(
                    1,
                    11,
                    Body::TruncateBegin {
                        dev: Dev { major: 7, minor: 1 },
                        ino: 12,
                        size: 4097,
                        id: None,
                    },
                ),
                ev(2, 12, Body::PunchEnd { ret: 0, id: None }),
            ],
        );
        assert_eq!(m.punches.len(), 2);
        let t = m.punches[&OpKey::Task(11)];
        assert_eq!((t.first, t.last, t.op), (2, u64::MAX, Op::Truncate));
        m.apply(3, &ev(3, 10, Body::PunchEnd { ret: 0, id: None }));
        m.apply(4, &ev(4, 11, Body::TruncateEnd { ret: 0, id: None }));
        assert!(m.punches.is_empty());
    }

    /// Collapse and insert shift every page from `pos`; zero keeps its range.
    #[test]
    fn collapse_and_insert_cover_to_the_end_of_the_file() {
        let mut m = Model::new(None);
        run(
            &mut m,
            &[
                punch(1, 8192, 4096, PunchOp::Collapse, Some(1)),
                punch(2, 8192, 4096, PunchOp::Insert, Some(2)),
                punch(3, 8192, 4096, PunchOp::Zero, Some(3)),
                // Empty: nothing in flight, its end matches nothing.
                punch(4, 8192, 0, PunchOp::Punch, Some(4)),
            ],
        );
        let r = |id| {
            let p = m.punches[&OpKey::Id(id)];
            (p.first, p.last, p.op)
        };
        assert_eq!(r(1), (2, u64::MAX, Op::Collapse));
        assert_eq!(r(2), (2, u64::MAX, Op::Insert));
        assert_eq!(r(3), (2, 2, Op::Zero));
        assert!(!m.punches.contains_key(&OpKey::Id(4)));
    }

    /// Windows open and close by id; an operation's end closes a window its
    /// task never ended; a task's exit ends what it began.
    #[test]
    fn windows_follow_their_operation() {
        let dev = Dev { major: 7, minor: 1 };
        let win = |tid, id| {
            ev(
                1,
                tid,
                Body::InvalidateBegin {
                    dev,
                    ino: 12,
                    first: 0,
                    last: 1,
                    id: Some(id),
                },
            )
        };
        let mut m = Model::new(None);
        run(
            &mut m,
            &[
                punch(10, 0, 8192, PunchOp::Punch, Some(1)),
                win(10, 1),
                punch(11, 0, 8192, PunchOp::Punch, Some(2)),
                win(11, 2),
                ev(
                    2,
                    10,
                    Body::InvalidateEnd {
                        dev,
                        ino: 12,
                        id: Some(1),
                    },
                ),
            ],
        );
        assert_eq!(m.windows.len(), 1);
        assert_eq!(m.windows[&OpKey::Id(2)].tid, 11);
        m.apply(
            5,
            &ev(
                3,
                0,
                Body::PunchEnd {
                    ret: 0,
                    id: Some(2),
                },
            ),
        );
        assert!(m.windows.is_empty());
        // Exit: the operation and its window go.
        run(
            &mut m,
            &[punch(12, 0, 1, PunchOp::Punch, Some(3)), win(12, 3)],
        );
        m.apply(9, &ev(4, 12, Body::Exit));
        assert!(!m.punches.contains_key(&OpKey::Id(3)) && m.windows.is_empty());
        // Id 1 was never ended, and its task is alive: still in flight.
        assert!(m.punches.contains_key(&OpKey::Id(1)));
    }

    #[test]
    fn page_size_comes_from_the_trace() {
        let mut m = Model::new(None);
        assert_eq!(m.pages(65536, 4096), Some((16, 16)));
        m.set_page_size(Some(65536));
        assert_eq!(m.page_size(), 65536);
        assert_eq!(m.pages(65536, 4096), Some((1, 1)));
        m.apply(0, &punch(1, 65536, 131072, PunchOp::Punch, Some(1)));
        let p = m.punches[&OpKey::Id(1)];
        assert_eq!((p.first, p.last), (1, 2));
        // Not a power of two: ignored.
        m.set_page_size(Some(3000));
        assert_eq!(m.page_size(), 4096);
        m.apply(
            1,
            &ev(
                1,
                1,
                Body::PageAdd {
                    dev: Dev::default(),
                    ino: 1,
                    index: 0,
                    order: None,
                },
            ),
        );
        assert_eq!(m.page_adds_unknown_size, 1);
    }

    #[test]
    fn empty_trees_are_swept() {
        let mut m = Model::new(None);
        let mut i = 0;
        for tree in 0..5000u64 {
            m.apply(i, &ev(i, 1, rl_request(tree, 1, 0, 0, Mode::Excl)));
            m.apply(i + 1, &ev(i + 1, 1, Body::RlRelease { tree, lock: 1 }));
            i += 2;
        }
        assert!(m.trees.len() <= 2 * MIN_SWEEP, "{}", m.trees.len());
    }
}
