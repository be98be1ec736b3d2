//! File operations: direct IO, punch hole, truncate.
//!
//! DIO uses raw tracepoints (the begin BTF-typed), whose arguments are the
//! C arguments of the tracepoint: `iomap_dio_rw_begin(struct kiocb *, struct iov_iter *, ...)`
//! and `iomap_dio_complete(struct kiocb *, int error, ssize_t ret)`. The
//! kiocb address pairs a DIO's begin with its end even when it completes in
//! irq or kworker context, and is the event's `io`. The file identity is read
//! through `kiocb->ki_filp->f_inode` with member offsets from BTF (`KOFF`).
//!
//! `iomap_dio_rw_begin` fires before `__iomap_dio_rw`'s early exits, which
//! return without `iomap_dio_complete`: they end when `fsops.rs` sees
//! their task go on (see `dio_begun`).
//! Punch, zero, collapse, insert and truncate are in `fsops.rs`; the maps
//! `PUNCHING` and `TRUNCATING` serve the kprobe stand-ins (`kfile.rs`).

use aya_ebpf::{
    helpers::generated,
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{HashMap, LruHashMap},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use rl_common::{FLAG_WRITE, Kind};

use crate::fsops::{Out, dio_begun};
use crate::{KOFF, emit_detached, global, traced_file, traced_task};

/// DIOs in flight, by kiocb address. LRU so that a begin whose end never
/// fires (an error path without a completion) cannot fill it.
#[map]
pub(crate) static DIO_INFLIGHT: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// Tasks inside `vfs_fallocate` (the kprobe stand-in of `kfile.rs`).
#[map]
pub(crate) static PUNCHING: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// Tasks inside `truncate_pagecache` (likewise).
#[map]
pub(crate) static TRUNCATING: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// Reads a `T` at `base + off` in kernel memory; 0 when unreadable.
///
/// Branch-free: the helper zeroes its destination when the read faults, so
/// its return code is not tested. A branch per read doubles the paths the
/// verifier walks on older kernels (6.1 verified a DIO program at 89k
/// instructions with one branch per read, 1.2k on 6.18).
#[inline(always)]
pub(crate) fn kread<T: Default>(base: u64, off: u32) -> T {
    let mut v = T::default();
    // SAFETY: `v` is a valid, writable `T` on the stack; the helper checks
    // the kernel address and zeroes `v` when it cannot read it.
    unsafe {
        generated::bpf_probe_read_kernel(
            (&raw mut v).cast(),
            core::mem::size_of::<T>() as u32,
            (base + off as u64) as *const core::ffi::c_void,
        )
    };
    v
}

/// An 8-byte member at `off` of a BTF-typed kernel pointer. Assembly, so
/// the load stays one instruction on `ptr + off` (a constant to the
/// verifier: `off` is a frozen global), which the verifier checks against
/// the pointer's BTF type and marks as a kernel read that reads 0 where
/// the pointer is bad (it never faults).
#[inline(always)]
pub(crate) fn btf_u64(ptr: u64, off: u32) -> u64 {
    // SAFETY: see above: a verifier-checked BTF load.
    unsafe {
        let v: u64;
        core::arch::asm!("{v} = *(u64 *)({p} + 0)", v = out(reg) v, p = in(reg) ptr.wrapping_add(off as u64), options(readonly, nostack, preserves_flags));
        v
    }
}

/// A 4-byte member, as [`btf_u64`].
#[inline(always)]
pub(crate) fn btf_u32(ptr: u64, off: u32) -> u32 {
    // SAFETY: as in `btf_u64`.
    unsafe {
        let v: u64;
        core::arch::asm!("{v} = *(u32 *)({p} + 0)", v = out(reg) v, p = in(reg) ptr.wrapping_add(off as u64), options(readonly, nostack, preserves_flags));
        v as u32
    }
}

/// A 1-byte member, as [`btf_u64`].
#[inline(always)]
pub(crate) fn btf_u8(ptr: u64, off: u32) -> u8 {
    // SAFETY: as in `btf_u64`.
    unsafe {
        let v: u64;
        core::arch::asm!("{v} = *(u8 *)({p} + 0)", v = out(reg) v, p = in(reg) ptr.wrapping_add(off as u64), options(readonly, nostack, preserves_flags));
        v as u8
    }
}

/// `file->f_inode`, or 0 for no file.
#[inline(always)]
pub(crate) fn file_inode(file: u64) -> u64 {
    if file != 0 {
        kread(file, global!(KOFF.file_inode))
    } else {
        0
    }
}

/// (dev, ino) of an inode: `i_sb->s_dev`, `i_ino`.
#[inline(always)]
pub(crate) fn inode_dev_ino(inode: u64) -> (u32, u64) {
    let ino: u64 = kread(inode, global!(KOFF.inode_ino));
    let sb: u64 = kread(inode, global!(KOFF.inode_sb));
    let dev: u32 = if sb != 0 {
        kread(sb, global!(KOFF.sb_dev))
    } else {
        0
    };
    (dev, ino)
}

/// `iomap_dio_rw_begin(iocb, iter, dio_flags, done_before)`, BTF-typed
/// (`tp_btf`): the DIO's file, position, length and direction are plain
/// loads the verifier checks against BTF (ten `bpf_probe_read_kernel`
/// calls took most of this program's time).
#[btf_tracepoint(function = "iomap_dio_rw_begin")]
pub fn dio_begin(ctx: BtfTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let iocb: u64 = ctx.arg(0);
    let iter: u64 = ctx.arg(1);
    let file = btf_u64(iocb, global!(KOFF.kiocb_filp));
    let inode = btf_u64(file, global!(KOFF.file_inode));
    let ino = btf_u64(inode, global!(KOFF.inode_ino));
    let sb = btf_u64(inode, global!(KOFF.inode_sb));
    let dev = btf_u32(sb, global!(KOFF.sb_dev));
    if inode == 0 || !traced_file(dev, ino) {
        return 0;
    }
    let pos = btf_u64(iocb, global!(KOFF.kiocb_pos));
    let len = btf_u64(iter, global!(KOFF.iter_count));
    let write = btf_u8(iter, global!(KOFF.iter_data_source));
    let flags = if write != 0 { FLAG_WRITE } else { 0 };
    let kflags = crate::fsops::kiocb_flags(|off| btf_u32(iocb, off));
    let Some(mut out) = Out::new() else { return 0 };
    // A DIO of this task still waiting exited early: its end first. This
    // one waits in turn for its completion, its queueing, or its task to
    // go on (a zero-length one returns at once, without completion).
    dio_begun(&mut out, t, iocb, kflags);
    // An LRU map makes room by itself: the insert fails only without
    // memory, and then the begin is not emitted (its end would not be).
    if DIO_INFLIGHT.insert(&iocb, &1, 0).is_ok() {
        out.push(t, Kind::DioBegin, flags, dev, [iocb, ino, pos, len]);
    }
    out.send(t);
    0
}

/// raw `iomap_dio_complete(iocb, error, ret)`: only for DIOs whose begin we kept.
#[raw_tracepoint(tracepoint = "iomap_dio_complete")]
pub fn dio_complete(ctx: RawTracePointContext) -> i32 {
    let iocb: u64 = ctx.arg(0);
    // SAFETY: presence test only.
    if unsafe { DIO_INFLIGHT.get(&iocb) }.is_none() {
        return 0;
    }
    crate::fsops::dio_completed(iocb);
    let _ = DIO_INFLIGHT.remove(&iocb);
    let error = ctx.arg::<u64>(1) as i32;
    let ret = ctx.arg::<u64>(2) as i64;
    let ret = if error != 0 { error as i64 } else { ret };
    emit_detached(Kind::DioEnd, 0, [iocb, ret as u64, 0, 0]);
    0
}
