//! The page-cache locks of issue 14, live on this machine's kernel, as
//! root, on loop-mounted ext4, XFS and btrfs images: `rltop record` around
//! the known workloads of `rl-locktest`, then `rltop dump`, checked against
//! what the workload says it did.
//!
//! Root policy as in `capture.rs`: without root these tests are skipped
//! with a message, unless RLTOP_REQUIRE_ROOT_TESTS=1 (as in CI), where a
//! skip is a failure. They also need mkfs.ext4, mkfs.xfs and mkfs.btrfs
//! (`cargo xtask setup` installs them).

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{LoopFs, RLTOP, need_root};

const LOCKTEST: &str = env!("CARGO_BIN_EXE_rl-locktest");

/// `rltop record` (extra `args`) around `rl-locktest WORK...`: the
/// workload's JSON report, the events, and the trace's header.
fn record(trace: &Path, args: &[&str], work: &[&str]) -> (Value, Vec<Value>, Value) {
    let out = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(trace)
        .args(args)
        .arg("--")
        .arg(LOCKTEST)
        .args(work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rltop record: {stderr}");
    let report: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from rl-locktest: {stderr}"));
    let dump = Command::new(RLTOP).arg("dump").arg(trace).output().unwrap();
    assert!(dump.status.success());
    let events: Vec<Value> = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lost: u64 = events
        .iter()
        .filter(|e| e["kind"] == "lost")
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(lost, 0, "events were lost");
    // The header, through the trace reader.
    let header = rltop::trace::TraceReader::from_reader(
        std::fs::File::open(trace).unwrap(),
        trace.display().to_string(),
    )
    .unwrap()
    .header()
    .clone();
    (report, events, serde_json::to_value(header).unwrap())
}

fn kind<'a>(events: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| e["kind"] == k)
}

#[test]
fn files_are_named_with_their_lock_addresses_on_ext4_xfs_btrfs() {
    if !need_root("files_are_named_with_their_lock_addresses_on_ext4_xfs_btrfs") {
        return;
    }
    for fs in ["ext4", "xfs", "btrfs"] {
        let m = LoopFs::new(fs);
        let trace = m.dir.path().join("t.rlt");
        let (report, events, _) = record(&trace, &[], &["files", m.mnt.to_str().unwrap(), "3"]);
        let dev = m.dev();
        let mut addrs = Vec::new();
        for f in report["files"].as_array().unwrap() {
            let ino = f["ino"].as_u64().unwrap();
            let named: Vec<&Value> = kind(&events, "file")
                .filter(|e| e["dev"] == dev.as_str() && e["ino"] == ino)
                .collect();
            // Once per inode per recording, with its path from the start.
            assert_eq!(named.len(), 1, "{fs}: file events of {f}: {named:?}");
            let e = named[0];
            assert_eq!(e["path"], f["path"], "{fs}: {e}");
            assert_eq!(e["fs"], fs, "{fs}: {e}");
            let a = e["i_rwsem"].as_u64().unwrap_or(0);
            let b = e["invalidate_lock"].as_u64().unwrap_or(0);
            assert!(a != 0 && b != 0 && a != b, "{fs}: {e}");
            addrs.extend([a, b]);
        }
        let mut uniq = addrs.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(
            uniq.len(),
            6,
            "{fs}: lock addresses not distinct: {addrs:x?}"
        );
        eprintln!("{fs}: 3 files named, 6 distinct lock addresses");
    }
}

/// A file that the recorded processes only punch and truncate (written
/// before the recording, its pages cached: no page-cache event names it)
/// is learned from the operation itself: one `file` event with its path
/// and lock addresses, before the operation's first event (ext4 and XFS
/// from their operation tracepoints, btrfs from the syscalls).
#[test]
fn files_only_punched_and_truncated_are_named() {
    if !need_root("files_only_punched_and_truncated_are_named") {
        return;
    }
    for fs in ["ext4", "xfs", "btrfs"] {
        let m = LoopFs::new(fs);
        let file = m.mnt.join("only");
        std::fs::write(&file, vec![1u8; 1 << 20]).unwrap();
        std::fs::File::open(&file).unwrap().sync_all().unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
        let trace = m.dir.path().join("t.rlt");
        let f = file.to_str().unwrap();
        let out = Command::new(RLTOP)
            .args(["record", "-o"])
            .arg(&trace)
            .args([
                "--",
                "sh",
                "-c",
                &format!("fallocate -p -o 0 -l 65536 {f} && truncate -s 100000 {f}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{fs}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = Command::new(RLTOP)
            .arg("dump")
            .arg(&trace)
            .output()
            .unwrap();
        let events: Vec<Value> = String::from_utf8_lossy(&dump.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let dev = m.dev();
        let on = |e: &&Value| e["dev"] == dev.as_str() && e["ino"] == ino;
        let named: Vec<(usize, &Value)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["kind"] == "file" && on(e))
            .collect();
        assert_eq!(named.len(), 1, "{fs}: file events: {named:?}");
        let (at, e) = named[0];
        assert_eq!(e["path"], f, "{fs}: {e}");
        assert!(e["invalidate_lock"].as_u64().unwrap_or(0) != 0, "{fs}: {e}");
        let first_op = events
            .iter()
            .position(|e| (e["kind"] == "punch_begin" || e["kind"] == "truncate_begin") && on(&e))
            .unwrap_or_else(|| panic!("{fs}: no punch or truncate on the file"));
        assert!(
            at < first_op,
            "{fs}: the file event comes after its first operation"
        );
        eprintln!("{fs}: the punched file is named {f} before its first operation");
    }
}

/// The `file_lock_*` events of `tid` on (`dev`, `ino`) between the
/// task's `rl-locktest <phase> begin` and `end` markers, counted by kind,
/// class and mode.
fn lock_counts(
    events: &[Value],
    tid: u64,
    dev: &str,
    ino: u64,
    phase: &str,
) -> BTreeMap<String, u64> {
    let mut inside = false;
    let mut counts = BTreeMap::new();
    for e in events {
        if e["kind"] == "marker" && e["tid"] == tid {
            let t = e["text"].as_str().unwrap();
            if t == format!("rl-locktest {phase} begin") {
                inside = true;
            } else if t == format!("rl-locktest {phase} end") {
                inside = false;
            }
        }
        let k = e["kind"].as_str().unwrap();
        if inside && k.starts_with("file_lock_") && e["tid"] == tid {
            assert!(
                e["dev"] == dev && e["ino"] == ino,
                "a lock of another file: {e}"
            );
            let mode = if e["write"] == true { "write" } else { "read" };
            let try_ = if e["try"] == true { " try" } else { "" };
            *counts
                .entry(format!("{k} {} {mode}{try_}", e["class"].as_str().unwrap()))
                .or_default() += 1;
        }
    }
    counts
}

#[test]
fn xfs_punches_request_and_release_both_locks_exactly_once_each() {
    if !need_root("xfs_punches_request_and_release_both_locks_exactly_once_each") {
        return;
    }
    let m = LoopFs::new("xfs");
    let trace = m.dir.path().join("t.rlt");
    let file = m.mnt.join("punched");
    const N: u64 = 20;
    let (report, events, header) = record(
        &trace,
        &[],
        &["punch", file.to_str().unwrap(), &N.to_string()],
    );
    assert_eq!(header["lock_source"], "xfs_ilock", "{header}");
    let tid = report["tid"].as_u64().unwrap();
    let ino = report["file"]["ino"].as_u64().unwrap();
    let counts = lock_counts(&events, tid, &m.dev(), ino, "punch");
    // xfs_file_fallocate takes XFS_IOLOCK_EXCL | XFS_MMAPLOCK_EXCL in one
    // xfs_ilock() and drops both in one xfs_iunlock(): per punch one
    // exclusive request and one release of each. The tracepoint fires at
    // xfs_ilock's entry: no acquisitions are recorded.
    let want: BTreeMap<String, u64> = [
        "file_lock_request i_rwsem write",
        "file_lock_request invalidate_lock write",
        "file_lock_release i_rwsem write",
        "file_lock_release invalidate_lock write",
    ]
    .into_iter()
    .map(|k| (k.to_string(), N))
    .collect();
    // Not trylocks (xfs_ilock, not _nowait: the key would say " try").
    // Outside the phase there are others: the write before takes IOLOCK,
    // and the close after tries it (xfs_release freeing EOF blocks).
    assert_eq!(counts, want);
    eprintln!("xfs: {N} punches -> {counts:?}");
}

#[test]
fn a_contended_file_lock_gets_a_caller_name() {
    if !need_root("a_contended_file_lock_gets_a_caller_name") {
        return;
    }
    let m = LoopFs::new("ext4");
    let file = m.mnt.join("contended");
    // Writers of one file serialise on its i_rwsem; on a busy machine a
    // second contends within a few seconds. Up to three tries.
    for attempt in 1..=3 {
        let trace = m.dir.path().join(format!("t{attempt}.rlt"));
        let (report, events, _) =
            record(&trace, &[], &["contend", file.to_str().unwrap(), "2", "4"]);
        let ino = report["file"]["ino"].as_u64().unwrap();
        let dev = m.dev();
        let learned = kind(&events, "file")
            .find(|e| e["dev"] == dev.as_str() && e["ino"] == ino)
            .unwrap_or_else(|| panic!("no file event for the contended file"));
        let rwsem = learned["i_rwsem"].as_u64().unwrap();
        let pid = report["pid"].as_u64().unwrap();
        let on_it: Vec<&Value> = kind(&events, "contention_begin")
            .filter(|e| e["addr"] == rwsem && e["pid"] == pid)
            .collect();
        if on_it.is_empty() {
            eprintln!("attempt {attempt}: no contention on the file's i_rwsem yet");
            continue;
        }
        // Every one is named: a kernel symbol with an offset, outside the
        // locking code (rwsem functions live in the sched text).
        for e in &on_it {
            let c = e["caller"]
                .as_str()
                .unwrap_or_else(|| panic!("no caller: {e}"));
            assert!(
                c.contains("+0x") && !c.starts_with("ip:") && !c.starts_with("0x"),
                "{e}"
            );
            assert!(
                !["down_write", "down_read", "rwsem_down"]
                    .iter()
                    .any(|l| c.starts_with(l)),
                "{e}"
            );
        }
        let mut callers: HashMap<&str, usize> = HashMap::new();
        for e in &on_it {
            *callers
                .entry(e["caller"].as_str().unwrap().split('+').next().unwrap())
                .or_default() += 1;
        }
        eprintln!(
            "{} contentions on the file's i_rwsem, callers {callers:?}",
            on_it.len()
        );
        return;
    }
    panic!("no contention on the file's i_rwsem in three tries");
}

#[test]
fn faults_without_a_lock_below_mmap_lock_give_no_page_fault_events() {
    if !need_root("faults_without_a_lock_below_mmap_lock_give_no_page_fault_events") {
        return;
    }
    // On XFS the lock source sees MMAPLOCK (invalidate_lock) holds, so the
    // fault probes are attached; a correct kernel never faults under it.
    let m = LoopFs::new("xfs");
    let trace = m.dir.path().join("t.rlt");
    let file = m.mnt.join("mapped");
    let (report, events, header) =
        record(&trace, &[], &["fault-punch", file.to_str().unwrap(), "64"]);
    assert_eq!(header["lock_source"], "xfs_ilock");
    assert!(
        header["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "exceptions:page_fault_user (raw)"),
        "{header}"
    );
    let pid = report["pid"].as_u64().unwrap();
    // The workload did fault and punch (the lock events prove the punches).
    let punches = kind(&events, "file_lock_request")
        .filter(|e| e["pid"] == pid && e["class"] == "invalidate_lock" && e["write"] == true)
        .count();
    assert_eq!(punches, 64);
    let faults: Vec<&Value> = kind(&events, "page_fault").collect();
    assert!(faults.is_empty(), "{faults:?}");
}
