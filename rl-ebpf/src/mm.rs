//! Memory-management tracepoints: `mmap_lock` and the page cache.
//!
//! Layouts: fields of `mmap_lock:*` and `filemap:*` records, at the offsets
//! user space read from `/sys/kernel/tracing/events/<cat>/<name>/format`
//! (on 6.18: mm@8, write@24, success@25; fault i_ino@8, s_dev@16, index@24).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use rl_common::{FLAG_NO_ORDER, FLAG_SUCCESS, FLAG_WRITE, Kind, NO_FIELD};

use crate::rangelock::{RL, RL_HELD, STACKS};
use crate::{TP, TpRecord, emit, global, traced_file, traced_task, write};

#[inline(always)]
fn mmap_lock(ctx: &TracePointContext, kind: Kind, with_success: bool) {
    let Some(t) = traced_task() else { return };
    let Some(r) = TpRecord::read(ctx) else { return };
    let mm: u64 = r.get(global!(TP.mmap_mm));
    let mut flags = 0;
    if r.get::<u8>(global!(TP.mmap_write)) != 0 {
        flags |= FLAG_WRITE;
    }
    if with_success && r.get::<u8>(global!(TP.mmap_success)) != 0 {
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

/// `mmap_lock:mmap_lock_start_locking`: a task asks for mmap_lock.
#[tracepoint]
pub fn mmap_lock_start_locking(ctx: TracePointContext) -> u32 {
    mmap_lock(&ctx, Kind::MmapLockRequest, false);
    0
}

/// `mmap_lock:mmap_lock_acquire_returned`: it got it (or a trylock failed).
#[tracepoint]
pub fn mmap_lock_acquire_returned(ctx: TracePointContext) -> u32 {
    mmap_lock(&ctx, Kind::MmapLockAcquired, true);
    0
}

/// `mmap_lock:mmap_lock_released`.
#[tracepoint]
pub fn mmap_lock_released(ctx: TracePointContext) -> u32 {
    mmap_lock(&ctx, Kind::MmapLockRelease, false);
    0
}

/// `filemap:mm_filemap_fault`: entry of `filemap_fault` for one page index.
#[tracepoint]
pub fn filemap_fault(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let ino: u64 = r.get(global!(TP.fault_ino));
    let dev: u32 = r.get(global!(TP.fault_dev));
    if !traced_file(dev, ino) {
        return 0;
    }
    let index: u64 = r.get(global!(TP.fault_index));
    emit(t, Kind::Fault, 0, dev, [ino, index, 0, 0]);
    0
}

/// `filemap:mm_filemap_add_to_page_cache`: a folio entered the page cache.
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
