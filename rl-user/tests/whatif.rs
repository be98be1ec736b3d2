//! `rltop whatif` on a hand-written trace (`tests/data/whatif/dio_punch.jsonl`)
//! whose predictions are worked out by hand, invariants on a simulated
//! one, and (as root) mainline's predictions held against the waits a live
//! recording measured.
//!
//! The trace (times in us; file 8:1:12 unless said; page holds 1 us):
//!
//! - A: DIO write of pages 0-3 by task 10, 0..100;
//! - a fault on page 7 of another file (8:1:99) by task 14 at 5;
//! - B: DIO write of pages 10-13 by task 11, 10..110;
//! - C: punch of page 2 by task 12, 20..70 (50 us);
//! - D: page_add of page 20 by task 13 at 30.
//!
//! Range locking: A 0-100, B 10-110 and D 30-31 run at once (3 at most);
//! C overlaps A: waits 20 -> 100 (80), holds 100-150. Busy 0-150, holds
//! 100 + 100 + 50 + 1 = 251: parallelism 251/150.
//! Whole file (FIFO): A 0-100; B waits 10 -> 100 (90), runs 100-200; C
//! waits 20 -> 200 (180), 200-250; D waits 30 -> 250 (220), 250-251.
//! Waits 3, total 490, max 220; busy 251 = holds: parallelism 1.
//! Shared whole file (file-rw: IO shares, punch exclusive): A 0-100 and
//! B 10-110 share; C (punch) waits for both: 20 -> 110 (90), 110-160; D
//! (a page fill, shared) queues behind the waiting punch (FIFO): 30 ->
//! 160 (130), 160-161. Waits 2, total 220, max 130; busy 161; 2 at most.
//! Mainline (a filesystem the trace does not name: locked as ext4): the DIO
//! writes extend the file, so each takes i_rwsem exclusively: A 0-100, B
//! waits 10 -> 100 (90), 100-200; C (punch: i_rwsem, then invalidate_lock)
//! waits 20 -> 200 (180), 200-250; D (a fill: invalidate_lock shared) is
//! not blocked by C, which waits for i_rwsem and holds nothing: 30-31.
//! Waits 2 (both on i_rwsem), total 270, max 180; busy 250; 2 at most.
//! The other file: one 1 us fault, no wait, under all four.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

mod common;
use common::{LoopFs, RLTOP, assert_text_snapshot, data, need_fs, rltop, stderr};

fn dio_punch() -> String {
    data("whatif/dio_punch.jsonl").to_str().unwrap().to_string()
}

fn whatif_json(path: &str) -> Value {
    let out = rltop(&["whatif", "--format", "json", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn figures(f: &Value) -> Value {
    json!([
        f["ops"],
        f["waited"],
        f["wait_total_ns"],
        f["wait_max_ns"],
        f["busy_ns"],
        f["hold_total_ns"],
        f["max_concurrent"]
    ])
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
fn predictions_match_the_hand_worked_figures() {
    let doc = whatif_json(&dio_punch());
    assert_eq!(
        (doc["ops"].clone(), doc["unmatched"].clone()),
        (json!(5), json!(0))
    );
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let f = &files[0];
    assert_eq!(
        (f["dev"].clone(), f["ino"].clone()),
        (json!("8:1"), json!(12))
    );
    assert_eq!(
        f["kinds"],
        json!({"page_add": 1, "dio_write": 2, "punch": 1})
    );
    assert_eq!(
        figures(&f["range"]),
        json!([4, 1, 80_000, 80_000, 150_000, 251_000, 3])
    );
    assert!((f["range"]["parallelism"].as_f64().unwrap() - 251.0 / 150.0).abs() < 1e-9);
    assert_eq!(
        figures(&f["whole_file"]),
        json!([4, 3, 490_000, 220_000, 251_000, 251_000, 1])
    );
    assert_eq!(f["whole_file"]["parallelism"], 1.0);
    assert_eq!(
        figures(&f["file_shared"]),
        json!([4, 2, 220_000, 130_000, 161_000, 251_000, 2])
    );
    // Who waited: under range locking only the punch (C); under the whole
    // file B (DIO), C and D (page fill); shared, C and D. (JSON objects
    // come back sorted by key.)
    let by_kind = |f: &Value| {
        f["waits_by_kind"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    w["waited"].as_u64().unwrap(),
                    w["wait_total_ns"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let s = |k: &str, n, t| (k.to_string(), n, t);
    assert_eq!(by_kind(&f["range"]), [s("punch", 1, 80_000)]);
    assert_eq!(
        by_kind(&f["whole_file"]),
        [
            s("dio_write", 1, 90_000),
            s("page_add", 1, 220_000),
            s("punch", 1, 180_000)
        ]
    );
    assert_eq!(
        by_kind(&f["file_shared"]),
        [s("page_add", 1, 130_000), s("punch", 1, 90_000)]
    );
    let g = &files[1];
    assert_eq!(
        (g["ino"].clone(), g["kinds"].clone()),
        (json!(99), json!({"fault": 1}))
    );
    assert_eq!(figures(&g["range"]), json!([1, 0, 0, 0, 1000, 1000, 1]));
    assert_eq!(
        figures(&g["whole_file"]),
        json!([1, 0, 0, 0, 1000, 1000, 1])
    );
    assert_eq!(
        figures(&g["file_shared"]),
        json!([1, 0, 0, 0, 1000, 1000, 1])
    );
    // All files: sums of waits, busy times and holds.
    assert_eq!(
        figures(&doc["range"]),
        json!([5, 1, 80_000, 80_000, 151_000, 252_000, 3])
    );
    assert_eq!(
        figures(&doc["whole_file"]),
        json!([5, 3, 490_000, 220_000, 252_000, 252_000, 1])
    );
    assert_eq!(
        figures(&doc["mainline"]),
        json!([5, 2, 270_000, 180_000, 251_000, 252_000, 2])
    );
    assert_eq!(
        doc["mainline"]["waits_by_lock"],
        json!({"i_rwsem": {"waited": 2, "wait_total_ns": 270_000}})
    );
    // No contention_* in the trace: nothing measured.
    assert_eq!(doc["measured"], json!({}));

    let out = rltop(&["whatif", &dio_punch()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "range locking reduces total predicted wait by 410.00 us against whole-file serialization (490.00 us -> 80.00 us)\n\
             range locking reduces total predicted wait by 140.00 us against a shared whole-file lock (220.00 us -> 80.00 us)\n\
             range locking reduces total predicted wait by 190.00 us against today's mainline locks (270.00 us -> 80.00 us)\n"
        ),
        "{text}"
    );
    assert_text_snapshot!("dio_punch_text", text);
    // A longer page hold changes only what the page ops hold: D holds 10 us.
    // Whole file: D waits 30 -> 250 still, busy 260.
    let out = rltop(&[
        "whatif",
        "--format",
        "json",
        "--page-hold-ns",
        "10000",
        &dio_punch(),
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["files"][0]["whole_file"]["busy_ns"], 260_000);
    assert_eq!(doc["files"][0]["range"]["wait_total_ns"], 80_000);
}

/// On a simulated workload (Kara's design on one file): both policies see
/// the same operations and hold times; whole-file serialization never runs
/// two at once, so its parallelism is 1.
#[test]
fn policies_replay_the_same_operations_of_a_simulated_workload() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("mixed.rlt");
    let out = rltop(&[
        "simulate",
        "--scenario",
        "mixed",
        "--events",
        "2000",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let doc = whatif_json(trace.to_str().unwrap());
    let (r, w) = (&doc["range"], &doc["whole_file"]);
    assert!(doc["ops"].as_u64().unwrap() > 100, "{doc}");
    assert_eq!(r["ops"], w["ops"]);
    assert_eq!(r["hold_total_ns"], w["hold_total_ns"]);
    assert_eq!(r["hold_total_ns"], doc["file_shared"]["hold_total_ns"]);
    assert_eq!(w["max_concurrent"], 1);
    assert_eq!(w["busy_ns"], w["hold_total_ns"]);
    assert!(w["waited"].as_u64().unwrap() > 0);
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let out = rltop(&["whatif", "/nonexistent/trace.rlt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The command streams (operations released as soon as nothing can arrive
/// before them); collecting the whole trace first and replaying it in one
/// go gives the same predictions.
#[test]
fn streaming_and_whole_trace_replays_agree_on_a_simulated_workload() {
    use rltop::analysis::whatif::{Collector, Config, WhatIfRun, whatif};
    use rltop::trace::{self, Item};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.rlt");
    let out = rltop(&[
        "simulate",
        "--scenario",
        "mixed",
        "--events",
        "5000",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let cfg = Config::default();
    let mut run = WhatIfRun::new(cfg);
    let mut all = Collector::new(cfg);
    for item in trace::open_events(&path).unwrap() {
        let Item::Event(ev) = item.unwrap() else {
            panic!("damaged trace")
        };
        run.event(&ev);
        all.event(&ev);
    }
    let measured = all.measured().clone();
    let (ops, unmatched) = all.finish();
    let streamed = run.finish();
    assert!(streamed.ops > 500);
    assert_eq!(streamed, whatif(&ops, unmatched, &measured, cfg));
}

const LOCKTEST: &str = env!("CARGO_BIN_EXE_rl-locktest");

/// Records `rl-locktest fault-punch` (one thread reads a file through a
/// shared mapping while another punches it) on `fs`; the whatif JSON.
fn fault_punch_whatif(fs: &LoopFs, rounds: &str) -> Value {
    let trace = fs.dir.path().join("fp.rlt");
    let file = fs.mnt.join("fp");
    let out = std::process::Command::new(RLTOP)
        .args(["record", "--force", "-o"])
        .arg(&trace)
        .args([
            "--",
            LOCKTEST,
            "fault-punch",
            file.to_str().unwrap(),
            rounds,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "record: {}", stderr(&out));
    whatif_json(trace.to_str().unwrap())
}

/// Mainline's predicted waits on `invalidate_lock` against the ones the
/// kernel had, operation by operation, on a live recording of the race
/// `invalidate_lock` exists for. The tolerances, and why:
///
/// - of the operations predicted to wait, at least 3 in 4 waited in the
///   trace (measured 0.84 to 0.99 here): the replay's holds are the
///   trace's, so a predicted wait is a real overlap;
/// - of the operations that waited in the trace, at least 1 in 4 is
///   predicted (0.48 to 0.61 here, 0.32 once in CI on XFS on a run with
///   only 179 contended operations): the replay grants a waiter the moment the
///   lock is free and keeps rwsem queues FIFO, but in the kernel a woken
///   waiter runs some microseconds later, and a punch loop that lets go
///   and takes the lock again can pass a queued reader; those short waits
///   are missed, and an error carries to the operations after it;
/// - over the operations that waited in both, the predicted total is at
///   most 1.2 times the measured one (0.28 to 0.46 on a quiet machine,
///   0.1 with other tests running): more would mean holds longer than the
///   kernel's. The measured waits also hold the wake-up latency and the
///   run-queue delays of a 2-CPU machine (single waits of 2 to 3 ms while
///   the lock was free), which the replay cannot see: only a floor of 0.05
///   (the prediction is not nothing) is safe on a shared machine.
///
/// A run where the two threads hardly overlapped (fewer than 500
/// operations waited: the reader and the puncher mostly took turns on one
/// CPU) says little, as its few waits are mostly the race's start and end:
/// it is retried, three times at most, and the largest race is judged.
/// Races here have 2,000 to 15,000.
/// The filesystems run one after the other: in parallel, the two races
/// would slow each other down.
fn mainline_predictions_hold_on(fs_name: &'static str) {
    let test = format!("mainline_predictions_hold_against_a_live_recording_on_{fs_name}");
    if !need_fs(&test, fs_name) {
        return;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let contended = |w: &Value| {
        let a = &w["mainline"]["vs_measured"];
        n(&a["both"]) + n(&a["measured_only"])
    };
    let mut best: Option<Value> = None;
    for attempt in 1..=3 {
        let fs = LoopFs::new(fs_name);
        // 10000: XFS punches an already punched range in ~10 us, and 3000
        // rounds can end within the reader's first time slices.
        let w = fault_punch_whatif(&fs, "10000");
        eprintln!(
            "{fs_name}, try {attempt}: measured {}; per operation {}; predicted {}",
            w["measured"]["invalidate_lock"],
            w["mainline"]["vs_measured"],
            w["mainline"]["waits_by_lock"]
        );
        if best.as_ref().is_none_or(|b| contended(&w) > contended(b)) {
            best = Some(w);
        }
        if best.as_ref().is_some_and(|b| contended(b) >= 500) {
            break;
        }
    }
    // After three small races, the largest is judged all the same, if the
    // threads raced at all.
    let w = best.expect("three tries");
    assert!(
        contended(&w) >= 30,
        "{fs_name}: the reader and the puncher never raced in three tries"
    );
    let a = &w["mainline"]["vs_measured"];
    let (both, pred_only, meas_only) = (
        n(&a["both"]),
        n(&a["predicted_only"]),
        n(&a["measured_only"]),
    );
    let precision = both as f64 / (both + pred_only) as f64;
    let recall = both as f64 / (both + meas_only) as f64;
    let ratio = n(&a["both_predicted_ns"]) as f64 / n(&a["both_measured_ns"]).max(1) as f64;
    assert!(
        precision >= 0.75,
        "{fs_name}: precision {precision:.2}: {a}"
    );
    assert!(recall >= 0.25, "{fs_name}: recall {recall:.2}: {a}");
    assert!(
        (0.05..=1.2).contains(&ratio),
        "{fs_name}: ratio {ratio:.2}: {a}"
    );
    // The file is named, not numbered.
    assert!(
        w["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().is_some_and(|p| p.ends_with("/fp"))),
        "{}",
        w["files"]
    );
}

#[test]
fn mainline_predictions_hold_against_a_live_recording() {
    mainline_predictions_hold_on("ext4");
    mainline_predictions_hold_on("xfs");
}
