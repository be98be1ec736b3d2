//! `rltop report` over a hand-written trace (`tests/data/report/`) whose
//! figures are worked out by hand in the comments, and over a simulated one.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use serde_json::Value;

mod common;
use common::{data, rltop};

fn report_json(path: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report", "--format", "json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = rltop(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(doc: &'a Value, class: &str, op: Option<&str>) -> &'a Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"] == class && r.get("op").and_then(Value::as_str) == op)
        .unwrap_or_else(|| panic!("no row {class} {op:?} in {doc:#}"))
}

#[test]
fn figures_match_the_hand_worked_trace() {
    let doc = report_json(&data("report/contention.jsonl"), &[]);
    assert_eq!(doc["events"], 25);
    assert_eq!(doc["lost"], 4);
    // The punch holds [0, 9] from 1100 to 11100, uncontended.
    let punch = row(&doc, "range_lock", Some("punch"));
    assert_eq!(punch["dev"], "8:1");
    assert_eq!(punch["ino"], 12);
    assert_eq!(punch["mode"], "excl");
    assert_eq!(
        (
            punch["acquisitions"].as_u64(),
            punch["contentions"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert!(punch["wait"].is_null());
    assert_eq!(punch["hold"]["total"], 10_000);
    // The fault on page 5 asks at 2200 behind the punch, gets it at 11300
    // (waits 9100), holds it 500.
    let fault = row(&doc, "range_lock", Some("fault"));
    assert_eq!(
        (
            fault["acquisitions"].as_u64(),
            fault["contentions"].as_u64()
        ),
        (Some(1), Some(1))
    );
    for k in ["min", "max", "avg", "total", "p50", "p99"] {
        assert_eq!(fault["wait"][k], 9_100, "wait {k}");
    }
    assert_eq!(fault["hold"]["max"], 500);
    // The reader queues behind both: waits 8900, holds 1000.
    let buffered = row(&doc, "range_lock", Some("buffered"));
    assert_eq!(buffered["wait"]["total"], 8_900);
    assert_eq!(buffered["hold"]["total"], 1_000);
    // mmap_lock: one read acquisition, held 10000, uncontended.
    let mm = row(&doc, "mmap_lock", None);
    assert_eq!(
        (mm["mm"].as_u64(), mm["mode"].as_str()),
        (Some(777), Some("read"))
    );
    assert_eq!(mm["contentions"], 0);
    assert_eq!(mm["hold"]["total"], 10_000);
    // The punch as a file operation: in flight from 1000 to 11200.
    assert_eq!(row(&doc, "file_op", Some("punch"))["hold"]["total"], 10_200);
    assert_eq!(row(&doc, "file_op", Some("fault"))["acquisitions"], 1);
    // The kernel lock: one contention of 700 ns. The contention_end after
    // the gap has no begin and is not counted; acquisitions are not
    // observable for kernel locks.
    let k = row(&doc, "kernel_lock", None);
    assert_eq!(k["addr"], 65536);
    assert_eq!(k["contentions"], 1);
    assert_eq!(k["wait"]["total"], 700);
    assert!(k["acquisitions"].is_null());
    // The release of a lock never seen and the acquire whose request was
    // lost add nothing: three range lock rows, three acquisitions.
    let rl: Vec<&Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == "range_lock")
        .collect();
    assert_eq!(rl.len(), 3);
    assert_eq!(
        rl.iter()
            .map(|r| r["acquisitions"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
}

/// `tests/data/report/fsops.jsonl`: operations paired by id, the ends
/// from any task. A zero (1100 to 2100) and a loop worker's punch (1300 to
/// 2300, ended by its own task while the zero's is in between), a failed
/// collapse (500), an insert (400), a truncate (600; a punch_end of its id
/// is no end of it), an old punch without ids (800, paired by task), an
/// end of an unknown id and a begin never ended (not counted).
#[test]
fn file_operations_pair_by_id_and_each_op_is_a_row() {
    let doc = report_json(&data("report/fsops.jsonl"), &[]);
    let hold = |op: &str| {
        let r = row(&doc, "file_op", Some(op));
        (
            r["acquisitions"].as_u64().unwrap(),
            r["hold"]["total"].as_u64().unwrap(),
        )
    };
    assert_eq!(hold("zero"), (1, 1000));
    assert_eq!(hold("punch"), (2, 1000 + 800));
    assert_eq!(hold("collapse"), (1, 500));
    assert_eq!(hold("insert"), (1, 400));
    assert_eq!(hold("truncate"), (1, 600));
    let text = rltop(&["report", data("report/fsops.jsonl").to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    for op in ["zero", "collapse", "insert", "truncate", "punch"] {
        assert!(text.contains(op), "{op} in\n{text}");
    }
}

#[test]
fn longest_waits_come_with_their_chains() {
    let doc = report_json(&data("report/contention.jsonl"), &[]);
    let chains = doc["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(chains[0]["wait"], 9_100);
    let steps = chains[0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0]["tid"].as_u64(), steps[0]["comm"].as_str()),
        (Some(11), Some("mapper"))
    );
    assert!(
        steps[0]["waits"]
            .as_str()
            .unwrap()
            .starts_with("range [5, 5] excl (fault)")
    );
    assert_eq!(steps[1]["tid"], 10);
    assert_eq!(steps[1]["held"], true);
    assert!(
        steps[1]["owns"]
            .as_str()
            .unwrap()
            .starts_with("range [0, 9] excl (punch) of tree 0x1000 (8:1:12)")
    );
    // The reader's oldest blocker is the punch too (it was there first).
    assert_eq!(chains[1]["wait"], 8_900);
    assert_eq!(chains[1]["steps"][1]["tid"], 10);
}

#[test]
fn rows_sort_by_the_key_descending() {
    let names = |doc: &Value| -> Vec<String> {
        doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    r["class"].as_str().unwrap(),
                    r.get("op").and_then(Value::as_str).unwrap_or("-")
                )
            })
            .collect()
    };
    let by_wait_max = report_json(&data("report/contention.jsonl"), &["-k", "wait_max"]);
    assert_eq!(
        names(&by_wait_max)[..3],
        ["range_lock/fault", "range_lock/buffered", "kernel_lock/-"]
    );
    // perf lock's names work too; ties go to the larger hold total.
    let by_contended = report_json(&data("report/contention.jsonl"), &["-k", "contended"]);
    assert_eq!(
        names(&by_contended)[..4],
        [
            "range_lock/buffered",
            "range_lock/fault",
            "kernel_lock/-",
            "file_op/punch"
        ]
    );
    let by_hold = report_json(&data("report/contention.jsonl"), &["-k", "hold_total"]);
    assert_eq!(names(&by_hold)[0], "file_op/punch");
}

#[test]
fn text_uses_lock_stat_columns() {
    let out = rltop(&["report", data("report/contention.jsonl").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("rltop report: 25 events, 4 lost"),
        "{text}"
    );
    assert!(text.contains("note: 4 events were lost"));
    for col in [
        "contentions",
        "waittime-min",
        "waittime-max",
        "waittime-total",
        "waittime-avg",
        "acquisitions",
        "holdtime-min",
        "holdtime-p99",
    ] {
        assert!(text.contains(col), "missing column {col}");
    }
    let fault = text
        .lines()
        .find(|l| l.starts_with("tree 0x1000 (8:1:12) fault"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(fault.contains("9.10 us"), "{fault}");
    assert!(text.contains("mapper/11 waits for range [5, 5] excl (fault)"));
    assert!(text.contains("puncher/10 holds range [0, 9] excl (punch)"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"ts\":1,\"kind\":\"nonsense\",\"tid\":1,\"pid\":1}\n",
    )
    .unwrap();
    let out = rltop(&["report", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 1"), "{err}");
    let missing = rltop(&["report", "/nonexistent/trace.rlt"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn simulated_workload_reports_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("mixed.rlt");
    let out = rltop(&[
        "simulate",
        "--events",
        "20000",
        "--seed",
        "3",
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let doc = report_json(&trace, &[]);
    for op in [
        "fault",
        "buffered",
        "dio_read",
        "dio_write",
        "punch",
        "truncate",
    ] {
        let r = row(&doc, "range_lock", Some(op));
        let acq = r["acquisitions"].as_u64().unwrap();
        assert!(acq > 0, "{op}");
        // Every acquisition's lock was released before the end of the
        // simulation, so holds pair with acquisitions one to one.
        assert_eq!(r["hold"]["count"].as_u64().unwrap(), acq, "{op}");
        assert!(r["contentions"].as_u64().unwrap() <= acq);
    }
    // Faults, counted as file operations, match the fault range locks.
    assert_eq!(
        row(&doc, "file_op", Some("fault"))["acquisitions"],
        row(&doc, "range_lock", Some("fault"))["acquisitions"]
    );
}
