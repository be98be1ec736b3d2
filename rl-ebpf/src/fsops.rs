//! Filesystem operations: punch hole, zero, collapse and insert range, and
//! truncate (a size change through setattr); and the early exits of direct
//! IO, which have no completion event.
//!
//! Where each is seen (the facts behind it, with the kernel functions, are
//! in `docs/kernel-fs-ops.md`):
//!
//! - ext4: its own tracepoints `ext4_punch_hole`, `ext4_zero_range`,
//!   `ext4_collapse_range`, `ext4_insert_range` (raw: the inode, offset,
//!   len), a truncate at `ext4_mark_inode_dirty` called from `ext4_setattr`
//!   (raw: the inode and the caller's address, checked against
//!   `ext4_setattr`'s range from kallsyms) or else at `ext4_truncate_enter`;
//! - XFS: `xfs_free_file_space`, `xfs_zero_file_space`,
//!   `xfs_collapse_file_space`, `xfs_insert_file_space`, `xfs_setattr`
//!   (raw: the `xfs_inode`; the VFS inode is its `i_vnode`). These carry no
//!   range: it comes from the syscall that issued them (`fallocate`, the
//!   `FS_IOC_UNRESVSP*`/`FS_IOC_ZERO_RANGE` ioctls, `ftruncate`,
//!   `truncate`), or, for a kernel thread (a loop device's worker), is
//!   unknown and given as the whole file;
//! - any other filesystem (btrfs, ...): those syscalls themselves, from
//!   enter to exit. They see user tasks only.
//!
//! One operation per task at a time (they run synchronously in their task):
//! its state lives in `TASKS`, and it ends at the first proof that the
//! kernel is done with it: the task's syscall exit (`raw_syscalls` exit,
//! which also gives the return value), XFS releasing the MMAPLOCK of that
//! inode (`xfs_iunlock`), ext4's `ext4_truncate_exit` for a truncate begun
//! by `ext4_truncate_enter`, a context switch after the task gave up the
//! mapping's `invalidate_lock`, a new operation of the same task, or its
//! exit. Each operation gets an id (per-CPU sequence and CPU) that its
//! begin, end and window events carry, whichever path ends it.
//!
//! Invalidation windows (`invalidate_begin`/`_end`) are emitted only at
//! points the source shows to be before the page-cache invalidation and
//! after the block freeing of the operation, and only when the task is seen
//! to hold the mapping's `invalidate_lock` for write right there: the
//! rw_semaphore's `owner` is the current task with the reader bit clear,
//! and its `count` has the writer bit (`kernel/locking/rwsem.c`: a writer
//! sets `owner` after taking the lock and clears it before letting go).
//!
//! Cost: every program filters first. The hot ones (syscall exit, context
//! switch, `ext4_mark_inode_dirty`, `xfs_iunlock`, `iomap_iter`) test one
//! array slot (`PENDING`: work in flight anywhere) or an address range
//! before anything else; `TASKS` entries are updated in place.

use aya_ebpf::{
    helpers::generated,
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{RawTracePointContext, TracePointContext},
};
use rl_common::{
    FLAG_ID, FsOp, FsopsLayout, Kind, NO_FIELD, OWN_EXT4, OWN_XFS, Record, Staging, WINDOW_TRUNCATE,
};

use crate::file::{DIO_INFLIGHT, file_inode, inode_dev_ino, kread};
use crate::{
    EVENTS, KOFF, Task, TpRecord, count_drops, current, global, header, name_once, submit_flags,
    traced_file, traced_task, write,
};

/// Layout and constants from user space (see `rl_common::FsopsLayout`).
#[unsafe(no_mangle)]
pub(crate) static FSOPS: FsopsLayout = FsopsLayout::NONE;

/// `TaskState::op_kind` of a truncate (the others are `FsOp` values).
const TRUNC: u8 = WINDOW_TRUNCATE as u8;
/// `TaskState::op_flags`: a window is open; the task was seen holding the
/// `invalidate_lock` during the operation; ext4's `ext4_truncate_exit`
/// ends it; the operation is XFS's (else ext4's or a syscall's).
const WIN_OPEN: u8 = 1;
const OWNED_SEEN: u8 = 2;
const END_AT_TRUNC_EXIT: u8 = 4;
const ON_XFS: u8 = 8;
/// `begin_op` flag: no window for this one (begun after the invalidation).
const NO_WINDOW: u8 = 16;
/// `begin_op` flag: the task can have nothing in flight (it is entering a
/// syscall; what it began before ended at that syscall's exit), so there
/// is no operation to end first. A constant per call site: the verifier
/// then skips `end_op` there.
const FRESH: u8 = 32;

/// `TaskState::sc_kind`: the syscall whose arguments are kept.
const SC_NONE: u8 = 0;
const SC_FALLOC: u8 = 1;
const SC_TRUNC: u8 = 2;
/// `TaskState::sc_op` of a fallocate that allocates (no operation of ours,
/// but XFS shows its size change as a setattr).
const SC_OP_ALLOC: u8 = 0xff;

/// Stable ABI values: `include/uapi/linux/falloc.h`.
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
const FALLOC_FL_INSERT_RANGE: u64 = 0x20;
const FALLOC_FL_WRITE_ZEROES: u64 = 0x80;
/// `include/uapi/linux/fs.h`: `_IOW('X', 41/43/57, struct space_resv)`
/// (48 bytes; `l_whence` at byte 2, `l_start` at 8, `l_len` at 16).
const FS_IOC_UNRESVSP: u64 = 0x4030_5829;
const FS_IOC_UNRESVSP64: u64 = 0x4030_582b;
const FS_IOC_ZERO_RANGE: u64 = 0x4030_5839;
/// `include/uapi/linux/magic.h`.
const EXT4_SUPER_MAGIC: u64 = 0xEF53;
const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
/// `kernel/locking/rwsem.c`: `RWSEM_READER_OWNED` and
/// `RWSEM_NONSPINNABLE` in `owner`, `RWSEM_WRITER_LOCKED` in `count`.
const RWSEM_READER_OWNED: u64 = 1;
const RWSEM_OWNER_FLAGS_MASK: u64 = 3;
const RWSEM_WRITER_LOCKED: u64 = 1;
/// `include/uapi/asm-generic/errno-base.h` and `errno.h`.
const EAGAIN: i64 = 11;
const ENOTBLK: i64 = 15;

/// What one task has in flight. Updated in place; the entry stays (LRU).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct TaskState {
    /// The syscall's file (0: not known, `truncate(2)` by path), range
    /// (`sc_len` is the new size for a truncate) and operation.
    sc_inode: u64,
    sc_offset: u64,
    sc_len: u64,
    /// The operation in flight (`op_id` 0: none).
    op_id: u64,
    op_inode: u64,
    op_mapping: u64,
    op_ino: u64,
    /// The next operation's range (or new size) and kind, set by callers of
    /// `begin_op`: read back from the map, they are one unknown value to the
    /// verifier whatever path chose them, so it walks `begin_op` once.
    nx_pos: u64,
    nx_len: u64,
    /// A DIO begun and neither queued nor completed yet (kiocb), and the
    /// return value to give it should it turn out to have exited early.
    dio: u64,
    dio_ret: i64,
    op_dev: u32,
    sc_kind: u8,
    sc_op: u8,
    op_kind: u8,
    op_flags: u8,
    nx_kind: u8,
    nx_flags: u8,
    _pad: [u8; 2],
}

const EMPTY: TaskState = TaskState {
    sc_inode: 0,
    sc_offset: 0,
    sc_len: 0,
    op_id: 0,
    op_inode: 0,
    op_mapping: 0,
    op_ino: 0,
    nx_pos: 0,
    nx_len: 0,
    dio: 0,
    dio_ret: 0,
    op_dev: 0,
    sc_kind: SC_NONE,
    sc_op: 0,
    op_kind: 0,
    op_flags: 0,
    nx_kind: 0,
    nx_flags: 0,
    _pad: [0; 2],
};

#[map]
static TASKS: LruHashMap<u32, TaskState> = LruHashMap::with_max_entries(8192, 0);

/// How many `TaskState` slots (syscall, operation, DIO) are in use on the
/// whole machine: the hot programs do nothing while it is 0.
#[map]
static PENDING: Array<u64> = Array::with_max_entries(1, 0);

/// Per-CPU sequence of operation ids.
#[map]
static OP_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for the records one program run emits (see [`Out`]).
#[map]
static OUT: PerCpuArray<Staging> = PerCpuArray::with_max_entries(1, 0);

/// Most records one program run emits: an operation's end, the next one's
/// begin, its window.
const OUT_MAX: usize = 3;

/// The records of one program run, sent together at its end: each emit
/// site costs the verifier a full pass over the ring-buffer code, so every
/// program has one ([`Out::send`]). One record goes through the per-CPU
/// staging as any other; more leave as one ring entry (a batch), in order.
pub(crate) struct Out {
    s: &'static mut Staging,
    /// The first record's `Kind` discriminant.
    first: u8,
}

impl Out {
    #[inline(always)]
    pub(crate) fn new() -> Option<Out> {
        let p = OUT.get_ptr_mut(0)?;
        // SAFETY: this CPU's slot, valid for the program's run; `busy` keeps
        // a program interrupting this one on the CPU out of it.
        let s = unsafe { &mut *p };
        if s.busy != 0 {
            // Another run on this CPU has it (a task preempted inside its
            // program): this run's records are lost, and counted so.
            count_drops(1);
            return None;
        }
        s.busy = 1;
        s.batch.n = 0;
        Some(Out {
            s,
            first: Kind::Exit as u8,
        })
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, t: Task, kind: Kind, flags: u8, dev: u32, w: [u64; 4]) {
        self.push_raw(t, kind as u8, flags, dev, w);
    }

    /// `push` of a kind given as its discriminant (computed without a
    /// branch by the caller).
    #[inline(always)]
    fn push_raw(&mut self, t: Task, kind: u8, flags: u8, dev: u32, w: [u64; 4]) {
        let i = self.s.batch.n as usize;
        if i == 0 {
            self.first = kind;
        }
        if i < OUT_MAX {
            let mut hdr = header(t, Kind::Exit, flags, dev);
            hdr.kind = kind;
            self.s.batch.records[i] = Record { hdr, w };
            self.s.batch.n = i as u32 + 1;
        }
    }

    /// Names the task if needed and hands the records over through the
    /// per-CPU staging (for frequent events: DIO begins).
    #[inline(always)]
    pub(crate) fn send(self, t: Task) {
        if self.s.batch.n != 0 {
            name_once(t);
        }
        let n = self.s.batch.n as usize;
        if n == 0 {
            return;
        }
        if n == 1 {
            let r = self.s.batch.records[0];
            // SAFETY: `first` is the discriminant of the `Kind` pushed first
            // (`push`, or `push_raw` with one of `Kind`'s values).
            let kind: Kind = unsafe { core::mem::transmute::<u8, Kind>(self.first) };
            write(t, kind, r.hdr.flags, r.hdr.dev, r.w);
        } else if EVENTS
            .output::<rl_common::Batch>(&self.s.batch, submit_flags())
            .is_err()
        {
            count_drops(n as u64);
        }
    }

    /// Names the task if needed and hands the records over as one ring
    /// entry, past the staging: for the rare operation events (user space
    /// puts them back in time order with the staged ones), and half the
    /// verifier's cost of [`Out::send`].
    #[inline(always)]
    pub(crate) fn send_rare(self, t: Task) {
        if self.s.batch.n == 0 {
            return;
        }
        name_once(t);
        self.output();
    }

    /// [`Out::send_rare`] for a task named already (by the begin of the
    /// operation it ends; were that name forgotten, the trace still has the
    /// task's id).
    #[inline(always)]
    pub(crate) fn send_named(self) {
        if self.s.batch.n != 0 {
            self.output();
        }
    }

    #[inline(always)]
    fn output(&self) {
        if EVENTS
            .output::<rl_common::Batch>(&self.s.batch, submit_flags())
            .is_err()
        {
            count_drops(self.s.batch.n as u64);
        }
    }
}

impl Drop for Out {
    #[inline(always)]
    fn drop(&mut self) {
        self.s.batch.n = 0;
        self.s.busy = 0;
    }
}

#[inline(always)]
fn pending() -> bool {
    PENDING.get(0).is_some_and(|&n| n != 0)
}

#[inline(always)]
fn pending_add(d: i64) {
    if let Some(p) = PENDING.get_ptr_mut(0) {
        // SAFETY: an atomic add on a valid map value (other CPUs change it
        // too); the BPF target has no atomic read-modify-write in `core`.
        unsafe {
            core::arch::asm!("lock *(u64 *)({p} + 0) += {d}", p = in(reg) p, d = in(reg) d, options(nostack, preserves_flags));
        }
    }
}

#[inline(always)]
fn state(tid: u32) -> Option<&'static mut TaskState> {
    // SAFETY: a map value valid for the program's run; only the task
    // itself writes its entry.
    TASKS.get_ptr_mut(&tid).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn state_or_new(tid: u32) -> Option<&'static mut TaskState> {
    if let Some(s) = state(tid) {
        return Some(s);
    }
    let _ = TASKS.insert(&tid, &EMPTY, 0);
    state(tid)
}

/// A fresh operation id: this CPU's sequence number and the CPU.
#[inline(always)]
fn next_id() -> u64 {
    // SAFETY: a helper without preconditions.
    let cpu = unsafe { generated::bpf_get_smp_processor_id() } as u64;
    match OP_SEQ.get_ptr_mut(0) {
        Some(p) => {
            // SAFETY: this CPU's slot; programs that begin operations run in
            // task context and do not nest on one CPU.
            let n = unsafe {
                *p += 1;
                *p
            };
            (n << 12) | (cpu & 0xfff)
        }
        None => cpu | 1 << 63,
    }
}

/// Whether the current task holds `mapping->invalidate_lock` for write
/// (offsets from BTF; see the module docs for the owner encoding).
#[inline(always)]
fn owns_invalidate_lock(mapping: u64) -> bool {
    let inv = global!(FSOPS.mapping_invalidate_lock);
    if mapping == 0 || inv == NO_FIELD {
        return false;
    }
    let sem = mapping + inv as u64;
    let owner: u64 = kread(sem, global!(FSOPS.rwsem_owner));
    let count: u64 = kread(sem, global!(FSOPS.rwsem_count));
    // SAFETY: a helper without preconditions.
    let me = unsafe { generated::bpf_get_current_task() };
    owner & !RWSEM_OWNER_FLAGS_MASK == me
        && owner & RWSEM_READER_OWNED == 0
        && count & RWSEM_WRITER_LOCKED != 0
}

#[inline(always)]
fn window_enabled(xfs: bool, kind: u8) -> bool {
    let bit = if xfs { 8 } else { 0 } + kind as u32;
    global!(FSOPS.windows) & (1 << bit) != 0
}

/// Inclusive pages `[first, last]` an operation's window covers: a
/// truncate from the first whole page past the size to ~0, a collapse or
/// insert from `pos` to ~0, the others their range. Without branches: a
/// value chosen by a branch here makes the verifier walk the rest twice.
#[inline(always)]
fn window_pages(kind: u8, pos: u64, len: u64) -> (u64, u64) {
    let shift = global!(FSOPS.page_shift) as u64 & 63;
    let is_trunc = all_ones_if_zero((kind ^ TRUNC) as u64);
    // A range not known (`len` ~0, a kernel thread's XFS operation) is the
    // whole file.
    let to_end = is_trunc
        | all_ones_if_zero((kind ^ FsOp::Collapse as u8) as u64)
        | all_ones_if_zero((kind ^ FsOp::Insert as u8) as u64)
        | all_ones_if_zero(!len);
    let first = pos.wrapping_add(((1u64 << shift) - 1) & is_trunc) >> shift;
    let last_of_range = pos
        .wrapping_add(len | (all_ones_if_zero(len) & 1))
        .wrapping_sub(1)
        >> shift;
    (first, to_end | (last_of_range & !to_end))
}

/// What an operation is about: its inode and where it starts.
struct Target {
    inode: u64,
    mapping: u64,
    dev: u32,
    ino: u64,
}

#[inline(always)]
fn target(inode: u64) -> Option<Target> {
    if inode == 0 {
        return None;
    }
    let (dev, ino) = inode_dev_ino(inode);
    if !traced_file(dev, ino) {
        return None;
    }
    Some(Target {
        inode,
        mapping: kread(inode, global!(FSOPS.inode_mapping)),
        dev,
        ino,
    })
}

/// Ends the task's operation: `punch_end`/`truncate_end` with its id.
#[inline(always)]
fn end_op(out: &mut Out, t: Task, st: &mut TaskState, ret: i64) {
    if st.op_id == 0 {
        return;
    }
    let kind = if st.op_kind == TRUNC {
        Kind::TruncateEnd
    } else {
        Kind::PunchEnd
    };
    out.push(t, kind, FLAG_ID, 0, [ret as u64, st.op_id, 0, 0]);
    st.op_id = 0;
    st.op_flags = 0;
    pending_add(-1);
}

/// Begins an operation of kind `kind` (a `FsOp`, or `TRUNC` with `pos` the
/// new size) on `tg`, ending first whatever the task had in flight (its
/// operations are synchronous: a new one means the old one is over).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn begin_op(
    out: &mut Out,
    t: Task,
    st: &mut TaskState,
    tg: &Target,
    kind: u8,
    pos: u64,
    len: u64,
    flags: u8,
    owned: bool,
) {
    st.nx_kind = kind;
    st.nx_pos = pos;
    st.nx_len = len;
    st.nx_flags = flags;
    if flags & FRESH == 0 {
        end_op(out, t, st, 0);
    } else if st.op_id != 0 {
        // Not expected (see `FRESH`); its slot is given back all the same.
        pending_add(-1);
    }
    // SAFETY: plain reads of the map value (see `nx_pos`).
    let (kind, pos, len, flags) = unsafe {
        (
            core::ptr::read_volatile(&st.nx_kind),
            core::ptr::read_volatile(&st.nx_pos),
            core::ptr::read_volatile(&st.nx_len),
            core::ptr::read_volatile(&st.nx_flags),
        )
    };
    st.op_kind = kind;
    let id = next_id();
    st.op_id = id;
    st.op_inode = tg.inode;
    st.op_mapping = tg.mapping;
    st.op_ino = tg.ino;
    st.op_dev = tg.dev;
    st.op_flags = flags & !(NO_WINDOW | FRESH);
    pending_add(1);
    // truncate_begin [ino, size, id] or punch_begin [ino, pos, len, id]
    // with the op in `flags`, chosen without a branch (see `window_pages`).
    let is_trunc = all_ones_if_zero((kind ^ TRUNC) as u64);
    let rkind = Kind::PunchBegin as u8
        + ((Kind::TruncateBegin as u8 - Kind::PunchBegin as u8) & is_trunc as u8);
    out.push_raw(
        t,
        rkind,
        FLAG_ID | (kind & !(is_trunc as u8)),
        tg.dev,
        [
            tg.ino,
            pos,
            (id & is_trunc) | (len & !is_trunc),
            id & !is_trunc,
        ],
    );
    if owned {
        st.op_flags |= OWNED_SEEN;
    }
    if owned && flags & NO_WINDOW == 0 && window_enabled(flags & ON_XFS != 0, kind) {
        let (first, last) = window_pages(kind, pos, len);
        out.push(
            t,
            Kind::InvalidateBegin,
            FLAG_ID,
            tg.dev,
            [tg.ino, first, last, id],
        );
        st.op_flags |= WIN_OPEN;
    }
}

/// Closes the operation's window, if open and the lock still held.
#[inline(always)]
fn end_window(out: &mut Out, t: Task, st: &mut TaskState) {
    if st.op_flags & WIN_OPEN == 0 {
        return;
    }
    if owns_invalidate_lock(st.op_mapping) {
        out.push(
            t,
            Kind::InvalidateEnd,
            FLAG_ID,
            st.op_dev,
            [st.op_ino, st.op_id, 0, 0],
        );
    }
    st.op_flags &= !WIN_OPEN;
}

/// A DIO of the task that neither completed nor was queued has left
/// `iomap_dio_rw` early (zero length, a read at or past EOF, -EAGAIN, the
/// -ENOTBLK fallback to buffered IO, no memory): its end, now.
#[inline(always)]
pub(crate) fn dio_early_end(out: &mut Out, t: Task, st: &mut TaskState) {
    let iocb = st.dio;
    if iocb == 0 {
        return;
    }
    st.dio = 0;
    pending_add(-1);
    // SAFETY: presence test only.
    if unsafe { DIO_INFLIGHT.get(&iocb) }.is_some() {
        let _ = DIO_INFLIGHT.remove(&iocb);
        out.push(t, Kind::DioEnd, 0, 0, [iocb, st.dio_ret as u64, 0, 0]);
    }
}

/// `iomap_dio_rw_begin` (in `file.rs`) of task `t`: the DIO waits here for
/// its completion, its queueing, or proof that it exited early. A DIO of
/// the task still waiting exited early: it returned before this one began.
#[inline(always)]
pub(crate) fn dio_begun(out: &mut Out, t: Task, iocb: u64, flags: u32) {
    let Some(st) = state_or_new(t.tid) else {
        return;
    };
    dio_early_end(out, t, st);
    st.dio = iocb;
    st.dio_ret = if flags & global!(FSOPS.iocb_nowait) != 0 {
        -EAGAIN
    } else {
        0
    };
    pending_add(1);
}

/// `iocb->ki_flags` where `dio_begun` needs it (an `IOCB_NOWAIT` value and
/// the member's offset are known), read by `read` at the member's offset;
/// else 0.
#[inline(always)]
pub(crate) fn kiocb_flags(read: impl Fn(u32) -> u32) -> u32 {
    if global!(FSOPS.iocb_nowait) != 0 && global!(FSOPS.kiocb_flags) != NO_FIELD {
        read(global!(FSOPS.kiocb_flags))
    } else {
        0
    }
}

/// `iomap_dio_complete` of `iocb` in the current task's context: a
/// synchronous completion (or an asynchronous one interrupting its task).
#[inline(always)]
pub(crate) fn dio_completed(iocb: u64) {
    if !pending() {
        return;
    }
    if let Some(st) = state(current().tid)
        && st.dio == iocb
    {
        st.dio = 0;
        pending_add(-1);
    }
}

/// The current task's open file `fd`: `current->files->fdt->fd[fd]`
/// (offsets from BTF), or 0.
#[inline(always)]
fn fd_file(fd: u64) -> u64 {
    // SAFETY: a helper without preconditions.
    let task = unsafe { generated::bpf_get_current_task() };
    let files: u64 = kread(task, global!(FSOPS.task_files));
    if files == 0 {
        return 0;
    }
    let fdt: u64 = kread(files, global!(FSOPS.files_fdt));
    if fdt == 0 {
        return 0;
    }
    let max: u32 = kread(fdt, global!(FSOPS.fdt_max_fds));
    if fd >= max as u64 {
        return 0;
    }
    let arr: u64 = kread(fdt, global!(FSOPS.fdt_fd));
    if arr == 0 {
        return 0;
    }
    kread(arr + fd * 8, 0)
}

/// Whether the inode's filesystem has its own probes attached (then the
/// syscall stand-in leaves it alone: decided per filesystem).
#[inline(always)]
fn covered(inode: u64) -> bool {
    let sb: u64 = kread(inode, global!(KOFF.inode_sb));
    if sb == 0 {
        return false;
    }
    let magic: u64 = kread(sb, global!(FSOPS.sb_magic));
    let own = global!(FSOPS.own);
    (magic == EXT4_SUPER_MAGIC && own & OWN_EXT4 != 0)
        || (magic == XFS_SUPER_MAGIC && own & OWN_XFS != 0)
}

/// The `FsOp` a fallocate mode asks for, or `None` for an allocation.
#[inline(always)]
fn falloc_op(mode: u64) -> Option<u8> {
    if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        Some(FsOp::Punch as u8)
    } else if mode & (FALLOC_FL_ZERO_RANGE | FALLOC_FL_WRITE_ZEROES) != 0 {
        Some(FsOp::Zero as u8)
    } else if mode & FALLOC_FL_COLLAPSE_RANGE != 0 {
        Some(FsOp::Collapse as u8)
    } else if mode & FALLOC_FL_INSERT_RANGE != 0 {
        Some(FsOp::Insert as u8)
    } else {
        None
    }
}

/// `u64::MAX` when `x` is 0, else 0, without a branch (each branch that
/// reaches [`begin_op`] with other values is a path the verifier walks).
#[inline(always)]
fn all_ones_if_zero(x: u64) -> u64 {
    (((x | x.wrapping_neg()) >> 63) ^ 1).wrapping_neg()
}

/// A syscall that may do a file operation: keeps its arguments for the
/// filesystem probes, and begins the operation itself on filesystems
/// without their own probes.
#[inline(always)]
fn syscall_op(t: Task, inode: u64, kind: u8, offset: u64, len: u64) {
    let Some(st) = state_or_new(t.tid) else {
        return;
    };
    let Some(mut out) = Out::new() else { return };
    if st.sc_kind == SC_NONE {
        pending_add(1);
    }
    st.sc_kind =
        SC_FALLOC + ((SC_TRUNC - SC_FALLOC) & all_ones_if_zero((kind ^ TRUNC) as u64) as u8);
    st.sc_op = kind;
    st.sc_inode = inode;
    st.sc_offset = offset;
    st.sc_len = len;
    // Read back: one value to the verifier, whichever path chose it.
    // SAFETY: a plain read of the map value.
    let kind = unsafe { core::ptr::read_volatile(&st.sc_op) };
    // Filesystems without their own probes begin here.
    if inode != 0
        && kind != SC_OP_ALLOC
        && !covered(inode)
        && let Some(tg) = target(inode)
    {
        // At the syscall's entry no lock is held: no window.
        begin_op(
            &mut out,
            t,
            st,
            &tg,
            kind,
            st.sc_offset,
            st.sc_len,
            NO_WINDOW | FRESH,
            false,
        );
    }
    out.send_rare(t);
}

/// `syscalls:sys_enter_fallocate(fd, mode, offset, len)`.
#[tracepoint]
pub fn fs_falloc_enter(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let mode: u64 = r.get(global!(FSOPS.falloc_mode));
    let kind = falloc_op(mode).unwrap_or(SC_OP_ALLOC);
    let fd: u64 = r.get(global!(FSOPS.falloc_fd));
    let offset: u64 = r.get(global!(FSOPS.falloc_offset));
    let len: u64 = r.get(global!(FSOPS.falloc_len));
    syscall_op(t, file_inode(fd_file(fd)), kind, offset, len);
    0
}

/// `syscalls:sys_enter_fallocate`, learning the file: one that a task only
/// punches on a filesystem without operation tracepoints of its own
/// (btrfs) has no other event to be learned from. Its own program: the
/// operation probe is near the instruction budget.
#[tracepoint]
pub fn learn_falloc(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let fd: u64 = r.get(global!(FSOPS.falloc_fd));
    crate::flock::learn_file(t, file_inode(fd_file(fd)));
    0
}

/// `syscalls:sys_enter_ftruncate`, learning the file (as [`learn_falloc`]).
#[tracepoint]
pub fn learn_ftrunc(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let fd: u64 = r.get(global!(FSOPS.ftrunc_fd));
    crate::flock::learn_file(t, file_inode(fd_file(fd)));
    0
}

/// `syscalls:sys_enter_ioctl(fd, cmd, arg)`: the punch and zero ioctls
/// (`ioctl_preallocate` turns them into `vfs_fallocate`).
#[tracepoint]
pub fn fs_ioctl_enter(ctx: TracePointContext) -> u32 {
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let cmd: u64 = r.get::<u64>(global!(FSOPS.ioctl_cmd)) & 0xffff_ffff;
    if cmd != FS_IOC_UNRESVSP && cmd != FS_IOC_UNRESVSP64 && cmd != FS_IOC_ZERO_RANGE {
        return 0;
    }
    // Zero for FS_IOC_ZERO_RANGE, else punch (no branch: see `window_pages`).
    let kind = FsOp::Zero as u8 & all_ones_if_zero(cmd ^ FS_IOC_ZERO_RANGE) as u8;
    let Some(t) = traced_task() else { return 0 };
    let fd: u64 = r.get(global!(FSOPS.ioctl_fd));
    let arg: u64 = r.get(global!(FSOPS.ioctl_arg));
    // struct space_resv: l_whence (s16) at 2, l_start at 8, l_len at 16.
    let mut sr = [0u64; 3];
    // SAFETY: the destination is a valid stack buffer; the helper checks
    // the user address and zeroes the buffer when it cannot read it.
    unsafe {
        generated::bpf_probe_read_user((&raw mut sr).cast(), 24, arg as *const core::ffi::c_void)
    };
    // Relative to SEEK_SET only (what xfs_io and fsstress use); from the
    // file position or the end, the range is not worked out: the whole file.
    let keep = all_ones_if_zero((sr[0] >> 16) & 0xffff);
    syscall_op(
        t,
        file_inode(fd_file(fd)),
        kind,
        sr[1] & keep,
        sr[2] | !keep,
    );
    0
}

/// `syscalls:sys_enter_ftruncate(fd, length)`.
#[tracepoint]
pub fn fs_ftrunc_enter(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let fd: u64 = r.get(global!(FSOPS.ftrunc_fd));
    let len: u64 = r.get(global!(FSOPS.ftrunc_len));
    // The size before, to tell a growing truncate (nothing to invalidate
    // or free: no window) from a shrinking one.
    let inode = file_inode(fd_file(fd));
    let old: u64 = if inode != 0 {
        kread(inode, global!(KOFF.inode_size))
    } else {
        0
    };
    syscall_op(t, inode, TRUNC, len, old);
    0
}

/// `syscalls:sys_enter_truncate(path, length)`: the file is not known
/// here, only the new size (for XFS, whose tracepoint lacks it).
#[tracepoint]
pub fn fs_trunc_enter(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let len: u64 = r.get(global!(FSOPS.trunc_len));
    syscall_op(t, 0, TRUNC, len, 0);
    0
}

/// raw `sys_exit(regs, ret)`: the task is back from its syscall, so every
/// operation it began is over (with the syscall's return value), and a DIO
/// of it that was neither completed nor queued exited early.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn fs_sys_exit(ctx: RawTracePointContext) -> i32 {
    if !pending() {
        return 0;
    }
    let t = current();
    let Some(st) = state(t.tid) else { return 0 };
    let ret = ctx.arg::<u64>(1) as i64;
    let Some(mut out) = Out::new() else { return 0 };
    end_op(&mut out, t, st, ret);
    dio_early_end(&mut out, t, st);
    if st.sc_kind != SC_NONE {
        st.sc_kind = SC_NONE;
        pending_add(-1);
    }
    out.send_named();
    0
}

/// `sched:sched_switch`: the task leaving the CPU (current) ends its
/// operation if it was seen holding the `invalidate_lock` and no longer
/// does (kernel threads have no syscall exit; tasks in a syscall wait for
/// it, which has the return value).
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn fs_switch(_ctx: RawTracePointContext) -> i32 {
    if !pending() {
        return 0;
    }
    let t = current();
    let Some(st) = state(t.tid) else { return 0 };
    if st.op_id != 0
        && st.sc_kind == SC_NONE
        && st.op_flags & OWNED_SEEN != 0
        && !owns_invalidate_lock(st.op_mapping)
        && let Some(mut out) = Out::new()
    {
        end_op(&mut out, t, st, 0);
        out.send_named();
    }
    0
}

/// `sched:sched_process_exit`: what the task had in flight is over.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn fs_task_exit(_ctx: RawTracePointContext) -> i32 {
    let t = current();
    let Some(st) = state(t.tid) else { return 0 };
    if let Some(mut out) = Out::new() {
        end_op(&mut out, t, st, 0);
        dio_early_end(&mut out, t, st);
        out.send_named();
    }
    if st.sc_kind != SC_NONE {
        st.sc_kind = SC_NONE;
        pending_add(-1);
    }
    let _ = TASKS.remove(&t.tid);
    0
}

/// An ext4 fallocate operation begins (its tracepoint is the first
/// statement of the operation's function).
#[inline(always)]
fn ext4_begin(ctx: &RawTracePointContext, kind: u8) {
    let Some(t) = traced_task() else { return };
    let Some(tg) = target(ctx.arg(0)) else { return };
    let pos: u64 = ctx.arg(1);
    let len: u64 = ctx.arg(2);
    let Some(st) = state_or_new(t.tid) else {
        return;
    };
    let owned = owns_invalidate_lock(tg.mapping);
    let Some(mut out) = Out::new() else { return };
    begin_op(&mut out, t, st, &tg, kind, pos, len, 0, owned);
    out.send_rare(t);
}

/// raw `ext4_punch_hole(inode, offset, len, mode)`.
#[raw_tracepoint(tracepoint = "ext4_punch_hole")]
pub fn ext4_punch(ctx: RawTracePointContext) -> i32 {
    ext4_begin(&ctx, FsOp::Punch as u8);
    0
}

/// raw `ext4_zero_range(inode, offset, len, mode)`.
#[raw_tracepoint(tracepoint = "ext4_zero_range")]
pub fn ext4_zero(ctx: RawTracePointContext) -> i32 {
    ext4_begin(&ctx, FsOp::Zero as u8);
    0
}

/// raw `ext4_collapse_range(inode, offset, len)`.
#[raw_tracepoint(tracepoint = "ext4_collapse_range")]
pub fn ext4_collapse(ctx: RawTracePointContext) -> i32 {
    ext4_begin(&ctx, FsOp::Collapse as u8);
    0
}

/// raw `ext4_insert_range(inode, offset, len)`.
#[raw_tracepoint(tracepoint = "ext4_insert_range")]
pub fn ext4_insert(ctx: RawTracePointContext) -> i32 {
    ext4_begin(&ctx, FsOp::Insert as u8);
    0
}

/// raw `ext4_mark_inode_dirty(inode, IP)`: from `ext4_setattr` with the
/// `invalidate_lock` held, it is the size change, after `i_size` took the
/// new size and before `truncate_pagecache`.
#[raw_tracepoint(tracepoint = "ext4_mark_inode_dirty")]
pub fn ext4_dirty(ctx: RawTracePointContext) -> i32 {
    let ip: u64 = ctx.arg(1);
    if ip < global!(FSOPS.ext4_setattr) || ip >= global!(FSOPS.ext4_setattr_end) {
        return 0;
    }
    let Some(t) = traced_task() else { return 0 };
    let Some(tg) = target(ctx.arg(0)) else {
        return 0;
    };
    if !owns_invalidate_lock(tg.mapping) {
        return 0;
    }
    let Some(st) = state_or_new(t.tid) else {
        return 0;
    };
    if st.op_id != 0 && st.op_inode == tg.inode {
        return 0;
    }
    let size: u64 = kread(tg.inode, global!(KOFF.inode_size));
    // Growing (by `ftruncate`'s size before): nothing to invalidate or
    // free, no window.
    let grow = sc_on(st, tg.inode) && st.sc_kind == SC_TRUNC && size > st.sc_len;
    let flags = if grow { NO_WINDOW } else { 0 };
    let Some(mut out) = Out::new() else { return 0 };
    begin_op(&mut out, t, st, &tg, TRUNC, size, 0, flags, true);
    out.send_rare(t);
    0
}

/// raw `ext4_truncate_enter(inode)`: within a truncate begun above, part
/// of it; else a truncate of its own (the size did not change, or not from
/// setattr), seen after the page cache was truncated: no window. A deleted
/// inode's (no links: `ext4_evict_inode`) is no operation.
#[raw_tracepoint(tracepoint = "ext4_truncate_enter")]
pub fn ext4_trunc_enter(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let inode: u64 = ctx.arg(0);
    if inode == 0 || kread::<u32>(inode, global!(FSOPS.inode_nlink)) == 0 {
        return 0;
    }
    let Some(tg) = target(inode) else {
        return 0;
    };
    let Some(st) = state_or_new(t.tid) else {
        return 0;
    };
    if st.op_id != 0 && st.op_inode == tg.inode && st.op_kind == TRUNC {
        return 0;
    }
    let size: u64 = kread(tg.inode, global!(KOFF.inode_size));
    // Its window would start after the invalidation: none.
    let Some(mut out) = Out::new() else { return 0 };
    begin_op(
        &mut out,
        t,
        st,
        &tg,
        TRUNC,
        size,
        0,
        END_AT_TRUNC_EXIT | NO_WINDOW,
        owns_invalidate_lock(tg.mapping),
    );
    out.send_rare(t);
    0
}

/// raw `ext4_truncate_exit(inode)`: `ext4_truncate` freed the blocks past
/// the size; `ext4_setattr` still holds the `invalidate_lock`.
#[raw_tracepoint(tracepoint = "ext4_truncate_exit")]
pub fn ext4_trunc_exit(ctx: RawTracePointContext) -> i32 {
    if !pending() {
        return 0;
    }
    let t = current();
    let Some(st) = state(t.tid) else { return 0 };
    let inode: u64 = ctx.arg(0);
    if st.op_id == 0 || st.op_inode != inode || st.op_kind != TRUNC {
        return 0;
    }
    let Some(mut out) = Out::new() else { return 0 };
    end_window(&mut out, t, st);
    if st.op_flags & END_AT_TRUNC_EXIT != 0 {
        end_op(&mut out, t, st, 0);
    }
    out.send_named();
    0
}

/// The task's operation, if it is on the file of a formatted event.
#[inline(always)]
fn op_on_event(ctx: &TracePointContext) -> Option<(Task, &'static mut TaskState)> {
    if !pending() {
        return None;
    }
    let t = current();
    let st = state(t.tid)?;
    if st.op_id == 0 {
        return None;
    }
    let r = TpRecord::read(ctx)?;
    let dev: u32 = r.get(global!(FSOPS.ev_dev));
    let ino: u64 = r.get(global!(FSOPS.ev_ino));
    if dev != st.op_dev || ino != st.op_ino {
        return None;
    }
    Some((t, st))
}

/// `ext4:ext4_ext_remove_space_done`: a punch's or collapse's blocks are
/// freed (the extent tree's removal is done), still under the lock.
#[tracepoint]
pub fn ext4_rmspace(ctx: TracePointContext) -> u32 {
    if let Some((t, st)) = op_on_event(&ctx)
        && st.op_flags & ON_XFS == 0
        && (st.op_kind == FsOp::Punch as u8 || st.op_kind == FsOp::Collapse as u8)
        && let Some(mut out) = Out::new()
    {
        end_window(&mut out, t, st);
        out.send_named();
    }
    0
}

/// The VFS inode of an XFS tracepoint's `xfs_inode`, as a target.
#[inline(always)]
fn xfs_target(ctx: &RawTracePointContext) -> Option<Target> {
    let ip: u64 = ctx.arg(0);
    let vnode = global!(FSOPS.xfs_vnode);
    if ip == 0 || vnode == NO_FIELD {
        return None;
    }
    target(ip + vnode as u64)
}

/// Whether the task's syscall arguments are about this file (or a file
/// not known, `truncate(2)`).
#[inline(always)]
fn sc_on(st: &TaskState, inode: u64) -> bool {
    st.sc_kind != SC_NONE && (st.sc_inode == inode || st.sc_inode == 0)
}

/// An XFS operation's tracepoint (raw: the `xfs_inode`). Within an
/// operation in flight on the inode (a zero or collapse frees first; a
/// collapse then shrinks), part of it.
#[inline(always)]
fn xfs_begin(ctx: &RawTracePointContext, kind: u8) {
    let Some(t) = traced_task() else { return };
    let Some(tg) = xfs_target(ctx) else { return };
    let owned = owns_invalidate_lock(tg.mapping);
    let Some(st) = state_or_new(t.tid) else {
        return;
    };
    if st.op_id != 0 && st.op_inode == tg.inode {
        if owned {
            st.op_flags |= OWNED_SEEN;
        }
        return;
    }
    // The range from the syscall that issued it; else (a kernel thread)
    // unknown: the whole file.
    let (pos, len) = if sc_on(st, tg.inode) {
        (st.sc_offset, st.sc_len)
    } else {
        (0, u64::MAX)
    };
    let Some(mut out) = Out::new() else { return };
    begin_op(&mut out, t, st, &tg, kind, pos, len, ON_XFS, owned);
    out.send_rare(t);
}

/// raw `xfs_free_file_space(ip)`: a punch (or the first step of zero and
/// collapse, then part of theirs).
#[raw_tracepoint(tracepoint = "xfs_free_file_space")]
pub fn xfs_free(ctx: RawTracePointContext) -> i32 {
    xfs_begin(&ctx, FsOp::Punch as u8);
    0
}

/// raw `xfs_zero_file_space(ip)`.
#[raw_tracepoint(tracepoint = "xfs_zero_file_space")]
pub fn xfs_zero(ctx: RawTracePointContext) -> i32 {
    xfs_begin(&ctx, FsOp::Zero as u8);
    0
}

/// raw `xfs_collapse_file_space(ip)`.
#[raw_tracepoint(tracepoint = "xfs_collapse_file_space")]
pub fn xfs_collapse(ctx: RawTracePointContext) -> i32 {
    xfs_begin(&ctx, FsOp::Collapse as u8);
    0
}

/// raw `xfs_insert_file_space(ip)`.
#[raw_tracepoint(tracepoint = "xfs_insert_file_space")]
pub fn xfs_insert(ctx: RawTracePointContext) -> i32 {
    xfs_begin(&ctx, FsOp::Insert as u8);
    0
}

/// raw `xfs_setattr(ip)`: with the MMAPLOCK held, a size change (else
/// chmod, utimes... are no operation).
#[raw_tracepoint(tracepoint = "xfs_setattr")]
pub fn xfs_setattr(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(tg) = xfs_target(&ctx) else { return 0 };
    if !owns_invalidate_lock(tg.mapping) {
        return 0;
    }
    let Some(st) = state_or_new(t.tid) else {
        return 0;
    };
    if st.op_id != 0 && st.op_inode == tg.inode {
        st.op_flags |= OWNED_SEEN;
        return 0;
    }
    // In a fallocate, the size change of an insert (which XFS makes before
    // shifting) or of an allocation (not an operation of ours); else a
    // truncate, to the syscall's size or, not known, to 0 (the whole file).
    let on = sc_on(st, tg.inode);
    let (kind, pos, len) = if on && st.sc_kind == SC_FALLOC {
        if st.sc_op != FsOp::Insert as u8 {
            return 0;
        }
        (FsOp::Insert as u8, st.sc_offset, st.sc_len)
    } else if on {
        (TRUNC, st.sc_offset, 0)
    } else {
        (TRUNC, 0, 0)
    };
    // Growing (`i_size` is still the old size here): no window.
    let old: u64 = kread(tg.inode, global!(KOFF.inode_size));
    let flags = if kind == TRUNC && pos > old {
        ON_XFS | NO_WINDOW
    } else {
        ON_XFS
    };
    let Some(mut out) = Out::new() else { return 0 };
    begin_op(&mut out, t, st, &tg, kind, pos, len, flags, true);
    out.send_rare(t);
    0
}

/// `xfs:xfs_itruncate_extents_end`: a truncate's (or a collapse's final
/// shrink's) blocks past the new size are freed, the MMAPLOCK still held.
#[tracepoint]
pub fn xfs_itrunc_end(ctx: TracePointContext) -> u32 {
    if let Some((t, st)) = op_on_event(&ctx)
        && st.op_flags & ON_XFS != 0
        && (st.op_kind == TRUNC || st.op_kind == FsOp::Collapse as u8)
        && let Some(mut out) = Out::new()
    {
        end_window(&mut out, t, st);
        out.send_named();
    }
    0
}

/// `iomap:iomap_iter`: with `IOMAP_DIRECT`, the task's DIO is in its IO
/// loop, past every early exit: its completion or queueing will follow, so
/// it leaves the tasks `fs_sys_exit` must look at (which keeps that hot
/// program's filter closed for all but a few microseconds of a DIO). With
/// `IOMAP_ZERO`, `xfs_free_file_space` zeroes the partial blocks at the
/// range's edges after unmapping the whole ones: its window ends.
#[tracepoint]
pub fn iomap_zero_iter(ctx: TracePointContext) -> u32 {
    if !pending() {
        return 0;
    }
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let flags: u32 = r.get(global!(FSOPS.iter_flags));
    if flags & global!(FSOPS.iomap_direct) != 0 {
        if let Some(st) = state(current().tid)
            && st.dio != 0
        {
            st.dio = 0;
            pending_add(-1);
        }
        return 0;
    }
    if let Some((t, st)) = op_on_event(&ctx)
        && st.op_flags & ON_XFS != 0
        && (st.op_kind == FsOp::Punch as u8 || st.op_kind == FsOp::Zero as u8)
        && let Some(r) = TpRecord::read(&ctx)
        && r.get::<u32>(global!(FSOPS.iter_flags)) & global!(FSOPS.iomap_zero) != 0
        && let Some(mut out) = Out::new()
    {
        end_window(&mut out, t, st);
        out.send_named();
    }
    0
}

/// `xfs:xfs_iunlock` of the MMAPLOCK on the operation's inode: the kernel
/// is done with it. A task in a syscall waits for its exit instead (which
/// has the return value).
#[tracepoint]
pub fn xfs_iunlock_end(ctx: TracePointContext) -> u32 {
    if let Some((t, st)) = op_on_event(&ctx)
        && st.op_flags & ON_XFS != 0
        && st.sc_kind == SC_NONE
        && let Some(r) = TpRecord::read(&ctx)
        && r.get::<u32>(global!(FSOPS.iunlock_flags)) & global!(FSOPS.xfs_mmaplock_excl) != 0
        && let Some(mut out) = Out::new()
    {
        end_op(&mut out, t, st, 0);
        out.send_named();
    }
    0
}

/// `iomap:iomap_dio_rw_queued`: the task's DIO will complete later
/// (`iomap_dio_complete` from the IO's completion).
#[tracepoint]
pub fn dio_queued(_ctx: TracePointContext) -> u32 {
    if !pending() {
        return 0;
    }
    if let Some(st) = state(current().tid)
        && st.dio != 0
    {
        st.dio = 0;
        pending_add(-1);
    }
    0
}

/// `iomap:iomap_dio_invalidate_fail`: the task's DIO falls back to
/// buffered IO (`iomap_dio_rw` returns -ENOTBLK to its filesystem).
#[tracepoint]
pub fn dio_inval_fail(_ctx: TracePointContext) -> u32 {
    if !pending() {
        return 0;
    }
    if let Some(st) = state(current().tid)
        && st.dio != 0
    {
        st.dio_ret = -ENOTBLK;
    }
    0
}
