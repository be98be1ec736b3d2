//! Events counted per kind (`rltop_events_total{kind}`), and the tally of
//! `dump --format count`.

use std::collections::BTreeMap;

use super::engine::Analysis;
use crate::events::{Body, Event, Tag};
use crate::model::Model;

/// Events seen, per JSONL kind.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub by_kind: BTreeMap<&'static str, u64>,
}

impl Analysis for Counts {
    fn before(&mut self, _m: &Model, _idx: u64, ev: &Event) {
        *self.by_kind.entry(ev.body.kind()).or_default() += 1;
    }
}

/// What `dump --format count` prints (as `perf report --stats` does): the
/// events per kind, per test when the trace has xfstests markers, and the
/// losses by cause. Pure over events; counting is an array add per event.
#[derive(Clone, Debug)]
pub struct Tally {
    pub events: u64,
    /// Per [`Tag`] index: how many, and the JSONL kind's name.
    kinds: [(u64, &'static str); Tag::COUNT],
    /// Tests in trace order (the part before the first marker first, when
    /// it has events).
    pub tests: Vec<TestTally>,
    /// Events lost, by cause.
    pub lost: BTreeMap<String, u64>,
}

/// One test's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestTally {
    pub test: String,
    pub events: u64,
    /// Events reported lost within it.
    pub lost: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            events: 0,
            kinds: [(0, ""); Tag::COUNT],
            tests: Vec::new(),
            lost: BTreeMap::new(),
        }
    }
}

/// The cause of a `lost` event, as `dump --format count` names it.
fn cause(probe: Option<&str>) -> String {
    match probe {
        // kprobe nmissed, or a program's recursion misses.
        Some(p) => format!("missed by {p}"),
        None => "ring buffer full".into(),
    }
}

impl Tally {
    pub fn add(&mut self, ev: &Event) {
        self.events += 1;
        let k = &mut self.kinds[ev.body.tag() as usize];
        k.0 += 1;
        k.1 = ev.body.kind();
        match &ev.body {
            Body::Marker { text } => {
                if let Some(t) = super::xfstests::test_name(text) {
                    self.tests.push(TestTally {
                        test: t.to_string(),
                        events: 0,
                        lost: 0,
                    });
                }
            }
            Body::Lost { count, probe, .. } => {
                *self.lost.entry(cause(probe.as_deref())).or_default() += count;
            }
            _ => {}
        }
        if self.tests.is_empty() {
            self.tests.push(TestTally {
                test: super::xfstests::BEFORE.into(),
                events: 0,
                lost: 0,
            });
        }
        let t = self.tests.last_mut().expect("pushed above");
        t.events += 1;
        if let Body::Lost { count, .. } = ev.body {
            t.lost += count;
        }
    }

    /// The kinds seen, most events first (ties by name).
    pub fn by_kind(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(&'static str, u64)> = self
            .kinds
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|&(n, name)| (name, n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// Whether the trace has xfstests markers (then `tests` is worth showing).
    pub fn has_tests(&self) -> bool {
        self.tests.iter().any(|t| t.test != super::xfstests::BEFORE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ev;

    #[test]
    fn counts_kinds_tests_and_losses_by_cause() {
        let marker = |ts, t: &str| {
            ev(
                ts,
                0,
                Body::Marker {
                    text: format!("run fstests {t} at 2026-12-07 10:00:00"),
                },
            )
        };
        let lost = |ts, count, probe: Option<&str>| {
            ev(
                ts,
                0,
                Body::Lost {
                    count,
                    cpu: 0,
                    since: None,
                    probe: probe.map(str::to_owned),
                },
            )
        };
        let exit = |ts| ev(ts, 1, Body::Exit);
        let mut t = Tally::default();
        for e in [
            exit(1),
            marker(2, "generic/001"),
            exit(3),
            exit(4),
            lost(5, 7, None),
            marker(6, "generic/002"),
            lost(7, 2, Some("kretprobe:range_lock")),
            lost(8, 1, None),
        ] {
            t.add(&e);
        }
        assert_eq!(t.events, 8);
        assert_eq!(t.by_kind(), [("exit", 3), ("lost", 3), ("marker", 2)]);
        let tests: Vec<(&str, u64, u64)> = t
            .tests
            .iter()
            .map(|s| (s.test.as_str(), s.events, s.lost))
            .collect();
        assert_eq!(
            tests,
            [
                (crate::analysis::xfstests::BEFORE, 1, 0),
                ("generic/001", 4, 7),
                ("generic/002", 3, 3)
            ]
        );
        assert!(t.has_tests());
        assert_eq!(
            t.lost.into_iter().collect::<Vec<_>>(),
            [
                ("missed by kretprobe:range_lock".to_string(), 2),
                ("ring buffer full".to_string(), 8)
            ]
        );
    }
}
