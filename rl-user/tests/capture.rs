//! Live capture on this machine's kernel, as root: `rltop record` around the
//! known workload of `rl-workload`, then `rltop dump`, checked event by
//! event against what the workload says it did.
//!
//! These tests need root and an ext4 directory. Without root they are
//! skipped with a message, unless RLTOP_REQUIRE_ROOT_TESTS=1 (as in CI),
//! where a skip is a failure.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{RLTOP, Reaped, WORKLOAD, need_root};

/// A fresh directory on ext4 for one test. The tests of this file run at
/// once and each records the whole machine, so no test's file may be
/// removed while the binary runs: ext4 hands a freed inode number to the
/// next file created, and another test's file with the same `(dev, ino)`
/// would mix its events into this one's. So directories (and the
/// workload's files, `--keep`) stay until the next run of this binary
/// removes them.
fn ext4_dir() -> tempfile::TempDir {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    SWEEP.call_once(|| {
        for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("capture") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let dir = tempfile::Builder::new()
        .prefix("capture")
        .disable_cleanup(true)
        .tempdir_in(root)
        .unwrap();
    // SAFETY: statfs is plain data, valid when zeroed.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let c = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
    // SAFETY: valid path and statfs buffer.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0);
    assert_eq!(st.f_type, 0xEF53, "{} is not on ext4", dir.path().display());
    dir
}

struct Recorder {
    child: Reaped,
    stderr: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Recorder {
    /// Starts `rltop record` and waits until its probes are attached.
    fn start(out: &Path, args: &[&str]) -> Recorder {
        let mut child = Command::new(RLTOP)
            .arg("record")
            .arg("-o")
            .arg(out)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut r = Recorder {
            child: Reaped(child),
            stderr: rx,
            lines: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = r
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("rltop record did not start: {:?}", r.lines));
            let started = line.starts_with("rltop: recording");
            r.lines.push(line);
            if started {
                return r;
            }
        }
    }

    /// SIGINT, then the exit status and all of stderr.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        self.lines.extend(self.stderr.iter());
        (status, self.lines)
    }
}

/// Starts the live text stream (`rltop --pid PID`, stdout not a terminal)
/// and waits until its probes are attached; returns it and its stderr.
fn start_live(pid: u64) -> (Reaped, BufReader<std::process::ChildStderr>) {
    let mut live = Reaped(
        Command::new(RLTOP)
            .args(["--pid", &pid.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(live.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("streaming events"), "{line}");
    (live, err)
}

/// Starts the workload waiting on a go-file; returns it and its ready line.
fn workload(dir: &Path, iterations: u64) -> (Reaped, Value, PathBuf) {
    workload_cmd(Command::new(WORKLOAD), dir, iterations)
}

/// [`workload`] on CPU `cpu` only (`taskset`).
fn workload_on_cpu(dir: &Path, iterations: u64, cpu: u32) -> (Reaped, Value, PathBuf) {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string(), WORKLOAD]);
    workload_cmd(cmd, dir, iterations)
}

fn workload_cmd(mut cmd: Command, dir: &Path, iterations: u64) -> (Reaped, Value, PathBuf) {
    let go = dir.join("go");
    let mut child = cmd
        .args([
            "--keep",
            "--dir",
            dir.to_str().unwrap(),
            "--iterations",
            &iterations.to_string(),
            "--wait-file",
        ])
        .arg(&go)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ready["ready"], true);
    // Keep reading the rest of stdout through the same handle later.
    child.stdout = Some(out.into_inner());
    (Reaped(child), ready, go)
}

fn finish_workload(mut child: Reaped) -> Value {
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    serde_json::from_str(rest.trim()).unwrap()
}

fn dump(trace: &Path) -> Vec<Value> {
    let out = Command::new(RLTOP)
        .args(["dump", "--format", "jsonl"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap()
}

/// Checks the workload's own file events in `events` against what it did.
fn check_workload_events(events: &[Value], wl: &Value) {
    let pid = wl["pid"].as_u64().unwrap();
    let dev = wl["dev"].as_str().unwrap();
    let ino = wl["ino"].as_u64().unwrap();
    let on_file = |e: &&Value| e["dev"] == dev && e["ino"] == ino;

    // Faults: exactly the pages the workload read, by the workload.
    let faults: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "fault")
        .filter(on_file)
        .collect();
    let fault_pages: HashSet<u64> = faults
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    let want: HashSet<u64> = wl["fault_pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(fault_pages, want, "fault page indices");
    let others: Vec<&&Value> = faults.iter().filter(|e| e["pid"] != pid).collect();
    assert!(
        others.is_empty(),
        "faults by other tasks than {pid}: {others:?}"
    );
    // Each faulted page was added to the page cache (the cache was dropped first).
    let added: HashSet<u64> = events
        .iter()
        .filter(|e| kind(e) == "page_add")
        .filter(on_file)
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(
        want.is_subset(&added),
        "page_add indices {added:?} lack some of {want:?}"
    );

    // DIO: each write at its byte range, paired with its end through `io`.
    let begins: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "dio_begin")
        .filter(on_file)
        .collect();
    for r in wl["dio"].as_array().unwrap() {
        let (pos, len) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
        let b = begins
            .iter()
            .find(|e| e["pos"] == pos && e["len"] == len)
            .unwrap_or_else(|| panic!("no dio_begin at pos {pos} len {len}"));
        assert_eq!(b["write"], true);
        assert_eq!(b["pid"], pid);
        let io = &b["io"];
        let bi = events.iter().position(|e| std::ptr::eq(e, *b)).unwrap();
        let end = events[bi..]
            .iter()
            .find(|e| kind(e) == "dio_end" && e["io"] == *io)
            .unwrap_or_else(|| panic!("dio_begin io {io} has no dio_end"));
        assert_eq!(end["ret"], len, "DIO return value");
    }

    // Punch: begin with the byte range, end from the same task.
    let (ppos, plen) = (
        wl["punch"][0].as_u64().unwrap(),
        wl["punch"][1].as_u64().unwrap(),
    );
    let pi = events
        .iter()
        .position(|e| {
            kind(e) == "punch_begin" && on_file(&e) && e["pos"] == ppos && e["len"] == plen
        })
        .expect("punch_begin with the punched range");
    let tid = &events[pi]["tid"];
    assert_eq!(events[pi]["pid"], pid);
    let end = events[pi..]
        .iter()
        .find(|e| kind(e) == "punch_end" && e["tid"] == *tid)
        .expect("punch_end");
    assert_eq!(end["ret"], 0);

    // Truncate: to the new size, ended by the same task.
    let size = wl["truncate"][0].as_u64().unwrap();
    let ti = events
        .iter()
        .position(|e| kind(e) == "truncate_begin" && on_file(&e) && e["size"] == size)
        .expect("truncate_begin to the truncated size");
    assert_eq!(events[ti]["pid"], pid);
    let tid = &events[ti]["tid"];
    assert!(
        events[ti..]
            .iter()
            .any(|e| kind(e) == "truncate_end" && e["tid"] == *tid)
    );
}

fn check_task_events(events: &[Value], pid: u64) {
    // The task is named once, before its first other event, and its exit is seen.
    let first = events
        .iter()
        .position(|e| e["tid"] == pid)
        .expect("events of the workload");
    assert_eq!(
        kind(&events[first]),
        "task",
        "first event of a task names it"
    );
    // Named once per name: a child forked by rltop is named again after its exec.
    let names: Vec<&str> = events
        .iter()
        .filter(|e| kind(e) == "task" && e["tid"] == pid)
        .map(|e| e["comm"].as_str().unwrap())
        .collect();
    assert_eq!(names.last(), Some(&"rl-workload"), "{names:?}");
    assert!(
        names.len() <= 2 && names.windows(2).all(|w| w[0] != w[1]),
        "task named repeatedly: {names:?}"
    );
    assert!(
        events.iter().any(|e| kind(e) == "exit" && e["tid"] == pid),
        "exit of the workload"
    );
}

fn check_mmap_lock(events: &[Value], pid: u64) {
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e).starts_with("mmap_lock") && e["pid"] == pid)
        .collect();
    let mms: HashSet<u64> = mine.iter().map(|e| e["mm"].as_u64().unwrap()).collect();
    assert_eq!(
        mms.len(),
        1,
        "all mmap_lock events of one process share its mm: {mms:?}"
    );
    let mm = *mms.iter().next().unwrap();
    assert_ne!(mm, 0);
    // mmap and munmap take mmap_lock for writing: request, acquired, release.
    let w = |k: &str| mine.iter().any(|e| kind(e) == k && e["write"] == true);
    assert!(w("mmap_lock_request") && w("mmap_lock_release"));
    assert!(
        mine.iter()
            .any(|e| kind(e) == "mmap_lock_acquired" && e["write"] == true && e["success"] == true)
    );
}

#[test]
fn record_with_pid_filter_captures_the_workload_exactly() {
    if !need_root("record_with_pid_filter_captures_the_workload_exactly") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let (wl, ready, go) = workload(dir.path(), 2);
    let pid = ready["pid"].as_u64().unwrap();
    let rec = Recorder::start(&trace, &["--pid", &pid.to_string()]);
    std::fs::write(&go, b"").unwrap();
    let done = finish_workload(wl);
    // Let the last records reach the ring reader.
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = rec.stop();
    assert!(status.success(), "record failed: {stderr:?}");
    assert!(
        !stderr.iter().any(|l| l.contains("not attached")),
        "{stderr:?}"
    );

    let events = dump(&trace);
    // Only the workload is traced (a DIO end belongs to its IO, not its context).
    for e in &events {
        if !matches!(kind(e), "dio_end" | "marker" | "lost") {
            assert_eq!(e["pid"], pid, "event of another process under --pid: {e}");
        }
    }
    assert!(
        !events.iter().any(|e| kind(e) == "lost"),
        "no drops expected"
    );
    check_workload_events(&events, &done);
    check_task_events(&events, pid);
    check_mmap_lock(&events, pid);
    // Per-CPU batches are put back in time order: timestamps never go back.
    let ts: Vec<u64> = events.iter().map(|e| e["ts"].as_u64().unwrap()).collect();
    assert!(
        ts.windows(2).all(|w| w[1] >= w[0]),
        "events out of time order"
    );
}

#[test]
fn record_with_dev_and_ino_filter_keeps_only_that_file() {
    if !need_root("record_with_dev_and_ino_filter_keeps_only_that_file") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let (wl, ready, go) = workload(dir.path(), 1);
    let (dev, ino) = (
        ready["dev"].as_str().unwrap().to_string(),
        ready["ino"].as_u64().unwrap(),
    );
    let rec = Recorder::start(&trace, &["--dev", &dev, "--ino", &ino.to_string()]);
    // Other file IO on the same device at the same time must be filtered out.
    let (other, _, other_go) = workload(dir.path(), 1);
    std::fs::write(&go, b"").unwrap();
    std::fs::write(&other_go, b"").unwrap();
    let done = finish_workload(wl);
    let _ = finish_workload(other);
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = rec.stop();
    assert!(status.success(), "{stderr:?}");
    let events = dump(&trace);
    for e in &events {
        if e.get("ino").is_some() {
            assert_eq!(
                (e["dev"].as_str().unwrap(), e["ino"].as_u64().unwrap()),
                (dev.as_str(), ino),
                "{e}"
            );
        }
    }
    check_workload_events(&events, &done);
}

#[test]
fn record_a_command_until_it_exits_and_pass_its_status() {
    if !need_root("record_a_command_until_it_exits_and_pass_its_status") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let rec = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args([
            "--",
            WORKLOAD,
            "--keep",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rltop_pid = u64::from(rec.id());
    let out = rec.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let events = dump(&trace);
    check_workload_events(&events, &done);
    check_task_events(&events, done["pid"].as_u64().unwrap());
    // rltop never traces itself, nor its forked child before the exec of
    // the command: the child's first name is the command's, never rltop's.
    // Its one event is the fork of the command, the root of the tree.
    let child = done["pid"].as_u64().unwrap();
    let own: Vec<&Value> = events.iter().filter(|e| e["pid"] == rltop_pid).collect();
    assert!(
        own.len() == 1 && kind(own[0]) == "fork" && own[0]["child"] == child,
        "rltop traced itself: {own:?}"
    );
    let names: Vec<&str> = events
        .iter()
        .filter(|e| kind(e) == "task" && e["pid"] == child)
        .filter_map(|e| e["comm"].as_str())
        .collect();
    assert_eq!(
        names.first(),
        Some(&"rl-workload"),
        "the command's names in the trace: {names:?}"
    );
    assert!(!names.contains(&"rltop"), "traced before exec: {names:?}");

    // The command's failure is rltop's exit status.
    let out = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // The file is 0600 even when it existed before.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&trace).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn sigkilled_recorder_leaves_a_readable_trace() {
    if !need_root("sigkilled_recorder_leaves_a_readable_trace") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let (wl, ready, go) = workload(dir.path(), 300);
    let pid = ready["pid"].as_u64().unwrap();
    let mut rec = Recorder::start(&trace, &["--pid", &pid.to_string()]);
    std::fs::write(&go, b"").unwrap();
    // More than two flush periods of events.
    std::thread::sleep(Duration::from_millis(2500));
    rec.child.kill().unwrap();
    rec.child.wait().unwrap();
    let _ = finish_workload(wl);
    let out = Command::new(RLTOP)
        .args(["dump", "--format", "jsonl"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n_faults = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("\"kind\":\"fault\""))
        .count();
    assert!(n_faults >= 3, "only {n_faults} faults survived the SIGKILL");
}

#[test]
fn probes_attach_and_stay_under_the_instruction_budget() {
    if !need_root("probes_attach_and_stay_under_the_instruction_budget") {
        return;
    }
    let out = Command::new(RLTOP)
        .args(["probes", "--verbose"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for line in text.lines().filter(|l| l.contains(" insns ")) {
        let prog = line
            .rsplit('(')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_string();
        let n: u32 = line
            .split_whitespace()
            .rev()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        counts.insert(prog, n);
    }
    // Every probe of the tracepoint profile attaches on this kernel (6.18):
    // 16 of the 17 in the catalog (the page-cache add by its BTF-typed
    // program, not the formatted one), 25 filesystem-operation probes
    // (probe/fsops.rs), and those of the page-cache locks (issue 14): the
    // file learners (DIO, two syscall entries, one program on ext4's and
    // one on XFS's operation tracepoints; faults and page adds learn in
    // their own programs), the four xfs_ilock tracepoints (this kernel's
    // lock source) and the two page-fault tracepoints. Counted by program.
    assert_eq!(counts.len(), 41 + 5 + 4 + 2, "{text}");
    assert!(
        counts.contains_key("filemap_add_btf") && !counts.contains_key("filemap_add"),
        "{text}"
    );
    for (prog, n) in &counts {
        assert!(
            *n > 0 && *n <= rltop::cmd::probes::INSN_BUDGET,
            "{prog}: {n} verified instructions"
        );
    }
}

#[test]
fn non_root_record_is_one_clear_error() {
    if !need_root("non_root_record_is_one_clear_error") {
        return;
    }
    let dir = ext4_dir();
    // The unprivileged user must be able to write there, or the error would be about the file.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let trace = dir.path().join("t.rlt");
    let out = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--duration", "1"])
        .env("RUST_LOG", "off")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
    assert!(
        !trace.exists(),
        "no file is written when recording cannot start"
    );
}

use std::os::unix::process::CommandExt as _;

#[test]
fn overflowing_the_ring_is_recorded_as_lost_events() {
    if !need_root("overflowing_the_ring_is_recorded_as_lost_events") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let iterations = 300u64;
    let rec = Recorder::start(&trace, &["--buffer-mb", "1"]);
    // A reader that stops reading: the 1 MiB ring overflows.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.child.id() as i32, libc::SIGSTOP) };
    let out = Command::new(WORKLOAD)
        .args([
            "--keep",
            "--heavy",
            "--dir",
            dir.path().to_str().unwrap(),
            "--iterations",
            &iterations.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let wl: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(rec.child.id() as i32, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stderr) = rec.stop();
    assert!(status.success(), "{stderr:?}");
    let events = dump(&trace);
    let lost: u64 = events
        .iter()
        .filter(|e| kind(e) == "lost")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert!(
        lost > 0,
        "no drops recorded although the reader was stopped"
    );
    // Each lost event says since when its drops may have happened: no later
    // than the event itself, and never before the recording began.
    let first_ts = events[0]["ts"].as_u64().unwrap();
    for e in events.iter().filter(|e| kind(e) == "lost") {
        let since = e["since"].as_u64().expect("lost events carry since");
        assert!(since <= e["ts"].as_u64().unwrap(), "{e}");
        assert!(since + 1_000_000_000 >= first_ts, "{e}");
    }
    let summary = stderr
        .iter()
        .find(|l| l.contains(" lost) in "))
        .expect("summary line");
    assert!(
        summary.contains(&format!("({lost} lost)")),
        "{summary} vs {lost}"
    );
    // Every fault of the workload is either in the trace or counted as lost:
    // nothing goes missing silently. (Lost counts include other tasks' events.)
    let ino = wl["ino"].as_u64().unwrap();
    let faults = events
        .iter()
        .filter(|e| kind(e) == "fault" && e["ino"] == ino)
        .count() as u64;
    assert!(
        faults + lost >= 64 * iterations,
        "{faults} faults + {lost} lost < {}",
        64 * iterations
    );
    assert!(faults < 64 * iterations, "the ring did not overflow");
    // The drops give no false certain finding: whatever the checker makes
    // of this damaged, system-wide trace, nothing certain on the workload's
    // own tasks (the only activity we know to be correct).
    let out = Command::new(RLTOP)
        .args(["check", "--format", "json"])
        .arg(&trace)
        .output()
        .unwrap();
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    let wl_pid = wl["pid"].as_u64().unwrap();
    let tids_of_pid: std::collections::HashSet<u64> = events
        .iter()
        .filter(|e| e["pid"] == wl_pid)
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    let certain_on_workload: Vec<&Value> = verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["certain"] == true)
        .filter(|f| {
            f["tids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| tids_of_pid.contains(&t.as_u64().unwrap()))
        })
        .collect();
    assert!(certain_on_workload.is_empty(), "{certain_on_workload:#?}");
}

#[test]
fn live_stream_shows_the_workload_and_stops_on_ctrl_c() {
    if !need_root("live_stream_shows_the_workload_and_stops_on_ctrl_c") {
        return;
    }
    let dir = ext4_dir();
    let (wl, ready, go) = workload(dir.path(), 1);
    let pid = ready["pid"].as_u64().unwrap();
    let (mut live, mut err) = start_live(pid);
    std::fs::write(&go, b"").unwrap();
    let done = finish_workload(wl);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(live.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    std::io::Read::read_to_string(live.stdout.as_mut().unwrap(), &mut out).unwrap();
    let status = live.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains(" events, 0 lost"), "{rest}");
    let ino = done["ino"].as_u64().unwrap();
    for page in [3, 7, 11] {
        let want = format!(
            "fault {} ino {ino} index {page}",
            done["dev"].as_str().unwrap()
        );
        assert!(
            out.lines()
                .any(|l| l.contains("rl-workload/") && l.contains(&want)),
            "no line with {want:?}"
        );
    }
    assert!(out.contains("punch_begin") && out.contains("dio_end"));
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs");
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_stops_the_recording_cleanly() {
    if !need_root("a_full_disk_stops_the_recording_cleanly") {
        return;
    }
    let fs = SmallFs::new("512k");
    let trace = fs.0.path().join("t.rlt");
    let work = ext4_dir();
    // An endless event-dense workload: the disk fills within seconds.
    let out = Command::new(RLTOP)
        .args(["record", "-o"])
        .arg(&trace)
        .args(["--duration", "60", "--"])
        .arg(WORKLOAD)
        .args(["--keep", "--heavy", "--iterations", "100000000", "--dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("stopped"))
        .unwrap_or_else(|| panic!("{err}"));
    // One clear line, the cause said once.
    assert!(line.contains("No space left on device"), "{line}");
    assert_eq!(line.matches("No space left").count(), 1, "{line}");
    assert!(line.contains("still readable"), "{line}");
    // What was flushed before is readable.
    let dumped = Command::new(RLTOP)
        .args(["dump", "--format", "count"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let n: u64 = String::from_utf8_lossy(&dumped.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 1000, "only {n} events readable");
}

/// The ids of the BPF programs process `pid` holds open (`prog_id:` in the
/// fdinfo of its BPF program fds).
fn bpf_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(fd.unwrap().path()) else {
            continue;
        };
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The event count of `rltop: N events (...)`, the recorder's last line.
fn summary_events(lines: &[String]) -> u64 {
    let line = lines
        .iter()
        .find(|l| l.contains(" events (") && l.contains(" lost) in "))
        .unwrap_or_else(|| panic!("no summary line: {lines:?}"));
    line.trim_start_matches("rltop: ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn dump_count(trace: &Path) -> (u64, String) {
    let out = Command::new(RLTOP)
        .args(["dump", "--format", "count"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let n = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (n, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn sigterm_finishes_the_recording_cleanly() {
    if !need_root("sigterm_finishes_the_recording_cleanly") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let (wl, ready, go) = workload(dir.path(), 200);
    let pid = ready["pid"].as_u64().unwrap();
    let mut rec = Recorder::start(&trace, &["--pid", &pid.to_string()]);
    // The recorder's own programs: the BPF program ids behind its fds.
    let ids = bpf_prog_ids(rec.child.id());
    assert!(
        ids.len() >= 10,
        "only {} programs loaded: {ids:?}",
        ids.len()
    );
    std::fs::write(&go, b"").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.child.id() as i32, libc::SIGTERM) };
    let status = rec.child.wait().unwrap();
    // Detached and unloaded: none of its programs is left in the kernel.
    // The kernel frees a program after an RCU grace period, so give it a
    // moment; a program still attached would stay for good.
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let loaded: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .collect();
        let left: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| loaded.contains(id))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        left.is_empty(),
        "programs still loaded 5 s after SIGTERM: {left:?}"
    );
    rec.lines.extend(rec.stderr.iter());
    let _ = finish_workload(wl);
    assert!(status.success(), "{:?}", rec.lines);
    // Everything it counted is in the file, whole: no damaged chunk.
    let (n, warnings) = dump_count(&trace);
    assert_eq!(n, summary_events(&rec.lines), "{:?}", rec.lines);
    assert!(warnings.is_empty(), "{warnings}");
    assert!(n > 0);
}

#[test]
fn a_killed_command_ends_the_recording_with_its_signal() {
    if !need_root("a_killed_command_ends_the_recording_with_its_signal") {
        return;
    }
    let dir = ext4_dir();
    let trace = dir.path().join("t.rlt");
    let out = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args([
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=$0 bs=4k count=64 oflag=direct 2>/dev/null; kill -9 $$",
        ])
        .arg(dir.path().join("f"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    // As a shell reports it: 128 + SIGKILL.
    assert_eq!(out.status.code(), Some(128 + 9), "{err}");
    let lines: Vec<String> = err.lines().map(str::to_owned).collect();
    let (n, warnings) = dump_count(&trace);
    assert_eq!(n, summary_events(&lines), "{err}");
    assert!(warnings.is_empty(), "{warnings}");
}

#[test]
fn an_idle_cpu_hands_over_its_staged_events_promptly() {
    if !need_root("an_idle_cpu_hands_over_its_staged_events_promptly") {
        return;
    }
    // SAFETY: sysconf has no preconditions.
    if unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let dir = ext4_dir();
    // The workload runs on CPU 1 only; once it exits, nothing of its own
    // lands there again: its last records sit in CPU 1's staging batch.
    let (mut wl, ready, go) = workload_on_cpu(dir.path(), 1, 1);
    let pid = ready["pid"].as_u64().unwrap();
    let (mut live, _err) = start_live(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = live.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), line));
        }
    });
    std::fs::write(&go, b"").unwrap();
    assert!(wl.wait().unwrap().success());
    let exited = Instant::now();
    // The workload's exit is its last event: it must show within about a
    // kick period, not wait for CPU 1 to run something traced again.
    let deadline = exited + Duration::from_secs(3);
    let mut seen = None;
    while let Ok((at, line)) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.ends_with(&format!("{pid}[{pid}] exit")) {
            seen = Some(at);
            break;
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(live.id() as i32, libc::SIGINT) };
    let at = seen.expect("the workload's exit never showed while its CPU was idle");
    let late = at.saturating_duration_since(exited);
    assert!(
        late < Duration::from_millis(1000),
        "exit shown {late:?} after it happened"
    );
}
