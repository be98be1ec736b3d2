//! rltop's eBPF programs.
//!
//! Each program turns one kernel tracepoint into one fixed-size record in the
//! `EVENTS` ring buffer (`rl-common` documents every record). Programs are
//! small and bounded: no loops, a handful of map look-ups at most.
//!
//! Nothing here knows a kernel layout. Tracepoint field offsets are read by
//! user space from tracefs `format` files (`TP`), and struct member offsets
//! for the raw tracepoints from BTF (`KOFF`); both are read-only globals set
//! at load time. A program whose offsets are missing is never attached.
//!
//! Cost rules: filter first (self, pid, dev/ino), write a task's name once
//! (`SEEN`), submit records without waking the reader unless the ring is
//! filling up, count what does not fit (`DROPS`), and never log per event.
#![no_std]
#![no_main]

mod file;
mod mm;
mod sys;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use aya_ebpf::{EbpfContext as _, helpers::bpf_probe_read_kernel, programs::TracePointContext};
use rl_common::{Filter, KernelOffsets, Kind, Record, RecordHeader, TP_PREFIX, TpOffsets, WAKEUP_BYTES};

/// Tracepoint field offsets from tracefs (set by the loader).
#[unsafe(no_mangle)]
static TP: TpOffsets = TpOffsets::NONE;

/// Kernel struct member offsets from BTF (set by the loader).
#[unsafe(no_mangle)]
static KOFF: KernelOffsets = KernelOffsets::NONE;

/// In-kernel filters (set by the loader).
#[unsafe(no_mangle)]
static FILTER: Filter = Filter { self_tgid: 0, pid_filter: 0, dev: 0, _pad: 0, ino: 0 };

/// Reads one field of a loader-set global. The volatile read keeps the
/// compiler from folding the default value in; the verifier sees a load from
/// a frozen read-only map and treats it as the constant the loader wrote.
macro_rules! global {
    ($g:ident . $f:ident) => {
        // SAFETY: `$g` is a plain static of integers; reading one field of it
        // through a raw pointer to itself is always valid.
        unsafe { core::ptr::read_volatile(&raw const $g.$f) }
    };
}
pub(crate) use global;

/// The one ring buffer every record goes through. Its size is set by the loader.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Records that did not fit in `EVENTS`, per CPU (index 0).
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Tasks whose name was already written. LRU: a forgotten task is simply
/// named again. Cleared on rename (exec renames too) and when the task is freed.
#[map]
static SEEN: LruHashMap<u32, u8> = LruHashMap::with_max_entries(32768, 0);

/// Per CPU, the last task named and the name epoch then: consecutive events
/// on a CPU mostly come from one task, and an array look-up is far cheaper
/// than the `SEEN` hash look-up it saves.
#[map]
static LAST_NAMED: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Bumped whenever a `SEEN` entry is removed, so `LAST_NAMED` entries made
/// before it are not trusted.
#[map]
static NAME_EPOCH: Array<u64> = Array::with_max_entries(1, 0);

/// Processes traced under `--pid` (tgids), grown by fork.
#[map]
static PIDS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// The current task, if it passes the self and pid filters.
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub tid: u32,
    pub pid: u32,
}

#[inline(always)]
pub(crate) fn current() -> Task {
    let id = bpf_get_current_pid_tgid();
    Task { tid: id as u32, pid: (id >> 32) as u32 }
}

/// The current task if rltop traces it: never rltop itself; under `--pid`,
/// only the chosen processes and their children.
#[inline(always)]
pub(crate) fn traced_task() -> Option<Task> {
    let t = current();
    if t.pid == global!(FILTER.self_tgid) {
        return None;
    }
    // SAFETY: the value is only tested for presence.
    if global!(FILTER.pid_filter) != 0 && unsafe { PIDS.get(&t.pid) }.is_none() {
        return None;
    }
    Some(t)
}

/// Whether a file event on `dev`/`ino` passes `--dev`/`--ino`.
#[inline(always)]
pub(crate) fn traced_file(dev: u32, ino: u64) -> bool {
    let fdev = global!(FILTER.dev);
    let fino = global!(FILTER.ino);
    (fdev == 0 || fdev == dev) && (fino == 0 || fino == ino)
}

#[inline(always)]
fn count_drop() {
    if let Some(p) = DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot of this CPU; programs do not nest on one CPU
        // for the tracepoints we attach, and a lost increment only under-counts.
        unsafe { *p += 1 };
    }
}

/// Submit flags: wake the reader only when the ring is filling up; it polls
/// on a short timer otherwise. One wake-up per batch instead of per record.
#[inline(always)]
pub(crate) fn submit_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub(crate) fn header(t: Task, kind: Kind, flags: u8, dev: u32) -> RecordHeader {
    RecordHeader {
        // SAFETY: helpers without preconditions.
        ts: unsafe { bpf_ktime_get_ns() },
        tid: t.tid,
        pid: t.pid,
        kind: kind as u8,
        flags,
        // SAFETY: as above.
        cpu: unsafe { bpf_get_smp_processor_id() } as u16,
        dev,
    }
}

/// Writes a `Task` record the first time `t` is seen.
#[inline(always)]
fn name_once(t: Task) {
    let epoch = NAME_EPOCH.get(0).copied().unwrap_or(0);
    let last = LAST_NAMED.get_ptr_mut(0);
    if let Some(last) = last {
        // SAFETY: this CPU's slot, valid for the program's run.
        if unsafe { (*last)[0] == t.tid as u64 && (*last)[1] == epoch } {
            return;
        }
    }
    // SAFETY: presence test only.
    if unsafe { SEEN.get(&t.tid) }.is_none() {
        let Ok(comm) = bpf_get_current_comm() else { return };
        let mut w = [0u64; 4];
        w[0] = u64::from_ne_bytes([comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7]]);
        w[1] = u64::from_ne_bytes([comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15]]);
        if !write(t, Kind::Task, 0, 0, w) {
            return;
        }
        let _ = SEEN.insert(&t.tid, &1, 0);
    }
    if let Some(last) = last {
        // SAFETY: as above.
        unsafe { *last = [t.tid as u64, epoch] };
    }
}

/// Forgets that `tid` was named (its name changed, or it is gone).
#[inline(always)]
pub(crate) fn forget_name(tid: u32) {
    if SEEN.remove(&tid).is_ok()
        && let Some(e) = NAME_EPOCH.get_ptr_mut(0)
    {
        // SAFETY: a valid array slot. Racing bumps may collapse into one, but
        // the epoch still changes, which is all a reader checks.
        unsafe { *e += 1 };
    }
}

/// Writes one record; counts a drop when the ring is full. The timestamp is
/// taken after the reservation, so ring order and time order agree but for
/// a reserving CPU being interrupted between the two.
#[inline(always)]
pub(crate) fn write(t: Task, kind: Kind, flags: u8, dev: u32, w: [u64; 4]) -> bool {
    match EVENTS.reserve::<Record>(0) {
        Some(mut entry) => {
            entry.write(Record { hdr: header(t, kind, flags, dev), w });
            entry.submit(submit_flags());
            true
        }
        None => {
            count_drop();
            false
        }
    }
}

/// Emits an event of the current task `t`, naming the task first if needed.
#[inline(always)]
pub(crate) fn emit(t: Task, kind: Kind, flags: u8, dev: u32, w: [u64; 4]) {
    name_once(t);
    write(t, kind, flags, dev, w);
}

/// Emits an event that belongs to an operation rather than to the current
/// task (a DIO completion in irq or kworker context): no name record, since
/// the current task is incidental.
#[inline(always)]
pub(crate) fn emit_detached(kind: Kind, flags: u8, w: [u64; 4]) {
    write(current(), kind, flags, 0, w);
}

/// The first [`TP_PREFIX`] bytes of a formatted tracepoint record, copied
/// with one helper call; fields are then plain loads from the stack. (The
/// verifier forbids loads from the context at offsets that are not
/// immediates, and one copy is cheaper than one per field.)
pub(crate) struct TpRecord {
    // u64s, so that naturally aligned fields can be loaded whole: BPF has no
    // unaligned loads, and byte-wise assembly costs ~20 instructions a field.
    buf: [u64; TP_PREFIX / 8],
}

impl TpRecord {
    #[inline(always)]
    pub(crate) fn read(ctx: &TracePointContext) -> Option<TpRecord> {
        // SAFETY: reads TP_PREFIX bytes of the tracepoint record; the helper
        // checks the access, and the perf trace buffer is far larger.
        let buf = unsafe { bpf_probe_read_kernel(ctx.as_ptr() as *const [u64; TP_PREFIX / 8]) }.ok()?;
        Some(TpRecord { buf })
    }

    /// The `T` at `off`, or `T::default()` when it would not lie inside the
    /// copied prefix or is not aligned to its size (user space never passes
    /// such offsets: the catalog checks them).
    #[inline(always)]
    pub(crate) fn get<T: Copy + Default>(&self, off: u32) -> T {
        let off = off as usize;
        let size = core::mem::size_of::<T>();
        if off + size > TP_PREFIX || off % size != 0 {
            return T::default();
        }
        // SAFETY: in bounds and aligned (checked above; `buf` is 8-aligned);
        // T is an integer type, valid for any bytes.
        unsafe { self.buf.as_ptr().cast::<u8>().add(off).cast::<T>().read() }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
