//! Kernel lock contention, console markers, and task life cycle.
//!
//! Raw tracepoints: they get the C arguments (`contention_begin(void
//! *lock, unsigned int flags)`, `contention_end(void *lock, int ret)`,
//! `console(const char *text, size_t len)`, `sched_process_fork(parent,
//! child)`, `sched_process_free(p)`, `task_rename(task, comm)`, prototypes
//! checked against BTF by user space), and `task_struct.pid` (the tid) at
//! its BTF offset. Not formatted tracepoints: before 6.7 a formatted
//! tracepoint's program holds the CPU's `bpf_prog_active`, and a kprobe
//! that fires meanwhile on the same CPU (a range unlock from a softirq
//! taken on this program's interrupt exit) is skipped by
//! `trace_call_bpf()` without a count anywhere. A raw tracepoint's program
//! guards only itself, and counts its own misses (`recursion_misses`).

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use rl_common::{Kind, MARKER_TEXT_LEN, MarkerRecord};

use crate::file::kread;
use crate::{
    EVENTS, FILTER, KOFF, PIDS, SEEN, STAGE, count_drops, current, emit, flush, forget_name,
    global, header, submit_flags, traced_task,
};

/// `lock:contention_begin`: any kernel lock (spinlock, mutex, rwsem) contended.
#[raw_tracepoint(tracepoint = "contention_begin")]
pub fn contention_begin(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let addr: u64 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    let caller = crate::flock::caller(&ctx);
    emit(
        t,
        Kind::ContentionBegin,
        0,
        0,
        [addr, flags & 0xffff_ffff, caller, 0],
    );
    0
}

/// `lock:contention_end`.
#[raw_tracepoint(tracepoint = "contention_end")]
pub fn contention_end(ctx: RawTracePointContext) -> i32 {
    let Some(t) = traced_task() else { return 0 };
    let addr: u64 = ctx.arg(0);
    // An `int` fills its u64 slot sign-extended or not: take the low half.
    let ret: u64 = ctx.arg(1);
    emit(
        t,
        Kind::ContentionEnd,
        0,
        0,
        [addr, ret as u32 as i32 as i64 as u64, 0, 0],
    );
    0
}

/// `printk:console`: every console line becomes a marker (xfstests writes
/// `run fstests <seq> at <date>` before each test). Markers are rare and
/// mark time for everyone, so only rltop's own messages are filtered.
#[raw_tracepoint(tracepoint = "console")]
pub fn console(ctx: RawTracePointContext) -> i32 {
    let t = current();
    if t.pid == global!(FILTER.self_tgid) {
        return 0;
    }
    let text: u64 = ctx.arg(0);
    let mut len: u64 = ctx.arg(1);
    if len > MARKER_TEXT_LEN as u64 {
        len = MARKER_TEXT_LEN as u64;
    }
    let len = len as usize;
    let Some(mut entry) = EVENTS.reserve::<MarkerRecord>(0) else {
        count_drops(1);
        return 0;
    };
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points to a reserved MarkerRecord owned by us until
    // submit; we initialise every field before submitting. `text` is the
    // kernel's message buffer; the helper checks the read.
    unsafe {
        (*rec).hdr = header(t, Kind::Marker, 0, 0);
        (*rec)._pad = 0;
        let ok =
            bpf_probe_read_kernel_buf(text as *const u8, &mut (&mut (*rec).text)[..len]).is_ok();
        (*rec).len = if ok { len as u32 } else { 0 };
    }
    entry.submit(submit_flags());
    0
}

/// `sched:sched_process_exit` (per thread): an `exit` for tasks we named.
/// On 6.x it fires early in `do_exit`, before the task drops its mm, so
/// teardown events (mmap_lock) may follow it; the name is forgotten only
/// when the task is freed (`task_free`).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn task_exit(_ctx: RawTracePointContext) -> i32 {
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

/// A task's tid (`task_struct.pid`), 0 when unreadable.
#[inline(always)]
fn task_tid(task: u64) -> u32 {
    kread(task, global!(KOFF.task_pid))
}

/// `sched:sched_process_free(p)`: the task is gone; its tid may be reused.
#[raw_tracepoint(tracepoint = "sched_process_free")]
pub fn task_free(ctx: RawTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let tid = task_tid(task);
    forget_name(tid);
    // A process of the command's tree: a leader is freed after its last
    // thread, so its tgid leaves the tree only when the whole process is gone.
    if tid == kread::<u32>(task, global!(KOFF.task_tgid)) {
        let _ = crate::CMD.remove(&tid);
    }
    // A child of rltop that exited without exec.
    if crate::pre_exec(tid) && crate::PRE_EXEC.remove(&tid).is_ok() {
        crate::pre_exec_count(u64::MAX);
    }
    0
}

/// `sched:sched_process_exec(p, old_pid, bprm)`, in the task that exec'd:
/// a child of rltop is the command from now on, and traced.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn task_exec(_ctx: RawTracePointContext) -> i32 {
    let t = current();
    if crate::pre_exec(t.pid) && crate::PRE_EXEC.remove(&t.pid).is_ok() {
        crate::pre_exec_count(u64::MAX);
    }
    0
}

#[inline(always)]
fn emit_exit(t: crate::Task) {
    // Not `emit`: the name was written already, and must not be written again.
    crate::write(t, Kind::Exit, 0, 0, [0; 4]);
}

/// `sched:sched_process_fork(parent, child)`: the command's process tree
/// grows; under `--pid`, children of traced processes are traced.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn task_fork(ctx: RawTracePointContext) -> i32 {
    let parent = current();
    let child: u64 = ctx.arg(1);
    let tid = task_tid(child);
    let tgid: u32 = kread(child, global!(KOFF.task_tgid));
    // rltop forking a process (`record -- CMD`; not a thread of its own,
    // whose tgid is rltop's and filtered already): not traced until it
    // execs, and the root of the command's tree. The tracepoint fires in
    // the parent before the child first runs, so no event of the child
    // comes before its fork record.
    if parent.pid == global!(FILTER.self_tgid) {
        if tid != 0 && tid == tgid {
            if crate::PRE_EXEC.insert(&tid, &1, 0).is_ok() {
                crate::pre_exec_count(1);
            }
            if crate::CMD.insert(&tid, &1, 0).is_ok() {
                // Not `emit`: rltop itself is never named.
                crate::write(parent, Kind::Fork, 0, 0, [tid as u64, tgid as u64, 0, 0]);
            }
        }
        return 0;
    }
    // SAFETY: presence test only.
    if unsafe { crate::CMD.get(&parent.pid) }.is_some() {
        // A full map leaves this process (and what it forks) out of the
        // tree; the views then show fewer of the command's tasks, and say
        // how many they leave out.
        if tid == tgid {
            let _ = crate::CMD.insert(&tid, &1, 0);
        }
        emit(parent, Kind::Fork, 0, 0, [tid as u64, tgid as u64, 0, 0]);
    }
    if global!(FILTER.pid_filter) == 0 {
        return 0;
    }
    // SAFETY: presence test only.
    if unsafe { PIDS.get(&parent.pid) }.is_none() {
        return 0;
    }
    let child = task_tid(ctx.arg(1));
    let _ = PIDS.insert(&child, &1, 0);
    0
}

/// `task:task_rename(task, comm)`: the name changed (also on exec, whose
/// `__set_task_comm` fires it); write it again on the task's next event.
#[raw_tracepoint(tracepoint = "task_rename")]
pub fn task_rename(ctx: RawTracePointContext) -> i32 {
    forget_name(task_tid(ctx.arg(0)));
    0
}

/// `syscalls:sys_enter_getppid` from rltop itself: user space runs it on
/// each CPU in turn to hand that CPU's staged records to the ring, so a CPU
/// that went idle does not sit on them. (The one formatted tracepoint
/// here: syscalls have no raw tracepoint of their own, and this one runs
/// only on rltop's own calls, a few short runs a second per CPU.)
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
