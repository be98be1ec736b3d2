//! The page-cache locks of each traced file, mainline's answer to Kara's
//! problem: the inode's `i_rwsem` and its mapping's `invalidate_lock`, two
//! rw_semaphores over the whole file (`[0, EOF]`). See `docs/kernel-locks.md`.
//!
//! How much the model knows depends on the trace's lock source (its header's
//! `lock_source`):
//!
//! - `fentry`, `kprobe`: requests, acquisitions and releases are all seen
//!   ([`Seen::Exact`]);
//! - `xfs_ilock`, `lockdep`: requests and releases only. A task that asked
//!   holds the lock from its request on ([`Seen::AtRequest`]: the hold
//!   began at most then), unless it contends for it next
//!   (`lock:contention_begin` on the lock's address), when it waits until
//!   the contention ends. A nowait request's outcome is not seen: it is
//!   not taken as a hold;
//! - no source for the file's filesystem (ext4 and btrfs on a kernel
//!   without kprobes): holds are inferred from the operations that take
//!   the lock on that filesystem ([`Seen::Inferred`]: punch, zero, collapse,
//!   insert and truncate hold `i_rwsem` and, but on btrfs, `invalidate_lock`
//!   for writing while they run), and waits measured from
//!   `lock:contention_*` on the lock's address.
//!
//! Inferred holds are for people (who holds what, how long); no rule is
//! proven on them.

pub use crate::events::FileLock;
use crate::events::FileLockClass;

/// How a hold or wait is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    /// From the lock functions themselves: request, acquisition, release.
    Exact,
    /// A request of a source that does not see acquisitions: held since at
    /// most the request.
    AtRequest,
    /// Inferred from an operation known to take the lock.
    Inferred,
}

/// A holder or waiter of a file lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlUse {
    pub tid: u32,
    pub write: bool,
    /// The event that made it so (request, acquisition, contention).
    pub idx: u64,
    pub ts: u64,
    pub seen: Seen,
}

/// One file lock's holders and waiters.
#[derive(Clone, Debug, Default)]
pub struct FlState {
    pub holders: Vec<FlUse>,
    pub waiters: Vec<FlUse>,
}

impl FlState {
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }
}

/// What the trace's lock source sees (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LockSource {
    /// Requests, acquisitions and releases (fentry, kprobe).
    Full,
    /// Requests and releases; for XFS files only with `xfs_ilock`.
    Requests { xfs_only: bool },
    /// No `file_lock_*` events (or a trace older than them).
    #[default]
    None,
}

impl LockSource {
    /// From the trace header's `lock_source`.
    pub fn parse(s: Option<&str>) -> LockSource {
        match s {
            Some("fentry" | "kprobe") => LockSource::Full,
            Some("lockdep") => LockSource::Requests { xfs_only: false },
            Some("xfs_ilock") => LockSource::Requests { xfs_only: true },
            _ => LockSource::None,
        }
    }

    /// Whether this source reports the locks of a file on `fs` (`None`:
    /// unknown filesystem).
    pub fn covers(self, fs: Option<&str>) -> bool {
        match self {
            LockSource::Full | LockSource::Requests { xfs_only: false } => true,
            LockSource::Requests { xfs_only: true } => fs == Some("xfs"),
            LockSource::None => false,
        }
    }
}

/// Which locks an operation of filesystem `fs` holds for writing while it
/// runs (punch, zero, collapse, insert, truncate), for inferred holds:
/// ext4 and XFS take both (`ext4_fallocate`, `ext4_setattr`,
/// `xfs_file_fallocate`, `xfs_vn_setattr`); btrfs takes `i_rwsem` and a lock
/// of its own instead of the mapping's `invalidate_lock`
/// (`btrfs_inode_lock(BTRFS_ILOCK_MMAP)`). Other filesystems: not known.
pub fn op_locks(fs: &str) -> &'static [FileLockClass] {
    match fs {
        "ext4" | "xfs" => &[FileLockClass::IRwsem, FileLockClass::InvalidateLock],
        "btrfs" => &[FileLockClass::IRwsem],
        _ => &[],
    }
}

/// rw_semaphore queueing: what waiter `tid` (for `write`) waits for: the
/// conflicting holders (`true`: held), then the earlier waiters it queues
/// behind (`false`): writers for a reader, all for a writer.
pub fn blocking(s: &FlState, tid: u32, write: bool) -> impl Iterator<Item = (&FlUse, bool)> + '_ {
    let holders = s
        .holders
        .iter()
        .filter(move |h| (write || h.write) && h.tid != tid)
        .map(|h| (h, true));
    let pos = s
        .waiters
        .iter()
        .position(|w| w.tid == tid)
        .unwrap_or(s.waiters.len());
    let earlier = s.waiters[..pos]
        .iter()
        .filter(move |w| write || w.write)
        .map(|w| (w, false));
    holders.chain(earlier)
}
