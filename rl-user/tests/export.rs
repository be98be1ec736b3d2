//! `rltop export` over `tests/data/hist/small.jsonl` (see `tests/hist.rs`
//! for what happens in it): the Perfetto protobuf decoded with prost, the
//! Chrome JSON parsed, and their tracks, slices, flows, counters and
//! instants checked against the hand-worked trace.
//!
//! Flows expected: the punch's release (xfs_io/100's hold of [0, 9]) woke
//! fsx/200's fault on [5, 5]; the DIO completion's release of aio-dio/300's
//! [0, 1] woke xfs_io/100's [1, 1]. Waiters on the tree: 1 from 2300 to
//! 11500, 1 from 21500 to 25700. xfs_io/100 holds [20, 20] 27000..27500
//! and [30, 30] 27050..27600: overlapping, not nested, so a second lane.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use prost::Message;
use rltop::views::timeline::perfetto::proto::{EventType, Trace};
use serde_json::Value;

mod common;
use common::{RLTOP, data};

fn export(args: &[&str]) {
    let out = Command::new(RLTOP)
        .arg("export")
        .arg(data("hist/small.jsonl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A slice rebuilt from begin/end events.
#[derive(Debug, Clone)]
struct S {
    track: u64,
    name: String,
    begin: u64,
    end: u64,
    flows: Vec<u64>,
    terminating: Vec<u64>,
    args: BTreeMap<String, String>,
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
fn perfetto_tracks_slices_flows_counters_instants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.pftrace");
    export(&["--perfetto", out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    let trace = Trace::decode(bytes.as_slice()).unwrap();

    // Tracks.
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut parent: HashMap<u64, u64> = HashMap::new();
    let mut threads: HashMap<u32, u64> = HashMap::new();
    let mut counters = Vec::new();
    for p in &trace.packet {
        assert_eq!(p.trusted_packet_sequence_id, Some(1));
        let Some(d) = &p.track_descriptor else {
            continue;
        };
        let uuid = d.uuid.unwrap();
        assert!(!names.contains_key(&uuid), "uuid {uuid} twice");
        let name = d
            .name
            .clone()
            .or_else(|| d.thread.as_ref().and_then(|t| t.thread_name.clone()))
            .or_else(|| d.process.as_ref().and_then(|p| p.process_name.clone()))
            .unwrap_or_default();
        if let Some(t) = &d.thread {
            threads.insert(t.tid.unwrap() as u32, uuid);
        }
        if let Some(pu) = d.parent_uuid {
            parent.insert(uuid, pu);
        }
        if d.counter.is_some() {
            counters.push(uuid);
        }
        names.insert(uuid, name);
    }
    assert_eq!(trace.packet[0].sequence_flags, Some(1));
    assert_eq!(names[&threads[&100]], "xfs_io/100");
    assert_eq!(names[&threads[&200]], "fsx/200");
    assert_eq!(names[&threads[&300]], "aio-dio/300");
    let tree = *names
        .iter()
        .find(|(_, n)| *n == "tree 0x1000 (8:1/12)")
        .expect("a tree track")
        .0;
    assert_eq!(counters.len(), 1);
    assert_eq!(parent[&counters[0]], tree);
    // The second lane of xfs_io/100 hangs under its thread track.
    let lanes100: Vec<u64> = parent
        .iter()
        .filter(|(_, p)| **p == threads[&100])
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(lanes100.len(), 1);

    // Slices: every end closes the innermost open slice of its track, and
    // timestamps never go back.
    let mut open: HashMap<u64, Vec<S>> = HashMap::new();
    let mut slices = Vec::new();
    let mut instants = Vec::new();
    let mut counts = Vec::new();
    let mut last_ts = 0;
    for p in &trace.packet {
        let Some(e) = &p.track_event else { continue };
        let ts = p.timestamp.unwrap();
        assert!(ts >= last_ts);
        last_ts = ts;
        let track = e.track_uuid.unwrap();
        assert!(names.contains_key(&track), "unknown track {track}");
        match EventType::try_from(e.r#type.unwrap()).unwrap() {
            EventType::SliceBegin => open.entry(track).or_default().push(S {
                track,
                name: e.name.clone().unwrap(),
                begin: ts,
                end: 0,
                flows: e.flow_ids.clone(),
                terminating: e.terminating_flow_ids.clone(),
                args: e
                    .debug_annotations
                    .iter()
                    .map(|a| (a.name.clone().unwrap(), a.string_value.clone().unwrap()))
                    .collect(),
            }),
            EventType::SliceEnd => {
                let mut s = open
                    .get_mut(&track)
                    .and_then(Vec::pop)
                    .expect("an end without a begin");
                s.end = ts;
                slices.push(s);
            }
            EventType::Instant => instants.push((track, ts, e.name.clone().unwrap())),
            EventType::Counter => counts.push((track, ts, e.counter_value.unwrap())),
            EventType::Unspecified => panic!("untyped event"),
        }
    }
    assert!(open.values().all(Vec::is_empty), "unclosed slices");

    let find = |track: u64, name: &str| -> S {
        slices
            .iter()
            .find(|s| s.name == name && (s.track == track || parent.get(&s.track) == Some(&track)))
            .unwrap_or_else(|| panic!("no {name:?} on {}: {slices:#?}", names[&track]))
            .clone()
    };
    let wait = find(threads[&200], "wait fault [5, 5]");
    assert_eq!((wait.begin, wait.end), (2300, 11500));
    let punch = find(threads[&100], "hold punch [0, 9]");
    assert_eq!((punch.begin, punch.end), (1200, 11200));
    let fault = find(threads[&200], "hold fault [5, 5]");
    assert_eq!((fault.begin, fault.end), (11500, 12000));
    let dio = find(threads[&300], "hold dio_write [0, 1]");
    assert_eq!((dio.begin, dio.end), (21200, 25200));
    let buffered = find(threads[&100], "hold buffered [1, 1]");
    assert_eq!((buffered.begin, buffered.end), (25700, 26700));
    assert_eq!(
        (
            find(threads[&300], "dio write 8:1/12 pos 0 len 8192").begin,
            find(threads[&300], "dio write 8:1/12 pos 0 len 8192").end
        ),
        (21000, 25300)
    );
    // Overlapping holds: one of them on the second lane.
    let a = find(threads[&100], "hold buffered [20, 20]");
    let b = find(threads[&100], "hold buffered [30, 30]");
    assert_eq!(
        (a.begin, a.end, b.begin, b.end),
        (27000, 27500, 27050, 27600)
    );
    assert_ne!(a.track, b.track);
    // The tree's held ranges.
    let r = find(tree, "[0, 9] excl punch by xfs_io/100");
    assert_eq!((r.begin, r.end), (1200, 11200));
    assert_eq!(r.args["tid"], "100");

    // The xfstests tests, from marker to marker (the last to the end).
    let tests_track = *names.iter().find(|(_, n)| *n == "xfstests").unwrap().0;
    let g1 = find(tests_track, "generic/001");
    let g2 = find(tests_track, "generic/002");
    assert_eq!(
        (g1.begin, g1.end, g2.begin, g2.end),
        (100, 20000, 20000, 30600)
    );
    assert_eq!(g2.args["unfinished"], "true");
    assert!(!g1.args.contains_key("unfinished"));

    // Flows: from the release to the hold it granted.
    assert_eq!(punch.flows.len(), 1);
    assert_eq!(fault.terminating, punch.flows);
    assert_eq!(dio.flows.len(), 1);
    assert_eq!(buffered.terminating, dio.flows);
    assert_ne!(punch.flows, dio.flows);
    let all_flows: usize = slices.iter().map(|s| s.flows.len()).sum();
    assert_eq!(all_flows, 2);

    // Waiters on the tree.
    let waiters: Vec<(u64, i64)> = counts.iter().map(|c| (c.1, c.2)).collect();
    assert_eq!(waiters, vec![(2300, 1), (11500, 0), (21500, 1), (25700, 0)]);
    // Markers and the finding.
    let markers: Vec<&(u64, u64, String)> = instants
        .iter()
        .filter(|i| names[&i.0] == "markers")
        .collect();
    assert_eq!(markers.len(), 2);
    assert_eq!(markers[0].1, 100);
    assert!(markers[0].2.starts_with("run fstests generic/001"));
    let findings: Vec<&(u64, u64, String)> = instants
        .iter()
        .filter(|i| names[&i.0] == "findings")
        .collect();
    assert_eq!(findings.len(), 1);
    assert_eq!(
        (findings[0].1, findings[0].2.as_str()),
        (27200, "ordering_inversion")
    );
}

/// A complete event: begin and end (us), and the event.
type Complete<'a> = (f64, f64, &'a Value);

#[test]
#[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
fn chrome_json_nests_per_thread_with_flows_counters_instants() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    export(&["--chrome", out.to_str().unwrap()]);
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let evs = doc["traceEvents"].as_array().unwrap();

    let mut thread_names = HashMap::new();
    let mut process_names = HashMap::new();
    let mut per_thread: HashMap<(u64, u64), Vec<Complete>> = HashMap::new();
    let mut binds: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut counters = Vec::new();
    let mut instants = Vec::new();
    for e in evs {
        let pid = e["pid"].as_u64().unwrap();
        match e["ph"].as_str().unwrap() {
            "M" if e["name"] == "thread_name" => {
                thread_names.insert(
                    (pid, e["tid"].as_u64().unwrap()),
                    e["args"]["name"].as_str().unwrap().to_string(),
                );
            }
            "M" if e["name"] == "process_name" => {
                process_names.insert(pid, e["args"]["name"].as_str().unwrap().to_string());
            }
            "M" => {}
            "X" => {
                let tid = e["tid"].as_u64().unwrap();
                assert!(
                    thread_names.contains_key(&(pid, tid)),
                    "slice on an unnamed thread: {e}"
                );
                let ts = e["ts"].as_f64().unwrap();
                let dur = e["dur"].as_f64().unwrap();
                assert!(dur >= 0.0);
                per_thread
                    .entry((pid, tid))
                    .or_default()
                    .push((ts, ts + dur, e));
                if let Some(id) = e.get("bind_id") {
                    binds
                        .entry(id.as_str().unwrap().to_string())
                        .or_default()
                        .push(e);
                }
            }
            "C" => counters.push(e),
            "i" => {
                assert_eq!(e["s"], "g");
                instants.push(e);
            }
            ph => panic!("unexpected phase {ph}"),
        }
    }
    // Nesting: per thread, sorted by begin (longest first), every slice
    // ends inside the one it starts in.
    for (thread, v) in &mut per_thread {
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<f64> = Vec::new();
        for (b, e, ev) in v.iter() {
            while stack.last().is_some_and(|&end| end <= *b) {
                stack.pop();
            }
            if let Some(&end) = stack.last() {
                assert!(*e <= end, "{ev} overlaps its parent on {thread:?}");
            }
            stack.push(*e);
        }
    }
    assert_eq!(thread_names[&(100, 100)], "xfs_io/100");
    assert!(process_names.values().any(|n| n == "tree 0x1000 (8:1/12)"));
    // Exact microsecond times: the fault's wait is 2.3 us .. 11.5 us.
    let wait = per_thread[&(200, 200)]
        .iter()
        .find(|s| s.2["name"] == "wait fault [5, 5]")
        .unwrap();
    assert_eq!((wait.0, wait.1), (2.3, 11.5));
    // The tests: a process of their own, a slice per test.
    let tests_pid = *process_names
        .iter()
        .find(|(_, n)| *n == "xfstests")
        .unwrap()
        .0;
    let tests: Vec<(&str, f64, f64)> = per_thread
        .iter()
        .filter(|(k, _)| k.0 == tests_pid)
        .flat_map(|(_, v)| v.iter())
        .map(|s| (s.2["name"].as_str().unwrap(), s.0, s.1))
        .collect();
    assert_eq!(
        tests,
        vec![("generic/001", 0.1, 20.0), ("generic/002", 20.0, 30.6)]
    );
    // Flows: two, each from a hold that ends no later than the hold it
    // feeds begins.
    assert_eq!(binds.len(), 2);
    for (id, v) in &binds {
        assert_eq!(v.len(), 2, "flow {id}");
        let out = v.iter().find(|e| e["flow_out"] == true).unwrap();
        let inn = v.iter().find(|e| e["flow_in"] == true).unwrap();
        let out_end = out["ts"].as_f64().unwrap() + out["dur"].as_f64().unwrap();
        assert!(out_end <= inn["ts"].as_f64().unwrap());
        assert_eq!(out["cat"], "hold");
        assert_eq!(inn["cat"], "hold");
    }
    // Counters and instants.
    let waiters: Vec<(f64, u64)> = counters
        .iter()
        .map(|c| {
            (
                c["ts"].as_f64().unwrap(),
                c["args"]["waiters"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(waiters, vec![(2.3, 1), (11.5, 0), (21.5, 1), (25.7, 0)]);
    let names: Vec<&str> = instants
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"ordering_inversion"));
    assert_eq!(instants.iter().filter(|i| i["cat"] == "marker").count(), 2);
}

#[test]
fn export_needs_an_output_and_writes_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let out = Command::new(RLTOP)
        .arg("export")
        .arg(data("hist/small.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.pftrace");
    let c = dir.path().join("a.json");
    export(&[
        "--perfetto",
        p.to_str().unwrap(),
        "--chrome",
        c.to_str().unwrap(),
    ]);
    for f in [&p, &c] {
        let m = std::fs::symlink_metadata(f).unwrap();
        assert!(m.file_type().is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn simulated_trace_exports_consistently() {
    // A simulated workload: both formats give the same slices.
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim.rlt");
    let st = Command::new(RLTOP)
        .args(["simulate", "--scenario", "mixed", "--events", "3000", "-o"])
        .arg(&sim)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let p = dir.path().join("s.pftrace");
    let c = dir.path().join("s.json");
    let st = Command::new(RLTOP)
        .arg("export")
        .arg(&sim)
        .arg("--perfetto")
        .arg(&p)
        .arg("--chrome")
        .arg(&c)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let trace = Trace::decode(std::fs::read(&p).unwrap().as_slice()).unwrap();
    // Slices rebuilt from the protobuf (an end closes its track's innermost
    // open slice) must be exactly the Chrome JSON's complete events: if a
    // track did not nest, an end would close the wrong slice.
    let mut open: HashMap<u64, Vec<(String, u64)>> = HashMap::new();
    let mut from_proto = Vec::new();
    for p in &trace.packet {
        let Some(e) = &p.track_event else { continue };
        let ts = p.timestamp.unwrap();
        let st = open.entry(e.track_uuid.unwrap()).or_default();
        match EventType::try_from(e.r#type.unwrap()).unwrap() {
            EventType::SliceBegin => st.push((e.name.clone().unwrap(), ts)),
            EventType::SliceEnd => {
                let (name, begin) = st.pop().expect("an end without a begin");
                from_proto.push((name, begin, ts));
            }
            _ => {}
        }
    }
    assert!(open.values().all(Vec::is_empty));
    assert!(from_proto.len() > 100, "{}", from_proto.len());
    let doc: Value = serde_json::from_slice(&std::fs::read(&c).unwrap()).unwrap();
    let ns = |v: &Value| (v.as_f64().unwrap() * 1000.0).round() as u64;
    let mut from_json: Vec<(String, u64, u64)> = doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            let b = ns(&e["ts"]);
            (
                e["name"].as_str().unwrap().to_string(),
                b,
                b + ns(&e["dur"]),
            )
        })
        .collect();
    from_proto.sort();
    from_json.sort();
    assert_eq!(from_proto, from_json);
    // The workload contends: some waits, and flows from releases to them.
    assert!(from_json.iter().any(|s| s.0.starts_with("wait ")));
    let flows: usize = trace
        .packet
        .iter()
        .filter_map(|p| p.track_event.as_ref())
        .map(|e| e.terminating_flow_ids.len())
        .sum();
    assert!(flows > 0);
}
