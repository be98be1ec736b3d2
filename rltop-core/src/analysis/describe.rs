//! How rltop names tasks, locks and ranges in words: one place for the
//! checker's messages, the TUI and `report`, so a lock reads the same
//! wherever it is shown.

use crate::events::Dev;
use crate::events::Mode;
use crate::model::{FileLock, Lock, Model, Op, Seen};

/// `comm/tid` when the task's name is known, else the tid.
pub fn task_label(comm: Option<&str>, tid: u32) -> String {
    match comm {
        Some(c) => format!("{c}/{tid}"),
        None => format!("{tid}"),
    }
}

/// A task as the model knows it (see [`task_label`]).
pub fn task(m: &Model, tid: u32) -> String {
    task_label(m.comm(tid), tid)
}

/// `tree 0x.. (dev:ino)`, or just the tree when not linked to a file.
pub fn tree(m: &Model, tree: u64) -> String {
    match m.file_of(tree) {
        Some((dev, ino)) => format!("tree {tree:#x} ({})", file(m, dev, ino)),
        None => format!("tree {tree:#x}"),
    }
}

/// The file of a tree (`dev:ino`), else the tree.
pub fn file_or_tree(m: &Model, tree: u64) -> String {
    match m.file_of(tree) {
        Some((dev, ino)) => format!("{dev}:{ino}"),
        None => format!("tree {tree:#x}"),
    }
}

/// One range lock request: `range lock 0x.. [s, l] mode on tree ..`.
pub fn range_lock(m: &Model, tree_id: u64, lock: u64, l: &Lock) -> String {
    format!(
        "range lock {lock:#x} [{}, {}] {} on {}",
        l.start,
        l.last,
        l.mode.as_str(),
        tree(m, tree_id)
    )
}

/// A page range as people read it: `[start, last]`, `[start, EOF]`.
pub fn pages(start: u64, last: u64) -> String {
    if last == u64::MAX {
        format!("[{start}, EOF]")
    } else {
        format!("[{start}, {last}]")
    }
}

/// A range lock by what it covers: `range [s, l] mode (op)`.
pub fn range(start: u64, last: u64, mode: Mode, op: Op) -> String {
    format!(
        "range {} {} ({})",
        pages(start, last),
        mode.as_str(),
        op.as_str()
    )
}

pub fn rw(write: bool) -> &'static str {
    if write { "write" } else { "read" }
}

/// The process an mm is named after (see [`crate::model::MmUser`]):
/// `comm/pid`, or the pid until its name is known.
pub fn mm_process(m: &Model, mm: u64) -> Option<String> {
    let u = m.mm_users.get(&mm)?;
    Some(task_label(u.comm.as_deref(), u.pid))
}

/// `mmap_lock of comm/pid (mm 0x.., read|write)`; `mmap_lock of mm 0x..
/// (read|write)` before anyone was seen taking it.
pub fn mmap_lock(m: &Model, mm: u64, write: bool) -> String {
    match mm_process(m, mm) {
        Some(p) => format!("mmap_lock of {p} (mm {mm:#x}, {})", rw(write)),
        None => format!("mmap_lock of mm {mm:#x} ({})", rw(write)),
    }
}

/// `mmap_lock of comm/pid (read|write)`, for columns where the process
/// is enough (else the mm's address).
pub fn mmap_lock_short(m: &Model, mm: u64, write: bool) -> String {
    match mm_process(m, mm) {
        Some(p) => format!("mmap_lock of {p} ({})", rw(write)),
        None => format!("mmap_lock {mm:#x} ({})", rw(write)),
    }
}

/// A report row's name: `mmap_lock 0x.. (comm/pid)`, like a tree's
/// `tree 0x.. (file)`: unique, and says whose it is.
pub fn mmap_lock_row(m: &Model, mm: u64) -> String {
    match mm_process(m, mm) {
        Some(p) => format!("mmap_lock {mm:#x} ({p})"),
        None => format!("mmap_lock {mm:#x}"),
    }
}

/// A file by name: its path when a `file` event gave one, else `dev:ino`.
pub fn file(m: &Model, dev: Dev, ino: u64) -> String {
    match m.file_info(dev, ino).and_then(|i| i.path.as_deref()) {
        Some(p) => p.to_string(),
        None => format!("{dev}:{ino}"),
    }
}

/// A file's page-cache lock: `invalidate_lock of /mnt/f (write)`.
pub fn file_lock(m: &Model, l: FileLock, write: bool) -> String {
    format!(
        "{} of {} ({})",
        l.class.as_str(),
        file(m, l.dev, l.ino),
        rw(write)
    )
}

/// How a file-lock hold is known, as a suffix for people: nothing when
/// seen, else what it rests on.
pub fn seen(s: Seen) -> &'static str {
    match s {
        Seen::Exact => "",
        Seen::AtRequest => " (held from its request: the acquisition is not traced)",
        Seen::Inferred => " (inferred from the operation)",
    }
}

/// A kernel lock's type from its `lock:contention_begin` flags, in `perf
/// lock contention`'s words (`LCB_F_*`: spin 1, read 2, write 4, rt 8,
/// percpu 16, mutex 32).
pub fn lock_type(flags: u32) -> &'static str {
    const SPIN: u32 = 1;
    const READ: u32 = 2;
    const WRITE: u32 = 4;
    const RT: u32 = 8;
    const PERCPU: u32 = 16;
    const MUTEX: u32 = 32;
    match flags & 63 {
        SPIN => "spinlock",
        f if f == SPIN | READ => "rwlock:R",
        f if f == SPIN | WRITE => "rwlock:W",
        READ => "rwsem:R",
        WRITE => "rwsem:W",
        RT => "rt-mutex",
        f if f == RT | READ => "rwlock-rt:R",
        f if f == RT | WRITE => "rwlock-rt:W",
        f if f == PERCPU | READ => "pcpu-sem:R",
        f if f == PERCPU | WRITE => "pcpu-sem:W",
        MUTEX => "mutex",
        f if f == MUTEX | SPIN => "mutex-spin",
        _ => "lock",
    }
}

/// A kernel lock that is not a learned class: its type and first caller,
/// and its address (`rwsem:W at ext4_buffered_write_iter+0x4e 0xffff..`).
pub fn kernel_lock(addr: u64, flags: u32, caller: Option<&str>) -> String {
    match caller {
        Some(c) => format!("{} at {c} {addr:#x}", lock_type(flags)),
        None => format!("{} {addr:#x}", lock_type(flags)),
    }
}
