//! `rltop report`: the contention summary, lock_stat's columns per class
//! (range lock tree x operation x mode, mmap_lock, file operations, kernel
//! locks), sorted perf-style by a key, then the longest waits with their
//! wait chains. Text for people, JSON for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::describe;
use crate::analysis::stats::{Class, Row, Stats, Summary, Target, WaitChain};
use crate::events::Dev;
use crate::model::Model;
use crate::views::scope::{OUTSIDE, ScopeNote};

/// What rows are sorted by (descending), `-k` (perf lock's names are
/// accepted as aliases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
pub enum SortKey {
    #[cfg_attr(feature = "clap", value(alias = "contended"))]
    Contentions,
    Acquisitions,
    WaitTotal,
    WaitMax,
    WaitMin,
    #[cfg_attr(feature = "clap", value(alias = "avg_wait"))]
    WaitAvg,
    WaitP99,
    HoldTotal,
    HoldMax,
    HoldAvg,
    HoldP99,
}

/// Everything a report shows, built from the statistics and the model at
/// the end of the stream.
#[derive(Debug, Serialize)]
pub struct Report {
    pub events: u64,
    pub lost: u64,
    /// Of `lost`, the hits each probe missed in the kernel (kprobe
    /// nmissed, program recursion misses), by probe.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lost_by_probe: std::collections::BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flavour: Option<&'static str>,
    pub rows: Vec<ReportRow>,
    pub chains: Vec<ReportChain>,
    /// Which tasks it counts (a recording of a command, issue 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeNote>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReportRow {
    /// `range_lock`, `mmap_lock`, `file_op` or `kernel_lock`.
    pub class: &'static str,
    /// Human name: tree and file, mm, file, or lock address.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// `None` where acquisitions are not observable (kernel locks: only
    /// contended ones are traced).
    pub acquisitions: Option<u64>,
    pub contentions: u64,
    pub wait: Option<Summary>,
    pub hold: Option<Summary>,
    /// Every sample of it is of tasks outside the command's (`--all-tasks`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReportChain {
    pub ts: u64,
    pub wait: u64,
    pub cycle: bool,
    pub steps: Vec<ReportStep>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReportStep {
    pub tid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// What it holds (or is queued earlier for) that the previous step
    /// waits on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owns: Option<String>,
    /// `owns` is held (false: queued earlier for it).
    pub held: bool,
    /// `owns` is held for a direct IO in flight.
    pub dio: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits: Option<String>,
    /// Outside the command's tasks (`--all-tasks`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside: bool,
}

/// What a chain step owns or wants, in words.
pub fn describe_target(m: &Model, t: &Target) -> String {
    match *t {
        Target::Range {
            tree,
            start,
            last,
            mode,
            op,
        } => format!(
            "{} of {}",
            describe::range(start, last, mode, op),
            describe::tree(m, tree)
        ),
        Target::Mmap { mm, write } => describe::mmap_lock(m, mm, write),
        Target::File { lock, write } => describe::file_lock(m, lock, write),
    }
}

fn row(m: &Model, stats: &Stats, class: &Class, r: &Row) -> ReportRow {
    let mut out = ReportRow {
        class: "",
        name: String::new(),
        tree: None,
        dev: None,
        ino: None,
        mm: None,
        addr: None,
        op: None,
        mode: None,
        acquisitions: Some(r.acquisitions),
        contentions: r.contentions,
        wait: r.wait.summary(),
        hold: r.hold.summary(),
        outside: r.outside && !r.inside,
    };
    let file = |out: &mut ReportRow, dev: Dev, ino: u64| {
        out.dev = Some(dev.to_string());
        out.ino = Some(ino);
    };
    match *class {
        Class::RangeLock { tree, op, mode } => {
            out.class = "range_lock";
            out.name = describe::tree(m, tree);
            out.tree = Some(tree);
            if let Some((dev, ino)) = m.file_of(tree) {
                file(&mut out, dev, ino);
            }
            out.op = Some(op.as_str());
            out.mode = Some(mode.as_str());
        }
        Class::Mmap { mm, write } => {
            out.class = "mmap_lock";
            out.name = describe::mmap_lock_row(m, mm);
            out.mm = Some(mm);
            out.mode = Some(if write { "write" } else { "read" });
        }
        Class::FileOp { dev, ino, op } => {
            out.class = "file_op";
            out.name = describe::file(m, dev, ino);
            file(&mut out, dev, ino);
            out.op = Some(op.as_str());
        }
        Class::Kernel { addr } => {
            out.class = "kernel_lock";
            out.name = match stats.kernel_name(addr) {
                Some((flags, caller)) => describe::kernel_lock(addr, flags, caller),
                None => format!("lock {addr:#x}"),
            };
            out.addr = Some(addr);
            out.acquisitions = None;
        }
        Class::FileLock { lock, write, seen } => {
            out.class = lock.class.as_str();
            out.name = format!(
                "{}{}",
                describe::file(m, lock.dev, lock.ino),
                seen_note(seen)
            );
            file(&mut out, lock.dev, lock.ino);
            out.mode = Some(if write { "write" } else { "read" });
            out.addr = m.file_lock_addr(lock);
        }
    }
    out
}

/// What a page-cache lock row's holds rest on, for its name.
fn seen_note(s: crate::model::Seen) -> &'static str {
    match s {
        crate::model::Seen::Exact => "",
        crate::model::Seen::AtRequest => " (held from requests)",
        crate::model::Seen::Inferred => " (holds inferred)",
    }
}

fn key(r: &ReportRow, k: SortKey) -> u64 {
    let w = |f: fn(&Summary) -> u64| r.wait.as_ref().map_or(0, f);
    let h = |f: fn(&Summary) -> u64| r.hold.as_ref().map_or(0, f);
    match k {
        SortKey::Contentions => r.contentions,
        SortKey::Acquisitions => r.acquisitions.unwrap_or(r.contentions),
        SortKey::WaitTotal => w(|s| s.total),
        SortKey::WaitMax => w(|s| s.max),
        SortKey::WaitMin => w(|s| s.min),
        SortKey::WaitAvg => w(|s| s.avg),
        SortKey::WaitP99 => w(|s| s.p99),
        SortKey::HoldTotal => h(|s| s.total),
        SortKey::HoldMax => h(|s| s.max),
        SortKey::HoldAvg => h(|s| s.avg),
        SortKey::HoldP99 => h(|s| s.p99),
    }
}

/// Builds the report: rows sorted by `sort` (descending; ties by hold
/// total, then name, so the order is deterministic).
pub fn build(stats: &Stats, m: &Model, sort: SortKey) -> Report {
    let mut classes: Vec<(&Class, &Row)> = stats.rows().collect();
    classes.sort_by(|a, b| a.0.cmp(b.0));
    let mut rows: Vec<ReportRow> = classes
        .into_iter()
        .map(|(c, r)| row(m, stats, c, r))
        .collect();
    rows.sort_by(|a, b| {
        key(b, sort)
            .cmp(&key(a, sort))
            .then(key(b, SortKey::HoldTotal).cmp(&key(a, SortKey::HoldTotal)))
    });
    let chains = stats.top_chains().iter().map(|c| chain(m, c)).collect();
    Report {
        events: m.events,
        lost: m.lost,
        lost_by_probe: m.lost_by_probe.clone(),
        flavour: m.flavour().map(|f| f.as_str()),
        rows,
        chains,
        scope: None,
    }
}

fn chain(m: &Model, c: &WaitChain) -> ReportChain {
    ReportChain {
        ts: c.ts,
        wait: c.wait,
        cycle: c.cycle,
        steps: c
            .steps
            .iter()
            .map(|s| ReportStep {
                tid: s.tid,
                comm: s.comm.clone(),
                owns: s.owns.as_ref().map(|t| describe_target(m, t)),
                held: s.held,
                dio: s.dio,
                waits: s.waits.as_ref().map(|t| describe_target(m, t)),
                outside: s.outside,
            })
            .collect(),
    }
}

/// A duration, auto-scaled as perf prints it: `812 ns`, `3.40 us`, `1.25 s`.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} us", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.2} s", f / 1e9)
    }
}

const SECTIONS: [(&str, &str); 6] = [
    ("range_lock", "Range locks (per tree, operation and mode)"),
    ("mmap_lock", "mmap_lock"),
    (
        "i_rwsem",
        "i_rwsem (per file and mode; waits from lock:contention_* where the acquisition is not traced)",
    ),
    (
        "invalidate_lock",
        "invalidate_lock (per file and mode; waits from lock:contention_* where the acquisition is not traced)",
    ),
    ("file_op", "File operations (holdtime = time in flight)"),
    (
        "kernel_lock",
        "Kernel lock contention (lock:contention_begin/end; only contended acquisitions are traced)",
    ),
];

/// The text form: one lock_stat-style table per class of lock, then the
/// wait chains.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rltop report: {} events, {} lost{}",
        r.events,
        r.lost,
        r.flavour
            .map(|f| format!(", range lock flavour {f}"))
            .unwrap_or_default()
    );
    if let Some(sc) = &r.scope {
        let _ = writeln!(s, "{}", sc.text());
    }
    if r.lost > 0 {
        let _ = writeln!(
            s,
            "note: {} events were lost; waits and holds whose begin or end fell in a gap are not counted",
            r.lost
        );
        if !r.lost_by_probe.is_empty() {
            let by = probe_counts(&r.lost_by_probe);
            let ring = r.lost - r.lost_by_probe.values().sum::<u64>().min(r.lost);
            let _ = writeln!(
                s,
                "note: missed in the kernel: {by}; dropped by the ring buffer: {ring}"
            );
        }
    }
    if r.rows.is_empty() {
        let _ = writeln!(s, "\nno lock activity in this trace");
    }
    for (class, title) in SECTIONS {
        let rows: Vec<&ReportRow> = r.rows.iter().filter(|x| x.class == class).collect();
        if rows.is_empty() {
            continue;
        }
        let label = |x: &ReportRow| {
            if x.outside {
                format!("{} {OUTSIDE}", x.name)
            } else {
                x.name.clone()
            }
        };
        let name_w = rows
            .iter()
            .map(|x| label(x).len())
            .max()
            .unwrap_or(0)
            .max("class name".len());
        let _ = writeln!(s, "\n{title}\n");
        let _ = write!(
            s,
            "{:<name_w$} {:<9} {:<5} {:>11}",
            "class name", "op", "mode", "contentions"
        );
        for h in ["min", "max", "total", "avg", "p50", "p99"] {
            let _ = write!(s, " {:>14}", format!("waittime-{h}"));
        }
        let _ = write!(s, " {:>12}", "acquisitions");
        for h in ["min", "max", "total", "avg", "p50", "p99"] {
            let _ = write!(s, " {:>14}", format!("holdtime-{h}"));
        }
        s.push('\n');
        for x in rows {
            let _ = write!(
                s,
                "{:<name_w$} {:<9} {:<5} {:>11}",
                label(x),
                x.op.unwrap_or("-"),
                x.mode.unwrap_or("-"),
                x.contentions
            );
            summary_cols(&mut s, x.wait.as_ref());
            let _ = write!(
                s,
                " {:>12}",
                x.acquisitions
                    .map_or_else(|| "-".to_string(), |a| a.to_string())
            );
            summary_cols(&mut s, x.hold.as_ref());
            s.push('\n');
        }
    }
    if !r.chains.is_empty() {
        let _ = writeln!(
            s,
            "\nLongest waits and their wait chains (as the wait began)\n"
        );
        for (i, c) in r.chains.iter().enumerate() {
            let _ = writeln!(
                s,
                "#{} waited {}{}",
                i + 1,
                fmt_ns(c.wait),
                if c.cycle { "  *** cycle ***" } else { "" }
            );
            for (j, st) in c.steps.iter().enumerate() {
                let mut who = describe::task_label(st.comm.as_deref(), st.tid);
                if st.outside {
                    who = format!("{who} {OUTSIDE}");
                }
                let indent = "  ".repeat(j + 1);
                let mut line = format!("{indent}{who}");
                match (&st.owns, &st.waits) {
                    (None, Some(w)) => {
                        let _ = write!(line, " waits for {w}");
                    }
                    (None, None) => {}
                    (Some(o), _) if st.dio => {
                        let _ = write!(
                            line,
                            " holds {o} for a direct IO in flight (IO completion releases it)"
                        );
                    }
                    (Some(o), w) if st.held => {
                        let _ = write!(line, " holds {o}");
                        if let Some(w) = w {
                            let _ = write!(line, " and waits for {w}");
                        }
                    }
                    (Some(o), _) => {
                        let _ = write!(line, " is queued earlier for {o}");
                    }
                }
                let _ = writeln!(s, "{line}");
            }
        }
    }
    s
}

fn summary_cols(s: &mut String, x: Option<&Summary>) {
    match x {
        Some(x) => {
            for v in [x.min, x.max, x.total, x.avg, x.p50, x.p99] {
                let _ = write!(s, " {:>14}", fmt_ns(v));
            }
        }
        None => {
            for _ in 0..6 {
                let _ = write!(s, " {:>14}", "-");
            }
        }
    }
}

/// The JSON form (one object, newline-terminated).
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string(r).expect("report serializes");
    s.push('\n');
    s
}

/// Misses per probe, as `record` and `report` print them: "NAME N, NAME N".
pub fn probe_counts(by: &std::collections::BTreeMap<String, u64>) -> String {
    by.iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_counts_name_each_probe_with_its_misses_in_order() {
        let by: std::collections::BTreeMap<String, u64> = [
            ("kretprobe:range_lock".to_string(), 3),
            ("program rl_unlock".to_string(), 1),
        ]
        .into();
        assert_eq!(
            probe_counts(&by),
            "kretprobe:range_lock 3, program rl_unlock 1"
        );
        assert_eq!(probe_counts(&Default::default()), "");
    }

    #[test]
    fn durations_scale_like_perf() {
        assert_eq!(fmt_ns(812), "812 ns");
        assert_eq!(fmt_ns(3_400), "3.40 us");
        assert_eq!(fmt_ns(12_500_000), "12.50 ms");
        assert_eq!(fmt_ns(1_250_000_000), "1.25 s");
    }
}
