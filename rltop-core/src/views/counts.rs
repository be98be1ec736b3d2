//! `dump --format count`: what a trace holds, counts first (the first
//! thing one checks of a recording, as with `perf report --stats`). The
//! first word stays the number of events, which scripts read.

use std::fmt::Write as _;

use crate::analysis::counts::Tally;

/// The tally as text: the total, the losses by cause, the events per kind
/// (most first), and per test when the trace has xfstests markers.
pub fn render(t: &Tally) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} events", t.events);
    let lost: u64 = t.lost.values().sum();
    if lost == 0 {
        let _ = writeln!(out, "lost: none");
    } else {
        let causes: Vec<String> = t.lost.iter().map(|(c, n)| format!("{n} {c}")).collect();
        let _ = writeln!(out, "lost: {lost} ({})", causes.join(", "));
    }
    let kinds = t.by_kind();
    if kinds.is_empty() {
        return out;
    }
    let width = kinds.iter().map(|(k, _)| k.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:>12}  {:>6}",
        "kind", "events", "share"
    );
    for (k, n) in &kinds {
        let share = 100.0 * *n as f64 / t.events.max(1) as f64;
        let _ = writeln!(out, "{k:<width$}  {n:>12}  {share:>5.1}%");
    }
    if t.has_tests() {
        let width = t
            .tests
            .iter()
            .map(|s| s.test.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "\n{} tests",
            t.tests
                .iter()
                .filter(|s| s.test != crate::analysis::xfstests::BEFORE)
                .count()
        );
        let _ = writeln!(out, "{:<width$}  {:>12}  {:>8}", "test", "events", "lost");
        for s in &t.tests {
            let _ = writeln!(out, "{:<width$}  {:>12}  {:>8}", s.test, s.events, s.lost);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Body;
    use crate::testing::ev;

    #[test]
    fn counts_read_first_then_kinds_then_tests() {
        let mut t = Tally::default();
        assert_eq!(render(&t), "0 events\nlost: none\n");
        for (i, body) in [
            Body::Exit,
            Body::Marker {
                text: "run fstests generic/001 at 2026-12-07".into(),
            },
            Body::Exit,
            Body::Lost {
                count: 3,
                cpu: 1,
                since: None,
                probe: None,
            },
            Body::Marker {
                text: "run fstests xfs/002 at 2026-12-07".into(),
            },
            Body::Lost {
                count: 1,
                cpu: u32::MAX,
                since: None,
                probe: Some("kretprobe:range_lock".into()),
            },
        ]
        .into_iter()
        .enumerate()
        {
            t.add(&ev(i as u64, 1, body));
        }
        insta::assert_snapshot!(render(&t));
    }
}
