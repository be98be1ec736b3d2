//! Fixtures recorded in the VM by `RLTOP_VM_FIXTURES=1 cargo xtask
//! vm-test` (Debian's kernel, `kmod/rltest/rltest_locks.c`): the page-cache
//! lock patterns as the `fentry` and `kprobe` lock sources saw them, one
//! JSONL file per pattern and source with the workload's own events. These
//! tests check that they are what vm-test checked (so the fixtures stay
//! ready for the rules that use them) and that they read, import and
//! round-trip as traces.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const RLTOP: &str = env!("CARGO_BIN_EXE_rltop");

fn fixture(pattern: &str, src: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mainline")
        .join(format!("kmod-{pattern}-{src}.jsonl"))
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `request|acquired|release|fault ...` of `tid`'s lock events, between
/// the main thread's `rl-locktest kmod <pattern> begin`/`end` markers.
fn steps(evs: &[Value], main: u64, tid: u64, pattern: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for e in evs {
        let text = e["text"].as_str().unwrap_or("");
        if e["kind"] == "marker" && e["tid"] == main {
            inside = match text.strip_prefix(&format!("rl-locktest kmod {pattern} ")) {
                Some("begin") => true,
                Some("end") => false,
                _ => inside,
            };
            continue;
        }
        if !inside || e["tid"] != tid {
            continue;
        }
        let mode = if e["write"] == true { "write" } else { "read" };
        let class = e["class"].as_str().unwrap_or("");
        out.push(match e["kind"].as_str().unwrap() {
            "file_lock_request" => format!("request {class} {mode}"),
            "file_lock_acquired" if e["success"] == true => format!("acquired {class} {mode}"),
            "file_lock_release" => format!("release {class} {mode}"),
            "page_fault" => format!("fault held={}", e["held"]),
            _ => continue,
        });
    }
    out
}

/// The threads of the pattern, in the order they ran: the tids with lock
/// events between the markers.
fn threads(evs: &[Value], main: u64, pattern: &str) -> Vec<u64> {
    let mut tids = Vec::new();
    for e in evs {
        let t = e["tid"].as_u64().unwrap();
        if e["kind"].as_str().unwrap().starts_with("file_lock_")
            && !tids.contains(&t)
            && !steps(evs, main, t, pattern).is_empty()
        {
            tids.push(t);
        }
    }
    tids
}

/// The workload's main thread: the writer of the markers.
fn main_tid(evs: &[Value], pattern: &str) -> u64 {
    evs.iter()
        .find(|e| e["kind"] == "marker" && e["text"] == format!("rl-locktest kmod {pattern} begin"))
        .and_then(|e| e["tid"].as_u64())
        .expect("the pattern's begin marker")
}

#[test]
fn invalidate_lock_held_across_a_page_fault() {
    for src in ["fentry", "kprobe"] {
        let evs = events(&fixture("fault", src));
        let main = main_tid(&evs, "fault");
        assert_eq!(threads(&evs, main, "fault"), [main], "{src}");
        assert_eq!(
            steps(&evs, main, main, "fault"),
            [
                "request invalidate_lock write",
                "acquired invalidate_lock write",
                "fault held=1",
                "release invalidate_lock write"
            ],
            "{src}"
        );
        // The fault came from the kernel (copy_to_user), at a user address,
        // writing, with the module's function on its stack.
        let f = evs.iter().find(|e| e["kind"] == "page_fault").unwrap();
        assert_eq!(f["user"], false, "{src}: {f}");
        assert_eq!(f["write"], true, "{src}: {f}");
        assert!(f["addr"].as_u64().unwrap() >> 63 == 0, "{src}: {f}");
        assert!(
            f["stack"].as_str().unwrap().contains("rltest_fault"),
            "{src}: {f}"
        );
        // The file is named (with its lock addresses), and it is the file
        // whose invalidate_lock the module took.
        let name = format!("/mnt/lk-{src}-fault");
        let file = evs
            .iter()
            .find(|e| e["kind"] == "file" && e["path"] == name.as_str())
            .unwrap_or_else(|| panic!("{src}: no file event for {name}"));
        assert_eq!(file["fs"], "ext4");
        assert!(file["invalidate_lock"].as_u64().is_some() && file["i_rwsem"].as_u64().is_some());
        let locked = evs
            .iter()
            .find(|e| e["kind"] == "file_lock_request")
            .unwrap();
        assert_eq!(
            (&locked["dev"], &locked["ino"]),
            (&file["dev"], &file["ino"])
        );
        assert!(evs.iter().all(|e| e["kind"] != "lost"), "{src}");
    }
}

#[test]
fn two_threads_take_the_two_locks_in_both_orders() {
    for src in ["fentry", "kprobe"] {
        let evs = events(&fixture("order", src));
        let main = main_tid(&evs, "order");
        let t = threads(&evs, main, "order");
        assert_eq!(t.len(), 2, "{src}: {t:?}");
        assert!(!t.contains(&main));
        assert_eq!(
            steps(&evs, main, t[0], "order"),
            [
                "request i_rwsem write",
                "acquired i_rwsem write",
                "request invalidate_lock write",
                "acquired invalidate_lock write",
                "release invalidate_lock write",
                "release i_rwsem write"
            ],
            "{src}: the documented order"
        );
        assert_eq!(
            steps(&evs, main, t[1], "order"),
            [
                "request invalidate_lock write",
                "acquired invalidate_lock write",
                "request i_rwsem write",
                "acquired i_rwsem write",
                "release i_rwsem write",
                "release invalidate_lock write"
            ],
            "{src}: the wrong order, i_rwsem asked for while invalidate_lock is held"
        );
        assert!(evs.iter().all(|e| e["kind"] != "lost"), "{src}");
    }
}

#[test]
fn the_fixtures_import_and_dump_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for pattern in ["fault", "order"] {
        for src in ["fentry", "kprobe"] {
            let input = fixture(pattern, src);
            let trace = dir.path().join(format!("{pattern}-{src}.rlt"));
            let out = Command::new(RLTOP)
                .arg("import")
                .arg(&input)
                .arg("-o")
                .arg(&trace)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(RLTOP)
                .arg("dump")
                .arg(&trace)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                std::fs::read_to_string(&input).unwrap()
            );
        }
    }
}

/// `rltop check --format json` of a fixture: its exit code and findings.
fn check(path: &Path) -> (Option<i32>, Value) {
    let out = Command::new(RLTOP)
        .args(["check", "--format", "json"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

/// The bug each pattern really has, as `check` reports it from the kernel's
/// own events: one certain `ordering_inversion` with the lock held and the
/// event that broke the order as evidence, lockdep-shaped in the text.
#[test]
fn check_reports_each_lock_order_bug_of_the_module() {
    for src in ["fentry", "kprobe"] {
        let input = fixture("fault", src);
        let evs = events(&input);
        let (code, doc) = check(&input);
        assert_eq!(code, Some(1), "{src}: {doc:#}");
        let f = doc["findings"].as_array().unwrap();
        assert_eq!(f.len(), 1, "{src}: {doc:#}");
        assert_eq!(f[0]["kind"], "ordering_inversion");
        assert_eq!(f[0]["certain"], true);
        let msg = f[0]["message"].as_str().unwrap();
        assert!(msg.contains("took a page fault at"), "{msg}");
        assert!(
            msg.contains("while holding invalidate_lock of /mnt/lk-"),
            "{msg}"
        );
        // The fault's own mmap_lock request folds into the same finding.
        assert!(msg.ends_with("(and 1 more)"), "{msg}");
        let ev: Vec<&str> = f[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| evs[i.as_u64().unwrap() as usize]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(ev, ["file_lock_acquired", "page_fault"], "{src}");
        // Both stacks, as lockdep gives them: where the module took the
        // invalidate_lock (its write request's stack, recorded in the VM)
        // and where it faulted.
        assert!(
            msg.contains("held lock taken at: ") && msg.contains("rltest_fault"),
            "{msg}"
        );
        let text = Command::new(RLTOP)
            .arg("check")
            .arg(&input)
            .output()
            .unwrap();
        let text = String::from_utf8(text.stdout).unwrap();
        let taken = text
            .split("the held lock was taken at:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{src}: no acquisition stack: {text}"));
        let fault = taken
            .split("the new request is at:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{src}: no fault stack: {text}"));
        assert!(
            taken.lines().take(6).any(|l| l.contains("rltest_fault")),
            "{src}: {text}"
        );
        assert!(
            fault.lines().take(10).any(|l| l.contains("rltest_fault")),
            "{src}: {text}"
        );

        let input = fixture("order", src);
        let evs = events(&input);
        let (code, doc) = check(&input);
        assert_eq!(code, Some(1), "{src}: {doc:#}");
        let f = doc["findings"].as_array().unwrap();
        assert_eq!(f.len(), 1, "{src}: {doc:#}");
        assert_eq!(f[0]["kind"], "ordering_inversion");
        assert_eq!(f[0]["certain"], true);
        let msg = f[0]["message"].as_str().unwrap();
        assert!(
            msg.contains("asked for i_rwsem of /mnt/lk-")
                && msg.contains("while holding invalidate_lock"),
            "{msg}"
        );
        let ev: Vec<&str> = f[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| evs[i.as_u64().unwrap() as usize]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(ev, ["file_lock_acquired", "file_lock_request"], "{src}");
        let text = Command::new(RLTOP)
            .arg("check")
            .arg(&input)
            .output()
            .unwrap();
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(
            text.contains("WARNING: possible circular locking dependency detected")
                && text.contains("the rule: i_rwsem ranks above invalidate_lock"),
            "{text}"
        );
    }
}
