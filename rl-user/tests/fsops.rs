//! Live filesystem operations on ext4, XFS and btrfs, as root: each on a
//! loop-mounted image made in a temporary directory, `rltop record` around
//! `rl-workload --fsops` (punch, zero, collapse, insert, truncates, the
//! `FS_IOC_UNRESVSP64` ioctl, O_DIRECT writes and reads including three
//! early exits), checked against what the workload says it did: exact
//! counts per operation, every begin paired with its end by id and with the
//! call's return value, the invalidation windows exactly where this kernel
//! (6.18) proves them, nothing dangling. Then a discard through a loop
//! device whose backing file is on the test filesystem: the loop worker's
//! punch begins and ends.
//!
//! Like `capture.rs`: skipped without root unless RLTOP_REQUIRE_ROOT_TESTS=1
//! (CI), where a skip, or a missing mkfs, is a failure.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{LoopFs, RLTOP, WORKLOAD, need_fs};

const ITERATIONS: u64 = 3;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn record(trace: &Path, cmd: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(RLTOP)
        .arg("record")
        .arg("-o")
        .arg(trace)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = run(Command::new(RLTOP)
        .args(["dump", "--format", "jsonl"])
        .arg(trace));
    let events = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, String::from_utf8(out.stdout).unwrap())
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap()
}

/// An operation as the trace shows it: its begin, its end, its window.
#[derive(Debug)]
struct Op {
    op: String,
    tid: u64,
    begin: u64,
    end: Option<(u64, i64)>,
    window: Option<(u64, Option<u64>)>,
    pos: u64,
    len: u64,
}

/// The punches, zeroes, collapses, inserts and truncates on one file, by
/// id, in begin order; panics on an end or window without its begin, two
/// ends, or a window event of another task than its operation's.
fn ops_on(events: &[Value], dev: &str, ino: u64) -> Vec<Op> {
    let mut by_id: HashMap<u64, Op> = HashMap::new();
    let mut order = Vec::new();
    let on = |e: &Value| e["dev"] == dev && e["ino"] == ino;
    for e in events {
        let ts = e["ts"].as_u64().unwrap();
        let id = e["id"].as_u64();
        match kind(e) {
            "punch_begin" | "truncate_begin" if on(e) => {
                let id = id.expect("operations carry ids");
                let op = if kind(e) == "truncate_begin" {
                    "truncate".to_string()
                } else {
                    e["op"].as_str().unwrap_or("punch").to_string()
                };
                let (pos, len) = if op == "truncate" {
                    (e["size"].as_u64().unwrap(), 0)
                } else {
                    (e["pos"].as_u64().unwrap(), e["len"].as_u64().unwrap())
                };
                let old = by_id.insert(
                    id,
                    Op {
                        op,
                        tid: e["tid"].as_u64().unwrap(),
                        begin: ts,
                        end: None,
                        window: None,
                        pos,
                        len,
                    },
                );
                assert!(old.is_none(), "id {id} begun twice");
                order.push(id);
            }
            "punch_end" | "truncate_end" => {
                if let Some(o) = id.and_then(|id| by_id.get_mut(&id)) {
                    assert!(o.end.is_none(), "{o:?} ended twice");
                    assert_eq!(
                        kind(e) == "truncate_end",
                        o.op == "truncate",
                        "an end of the other kind: {e}"
                    );
                    o.end = Some((ts, e["ret"].as_i64().unwrap()));
                }
            }
            "invalidate_begin" if on(e) => {
                let o = by_id
                    .get_mut(&id.unwrap())
                    .unwrap_or_else(|| panic!("window of no operation: {e}"));
                assert_eq!(o.tid, e["tid"].as_u64().unwrap(), "window by another task");
                assert!(o.window.is_none() && o.end.is_none(), "{e}");
                o.window = Some((ts, None));
            }
            "invalidate_end" if on(e) => {
                let o = by_id
                    .get_mut(&id.unwrap())
                    .unwrap_or_else(|| panic!("window end of no operation: {e}"));
                assert_eq!(o.tid, e["tid"].as_u64().unwrap(), "window by another task");
                let w = o.window.as_mut().expect("window end without begin");
                assert!(w.1.is_none(), "two window ends");
                w.1 = Some(ts);
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .map(|id| by_id.remove(&id).unwrap())
        .collect()
}

/// What each filesystem does with the workload's sequence, per iteration:
/// the operations in order, the O_DIRECT calls that reach `iomap_dio_rw`,
/// and the operations with an invalidation window (see
/// docs/kernel-fs-ops.md for why each).
struct Expect {
    ops: &'static [&'static str],
    dio: &'static [&'static str],
    windows: &'static [&'static str],
}

/// The workload's calls that are operations, and their kinds.
const OPS: &[(&str, &str)] = &[
    ("punch", "punch"),
    ("zero", "zero"),
    ("collapse", "collapse"),
    ("insert", "insert"),
    // The size restored after collapse and insert (unchanged: still a
    // setattr truncate).
    ("truncate_restore", "truncate"),
    ("truncate_shrink", "truncate"),
    ("truncate_grow", "truncate"),
    ("unresvsp", "punch"),
];
const ALL_DIO: &[&str] = &[
    "dio_write",
    "dio_read",
    "dio_read_eof",
    "dio_read_past_eof",
    "dio_read_nowait",
];

fn expect(fs: &str) -> Expect {
    match fs {
        "ext4" => Expect {
            ops: &[
                "punch",
                "zero",
                "collapse",
                "insert",
                "truncate_restore",
                "truncate_shrink",
                "truncate_grow",
                "unresvsp",
            ],
            dio: ALL_DIO,
            // Punch and collapse end at ext4_ext_remove_space_done, the
            // shrink at ext4_truncate_exit; a same-size truncate begins at
            // ext4_truncate_enter, after the invalidation; zero, insert and
            // growing have no point after their work under the lock.
            windows: &["punch", "collapse", "truncate_shrink", "unresvsp"],
        },
        "xfs" => Expect {
            ops: &[
                "punch",
                "zero",
                "collapse",
                "insert",
                "truncate_restore",
                "truncate_shrink",
                "truncate_grow",
                "unresvsp",
            ],
            dio: ALL_DIO,
            // Punch and zero end at iomap_iter(ZERO), collapse and the
            // truncates not growing at xfs_itruncate_extents_end.
            windows: &[
                "punch",
                "zero",
                "collapse",
                "truncate_restore",
                "truncate_shrink",
                "unresvsp",
            ],
        },
        "btrfs" => Expect {
            ops: &[
                "punch",
                "zero",
                "collapse",
                "insert",
                "truncate_restore",
                "truncate_shrink",
                "truncate_grow",
                "unresvsp",
            ],
            // btrfs writes a checksummed file's O_DIRECT data through the
            // page cache (no iomap DIO); its reads are iomap DIOs.
            dio: &[
                "dio_read",
                "dio_read_eof",
                "dio_read_past_eof",
                "dio_read_nowait",
            ],
            // btrfs takes its own i_mmap_lock, not the mapping's
            // invalidate_lock; its operations are seen at the syscalls.
            windows: &[],
        },
        _ => unreachable!(),
    }
}

#[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
fn fsops_on(fs: &'static str) {
    let test = format!("fsops_on_{fs}");
    if !need_fs(&test, fs) {
        return;
    }
    let lfs = LoopFs::new(fs);
    let trace = lfs.dir.path().join("trace.rlt");
    let (events, stdout) = record(
        &trace,
        &[
            WORKLOAD,
            "--dir",
            lfs.mnt.to_str().unwrap(),
            "--fsops",
            "--iterations",
            &ITERATIONS.to_string(),
        ],
    );
    let wl: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ino = wl["ino"].as_u64().unwrap();
    let pid = wl["pid"].as_u64().unwrap();
    let sb_dev = lfs.dev();
    let dev = sb_dev.as_str();
    assert!(
        events.iter().all(|e| kind(e) != "lost"),
        "events were lost: the counts below would not be exact"
    );
    let rets: Vec<(String, i64)> = wl["fsops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
        .collect();
    let ex = expect(fs);

    let calls: Vec<(&str, i64)> = rets.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    let want_ops: Vec<(&str, &str, i64)> = calls
        .iter()
        .filter(|(n, _)| ex.ops.contains(n))
        .map(|&(n, r)| (n, OPS.iter().find(|(c, _)| *c == n).unwrap().1, r))
        .collect();
    assert_eq!(want_ops.len() as u64, ITERATIONS * ex.ops.len() as u64);

    let ops = ops_on(&events, dev, ino);
    let got: Vec<(&str, i64)> = ops
        .iter()
        .map(|o| (o.op.as_str(), o.end.expect("every operation ends").1))
        .collect();
    let want: Vec<(&str, i64)> = want_ops.iter().map(|&(_, k, r)| (k, r)).collect();
    assert_eq!(
        got, want,
        "operations on {fs}, in order, with their return values"
    );
    for (o, (name, _, _)) in ops.iter().zip(&want_ops) {
        assert_eq!(o.tid, pid, "{name}: by the workload's task");
        let (end, _) = o.end.unwrap();
        assert!(o.begin <= end, "{o:?}");
        // Ranges and sizes as the workload asked.
        let page = 4096;
        let (pos, len) = match *name {
            "punch" => (32 * page, 8 * page),
            "zero" => (40 * page, 4 * page),
            "collapse" | "insert" => (8 * page, page),
            "unresvsp" => (44 * page, 2 * page),
            "truncate_shrink" => (48 * page, 0),
            _ => (64 * page, 0),
        };
        assert_eq!((o.pos, o.len), (pos, len), "{name}: range");
        let windowed = ex.windows.contains(name);
        match (windowed, o.window) {
            (true, Some((wb, Some(we)))) => {
                assert!(o.begin <= wb && wb <= we && we <= end, "{name}: {o:?}");
            }
            (false, None) => {}
            (true, w) => panic!("{name} on {fs}: window {w:?}, expected a closed one"),
            (false, Some(w)) => panic!("{name} on {fs}: unexpected window {w:?}"),
        }
    }

    // DIO: exactly the calls that reach iomap, each ended (early exits by
    // the task's return), with the call's return value.
    let mut dio_begins: Vec<&Value> = events
        .iter()
        .filter(|e| kind(e) == "dio_begin" && e["dev"] == dev && e["ino"] == ino)
        .collect();
    dio_begins.sort_by_key(|e| e["ts"].as_u64());
    let want_dio: Vec<i64> = calls
        .iter()
        .filter(|(n, _)| ex.dio.contains(n))
        .map(|&(_, r)| r)
        .collect();
    assert_eq!(want_dio.len() as u64, ITERATIONS * ex.dio.len() as u64);
    let got_dio: Vec<i64> = dio_begins
        .iter()
        .map(|b| {
            let bi = events.iter().position(|e| std::ptr::eq(e, *b)).unwrap();
            events[bi + 1..]
                .iter()
                .find(|e| kind(e) == "dio_end" && e["io"] == b["io"])
                .unwrap_or_else(|| panic!("dio_begin without its end: {b}"))["ret"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        got_dio, want_dio,
        "O_DIRECT calls on {fs} and their returns"
    );
}

#[test]
fn fsops_on_ext4() {
    fsops_on("ext4");
}

#[test]
fn fsops_on_xfs() {
    fsops_on("xfs");
}

#[test]
fn fsops_on_btrfs() {
    fsops_on("btrfs");
}

/// A discard on a loop device whose backing file is on `fs`: the loop
/// worker (a kworker, no syscall) punches the backing file; that punch
/// begins and ends, with its window.
fn loop_discard_on(fs: &'static str) {
    let test = format!("loop_discard_on_{fs}");
    if !need_fs(&test, fs) {
        return;
    }
    let lfs = LoopFs::new(fs);
    let backing = lfs.mnt.join("backing");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&backing).unwrap();
        f.write_all(&vec![0x5a; 4 << 20]).unwrap();
        f.set_len(16 << 20).unwrap();
        f.sync_all().unwrap();
    }
    let ino = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(&backing).unwrap().ino()
    };
    let dev = run(Command::new("losetup").args(["-f", "--show"]).arg(&backing));
    let dev = dev.trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
        }
    }
    let _detach = Detach(dev.clone());
    let trace = lfs.dir.path().join("discard.rlt");
    let (events, _) = record(
        &trace,
        &["blkdiscard", "-o", "1048576", "-l", "1048576", &dev],
    );
    let ops = ops_on(&events, &lfs.dev(), ino);
    assert_eq!(ops.len(), 1, "{fs}: one punch of the backing file: {ops:?}");
    let o = &ops[0];
    assert_eq!(o.op, "punch");
    assert_eq!(o.end.map(|e| e.1), Some(0), "{o:?}");
    let comm = events
        .iter()
        .filter(|e| kind(e) == "task" && e["tid"].as_u64() == Some(o.tid))
        .map(|e| e["comm"].as_str().unwrap().to_string())
        .next_back()
        .expect("the punching task is named");
    assert!(
        comm.starts_with("kworker"),
        "{fs}: punched by {comm}, not the loop worker"
    );
    // ext4's tracepoint has the range; XFS's does not (a kernel thread has
    // no syscall to take it from): the whole file.
    let range = if fs == "ext4" {
        (1 << 20, 1 << 20)
    } else {
        (0, u64::MAX)
    };
    assert_eq!((o.pos, o.len), range);
    let (wb, we) = o
        .window
        .expect("the worker holds the invalidate_lock: a window");
    let we = we.expect("the window ends");
    assert!(o.begin <= wb && wb <= we && we <= o.end.unwrap().0);
}

#[test]
fn loop_discard_on_ext4() {
    loop_discard_on("ext4");
}

#[test]
fn loop_discard_on_xfs() {
    loop_discard_on("xfs");
}
