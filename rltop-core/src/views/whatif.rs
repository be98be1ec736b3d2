//! `rltop whatif`: the predictions of [`crate::analysis::whatif`] as a
//! table per file (range locking, then whole-file serialization), or JSON.

use std::fmt::Write as _;

use crate::analysis::whatif::{Figures, WhatIf};
use crate::views::report::fmt_ns;

fn line(s: &mut String, name: &str, w: usize, policy: &str, f: &Figures) {
    let _ = writeln!(
        s,
        "{name:<w$} {policy:<10} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12} {:>11.2} {:>8}",
        f.ops,
        f.waited,
        fmt_ns(f.wait_total_ns),
        fmt_ns(f.wait_max_ns),
        fmt_ns(f.wait_mean_ns()),
        fmt_ns(f.busy_ns),
        f.parallelism,
        f.max_concurrent,
    );
}

/// The text form.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn text(r: &WhatIf) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rltop whatif: {} file operations on {} files replayed under Kara's range locking \
         (range), whole-file serialization (file), a whole-file lock shared by IO, \
         exclusive for punch/truncate (file-rw), and today's mainline locks, i_rwsem and \
         invalidate_lock, as each filesystem takes them (mainline){}",
        r.ops,
        r.files.len(),
        if r.unmatched > 0 {
            format!("; {} unmatched begins/ends not replayed", r.unmatched)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "assumption: a fault, and a task's run of page_adds at consecutive indices (each within {} \
         of the last: one readahead or write), hold their lock {} past their last page, the \
         readahead of the task's own fault until its next event (at most {}: filemap_fault waits \
         for the read under invalidate_lock); the trace does not time them. Other operations hold \
         it as long as they took in the trace",
        fmt_ns(r.readahead_gap_ns),
        fmt_ns(r.page_hold_ns),
        fmt_ns(r.fault_read_max_ns)
    );
    if r.files.is_empty() {
        let _ = writeln!(s, "\nno file operations in this trace");
        return s;
    }
    let names: Vec<String> = r
        .files
        .iter()
        .map(|f| {
            let kinds: Vec<String> = f
                .kinds
                .iter()
                .map(|(k, n)| {
                    format!(
                        "{}={n}",
                        serde_json::to_value(k)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let name = f
                .path
                .clone()
                .unwrap_or_else(|| format!("{}:{}", f.dev, f.ino));
            format!("{name} ({})", kinds.join(" "))
        })
        .collect();
    let w = names
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("all files".len());
    let _ = writeln!(
        s,
        "\n{:<w$} {:<10} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12} {:>11} {:>8}",
        "file",
        "locking",
        "ops",
        "waited",
        "wait-total",
        "wait-max",
        "wait-avg",
        "busy",
        "parallelism",
        "max-conc"
    );
    line(&mut s, "all files", w, "range", &r.range);
    line(&mut s, "", w, "file", &r.whole_file);
    line(&mut s, "", w, "file-rw", &r.file_shared);
    line(&mut s, "", w, "mainline", &r.mainline);
    for (f, name) in r.files.iter().zip(&names) {
        line(&mut s, name, w, "range", &f.range);
        line(&mut s, "", w, "file", &f.whole_file);
        line(&mut s, "", w, "file-rw", &f.file_shared);
        line(&mut s, "", w, "mainline", &f.mainline);
    }
    // Who waits, all files together.
    let policies = [&r.range, &r.whole_file, &r.file_shared, &r.mainline];
    let kinds: std::collections::BTreeSet<_> = policies
        .iter()
        .flat_map(|f| f.waits_by_kind.keys().copied())
        .collect();
    if !kinds.is_empty() {
        let _ = writeln!(
            s,
            "\nwho waits (all files): waited / wait-total per kind of operation\n\n{:<10} {:>22} {:>22} {:>22} {:>22}",
            "op", "range", "file", "file-rw", "mainline"
        );
        for k in kinds {
            let _ = write!(s, "{:<10}", k.as_str());
            for f in policies {
                let w = f.waits_by_kind.get(&k).copied().unwrap_or_default();
                let _ = write!(
                    s,
                    " {:>22}",
                    format!("{} / {}", w.waited, fmt_ns(w.wait_total_ns))
                );
            }
            s.push('\n');
        }
    }
    let a = r.range.wait_total_ns;
    for (what, b) in [
        ("whole-file serialization", r.whole_file.wait_total_ns),
        ("a shared whole-file lock", r.file_shared.wait_total_ns),
        ("today's mainline locks", r.mainline.wait_total_ns),
    ] {
        let _ = writeln!(
            s,
            "{}range locking {} total predicted wait by {} against {what} ({} -> {})",
            if what.starts_with("whole") { "\n" } else { "" },
            if a <= b { "reduces" } else { "increases" },
            fmt_ns(a.abs_diff(b)),
            fmt_ns(b),
            fmt_ns(a)
        );
    }
    mainline_vs_measured(&mut s, r);
    s
}

/// Mainline's predicted waits per lock class beside the waits the trace
/// measured on the same locks: how far the model of today's locking is
/// from what the kernel did.
fn mainline_vs_measured(s: &mut String, r: &WhatIf) {
    let classes: std::collections::BTreeSet<&str> = r
        .mainline
        .waits_by_lock
        .keys()
        .copied()
        .chain(r.measured.keys().copied())
        .collect();
    if classes.is_empty() {
        return;
    }
    if r.contention_traced == Some(false) {
        let _ = writeln!(
            s,
            "\nmainline predicts {} waits ({}); none measured: the trace has no \
             lock:contention_* probe (record on a kernel with the lock tracepoints to compare)",
            r.mainline.waited,
            fmt_ns(r.mainline.wait_total_ns)
        );
        return;
    }
    let _ = writeln!(
        s,
        "\nmainline predicted vs measured (lock:contention_* on the learned lock addresses), \
         waited / wait-total\n\n{:<16} {:>22} {:>22} {:>22}",
        "lock", "predicted", "measured, replayed", "measured, all"
    );
    for c in classes {
        let p = r.mainline.waits_by_lock.get(c).copied().unwrap_or_default();
        let m = r.measured.get(c).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "{c:<16} {:>22} {:>22} {:>22}",
            format!("{} / {}", p.waited, fmt_ns(p.wait_total_ns)),
            format!("{} / {}", m.replayed_ops, fmt_ns(m.replayed_wait_total_ns)),
            format!("{} / {}", m.waited, fmt_ns(m.wait_total_ns)),
        );
    }
    let a = r.mainline.vs_measured;
    if a.both + a.predicted_only + a.measured_only > 0 {
        let _ = writeln!(
            s,
            "per operation: {} waited in both (predicted {} against measured {}), {} predicted \
             only, {} measured only",
            a.both,
            fmt_ns(a.both_predicted_ns),
            fmt_ns(a.both_measured_ns),
            a.predicted_only,
            a.measured_only
        );
    }
    let _ = writeln!(
        s,
        "(waited: operations that waited, in predicted and replayed, and contentions in all; \
         replayed: the waits right before a replayed operation of the same task and file, the \
         rest are a buffered write's, a setattr's or an unmatched operation's. The replay does \
         not see a woken waiter that is not run at once, nor a writer that takes the lock again \
         before a woken reader runs)"
    );
}

/// The JSON form (one object, newline-terminated).
pub fn json(r: &WhatIf) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::whatif::{Config, FileOp, KindWaits, OpKind, whatif};
    use crate::events::Dev;

    /// A punch and a page fill behind it: mainline predicts one wait.
    fn predicted_only() -> WhatIf {
        let dev = Dev { major: 8, minor: 1 };
        let ops = [
            FileOp::new(0, 1, dev, 1, OpKind::Punch, 0, 3, 100),
            FileOp::new(10, 2, dev, 1, OpKind::PageAdd, 0, 0, 1),
        ];
        whatif(
            &ops,
            0,
            &std::collections::BTreeMap::<(Dev, u64), [KindWaits; 2]>::new(),
            Config::default(),
        )
    }

    /// Without the contention probes, "measured 0" would read as "the
    /// kernel never waited": the text says it was not recorded instead.
    #[test]
    fn measured_waits_not_recorded_are_not_shown_as_none() {
        let mut w = predicted_only();
        w.contention_traced = Some(false);
        let t = text(&w);
        assert!(
            t.contains("none measured: the trace has no lock:contention_* probe"),
            "{t}"
        );
        assert!(!t.contains("measured, replayed"), "{t}");
        w.contention_traced = Some(true);
        let t = text(&w);
        assert!(t.contains("measured, replayed"), "{t}");
        assert!(!t.contains("none measured"), "{t}");
    }
}
