//! A [`Timeline`] as a Chrome JSON trace (`{"traceEvents": [...]}`), for
//! chrome://tracing, Perfetto's UI and other viewers of the format.
//!
//! - Tasks are threads (`pid`, `tid`) named `comm/tid`; a task's extra
//!   lanes are threads of their own (ids from [`SYNTHETIC`] up) in the
//!   same process.
//! - Each tree is a process of its own (a synthetic pid) named after the
//!   tree and its file; its lanes are its threads; its waiter count is a
//!   `C` counter.
//! - Slices are complete events (`X`, `ts`/`dur` in microseconds with ns
//!   precision), nesting on every thread by construction ([`Layout`]).
//! - Flows use the v2 binding (`bind_id`, `flow_out`, `flow_in` on the
//!   slices). A slice carries one id: a hold woken by one release that
//!   wakes the next waiter continues that flow (both `flow_in` and
//!   `flow_out`); a release that woke several waiters draws its first
//!   arrow only (the Perfetto export draws all).
//! - xfstests tests are a process of their own too, a slice per test.
//! - Markers and findings are global instants (`i`, `s: g`).

use serde_json::{Map, Value, json};

use super::{Layout, layout};
use crate::analysis::timeline::{InstantTrack, Timeline, Track};

/// Synthetic pids and tids (trees, extra lanes) start here, above any
/// kernel pid (`PID_MAX_LIMIT` is 2^22).
pub const SYNTHETIC: u64 = 1 << 30;

/// Microseconds, exact to the ns (`ns / 1000` is correctly rounded, and
/// printed as its shortest exact decimal).
fn us(ns: u64) -> Value {
    json!(ns as f64 / 1000.0)
}

fn args(a: &[(&'static str, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in a {
        m.insert((*k).to_string(), Value::String(v.clone()));
    }
    Value::Object(m)
}

fn meta(kind: &str, pid: u64, tid: Option<u64>, name: &str) -> Value {
    let mut e = json!({"ph": "M", "name": kind, "pid": pid, "args": {"name": name}});
    if let Some(t) = tid {
        e["tid"] = json!(t);
    }
    e
}

/// The timeline as a Chrome JSON document.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn document(tl: &Timeline) -> Value {
    let lay: Layout = layout(tl);
    let mut next = SYNTHETIC;
    let mut take = || {
        next += 1;
        next
    };
    let mut events = Vec::new();
    // (track, lane) -> (pid, tid).
    let mut threads = std::collections::BTreeMap::new();
    let mut tree_pids = std::collections::BTreeMap::new();
    let mut named_pids = std::collections::BTreeSet::new();
    for (&track, &n) in &lay.lanes {
        match track {
            Track::Task(tid) => {
                let info = tl.tasks.get(&tid).cloned().unwrap_or_default();
                let pid = u64::from(info.pid);
                if named_pids.insert(pid) {
                    let name = tl
                        .tasks
                        .get(&info.pid)
                        .and_then(|t| t.comm.clone())
                        .unwrap_or_else(|| format!("pid {pid}"));
                    events.push(meta("process_name", pid, None, &name));
                }
                for lane in 0..n {
                    let t = if lane == 0 { u64::from(tid) } else { take() };
                    threads.insert((track, lane), (pid, t));
                    let name = if lane == 0 {
                        info.label(tid)
                    } else {
                        format!("{} (lane {lane})", info.label(tid))
                    };
                    events.push(meta("thread_name", pid, Some(t), &name));
                    // Lanes right below their task.
                    events.push(json!({"ph": "M", "name": "thread_sort_index", "pid": pid,
                        "tid": t, "args": {"sort_index": u64::from(tid) * 64 + u64::from(lane)}}));
                }
            }
            Track::Tree(_) | Track::Tests => {
                let pid = take();
                let name = match track {
                    Track::Tree(tree) => {
                        tree_pids.insert(tree, pid);
                        tl.tree_label(tree)
                    }
                    _ => "xfstests".to_string(),
                };
                events.push(meta("process_name", pid, None, &name));
                for lane in 0..n {
                    let t = take();
                    threads.insert((track, lane), (pid, t));
                    events.push(meta("thread_name", pid, Some(t), &format!("lane {lane}")));
                }
            }
        }
    }
    // Flow ids, one per slice (see the module docs).
    let mut bind: Vec<Option<(u64, bool, bool)>> = vec![None; tl.slices.len()];
    let mut target = std::collections::HashMap::new();
    for (i, s) in tl.slices.iter().enumerate() {
        for &f in &s.flow_in {
            target.insert(f, i);
        }
    }
    let mut order: Vec<usize> = (0..tl.slices.len()).collect();
    order.sort_by_key(|&i| (tl.slices[i].begin, i));
    for &i in &order {
        for f in tl.slices[i].flow_out.clone() {
            let Some(&dst) = target.get(&f) else { continue };
            let id = match bind[i] {
                Some((_, _, true)) => continue, // already flows out
                Some((id, fin, _)) => {
                    bind[i] = Some((id, fin, true));
                    id
                }
                None => {
                    bind[i] = Some((f, false, true));
                    f
                }
            };
            if bind[dst].is_none() {
                bind[dst] = Some((id, true, false));
            }
        }
    }
    for (i, s) in tl.slices.iter().enumerate() {
        let (pid, tid) = threads[&(s.track, lay.lane[i])];
        let mut a = s.args.clone();
        if s.unfinished {
            a.push(("unfinished", "true".to_string()));
        }
        let mut e = json!({
            "ph": "X", "name": s.name, "cat": s.kind.as_str(),
            "ts": us(s.begin), "dur": us(s.end - s.begin),
            "pid": pid, "tid": tid, "args": args(&a),
        });
        if let Some((id, fin, fout)) = bind[i] {
            e["bind_id"] = json!(format!("{id:#x}"));
            if fin {
                e["flow_in"] = json!(true);
            }
            if fout {
                e["flow_out"] = json!(true);
            }
        }
        events.push(e);
    }
    for c in &tl.counters {
        let pid = match tree_pids.get(&c.tree) {
            Some(&p) => p,
            None => {
                let p = take();
                tree_pids.insert(c.tree, p);
                events.push(meta("process_name", p, None, &tl.tree_label(c.tree)));
                p
            }
        };
        events.push(
            json!({"ph": "C", "name": "waiters", "pid": pid, "ts": us(c.ts),
            "args": {"waiters": c.waiters}}),
        );
    }
    for i in &tl.instants {
        let cat = match i.track {
            InstantTrack::Markers => "marker",
            InstantTrack::Findings => "finding",
        };
        events.push(json!({"ph": "i", "s": "g", "name": i.name, "cat": cat,
            "ts": us(i.ts), "pid": 0, "tid": 0, "args": args(&i.args)}));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {"generator": "rltop export", "flows": tl.flows},
    })
}

/// The timeline as Chrome JSON text.
pub fn encode(tl: &Timeline) -> Vec<u8> {
    let mut v = serde_json::to_vec(&document(tl)).expect("JSON values always serialize");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::timeline::tests::{build, chain, readers};

    fn holds(doc: &Value) -> Vec<&Value> {
        doc["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] == "hold" && e["pid"].as_u64() < Some(SYNTHETIC))
            .collect()
    }

    #[test]
    fn a_chain_is_one_v2_flow_stepping_through_the_middle_hold() {
        let doc = document(&build(&chain()));
        let h = holds(&doc);
        assert_eq!(h.len(), 3);
        let id = &h[0]["bind_id"];
        assert!(id.is_string());
        assert!(h.iter().all(|e| &e["bind_id"] == id));
        assert_eq!(
            (h[0]["flow_out"] == true, h[0].get("flow_in")),
            (true, None)
        );
        assert_eq!(
            (h[1]["flow_in"] == true, h[1]["flow_out"] == true),
            (true, true)
        );
        assert_eq!(
            (h[2]["flow_in"] == true, h[2].get("flow_out")),
            (true, None)
        );
    }

    #[test]
    fn a_release_waking_several_draws_one_arrow() {
        let doc = document(&build(&readers()));
        let h = holds(&doc);
        let bound: Vec<&&Value> = h.iter().filter(|e| e.get("bind_id").is_some()).collect();
        assert_eq!(bound.len(), 2);
        assert_eq!(bound[0]["bind_id"], bound[1]["bind_id"]);
    }
}
