//! Range locks of patched kernels, on kprobes (profiles kara2013, bueso2017,
//! bueso2019, lustre, or a user's TOML profile).
//!
//! One program per role, attached by user space to every symbol of the
//! profile with that role:
//!
//! - `rl_lock_excl` / `rl_lock_read` / `rl_lock_write` (kprobes on the lock,
//!   trylock, interruptible and killable functions): `rl_request` with the
//!   range read through the lock pointer;
//! - `rl_ret_void` / `rl_ret_try` / `rl_ret_errno` (kretprobes on the same):
//!   `rl_acquired`, or `rl_trylock_failed` (a trylock returned 0), or
//!   `rl_cancel` (an interruptible/killable lock returned an error);
//! - `rl_unlock` (kprobe on the unlock functions): `rl_release`;
//! - `rl_downgrade` (kprobe on `range_downgrade_write`): the write lock
//!   becomes a read lock in one step (`rl_downgrade`);
//! - `rl_tree_init` (kprobe on the tree's init): `rl_tree_init`;
//! - `rl_insert` (kprobe on the profile's insertion function,
//!   `interval_tree_insert(node, root)`): `rl_queued`, when the node is
//!   that of the calling task's pending lock call (`lock + RL.insert_node_off`).
//!
//! Layouts: the tree and lock are function arguments `tree_arg` and
//! `lock_arg` (x86-64 registers, read from `pt_regs` at literal offsets);
//! the range is read at `lock + start_off` / `lock + last_off` and shifted
//! right by `shift` into page indices. User space resolves these from BTF
//! (`struct range_lock`/`range_rwlock` members) when the kernel or module
//! has BTF, else from the profile (rustc cannot emit CO-RE relocations),
//! and writes them into the one-entry map `RL_LAYOUT` when the profile
//! attaches: at start-up, or later, when the module with the profile's
//! functions is loaded while recording. Hence a map, not a read-only
//! global: an array lookup the verifier inlines, per event. The read-only
//! `RL` says only whether a profile was attached at start-up
//! (`RL.order_check`, read by the mmap_lock and page-cache lock programs).
//!
//! Entry and return are paired per thread in `RL_PENDING`: a task is inside
//! at most one lock call at a time.
//!
//! In-kernel ordering check: `RL_HELD` counts, per task, the range locks it
//! acquired and has not released (the release may come from another task, a
//! DIO completion: `RL_OWNER` remembers who acquired each lock). The
//! `mmap_lock_start_locking` program looks its task up there (see `mm.rs`).

use aya_ebpf::{
    EbpfContext as _,
    macros::{kprobe, kretprobe, map},
    maps::{Array, HashMap, LruHashMap, StackTrace},
    programs::{ProbeContext, RetProbeContext},
};
use rl_common::{Kind, Mode, RangeLockLayout};

use crate::{Task, current, emit, global, pid_traced, write};

/// Whether a profile was attached at start-up (`order_check`; set by the
/// loader). The range-lock programs read [`RL_LAYOUT`].
#[unsafe(no_mangle)]
pub(crate) static RL: RangeLockLayout = RangeLockLayout::NONE;

/// How to read the lock functions' arguments: entry 0, written by user
/// space before it attaches a profile's probes.
#[map]
static RL_LAYOUT: Array<RangeLockLayout> = Array::with_max_entries(1, 0);

/// The layout of the attached profile (a copy: eight integers).
#[inline(always)]
fn layout() -> Option<RangeLockLayout> {
    RL_LAYOUT.get(0).copied()
}

/// Lock calls in progress: thread id -> (tree, lock), from entry to return.
#[map]
static RL_PENDING: HashMap<u32, [u64; 2]> = HashMap::with_max_entries(8192, 0);

/// Who acquired each held lock (lock address -> thread id), so that a
/// release from another task (DIO completion) decrements the right count.
/// LRU: a lock whose release we never saw cannot fill it.
#[map]
static RL_OWNER: LruHashMap<u64, u32> = LruHashMap::with_max_entries(65536, 0);

/// Range locks held per thread. Entries stay at 0 once a task released
/// everything (a later lookup then reads 0); LRU bounds the map, and losing
/// an entry can only hide an inversion, never invent one.
#[map]
pub(crate) static RL_HELD: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Kernel stacks of ordering evidence, symbolized by user space.
#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);

/// Argument `n` (0..=5) of a kprobe, from `pt_regs` at a literal offset in
/// each arm (a load at a computed context offset is rejected by the
/// verifier, so `n` picks an arm, never an offset).
#[inline(always)]
fn arg(ctx: &ProbeContext, n: u32) -> u64 {
    let p = ctx.as_ptr();
    macro_rules! reg {
        ($off:literal) => {
            // SAFETY: a load from the kprobe's pt_regs at the literal offset
            // of one argument register (x86-64 `struct pt_regs`: rdi@112,
            // rsi@104, rdx@96, rcx@88, r8@72, r9@64); the verifier checks it
            // against the context's bounds.
            unsafe {
                let v: u64;
                core::arch::asm!(concat!("{v} = *(u64 *)({p} + ", stringify!($off), ")"), v = out(reg) v, p = in(reg) p, options(readonly, nostack, preserves_flags));
                v
            }
        };
    }
    match n {
        0 => reg!(112),
        1 => reg!(104),
        2 => reg!(96),
        3 => reg!(88),
        4 => reg!(72),
        5 => reg!(64),
        _ => 0,
    }
}

/// Reads a `u64` at `base + off` in kernel memory; 0 when unreadable
/// (branch-free, see `file::kread`).
#[inline(always)]
fn kread_u64(base: u64, off: u32) -> u64 {
    crate::file::kread(base, off)
}

#[inline(always)]
fn tree_lock(ctx: &ProbeContext, rl: &RangeLockLayout) -> (u64, u64) {
    (arg(ctx, rl.tree_arg), arg(ctx, rl.lock_arg))
}

/// Adds `delta` to the held count of `tid`.
#[inline(always)]
fn held_add(tid: u32, delta: i32) {
    match RL_HELD.get_ptr_mut(&tid) {
        Some(p) => {
            // SAFETY: `p` is a valid map value for the program's run.
            let now = unsafe { core::ptr::read_volatile(p) };
            let d: i64 = if delta > 0 {
                1
            } else if now > 0 {
                -1
            } else {
                0
            };
            // SAFETY: an atomic add (BPF_ATOMIC | BPF_ADD) on that value: a
            // DIO completion on another CPU may release one of this task's
            // locks while it takes another. The BPF target has no atomic
            // read-modify-write in `core`, hence the assembly.
            unsafe {
                core::arch::asm!("lock *(u64 *)({p} + 0) += {d}", p = in(reg) p, d = in(reg) d, options(nostack, preserves_flags));
            }
        }
        None if delta > 0 => {
            let _ = RL_HELD.insert(&tid, &1, 0);
        }
        None => {}
    }
}

/// Trees already linked to their inode by a `tree` event. LRU: a tree
/// forgotten is linked again, which is harmless.
#[map]
static TREES_SEEN: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

/// Emits a `tree` event the first time `tree` is seen, when the profile
/// says how a tree leads to its inode (`tree_inode`): the tree is a
/// member at `tree_member_off` of a struct that holds the inode pointer,
/// or embeds the inode, at `inode_off` (offsets from BTF, or the
/// profile's). The inode's `i_ino`, `i_sb->s_dev` are read at `KOFF`.
#[inline(always)]
fn link_tree(t: crate::Task, tree: u64, rl: &RangeLockLayout) {
    let how = rl.tree_inode;
    if how == rl_common::TREE_INODE_NONE {
        return;
    }
    // SAFETY: presence test only.
    if unsafe { TREES_SEEN.get(&tree) }.is_some() {
        return;
    }
    let _ = TREES_SEEN.insert(&tree, &1, 0);
    let base = tree.wrapping_sub(rl.tree_member_off as u64);
    let inode = if how == rl_common::TREE_INODE_POINTER {
        kread_u64(base, rl.inode_off)
    } else {
        base.wrapping_add(rl.inode_off as u64)
    };
    if inode == 0 {
        return;
    }
    let (dev, ino) = crate::file::inode_dev_ino(inode);
    // The task was named by the request just emitted.
    write(t, Kind::Tree, 0, dev, [tree, ino, 0, 0]);
}

/// The current task, if `--pid` traces it. Range-lock events are kept
/// whoever runs them, rltop itself included: an unlock may run in softirq
/// (an hrtimer) on top of rltop's own thread, and a program here cannot
/// tell that from rltop's own work on every kernel (in_interrupt() needs
/// the per-CPU preempt count). rltop's own range locks, on a kernel whose
/// page cache takes them, are a few per written chunk, not a feedback loop.
#[inline(always)]
fn range_task() -> Option<Task> {
    let t = current();
    pid_traced(t).then_some(t)
}

#[inline(always)]
fn request(ctx: &ProbeContext, mode: Mode) {
    let Some(t) = range_task() else { return };
    let Some(rl) = layout() else { return };
    let (tree, lock) = tree_lock(ctx, &rl);
    let shift = rl.shift & 63;
    let start = kread_u64(lock, rl.start_off) >> shift;
    let last = kread_u64(lock, rl.last_off) >> shift;
    let _ = RL_PENDING.insert(&t.tid, &[tree, lock], 0);
    emit(t, Kind::RlRequest, mode as u8, 0, [tree, lock, start, last]);
    link_tree(t, tree, &rl);
}

/// Entry of an exclusive lock (Kara, Lustre).
#[kprobe]
pub fn rl_lock_excl(ctx: ProbeContext) -> u32 {
    request(&ctx, Mode::Excl);
    0
}

/// Entry of a read lock (Bueso).
#[kprobe]
pub fn rl_lock_read(ctx: ProbeContext) -> u32 {
    request(&ctx, Mode::Read);
    0
}

/// Entry of a write lock (Bueso).
#[kprobe]
pub fn rl_lock_write(ctx: ProbeContext) -> u32 {
    request(&ctx, Mode::Write);
    0
}

/// What a lock function's return value means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ret {
    /// `void`: it returns holding the lock.
    Void,
    /// Trylock: non-zero = acquired, 0 = failed.
    Try,
    /// Interruptible/killable: 0 = acquired, an error = cancelled.
    Errno,
}

#[inline(always)]
fn returned(ctx: &RetProbeContext, how: Ret) {
    let t = current();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(&[tree, lock]) = (unsafe { RL_PENDING.get(&t.tid) }) else {
        return;
    };
    let _ = RL_PENDING.remove(&t.tid);
    let rc = ctx.ret::<u64>() as i32;
    let kind = match how {
        Ret::Void => Kind::RlAcquired,
        Ret::Try if rc != 0 => Kind::RlAcquired,
        Ret::Try => Kind::RlTrylockFailed,
        Ret::Errno if rc == 0 => Kind::RlAcquired,
        Ret::Errno => Kind::RlCancel,
    };
    // Held counts for the mmap_lock program, which reads them only when a
    // profile was attached at start-up (`RL` is read-only).
    if kind == Kind::RlAcquired && global!(RL.order_check) != 0 {
        held_add(t.tid, 1);
        let _ = RL_OWNER.insert(&lock, &t.tid, 0);
    }
    // The request's place in the queue, where the profile names the
    // lock's sequence number (set under the tree's lock as it inserted),
    // in the same record. A failed trylock never entered the queue.
    let (flags, seq) = match layout() {
        Some(rl) if kind != Kind::RlTrylockFailed && rl.seq_off != rl_common::NO_FIELD => {
            (rl_common::FLAG_QUEUE_SEQ, kread_u64(lock, rl.seq_off))
        }
        _ => (0, 0),
    };
    emit(t, kind, flags, 0, [tree, lock, seq, 0]);
}

/// Return of a `void` lock function.
#[kretprobe]
pub fn rl_ret_void(ctx: RetProbeContext) -> u32 {
    returned(&ctx, Ret::Void);
    0
}

/// Return of a trylock.
#[kretprobe]
pub fn rl_ret_try(ctx: RetProbeContext) -> u32 {
    returned(&ctx, Ret::Try);
    0
}

/// Return of an interruptible or killable lock.
#[kretprobe]
pub fn rl_ret_errno(ctx: RetProbeContext) -> u32 {
    returned(&ctx, Ret::Errno);
    0
}

/// Forgets who held `lock`, decrementing the acquirer's held count.
#[inline(always)]
fn disown(lock: u64) {
    // SAFETY: the value is copied out before the entry is removed.
    if let Some(&owner) = unsafe { RL_OWNER.get(&lock) } {
        let _ = RL_OWNER.remove(&lock);
        held_add(owner, -1);
    }
}

/// Entry of an unlock. The releasing task may not be the acquirer (DIO
/// completion in a kworker); the event is the releaser's.
#[kprobe]
pub fn rl_unlock(ctx: ProbeContext) -> u32 {
    let Some(rl) = layout() else { return 0 };
    let (tree, lock) = tree_lock(&ctx, &rl);
    disown(lock);
    let Some(t) = range_task() else { return 0 };
    emit(t, Kind::RlRelease, 0, 0, [tree, lock, 0, 0]);
    0
}

/// Entry of the tree's init function (`range_lock_tree_init(tree)`, its
/// first argument): every lock of that tree from now on is in the trace.
#[kprobe]
pub fn rl_tree_init(ctx: ProbeContext) -> u32 {
    let Some(t) = range_task() else { return 0 };
    let tree = arg(&ctx, 0);
    // A new life for the struct: link it to its inode again.
    let _ = TREES_SEEN.remove(&tree);
    emit(t, Kind::RlTreeInit, 0, 0, [tree, 0, 0, 0]);
    0
}

/// Entry of the insertion function (`interval_tree_insert(node, root)`),
/// called by the lock function under the tree's spinlock: the request
/// enters the queue now, so these events are in queue order (a request
/// event fires at the call's entry, before `might_sleep()` may preempt it).
/// Other users of the function in the kernel cost one map lookup: only the
/// node of this task's pending lock call is reported.
#[kprobe]
pub fn rl_insert(ctx: ProbeContext) -> u32 {
    let t = current();
    // SAFETY: the value is copied out at once.
    let Some(&[tree, lock]) = (unsafe { RL_PENDING.get(&t.tid) }) else {
        return 0;
    };
    let Some(rl) = layout() else { return 0 };
    let node = arg(&ctx, 0);
    if node.wrapping_sub(rl.insert_node_off as u64) != lock {
        return 0;
    }
    emit(t, Kind::RlQueued, 0, 0, [tree, lock, 0, 0]);
    0
}

/// Entry of `range_downgrade_write`: the write hold becomes a read hold in
/// one step, keeping its place in the queue (not a release and a new
/// request, which would queue it behind the writers it still holds off).
#[kprobe]
pub fn rl_downgrade(ctx: ProbeContext) -> u32 {
    let Some(t) = range_task() else { return 0 };
    let Some(rl) = layout() else { return 0 };
    let (tree, lock) = tree_lock(&ctx, &rl);
    emit(t, Kind::RlDowngrade, 0, 0, [tree, lock, 0, 0]);
    0
}
