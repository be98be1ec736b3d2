//! The page-cache locks of mainline kernels (issue 14): each traced file's
//! `inode->i_rwsem` and `mapping->invalidate_lock` (both rw_semaphores),
//! learned, named and followed.
//!
//! - **Learning.** Raw tracepoints that already see a file's inode or
//!   mapping (`mm_filemap_fault(mapping, index)`, whose recording program
//!   learns too, `mm_filemap_add_to_page_cache(folio)`,
//!   `iomap_dio_rw_begin(iocb, ..)`)
//!   compute the addresses of its two locks, keep them in `LOCKS` (address
//!   -> file and class) and emit one `file` record per inode: the addresses,
//!   the filesystem type name and the path, read once from the dentry tree.
//!   A per-CPU cache of the last inode learned keeps repeated events on one
//!   file to an array look-up.
//! - **Lock sources**, one per kernel, chosen by user space, which attaches
//!   only that source's programs:
//!   fentry/fexit or kprobes/kretprobes on the rwsem entry points, filtered
//!   first thing by one `LOCKS` look-up of the semaphore (an unrelated rwsem
//!   costs that look-up and nothing else); XFS's `xfs_ilock` tracepoints
//!   (IOLOCK is `i_rwsem`, MMAPLOCK is `invalidate_lock`); lockdep's
//!   `lock:lock_acquire`/`lock_release`.
//! - **Page faults under a lock ranked below mmap_lock.** `INV_HELD` counts
//!   the invalidate_locks each task holds (from the source); the
//!   `exceptions:page_fault_*` programs emit a `page_fault` when the task
//!   holds one (or a range lock, `RL_HELD`) and page faults are enabled.
//! - **Contention callers.** [`caller`]: the first frame outside the kernel's
//!   lock and sched text of a short stack, for `contention_begin`.
//!
//! Layouts: every struct member offset comes from BTF and every tracefs
//! field offset from its format file, read by user space at start-up into
//! the read-only global `FL` (rustc cannot emit CO-RE relocations). Kernel
//! memory is read with `bpf_probe_read_kernel` (`file::kread`): a bad
//! pointer reads as 0, never faults.

use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{self, bpf_get_current_task_btf},
    macros::{fentry, fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::tracing::StackIdContext,
    programs::{
        FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};
use rl_common::{
    FLAG_SUCCESS, FLAG_TRY, FLAG_TRY_KNOWN, FLAG_USER, FLAG_WRITE, FileLockLayout, FileRecord,
    Kind, LOCK_MODE_NONE, LOCK_MODE_READ, LOCK_MODE_WRITE, LOCK_OP_DEMOTE, LOCK_OP_LOCK,
    LOCK_OP_TRYLOCK, LOCK_OP_TRYLOCK_OK, LOCK_OP_UNLOCK, LockClass, NAME_BYTES, NO_FIELD,
    PATH_COMPLETE, PATH_CUT, PATH_DEPTH,
};

use crate::file::kread;
use crate::fsops::FSOPS;
use crate::rangelock::{RL, RL_HELD, STACKS};
use crate::{
    EVENTS, Task, TpRecord, count_drops, current, emit, global, header, submit_flags, traced_file,
    traced_task,
};

/// Offsets, switches and flag bits (set by the loader).
#[unsafe(no_mangle)]
static FL: FileLockLayout = FileLockLayout::NONE;

/// A learned lock: the file it belongs to and its class.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Learned {
    inode: u64,
    ino: u64,
    dev: u32,
    class: u32,
}

/// Lock address -> its file. LRU: the least recently used file is
/// forgotten first, and relearned (another `file` event) at its next
/// event. Two entries per file.
#[map]
static LOCKS: LruHashMap<u64, Learned> = LruHashMap::with_max_entries(65536, 0);

/// Inodes whose `file` event had no path yet (no dentry): tried again,
/// at most this many times, at later events.
#[map]
static NO_PATH: LruHashMap<u64, u32> = LruHashMap::with_max_entries(4096, 0);
const PATH_RETRIES: u32 = 4;

/// Per CPU, the last inode learned: the next event on the same file (the
/// common case) costs an array look-up instead of a hash look-up.
#[map]
static LAST_INODE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, the mapping of the last inode learned through a mapping (page
/// faults, page-cache adds): the next event on it returns at once, before
/// any helper call.
#[map]
static LAST_MAPPING: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Learns the inode of `mapping` (`mapping->host`) unless this CPU's last
/// one was it.
#[inline(always)]
fn learn_mapping(mapping: u64) {
    if last_mapping_is(mapping) {
        return;
    }
    let Some(t) = traced_task() else { return };
    learned_mapping(
        mapping,
        learn_inode(t, kread(mapping, global!(FL.mapping_host))),
    );
}

/// [`learn_mapping`] for a program that has read `host` already (the
/// fault's).
#[inline(always)]
pub(crate) fn learn_host(t: Task, mapping: u64, host: u64) {
    if !last_mapping_is(mapping) {
        learned_mapping(mapping, learn_inode(t, host));
    }
}

/// Learns `inode`'s locks (programs that have the inode, not a mapping).
#[inline(always)]
pub(crate) fn learn_file(t: Task, inode: u64) {
    learn_inode(t, inode);
}

#[inline(always)]
fn last_mapping_is(mapping: u64) -> bool {
    // SAFETY: this CPU's slot, valid for the program's run.
    LAST_MAPPING
        .get_ptr_mut(0)
        .is_some_and(|p| unsafe { *p } == mapping)
}

/// Caches `mapping` as this CPU's last one once it needs nothing more.
#[inline(always)]
fn learned_mapping(mapping: u64, done: bool) {
    if done && let Some(p) = LAST_MAPPING.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, valid for the program's run.
        unsafe { *p = mapping };
    }
}

/// invalidate_locks held per task, as the lock source saw them. Losing an
/// entry or an acquisition can only hide a fault under the lock, never
/// invent one: a release never takes the count below zero.
#[map]
static INV_HELD: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Sum of `INV_HELD`: when nobody holds an invalidate_lock (nearly always),
/// a page fault costs one array look-up.
#[map]
static INV_HELD_TOTAL: Array<u64> = Array::with_max_entries(1, 0);

/// kprobe source: the lock call each task is in, for its return probe:
/// the semaphore and the stack pointer at entry. A return whose stack
/// pointer is not the entry's plus the popped return address belongs to
/// another call (this call's return was missed: `nmissed`, see user space).
#[map]
static LOCK_PENDING: HashMap<u32, [u64; 2]> = HashMap::with_max_entries(8192, 0);

/// lockdep source: whether each (lock, task) hold was a write, for the
/// release (lockdep's release event does not say).
#[map]
static LOCKDEP_MODE: LruHashMap<[u64; 2], u8> = LruHashMap::with_max_entries(16384, 0);

/// Scratch for the short stacks of `caller`.
#[map]
static CALLER_STACK: PerCpuArray<[u64; CALLER_FRAMES]> = PerCpuArray::with_max_entries(1, 0);
const CALLER_FRAMES: usize = 8;

// ---------------------------------------------------------------- learning

/// Learns `inode`'s locks if it is not known yet, and emits its `file`
/// event. Returns whether nothing more is to be done for it: known with its
/// path, or a file `--dev`/`--ino` leave out (the caller then caches it).
#[inline(always)]
fn learn_inode(t: Task, inode: u64) -> bool {
    if inode == 0 || global!(FL.learn) == 0 {
        return false;
    }
    let last = LAST_INODE.get_ptr_mut(0);
    if let Some(p) = last {
        // SAFETY: this CPU's slot, valid for the program's run.
        if unsafe { *p } == inode {
            return true;
        }
    }
    let rwsem = inode.wrapping_add(global!(FL.inode_rwsem) as u64);
    let ino: u64 = kread(inode, global!(FL.inode_ino));
    // SAFETY: the value is copied out at once.
    let known = unsafe { LOCKS.get(&rwsem) }.is_some_and(|l| l.inode == inode && l.ino == ino);
    // SAFETY: presence test only.
    if known && unsafe { NO_PATH.get(&inode) }.is_none() {
        if let Some(p) = last {
            // SAFETY: as above.
            unsafe { *p = inode };
        }
        return true;
    }
    let sb: u64 = kread(inode, global!(FL.inode_sb));
    let dev: u32 = kread(sb, global!(FL.sb_dev));
    if !traced_file(dev, ino) {
        return true;
    }
    let mapping: u64 = kread(inode, global!(FL.inode_mapping));
    let inv = if mapping != 0 {
        mapping.wrapping_add(global!(FL.mapping_invalidate_lock) as u64)
    } else {
        0
    };
    let mut l = Learned {
        inode,
        ino,
        dev,
        class: LockClass::IRwsem as u32,
    };
    let _ = LOCKS.insert(&rwsem, &l, 0);
    if inv != 0 {
        l.class = LockClass::InvalidateLock as u32;
        let _ = LOCKS.insert(&inv, &l, 0);
    }
    let has_path = emit_file(&FileArgs {
        t,
        inode,
        sb,
        dev,
        ino,
        rwsem,
        inv,
    });
    if has_path {
        let _ = NO_PATH.remove(&inode);
    } else {
        // SAFETY: the value is copied out at once.
        let tries = unsafe { NO_PATH.get(&inode) }.copied().unwrap_or(0);
        if tries + 1 >= PATH_RETRIES {
            let _ = NO_PATH.remove(&inode);
        } else {
            let _ = NO_PATH.insert(&inode, &(tries + 1), 0);
        }
    }
    if has_path && let Some(p) = last {
        // SAFETY: as above.
        unsafe { *p = inode };
    }
    has_path
}

/// What [`emit_file`] writes (one argument: a BPF subprogram takes at
/// most five, in registers).
#[derive(Clone, Copy)]
struct FileArgs {
    t: Task,
    inode: u64,
    sb: u64,
    dev: u32,
    ino: u64,
    rwsem: u64,
    inv: u64,
}

/// Per CPU, the `file` record being built, and whether a program on this
/// CPU is building one (a nested program then skips learning: it is tried
/// again at the file's next event).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FileScratch {
    busy: u64,
    rec: FileRecord,
}

#[map]
static FILE_SCRATCH: PerCpuArray<FileScratch> = PerCpuArray::with_max_entries(1, 0);

/// The path walk's state, passed to each `bpf_loop` step.
#[repr(C)]
struct Walk {
    dentry: u64,
    depth: u32,
    flags: u32,
}

/// One level of the path walk (a `bpf_loop` callback, verified once for
/// all levels): the name of `dentry` into slot `i`, then up to its parent.
/// Returns 1 to stop.
extern "C" fn walk_step(i: u32, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Walk` on the caller's stack that `bpf_loop`
    // passes to every step.
    let w = unsafe { &mut *ctx.cast::<Walk>() };
    let Some(sc) = FILE_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let d = w.dentry;
    if d == 0 {
        return 1;
    }
    let parent: u64 = kread(d, global!(FL.dentry_parent));
    if parent == d || parent == 0 {
        // The filesystem's root: its own name ("/") is not a component.
        w.flags |= PATH_COMPLETE;
        return 1;
    }
    let name: u64 = kread(d, global!(FL.dentry_name));
    let slot = (i as usize) & (PATH_DEPTH - 1);
    // SAFETY: this CPU's scratch (owned: `busy` is set); `slot` <
    // PATH_DEPTH, and the helper writes at most NAME_BYTES into it.
    let n = unsafe {
        generated::bpf_probe_read_kernel_str(
            (*sc).rec.path[slot].as_mut_ptr().cast(),
            NAME_BYTES as u32,
            name as *const core::ffi::c_void,
        )
    };
    if n <= 0 {
        w.flags |= PATH_CUT;
        return 1;
    }
    if n as usize >= NAME_BYTES {
        // Possibly cut at NAME_BYTES - 1 bytes.
        w.flags |= PATH_CUT;
    }
    w.depth = slot as u32 + 1;
    w.dentry = parent;
    0
}

/// Writes the `file` record of an inode: its filesystem type name
/// (`i_sb->s_type->name`) and its path, components from the file up to the
/// filesystem's root (`d_name.name`, following `d_parent` from the first
/// alias in `inode->i_dentry`), one level per `bpf_loop` step. Not inlined
/// (a BPF subprogram): the learners' fast path stays small. Returns
/// whether a path was found.
#[inline(never)]
fn emit_file(a: &FileArgs) -> bool {
    let Some(sc) = FILE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch, valid for the program's run.
    unsafe {
        if (*sc).busy != 0 {
            return false;
        }
        (*sc).busy = 1;
    }
    let stype: u64 = kread(a.sb, global!(FL.sb_type));
    let fs_name: u64 = kread(stype, global!(FL.fstype_name));
    // The first alias: `i_dentry.first` points at a dentry's `d_alias`.
    let first: u64 = kread(a.inode, global!(FL.inode_dentry));
    let mut w = Walk {
        dentry: if first != 0 {
            first.wrapping_sub(global!(FL.dentry_alias) as u64)
        } else {
            0
        },
        depth: 0,
        flags: 0,
    };
    // SAFETY: the scratch is ours (`busy`); the helper writes at most 16
    // bytes into `fs`.
    unsafe {
        let r = &mut (*sc).rec;
        r.hdr = header(a.t, Kind::File, 0, a.dev);
        r.ino = a.ino;
        r.i_rwsem = a.rwsem;
        r.invalidate_lock = a.inv;
        r.fs = [0; 16];
        if fs_name != 0 {
            generated::bpf_probe_read_kernel_str(
                r.fs.as_mut_ptr().cast(),
                16,
                fs_name as *const core::ffi::c_void,
            );
        }
        generated::bpf_loop(
            PATH_DEPTH as u32,
            walk_step as *const () as *mut core::ffi::c_void,
            (&raw mut w).cast(),
            0,
        );
        r.depth = w.depth;
        r.path_flags = w.flags;
    }
    // SAFETY: as above; the record is complete.
    let ok = EVENTS
        .output::<FileRecord>(unsafe { &(*sc).rec }, submit_flags())
        .is_ok();
    if !ok {
        count_drops(1);
    }
    // SAFETY: as above.
    unsafe { (*sc).busy = 0 };
    ok && w.depth != 0
}

/// raw `mm_filemap_add_to_page_cache(struct folio *folio)`.
#[raw_tracepoint(tracepoint = "mm_filemap_add_to_page_cache")]
pub fn learn_page_add(ctx: RawTracePointContext) -> i32 {
    let folio: u64 = ctx.arg(0);
    let mapping: u64 = kread(folio, global!(FL.folio_mapping));
    // Anonymous and movable folios tag the low bits of `mapping`
    // (PAGE_MAPPING_ANON, include/linux/page-flags.h); page-cache folios
    // of files never do.
    if mapping & 3 != 0 {
        return 0;
    }
    learn_mapping(mapping);
    0
}

/// raw `iomap_dio_rw_begin(struct kiocb *iocb, ...)`: files only read and
/// written with O_DIRECT have no page-cache events.
#[raw_tracepoint(tracepoint = "iomap_dio_rw_begin")]
pub fn learn_dio(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let iocb: u64 = ctx.arg(0);
    let file: u64 = kread(iocb, global!(FL.kiocb_filp));
    learn_inode(t, kread(file, global!(FL.file_inode)));
    0
}

/// raw ext4 operation tracepoints whose first argument is the file's
/// `struct inode *` (`ext4_punch_hole`, `ext4_zero_range`,
/// `ext4_collapse_range`, `ext4_insert_range`, `ext4_truncate_enter`): a
/// file only punched or truncated has no page-cache event to learn it
/// from. A program of its own, not a call in the operation probes, which
/// are near the instruction budget already.
#[raw_tracepoint]
pub fn learn_ext4(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    learn_inode(t, ctx.arg(0));
    0
}

/// raw XFS operation tracepoints of `struct xfs_inode *ip`
/// (`xfs_free_file_space`, `_zero_`, `_collapse_`, `_insert_`,
/// `xfs_setattr`): as [`learn_ext4`], the VFS inode being
/// `ip->i_vnode` (BTF, `FSOPS.xfs_vnode`).
#[raw_tracepoint]
pub fn learn_xfs(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let ip: u64 = ctx.arg(0);
    let vnode = global!(FSOPS.xfs_vnode);
    if ip != 0 && vnode != NO_FIELD {
        learn_inode(t, ip + vnode as u64);
    }
    0
}

// ------------------------------------------------------------ lock events

/// The learned file of a lock address, if it is one (and the inode there
/// is still the one learned: inode memory is reused once the inode is
/// freed, and a reused address must not be named after the old file).
#[inline(always)]
fn lookup(sem: u64) -> Option<Learned> {
    // SAFETY: the value is copied out at once.
    let l = *unsafe { LOCKS.get(&sem) }?;
    let ino: u64 = kread(l.inode, global!(FL.inode_ino));
    if ino != l.ino {
        let _ = LOCKS.remove(&sem);
        return None;
    }
    Some(l)
}

/// Writes a `file_lock_*` record for `l`.
#[inline(always)]
fn lock_event(t: Task, kind: Kind, l: &Learned, flags: u8) {
    emit(t, kind, flags, l.dev, [l.ino, l.class as u64, 0, 0]);
}

/// Adds `delta` (+1/-1) to the task's held invalidate_locks and the total.
#[inline(always)]
fn inv_held(tid: u32, delta: i64) {
    let total = INV_HELD_TOTAL.get_ptr_mut(0);
    match INV_HELD.get_ptr_mut(&tid) {
        Some(p) => {
            // SAFETY: a valid map value for the program's run; only the
            // task itself changes its own count (rwsems are released by
            // their owner), so a plain read-modify-write is enough.
            let now = unsafe { core::ptr::read_volatile(p) };
            let d = if delta > 0 {
                1
            } else if now > 0 {
                -1
            } else {
                return;
            };
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(p, now.wrapping_add(d as u64)) };
            add_total(total, d);
        }
        None if delta > 0 && INV_HELD.insert(&tid, &1, 0).is_ok() => add_total(total, 1),
        None => {}
    }
}

#[inline(always)]
fn add_total(total: Option<*mut u64>, d: i64) {
    if let Some(p) = total {
        // SAFETY: an atomic add (BPF_ATOMIC | BPF_ADD) on the array slot:
        // tasks on every CPU update it. The BPF target has no atomic
        // read-modify-write in `core`, hence the assembly.
        unsafe {
            core::arch::asm!("lock *(u64 *)({p} + 0) += {d}", p = in(reg) p, d = in(reg) d, options(nostack, preserves_flags));
        }
    }
}

/// A lock request of the current task on `sem` (rwsem sources). A write
/// request of an invalidate_lock (punch, truncate: rare) carries its kernel
/// stack, the "acquired at" of a lockdep-style report; the other requests
/// are too frequent to walk the stack for.
#[inline(always)]
fn request<C: StackIdContext>(
    ctx: &C,
    sem: u64,
    write: bool,
    trylock: bool,
) -> Option<(Task, Learned)> {
    let l = lookup(sem)?;
    let t = traced_task()?;
    let mut flags = FLAG_TRY_KNOWN;
    if write {
        flags |= FLAG_WRITE;
    }
    if trylock {
        flags |= FLAG_TRY;
    }
    // The stack id plus one; 0 for none.
    let stack = if write && !trylock && l.class == LockClass::InvalidateLock as u32 {
        ctx.get_stackid(&STACKS, 0).map_or(0, |id| id as u64 + 1)
    } else {
        0
    };
    emit(
        t,
        Kind::FileLockRequest,
        flags,
        l.dev,
        [l.ino, l.class as u64, stack, 0],
    );
    Some((t, l))
}

/// The request on `sem` returned; `ok`: the task holds the lock.
#[inline(always)]
fn acquired(t: Task, l: &Learned, write: bool, ok: bool) {
    let mut flags = if write { FLAG_WRITE } else { 0 };
    if ok {
        flags |= FLAG_SUCCESS;
        if l.class == LockClass::InvalidateLock as u32 {
            inv_held(t.tid, 1);
        }
    }
    lock_event(t, Kind::FileLockAcquired, l, flags);
}

/// A release of `sem` by the current task.
#[inline(always)]
fn release(sem: u64, write: bool) {
    let Some(l) = lookup(sem) else { return };
    let t = current();
    if l.class == LockClass::InvalidateLock as u32 {
        inv_held(t.tid, -1);
    }
    if traced_task().is_none() {
        return;
    }
    lock_event(
        t,
        Kind::FileLockRelease,
        &l,
        if write { FLAG_WRITE } else { 0 },
    );
}

/// Writes a `FileLockOps` record: `op` on the locks of `l`'s file with a
/// mode (user space expands it into its events, in the kernel's order).
#[inline(always)]
fn ops(t: Task, dev: u32, ino: u64, op: u64, io: u64, inv: u64) {
    emit(t, Kind::FileLockOps, 0, dev, [ino, op, io, inv]);
}

/// Modes of a `FileLockOps` record for one lock of class `l.class`.
#[inline(always)]
fn modes(l: &Learned, mode: u64) -> (u64, u64) {
    if l.class == LockClass::InvalidateLock as u32 {
        (LOCK_MODE_NONE, mode)
    } else {
        (mode, LOCK_MODE_NONE)
    }
}

/// `downgrade_write(sem)`: the write hold becomes a read hold at once.
#[inline(always)]
fn downgrade(sem: u64) {
    let Some(l) = lookup(sem) else { return };
    let Some(t) = traced_task() else { return };
    let (io, inv) = modes(&l, LOCK_MODE_WRITE);
    ops(t, l.dev, l.ino, LOCK_OP_DEMOTE, io, inv);
}

// fentry/fexit: one program per function (a tracing program is bound to
// its target's BTF id at load). The exit sees the argument again and the
// return value, so nothing is kept between the two.

macro_rules! fentry_lock {
    ($entry:ident, $exit:ident, $func:literal, $write:expr, $try:expr, $how:ident) => {
        #[fentry(function = $func)]
        pub fn $entry(ctx: FEntryContext) -> u32 {
            let sem: u64 = ctx.arg(0);
            let _ = request(&ctx, sem, $write, $try);
            0
        }

        #[fexit(function = $func)]
        pub fn $exit(ctx: FExitContext) -> u32 {
            let sem: u64 = ctx.arg(0);
            if let Some(l) = lookup(sem)
                && let Some(t) = traced_task()
            {
                acquired(t, &l, $write, fexit_ok(&ctx, Ret::$how));
            }
            0
        }
    };
}

/// How a lock function's return value says it holds the lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ret {
    /// `void`: it returns holding it.
    Void,
    /// `int` 0 or `-EINTR` (killable, interruptible).
    Errno,
    /// `int` 1 = acquired, 0 = not (trylock).
    Try,
}

#[inline(always)]
fn returned_ok(how: Ret, rc: i64) -> bool {
    match how {
        Ret::Void => true,
        Ret::Errno => rc as i32 == 0,
        Ret::Try => rc as i32 != 0,
    }
}

/// Whether the function an fexit program ran after returned holding the
/// lock. An unreadable return value (`bpf_get_func_ret` fails) counts as
/// not holding it: a hold is never invented.
#[inline(always)]
fn fexit_ok(ctx: &FExitContext, how: Ret) -> bool {
    match how {
        Ret::Void => true,
        _ => ctx.ret::<i64>().is_ok_and(|rc| returned_ok(how, rc)),
    }
}

fentry_lock!(fe_down_read, fx_down_read, "down_read", false, false, Void);
fentry_lock!(
    fe_down_read_killable,
    fx_down_read_killable,
    "down_read_killable",
    false,
    false,
    Errno
);
fentry_lock!(
    fe_down_read_interruptible,
    fx_down_read_interruptible,
    "down_read_interruptible",
    false,
    false,
    Errno
);
fentry_lock!(
    fe_down_read_trylock,
    fx_down_read_trylock,
    "down_read_trylock",
    false,
    true,
    Try
);
fentry_lock!(
    fe_down_write,
    fx_down_write,
    "down_write",
    true,
    false,
    Void
);
fentry_lock!(
    fe_down_write_killable,
    fx_down_write_killable,
    "down_write_killable",
    true,
    false,
    Errno
);
fentry_lock!(
    fe_down_write_trylock,
    fx_down_write_trylock,
    "down_write_trylock",
    true,
    true,
    Try
);
// Real functions only with CONFIG_DEBUG_LOCK_ALLOC (macros otherwise).
fentry_lock!(
    fe_down_read_nested,
    fx_down_read_nested,
    "down_read_nested",
    false,
    false,
    Void
);
fentry_lock!(
    fe_down_read_killable_nested,
    fx_down_read_killable_nested,
    "down_read_killable_nested",
    false,
    false,
    Errno
);
fentry_lock!(
    fe_down_write_nested,
    fx_down_write_nested,
    "down_write_nested",
    true,
    false,
    Void
);
fentry_lock!(
    fe_down_write_killable_nested,
    fx_down_write_killable_nested,
    "down_write_killable_nested",
    true,
    false,
    Errno
);
fentry_lock!(
    fe_down_write_nest_lock,
    fx_down_write_nest_lock,
    "_down_write_nest_lock",
    true,
    false,
    Void
);

#[fentry(function = "up_read")]
pub fn fe_up_read(ctx: FEntryContext) -> u32 {
    release(ctx.arg(0), false);
    0
}

#[fentry(function = "up_write")]
pub fn fe_up_write(ctx: FEntryContext) -> u32 {
    release(ctx.arg(0), true);
    0
}

#[fentry(function = "downgrade_write")]
pub fn fe_downgrade_write(ctx: FEntryContext) -> u32 {
    downgrade(ctx.arg(0));
    0
}

// kprobes/kretprobes: one program per role, attached by user space to
// every function with that role. The return probe finds its semaphore in
// `LOCK_PENDING` (a task is inside one lock call at a time).

#[inline(always)]
fn kentry(ctx: &ProbeContext, write: bool, trylock: bool) {
    let sem: u64 = ctx.arg(0).unwrap_or(0);
    if let Some((t, _)) = request(ctx, sem, write, trylock) {
        let _ = LOCK_PENDING.insert(&t.tid, &[sem, stack_pointer(ctx.as_ptr())], 0);
    }
}

/// `regs->sp` of a kprobe or kretprobe context (x86-64 `struct pt_regs`,
/// a stable ABI: `sp` at byte 152).
#[inline(always)]
fn stack_pointer(regs: *mut core::ffi::c_void) -> u64 {
    // SAFETY: a load from the probe's pt_regs at a literal offset inside
    // it; the verifier checks it against the context's bounds.
    unsafe {
        let v: u64;
        core::arch::asm!("{v} = *(u64 *)({p} + 152)", v = out(reg) v, p = in(reg) regs, options(readonly, nostack, preserves_flags));
        v
    }
}

#[inline(always)]
fn kreturn(ctx: &RetProbeContext, write: bool, how: Ret) {
    let tid = current().tid;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(&[sem, sp]) = (unsafe { LOCK_PENDING.get(&tid) }) else {
        return;
    };
    let _ = LOCK_PENDING.remove(&tid);
    // At the entry `sp` pointed at the return address, which `ret` popped.
    if stack_pointer(ctx.as_ptr()) != sp.wrapping_add(8) {
        return;
    }
    let Some(l) = lookup(sem) else { return };
    let Some(t) = traced_task() else { return };
    let rc: i64 = ctx.ret();
    acquired(t, &l, write, returned_ok(how, rc));
}

#[kprobe]
pub fn kr_read(ctx: ProbeContext) -> u32 {
    kentry(&ctx, false, false);
    0
}

#[kprobe]
pub fn kr_read_try(ctx: ProbeContext) -> u32 {
    kentry(&ctx, false, true);
    0
}

#[kprobe]
pub fn kr_write(ctx: ProbeContext) -> u32 {
    kentry(&ctx, true, false);
    0
}

#[kprobe]
pub fn kr_write_try(ctx: ProbeContext) -> u32 {
    kentry(&ctx, true, true);
    0
}

#[kretprobe]
pub fn kr_read_ret_void(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, false, Ret::Void);
    0
}

#[kretprobe]
pub fn kr_read_ret_errno(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, false, Ret::Errno);
    0
}

#[kretprobe]
pub fn kr_read_ret_try(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, false, Ret::Try);
    0
}

#[kretprobe]
pub fn kr_write_ret_void(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, true, Ret::Void);
    0
}

#[kretprobe]
pub fn kr_write_ret_errno(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, true, Ret::Errno);
    0
}

#[kretprobe]
pub fn kr_write_ret_try(ctx: RetProbeContext) -> u32 {
    kreturn(&ctx, true, Ret::Try);
    0
}

#[kprobe]
pub fn kr_up_read(ctx: ProbeContext) -> u32 {
    release(ctx.arg(0).unwrap_or(0), false);
    0
}

#[kprobe]
pub fn kr_up_write(ctx: ProbeContext) -> u32 {
    release(ctx.arg(0).unwrap_or(0), true);
    0
}

#[kprobe]
pub fn kr_downgrade(ctx: ProbeContext) -> u32 {
    downgrade(ctx.arg(0).unwrap_or(0));
    0
}

// XFS: `xfs:xfs_ilock`, `xfs_ilock_nowait` fire at the entry of
// xfs_ilock()/xfs_ilock_nowait(), before the locks are taken: requests
// only (the acquisition is not seen). `xfs_iunlock` fires after the locks
// were dropped, `xfs_ilock_demote` after downgrade_write(). Record: dev,
// ino, lock_flags (offsets from tracefs); the flag bits come from the
// event's print format (`__print_flags`), parsed by user space.

/// The modes of IOLOCK (`i_rwsem`) and MMAPLOCK (`invalidate_lock`) in
/// XFS lock flags.
#[inline(always)]
fn xfs_modes(flags: u32) -> (u64, u64) {
    let io = if flags & global!(FL.xfs_iolock_excl) != 0 {
        LOCK_MODE_WRITE
    } else if flags & global!(FL.xfs_iolock_shared) != 0 {
        LOCK_MODE_READ
    } else {
        LOCK_MODE_NONE
    };
    let mmap = if flags & global!(FL.xfs_mmaplock_excl) != 0 {
        LOCK_MODE_WRITE
    } else if flags & global!(FL.xfs_mmaplock_shared) != 0 {
        LOCK_MODE_READ
    } else {
        LOCK_MODE_NONE
    };
    (io, mmap)
}

#[inline(always)]
fn xfs(ctx: &TracePointContext, op: u64) {
    let Some(r) = TpRecord::read(ctx) else { return };
    let flags: u32 = r.get(global!(FL.xfs_flags));
    let (io, mmap) = xfs_modes(flags);
    if io == LOCK_MODE_NONE && mmap == LOCK_MODE_NONE {
        // ILOCK only: XFS's own inode lock, not a page-cache lock.
        return;
    }
    let t = current();
    // Holds of invalidate_lock for the fault check. A nowait request may
    // fail unseen: not counted (hiding is allowed, inventing is not).
    if mmap != LOCK_MODE_NONE {
        if op == LOCK_OP_LOCK {
            inv_held(t.tid, 1);
        } else if op == LOCK_OP_UNLOCK {
            inv_held(t.tid, -1);
        }
    }
    if traced_task().is_none() {
        return;
    }
    let dev: u32 = r.get(global!(FL.xfs_dev));
    let ino: u64 = r.get(global!(FL.xfs_ino));
    if !traced_file(dev, ino) {
        return;
    }
    if op == LOCK_OP_DEMOTE {
        // Only exclusive locks are demoted; keep just those.
        let w = |m: u64| {
            if m == LOCK_MODE_WRITE {
                m
            } else {
                LOCK_MODE_NONE
            }
        };
        ops(t, dev, ino, op, w(io), w(mmap));
    } else {
        ops(t, dev, ino, op, io, mmap);
    }
}

#[tracepoint]
pub fn xfs_ilock(ctx: TracePointContext) -> u32 {
    xfs(&ctx, LOCK_OP_LOCK);
    0
}

#[tracepoint]
pub fn xfs_ilock_nowait(ctx: TracePointContext) -> u32 {
    xfs(&ctx, LOCK_OP_TRYLOCK);
    0
}

#[tracepoint]
pub fn xfs_iunlock(ctx: TracePointContext) -> u32 {
    xfs(&ctx, LOCK_OP_UNLOCK);
    0
}

#[tracepoint]
pub fn xfs_ilock_demote(ctx: TracePointContext) -> u32 {
    xfs(&ctx, LOCK_OP_DEMOTE);
    0
}

// lockdep: `lock:lock_acquire` (flags bit 0 trylock, bit 1 read;
// lockdep_addr = &sem->dep_map) fires before the lock is attempted, and
// for a trylock only once it succeeded; `lock:lock_release` at release.

#[tracepoint]
pub fn lockdep_acquire(ctx: TracePointContext) -> u32 {
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let map: u64 = r.get(global!(FL.lockdep_addr));
    let sem = map.wrapping_sub(global!(FL.rwsem_dep_map) as u64);
    let flags: u32 = r.get(global!(FL.lockdep_flags));
    let (trylock, write) = (flags & 1 != 0, flags & 2 == 0);
    let Some(l) = lookup(sem) else { return 0 };
    let Some(t) = traced_task() else { return 0 };
    let _ = LOCKDEP_MODE.insert(&[sem, t.tid as u64], &(write as u8), 0);
    if l.class == LockClass::InvalidateLock as u32 {
        // A trylock event means it succeeded; otherwise the acquisition is
        // not seen, but the task is blocked in the lock until then, so it
        // cannot fault in between: counted from the request.
        inv_held(t.tid, 1);
    }
    let (io, inv) = modes(
        &l,
        if write {
            LOCK_MODE_WRITE
        } else {
            LOCK_MODE_READ
        },
    );
    let op = if trylock {
        LOCK_OP_TRYLOCK_OK
    } else {
        LOCK_OP_LOCK
    };
    ops(t, l.dev, l.ino, op, io, inv);
    0
}

#[tracepoint]
pub fn lockdep_release(ctx: TracePointContext) -> u32 {
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let map: u64 = r.get(global!(FL.lockdep_release_addr));
    let sem = map.wrapping_sub(global!(FL.rwsem_dep_map) as u64);
    let key = [sem, current().tid as u64];
    // SAFETY: the value is copied out before the entry is removed.
    let Some(&write) = (unsafe { LOCKDEP_MODE.get(&key) }) else {
        // Taken before the recording began: its mode is unknown.
        return 0;
    };
    let _ = LOCKDEP_MODE.remove(&key);
    release(sem, write != 0);
    0
}

// ------------------------------------------------------------ page faults

/// raw `exceptions:page_fault_user` / `page_fault_kernel(unsigned long
/// address, struct pt_regs *regs, unsigned long error_code)` (raw: no
/// formatted record is built, so the common case, nobody holding a lock,
/// costs little more than the call). They fire at the entry of the x86
/// fault handler, before it checks `faulthandler_disabled()`.
#[inline(always)]
fn page_fault(ctx: &RawTracePointContext, user: bool) {
    // Nearly always nobody holds an invalidate_lock: one array look-up.
    let any_inv = INV_HELD_TOTAL.get(0).copied().unwrap_or(0) != 0;
    let ranges = global!(RL.order_check) != 0;
    if !any_inv && !ranges {
        return;
    }
    let Some(t) = traced_task() else { return };
    let mut held: u64 = 0;
    if any_inv {
        // SAFETY: the value is copied out at once.
        held += unsafe { INV_HELD.get(&t.tid) }.copied().unwrap_or(0);
    }
    if ranges {
        // SAFETY: as above.
        held += unsafe { RL_HELD.get(&t.tid) }.copied().unwrap_or(0);
    }
    if held == 0 {
        return;
    }
    let addr: u64 = ctx.arg(0);
    // Faults on kernel addresses (the upper half on x86-64, bit 63) take
    // no mm lock (do_kern_addr_fault).
    if addr >> 63 != 0 {
        return;
    }
    // `current->pagefault_disabled` (BTF): pagefault_disable() sections
    // (copy_*_nofault) fail the fault instead of taking locks. Loaded
    // directly through the BTF-typed task pointer: bpf_probe_read_kernel
    // would read it inside its own pagefault_disable() section
    // (mm/maccess.c), one too many.
    if pagefault_disabled() != 0 {
        return;
    }
    let code: u64 = ctx.arg(2);
    use aya_ebpf::programs::tracing::StackIdContext as _;
    let stack = ctx.get_stackid(&STACKS, 0).unwrap_or(-1);
    emit(
        t,
        Kind::PageFault,
        if user { FLAG_USER } else { 0 },
        0,
        [addr, stack as u64, held, code],
    );
}

#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn page_fault_user(ctx: RawTracePointContext) -> i32 {
    page_fault(&ctx, true);
    0
}

#[raw_tracepoint(tracepoint = "page_fault_kernel")]
pub fn page_fault_kernel(ctx: RawTracePointContext) -> i32 {
    page_fault(&ctx, false);
    0
}

/// `current->pagefault_disabled`, at its BTF offset.
#[inline(always)]
fn pagefault_disabled() -> u32 {
    let off = global!(FL.task_pagefault_disabled) as u64;
    // SAFETY: a helper without preconditions; it returns the current task
    // as a BTF pointer, never NULL in process or irq context.
    let task = unsafe { bpf_get_current_task_btf() } as u64;
    // SAFETY: a 4-byte load at a constant offset (a frozen global) of the
    // task: the verifier checks it against task_struct's BTF (the field
    // at that offset is `int pagefault_disabled`).
    unsafe {
        let v: u64;
        core::arch::asm!("{v} = *(u32 *)({p} + 0)", v = out(reg) v, p = in(reg) task.wrapping_add(off), options(readonly, nostack, preserves_flags));
        v as u32
    }
}

// ------------------------------------------------------ contention callers

/// The caller of a contended lock, as `perf lock contention` names it: the
/// first frame of a short kernel stack that is outside the kernel's lock
/// and sched text (`__lock_text_start..end`, `__sched_text_start..end`,
/// from /proc/kallsyms: spinlock, mutex and rwsem functions live there),
/// after the first frame inside it (the frames before are the tracing
/// glue). 0 when there is none or no text ranges were given.
pub(crate) fn caller<C: aya_ebpf::EbpfContext>(ctx: &C) -> u64 {
    if global!(FL.caller) == 0 {
        return 0;
    }
    caller_of(ctx.as_ptr())
}

/// The caller search's state, passed to each `bpf_loop` step.
#[repr(C)]
struct Search {
    frames: u64,
    inside: u64,
    found: u64,
}

/// One frame of the caller search (a `bpf_loop` callback).
extern "C" fn caller_step(i: u32, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Search` on the caller's stack.
    let s = unsafe { &mut *ctx.cast::<Search>() };
    if i as u64 >= s.frames {
        return 1;
    }
    let Some(buf) = CALLER_STACK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the index is masked into the scratch array.
    let ip = unsafe { (*buf)[(i as usize) & (CALLER_FRAMES - 1)] };
    let lock_len = global!(FL.lock_text_end).wrapping_sub(global!(FL.lock_text_start));
    let sched_len = global!(FL.sched_text_end).wrapping_sub(global!(FL.sched_text_start));
    // One unsigned compare per range: `ip - start < len`.
    if ip.wrapping_sub(global!(FL.lock_text_start)) < lock_len
        || ip.wrapping_sub(global!(FL.sched_text_start)) < sched_len
    {
        s.inside = 1;
        0
    } else if s.inside != 0 {
        s.found = ip;
        1
    } else {
        0
    }
}

/// Not inlined: a BPF subprogram, so the program's one `emit` is not
/// duplicated into each of its returns.
#[inline(never)]
fn caller_of(ctx: *mut core::ffi::c_void) -> u64 {
    let Some(buf) = CALLER_STACK.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch, valid for the program's run; the helper
    // writes at most its size.
    let n = unsafe { generated::bpf_get_stack(ctx, buf.cast(), (CALLER_FRAMES * 8) as u32, 0) };
    if n <= 0 {
        return 0;
    }
    let mut s = Search {
        frames: n as u64 / 8,
        inside: 0,
        found: 0,
    };
    // SAFETY: the callback and its context live for the call.
    unsafe {
        generated::bpf_loop(
            CALLER_FRAMES as u32,
            caller_step as *const () as *mut core::ffi::c_void,
            (&raw mut s).cast(),
            0,
        );
    }
    s.found
}
