//! `rltop whatif` on a hand-written trace (`tests/data/whatif/dio_punch.jsonl`)
//! whose predictions are worked out by hand, and invariants on a simulated
//! one.
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
use common::{assert_text_snapshot, data, rltop};

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
