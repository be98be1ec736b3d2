//! `rltop hist` renderings of a [`HistSet`]: bcc's log2 text, bpftrace's
//! JSON, CSV (one row per bucket), Prometheus classic histograms, HDR
//! interval logs (HdrHistogram V2, deflate) and an SVG picture.
//!
//! Buckets are log2 buckets of nanoseconds, as bcc and bpftrace draw them:
//! `[0]`, `[1]`, `[2, 3]`, `[4, 7]`, ... They are exact: the HDR
//! histogram's sub-buckets never straddle a power of two.

use std::fmt::Write as _;

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use crate::analysis::hist::{By, HistSet, SeriesKey, key_label};
use crate::analysis::stats::Hist;

/// The bcc/bpftrace map name of a set: `@wait_ns` or `@hold_ns`.
pub fn map_name(set: &HistSet) -> String {
    format!("@{}_ns", set.metric.as_str())
}

/// The label of the note a key may carry: a task's name, a tree's file.
fn note_label(by: By) -> Option<&'static str> {
    match by {
        By::Task => Some("comm"),
        By::Tree => Some("file"),
        By::Op | By::Test => None,
    }
}

/// The labels of a series, in order: `trace`, `lock`, the `--by` key, and
/// the key's note (comm or file) when known.
pub fn labels(set: &HistSet, k: &SeriesKey) -> Vec<(&'static str, String)> {
    let mut l = Vec::with_capacity(4);
    if let Some(t) = &k.trace {
        l.push(("trace", t.clone()));
    }
    l.push(("lock", k.lock.as_str().to_string()));
    l.push((key_label(set.by, k.lock), k.key.clone()));
    if let Some(name) = note_label(set.by)
        && let Some(n) = set.notes.get(&k.key)
    {
        l.push((name, n.clone()));
    }
    l
}

/// Log2 bucket counts by bucket index (bucket `b` holds values of `b`
/// significant bits: 0, 1, [2, 3], ...).
fn log2_counts(h: &Hist) -> [u64; 65] {
    let mut v = [0u64; 65];
    for (low, _, count) in h.log2() {
        let b = if low == 0 {
            0
        } else {
            low.trailing_zeros() as usize + 1
        };
        v[b] += count;
    }
    v
}

/// bcc's `_stars`: `width * val / max` stars, `+` when past the maximum.
fn stars(val: u64, max: u64, width: usize) -> String {
    if max == 0 {
        return String::new();
    }
    let n = ((width as u128 * val as u128) / max as u128).min(width as u128) as usize;
    "*".repeat(n)
}

/// bcc's `print_log2_hist` for one distribution (`val_type` `nsecs`).
/// bcc never prints bucket 0 (the value 0); here its count joins the
/// `0 -> 1` row, whose range does include 0.
pub fn log2_text(h: &Hist) -> String {
    let mut vals = log2_counts(h);
    vals[1] += vals[0];
    let idx_max = (1..=64).rev().find(|&i| vals[i] > 0).unwrap_or(1);
    let val_max = vals[1..=idx_max].iter().copied().max().unwrap_or(0);
    let mut out = String::new();
    let wide = idx_max > 32;
    let width = if wide { 20 } else { 40 };
    if wide {
        let _ = writeln!(
            out,
            "               {:<29} : count     distribution",
            "nsecs"
        );
    } else {
        let _ = writeln!(out, "     {:<19} : count     distribution", "nsecs");
    }
    for (i, &val) in vals.iter().enumerate().take(idx_max + 1).skip(1) {
        let mut low = (1u128 << i) >> 1;
        let high = (1u128 << i) - 1;
        if low == high {
            low -= 1;
        }
        let s = stars(val, val_max, width);
        if wide {
            let _ = writeln!(out, "{low:>20} -> {high:<20} : {val:<8} |{s:<width$}|");
        } else {
            let _ = writeln!(out, "{low:>10} -> {high:<10} : {val:<8} |{s:<width$}|");
        }
    }
    out
}

/// The text form: per series a bcc section header (`lock = range_lock, op
/// = fault`), the log2 histogram, and funclatency's summary line.
pub fn text(set: &HistSet) -> String {
    let mut out = String::new();
    if set.series.is_empty() {
        let _ = writeln!(
            out,
            "no {} times in this trace ({})",
            set.metric.as_str(),
            match set.metric {
                crate::analysis::stats::Metric::Wait => "no contended acquisition",
                crate::analysis::stats::Metric::Hold => "no lock released after its acquisition",
            }
        );
        return out;
    }
    for (i, (k, h)) in set.series.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let header: Vec<String> = labels(set, k)
            .into_iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        let _ = writeln!(out, "{}", header.join(", "));
        out.push_str(&log2_text(h));
        let _ = writeln!(
            out,
            "\navg = {} nsecs, total: {} nsecs, count: {}, min: {} nsecs, max: {} nsecs",
            h.mean(),
            h.total,
            h.count,
            h.min,
            h.max
        );
    }
    out
}

/// bpftrace's JSON for a keyed map of histograms, one line:
/// `{"type": "hist", "data": {"@wait_ns": {"range_lock,fault": [{"min": 0,
/// "max": 0, "count": 1}, ...]}}}`. Keys are the series labels joined by
/// commas without spaces, as bpftrace prints tuple keys; `max` is
/// inclusive, as in bpftrace.
pub fn json(set: &HistSet) -> String {
    // Written by hand for bpftrace's exact shape and spacing: objects
    // spaced (`{"min": 1, "max": 1, "count": 2}`), arrays not, entries in
    // series order.
    let q = |s: &str| serde_json::to_string(s).expect("strings always serialize");
    let mut series = Vec::with_capacity(set.series.len());
    for (k, h) in &set.series {
        let key: Vec<String> = labels(set, k)
            .into_iter()
            .filter(|(n, _)| Some(*n) != note_label(set.by))
            .map(|(_, v)| v.replace(' ', ""))
            .collect();
        let buckets: Vec<String> = h
            .log2()
            .into_iter()
            .map(|(low, high, count)| {
                format!(
                    "{{\"min\": {low}, \"max\": {}, \"count\": {count}}}",
                    high - 1
                )
            })
            .collect();
        series.push(format!("{}: [{}]", q(&key.join(",")), buckets.join(",")));
    }
    format!(
        "{{\"type\": \"hist\", \"data\": {{{}: {{{}}}}}}}\n",
        q(&map_name(set)),
        series.join(", ")
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV, one row per log2 bucket (from the smallest value's bucket to the
/// largest's), bounds inclusive in ns: `metric,[trace,]lock,<by>,[comm|file,]
/// low_ns,high_ns,count`.
pub fn csv(set: &HistSet) -> String {
    let traces = set.series.keys().any(|k| k.trace.is_some());
    let by = set.by.as_str();
    let mut out = String::from("metric,");
    if traces {
        out.push_str("trace,");
    }
    out.push_str("lock,");
    out.push_str(by);
    if let Some(n) = note_label(set.by) {
        out.push(',');
        out.push_str(n);
    }
    out.push_str(",low_ns,high_ns,count\n");
    for (k, h) in &set.series {
        let mut prefix = format!("{},", set.metric.as_str());
        if traces {
            prefix.push_str(&csv_field(k.trace.as_deref().unwrap_or("")));
            prefix.push(',');
        }
        prefix.push_str(k.lock.as_str());
        prefix.push(',');
        prefix.push_str(&csv_field(&k.key));
        if note_label(set.by).is_some() {
            prefix.push(',');
            prefix.push_str(&csv_field(
                set.notes.get(&k.key).map(String::as_str).unwrap_or(""),
            ));
        }
        for (low, high, count) in h.log2() {
            let _ = writeln!(out, "{prefix},{low},{},{count}", high - 1);
        }
    }
    out
}

/// Prometheus `le` bounds, in ns: `2^k - 1` for k in this range (255 ns to
/// about 68.7 s), so that each bound is a log2 bucket's inclusive top and
/// the cumulative counts are exact. Every series has the same bounds, so
/// series aggregate (`sum by (le)`).
pub const PROM_BITS: std::ops::RangeInclusive<u32> = 8..=36;

fn prom_escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus metric name of a set.
pub fn prom_name(set: &HistSet) -> String {
    format!("rltop_lock_{}_seconds", set.metric.as_str())
}

/// Prometheus text exposition: a classic histogram per series, in
/// seconds, with cumulative `_bucket{le=...}`, `_sum` and `_count`.
pub fn prom(set: &HistSet) -> String {
    let name = prom_name(set);
    let mut out = String::new();
    let help = match set.metric {
        crate::analysis::stats::Metric::Wait => {
            "Wait of contended lock acquisitions (lock_stat waittime)"
        }
        crate::analysis::stats::Metric::Hold => {
            "Hold time of locks (time in flight for file operations)"
        }
    };
    let _ = writeln!(out, "# HELP {name} {help}, by {}.", set.by.as_str());
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (k, h) in &set.series {
        let labels: Vec<String> = labels(set, k)
            .into_iter()
            .map(|(n, v)| format!("{n}=\"{}\"", prom_escape(&v)))
            .collect();
        let labels = labels.join(",");
        let buckets = h.log2();
        for bits in PROM_BITS {
            let le_ns = (1u64 << bits) - 1;
            let cum: u64 = buckets
                .iter()
                .filter(|(_, high, _)| high - 1 <= le_ns)
                .map(|b| b.2)
                .sum();
            let le = le_ns as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.total as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
    }
    out
}

/// The HDR interval log tag of a series: its labels as `name=value`
/// joined by `;`, led by the metric (`metric=wait;lock=range_lock;op=fault`).
/// Characters a tag may not hold (`,`, space, CR, LF) become `_`.
pub fn hdr_tag(set: &HistSet, k: &SeriesKey) -> String {
    let mut t = format!("metric={}", set.metric.as_str());
    for (n, v) in labels(set, k) {
        if Some(n) == note_label(set.by) {
            continue;
        }
        let _ = write!(t, ";{n}={v}");
    }
    t.chars()
        .map(|c| {
            if matches!(c, ',' | ' ' | '\r' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// HdrHistogram interval log (the format of HdrHistogram's
/// `HistogramLogWriter`): a comment header, then one line per series,
/// `Tag=<labels>,0.000,0.000,<max ns>,<base64 V2 deflate histogram>`.
/// Values are ns. Histograms of many machines merge exactly by adding
/// those with the same tag.
pub fn hdr(set: &HistSet) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let mut b = IntervalLogWriterBuilder::new();
    b.add_comment(&format!(
        "rltop hist: {} times in ns by {}; one HdrHistogram (V2, deflate) per series",
        set.metric.as_str(),
        set.by.as_str()
    ));
    let mut w = b.begin_log_with(&mut buf, &mut ser)?;
    for (k, h) in &set.series {
        let tag = hdr_tag(set, k);
        let zero = std::time::Duration::ZERO;
        w.write_histogram(h.hdr(), zero, zero, Tag::new(&tag))
            .map_err(|e| anyhow::anyhow!("hdr: {e}"))?;
    }
    Ok(String::from_utf8(buf)?)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG picture: per series a title and one horizontal bar per log2
/// bucket (as the text form), bar length proportional to its count.
pub fn svg(set: &HistSet) -> String {
    const W: u32 = 900;
    const ROW: u32 = 16;
    const LABEL: u32 = 260;
    const BAR: u32 = 520;
    let mut body = String::new();
    let mut y = 30u32;
    let title = format!(
        "rltop hist: {} times (ns), by {}",
        set.metric.as_str(),
        set.by.as_str()
    );
    let _ = writeln!(
        body,
        r#"<text x="10" y="20" font-size="16" font-weight="bold">{}</text>"#,
        xml_escape(&title)
    );
    if set.series.is_empty() {
        y += 20;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}">no {} times in this trace</text>"#,
            set.metric.as_str()
        );
    }
    for (k, h) in &set.series {
        y += 24;
        let head: Vec<String> = labels(set, k)
            .into_iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        let _ = writeln!(
            body,
            r#"<text class="series" x="10" y="{y}" font-weight="bold">{} (count {}, avg {} ns, max {} ns)</text>"#,
            xml_escape(&head.join(", ")),
            h.count,
            h.mean(),
            h.max
        );
        let buckets = h.log2();
        let max = buckets.iter().map(|b| b.2).max().unwrap_or(0).max(1);
        for (low, high, count) in buckets {
            y += ROW;
            let w = (u128::from(BAR) * u128::from(count) / u128::from(max)) as u32;
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" text-anchor="end">{low} -&gt; {}</text><rect class="bar" x="{}" y="{}" width="{w}" height="{}" fill="steelblue"><title>{count}</title></rect><text x="{}" y="{}">{count}</text>"#,
                LABEL - 10,
                y,
                high - 1,
                LABEL,
                y - ROW + 4,
                ROW - 3,
                LABEL + w + 6,
                y
            );
        }
    }
    let h = y + 20;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" font-family=\"monospace\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_rows_and_stars() {
        let mut h = Hist::default();
        for v in [0, 1, 3, 200, 200, 200, 255] {
            h.record(v);
        }
        let t = log2_text(&h);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "     nsecs               : count     distribution"
        );
        // 0 and 1 share bcc's first row; [2, 3] has one; [128, 255] four.
        assert_eq!(
            lines[1],
            "         0 -> 1          : 2        |********************                    |"
        );
        assert_eq!(
            lines[2],
            "         2 -> 3          : 1        |**********                              |"
        );
        assert_eq!(
            lines[8],
            "       128 -> 255        : 4        |****************************************|"
        );
        assert_eq!(lines.len(), 9);
    }
}
