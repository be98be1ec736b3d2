//! `rltop check` over hand-written traces (`tests/data/check/`): every
//! finding kind, clean traces, lost events, exit codes, the text shape.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

mod common;
use common::{data, rltop};

/// Runs `check --format json` on a data file: (exit code, document).
fn check(name: &str, extra: &[&str]) -> (i32, Value) {
    let path = data(&format!("check/{name}"));
    let mut args = vec!["check", "--format", "json", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = rltop(&args);
    let code = out.status.code().unwrap();
    assert!(
        out.stderr.is_empty(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    (code, doc)
}

/// The findings reduced to what the tests pin down.
fn summary(doc: &Value) -> Vec<Value> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            json!({
                "kind": f["kind"],
                "severity": f["severity"],
                "certain": f["certain"],
                "tids": f["tids"],
                "range": f.get("range").cloned().unwrap_or(Value::Null),
                "evidence": f["evidence"],
            })
        })
        .collect()
}

fn finding(kind: &str, certain: bool, tids: &[u32], range: Option<[u64; 2]>, ev: &[u64]) -> Value {
    json!({
        "kind": kind,
        "severity": "error",
        "certain": certain,
        "tids": tids,
        "range": range.map_or(Value::Null, |r| json!(r)),
        "evidence": ev,
    })
}

const TREE: u64 = 0xffff_8881_0001_0000;

#[test]
fn clean_traces_have_no_findings() {
    for name in [
        "clean_excl_fifo_queue.jsonl",
        "clean_rw_readers.jsonl",
        "clean_dio_irq.jsonl",
        // Grants merged before the release they followed (same timestamp).
        "clean_same_ts.jsonl",
        // Faults during a punch on a kernel without range locks: a fault
        // fires at filemap_fault entry and then waits for invalidate_lock,
        // so it proves nothing (it was a fault_during_punch warning once).
        "clean_fault_during_punch.jsonl",
        // Pages added by the operation's own task, beside the window,
        // on another file, or after the window closed; a fault inside it.
        "clean_invalidate_window.jsonl",
    ] {
        let (code, doc) = check(name, &[]);
        assert_eq!(code, 0, "{name}: {doc}");
        assert_eq!(doc["verdict"], "pass", "{name}");
        assert_eq!(doc["findings"], json!([]), "{name}");
        assert_eq!(doc["lost"], 0);
    }
}

#[test]
fn json_document_shape() {
    let (code, doc) = check("inversion.jsonl", &[]);
    assert_eq!(code, 1);
    assert_eq!(
        doc,
        json!({
            "verdict": "fail",
            "events": 8,
            "lost": 0,
            "findings": [{
                "kind": "ordering_inversion",
                "severity": "error",
                "certain": true,
                "ts": 2200,
                "tids": [10],
                "tree": TREE,
                "range": [0, 15],
                "message": "fio/10 requested mmap_lock of mm 0xffff888100200000 (read) while holding range lock 0xffffc90000a00000 [0, 15] excl on tree 0xffff888100010000 (8:3:12): mmap_lock ranks above the range lock",
                "evidence": [2, 3, 4],
            }],
        })
    );
}

#[test]
fn each_finding_kind() {
    let cases: Vec<(&str, i32, Vec<Value>)> = vec![
        (
            "conflicting_grant.jsonl",
            1,
            vec![finding(
                "conflicting_grant",
                true,
                &[11, 10],
                Some([5, 14]),
                &[2, 3, 4, 5],
            )],
        ),
        (
            "conflicting_grant_rw.jsonl",
            1,
            vec![finding(
                "conflicting_grant",
                true,
                &[11, 10],
                Some([9, 9]),
                &[0, 1, 2, 3],
            )],
        ),
        (
            "page_in_locked_range.jsonl",
            1,
            // The fault (uncertain alone: it may yet wait for the lock) and
            // the page_add at index 7 fold into one finding, proven by the
            // page_add; the holder's own page_add and the one after release
            // are fine.
            vec![finding(
                "page_in_locked_range",
                true,
                &[11, 10],
                Some([0, 15]),
                &[3, 4, 6],
            )],
        ),
        (
            "unlock_unheld.jsonl",
            1,
            vec![finding("unlock_unheld", true, &[10], None, &[3])],
        ),
        (
            "fifo_violation.jsonl",
            1,
            vec![finding(
                "fifo_violation",
                true,
                &[12, 11],
                Some([0, 9]),
                &[3, 4, 5, 6, 8],
            )],
        ),
        (
            "stall.jsonl",
            1,
            // Evidence: the waiter's request, the release that freed it.
            vec![finding("stall", true, &[11], Some([5, 5]), &[4, 5])],
        ),
        (
            "deadlock.jsonl",
            1,
            vec![finding(
                "deadlock",
                true,
                &[11, 10],
                Some([5, 5]),
                &[5, 7, 8, 9],
            )],
        ),
        (
            "deadlock_mmap.jsonl",
            1,
            vec![
                finding("ordering_inversion", true, &[10], Some([0, 9]), &[2, 3, 6]),
                finding("deadlock", true, &[11, 10], Some([5, 5]), &[3, 5, 6, 7]),
            ],
        ),
        (
            "leaked_lock.jsonl",
            1,
            // Only the lock whose holder exited; 11 still runs.
            vec![finding("leaked_lock", true, &[10], Some([0, 9]), &[1, 2])],
        ),
        (
            "page_in_invalidated_range.jsonl",
            // Task 11's pages 3 and 5, inside the window; page 0 beside it,
            // page 1 the punching task's own, page 4 after the window.
            1,
            vec![finding(
                "page_in_invalidated_range",
                true,
                &[11, 10],
                Some([1, 15]),
                &[3, 4, 7],
            )],
        ),
    ];
    for (name, code, want) in cases {
        let (got_code, doc) = check(name, &[]);
        assert_eq!(summary(&doc), want, "{name}: {doc}");
        assert_eq!(got_code, code, "{name}");
        assert_eq!(doc["verdict"], if code == 0 { "pass" } else { "fail" });
    }
}

#[test]
fn fifo_violation_without_observed_insertion_is_uncertain() {
    // The same trace without its `rl_queued` events: the requests are 2 ms
    // apart, but a preemption between a lock call's entry and its
    // insertion may have reversed their order in the queue.
    let (code, doc) = check("fifo_violation_unqueued.jsonl", &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        summary(&doc),
        vec![finding(
            "fifo_violation",
            false,
            &[12, 11],
            Some([0, 9]),
            &[2, 3, 5]
        )]
    );
}

#[test]
fn a_request_preempted_before_it_entered_the_queue_is_served_after_a_later_one() {
    // 11 asks first, 12 enters the queue first (11 was preempted in
    // between): 12's grant before 11's is FIFO.
    let (code, doc) = check("fifo_preempted.jsonl", &[]);
    assert_eq!((code, doc["findings"].clone()), (0, json!([])), "{doc}");
}

#[test]
fn stall_threshold_is_configurable() {
    // The waiter waits 2 s after its blocker left: under a 3 s threshold
    // that is no stall.
    let (code, doc) = check("stall.jsonl", &["--stall-ms", "3000"]);
    assert_eq!((code, doc["findings"].clone()), (0, json!([])));
}

#[test]
fn lost_events_make_findings_uncertain() {
    let (code, doc) = check("lost_uncertain.jsonl", &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["verdict"], "pass");
    assert_eq!(doc["lost"], 3);
    assert_eq!(
        summary(&doc),
        vec![
            finding(
                "conflicting_grant",
                false,
                &[11, 10],
                Some([5, 14]),
                &[0, 1, 3, 4]
            ),
            finding("unlock_unheld", false, &[11], None, &[6]),
        ]
    );
}

#[test]
fn imported_trace_gives_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.rlt");
    let input = data("check/deadlock_mmap.jsonl");
    let out = rltop(&[
        "import",
        input.to_str().unwrap(),
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = rltop(&["check", "--format", "json", trace.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let (_, direct) = check("deadlock_mmap.jsonl", &[]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc, direct);
}

#[test]
fn flavour_option_changes_the_rules() {
    // Two readers on one range: legal for rw; as exclusive locks, the second
    // grant conflicts.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("readers.jsonl");
    std::fs::write(
        &f,
        "{\"ts\":1,\"kind\":\"rl_request\",\"tid\":1,\"pid\":1,\"tree\":1,\"lock\":10,\"start\":0,\"last\":3,\"mode\":\"read\"}\n\
         {\"ts\":2,\"kind\":\"rl_acquired\",\"tid\":1,\"pid\":1,\"tree\":1,\"lock\":10}\n\
         {\"ts\":3,\"kind\":\"rl_request\",\"tid\":2,\"pid\":2,\"tree\":1,\"lock\":11,\"start\":2,\"last\":2,\"mode\":\"read\"}\n\
         {\"ts\":4,\"kind\":\"rl_acquired\",\"tid\":2,\"pid\":2,\"tree\":1,\"lock\":11}\n",
    )
    .unwrap();
    let p = f.to_str().unwrap();
    let out = rltop(&["check", "--format", "json", p]);
    assert_eq!(out.status.code(), Some(0));
    let out = rltop(&["check", "--format", "json", "--flavour", "excl_fifo", p]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["findings"][0]["kind"], "conflicting_grant");
}

#[test]
fn unreadable_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.rlt");
    let garbage = dir.path().join("garbage.rlt");
    std::fs::write(&garbage, b"not a trace").unwrap();
    let bad_jsonl = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad_jsonl,
        b"{\"ts\":1,\"kind\":\"nope\",\"tid\":1,\"pid\":1}\n",
    )
    .unwrap();
    for p in [&missing, &garbage, &bad_jsonl] {
        let out = rltop(&["check", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", p.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("rltop: "), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn text_report_of_an_inversion_has_lockdep_shape() {
    let path = data("check/inversion.jsonl");
    let out = rltop(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let want = [
        "error: ordering_inversion at 0.000001200: fio/10 requested mmap_lock",
        "WARNING: possible circular locking dependency detected",
        "fio/10 is trying to acquire lock:",
        "  mmap_lock of mm 0xffff888100200000 (read)",
        "but task is already holding lock:",
        "  range lock 0xffffc90000a00000 [0, 15] excl on tree 0xffff888100010000 (8:3:12)",
        " Possible unsafe locking scenario:",
        "       CPU0                            CPU1",
        "       ----                            ----",
        "  lock(range lock [0, 15]);",
        "                                  lock(mmap_lock);",
        "                                  lock(range lock [0, 15]);",
        "  lock(mmap_lock);",
        "1 lock held by fio/10:",
        "  evidence:",
        "    #2            0.000001000 cpu?   fio/10[10] rl_request tree 0xffff888100010000 lock 0xffffc90000a00000 pages 0-15 excl",
        "    #3            0.000001100 cpu?   fio/10[10] rl_acquired tree 0xffff888100010000 lock 0xffffc90000a00000",
        "    #4            0.000001200 cpu?   fio/10[10] mmap_lock_request mm 0xffff888100200000 read",
        "FAIL: 8 events, 0 lost, 1 findings (1 certain)",
    ];
    // The lines appear in this order.
    let mut rest = text.as_str();
    for w in want {
        let at = rest
            .find(w)
            .unwrap_or_else(|| panic!("missing {w:?} in order in:\n{text}"));
        rest = &rest[at + w.len()..];
    }
    assert!(!text.contains("*** DEADLOCK ***"), "{text}");
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "trailing blanks:\n{text}"
    );
}

#[test]
fn text_report_of_a_deadlock_names_the_whole_cycle() {
    let path = data("check/deadlock.jsonl");
    let out = rltop(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    for w in [
        "error: deadlock",
        "b/11 is trying to acquire lock:",
        "the existing dependency chain (in reverse order) is:",
        "-> #0 (a/10):",
        "-> #1 (b/11):",
        "       CPU0                            CPU1",
        " *** DEADLOCK ***",
        "1 lock held by a/10:",
        "tree 0xffff888100011000 (8:3:13)",
    ] {
        assert!(text.contains(w), "missing {w:?} in:\n{text}");
    }
}

mod prop {
    //! Streams generated from the reference lock's own decisions are clean;
    //! the same streams with events replaced by `lost` never give a certain
    //! finding.

    use std::collections::HashMap;

    use proptest::prelude::*;
    use rl_reference::{Mode as RefMode, Outcome, StateMachine};
    use rltop::analysis::{Checker, Config, Verdict};
    use rltop::events::{Body, Event, Mode};
    use rltop::model::{Flavour, Model};

    use crate::common::ev;

    #[derive(Clone, Debug)]
    enum Op {
        /// Task `task` requests pages `[start, start + len]` on `tree`.
        Request {
            task: u32,
            tree: u64,
            start: u64,
            len: u64,
            write: bool,
            try_: bool,
        },
        /// Release the `n`-th held lock (from irq context if `irq`).
        Release { n: usize, irq: bool },
        /// Cancel the `n`-th waiting request.
        Cancel { n: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u32..6, 1u64..3, 0u64..12, 0u64..4, any::<bool>(), prop::bool::weighted(0.2))
                .prop_map(|(task, tree, start, len, write, try_)| Op::Request { task, tree, start, len, write, try_ }),
            3 => (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(n, irq)| Op::Release { n, irq }),
            1 => any::<usize>().prop_map(|n| Op::Cancel { n }),
        ]
    }

    /// Runs the ops on reference state machines and emits the events a
    /// correct kernel would: requests, grants in the reference's order,
    /// releases, cancels, trylocks. Each task holds or waits for at most one
    /// lock at a time, so no wait cycle (a real deadlock) can form.
    #[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
    fn stream<F: rl_reference::Flavour>(ops: &[Op], rw: bool) -> Vec<Event> {
        let mut sms: HashMap<u64, StateMachine<F>> = HashMap::new();
        let mut owner: HashMap<u64, (u32, u64)> = HashMap::new(); // lock -> (task, tree)
        let mut busy: HashMap<u32, u64> = HashMap::new(); // task -> lock
        let mut held: Vec<u64> = Vec::new();
        let mut waiting: Vec<u64> = Vec::new();
        let mut evs = Vec::new();
        let mut ts = 1_000u64;
        let mut next_lock = 0x1000u64;
        let mut push = |evs: &mut Vec<Event>, tid: u32, body: Body| {
            ts += 1_000;
            evs.push(ev(ts, tid, body));
        };
        let grant = |evs: &mut Vec<Event>,
                     push: &mut dyn FnMut(&mut Vec<Event>, u32, Body),
                     ids: Vec<u64>,
                     owner: &HashMap<u64, (u32, u64)>,
                     held: &mut Vec<u64>,
                     waiting: &mut Vec<u64>| {
            for id in ids {
                let (tid, tree) = owner[&id];
                waiting.retain(|&w| w != id);
                held.push(id);
                push(evs, tid, Body::RlAcquired { tree, lock: id });
            }
        };
        for op in ops {
            match *op {
                Op::Request {
                    task,
                    tree,
                    start,
                    len,
                    write,
                    try_,
                } => {
                    if busy.contains_key(&task) {
                        continue;
                    }
                    let lock = next_lock;
                    next_lock += 0x40;
                    let (mode, rmode) = match (rw, write) {
                        (false, _) => (Mode::Excl, RefMode::Write),
                        (true, true) => (Mode::Write, RefMode::Write),
                        (true, false) => (Mode::Read, RefMode::Read),
                    };
                    let sm = sms.entry(tree).or_default();
                    push(
                        &mut evs,
                        task,
                        Body::RlRequest {
                            tree,
                            lock,
                            start,
                            last: start + len,
                            mode,
                        },
                    );
                    if try_ {
                        if sm.try_request(lock, start, start + len, rmode).unwrap() {
                            owner.insert(lock, (task, tree));
                            busy.insert(task, lock);
                            held.push(lock);
                            push(&mut evs, task, Body::RlAcquired { tree, lock });
                        } else {
                            push(&mut evs, task, Body::RlTrylockFailed { tree, lock });
                        }
                        continue;
                    }
                    owner.insert(lock, (task, tree));
                    busy.insert(task, lock);
                    match sm.request(lock, start, start + len, rmode).unwrap() {
                        Outcome::Granted => {
                            held.push(lock);
                            push(&mut evs, task, Body::RlAcquired { tree, lock });
                        }
                        Outcome::Queued => waiting.push(lock),
                    }
                }
                Op::Release { n, irq } => {
                    if held.is_empty() {
                        continue;
                    }
                    let lock = held.remove(n % held.len());
                    let (task, tree) = owner[&lock];
                    busy.remove(&task);
                    let ids = sms.get_mut(&tree).unwrap().release(lock).unwrap();
                    push(
                        &mut evs,
                        if irq { 0 } else { task },
                        Body::RlRelease { tree, lock },
                    );
                    grant(&mut evs, &mut push, ids, &owner, &mut held, &mut waiting);
                }
                Op::Cancel { n } => {
                    if waiting.is_empty() {
                        continue;
                    }
                    let lock = waiting.remove(n % waiting.len());
                    let (task, tree) = owner[&lock];
                    busy.remove(&task);
                    let ids = sms.get_mut(&tree).unwrap().cancel(lock).unwrap();
                    push(&mut evs, task, Body::RlCancel { tree, lock });
                    grant(&mut evs, &mut push, ids, &owner, &mut held, &mut waiting);
                }
            }
        }
        evs
    }

    fn run(evs: &[Event], flavour: Flavour) -> Verdict {
        let mut c = Checker::over(Model::new(Some(flavour)), Config::default());
        for (i, e) in evs.iter().enumerate() {
            c.event(i as u64, e);
        }
        c.finish()
    }

    /// Any event at all, from small id spaces so that they collide.
    fn any_event() -> impl Strategy<Value = Event> {
        use rltop::events::{Dev, PunchOp};
        let dev = Dev { major: 8, minor: 1 };
        let mode = prop_oneof![Just(Mode::Excl), Just(Mode::Read), Just(Mode::Write)];
        let body = prop_oneof![
            (1u64..3, 1u64..4, 0u64..8, 0u64..8, mode).prop_map(
                |(tree, lock, start, last, mode)| {
                    Body::RlRequest {
                        tree,
                        lock,
                        start,
                        last,
                        mode,
                    }
                }
            ),
            (1u64..3, 1u64..4).prop_map(|(tree, lock)| Body::RlAcquired { tree, lock }),
            (1u64..3, 1u64..4).prop_map(|(tree, lock)| Body::RlRelease { tree, lock }),
            (1u64..3, 1u64..4).prop_map(|(tree, lock)| Body::RlCancel { tree, lock }),
            (1u64..3, 1u64..4).prop_map(|(tree, lock)| Body::RlTrylockFailed { tree, lock }),
            (1u64..3, 1u64..3).prop_map(move |(tree, ino)| Body::Tree { tree, dev, ino }),
            (1u64..3, any::<bool>()).prop_map(|(mm, write)| Body::MmapLockRequest { mm, write }),
            (1u64..3, any::<bool>(), any::<bool>())
                .prop_map(|(mm, write, success)| Body::MmapLockAcquired { mm, write, success }),
            (1u64..3, any::<bool>()).prop_map(|(mm, write)| Body::MmapLockRelease { mm, write }),
            (1u64..3, 0u64..8).prop_map(move |(ino, index)| Body::Fault { dev, ino, index }),
            (1u64..3, 0u64..8, prop::option::of(0u32..70)).prop_map(move |(ino, index, order)| {
                Body::PageAdd {
                    dev,
                    ino,
                    index,
                    order,
                }
            }),
            (
                1u64..3,
                any::<u64>(),
                any::<u64>(),
                prop::sample::select(&PunchOp::ALL[..]),
                proptest::option::of(0u64..3)
            )
                .prop_map(move |(ino, pos, len, op, id)| Body::PunchBegin {
                    dev,
                    ino,
                    pos,
                    len,
                    op,
                    id
                }),
            proptest::option::of(0u64..3).prop_map(|id| Body::PunchEnd { ret: 0, id }),
            (1u64..3, any::<u64>(), proptest::option::of(0u64..3))
                .prop_map(move |(ino, size, id)| Body::TruncateBegin { dev, ino, size, id }),
            proptest::option::of(0u64..3).prop_map(|id| Body::TruncateEnd { ret: 0, id }),
            (1u64..3, 0u64..4, proptest::option::of(0u64..3)).prop_map(move |(ino, first, id)| {
                Body::InvalidateBegin {
                    dev,
                    ino,
                    first,
                    last: first + 2,
                    id,
                }
            }),
            (1u64..3, proptest::option::of(0u64..3))
                .prop_map(move |(ino, id)| Body::InvalidateEnd { dev, ino, id }),
            (1u64..3, 1u64..3).prop_map(move |(io, ino)| Body::DioBegin {
                io,
                dev,
                ino,
                pos: 0,
                len: 8192,
                write: true
            }),
            (1u64..3).prop_map(|io| Body::DioEnd { io, ret: 0 }),
            Just(Body::Exit),
            Just(Body::Lost {
                count: 1,
                cpu: 0,
                since: None,
                probe: None
            }),
            Just(Body::Task {
                comm: "t".into(),
                kthread: false
            }),
        ];
        (0u64..3_000_000_000, 0u32..4, body).prop_map(|(ts, tid, body)| ev(ts, tid, body))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// No input makes the checker panic, in either flavour or undecided.
        #[test]
        fn arbitrary_events_never_panic(evs in prop::collection::vec(any_event(), 0..200), f in 0u8..3) {
            let flavour = [None, Some(Flavour::ExclFifo), Some(Flavour::Rw)][f as usize];
            let mut c = Checker::over(Model::new(flavour), Config { stall_ns: 500_000_000, ..Config::default() });
            for (i, e) in evs.iter().enumerate() {
                c.event(i as u64, e);
            }
            let v = c.finish();
            let _ = rltop::views::findings::json(&v);
            let _ = rltop::views::findings::text(&v, &Default::default());
        }

        #[test]
        fn reference_streams_are_clean(ops in prop::collection::vec(op(), 1..120), rw in any::<bool>()) {
            let (evs, f) = if rw {
                (stream::<rl_reference::Rw>(&ops, true), Flavour::Rw)
            } else {
                (stream::<rl_reference::ExclFifo>(&ops, false), Flavour::ExclFifo)
            };
            let v = run(&evs, f);
            prop_assert!(v.findings.is_empty(), "{:#?}\n{:#?}", v.findings, evs);
        }

        #[test]
        fn lost_events_never_give_a_certain_finding(
            ops in prop::collection::vec(op(), 1..120),
            rw in any::<bool>(),
            drops in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        ) {
            let (mut evs, f) = if rw {
                (stream::<rl_reference::Rw>(&ops, true), Flavour::Rw)
            } else {
                (stream::<rl_reference::ExclFifo>(&ops, false), Flavour::ExclFifo)
            };
            if evs.is_empty() {
                return Ok(());
            }
            for d in &drops {
                let i = d.index(evs.len());
                evs[i].body = Body::Lost { count: 1, cpu: 0, since: None, probe: None };
                evs[i].tid = 0;
            }
            let v = run(&evs, f);
            let certain: Vec<_> = v.findings.iter().filter(|f| f.certain).collect();
            prop_assert!(certain.is_empty(), "{:#?}\n{:#?}", certain, evs);
            prop_assert!(!v.failed());
        }

        /// As the recorder reports them: the drop is only noticed later, so
        /// the `lost` event comes `delay` events after the dropped one,
        /// with `since` no later than the dropped event's time.
        #[test]
        fn late_lost_events_never_give_a_certain_finding(
            ops in prop::collection::vec(op(), 1..120),
            rw in any::<bool>(),
            drops in prop::collection::vec((any::<prop::sample::Index>(), 0usize..20), 1..4),
        ) {
            let (mut evs, f) = if rw {
                (stream::<rl_reference::Rw>(&ops, true), Flavour::Rw)
            } else {
                (stream::<rl_reference::ExclFifo>(&ops, false), Flavour::ExclFifo)
            };
            for (d, delay) in &drops {
                if evs.is_empty() {
                    break;
                }
                let i = d.index(evs.len());
                if matches!(evs[i].body, Body::Lost { .. }) {
                    // The recorder never loses its own lost records.
                    continue;
                }
                let dropped = evs.remove(i);
                let at = (i + delay).min(evs.len());
                let ts = evs.get(at).map_or(dropped.ts, |e| e.ts.max(dropped.ts));
                evs.insert(at, ev(ts, 0, Body::Lost { count: 1, cpu: 0, since: Some(dropped.ts.saturating_sub(1)), probe: None }));
            }
            let v = run(&evs, f);
            let certain: Vec<_> = v.findings.iter().filter(|f| f.certain).collect();
            prop_assert!(certain.is_empty(), "{:#?}\n{:#?}", certain, evs);
            prop_assert!(!v.failed());
        }
    }
}
