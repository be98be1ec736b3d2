//! Rendering a [`Verdict`]: the JSON contract of `rltop check --format json`
//! and the human text form, with lockdep-shaped reports (`docs/design.md`, principle 5) for
//! ordering problems.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::{Finding, Kind, Severity, Verdict};

#[derive(Serialize)]
struct Json<'a> {
    verdict: &'static str,
    events: u64,
    lost: u64,
    findings: &'a [Finding],
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid_ranges: Option<u64>,
}

/// The JSON document (one line, no trailing newline).
pub fn json(v: &Verdict) -> String {
    let doc = Json {
        verdict: if v.failed() { "fail" } else { "pass" },
        events: v.events,
        lost: v.lost,
        findings: &v.findings,
        suppressed: (v.suppressed > 0).then_some(v.suppressed),
        invalid_ranges: (v.invalid_ranges > 0).then_some(v.invalid_ranges),
    };
    // Serializing plain data to a String cannot fail.
    serde_json::to_string(&doc).unwrap_or_default()
}

fn secs(ts: u64) -> String {
    format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000)
}

/// The text report; times are relative to the first event, as in
/// `rltop dump --format text`. `evidence` maps event indices to their text lines (as
/// `rltop dump --format text` prints them); missing ones print the index only.
pub fn text(v: &Verdict, evidence: &HashMap<u64, String>) -> String {
    let mut out = String::new();
    for f in &v.findings {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let cert = if f.certain {
            ""
        } else {
            " (uncertain: lost events, event order or an unseen start could explain it)"
        };
        let _ = writeln!(
            out,
            "{sev}: {} at {}{cert}: {}",
            f.kind.as_str(),
            secs(f.ts.saturating_sub(v.first_ts)),
            f.message
        );
        match f.kind {
            k if k == Kind::ORDERING_INVERSION => lockdep_inversion(&mut out, f),
            k if k == Kind::DEADLOCK => lockdep_cycle(&mut out, f),
            _ => {}
        }
        let _ = writeln!(out, "  evidence:");
        for i in &f.evidence {
            match evidence.get(i) {
                Some(line) => {
                    let _ = writeln!(out, "    #{i:<8} {}", line.trim_end());
                }
                None => {
                    let _ = writeln!(out, "    #{i}");
                }
            }
        }
        out.push('\n');
    }
    if v.suppressed > 0 {
        let _ = writeln!(out, "... and {} more findings not shown", v.suppressed);
    }
    if v.invalid_ranges > 0 {
        let _ = writeln!(
            out,
            "warning: {} range-lock requests set aside: their ranges are no ranges of a file \
             (start after last, or past the largest page index); the profile reads the lock \
             struct at the wrong offsets or in the wrong unit (see `rltop probes`)",
            v.invalid_ranges
        );
    }
    let verdict = if v.failed() { "FAIL" } else { "PASS" };
    let certain = v.findings.iter().filter(|f| f.certain).count();
    let _ = writeln!(
        out,
        "{verdict}: {} events, {} lost, {} findings ({} certain)",
        v.events,
        v.lost,
        v.findings.len(),
        certain
    );
    out
}

const RULE: &str = "======================================================";
const DASH: &str = "------------------------------------------------------";

fn lockdep_inversion(out: &mut String, f: &Finding) {
    let Some(l) = f.links.first() else { return };
    let held = short(&l.holds);
    let _ = write!(
        out,
        "\n{RULE}\nWARNING: possible circular locking dependency detected\n{DASH}\n\
         {task} is trying to acquire lock:\n  {wants}\n\n\
         but task is already holding lock:\n  {holds}\n\n\
         which lock already depends on the new lock.\n\
         the rule: {rule}.\n\n\
         other info that might help us debug this:\n\n\
         \x20Possible unsafe locking scenario:\n\n",
        task = l.task,
        wants = l.wants,
        holds = l.holds,
        rule = f.rule.unwrap_or(
            "mmap_lock ranks above the range lock (page faults take\n\
             mmap_lock, then the range lock of the faulting page)"
        ),
    );
    let wanted = short(&l.wants);
    scenario(
        out,
        2,
        &[
            (0, held.clone()),
            (1, wanted.clone()),
            (1, held),
            (0, wanted),
        ],
    );
    let _ = write!(out, "\n1 lock held by {}:\n #0: {}\n", l.task, l.holds);
    // lockdep's backtraces: where the held lock was taken, where the new
    // one is asked for (each where the events carry it).
    for (what, stack) in [
        ("the held lock was taken at", &l.holds_at),
        ("the new request is at", &l.wants_at),
    ] {
        if let Some(s) = stack {
            let _ = writeln!(out, "\n{what}:");
            for frame in s.split(';') {
                let _ = writeln!(out, "  {frame}");
            }
        }
    }
    let _ = write!(out, "{RULE}\n\n");
}

/// The CPU0/CPU1/... table: one `lock(X);` per row, in column `col`.
fn scenario(out: &mut String, cpus: usize, rows: &[(usize, String)]) {
    const W: usize = 32;
    let mut line = String::new();
    for i in 0..cpus {
        let _ = write!(line, "{:<W$}", format!("       CPU{i}"));
    }
    let _ = writeln!(out, "{}", line.trim_end());
    line.clear();
    for _ in 0..cpus {
        let _ = write!(line, "{:<W$}", "       ----");
    }
    let _ = writeln!(out, "{}", line.trim_end());
    for (col, what) in rows {
        let _ = writeln!(out, "{:pad$}  lock({what});", "", pad = col * W);
    }
}

/// `range lock 0x.. [s, l] mode on tree ..` -> `range lock [s, l]`.
fn short(desc: &str) -> String {
    if let Some(rest) = desc.strip_prefix("range lock ")
        && let (Some(a), Some(b)) = (rest.find('['), rest.find(']'))
        && a < b
    {
        return format!("range lock {}", &rest[a..=b]);
    }
    for lock in ["mmap_lock", "i_rwsem", "invalidate_lock"] {
        if desc.starts_with(lock) {
            return lock.into();
        }
    }
    if desc.starts_with("a page fault") {
        return "page fault".into();
    }
    desc.into()
}

fn lockdep_cycle(out: &mut String, f: &Finding) {
    let Some(first) = f.links.first() else { return };
    let _ = write!(
        out,
        "\n{RULE}\nWARNING: circular locking deadlock detected (wait-for cycle)\n{DASH}\n\
         {} is trying to acquire lock:\n  {}\n\n\
         but task is already holding lock:\n  {}\n\n\
         the existing dependency chain (in reverse order) is:\n",
        first.task, first.wants, first.holds
    );
    let n = f.links.len();
    for (k, i) in (0..n).rev().enumerate() {
        let l = &f.links[i];
        let _ = writeln!(
            out,
            "\n-> #{k} ({}):\n       holds {}\n       waits for {}",
            l.task, l.holds, l.wants
        );
    }
    let _ = writeln!(out, "\nother info that might help us debug this:\n");
    let _ = writeln!(out, " Possible unsafe locking scenario:\n");
    // Each CPU takes what it holds, then in turn what it waits for.
    let rows: Vec<(usize, String)> = (0..n)
        .map(|c| (c, short(&f.links[c].holds)))
        .chain((0..n).map(|c| (c, short(&f.links[c].wants))))
        .collect();
    scenario(out, n, &rows);
    let _ = writeln!(out, "\n *** DEADLOCK ***\n");
    for l in &f.links {
        let _ = writeln!(out, "1 lock held by {}:\n #0: {}", l.task, l.holds);
    }
    let _ = writeln!(out, "{RULE}\n");
}
