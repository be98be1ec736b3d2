//! The OpenMetrics endpoint of `rltop record --metrics`, scraped by a real
//! HTTP client (ureq) and parsed by a Prometheus text-format parser
//! (prometheus-parse):
//!
//! - without root, the endpoint itself (`rltop::cmd::metrics::Metrics`,
//!   what `record` runs) fed a simulated trace in two halves: the figures
//!   grow with the events, and at the end agree with `rltop report` on the
//!   same trace;
//! - as root, `rltop record --metrics 127.0.0.1:0` while real O_DIRECT
//!   writes run: the DIO counters and hold histogram grow with them.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use rltop::serve::{Metrics, parse_addr};

mod common;
use common::{RLTOP, Reaped, assert_text_snapshot, data, need_root, trace_events};

/// GET the endpoint with ureq; returns (content type, body).
fn get(url: &str) -> (String, String) {
    let mut resp = ureq::get(url).call().unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    (ctype, resp.body_mut().read_to_string().unwrap())
}

/// Scalar samples by `name{labels}`, and histograms by `name{labels}` as
/// (le, cumulative count) lists.
struct Parsed {
    scalars: BTreeMap<String, f64>,
    hists: BTreeMap<String, Vec<(f64, f64)>>,
}

fn parse(text: &str) -> Parsed {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut p = Parsed {
        scalars: BTreeMap::new(),
        hists: BTreeMap::new(),
    };
    for smp in s.samples {
        let labels = smp.labels.to_string();
        let key = if labels.is_empty() {
            smp.metric.clone()
        } else {
            format!("{}{{{labels}}}", smp.metric)
        };
        match smp.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                p.scalars.insert(key, v);
            }
            Value::Histogram(b) => {
                let mut b: Vec<(f64, f64)> = b.iter().map(|h| (h.less_than, h.count)).collect();
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                p.hists.insert(key, b);
            }
            Value::Summary(_) => panic!("no summaries expected"),
        }
    }
    p
}

impl Parsed {
    fn get(&self, key: &str) -> f64 {
        self.scalars.get(key).copied().unwrap_or(0.0)
    }

    /// Checks the shape of every histogram: cumulative, `+Inf` = `_count`.
    fn check_histograms(&self) {
        for (k, b) in &self.hists {
            assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{k} not cumulative");
            let (le, inf) = *b.last().unwrap();
            assert!(le.is_infinite(), "{k} has no +Inf bucket");
            let name = k.split('{').next().unwrap();
            let labels = &k[name.len()..];
            let count = self.get(&format!("{name}_count{labels}"));
            assert_eq!(inf, count, "{k}: +Inf bucket != _count");
        }
    }
}

/// Scrapes until `done` holds (the analysis thread runs apart).
fn scrape_until(url: &str, done: impl Fn(&Parsed) -> bool) -> Parsed {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(url);
        let p = parse(&body);
        if done(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn total_events(p: &Parsed) -> f64 {
    p.scalars
        .iter()
        .filter(|(k, _)| k.starts_with("rltop_events_total"))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_bare_port_binds_to_loopback() {
    assert_eq!(parse_addr("9464").unwrap().to_string(), "127.0.0.1:9464");
    assert_eq!(parse_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
    assert!(parse_addr("localhost").is_err());
}

#[test]
fn endpoint_figures_grow_with_the_events_and_agree_with_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.rlt");
    let out = Command::new(RLTOP)
        .args([
            "simulate",
            "--scenario",
            "overlap",
            "--events",
            "3000",
            "-o",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let events = trace_events(&path);
    let half = events.len() / 2;

    let mut m = Metrics::start(
        parse_addr("127.0.0.1:0").unwrap(),
        rltop::model::Model::new(None),
    )
    .unwrap();
    let url = format!("http://{}/metrics", m.addr());
    let (ctype, body) = get(&url);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let empty = parse(&body);
    assert_eq!(total_events(&empty), 0.0);

    for chunk in events[..half].chunks(500) {
        m.offer(chunk);
    }
    let first = scrape_until(&url, |p| total_events(p) == half as f64);
    first.check_histograms();
    for chunk in events[half..].chunks(500) {
        m.offer(chunk);
    }
    m.drain();
    let (_, body) = get(&url);
    let last = parse(&body);
    last.check_histograms();
    assert_eq!(total_events(&last), events.len() as f64);
    assert_eq!(last.get("rltop_metrics_skipped_events_total"), 0.0);

    // Range lock activity grew between the two scrapes.
    let rl = |p: &Parsed, what: &str| -> f64 {
        p.scalars
            .iter()
            .filter(|(k, _)| k.starts_with(what) && k.contains("class=\"range_lock\""))
            .map(|(_, v)| v)
            .sum()
    };
    assert!(rl(&first, "rltop_acquisitions_total") > 0.0);
    assert!(rl(&last, "rltop_acquisitions_total") > rl(&first, "rltop_acquisitions_total"));
    // The overlap defect comes at the end: seen only by the last scrape.
    let defect = "rltop_findings{certain=\"true\",kind=\"conflicting_grant\",severity=\"error\"}";
    assert_eq!(first.get(defect), 0.0, "{:?}", first.scalars);
    assert_eq!(last.get(defect), 1.0, "{:?}", last.scalars);

    // The same events through `rltop report`: the same counts and wait
    // totals per range lock op and mode.
    let out = Command::new(RLTOP)
        .args(["report", "--format", "json"])
        .arg(&path)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for r in report["rows"].as_array().unwrap() {
        if r["class"] != "range_lock" {
            continue;
        }
        let key = format!(
            "{{class=\"range_lock\",mode=\"{}\",op=\"{}\"}}",
            r["mode"].as_str().unwrap(),
            r["op"].as_str().unwrap()
        );
        let e = want.entry(key).or_default();
        e.0 += r["acquisitions"].as_u64().unwrap();
        e.1 += r["contentions"].as_u64().unwrap();
        e.2 += r["wait"]["total"].as_u64().unwrap_or(0);
    }
    assert!(!want.is_empty());
    for (labels, (acq, cont, wait)) in want {
        assert_eq!(
            last.get(&format!("rltop_acquisitions_total{labels}")),
            acq as f64
        );
        assert_eq!(
            last.get(&format!("rltop_contentions_total{labels}")),
            cont as f64
        );
        if cont > 0 {
            assert_eq!(
                last.get(&format!("rltop_wait_seconds_count{labels}")),
                cont as f64
            );
            let sum = last.get(&format!("rltop_wait_seconds_sum{labels}"));
            assert!(
                (sum - wait as f64 / 1e9).abs() < 1e-9,
                "{labels}: {sum} vs {wait}"
            );
        }
    }
}

#[test]
fn record_serves_metrics_that_follow_a_live_workload() {
    if !need_root("record_serves_metrics_that_follow_a_live_workload") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("metrics")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let trace = dir.path().join("run.rlt");
    let mut child = Reaped(
        Command::new(RLTOP)
            .args(["record", "--metrics", "127.0.0.1:0", "-o"])
            .arg(&trace)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut url = None;
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("record did not start: {lines:?}"));
        if let Some(u) = line.strip_prefix("rltop: serving OpenMetrics on ") {
            url = Some(u.to_string());
        }
        let started = line.starts_with("rltop: recording");
        lines.push(line);
        if started {
            break;
        }
    }
    let url = url.unwrap_or_else(|| panic!("no metrics address in {lines:?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let dio_writes =
        |p: &Parsed| p.get("rltop_acquisitions_total{class=\"file_op\",op=\"dio_write\"}");
    let dio_holds =
        |p: &Parsed| p.get("rltop_hold_seconds_count{class=\"file_op\",op=\"dio_write\"}");
    let before = parse(&get(&url).1);
    // 16 O_DIRECT writes of 64 KiB, each its own iomap DIO.
    let file = dir.path().join("direct");
    let st = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=65536",
            "count=16",
            "oflag=direct",
            "status=none",
        ])
        .arg(format!("of={}", file.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let after = scrape_until(&url, |p| dio_writes(p) >= dio_writes(&before) + 16.0);
    after.check_histograms();
    assert!(dio_holds(&after) >= dio_holds(&before) + 16.0);
    assert!(
        after.get("rltop_events_total{kind=\"dio_begin\"}")
            >= before.get("rltop_events_total{kind=\"dio_begin\"}") + 16.0
    );
    assert!(total_events(&after) > total_events(&before));

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(
        status.success(),
        "{status:?}: {:?}",
        rx.try_iter().collect::<Vec<_>>()
    );
    // The trace holds at least what the metrics counted.
    let recorded = trace_events(&trace).len() as f64;
    assert!(recorded >= total_events(&after));
}

/// The hand-worked three-test trace of `tests/xfstests.rs` through the
/// endpoint: while xfs_io/11 waits (after event 6) one task waits for a
/// range lock; at the end the three contended acquisitions (waits 1100,
/// 100 and 1100 ns) are in the histogram, and the conflicting grant of
/// generic/002 is a certain error.
#[test]
fn endpoint_figures_of_a_hand_worked_trace() {
    let path = data("xfstests/three_tests.jsonl");
    let events = trace_events(&path);
    assert_eq!(events.len(), 24);
    let mut m = Metrics::start(
        parse_addr("127.0.0.1:0").unwrap(),
        rltop::model::Model::new(None),
    )
    .unwrap();
    let url = format!("http://{}/metrics", m.addr());
    m.offer(&events[..7]);
    let p = scrape_until(&url, |p| total_events(p) == 7.0);
    assert_eq!(p.get("rltop_waiting_tasks{class=\"range_lock\"}"), 1.0);
    assert_eq!(
        p.get("rltop_contentions_total{class=\"range_lock\",mode=\"excl\",op=\"buffered\"}"),
        0.0
    );
    m.offer(&events[7..]);
    m.drain();
    let body = get(&url).1;
    assert_text_snapshot!("three_tests_metrics", body);
    let p = parse(&body);
    p.check_histograms();
    let l = "class=\"range_lock\",mode=\"excl\",op=\"buffered\"";
    assert_eq!(p.get("rltop_waiting_tasks{class=\"range_lock\"}"), 0.0);
    assert_eq!(p.get(&format!("rltop_acquisitions_total{{{l}}}")), 6.0);
    assert_eq!(p.get(&format!("rltop_contentions_total{{{l}}}")), 3.0);
    assert_eq!(p.get(&format!("rltop_wait_seconds_count{{{l}}}")), 3.0);
    assert!((p.get(&format!("rltop_wait_seconds_sum{{{l}}}")) - 2.3e-6).abs() < 1e-15);
    let wait = &p.hists[&format!("rltop_wait_seconds{{{l}}}")];
    // 100 ns <= 255 ns; the two 1100 ns waits <= 2047 ns, not <= 1023 ns.
    let at = |le: f64| wait.iter().find(|b| b.0 == le).unwrap().1;
    assert_eq!(at(255e-9), 1.0);
    assert_eq!(at(1.023e-6), 1.0);
    assert_eq!(at(2.047e-6), 3.0);
    assert_eq!(
        p.get("rltop_findings{certain=\"true\",kind=\"conflicting_grant\",severity=\"error\"}"),
        1.0
    );
    assert_eq!(p.get("rltop_events_total{kind=\"marker\"}"), 3.0);
}

#[test]
fn a_bad_metrics_address_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(RLTOP)
        .args(["record", "--metrics", "localhost", "-o"])
        .arg(dir.path().join("x.rlt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--metrics \"localhost\""), "{err}");
    assert!(!dir.path().join("x.rlt").exists());
}

#[test]
fn a_port_in_use_stops_record_before_it_writes_anything() {
    if !need_root("a_port_in_use_stops_record_before_it_writes_anything") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(RLTOP)
        .args(["record", "--metrics", &port, "-o"])
        .arg(dir.path().join("x.rlt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("--metrics: cannot listen on 127.0.0.1:"),
        "{err}"
    );
    assert!(!dir.path().join("x.rlt").exists());
}
