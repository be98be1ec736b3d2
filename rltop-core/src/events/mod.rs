//! Events: the one stream every source (live kernel, trace file, JSONL,
//! simulator) yields and every later stage consumes.
//!
//! [`Event`] is the decoded, owned form. [`raw`] turns kernel ring-buffer
//! records into events; [`jsonl`] reads and writes the JSONL contract of
//! `docs/events.md`; [`text`] is the human one-line form of `rltop dump`.

pub mod jsonl;
pub mod raw;
pub mod text;

use std::fmt;

/// A device number as user space writes it: `major:minor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dev {
    pub major: u32,
    pub minor: u32,
}

impl Dev {
    /// From the kernel's internal `dev_t` (`major << 20 | minor`), as
    /// tracepoints and `super_block.s_dev` carry it.
    pub fn from_kernel(dev: u32) -> Dev {
        Dev {
            major: dev >> 20,
            minor: dev & 0xfffff,
        }
    }

    /// Back to the kernel's internal `dev_t`. Only meaningful when major fits
    /// 12 bits and minor 20 bits, as for every real device.
    pub fn to_kernel(self) -> u32 {
        (self.major << 20) | (self.minor & 0xfffff)
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl std::str::FromStr for Dev {
    type Err = String;
    fn from_str(s: &str) -> Result<Dev, String> {
        let (ma, mi) = s
            .split_once(':')
            .ok_or_else(|| format!("device {s:?} is not \"major:minor\""))?;
        let major = ma
            .parse::<u32>()
            .map_err(|_| format!("device {s:?}: bad major"))?;
        let minor = mi
            .parse::<u32>()
            .map_err(|_| format!("device {s:?}: bad minor"))?;
        if major >= 1 << 12 || minor >= 1 << 20 {
            return Err(format!(
                "device {s:?} does not fit the kernel's dev_t (12-bit major, 20-bit minor)"
            ));
        }
        Ok(Dev { major, minor })
    }
}

/// Range lock request modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Excl,
    Read,
    Write,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Excl => "excl",
            Mode::Read => "read",
            Mode::Write => "write",
        }
    }
}

/// What a `punch_begin` does: JSONL `op`, `"punch"` when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PunchOp {
    #[default]
    Punch,
    Zero,
    Collapse,
    Insert,
}

impl PunchOp {
    pub const ALL: [PunchOp; 4] = [
        PunchOp::Punch,
        PunchOp::Zero,
        PunchOp::Collapse,
        PunchOp::Insert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PunchOp::Punch => "punch",
            PunchOp::Zero => "zero",
            PunchOp::Collapse => "collapse",
            PunchOp::Insert => "insert",
        }
    }

    pub fn parse(s: &str) -> Option<PunchOp> {
        PunchOp::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The page-cache locks of a file that rltop tracks by name (issue 14): the
/// inode's `i_rwsem` and its mapping's `invalidate_lock`, both rw_semaphores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileLockClass {
    IRwsem,
    InvalidateLock,
}

/// One page-cache lock of one file: what `file_lock_*` events are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileLock {
    pub dev: Dev,
    pub ino: u64,
    pub class: FileLockClass,
}

impl FileLockClass {
    /// The JSONL `class` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FileLockClass::IRwsem => "i_rwsem",
            FileLockClass::InvalidateLock => "invalidate_lock",
        }
    }

    /// From the JSONL `class` string.
    pub fn parse(s: &str) -> Option<FileLockClass> {
        match s {
            "i_rwsem" => Some(FileLockClass::IRwsem),
            "invalidate_lock" => Some(FileLockClass::InvalidateLock),
            _ => None,
        }
    }
}

/// One event: the common fields and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts: u64,
    /// Thread id of the task the event happened in.
    pub tid: u32,
    /// Process id (tgid).
    pub pid: u32,
    /// CPU, when known.
    pub cpu: Option<u32>,
    pub body: Body,
}

/// What happened. One variant per JSONL `kind`; see `docs/events.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Task {
        comm: String,
        /// A kernel thread (`PF_KTHREAD`): kworkers, loop and jbd2 threads
        /// work on files for others. False when not known (older traces).
        kthread: bool,
    },
    /// Task `tid` (of process `pid`) forked `child` (of process
    /// `child_pid`: the same as `pid` for a new thread). Written for the
    /// process tree of `record -- CMD` only: its root is the child of a
    /// fork whose parent is no child of an earlier one (rltop itself).
    Fork {
        child: u32,
        child_pid: u32,
    },
    Tree {
        tree: u64,
        dev: Dev,
        ino: u64,
    },
    RlRequest {
        tree: u64,
        lock: u64,
        start: u64,
        last: u64,
        mode: Mode,
    },
    RlAcquired {
        tree: u64,
        lock: u64,
    },
    RlTrylockFailed {
        tree: u64,
        lock: u64,
    },
    RlCancel {
        tree: u64,
        lock: u64,
    },
    RlRelease {
        tree: u64,
        lock: u64,
    },
    /// The held write lock became a read lock in one step, keeping its
    /// place in the queue (`range_downgrade_write`).
    RlDowngrade {
        tree: u64,
        lock: u64,
    },
    /// The tree's init function ran: every lock of it since is in the
    /// trace (its whole life, for the rules that need it).
    RlTreeInit {
        tree: u64,
    },
    /// The request entered the tree's queue, under the tree's lock (the
    /// profile's insertion probe): the queue order FIFO is judged by.
    RlQueued {
        tree: u64,
        lock: u64,
    },
    /// The request's place in its tree's queue (the lock's sequence number,
    /// read as its lock call returned): requests entered the queue in the
    /// order of these numbers.
    RlQueueSeq {
        tree: u64,
        lock: u64,
        seq: u64,
    },
    MmapLockRequest {
        mm: u64,
        write: bool,
    },
    MmapLockAcquired {
        mm: u64,
        write: bool,
        success: bool,
    },
    MmapLockRelease {
        mm: u64,
        write: bool,
    },
    Fault {
        dev: Dev,
        ino: u64,
        index: u64,
    },
    PageAdd {
        dev: Dev,
        ino: u64,
        index: u64,
        order: Option<u32>,
    },
    DioBegin {
        io: u64,
        dev: Dev,
        ino: u64,
        pos: u64,
        len: u64,
        write: bool,
    },
    DioEnd {
        io: u64,
        ret: i64,
    },
    /// A punch hole, zero, collapse or insert range over bytes
    /// `[pos, pos + len)`. With an `id`, it pairs with the `punch_end` of
    /// the same id, whichever task ends it; without one (older traces),
    /// with the same task's next `punch_end`.
    PunchBegin {
        dev: Dev,
        ino: u64,
        pos: u64,
        len: u64,
        op: PunchOp,
        id: Option<u64>,
    },
    PunchEnd {
        ret: i64,
        id: Option<u64>,
    },
    /// A truncate to `size` bytes; `id` pairs it as for punches.
    TruncateBegin {
        dev: Dev,
        ino: u64,
        size: u64,
        id: Option<u64>,
    },
    TruncateEnd {
        ret: i64,
        id: Option<u64>,
    },
    /// The task doing operation `id` holds the mapping's `invalidate_lock`
    /// exclusively and has not yet begun invalidating the page cache of
    /// pages `[first, last]` (`last` may be `u64::MAX`, for truncate). See
    /// `docs/kernel-fs-ops.md` for where each filesystem proves that.
    InvalidateBegin {
        dev: Dev,
        ino: u64,
        first: u64,
        last: u64,
        id: Option<u64>,
    },
    /// The same task still holds that lock and has freed the range's blocks.
    InvalidateEnd {
        dev: Dev,
        ino: u64,
        id: Option<u64>,
    },
    /// `addr` is an rltop extension of the contract: the kernel's
    /// `contention_end` carries the lock address, and pairing needs it.
    ContentionBegin {
        addr: u64,
        flags: u32,
        /// The first kernel function outside the locking code on the
        /// contending task's stack, `sym+0xoff` (rltop extension, issue 14).
        caller: Option<String>,
    },
    ContentionEnd {
        addr: Option<u64>,
        ret: i64,
    },
    Marker {
        text: String,
    },
    Lost {
        count: u64,
        cpu: u32,
        /// The drops happened after this time (the recorder's previous
        /// look at the counters) and before the event's own `ts`.
        since: Option<u64>,
        /// rltop extension: the probe whose hits the kernel missed
        /// (`kprobe:range_lock`, `program rl_unlock`), when the loss is
        /// not the ring buffer's.
        probe: Option<String>,
    },
    Exit,
    /// rltop extension (kprobe profiles): the kernel side saw this task ask
    /// for mmap_lock while holding `held` range locks. `stack` is the kernel
    /// stack, innermost frame first, frames joined by `;` (`sym+0xoff`).
    OrderingEvidence {
        mm: u64,
        write: bool,
        held: u64,
        stack: String,
    },
    /// A traced file, once per inode per recording (again when its path is
    /// learned later): its path, filesystem type and the kernel addresses of
    /// its page-cache locks (issue 14). The addresses name the locks of
    /// `contention_*` events.
    File {
        dev: Dev,
        ino: u64,
        path: Option<String>,
        fs: Option<String>,
        i_rwsem: Option<u64>,
        invalidate_lock: Option<u64>,
    },
    /// A task asks for one of a file's page-cache locks (`trylock`, JSONL `try`: a trylock or
    /// nowait attempt). From real lock sources only (`lock_source`).
    FileLockRequest {
        dev: Dev,
        ino: u64,
        class: FileLockClass,
        write: bool,
        trylock: Option<bool>,
        /// Where it was asked for: the kernel stack, innermost first (write
        /// requests of an `invalidate_lock` from the fentry and kprobe
        /// sources, rare enough to walk the stack; what a lockdep-style
        /// report shows as "acquired at").
        stack: Option<String>,
    },
    /// The request returned: holding the lock (`success`), or not (a failed
    /// trylock, an interrupted killable wait).
    FileLockAcquired {
        dev: Dev,
        ino: u64,
        class: FileLockClass,
        write: bool,
        success: bool,
    },
    FileLockRelease {
        dev: Dev,
        ino: u64,
        class: FileLockClass,
        write: bool,
    },
    /// A page fault taken while the task held `held` locks ranked below
    /// mmap_lock (range locks, invalidate_lock) with page faults enabled.
    PageFault {
        addr: u64,
        user: bool,
        write: Option<bool>,
        held: u64,
        stack: Option<String>,
    },
}

impl Body {
    /// The JSONL `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Task { .. } => "task",
            Body::Tree { .. } => "tree",
            Body::RlRequest { .. } => "rl_request",
            Body::RlAcquired { .. } => "rl_acquired",
            Body::RlTrylockFailed { .. } => "rl_trylock_failed",
            Body::RlCancel { .. } => "rl_cancel",
            Body::RlRelease { .. } => "rl_release",
            Body::RlDowngrade { .. } => "rl_downgrade",
            Body::RlTreeInit { .. } => "rl_tree_init",
            Body::RlQueued { .. } => "rl_queued",
            Body::RlQueueSeq { .. } => "rl_queue_seq",
            Body::MmapLockRequest { .. } => "mmap_lock_request",
            Body::MmapLockAcquired { .. } => "mmap_lock_acquired",
            Body::MmapLockRelease { .. } => "mmap_lock_release",
            Body::Fault { .. } => "fault",
            Body::PageAdd { .. } => "page_add",
            Body::DioBegin { .. } => "dio_begin",
            Body::DioEnd { .. } => "dio_end",
            Body::PunchBegin { .. } => "punch_begin",
            Body::PunchEnd { .. } => "punch_end",
            Body::TruncateBegin { .. } => "truncate_begin",
            Body::TruncateEnd { .. } => "truncate_end",
            Body::ContentionBegin { .. } => "contention_begin",
            Body::ContentionEnd { .. } => "contention_end",
            Body::Marker { .. } => "marker",
            Body::Lost { .. } => "lost",
            Body::Exit => "exit",
            Body::Fork { .. } => "fork",
            Body::OrderingEvidence { .. } => "ordering_evidence",
            Body::File { .. } => "file",
            Body::FileLockRequest { .. } => "file_lock_request",
            Body::FileLockAcquired { .. } => "file_lock_acquired",
            Body::FileLockRelease { .. } => "file_lock_release",
            Body::PageFault { .. } => "page_fault",
            Body::InvalidateBegin { .. } => "invalidate_begin",
            Body::InvalidateEnd { .. } => "invalidate_end",
        }
    }

    /// The file lock a `file_lock_*` event is about, and its mode (write).
    pub fn file_lock(&self) -> Option<(FileLock, bool)> {
        match *self {
            Body::FileLockRequest {
                dev,
                ino,
                class,
                write,
                ..
            }
            | Body::FileLockAcquired {
                dev,
                ino,
                class,
                write,
                ..
            }
            | Body::FileLockRelease {
                dev,
                ino,
                class,
                write,
            } => Some((FileLock { dev, ino, class }, write)),
            _ => None,
        }
    }

    /// The file an event names by `dev` and `ino` (not the range-lock
    /// events, which name a tree, nor the ends, which name their begin).
    /// `file` itself is a name, not work on the file: `None`.
    pub fn file(&self) -> Option<(Dev, u64)> {
        match *self {
            Body::Fault { dev, ino, .. }
            | Body::PageAdd { dev, ino, .. }
            | Body::DioBegin { dev, ino, .. }
            | Body::PunchBegin { dev, ino, .. }
            | Body::TruncateBegin { dev, ino, .. }
            | Body::InvalidateBegin { dev, ino, .. }
            | Body::InvalidateEnd { dev, ino, .. }
            | Body::FileLockRequest { dev, ino, .. }
            | Body::FileLockAcquired { dev, ino, .. }
            | Body::FileLockRelease { dev, ino, .. } => Some((dev, ino)),
            _ => None,
        }
    }

    /// The range lock an `rl_*` event is about: `(tree, lock)`.
    pub fn range_lock(&self) -> Option<(u64, u64)> {
        match *self {
            Body::RlRequest { tree, lock, .. }
            | Body::RlAcquired { tree, lock }
            | Body::RlTrylockFailed { tree, lock }
            | Body::RlCancel { tree, lock }
            | Body::RlRelease { tree, lock }
            | Body::RlDowngrade { tree, lock }
            | Body::RlQueued { tree, lock }
            | Body::RlQueueSeq { tree, lock, .. } => Some((tree, lock)),
            _ => None,
        }
    }

    /// The kind of this body, as a [`Tag`].
    pub fn tag(&self) -> Tag {
        match self {
            Body::Task { .. } => Tag::Task,
            Body::Tree { .. } => Tag::Tree,
            Body::RlRequest { .. } => Tag::RlRequest,
            Body::RlAcquired { .. } => Tag::RlAcquired,
            Body::RlTrylockFailed { .. } => Tag::RlTrylockFailed,
            Body::RlCancel { .. } => Tag::RlCancel,
            Body::RlRelease { .. } => Tag::RlRelease,
            Body::MmapLockRequest { .. } => Tag::MmapLockRequest,
            Body::MmapLockAcquired { .. } => Tag::MmapLockAcquired,
            Body::MmapLockRelease { .. } => Tag::MmapLockRelease,
            Body::Fault { .. } => Tag::Fault,
            Body::PageAdd { .. } => Tag::PageAdd,
            Body::DioBegin { .. } => Tag::DioBegin,
            Body::DioEnd { .. } => Tag::DioEnd,
            Body::PunchBegin { .. } => Tag::PunchBegin,
            Body::PunchEnd { .. } => Tag::PunchEnd,
            Body::TruncateBegin { .. } => Tag::TruncateBegin,
            Body::TruncateEnd { .. } => Tag::TruncateEnd,
            Body::ContentionBegin { .. } => Tag::ContentionBegin,
            Body::ContentionEnd { .. } => Tag::ContentionEnd,
            Body::Marker { .. } => Tag::Marker,
            Body::Lost { .. } => Tag::Lost,
            Body::Exit => Tag::Exit,
            Body::Fork { .. } => Tag::Fork,
            Body::OrderingEvidence { .. } => Tag::OrderingEvidence,
            Body::InvalidateBegin { .. } => Tag::InvalidateBegin,
            Body::InvalidateEnd { .. } => Tag::InvalidateEnd,
            Body::File { .. } => Tag::File,
            Body::FileLockRequest { .. } => Tag::FileLockRequest,
            Body::FileLockAcquired { .. } => Tag::FileLockAcquired,
            Body::FileLockRelease { .. } => Tag::FileLockRelease,
            Body::PageFault { .. } => Tag::PageFault,
            Body::RlDowngrade { .. } => Tag::RlDowngrade,
            Body::RlTreeInit { .. } => Tag::RlTreeInit,
            Body::RlQueued { .. } => Tag::RlQueued,
            Body::RlQueueSeq { .. } => Tag::RlQueueSeq,
        }
    }
}

/// The kind of a [`Body`] without its fields: for tables indexed by kind
/// (which analyses want which events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    Task,
    Tree,
    RlRequest,
    RlAcquired,
    RlTrylockFailed,
    RlCancel,
    RlRelease,
    MmapLockRequest,
    MmapLockAcquired,
    MmapLockRelease,
    Fault,
    PageAdd,
    DioBegin,
    DioEnd,
    PunchBegin,
    PunchEnd,
    TruncateBegin,
    TruncateEnd,
    ContentionBegin,
    ContentionEnd,
    Marker,
    Lost,
    Exit,
    OrderingEvidence,
    InvalidateBegin,
    InvalidateEnd,
    File,
    FileLockRequest,
    FileLockAcquired,
    FileLockRelease,
    PageFault,
    RlDowngrade,
    RlTreeInit,
    RlQueued,
    RlQueueSeq,
    Fork,
}

impl Tag {
    /// How many tags there are.
    pub const COUNT: usize = Tag::Fork as usize + 1; // the last variant
}
