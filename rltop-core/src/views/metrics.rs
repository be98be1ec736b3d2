//! OpenMetrics text for Prometheus (`rltop record --metrics`): what the
//! recorder has seen so far, rendered from the same analyses as `rltop
//! check` and `rltop report`. A pure function of its input.
//!
//! Families (all counters since recording began):
//!
//! - `rltop_events_total{kind}`: events by JSONL kind;
//! - `rltop_lost_events_total`: events the kernel dropped (`lost` events);
//! - `rltop_metrics_skipped_events_total`: events the metrics analysis
//!   skipped because it fell behind (they are in the trace file all the
//!   same; the analysis treats the skip as a gap);
//! - `rltop_acquisitions_total` and `rltop_contentions_total{class,op,mode}`;
//! - `rltop_wait_seconds` and `rltop_hold_seconds{class,op,mode}`: classic
//!   histograms (wait: contended acquisitions only, as lock_stat);
//! - `rltop_findings{kind,severity,certain}` (a gauge: a finding may be
//!   withdrawn or turn uncertain as later events come);
//! - `rltop_waiting_tasks{class}`: tasks waiting now for a range lock, an
//!   `i_rwsem`, an `invalidate_lock` or
//!   an mmap_lock (requested, not yet acquired).
//!
//! Labels are low-cardinality on purpose: `class` is `range_lock`,
//! `mmap_lock`, `file_op` or `kernel_lock`; `op` and `mode` as in `rltop
//! report`. Rows of different trees, mms, files and lock addresses are
//! summed (per-file detail is `rltop report`'s job).
//!
//! # Histograms merge exactly
//!
//! Every rltop uses the same fixed bucket bounds, those of `rltop hist
//! --format prom` too ([`crate::views::hist::PROM_BITS`]): `le` is `2^k -
//! 1` nanoseconds for k = 8..=36 (about 256 ns to 69 s), then `+Inf`. Durations
//! are integer nanoseconds, so the bucket `le = 2^k - 1 ns` counts exactly
//! the samples below `2^k` ns. Those counts are exact, not estimates: the
//! HDR histogram behind each row ([`crate::analysis::stats::Hist`]) never
//! puts two values on different sides of a power of two into one bucket.
//! Buckets are cumulative, so adding the bucket counters of many machines
//! (or traces) bound by bound, and their `_sum` and `_count`, gives exactly
//! the histogram of all their samples together: `sum by (le, class, op,
//! mode) (rate(rltop_wait_seconds_bucket[5m]))` across a fleet is exact.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::stats::{Class, Hist, Row, Stats};
use crate::analysis::{Finding, Severity};

/// The bucket bounds: `le = 2^k - 1` ns for these k (shared with `rltop
/// hist --format prom`, so both merge).
pub const BUCKET_POW2: std::ops::RangeInclusive<u32> = crate::views::hist::PROM_BITS;

/// What the metrics are rendered from.
pub struct Input<'a> {
    pub stats: &'a Stats,
    pub events_by_kind: &'a BTreeMap<&'static str, u64>,
    pub lost: u64,
    pub skipped: u64,
    /// Findings standing now (not withdrawn).
    pub findings: &'a [&'a Finding],
    /// Findings past the checker's cap, only counted.
    pub suppressed: u64,
    /// Tasks waiting now: for a range lock, an mmap_lock, an `i_rwsem`,
    /// an `invalidate_lock`.
    pub waiting: [u64; 4],
}

/// The labels of a row, summed over trees, mms, files and addresses.
fn labels(c: &Class) -> (&'static str, &'static str, &'static str) {
    match *c {
        Class::RangeLock { op, mode, .. } => ("range_lock", op.as_str(), mode.as_str()),
        Class::Mmap { write, .. } => ("mmap_lock", "", if write { "write" } else { "read" }),
        Class::FileOp { op, .. } => ("file_op", op.as_str(), ""),
        Class::Kernel { .. } => ("kernel_lock", "", ""),
        Class::FileLock { lock, write, .. } => (
            lock.class.as_str(),
            "",
            if write { "write" } else { "read" },
        ),
    }
}

fn label_str(l: &(&str, &str, &str)) -> String {
    let mut s = format!("class=\"{}\"", l.0);
    if !l.1.is_empty() {
        let _ = write!(s, ",op=\"{}\"", l.1);
    }
    if !l.2.is_empty() {
        let _ = write!(s, ",mode=\"{}\"", l.2);
    }
    s
}

/// Seconds, as OpenMetrics writes floats.
fn seconds(ns: u64) -> String {
    let s = format!("{}", ns as f64 / 1e9);
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The cumulative bucket counts of `h` at the fixed bounds, then the total.
pub fn buckets(h: &Hist) -> Vec<(u64, u64)> {
    let log2 = h.log2();
    BUCKET_POW2
        .map(|k| {
            let below = 1u64 << k;
            let n = log2
                .iter()
                .filter(|&&(_, high, _)| high <= below)
                .map(|b| b.2)
                .sum();
            (below - 1, n)
        })
        .collect()
}

fn histogram(out: &mut String, name: &str, help: &str, rows: &[(String, &Hist)]) {
    let _ = writeln!(out, "# TYPE {name} histogram");
    let _ = writeln!(out, "# UNIT {name} seconds");
    let _ = writeln!(out, "# HELP {name} {help}");
    for (l, h) in rows {
        for (le, n) in buckets(h) {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {n}", seconds(le));
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{l}}} {}", seconds(h.total));
        let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
    }
}

/// The OpenMetrics document (ends with `# EOF`).
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn openmetrics(i: &Input<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE rltop_events counter");
    let _ = writeln!(out, "# HELP rltop_events Events recorded, by kind.");
    for (k, n) in i.events_by_kind {
        let _ = writeln!(out, "rltop_events_total{{kind=\"{k}\"}} {n}");
    }
    let _ = writeln!(out, "# TYPE rltop_lost_events counter");
    let _ = writeln!(
        out,
        "# HELP rltop_lost_events Events the kernel side dropped (ring buffer full)."
    );
    let _ = writeln!(out, "rltop_lost_events_total {}", i.lost);
    let _ = writeln!(out, "# TYPE rltop_metrics_skipped_events counter");
    let _ = writeln!(
        out,
        "# HELP rltop_metrics_skipped_events Events recorded but not analysed for these metrics (the analysis fell behind)."
    );
    let _ = writeln!(out, "rltop_metrics_skipped_events_total {}", i.skipped);

    // Rows summed per label set.
    let mut rows: BTreeMap<(&str, &str, &str), Row> = BTreeMap::new();
    for (c, r) in i.stats.rows() {
        let sum = rows.entry(labels(c)).or_default();
        sum.acquisitions += r.acquisitions;
        sum.contentions += r.contentions;
        sum.wait.merge(&r.wait);
        sum.hold.merge(&r.hold);
    }
    let _ = writeln!(out, "# TYPE rltop_acquisitions counter");
    let _ = writeln!(
        out,
        "# HELP rltop_acquisitions Lock acquisitions (file_op: operations completed; not observable for kernel locks)."
    );
    for (l, r) in rows.iter().filter(|(l, _)| l.0 != "kernel_lock") {
        let _ = writeln!(
            out,
            "rltop_acquisitions_total{{{}}} {}",
            label_str(l),
            r.acquisitions
        );
    }
    let _ = writeln!(out, "# TYPE rltop_contentions counter");
    let _ = writeln!(
        out,
        "# HELP rltop_contentions Contended acquisitions (had to wait)."
    );
    for (l, r) in &rows {
        let _ = writeln!(
            out,
            "rltop_contentions_total{{{}}} {}",
            label_str(l),
            r.contentions
        );
    }
    let waits: Vec<(String, &Hist)> = rows
        .iter()
        .filter(|(_, r)| !r.wait.is_empty())
        .map(|(l, r)| (label_str(l), &r.wait))
        .collect();
    histogram(
        &mut out,
        "rltop_wait_seconds",
        "Wait time of contended acquisitions.",
        &waits,
    );
    let holds: Vec<(String, &Hist)> = rows
        .iter()
        .filter(|(_, r)| !r.hold.is_empty())
        .map(|(l, r)| (label_str(l), &r.hold))
        .collect();
    histogram(
        &mut out,
        "rltop_hold_seconds",
        "Hold time (file_op: time in flight).",
        &holds,
    );

    let mut findings: BTreeMap<(&str, &str, bool), u64> = BTreeMap::new();
    for f in i.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        *findings
            .entry((f.kind.as_str(), sev, f.certain))
            .or_default() += 1;
    }
    let _ = writeln!(out, "# TYPE rltop_findings gauge");
    let _ = writeln!(
        out,
        "# HELP rltop_findings Findings of rltop check standing now, by kind (repeats fold into one)."
    );
    for ((k, s, c), n) in &findings {
        let _ = writeln!(
            out,
            "rltop_findings{{kind=\"{k}\",severity=\"{s}\",certain=\"{c}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# TYPE rltop_findings_suppressed gauge");
    let _ = writeln!(
        out,
        "# HELP rltop_findings_suppressed Findings past the cap, counted only."
    );
    let _ = writeln!(out, "rltop_findings_suppressed {}", i.suppressed);
    let _ = writeln!(out, "# TYPE rltop_waiting_tasks gauge");
    let _ = writeln!(
        out,
        "# HELP rltop_waiting_tasks Tasks waiting now (requested, not yet acquired)."
    );
    for (class, n) in ["range_lock", "mmap_lock", "i_rwsem", "invalidate_lock"]
        .into_iter()
        .zip(i.waiting)
    {
        let _ = writeln!(out, "rltop_waiting_tasks{{class=\"{class}\"}} {n}");
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(samples: &[u64]) -> Hist {
        let mut h = Hist::default();
        for &s in samples {
            h.record(s);
        }
        h
    }

    /// Bucket counts are exact at the bounds, also for values right at a
    /// power of two and for large, coarsely stored values.
    #[test]
    fn buckets_count_exactly_below_each_power_of_two() {
        let samples = [
            0,
            5,
            1023,
            1024,
            1025,
            2047,
            2048,
            65_535,
            65_536,
            1_000_000,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            40_000_000_000,
        ];
        let got = buckets(&hist(&samples));
        for (le, n) in got {
            let want = samples.iter().filter(|&&s| s <= le).count() as u64;
            assert_eq!(n, want, "le {le}");
        }
    }

    fn parse(text: &str) -> BTreeMap<(String, String), f64> {
        let s = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let mut out = BTreeMap::new();
        for smp in s.samples {
            if let prometheus_parse::Value::Histogram(hs) = smp.value {
                for b in hs {
                    out.insert(
                        (
                            format!("{}{}", smp.metric, smp.labels),
                            format!("{}", b.less_than),
                        ),
                        b.count,
                    );
                }
            }
        }
        out
    }

    /// Two machines' histograms, added bound by bound, are the histogram of
    /// all the samples: the exact-merge promise of the module docs.
    #[test]
    fn histograms_of_many_traces_add_up_exactly() {
        let a = [3, 900, 1024, 70_000, 70_001, 5_000_000, 2_000_000_000];
        let b = [1023, 1023, 65_536, 4_999_999, 40_000_000_000];
        let render = |samples: &[u64]| {
            let mut text = String::from("# TYPE w histogram\n");
            let h = hist(samples);
            for (le, n) in buckets(&h) {
                let _ = writeln!(text, "w_bucket{{class=\"x\",le=\"{}\"}} {n}", seconds(le));
            }
            let _ = writeln!(text, "w_bucket{{class=\"x\",le=\"+Inf\"}} {}", h.count);
            text
        };
        let (pa, pb) = (parse(&render(&a)), parse(&render(&b)));
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let pall = parse(&render(&all));
        assert_eq!(pa.len(), BUCKET_POW2.count() + 1);
        for (k, n) in &pall {
            assert_eq!(pa[k] + pb[k], *n, "{k:?}");
            let le: f64 = k.1.parse().unwrap();
            let want = all.iter().filter(|&&s| s as f64 / 1e9 <= le).count();
            assert_eq!(*n, want as f64, "{k:?}");
        }
        // And merging the histograms first gives the same buckets.
        let mut m = hist(&a);
        m.merge(&hist(&b));
        assert_eq!(buckets(&m), buckets(&hist(&all)));
    }
}
