//! `rltop hist` over the hand-written traces of `tests/data/hist/`.
//!
//! `small.jsonl` (times in ns, worked out by hand):
//! - test generic/001: xfs_io/100 punches pages [0, 9] and holds their
//!   range lock 1200..11200 (hold 10000); fsx/200 faults page 5 under
//!   mmap_lock (read, held 2100..12100: 10000), asks for [5, 5] at 2300,
//!   gets it at 11500 (wait 9200), holds it 500. The punch is in flight
//!   1000..11300 (10300).
//! - test generic/002: aio-dio/300 writes pages [0, 1] by DIO, lock held
//!   21200..25200 (4000, released by completion in tid 0; IO in flight
//!   21000..25300: 4300); xfs_io/100 waits for [1, 1] 21500..25700 (4200,
//!   buffered), holds it 1000; then holds [20, 20] 27000..27500 (500) and
//!   [30, 30] 27050..27600 (550), taking mmap_lock for write 27300..27400
//!   (100) meanwhile (an ordering inversion); fsx/200 waits 600 ns for a
//!   kernel lock.
//!
//! `second.jsonl`: test generic/001 again: fsx/200 waits 1500 for [0, 0]
//! (buffered), holds it 300; xfs_io/100 waits 9200 for [7, 8], holds it 100.
//!
//! The whole outputs are insta snapshots (`tests/snapshots/hist__*`; how to
//! update them: `tests/README.md`). When one changes, read the diff: the
//! figures above must show.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

mod common;
use common::{assert_text_snapshot, data, rltop};

fn ok(args: &[&str]) -> String {
    let out = rltop(args);
    assert!(
        out.status.success(),
        "rltop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn small() -> String {
    data("hist/small.jsonl").to_str().unwrap().to_string()
}

fn second() -> String {
    data("hist/second.jsonl").to_str().unwrap().to_string()
}

#[test]
fn golden_text_wait_by_op() {
    assert_text_snapshot!("wait_op_text", ok(&["hist", &small()]));
}

#[test]
fn golden_text_hold_by_test() {
    assert_text_snapshot!(
        "hold_test_text",
        ok(&["hist", "--metric", "hold", "--by", "test", &small()]),
    );
}

#[test]
fn golden_json_merged_wait_by_op() {
    let s = ok(&["hist", "--format", "json", "--merge", &small(), &second()]);
    assert_text_snapshot!("wait_op_merged_json", s);
    // bpftrace's shape: one line, a keyed map of bucket lists.
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["type"], "hist");
    let buffered = v["data"]["@wait_ns"]["range_lock,buffered"]
        .as_array()
        .unwrap();
    // 1500, 4200 and 9200 ns: [1024, 2047], [4096, 8191], [8192, 16383].
    let counts: Vec<(u64, u64, u64)> = buffered
        .iter()
        .map(|b| {
            (
                b["min"].as_u64().unwrap(),
                b["max"].as_u64().unwrap(),
                b["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            (1024, 2047, 1),
            (2048, 4095, 0),
            (4096, 8191, 1),
            (8192, 16383, 1)
        ]
    );
}

#[test]
fn golden_csv_hold_by_task() {
    let s = ok(&[
        "hist",
        "--format",
        "csv",
        "--metric",
        "hold",
        "--by",
        "task",
        &small(),
    ]);
    assert_text_snapshot!("hold_task_csv", s);
    let mut lines = s.lines();
    assert_eq!(
        lines.next(),
        Some("metric,lock,task,comm,low_ns,high_ns,count")
    );
    // Every row is one bucket; the counts per task add up to its holds.
    let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 7, "{l}");
        *per.entry((f[1].into(), f[2].into())).or_default() += f[6].parse::<u64>().unwrap();
    }
    let get = |lock: &str, tid: &str| per.get(&(lock.into(), tid.into())).copied();
    // Range locks: 100 holds punch, [1, 1], [20, 20], [30, 30]; 200 holds
    // [5, 5]; 300 holds the DIO's [0, 1] (released by tid 0, but its own).
    assert_eq!(get("range_lock", "100"), Some(4));
    assert_eq!(get("range_lock", "200"), Some(1));
    assert_eq!(get("range_lock", "300"), Some(1));
    assert_eq!(get("mmap_lock", "100"), Some(1));
    assert_eq!(get("mmap_lock", "200"), Some(1));
    assert_eq!(get("file_op", "100"), Some(1));
    assert_eq!(get("file_op", "300"), Some(1));
}

#[test]
fn golden_prom_wait_by_tree() {
    assert_text_snapshot!(
        "wait_tree_prom",
        ok(&["hist", "--format", "prom", "--by", "tree", &small()]),
    );
}

#[test]
fn golden_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("h.svg");
    ok(&["hist", "--svg", out.to_str().unwrap(), &small()]);
    let svg = std::fs::read_to_string(&out).unwrap();
    // Binary (exact bytes), so the accepted file is an .svg a browser shows.
    insta::assert_binary_snapshot!("wait_op.svg", svg.as_bytes().to_vec());
    // One bar per bucket: buffered 1, fault 1, kernel 1.
    assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
    assert!(svg.starts_with("<?xml"));
    assert!(svg.trim_end().ends_with("</svg>"));
}

/// The HDR log's text around its histograms: header, per-series exact
/// figures, tags, interval columns. The base64 payloads (deflate output,
/// which may change with the compressor's version) are masked here and
/// decoded in the tests below.
#[test]
fn golden_hdr_hold_by_task() {
    let s = ok(&[
        "hist",
        "--format",
        "hdr",
        "--metric",
        "hold",
        "--by",
        "task",
        &small(),
    ]);
    let masked: String = s
        .lines()
        .map(|l| match l.rsplit_once(",HISTF") {
            Some((head, _)) => format!("{head},<V2 deflate histogram>\n"),
            None => format!("{l}\n"),
        })
        .collect();
    insta::assert_binary_snapshot!("hold_task.hdr", masked.as_bytes().to_vec());
    assert_eq!(masked.matches("<V2 deflate histogram>").count(), 7);
}

/// Prometheus text format: parsed back by a parser of the format, the
/// buckets are cumulative, `+Inf` is the count, and the figures are the
/// hand-worked ones.
#[test]
fn prom_round_trip() {
    let s = ok(&["hist", "--format", "prom", &small()]);
    let scrape = prometheus_parse::Scrape::parse(s.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut hists = BTreeMap::new();
    let mut sums = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for sample in &scrape.samples {
        let key = (
            sample.labels.get("lock").unwrap().to_string(),
            sample.labels.get("op").unwrap().to_string(),
        );
        match &sample.value {
            prometheus_parse::Value::Histogram(b) => {
                assert_eq!(sample.metric, "rltop_lock_wait_seconds");
                hists.insert(key, b.clone());
            }
            prometheus_parse::Value::Untyped(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v) => {
                if sample.metric.ends_with("_sum") {
                    sums.insert(key, *v);
                } else if sample.metric.ends_with("_count") {
                    counts.insert(key, *v);
                }
            }
            _ => panic!("unexpected {sample:?}"),
        }
    }
    let want = [
        (("range_lock", "fault"), 9200u64),
        (("range_lock", "buffered"), 4200),
        (("kernel_lock", "contention"), 600),
    ];
    assert_eq!(hists.len(), want.len());
    for ((lock, op), ns) in want {
        let key = (lock.to_string(), op.to_string());
        let b = &hists[&key];
        // Cumulative and ending with +Inf = count.
        assert!(b.windows(2).all(|w| w[0].count <= w[1].count));
        assert!(b.windows(2).all(|w| w[0].less_than < w[1].less_than));
        let last = b.last().unwrap();
        assert!(last.less_than.is_infinite());
        assert_eq!(last.count, 1.0);
        assert_eq!(counts[&key], 1.0);
        assert!((sums[&key] - ns as f64 / 1e9).abs() < 1e-15);
        // The one sample is counted from the first bound at or above it.
        let secs = ns as f64 / 1e9;
        for c in b {
            let expect = if c.less_than >= secs { 1.0 } else { 0.0 };
            assert_eq!(c.count, expect, "{lock}/{op} le {}", c.less_than);
        }
    }
}

/// Decodes an HDR interval log: tag -> histogram.
fn decode_hdr(s: &str) -> BTreeMap<String, Histogram<u64>> {
    let mut d = Deserializer::new();
    let mut out = BTreeMap::new();
    for e in IntervalLogIterator::new(s.as_bytes()) {
        if let Ok(LogEntry::Interval(h)) = e {
            let bytes = base64_decode(h.encoded_histogram());
            let hist: Histogram<u64> = d.deserialize(&mut bytes.as_slice()).unwrap();
            out.insert(h.tag().unwrap().as_str().to_string(), hist);
        }
    }
    out
}

/// Standard base64 (the interval log's encoding), decoded by hand.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(val(c)) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn hdr_decodes_to_the_counts_and_merges_exactly() {
    let a = decode_hdr(&ok(&["hist", "--format", "hdr", &small()]));
    let b = decode_hdr(&ok(&["hist", "--format", "hdr", &second()]));
    let m = decode_hdr(&ok(&[
        "hist",
        "--format",
        "hdr",
        "--merge",
        &small(),
        &second(),
    ]));
    let buffered = "metric=wait;lock=range_lock;op=buffered";
    let fault = "metric=wait;lock=range_lock;op=fault";
    let kernel = "metric=wait;lock=kernel_lock;op=contention";
    assert_eq!(a.keys().collect::<Vec<_>>(), vec![kernel, buffered, fault]);
    assert_eq!(b.keys().collect::<Vec<_>>(), vec![buffered]);
    // small: buffered 4200, fault 9200, kernel 600.
    assert_eq!(a[buffered].len(), 1);
    assert!(a[buffered].equivalent(a[buffered].max(), 4200));
    assert!(a[fault].equivalent(a[fault].min(), 9200));
    assert!(a[kernel].equivalent(a[kernel].max(), 600));
    // second: buffered 1500 and 9200.
    assert_eq!(b[buffered].len(), 2);
    assert!(b[buffered].equivalent(b[buffered].min(), 1500));
    assert!(b[buffered].equivalent(b[buffered].max(), 9200));
    // Merged: counts add, and the histogram is exactly the sum.
    assert_eq!(m[buffered].len(), 3);
    let mut sum = a[buffered].clone();
    sum.auto(true);
    sum.add(&b[buffered]).unwrap();
    assert_eq!(m[buffered], sum);
    for v in [1500u64, 4200, 9200] {
        assert_eq!(m[buffered].count_at(v), 1, "{v}");
    }
    assert_eq!(m[fault], a[fault]);
    assert_eq!(m[kernel], a[kernel]);
}

#[test]
fn several_traces_side_by_side_or_merged() {
    let apart = ok(&["hist", "--format", "csv", &small(), &second()]);
    assert!(apart.starts_with("metric,trace,lock,op,"));
    let rows = |s: &str, needle: &str| -> u64 {
        s.lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(rows(&apart, "small.jsonl,range_lock,buffered"), 1);
    assert_eq!(rows(&apart, "second.jsonl,range_lock,buffered"), 2);
    let merged = ok(&["hist", "--format", "csv", "--merge", &small(), &second()]);
    assert!(merged.starts_with("metric,lock,op,"));
    assert_eq!(rows(&merged, "range_lock,buffered"), 3);
}

#[test]
fn by_test_uses_fstests_markers() {
    let s = ok(&[
        "hist",
        "--format",
        "csv",
        "--by",
        "test",
        "--merge",
        &small(),
        &second(),
    ]);
    let sum = |needle: &str| -> u64 {
        s.lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.rsplit(',').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    // generic/001: fault 9200 (small), 1500 and 9200 (second); generic/002:
    // buffered 4200 and the kernel lock's 600.
    assert_eq!(sum("range_lock,generic/001"), 3);
    assert_eq!(sum("range_lock,generic/002"), 1);
    assert_eq!(sum("kernel_lock,generic/002"), 1);
    assert_eq!(sum(",none,"), 0);
}

#[test]
fn output_files_are_private_and_replace_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "precious").unwrap();
    let link = dir.path().join("out.hdr");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(&[
        "hist",
        "--format",
        "hdr",
        "-o",
        link.to_str().unwrap(),
        &small(),
    ]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&link)
            .unwrap()
            .contains("Tag=metric=wait;lock=range_lock;op=fault,")
    );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"ts\":1,\"kind\":\"nope\",\"tid\":1,\"pid\":1}\n").unwrap();
    let out = rltop(&["hist", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
}

/// Histograms from many machines: each writes an HDR log, one merges them;
/// the result is exactly that of merging the traces themselves, in every
/// format (exact sums, min and max travel with each series).
#[test]
fn hdr_logs_merge_like_the_traces() {
    let dir = tempfile::tempdir().unwrap();
    for by in ["op", "tree", "task", "test"] {
        for metric in ["wait", "hold"] {
            let a = dir.path().join(format!("a.{by}.{metric}.hdr"));
            let b = dir.path().join(format!("b.{by}.{metric}.hdr"));
            let common = ["--by", by, "--metric", metric, "--format", "hdr", "-o"];
            let mut args = vec!["hist"];
            args.extend_from_slice(&common);
            let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
            let s = small();
            let t = second();
            ok(&[args.as_slice(), &[a_s, &s]].concat());
            ok(&[args.as_slice(), &[b_s, &t]].concat());
            for format in ["text", "csv", "prom", "json"] {
                let opts = [
                    "--by", by, "--metric", metric, "--format", format, "--merge",
                ];
                let from_logs = ok(&[&["hist"], &opts[..], &[a_s, b_s]].concat());
                let from_traces = ok(&[&["hist"], &opts[..], &[&s, &t]].concat());
                assert_eq!(
                    from_logs, from_traces,
                    "--by {by} --metric {metric} {format}"
                );
            }
        }
    }
}

#[test]
fn hdr_log_that_lies_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.hdr");
    ok(&[
        "hist",
        "--format",
        "hdr",
        "-o",
        a.to_str().unwrap(),
        &small(),
    ]);
    let text = std::fs::read_to_string(&a).unwrap();
    // A sum no set of the histogram's values can have.
    let bad = text.replace("sum_ns=9200 ", "sum_ns=1 ");
    assert_ne!(bad, text);
    std::fs::write(&a, bad).unwrap();
    let out = rltop(&["hist", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disagree"), "{err}");
    // Asking for another metric than the log holds.
    ok(&[
        "hist",
        "--format",
        "hdr",
        "-o",
        a.to_str().unwrap(),
        &small(),
    ]);
    let out = rltop(&["hist", "--metric", "hold", a.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metric wait --by op"));
}

/// On a simulated workload, `hist` and `report` (the same pairing, two
/// views) agree: per kind of lock and operation, the histogram's count and
/// exact sum are the report's wait and hold counts and totals.
#[test]
fn agrees_with_report_on_a_simulated_trace() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim.rlt");
    let sim_s = sim.to_str().unwrap();
    ok(&[
        "simulate",
        "--scenario",
        "mixed",
        "--events",
        "5000",
        "-o",
        sim_s,
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["report", "--format", "json", sim_s])).unwrap();
    for metric in ["wait", "hold"] {
        // (lock, op) -> (count, total) from the report's rows.
        let mut want: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for r in report["rows"].as_array().unwrap() {
            let class = r["class"].as_str().unwrap();
            let op = match class {
                "range_lock" | "file_op" => r["op"].as_str().unwrap().to_string(),
                "mmap_lock" => if r["write"] == true { "write" } else { "read" }.to_string(),
                "kernel_lock" => "contention".to_string(),
                c => panic!("class {c}"),
            };
            if let Some(s) = r.get(metric).filter(|s| !s.is_null()) {
                let e = want.entry((class.to_string(), op)).or_default();
                e.0 += s["count"].as_u64().unwrap();
                e.1 += s["total"].as_u64().unwrap();
            }
        }
        assert!(!want.is_empty(), "{metric}: the workload has none");
        let prom = ok(&["hist", "--metric", metric, "--format", "prom", sim_s]);
        let scrape =
            prometheus_parse::Scrape::parse(prom.lines().map(|l| Ok(l.to_string()))).unwrap();
        let key_of = |s: &prometheus_parse::Sample| {
            (
                s.labels.get("lock").unwrap().to_string(),
                s.labels.get("op").unwrap().to_string(),
            )
        };
        let mut got: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut inf: BTreeMap<(String, String), u64> = BTreeMap::new();
        for s in &scrape.samples {
            let e = got.entry(key_of(s)).or_default();
            match (&s.value, s.metric.as_str()) {
                (prometheus_parse::Value::Histogram(b), _) => {
                    inf.insert((key_of(s).0, key_of(s).1), b.last().unwrap().count as u64);
                }
                (prometheus_parse::Value::Untyped(v), m) if m.ends_with("_count") => {
                    e.0 = *v as u64
                }
                (prometheus_parse::Value::Untyped(v), m) if m.ends_with("_sum") => {
                    e.1 = (v * 1e9).round() as u64
                }
                _ => {}
            }
        }
        assert_eq!(got, want, "{metric}");
        // The +Inf bucket is the count.
        let counts: BTreeMap<(String, String), u64> =
            got.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        assert_eq!(inf, counts, "{metric}");
    }
}

#[test]
fn shared_directories_are_refused_unless_forced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("h.svg");
    let o = out.to_str().unwrap();
    let r = rltop(&["hist", "--svg", o, &small()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(!out.exists());
    assert_eq!(String::from_utf8_lossy(&r.stderr).lines().count(), 1);
    ok(&["hist", "--force", "--svg", o, &small()]);
    assert!(out.exists());
}

#[test]
fn an_oversized_hdr_log_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.hdr");
    let head = format!("#{}\n", rltop::views::hist::HDR_HEADER);
    std::fs::write(&p, head).unwrap();
    // Sparse: the size is what counts, nothing is written.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let out = rltop(&["hist", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("larger than an rltop HDR log"), "{err}");
}
