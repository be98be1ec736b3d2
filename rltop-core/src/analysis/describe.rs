//! How rltop names tasks, locks and ranges in words: one place for the
//! checker's messages, the TUI and `report`, so a lock reads the same
//! wherever it is shown.

use crate::events::Mode;
use crate::model::{Lock, Model, Op};

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
        Some((dev, ino)) => format!("tree {tree:#x} ({dev}:{ino})"),
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

/// `mmap_lock of mm 0x.. (read|write)`.
pub fn mmap_lock(mm: u64, write: bool) -> String {
    format!("mmap_lock of mm {mm:#x} ({})", rw(write))
}

/// `mmap_lock 0x.. (read|write)`, where the column says it is an mm.
pub fn mmap_lock_short(mm: u64, write: bool) -> String {
    format!("mmap_lock {mm:#x} ({})", rw(write))
}
