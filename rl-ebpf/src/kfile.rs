//! File operations on kprobes, for kernels without the file tracepoints
//! (Debian's 6.1 has no `filemap:mm_filemap_fault`, no `iomap:*` and, with
//! ext4 a module, its tracepoints only once it is loaded). User space
//! attaches one of these only where the tracepoint program of the same
//! event cannot attach, so an event is never recorded twice.
//!
//! Layouts, all member offsets from BTF at start-up (`KOFF`):
//! - `filemap_fault(struct vm_fault *vmf)`: `vmf->vma->vm_file->f_inode`,
//!   `vmf->pgoff` (`vma` and `pgoff` sit in an anonymous const struct);
//! - `iomap_dio_rw(struct kiocb *, struct iov_iter *, ...)`: as the raw
//!   tracepoint `iomap_dio_rw_begin` (`file.rs`);
//! - `iomap_dio_complete(struct iomap_dio *dio)`: `dio->iocb` at entry, the
//!   return value at return (paired per thread);
//! - `vfs_fallocate(struct file *, int mode, loff_t offset, loff_t len)`:
//!   punch hole when `mode & FALLOC_FL_PUNCH_HOLE`, ends at its return;
//! - `truncate_pagecache(struct inode *, loff_t newsize)`: truncate_begin
//!   with the new size, truncate_end at its return (`ret` 0: it is void).

use aya_ebpf::{
    macros::{kprobe, kretprobe, map},
    maps::HashMap,
    programs::{ProbeContext, RetProbeContext},
};
use rl_common::{FLAG_WRITE, Kind};

use crate::file::{DIO_INFLIGHT, PUNCHING, TRUNCATING, file_inode, inode_dev_ino, kread};
use crate::{KOFF, current, emit, emit_detached, global, traced_file, traced_task};

/// `FALLOC_FL_PUNCH_HOLE` (include/uapi/linux/falloc.h; a stable ABI value).
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;

/// `iomap_dio_complete` calls in progress: thread id -> kiocb.
#[map]
static DIO_COMPLETING: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);

/// kprobe `filemap_fault(struct vm_fault *vmf)`.
#[kprobe]
pub fn kfault(ctx: ProbeContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let vmf: u64 = ctx.arg(0).unwrap_or(0);
    let vma: u64 = kread(vmf, global!(KOFF.vmf_vma));
    let file: u64 = if vma != 0 {
        kread(vma, global!(KOFF.vma_file))
    } else {
        0
    };
    let inode = file_inode(file);
    if inode == 0 {
        return 0;
    }
    let (dev, ino) = inode_dev_ino(inode);
    if !traced_file(dev, ino) {
        return 0;
    }
    let index: u64 = kread(vmf, global!(KOFF.vmf_pgoff));
    // As the fault tracepoint's program does: the file first.
    crate::flock::learn_file(t, inode);
    emit(t, Kind::Fault, 0, dev, [ino, index, 0, 0]);
    0
}

/// kprobe `iomap_dio_rw(iocb, iter, ...)`: a DIO is submitted.
#[kprobe]
pub fn kdio_begin(ctx: ProbeContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let iocb: u64 = ctx.arg(0).unwrap_or(0);
    let iter: u64 = ctx.arg(1).unwrap_or(0);
    let file: u64 = kread(iocb, global!(KOFF.kiocb_filp));
    let inode = file_inode(file);
    if inode == 0 {
        return 0;
    }
    let (dev, ino) = inode_dev_ino(inode);
    if !traced_file(dev, ino) {
        return 0;
    }
    let pos: u64 = kread(iocb, global!(KOFF.kiocb_pos));
    let len: u64 = kread(iter, global!(KOFF.iter_count));
    let write: u8 = kread(iter, global!(KOFF.iter_data_source));
    // A full map only loses this DIO's end (counted as an unmatched begin).
    let _ = DIO_INFLIGHT.insert(&iocb, &1, 0);
    emit(
        t,
        Kind::DioBegin,
        if write != 0 { FLAG_WRITE } else { 0 },
        dev,
        [iocb, ino, pos, len],
    );
    0
}

/// kprobe `iomap_dio_complete(struct iomap_dio *dio)`: remembers the kiocb
/// of a DIO we saw begin, for the return.
#[kprobe]
pub fn kdio_complete(ctx: ProbeContext) -> u32 {
    let dio: u64 = ctx.arg(0).unwrap_or(0);
    let iocb: u64 = kread(dio, global!(KOFF.dio_iocb));
    // SAFETY: presence test only.
    if unsafe { DIO_INFLIGHT.get(&iocb) }.is_none() {
        return 0;
    }
    let _ = DIO_COMPLETING.insert(&current().tid, &iocb, 0);
    0
}

/// kretprobe `iomap_dio_complete`: the DIO's end, with its result. May run
/// in a kworker (async DIO): the event is not the current task's.
#[kretprobe]
pub fn kdio_complete_ret(ctx: RetProbeContext) -> u32 {
    let tid = current().tid;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(&iocb) = (unsafe { DIO_COMPLETING.get(&tid) }) else {
        return 0;
    };
    let _ = DIO_COMPLETING.remove(&tid);
    let _ = DIO_INFLIGHT.remove(&iocb);
    let ret: i64 = ctx.ret();
    emit_detached(Kind::DioEnd, 0, [iocb, ret as u64, 0, 0]);
    0
}

/// kprobe `vfs_fallocate(file, mode, offset, len)`: a punch hole begins.
#[kprobe]
pub fn kpunch(ctx: ProbeContext) -> u32 {
    let mode: u64 = ctx.arg(1).unwrap_or(0);
    if mode & FALLOC_FL_PUNCH_HOLE == 0 {
        return 0;
    }
    let Some(t) = traced_task() else { return 0 };
    let file: u64 = ctx.arg(0).unwrap_or(0);
    let inode = file_inode(file);
    if inode == 0 {
        return 0;
    }
    let (dev, ino) = inode_dev_ino(inode);
    if !traced_file(dev, ino) {
        return 0;
    }
    let pos: u64 = ctx.arg(2).unwrap_or(0);
    let len: u64 = ctx.arg(3).unwrap_or(0);
    let _ = PUNCHING.insert(&t.tid, &1, 0);
    emit(t, Kind::PunchBegin, 0, dev, [ino, pos, len, 0]);
    0
}

/// kretprobe `vfs_fallocate`: ends a punch begun by this task.
#[kretprobe]
pub fn kpunch_ret(ctx: RetProbeContext) -> u32 {
    let t = current();
    // SAFETY: presence test only.
    if unsafe { PUNCHING.get(&t.tid) }.is_none() {
        return 0;
    }
    let _ = PUNCHING.remove(&t.tid);
    let ret: i64 = ctx.ret();
    emit(t, Kind::PunchEnd, 0, 0, [ret as u64, 0, 0, 0]);
    0
}

/// kprobe `truncate_pagecache(inode, newsize)`: the page cache is cut to
/// the new size (truncate, or an extension's zeroing of the last page).
#[kprobe]
pub fn ktruncate(ctx: ProbeContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let inode: u64 = ctx.arg(0).unwrap_or(0);
    let (dev, ino) = inode_dev_ino(inode);
    if !traced_file(dev, ino) {
        return 0;
    }
    let size: u64 = ctx.arg(1).unwrap_or(0);
    let _ = TRUNCATING.insert(&t.tid, &1, 0);
    emit(t, Kind::TruncateBegin, 0, dev, [ino, size, 0, 0]);
    0
}

/// kretprobe `truncate_pagecache` (void: `ret` is 0).
#[kretprobe]
pub fn ktruncate_ret(_ctx: RetProbeContext) -> u32 {
    let t = current();
    // SAFETY: presence test only.
    if unsafe { TRUNCATING.get(&t.tid) }.is_none() {
        return 0;
    }
    let _ = TRUNCATING.remove(&t.tid);
    emit(t, Kind::TruncateEnd, 0, 0, [0; 4]);
    0
}
