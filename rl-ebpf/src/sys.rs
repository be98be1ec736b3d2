//! Kernel lock contention, console markers, and task life cycle.
//!
//! Layouts (tracefs formats on 6.18): `lock:contention_begin` lock_addr@8,
//! flags@16; `contention_end` lock_addr@8, ret@16; `printk:console` msg is a
//! `__data_loc char[]` (u32: offset in the low 16 bits, length in the high);
//! `sched_process_fork` child_pid; `task_rename` pid.

use aya_ebpf::{
    EbpfContext as _, helpers::bpf_probe_read_kernel_buf, macros::tracepoint,
    programs::TracePointContext,
};
use rl_common::{Kind, MARKER_TEXT_LEN, MarkerRecord};

use crate::{
    EVENTS, FILTER, PIDS, SEEN, STAGE, TP, TpRecord, count_drops, current, emit, flush,
    forget_name, global, header, submit_flags, traced_task,
};

/// `lock:contention_begin`: any kernel lock (spinlock, mutex, rwsem) contended.
#[tracepoint]
pub fn contention_begin(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let addr: u64 = r.get(global!(TP.contention_addr));
    let flags: u32 = r.get(global!(TP.contention_flags));
    let caller = crate::flock::caller(&ctx);
    emit(
        t,
        Kind::ContentionBegin,
        0,
        0,
        [addr, flags as u64, caller, 0],
    );
    0
}

/// `lock:contention_end`.
#[tracepoint]
pub fn contention_end(ctx: TracePointContext) -> u32 {
    let Some(t) = traced_task() else { return 0 };
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let addr: u64 = r.get(global!(TP.contention_addr));
    let ret: i32 = r.get(global!(TP.contention_ret));
    emit(
        t,
        Kind::ContentionEnd,
        0,
        0,
        [addr, ret as i64 as u64, 0, 0],
    );
    0
}

/// `printk:console`: every console line becomes a marker (xfstests writes
/// `run fstests <seq> at <date>` before each test). Markers are rare and
/// mark time for everyone, so only rltop's own messages are filtered.
#[tracepoint]
pub fn console(ctx: TracePointContext) -> u32 {
    let t = current();
    if t.pid == global!(FILTER.self_tgid) {
        return 0;
    }
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let loc: u32 = r.get(global!(TP.console_msg));
    let off = (loc & 0xffff) as usize;
    let mut len = (loc >> 16) as usize;
    if len > MARKER_TEXT_LEN {
        len = MARKER_TEXT_LEN;
    }
    let Some(mut entry) = EVENTS.reserve::<MarkerRecord>(0) else {
        count_drops(1);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points to a reserved MarkerRecord owned by us until
    // submit; we initialise every field before submitting.
    unsafe {
        (*rec).hdr = header(t, Kind::Marker, 0, 0);
        (*rec)._pad = 0;
        let src = ctx.as_ptr().cast::<u8>().add(off);
        let ok = bpf_probe_read_kernel_buf(src, &mut (&mut (*rec).text)[..len]).is_ok();
        (*rec).len = if ok { len as u32 } else { 0 };
    }
    entry.submit(submit_flags());
    0
}

/// `sched:sched_process_exit` (per thread): an `exit` for tasks we named.
/// On 6.x it fires early in `do_exit`, before the task drops its mm, so
/// teardown events (mmap_lock) may follow it; the name is forgotten only
/// when the task is freed (`task_free`).
#[tracepoint]
pub fn task_exit(_ctx: TracePointContext) -> u32 {
    let t = current();
    // SAFETY: presence test only.
    if unsafe { SEEN.get(&t.tid) }.is_none() {
        return 0;
    }
    if t.tid == t.pid {
        let _ = PIDS.remove(&t.pid);
    }
    emit_exit(t);
    0
}

/// `sched:sched_process_free`: the task is gone; its tid may be reused.
#[tracepoint]
pub fn task_free(ctx: TracePointContext) -> u32 {
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let pid: u32 = r.get(global!(TP.free_pid));
    forget_name(pid);
    0
}

#[inline(always)]
fn emit_exit(t: crate::Task) {
    // Not `emit`: the name was written already, and must not be written again.
    crate::write(t, Kind::Exit, 0, 0, [0; 4]);
}

/// `sched:sched_process_fork`: under `--pid`, children of traced processes are traced.
#[tracepoint]
pub fn task_fork(ctx: TracePointContext) -> u32 {
    if global!(FILTER.pid_filter) == 0 {
        return 0;
    }
    let parent = current();
    // SAFETY: presence test only.
    if unsafe { PIDS.get(&parent.pid) }.is_none() {
        return 0;
    }
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let child: u32 = r.get(global!(TP.fork_child_pid));
    let _ = PIDS.insert(&child, &1, 0);
    0
}

/// `task:task_rename`: the name changed (also on exec, whose `__set_task_comm`
/// fires it); write it again on the task's next event.
#[tracepoint]
pub fn task_rename(ctx: TracePointContext) -> u32 {
    let Some(r) = TpRecord::read(&ctx) else {
        return 0;
    };
    let pid: u32 = r.get(global!(TP.rename_pid));
    forget_name(pid);
    0
}

/// `syscalls:sys_enter_getppid` from rltop itself: user space runs it on
/// each CPU in turn to hand that CPU's staged records to the ring, so a CPU
/// that went idle does not sit on them.
#[tracepoint]
pub fn flush_kick(_ctx: TracePointContext) -> u32 {
    if current().pid != global!(FILTER.self_tgid) {
        return 0;
    }
    if let Some(st) = STAGE.get_ptr_mut(0) {
        // SAFETY: this CPU's staging slot; process context, not nested.
        let st = unsafe { &mut *st };
        if st.busy == 0 {
            flush(st);
        }
    }
    0
}
