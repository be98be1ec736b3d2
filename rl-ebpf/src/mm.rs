//! Memory-management tracepoints: `mmap_lock` and the page cache.
//!
//! `mmap_lock:*` are raw tracepoints and `mm_filemap_fault` a BTF-typed
//! one: they get the C arguments (`mmap_lock_*(struct mm_struct *mm, bool write[, bool
//! success])`, `mm_filemap_fault(struct address_space *mapping, pgoff_t
//! index)`, prototypes checked against BTF by user space). That costs less
//! than a formatted record, which the kernel fills before any program runs
//! (on 6.1 the `mmap_lock` records even format a memcg path), and lets the
//! fault program learn its file in the same run.
//!
//! Layouts: the fault's `mapping->host->{i_ino, i_sb->s_dev}` at BTF offsets
//! (`KOFF`), loaded directly (`btf_u64`); the BTF-typed page-cache add's `folio->{mapping,
//! index, flags, _flags_1}` and `PG_head` the same way; the formatted add's record fields at the tracefs offsets
//! user space read from its format file (on 6.18: i_ino@16, index@24,
//! s_dev@32, order@36).

use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use rl_common::{FLAG_NO_ORDER, FLAG_SUCCESS, FLAG_WRITE, Kind, NO_FIELD};

use crate::file::{btf_u8, btf_u32, btf_u64};
use crate::rangelock::{RL, RL_HELD, STACKS};
use crate::{KOFF, TP, TpRecord, emit, global, traced_file, traced_task, write};

/// The raw tracepoint argument at byte offset `$off` of the context (a
/// literal). Assembly: LLVM would merge the loads of two branches into one
/// at a computed offset, which the verifier rejects for the context.
macro_rules! raw_arg {
    ($ctx:expr, $off:literal) => {{
        let p = aya_ebpf::EbpfContext::as_ptr($ctx);
        // SAFETY: a load of one u64 argument slot of the raw tracepoint's
        // context, at a literal offset the verifier checks against the
        // tracepoint's argument count.
        unsafe {
            let v: u64;
            core::arch::asm!(concat!("{v} = *(u64 *)({p} + ", stringify!($off), ")"), v = out(reg) v, p = in(reg) p, options(readonly, nostack, preserves_flags));
            v
        }
    }};
}

#[inline(always)]
fn mmap_lock(ctx: &RawTracePointContext, kind: Kind, with_success: bool) {
    let Some(t) = traced_task() else { return };
    let mm: u64 = ctx.arg(0);
    // `(mm, write[, success])`, or on 6.1 `(mm, memcg_path, write[,
    // success])`: the shift is a constant to the verifier, which walks only
    // the branch taken (context loads need literal offsets).
    // (A load past the prototype's last argument fails the attach, even
    // on a branch not taken: the verifier's `max_ctx_offset`.)
    let shifted = global!(KOFF.mmap_arg_shift) != 0;
    let w = if shifted {
        raw_arg!(ctx, 16)
    } else {
        raw_arg!(ctx, 8)
    };
    let success = match (with_success, shifted) {
        (false, _) => 0,
        (true, true) => raw_arg!(ctx, 24),
        (true, false) => raw_arg!(ctx, 16),
    };
    let mut flags = 0;
    // A `bool` argument fills its u64 slot with 0 or 1.
    if w & 0xff != 0 {
        flags |= FLAG_WRITE;
    }
    if success & 0xff != 0 {
        flags |= FLAG_SUCCESS;
    }
    emit(t, kind, flags, 0, [mm, 0, 0, 0]);
    // In-kernel ordering check (mmap_lock ranks above the range lock): only
    // with a range-lock profile attached (`RL.order_check`, a constant to
    // the verifier, so without one this is dead code), and then one hash
    // look-up of the task; the stack is taken only when it holds a lock.
    if kind == Kind::MmapLockRequest && global!(RL.order_check) != 0 {
        // SAFETY: the value is copied out at once.
        if let Some(&held) = unsafe { RL_HELD.get(&t.tid) }
            && held > 0
        {
            use aya_ebpf::programs::tracing::StackIdContext as _;
            let stack = ctx.get_stackid(&STACKS, 0).unwrap_or(-1);
            // The task was named by the request just emitted.
            write(
                t,
                Kind::OrderEvidence,
                flags,
                0,
                [mm, stack as u64, held, 0],
            );
        }
    }
}

/// raw `mmap_lock_start_locking(mm, write)`: a task asks for mmap_lock.
#[raw_tracepoint(tracepoint = "mmap_lock_start_locking")]
pub fn mmap_lock_start_locking(ctx: RawTracePointContext) -> i32 {
    mmap_lock(&ctx, Kind::MmapLockRequest, false);
    0
}

/// raw `mmap_lock_acquire_returned(mm, write, success)`: it got it (or a
/// trylock failed).
#[raw_tracepoint(tracepoint = "mmap_lock_acquire_returned")]
pub fn mmap_lock_acquire_returned(ctx: RawTracePointContext) -> i32 {
    mmap_lock(&ctx, Kind::MmapLockAcquired, true);
    0
}

/// raw `mmap_lock_released(mm, write)`.
#[raw_tracepoint(tracepoint = "mmap_lock_released")]
pub fn mmap_lock_released(ctx: RawTracePointContext) -> i32 {
    mmap_lock(&ctx, Kind::MmapLockRelease, false);
    0
}

/// A BTF-typed mapping's file, as the filemap tracepoints' records hold
/// it (include/trace/events/filemap.h): `mapping->host` (0 for none), its
/// `i_ino` and its `i_sb->s_dev`.
#[inline(always)]
fn mapping_file(mapping: u64) -> (u64, u64, u32) {
    let host = btf_u64(mapping, global!(KOFF.mapping_host));
    let ino = btf_u64(host, global!(KOFF.inode_ino));
    let sb = btf_u64(host, global!(KOFF.inode_sb));
    (host, ino, btf_u32(sb, global!(KOFF.sb_dev)))
}

/// `mm_filemap_fault(mapping, index)`, BTF-typed (`tp_btf`): entry of
/// `filemap_fault` for one page index. Its pointer arguments are typed,
/// so `mapping->host->...` are plain loads the verifier checks against
/// BTF, not `bpf_probe_read_kernel` calls (four of them took about a third
/// of this program's time, on the hottest probe of a faulting workload).
#[btf_tracepoint(function = "mm_filemap_fault")]
pub fn filemap_fault(ctx: BtfTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let mapping: u64 = ctx.arg(0);
    let index: u64 = ctx.arg(1);
    let (host, ino, dev) = mapping_file(mapping);
    if host == 0 || !traced_file(dev, ino) {
        return 0;
    }
    emit(t, Kind::Fault, 0, dev, [ino, index, 0, 0]);
    crate::flock::learn_host(t, mapping, host);
    0
}

/// `mm_filemap_add_to_page_cache(struct folio *folio)`, BTF-typed
/// (`tp_btf`): a folio entered the page cache. What the formatted record
/// holds (include/trace/events/filemap.h), read from the folio with plain
/// verifier-checked loads, and the file learned in the same run: one
/// program instead of the formatted one (whose record the kernel fills
/// first) and its learner. The tracepoint is in `__filemap_add_folio`
/// after `folio->mapping = mapping`: never an anonymous folio's tagged
/// pointer.
#[btf_tracepoint(function = "mm_filemap_add_to_page_cache")]
pub fn filemap_add_btf(ctx: BtfTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let folio: u64 = ctx.arg(0);
    let mapping = btf_u64(folio, global!(KOFF.folio_mapping));
    let (host, ino, dev) = mapping_file(mapping);
    if host == 0 || !traced_file(dev, ino) {
        return 0;
    }
    let index = btf_u64(folio, global!(KOFF.folio_index));
    // `folio_order()`: 0 unless the folio is large (`PG_head` set), then
    // the low byte of `_flags_1` (`folio_large_order()`), or before 6.6
    // ("mm: free up a word in the first tail page") its own byte
    // `_folio_order` (6.1 has both members; only this one is the order).
    let large = (btf_u64(folio, global!(KOFF.folio_flags)) >> global!(KOFF.folio_head_bit)) & 1;
    let order = if large == 0 {
        0
    } else if global!(KOFF.folio_order) != NO_FIELD {
        btf_u8(folio, global!(KOFF.folio_order)) as u64
    } else {
        btf_u64(folio, global!(KOFF.folio_flags1)) & 0xff
    };
    emit(t, Kind::PageAdd, 0, dev, [ino, index, order, 0]);
    crate::flock::learn_host(t, mapping, host);
    0
}

/// `filemap:mm_filemap_add_to_page_cache`: a folio entered the page cache
/// (where the BTF-typed program cannot be used).
#[tracepoint]
pub fn filemap_add(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let ino: u64 = r.get(global!(TP.add_ino));
    let dev: u32 = r.get(global!(TP.add_dev));
    if !traced_file(dev, ino) {
        return 0;
    }
    let index: u64 = r.get(global!(TP.add_index));
    let order: u8 = r.get(global!(TP.add_order));
    // Without the field (older kernels) the folio's size is unknown.
    let flags = if global!(TP.add_order) == NO_FIELD {
        FLAG_NO_ORDER
    } else {
        0
    };
    emit(t, Kind::PageAdd, flags, dev, [ino, index, order as u64, 0]);
    0
}
