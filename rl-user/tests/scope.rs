//! A recording of a command, with a busy neighbour on the machine (issue
//! 16): by default `report`, `hist` and `check --by-test` show the
//! command's tasks (and what they waited for), never the neighbour's;
//! `--all-tasks` shows the neighbour, marked. Live, as root.

// Tests fail loudly: an unwrap is an assertion here.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{Reaped, WORKLOAD, need_root, rltop, stderr};

fn run(args: &[&str]) -> (String, i32) {
    let out = rltop(args);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "rltop {args:?}: {}",
        stderr(&out)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap(),
    )
}

/// Steps of the longest waits' chains in a JSON report: `(tid, outside)`.
fn chain_tasks(report: &Value) -> Vec<(u64, bool)> {
    report["chains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["steps"].as_array().unwrap())
        .map(|s| (s["tid"].as_u64().unwrap(), s["outside"] == true))
        .collect()
}

/// Rows of a JSON report on file `ino`.
fn rows_on(report: &Value, ino: u64) -> usize {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ino"].as_u64() == Some(ino))
        .count()
}

/// One recording of a command beside a busy neighbour, shared by the tests.
struct Recording {
    _dir: tempfile::TempDir,
    trace: String,
    cmd_pid: u64,
    cmd_ino: u64,
    nb_ino: u64,
    /// The neighbour's tids with events in the trace.
    nb_tids: Vec<u64>,
}

fn recording() -> &'static Recording {
    static REC: std::sync::OnceLock<Recording> = std::sync::OnceLock::new();
    REC.get_or_init(record_beside_a_neighbour)
}

fn record_beside_a_neighbour() -> Recording {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::Builder::new()
        .prefix("scope")
        .tempdir_in(root)
        .unwrap();
    let (cmd_dir, nb_dir) = (dir.path().join("cmd"), dir.path().join("nb"));
    std::fs::create_dir_all(&cmd_dir).unwrap();
    std::fs::create_dir_all(&nb_dir).unwrap();

    // The neighbour: faults, DIO, punches and truncates on its own file,
    // over and over, before, during and after the recording.
    let mut nb = Command::new(WORKLOAD)
        .args(["--heavy", "--keep", "--iterations", "1000000000", "--dir"])
        .arg(&nb_dir)
        .arg("--wait-file")
        .arg(nb_dir.join("go"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(nb.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let nb_pid = ready["pid"].as_u64().unwrap();
    let nb_ino = ready["ino"].as_u64().unwrap();
    let nb = Reaped(nb);
    std::fs::write(nb_dir.join("go"), b"").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));

    let trace = dir.path().join("t.rlt").to_str().unwrap().to_string();
    let out = rltop(&[
        "record",
        "-o",
        &trace,
        "--",
        WORKLOAD,
        "--keep",
        "--iterations",
        "50",
        "--dir",
        cmd_dir.to_str().unwrap(),
    ]);
    drop(nb);
    assert!(out.status.success(), "{}", stderr(&out));
    let done: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();

    // The neighbour was busy in the recording.
    let (dump, _) = run(&["dump", &trace]);
    let nb_tids: Vec<u64> = dump
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["pid"].as_u64() == Some(nb_pid))
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert!(nb_tids.len() > 100, "{} neighbour events", nb_tids.len());
    Recording {
        _dir: dir,
        trace,
        cmd_pid: done["pid"].as_u64().unwrap(),
        cmd_ino: done["ino"].as_u64().unwrap(),
        nb_ino,
        nb_tids,
    }
}

#[test]
fn report_shows_the_command_not_a_busy_neighbour() {
    if !need_root("report_shows_the_command_not_a_busy_neighbour") {
        return;
    }
    let r = recording();
    let t = r.trace.as_str();
    // The command's file, not the neighbour's; a scope header.
    let (text, _) = run(&["report", t]);
    let scope_line = text.lines().nth(1).unwrap();
    assert!(
        scope_line.starts_with(&format!("scope: the command `{WORKLOAD} --keep"))
            && scope_line.contains(&format!("(pid {})", r.cmd_pid))
            && scope_line.contains("left out (--all-tasks shows them)"),
        "{text}"
    );
    let (json, _) = run(&["report", "--format", "json", t]);
    let rep: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rep["scope"]["pid"].as_u64(), Some(r.cmd_pid));
    assert!(
        rows_on(&rep, r.cmd_ino) > 0,
        "no row of the command's file: {json}"
    );
    assert_eq!(
        rows_on(&rep, r.nb_ino),
        0,
        "a row of the neighbour's file: {json}"
    );
    assert!(
        chain_tasks(&rep)
            .iter()
            .all(|(tid, _)| !r.nb_tids.contains(tid)),
        "a wait chain with the neighbour: {json}"
    );

    // --all-tasks: the neighbour's rows too, marked, and its waits marked.
    let (json, _) = run(&["report", "--format", "json", "--all-tasks", t]);
    let all: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(all["scope"]["all_tasks"], true);
    assert!(
        rows_on(&all, r.nb_ino) > 0,
        "no row of the neighbour's file: {json}"
    );
    for row in all["rows"].as_array().unwrap() {
        match row["ino"].as_u64() {
            Some(i) if i == r.nb_ino => assert_eq!(row["outside"], true, "{row}"),
            Some(i) if i == r.cmd_ino => assert!(row.get("outside").is_none(), "{row}"),
            _ => {}
        }
    }
    for (tid, outside) in chain_tasks(&all) {
        if r.nb_tids.contains(&tid) {
            assert!(outside, "neighbour {tid} not marked: {json}");
        }
    }
    let (text, _) = run(&["report", "--all-tasks", t]);
    assert!(text.contains(" [outside] "), "{text}");
}

#[test]
fn hist_and_check_by_test_show_the_command_not_a_busy_neighbour() {
    if !need_root("hist_and_check_by_test_show_the_command_not_a_busy_neighbour") {
        return;
    }
    let r = recording();
    let t = r.trace.as_str();
    // hist by task: the neighbour only with --all-tasks, marked.
    let (h, _) = run(&["hist", "--metric", "hold", "--by", "task", t]);
    assert!(h.contains("scope: the command"), "{h}");
    let series = |h: &str, tid: u64| {
        h.lines()
            .any(|l| l.split(", ").any(|kv| kv == format!("tid = {tid}")))
    };
    assert!(series(&h, r.cmd_pid), "no series of the command: {h}");
    assert!(!r.nb_tids.iter().any(|&tid| series(&h, tid)), "{h}");
    let (h, _) = run(&["hist", "--metric", "hold", "--by", "task", "--all-tasks", t]);
    assert!(r.nb_tids.iter().any(|&tid| series(&h, tid)), "{h}");
    assert!(h.contains("[outside]"), "{h}");

    // check --by-test says whose findings it judged.
    let (c, code) = run(&["check", "--by-test", t]);
    assert!(
        c.lines().nth(1).unwrap().starts_with("scope: the command"),
        "{c}"
    );
    assert_eq!(code, 0, "{c}");
}

const LOCKTEST: &str = env!("CARGO_BIN_EXE_rl-locktest");

/// A neighbour whose punches hold the `i_rwsem` that the command's writes
/// wait for is in the scope: its rows are shown, and it is counted as a
/// holder.
#[test]
fn a_neighbour_holding_what_the_command_waits_for_is_shown() {
    if !need_root("a_neighbour_holding_what_the_command_waits_for_is_shown") {
        return;
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::Builder::new()
        .prefix("scope")
        .tempdir_in(root)
        .unwrap();
    let file = dir.path().join("shared");
    let f = file.to_str().unwrap();
    // The neighbour: punch after punch in the shared file (each punch holds
    // its i_rwsem and invalidate_lock), in one process after another.
    use std::os::unix::process::CommandExt as _;
    let nb = Reaped(
        Command::new("sh")
            .args([
                "-c",
                &format!("while :; do {LOCKTEST} punch {f} 2000 >/dev/null || exit; done"),
            ])
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = dir.path().join("t.rlt");
    let t = trace.to_str().unwrap();
    // The command's two threads write the same file for 2 s: they wait for
    // the punches' i_rwsem (lock:contention_* on its learned address).
    let mut doc = Value::Null;
    for _ in 0..3 {
        let out = rltop(&[
            "record", "-o", t, "--force", "--", LOCKTEST, "contend", f, "2", "2",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let (json, _) = run(&["report", "--format", "json", t]);
        doc = serde_json::from_str(&json).unwrap();
        if doc["scope"]["holders"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    // The loop and the punch it runs (its own process group).
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(-(nb.0.id() as i32), libc::SIGKILL) };
    drop(nb);
    assert!(
        doc["scope"]["holders"].as_u64().unwrap_or(0) > 0,
        "no holder in three tries: {doc:#}"
    );
    // The command never punches: the punch rows are the neighbour's.
    let punches = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["op"] == "punch")
        .count();
    assert!(punches > 0, "the holder's punches are not shown: {doc:#}");
}
