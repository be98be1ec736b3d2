//! The TUI's end of the event pipeline: the checker (model + findings) and
//! the statistics, fed one event at a time, and the snapshots built from
//! them.
//!
//! It also keeps what the snapshot needs and the analyses do not: the most
//! recent events (a finding's evidence is shown as text, and a live source
//! cannot be read twice), and the counts at the start of the rate window.
//! Runs on the pipeline thread; never draws.

use std::collections::VecDeque;
use std::sync::Arc;

use super::snapshot::{self, Extra, FileKey, FindingRow, Snapshot, Status};
use crate::analysis::scope::ScopeFilter;
use crate::analysis::stats::Stats;
use crate::analysis::{Checker, Config, Engine, Finding};
use crate::events::text::TextWriter;
use crate::events::{Body, Event};
use crate::model::{FastMap, Model};

/// Events kept for evidence text. Older evidence shows its index only.
pub const KEEP_EVENTS: usize = 1 << 16;
/// Length of the window rates are computed over, in trace time.
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// See the module docs.
pub struct Pipeline {
    engine: Engine<(Checker, Stats)>,
    /// The last [`KEEP_EVENTS`] events; `recent[0]` has index `recent_base`.
    recent: VecDeque<Event>,
    recent_base: u64,
    /// Evidence text already made, by event index.
    evidence: FastMap<u64, Option<String>>,
    findings: Arc<Vec<FindingRow>>,
    findings_sig: (usize, u64, usize),
    /// Rate window: start time, events and contentions then.
    win_ts: u64,
    win_events: u64,
    win_cont: FastMap<FileKey, u64>,
    /// The rate of the last full window (shown while the next fills).
    last_rate: f64,
    next_idx: u64,
    paths: Arc<FastMap<(crate::events::Dev, u64), String>>,
}

impl Pipeline {
    pub fn new(model: Model, cfg: Config) -> Pipeline {
        Pipeline {
            engine: Engine::new(model, (Checker::new(cfg), Stats::new(false))),
            recent: VecDeque::with_capacity(1024),
            recent_base: 0,
            evidence: FastMap::default(),
            findings: Arc::default(),
            findings_sig: (0, 0, 0),
            win_ts: 0,
            win_events: 0,
            win_cont: FastMap::default(),
            last_rate: 0.0,
            next_idx: 0,
            paths: Arc::default(),
        }
    }

    /// Shows the tasks of `scope` only (unless `all_tasks`): before the
    /// first event.
    pub fn with_scope(mut self, scope: ScopeFilter, all_tasks: bool) -> Pipeline {
        self.engine.analysis_mut().1 = Stats::new(false).with_scope(scope, all_tasks);
        self
    }

    /// Index the next event will get (= events seen so far).
    pub fn events(&self) -> u64 {
        self.next_idx
    }

    pub fn model(&self) -> &Model {
        self.engine.model()
    }

    pub fn findings(&self) -> &[Finding] {
        self.engine.analysis().0.findings()
    }

    /// Paths of inodes, for the file names (live: the binary's `probe::paths`).
    pub fn set_paths(&mut self, paths: Arc<FastMap<(crate::events::Dev, u64), String>>) {
        self.paths = paths;
    }

    /// Runs one event through the analyses.
    pub fn event(&mut self, ev: Event) {
        let idx = self.next_idx;
        self.next_idx += 1;
        self.engine.event(idx, &ev);
        if self.recent.len() == KEEP_EVENTS {
            self.recent.pop_front();
            self.recent_base += 1;
        }
        self.recent.push_back(ev);
    }

    /// Events were lost or a part of the trace was damaged here.
    pub fn gap(&mut self) {
        self.engine.gap(self.next_idx);
    }

    /// The end of the stream: stalls still pending and leaked locks become
    /// findings. Returns the last snapshot, with the verdict's findings
    /// (the checker is consumed by its verdict, so this ends the pipeline).
    pub fn finish(mut self, status: Status) -> Snapshot {
        let mut snap = self.snapshot(status);
        let names = Names::of(self.engine.model());
        let engine = std::mem::replace(
            &mut self.engine,
            Engine::new(
                Model::new(None),
                (Checker::new(Config::default()), Stats::new(false)),
            ),
        );
        let (model, (checker, _)) = engine.into_parts();
        let verdict = checker.finish(&model);
        self.findings_sig = (usize::MAX, 0, 0);
        snap.findings = self.finding_rows(&verdict.findings, &names);
        snap
    }

    fn event_text(&self, names: &Names, idx: u64) -> Option<String> {
        let i = idx.checked_sub(self.recent_base)? as usize;
        let ev = self.recent.get(i)?;
        // The writer names tasks from `task` events and measures time from
        // the first event it sees: give it both, from the model.
        let mut tw = TextWriter::new();
        let mut origin = ev.clone();
        origin.ts = names.first_ts;
        origin.body = match names.comms.get(&ev.tid) {
            Some(c) => Body::Task {
                comm: c.clone(),
                kthread: false,
            },
            None => Body::Marker {
                text: String::new(),
            },
        };
        let _ = tw.write_event(&mut std::io::sink(), &origin);
        let mut buf = Vec::new();
        tw.write_event(&mut buf, ev).ok()?;
        Some(String::from_utf8_lossy(&buf).trim_end().to_string())
    }

    /// The findings as rows, newest first; rebuilt only when they changed.
    fn finding_rows(&mut self, findings: &[Finding], names: &Names) -> Arc<Vec<FindingRow>> {
        self.findings_sig = signature(findings);
        // Bounded: withdrawn findings leave their evidence behind.
        if self.evidence.len() > 4 * KEEP_EVENTS {
            self.evidence.clear();
        }
        let mut rows = Vec::with_capacity(findings.len());
        for f in findings.iter().rev() {
            let mut evidence = Vec::with_capacity(f.evidence.len());
            for &i in &f.evidence {
                let text = match self.evidence.get(&i) {
                    Some(t) => t.clone(),
                    None => {
                        let t = self.event_text(names, i);
                        self.evidence.insert(i, t.clone());
                        t
                    }
                };
                evidence.push((i, text));
            }
            rows.push(FindingRow {
                finding: f.clone(),
                evidence,
            });
        }
        // Newest first by time (stall and leak findings come late).
        rows.sort_by_key(|r| std::cmp::Reverse(r.finding.ts));
        self.findings = Arc::new(rows);
        self.findings.clone()
    }

    fn current_findings(&mut self) -> Arc<Vec<FindingRow>> {
        let f = self.engine.analysis().0.findings();
        let sig = signature(f);
        if sig == self.findings_sig {
            return self.findings.clone();
        }
        let (f, names) = (f.to_vec(), Names::of(self.engine.model()));
        self.finding_rows(&f, &names)
    }

    /// A snapshot of the current state.
    pub fn snapshot(&mut self, status: Status) -> Snapshot {
        self.snapshot_at(status, None)
    }

    /// A snapshot at time `now` (CLOCK_MONOTONIC ns) when that is later than
    /// the last event: live, rates fall and ages grow while nothing happens.
    pub fn snapshot_at(&mut self, mut status: Status, clock: Option<u64>) -> Snapshot {
        let now = self.engine.model().now.max(clock.unwrap_or(0));
        let first = self.engine.model().first_ts.unwrap_or(now);
        if self.win_ts == 0 {
            self.win_ts = first;
        }
        let window = now.saturating_sub(self.win_ts);
        let events = self.next_idx;
        let rate = if window > 0 {
            (events - self.win_events) as f64 * 1e9 / window as f64
        } else {
            self.last_rate
        };
        status.rate = rate;
        let findings = self.current_findings();
        let extra = Extra {
            status,
            cont_base: self.win_cont.clone(),
            window_ns: window,
            findings,
            now: clock,
            paths: self.paths.clone(),
        };
        let (model, (_, stats)) = (self.engine.model(), self.engine.analysis());
        let snap = snapshot::build(model, stats, extra);
        if window >= RATE_WINDOW_NS {
            self.last_rate = rate;
            self.win_ts = now;
            self.win_events = events;
            self.win_cont = snapshot::contentions(stats);
        }
        snap
    }
}

/// Changes when findings are added, withdrawn, repeated or made certain.
fn signature(f: &[Finding]) -> (usize, u64, usize) {
    (
        f.len(),
        f.iter().map(|f| f.repeats).sum::<u64>(),
        f.iter().filter(|f| f.certain).count(),
    )
}

/// Task names and the time origin, for evidence text.
struct Names {
    first_ts: u64,
    comms: FastMap<u32, String>,
}

impl Names {
    fn of(m: &Model) -> Names {
        Names {
            first_ts: m.first_ts.unwrap_or(0),
            comms: m
                .tasks
                .iter()
                .filter_map(|(&t, k)| Some((t, k.comm.clone()?)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::scope::ScopeFinder;
    use crate::events::{Dev, Mode};

    fn ev(ts: u64, tid: u32, body: Body) -> Event {
        Event {
            ts,
            tid,
            pid: tid,
            cpu: Some(0),
            body,
        }
    }

    /// The command (200) holds a range of tree 1; a neighbour (300) holds
    /// one of tree 2 and waits on tree 2.
    fn events() -> Vec<Event> {
        let tree = |tree, ino| Body::Tree {
            tree,
            dev: Dev { major: 7, minor: 0 },
            ino,
        };
        let req = |tree, lock, start| Body::RlRequest {
            tree,
            lock,
            start,
            last: start + 3,
            mode: Mode::Excl,
        };
        vec![
            ev(0, 0, tree(1, 10)),
            ev(0, 0, tree(2, 20)),
            ev(
                1,
                100,
                Body::Fork {
                    child: 200,
                    child_pid: 200,
                },
            ),
            ev(2, 200, req(1, 0xa, 0)),
            ev(3, 200, Body::RlAcquired { tree: 1, lock: 0xa }),
            ev(4, 300, req(2, 0xb, 0)),
            ev(5, 300, Body::RlAcquired { tree: 2, lock: 0xb }),
            ev(6, 301, req(2, 0xc, 1)),
        ]
    }

    fn snapshot(all_tasks: bool) -> Snapshot {
        let evs = events();
        let mut e = Engine::new(Model::new(None), ScopeFinder::new());
        for (i, x) in evs.iter().enumerate() {
            e.event(i as u64, x);
        }
        let scope = e.into_parts().1.finish();
        let mut p = Pipeline::new(Model::new(None), Config::default())
            .with_scope(ScopeFilter::new(scope), all_tasks);
        for x in evs {
            p.event(x);
        }
        p.snapshot(Status::default())
    }

    #[test]
    fn a_commands_recording_shows_its_ranges_and_waits_only() {
        let s = snapshot(false);
        let keys: Vec<FileKey> = s.files.iter().map(|f| f.key).collect();
        assert_eq!(keys, [FileKey::Tree(1)]);
        assert_eq!(s.files[0].ranges.len(), 1);
        assert!(s.waits.is_empty(), "{:?}", s.waits);

        let s = snapshot(true);
        let keys: Vec<FileKey> = s.files.iter().map(|f| f.key).collect();
        assert_eq!(keys, [FileKey::Tree(1), FileKey::Tree(2)]);
        assert!(s.waits.iter().any(|w| w.tid == 301));
    }
}
