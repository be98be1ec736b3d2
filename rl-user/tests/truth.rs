//! Mainline truth, live (issue 14): on this machine's correct kernel, with
//! ext4, XFS and btrfs on loop devices, workloads that race page-cache
//! creation against punches, contend for a file's locks and run every
//! file operation give **no finding of any severity**, and the report
//! shows the files' `i_rwsem` and `invalidate_lock` by name, with their
//! holds and waits.
//!
//! The workload, per filesystem, recorded with `rltop record -- sh -c`:
//! - `rl-locktest fault-punch race 200`: one thread reads a file through a
//!   shared mapping while another punches it 200 times (the race Kara's
//!   range lock was for; mainline's `invalidate_lock` serializes it);
//! - `rl-locktest contend contend 2 4`: four threads `pwrite` one file for
//!   two seconds (buffered writes take `i_rwsem` exclusively: contention);
//! - `rl-workload --fsops --iterations 2`: punch, zero, collapse, insert,
//!   truncates, the UNRESVSP ioctl, O_DIRECT with its early exits;
//! - then, recorded on its own, an xfstests-like run: `tests/data/fake-check`
//!   (three tests doing buffered, direct, punch and truncate IO), clean test
//!   by test.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

mod common;
use common::{FILESYSTEMS, LoopFs, RLTOP, WORKLOAD, need_fs, need_root, rltop, stderr};

const LOCKTEST: &str = env!("CARGO_BIN_EXE_rl-locktest");

fn json(args: &[&str]) -> (Option<i32>, Value) {
    let out = rltop(args);
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("rltop {args:?}: {e}: {}", stderr(&out)));
    (out.status.code(), doc)
}

fn record(fs: &LoopFs, trace: &Path) {
    let m = fs.mnt.display();
    let script = format!(
        "{LOCKTEST} fault-punch {m}/race 200 >/dev/null && \
         {LOCKTEST} contend {m}/contend 2 4 >/dev/null && \
         {WORKLOAD} --fsops --dir {m} --iterations 2 >/dev/null"
    );
    let out = std::process::Command::new(RLTOP)
        .args(["record", "-o"])
        .arg(trace)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record on {}: {}",
        fs.fs,
        stderr(&out)
    );
}

/// The report's rows of `class` about the file at `path`.
fn rows<'a>(report: &'a Value, class: &str, path: &str) -> Vec<&'a Value> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == class && r["name"].as_str().unwrap_or("").starts_with(path))
        .collect()
}

fn sum(rows: &[&Value], field: &str) -> u64 {
    rows.iter().map(|r| r[field].as_u64().unwrap_or(0)).sum()
}

fn truth_on(fs_name: &'static str) {
    let test = format!("mainline_truth_on_{fs_name}");
    if !need_fs(&test, fs_name) {
        return;
    }
    let fs = LoopFs::new(fs_name);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.rlt");
    record(&fs, &trace);
    let t = trace.to_str().unwrap();

    // No finding of any severity on a correct kernel.
    let (code, doc) = json(&["check", "--format", "json", t]);
    assert_eq!(doc["findings"], serde_json::json!([]), "{fs_name}: {doc:#}");
    assert_eq!(code, Some(0), "{fs_name}");

    let (_, report) = json(&["report", "--format", "json", t]);
    let mnt = fs.mnt.to_str().unwrap();
    let race = format!("{mnt}/race");
    let contend = format!("{mnt}/contend");
    // Files by name, locks by name: no bare addresses.
    for r in report["rows"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        assert!(
            !name.starts_with("lock 0x"),
            "{fs_name}: a bare address: {r}"
        );
    }
    // The race file's punches hold i_rwsem (and, but on btrfs, the
    // invalidate_lock) for writing, once per punch at least: seen through
    // xfs_ilock on XFS, inferred from the punches elsewhere.
    let i_rwsem = rows(&report, "i_rwsem", &race);
    assert!(
        sum(&i_rwsem, "acquisitions") >= 200,
        "{fs_name}: {i_rwsem:#?}"
    );
    let inval = rows(&report, "invalidate_lock", &race);
    if fs_name == "btrfs" {
        // btrfs's punch takes a lock of its own, not the mapping's.
        assert!(
            inval.iter().all(|r| r["mode"] != "write"),
            "{fs_name}: {inval:#?}"
        );
    } else {
        let writes: Vec<_> = inval
            .iter()
            .copied()
            .filter(|r| r["mode"] == "write")
            .collect();
        assert!(sum(&writes, "acquisitions") >= 200, "{fs_name}: {inval:#?}");
        assert!(
            writes.iter().all(|r| r["hold"]["count"].as_u64() > Some(0)),
            "{fs_name}: {writes:#?}"
        );
    }
    // Four writers of one file wait for its i_rwsem, and the waits are
    // measured (from lock:contention_* on the learned address).
    let waits = rows(&report, "i_rwsem", &contend);
    assert!(
        sum(&waits, "contentions") > 0,
        "{fs_name}: {:#}",
        report["rows"]
    );
    // And the text report names them too.
    let text = String::from_utf8(rltop(&["report", t]).stdout).unwrap();
    assert!(
        text.contains(&contend) && text.contains("i_rwsem"),
        "{text}"
    );
}

#[test]
fn mainline_truth_on_ext4() {
    truth_on(FILESYSTEMS[0]);
}

#[test]
fn mainline_truth_on_xfs() {
    truth_on(FILESYSTEMS[1]);
}

#[test]
fn mainline_truth_on_btrfs() {
    truth_on(FILESYSTEMS[2]);
}

/// Stopping a recording while another process takes mmap_lock all the
/// time leaves no false wait. Probes detach one by one (each detach waits
/// for an RCU grace period), and in between only some kinds are traced:
/// requests came without their acquisitions, which read as waits that
/// never end and, in 1 run of 3 under a parallel build, as a "certain"
/// deadlock. The recorder keeps only the window in which every probe was
/// attached: there, `mmap_lock_start_locking` and
/// `mmap_lock_acquire_returned` come in pairs (a trylock too, and a
/// killable lock that fails), so no task asks twice without an answer.
#[test]
fn stopping_under_mmap_lock_churn_leaves_no_false_wait() {
    if !need_root("stopping_under_mmap_lock_churn_leaves_no_false_wait") {
        return;
    }
    let mut churn = std::process::Command::new(LOCKTEST)
        .args(["mmap-churn", "20", "4"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut answered = 0;
    for round in 0..3 {
        let trace = dir.path().join(format!("stop{round}.rlt"));
        let out = std::process::Command::new(RLTOP)
            .args(["record", "-o"])
            .arg(&trace)
            .args(["--", "sleep", "0.3"])
            .output()
            .unwrap();
        assert!(out.status.success(), "record: {}", stderr(&out));
        let t = trace.to_str().unwrap();
        let dump = String::from_utf8(rltop(&["dump", t]).stdout).unwrap();
        let mut asking = std::collections::HashSet::new();
        for l in dump.lines() {
            let ev: Value = serde_json::from_str(l).unwrap();
            let tid = ev["tid"].as_u64().unwrap();
            match ev["kind"].as_str().unwrap() {
                "mmap_lock_request" => {
                    assert!(
                        asking.insert(tid),
                        "round {round}: {tid} asks again unanswered: {l}"
                    );
                }
                "mmap_lock_acquired" => {
                    answered += u64::from(asking.remove(&tid));
                }
                _ => {}
            }
        }
        let (code, doc) = json(&["check", "--format", "json", t]);
        assert_eq!(
            doc["findings"],
            serde_json::json!([]),
            "round {round}: {doc:#}"
        );
        assert_eq!(code, Some(0));
    }
    churn.kill().unwrap();
    churn.wait().unwrap();
    // Not vacuous: the churn's mmap_lock traffic is in the traces.
    assert!(answered > 100, "{answered} mmap_lock requests answered");
}
