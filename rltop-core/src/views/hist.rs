//! `rltop hist` renderings of a [`HistSet`]: bcc's log2 text, bpftrace's
//! JSON, CSV (one row per bucket), Prometheus classic histograms, HDR
//! interval logs (HdrHistogram V2, deflate) and an SVG picture.
//!
//! Buckets are log2 buckets of nanoseconds, as bcc and bpftrace draw them:
//! `[0]`, `[1]`, `[2, 3]`, `[4, 7]`, ... They are exact: the HDR
//! histogram's sub-buckets never straddle a power of two.

use std::collections::BTreeMap;
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

/// The labels that identify a series, in order: `trace`, `lock`, the
/// `--by` key.
pub fn key_labels(set: &HistSet, k: &SeriesKey) -> Vec<(&'static str, String)> {
    let mut l = Vec::with_capacity(4);
    if let Some(t) = &k.trace {
        l.push(("trace", t.clone()));
    }
    l.push(("lock", k.lock.as_str().to_string()));
    l.push((key_label(set.by, k.lock), k.key.clone()));
    l
}

/// The labels of a series: [`key_labels`], then the key's note (comm or
/// file) when known.
pub fn labels(set: &HistSet, k: &SeriesKey) -> Vec<(&'static str, String)> {
    let mut l = key_labels(set, k);
    if let Some(name) = note_label(set.by)
        && let Some(n) = set.notes.get(&k.key)
        // A file operation's key is its file already.
        && !l.iter().any(|(x, _)| *x == name)
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
    for line in &set.scope {
        let _ = writeln!(out, "{line}");
    }
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
        let key: Vec<String> = key_labels(set, k)
            .into_iter()
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
    for (n, v) in key_labels(set, k) {
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
/// `HistogramLogWriter`): a comment header, then per series a comment with
/// its exact sum, min and max (and what its key names) and a line
/// `Tag=<labels>,0.000,0.000,<max ns>,<base64 V2 deflate histogram>`.
/// Values are ns. Histograms of many machines merge exactly by adding
/// those with the same tag; `rltop hist` reads these logs back
/// ([`read_hdr`]) and merges them like traces.
pub fn hdr(set: &HistSet) -> Result<String, HdrError> {
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    let mut b = IntervalLogWriterBuilder::new();
    b.add_comment(&format!(
        "{HDR_HEADER} metric={} by={} unit=ns; one HdrHistogram (V2, deflate) per series",
        set.metric.as_str(),
        set.by.as_str()
    ));
    let mut w = b.begin_log_with(&mut buf, &mut ser)?;
    for (k, h) in &set.series {
        let tag = hdr_tag(set, k);
        let mut c = format!(
            "{HDR_SERIES} Tag={tag} sum_ns={} min_ns={} max_ns={}",
            h.total, h.min, h.max
        );
        if let Some(n) = set.notes.get(&k.key)
            && note_label(set.by).is_some()
        {
            let _ = write!(c, " note={}", n.replace(['\r', '\n'], "_"));
        }
        w.write_comment(&c)?;
        let zero = std::time::Duration::ZERO;
        w.write_histogram(h.hdr(), zero, zero, Tag::new(&tag))
            .map_err(|e| HdrError(e.to_string()))?;
    }
    String::from_utf8(buf).map_err(|e| HdrError(e.to_string()))
}

/// Writing an HDR log failed (in memory: only an encoder error).
#[derive(Debug, thiserror::Error)]
#[error("hdr: {0}")]
pub struct HdrError(String);

impl From<std::io::Error> for HdrError {
    fn from(e: std::io::Error) -> HdrError {
        HdrError(e.to_string())
    }
}

/// The first line of an interval log `rltop hist` wrote (after `#`).
pub const HDR_HEADER: &str = "rltop hist:";
const HDR_SERIES: &str = "rltop series";

/// Whether `head` (the start of a file) is an interval log of `rltop hist`.
pub fn is_hdr(head: &[u8]) -> bool {
    head.starts_with(format!("#{HDR_HEADER}").as_bytes())
}

/// Reads back an interval log written by [`hdr`]: the same series, with
/// their exact counts, sums, min and max. Errors say what is wrong.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn read_hdr(text: &str) -> Result<HistSet, String> {
    use crate::analysis::hist::LockKind;
    use crate::analysis::stats::Metric;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    let mut lines = text.lines();
    let head = lines
        .next()
        .and_then(|l| l.strip_prefix('#'))
        .and_then(|l| l.strip_prefix(HDR_HEADER))
        .ok_or("not an interval log of `rltop hist --format hdr`")?;
    let field = |name: &str| {
        head.split([' ', ';'])
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
    };
    let metric = match field("metric").as_deref() {
        Some("wait") => Metric::Wait,
        Some("hold") => Metric::Hold,
        _ => return Err("header: no metric=wait|hold".into()),
    };
    let by = match field("by").as_deref() {
        Some("op") => By::Op,
        Some("tree") => By::Tree,
        Some("task") => By::Task,
        Some("test") => By::Test,
        _ => return Err("header: no by=op|tree|task|test".into()),
    };
    if field("unit").as_deref() != Some("ns") {
        return Err("header: values are not in ns (unit=ns)".into());
    }
    // Tag -> (sum, min, max, note), from the series comments.
    let mut exact = BTreeMap::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix('#').and_then(|l| l.strip_prefix(HDR_SERIES)) else {
            continue;
        };
        let (before, note) = match rest.split_once(" note=") {
            Some((b, n)) => (b, Some(n.to_string())),
            None => (rest, None),
        };
        let mut tag = None;
        let mut nums = [None; 3];
        for w in before.split_whitespace() {
            if let Some(t) = w.strip_prefix("Tag=") {
                tag = Some(t.to_string());
            }
            for (i, name) in ["sum_ns=", "min_ns=", "max_ns="].iter().enumerate() {
                if let Some(v) = w.strip_prefix(name) {
                    nums[i] = v.parse::<u64>().ok();
                }
            }
        }
        match (tag, nums) {
            (Some(t), [Some(sum), Some(min), Some(max)]) => {
                exact.insert(t, (sum, min, max, note));
            }
            _ => return Err(format!("bad series comment: {l}")),
        }
    }
    let mut set = HistSet::new(metric, by);
    let mut de = Deserializer::new();
    for e in IntervalLogIterator::new(text.as_bytes()) {
        let e = e.map_err(|e| format!("bad interval line: {e:?}"))?;
        let LogEntry::Interval(iv) = e else {
            continue;
        };
        let tag = iv
            .tag()
            .map(|t| t.as_str().to_string())
            .ok_or("an interval without a Tag")?;
        let (sum, min, max, note) = exact
            .get(&tag)
            .cloned()
            .ok_or_else(|| format!("no exact sum, min and max for Tag={tag}"))?;
        let bytes = base64_decode(iv.encoded_histogram())
            .ok_or_else(|| format!("Tag={tag}: bad base64"))?;
        let h: hdrhistogram::Histogram<u64> = de
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("Tag={tag}: {e:?}"))?;
        let hist = Hist::from_parts(h, sum, min, max)
            .ok_or_else(|| format!("Tag={tag}: sum, min or max disagree with the histogram"))?;
        // Tag: metric=..;[trace=..;]lock=..;<key label>=<key>
        let mut trace = None;
        let mut lock = None;
        let mut key = None;
        for part in tag.split(';') {
            let (n, v) = part
                .split_once('=')
                .ok_or_else(|| format!("Tag={tag}: {part:?} is not name=value"))?;
            match n {
                "metric" => {
                    if v != metric.as_str() {
                        return Err(format!("Tag={tag}: not {} times", metric.as_str()));
                    }
                }
                "trace" => trace = Some(v.to_string()),
                "lock" => {
                    lock = Some(match v {
                        "range_lock" => LockKind::RangeLock,
                        "mmap_lock" => LockKind::MmapLock,
                        "file_op" => LockKind::FileOp,
                        "kernel_lock" => LockKind::KernelLock,
                        _ => return Err(format!("Tag={tag}: unknown lock {v:?}")),
                    })
                }
                _ => key = Some(v.to_string()),
            }
        }
        let (Some(lock), Some(key)) = (lock, key) else {
            return Err(format!("Tag={tag}: no lock or key"));
        };
        if let Some(n) = note {
            set.notes.insert(key.clone(), n);
        }
        set.series
            .entry(SeriesKey { trace, lock, key })
            .or_default()
            .merge(&hist);
    }
    Ok(set)
}

/// Standard base64, as interval logs encode histograms.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
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
            // A bucket with samples always shows (at least 1 px).
            let w = (u128::from(BAR) * u128::from(count) / u128::from(max)) as u32;
            let w = if count > 0 { w.max(1) } else { 0 };
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
