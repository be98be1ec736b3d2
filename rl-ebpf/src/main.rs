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
// Map keys and values are passed by reference on purpose: passed by value
// they are spilled to fresh stack slots at each call, which defeats the
// verifier's state pruning and doubled the processed instruction count.
#![allow(clippy::needless_borrows_for_generic_args)]
// Inline assembly for context loads at literal offsets (see `TpRecord`).
#![feature(asm_experimental_arch)]

mod file;
mod flock;
mod fsops;
mod kfile;
mod mm;
mod rangelock;
mod sys;

use aya_ebpf::{EbpfContext as _, programs::TracePointContext};
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use rl_common::{
    BATCH_LEN, Batching, FLAG_KTHREAD, Filter, KernelOffsets, Kind, NO_FIELD, Record, RecordHeader,
    Staging, TP_PREFIX, TpOffsets, WAKEUP_BYTES,
};

/// Tracepoint field offsets from tracefs (set by the loader).
#[unsafe(no_mangle)]
static TP: TpOffsets = TpOffsets::NONE;

/// Kernel struct member offsets from BTF (set by the loader).
#[unsafe(no_mangle)]
static KOFF: KernelOffsets = KernelOffsets::NONE;

/// In-kernel filters (set by the loader).
#[unsafe(no_mangle)]
static FILTER: Filter = Filter {
    self_tgid: 0,
    pid_filter: 0,
    dev: 0,
    _pad: 0,
    ino: 0,
};

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

/// Per-CPU staging of records (see `write`).
#[map]
static STAGE: PerCpuArray<Staging> = PerCpuArray::with_max_entries(1, 0);

/// How to batch (set by the loader; the default writes every record directly).
#[unsafe(no_mangle)]
static BATCHING: Batching = Batching {
    len: 1,
    _pad: 0,
    flush_ns: 0,
};

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

/// rltop's own child processes between fork and exec (`record -- CMD`
/// forks the command): still rltop's work, not traced. Keyed by tgid,
/// added in `task_fork`, removed at exec or when the task is freed.
#[map]
pub(crate) static PRE_EXEC: HashMap<u32, u8> = HashMap::with_max_entries(256, 0);

/// How many entries `PRE_EXEC` has: zero nearly always, and then the hot
/// path's only cost is this array read (the verifier inlines it).
#[map]
pub(crate) static PRE_EXEC_N: Array<u64> = Array::with_max_entries(1, 0);

/// The process tree of the command rltop runs (`record -- CMD`), by tgid:
/// rltop's own fork of the command, then every process a member forks;
/// removed when the process is freed. Their forks are written as
/// [`Kind::Fork`] records, so user space knows the command's tasks.
#[map]
pub(crate) static CMD: HashMap<u32, u8> = HashMap::with_max_entries(16384, 0);

/// Whether `tgid` is one of rltop's children that has not exec'd yet.
#[inline(always)]
pub(crate) fn pre_exec(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence.
    PRE_EXEC_N.get(0).is_some_and(|n| *n != 0) && unsafe { PRE_EXEC.get(&tgid) }.is_some()
}

/// Adds `delta` (1 or -1 as u64) to `PRE_EXEC_N`.
#[inline(always)]
pub(crate) fn pre_exec_count(delta: u64) {
    if let Some(p) = PRE_EXEC_N.get_ptr_mut(0) {
        // SAFETY: a valid array slot. The BPF target has no atomic RMW in
        // `core`; rltop forks once per `record`, so updates hardly ever race,
        // and a lost one costs only a look-up per event (count too high) or
        // tracing a child before its exec (too low), never a wrong event.
        unsafe { *p = (*p).wrapping_add(delta) };
    }
}

/// The current task, if it passes the self and pid filters.
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub tid: u32,
    pub pid: u32,
}

#[inline(always)]
pub(crate) fn current() -> Task {
    let id = bpf_get_current_pid_tgid();
    Task {
        tid: id as u32,
        pid: (id >> 32) as u32,
    }
}

/// The current task if rltop traces it: never rltop itself, nor its
/// children before they exec; under `--pid`, only the chosen processes and
/// their children.
#[inline(always)]
pub(crate) fn traced_task() -> Option<Task> {
    let t = current();
    if t.pid == global!(FILTER.self_tgid) || pre_exec(t.pid) {
        return None;
    }
    pid_traced(t).then_some(t)
}

/// Whether `--pid` (if given) traces `t`.
#[inline(always)]
pub(crate) fn pid_traced(t: Task) -> bool {
    // SAFETY: the value is only tested for presence.
    global!(FILTER.pid_filter) == 0 || unsafe { PIDS.get(&t.pid) }.is_some()
}

/// Whether a file event on `dev`/`ino` passes `--dev`/`--ino`.
#[inline(always)]
pub(crate) fn traced_file(dev: u32, ino: u64) -> bool {
    let fdev = global!(FILTER.dev);
    let fino = global!(FILTER.ino);
    (fdev == 0 || fdev == dev) && (fino == 0 || fino == ino)
}

#[inline(always)]
pub(crate) fn count_drops(n: u64) {
    if let Some(p) = DROPS.get_ptr_mut(0) {
        // SAFETY: this CPU's slot. A program interrupting another on this CPU
        // could lose an increment: drops may be under-counted, never invented.
        unsafe { *p += n };
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
        let Ok(comm) = bpf_get_current_comm() else {
            return;
        };
        let mut w = [0u64; 4];
        w[0] = u64::from_ne_bytes([
            comm[0], comm[1], comm[2], comm[3], comm[4], comm[5], comm[6], comm[7],
        ]);
        w[1] = u64::from_ne_bytes([
            comm[8], comm[9], comm[10], comm[11], comm[12], comm[13], comm[14], comm[15],
        ]);
        // `PF_KTHREAD` (include/linux/sched.h, the same bit since 2.6):
        // kworkers and loop threads do work for other tasks.
        const PF_KTHREAD: u32 = 0x0020_0000;
        let off = global!(KOFF.task_flags);
        let mut flags = 0;
        if off != NO_FIELD {
            // SAFETY: a helper without preconditions.
            let task = unsafe { bpf_get_current_task() };
            if crate::file::kread::<u32>(task, off) & PF_KTHREAD != 0 {
                flags = FLAG_KTHREAD;
            }
        }
        if !write(t, Kind::Task, flags, 0, w) {
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

/// Writes one record. Records are staged per CPU and handed to the ring as
/// a batch when the batch is full, when its oldest record is older than
/// `BATCHING.flush_ns`, or when user space kicks this CPU (`flush_kick`):
/// one ring reservation per batch instead of per record. User space puts
/// the CPUs' batches back in time order. A program interrupting another on
/// this CPU (the staging is busy), or batching being off, writes straight
/// to the ring. Drops are counted per record.
#[inline(always)]
pub(crate) fn write(t: Task, kind: Kind, flags: u8, dev: u32, w: [u64; 4]) -> bool {
    let len = global!(BATCHING.len) as usize;
    if len > 1
        && let Some(st) = STAGE.get_ptr_mut(0)
    {
        // SAFETY: this CPU's staging slot, valid for the whole program run;
        // `busy` keeps a nested program on this CPU out of it.
        let st = unsafe { &mut *st };
        if st.busy == 0 {
            st.busy = 1;
            let hdr = header(t, kind, flags, dev);
            let i = st.batch.n as usize;
            let ok = i < BATCH_LEN;
            if ok {
                st.batch.records[i] = Record { hdr, w };
                st.batch.n = i as u32 + 1;
                if i == 0 {
                    st.first_ts = hdr.ts;
                }
            }
            if !ok || i + 1 >= len || hdr.ts.wrapping_sub(st.first_ts) > global!(BATCHING.flush_ns)
            {
                flush(st);
            }
            st.busy = 0;
            return ok;
        }
    }
    match EVENTS.reserve::<Record>(0) {
        Some(mut entry) => {
            entry.write(Record {
                hdr: header(t, kind, flags, dev),
                w,
            });
            entry.submit(submit_flags());
            true
        }
        None => {
            count_drops(1);
            false
        }
    }
}

/// Hands this CPU's staged records to the ring.
#[inline(always)]
pub(crate) fn flush(st: &mut Staging) {
    let n = st.batch.n;
    if n == 0 {
        return;
    }
    if EVENTS
        .output::<rl_common::Batch>(&st.batch, submit_flags())
        .is_err()
    {
        count_drops(n as u64);
    }
    st.batch.n = 0;
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

/// A formatted tracepoint record, read in place.
///
/// The verifier accepts context loads only at offsets that are instruction
/// immediates ("dereference of modified ctx ptr" otherwise), while rltop's
/// offsets come from tracefs at load time. So each read is a `match` over
/// every aligned offset in the first [`TP_PREFIX`] bytes, each arm a load
/// at a literal offset. The offset is a frozen read-only global, which the
/// verifier knows as a constant, so it walks only the arm taken; no helper
/// call and no copy per field.
pub(crate) struct TpRecord<'a> {
    ctx: &'a TracePointContext,
}

macro_rules! ctx_load {
    ($ctx:expr, $off:expr, $t:ty, $w:literal, [$($o:literal),*]) => {{
        let p = $ctx.as_ptr();
        match $off {
            // SAFETY: a load from the tracepoint record at a literal offset
            // within TP_PREFIX bytes, aligned to its size; the verifier checks
            // it against the context's bounds. Inline assembly, because LLVM
            // merges plain (even volatile) loads of the arms into one load at
            // a computed offset, which the verifier rejects.
            $($o => unsafe {
                let v: u64;
                core::arch::asm!(concat!("{v} = *(", $w, " *)({p} + ", stringify!($o), ")"), v = out(reg) v, p = in(reg) p, options(readonly, nostack, preserves_flags));
                v as $t
            },)*
            _ => <$t>::default(),
        }
    }};
}

// The match arms below cover exactly the first TP_PREFIX bytes.
const _: () = assert!(TP_PREFIX == 64);

/// Integer types a tracepoint field is read as.
pub(crate) trait TpField: Copy + Default {
    fn load(ctx: &TracePointContext, off: u32) -> Self;
}

impl TpField for u64 {
    #[inline(always)]
    fn load(ctx: &TracePointContext, off: u32) -> u64 {
        ctx_load!(ctx, off, u64, "u64", [8, 16, 24, 32, 40, 48, 56])
    }
}

impl TpField for i64 {
    #[inline(always)]
    fn load(ctx: &TracePointContext, off: u32) -> i64 {
        u64::load(ctx, off) as i64
    }
}

impl TpField for u32 {
    #[inline(always)]
    fn load(ctx: &TracePointContext, off: u32) -> u32 {
        ctx_load!(
            ctx,
            off,
            u32,
            "u32",
            [8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]
        )
    }
}

impl TpField for i32 {
    #[inline(always)]
    fn load(ctx: &TracePointContext, off: u32) -> i32 {
        u32::load(ctx, off) as i32
    }
}

impl TpField for u8 {
    #[inline(always)]
    fn load(ctx: &TracePointContext, off: u32) -> u8 {
        ctx_load!(
            ctx,
            off,
            u8,
            "u8",
            [
                8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49,
                50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63
            ]
        )
    }
}

impl<'a> TpRecord<'a> {
    #[inline(always)]
    pub(crate) fn read(ctx: &'a TracePointContext) -> Option<TpRecord<'a>> {
        Some(TpRecord { ctx })
    }

    /// The field at `off` (an offset the catalog checked: aligned, inside
    /// the first TP_PREFIX bytes), or `T::default()` for any other offset.
    #[inline(always)]
    pub(crate) fn get<T: TpField>(&self, off: u32) -> T {
        T::load(self.ctx, off)
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
