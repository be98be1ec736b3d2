//! xfstests: the `run fstests <seq> at <date>` markers that `check` writes
//! to `/dev/kmsg` before each test split a stream into tests (`docs/kernel.md`,
//! "xfstests markers"). There is no end marker: a test runs until the next marker or
//! the end of the trace. Events before the first marker form a segment of
//! their own, [`BEFORE`].
//!
//! The split never resets the analyses: locks held across a marker stay
//! held, and the model and statistics continue. Only what happens is
//! attributed to a test:
//!
//! - a finding belongs to the test in which its *last* evidence event
//!   happened (the event that completed the proof: the second grant of a
//!   conflicting_grant, the page_add inside a locked range, the request that
//!   closed a wait-for cycle, the mmap_lock request of an inversion, the
//!   acquisition of a leaked lock);
//! - a wait or hold is counted in the test in which it ended (see
//!   [`crate::analysis::stats::Stats::take_rows`]).
//!
//! Pure: no I/O, no clocks.

use serde::Serialize;

use super::engine::Analysis;
use super::stats::Stats;
use super::{Finding, Verdict};
use crate::events::{Body, Event};
use crate::model::Model;

/// The name of the segment before the first test marker.
pub const BEFORE: &str = "(before first test)";

/// The test a console line starts, if it is an xfstests marker:
/// `run fstests generic/001 at 2024-05-01 10:00:00` -> `generic/001`.
/// (anywhere in the text: a console line may carry a prefix). One parser
/// for `check`, `report`, `hist --by test` and timelines.
pub fn test_name(text: &str) -> Option<&str> {
    const RUN: &str = "run fstests ";
    let rest = &text[text.find(RUN)? + RUN.len()..];
    rest.split_whitespace().next()
}

/// One test (or the part before the first one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Segment {
    pub test: String,
    /// Index of its first event (the marker itself for a test).
    pub first_idx: u64,
    /// Time of its first event, and of the next test's marker (or of the
    /// last event of the trace).
    pub start_ts: u64,
    pub end_ts: u64,
    pub events: u64,
    /// Events reported lost (`lost` events) within it.
    pub lost: u64,
    /// Damaged parts of the trace within it.
    #[serde(skip_serializing_if = "is_zero")]
    pub gaps: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Segment {
    pub fn duration_ns(&self) -> u64 {
        self.end_ts.saturating_sub(self.start_ts)
    }
}

/// Follows the markers of a stream. Feed every event with its index.
#[derive(Clone, Debug, Default)]
pub struct Splitter {
    segments: Vec<Segment>,
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter::default()
    }

    /// Takes event `idx`; true when it starts a new test.
    pub fn event(&mut self, idx: u64, ev: &Event) -> bool {
        let started = match &ev.body {
            Body::Marker { text } => match test_name(text) {
                Some(name) => {
                    if let Some(last) = self.segments.last_mut() {
                        last.end_ts = last.end_ts.max(ev.ts);
                    }
                    self.segments.push(Segment {
                        test: name.to_string(),
                        first_idx: idx,
                        start_ts: ev.ts,
                        end_ts: ev.ts,
                        events: 0,
                        lost: 0,
                        gaps: 0,
                    });
                    true
                }
                None => false,
            },
            _ => false,
        };
        let seg = self.current(idx, ev.ts);
        seg.events += 1;
        seg.end_ts = seg.end_ts.max(ev.ts);
        if let Body::Lost { count, .. } = ev.body {
            seg.lost = seg.lost.saturating_add(count);
        }
        started
    }

    /// A damaged part of the trace before event `idx`.
    pub fn gap(&mut self, idx: u64) {
        let ts = self.segments.last().map_or(0, |s| s.end_ts);
        self.current(idx, ts).gaps += 1;
    }

    fn current(&mut self, idx: u64, ts: u64) -> &mut Segment {
        if self.segments.is_empty() {
            self.segments.push(Segment {
                test: BEFORE.to_string(),
                first_idx: idx,
                start_ts: ts,
                end_ts: ts,
                events: 0,
                lost: 0,
                gaps: 0,
            });
        }
        self.segments.last_mut().expect("just pushed")
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The segment event `idx` belongs to (0 when there are none yet).
    pub fn segment_of(&self, idx: u64) -> usize {
        self.segments
            .partition_point(|s| s.first_idx <= idx)
            .saturating_sub(1)
    }

    /// Whether the stream had any test marker.
    pub fn has_tests(&self) -> bool {
        self.segments.iter().any(|s| s.test != BEFORE)
    }
}

/// The verdict of one test.
#[derive(Clone, Debug)]
pub struct TestVerdict {
    pub segment: Segment,
    pub verdict: Verdict,
}

/// The segment a finding is attributed to (see the module docs).
pub fn segment_of_finding(s: &Splitter, f: &Finding) -> usize {
    match f.evidence.last() {
        Some(&idx) => s.segment_of(idx),
        None => s
            .segments()
            .partition_point(|g| g.start_ts <= f.ts)
            .saturating_sub(1),
    }
}

/// Splits a whole-trace verdict into one verdict per segment. Findings past
/// the checker's cap were only counted and cannot be attributed: they stay
/// in the whole verdict alone.
pub fn split(v: &Verdict, s: &Splitter) -> Vec<TestVerdict> {
    let mut out: Vec<TestVerdict> = s
        .segments()
        .iter()
        .map(|seg| TestVerdict {
            segment: seg.clone(),
            verdict: Verdict {
                first_ts: v.first_ts,
                events: seg.events,
                lost: seg.lost,
                ..Verdict::default()
            },
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    for f in &v.findings {
        let i = segment_of_finding(s, f).min(out.len() - 1);
        out[i].verdict.findings.push(f.clone());
    }
    out
}

impl Analysis for Splitter {
    fn before(&mut self, _m: &Model, idx: u64, ev: &Event) {
        self.event(idx, ev);
    }
    fn gap(&mut self, _m: &Model, idx: u64) {
        Splitter::gap(self, idx);
    }
}

/// Statistics per test: the [`Stats`] of each finished test are taken
/// out when the next test starts (waits and holds count in the test where
/// they end), beside the splitter that finds the tests.
#[derive(Debug)]
pub struct TestStats {
    pub splitter: Splitter,
    pub stats: Stats,
    /// The statistics of each finished test, in order.
    pub parts: Vec<Stats>,
}

impl TestStats {
    pub fn new(stats: Stats) -> TestStats {
        TestStats {
            splitter: Splitter::new(),
            stats,
            parts: Vec::new(),
        }
    }

    /// Ends the stream: the last test's statistics join the parts.
    pub fn finish(mut self) -> (Splitter, Vec<Stats>) {
        self.parts.push(self.stats.take_rows());
        (self.splitter, self.parts)
    }
}

impl Analysis for TestStats {
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        if self.splitter.event(idx, ev) && self.splitter.segments().len() > 1 {
            self.parts.push(self.stats.take_rows());
        }
        self.stats.before(m, idx, ev);
    }
    fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
        self.stats.after(m, idx, ev);
    }
    fn gap(&mut self, m: &Model, idx: u64) {
        self.stats.gap(m, idx);
        Splitter::gap(&mut self.splitter, idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ev;

    fn marker(ts: u64, text: &str) -> Event {
        ev(
            ts,
            1,
            Body::Marker {
                text: text.to_string(),
            },
        )
    }

    #[test]
    fn names_come_from_fstests_markers_only() {
        assert_eq!(
            test_name("run fstests generic/001 at 2024-05-01 10:00:00"),
            Some("generic/001")
        );
        assert_eq!(
            test_name("<5>run fstests xfs/042 at 2024-05-01"),
            Some("xfs/042")
        );
        assert_eq!(test_name("run fstests "), None);
        assert_eq!(test_name("EXT4-fs (loop0): mounted filesystem"), None);
    }

    proptest::proptest! {
        /// Every event is in exactly one segment, and every finding goes to
        /// the segment holding its last evidence event.
        #[test]
        fn events_and_findings_land_in_exactly_one_test(
            is_marker in proptest::collection::vec(proptest::bool::weighted(0.2), 1..60),
            evidence in proptest::collection::vec(proptest::collection::vec(0u64..60, 1..4), 0..10),
        ) {
            let n = is_marker.len() as u64;
            let mut s = Splitter::new();
            for (i, &m) in is_marker.iter().enumerate() {
                let e = if m {
                    marker(i as u64, &format!("run fstests generic/{i:03} at now"))
                } else {
                    ev(i as u64, 1, Body::Exit)
                };
                s.event(i as u64, &e);
            }
            let total: u64 = s.segments().iter().map(|g| g.events).sum();
            proptest::prop_assert_eq!(total, n);
            let mut v = Verdict::default();
            for mut e in evidence {
                e.retain(|&i| i < n);
                e.sort_unstable();
                if e.is_empty() {
                    continue;
                }
                v.findings.push(Finding {
                    kind: crate::analysis::Kind::STALL,
                    severity: crate::analysis::Severity::Error,
                    certain: true,
                    ts: 0,
                    tids: vec![],
                    tree: None,
                    range: None,
                    message: String::new(),
                    evidence: e,
                    links: vec![],
                    rule: None,
                    repeats: 0,
                    broken_after_ns: None,
                });
            }
            let tests = split(&v, &s);
            let placed: usize = tests.iter().map(|t| t.verdict.findings.len()).sum();
            proptest::prop_assert_eq!(placed, v.findings.len());
            for (k, t) in tests.iter().enumerate() {
                let end = tests.get(k + 1).map_or(n, |u| u.segment.first_idx);
                for f in &t.verdict.findings {
                    let last = *f.evidence.last().unwrap();
                    proptest::prop_assert!(t.segment.first_idx <= last && last < end);
                }
            }
        }
    }

    #[test]
    fn segments_run_from_marker_to_marker() {
        let mut s = Splitter::new();
        let evs = [
            ev(10, 1, Body::Exit),
            marker(20, "run fstests generic/001 at x"),
            ev(25, 1, Body::Exit),
            marker(30, "EXT4-fs: not a test"),
            marker(40, "run fstests generic/002 at x"),
            ev(
                45,
                1,
                Body::Lost {
                    count: 3,
                    cpu: 0,
                    since: None,
                    probe: None,
                },
            ),
            ev(50, 1, Body::Exit),
        ];
        let starts: Vec<bool> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| s.event(i as u64, e))
            .collect();
        assert_eq!(starts, [false, true, false, false, true, false, false]);
        let segs = s.segments();
        let got: Vec<_> = segs
            .iter()
            .map(|g| {
                (
                    g.test.as_str(),
                    g.first_idx,
                    g.start_ts,
                    g.end_ts,
                    g.events,
                    g.lost,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (BEFORE, 0, 10, 20, 1, 0),
                ("generic/001", 1, 20, 40, 3, 0),
                ("generic/002", 4, 40, 50, 3, 3),
            ]
        );
        assert_eq!(
            (0..7).map(|i| s.segment_of(i)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 2, 2, 2]
        );
    }
}
