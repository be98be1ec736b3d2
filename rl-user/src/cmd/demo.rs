//! `rltop demo`: a simulated workload shown live in the TUI, for people
//! without root or a kernel with range locks.
//!
//! The simulator ([`crate::sim`]) runs real threads on the reference range
//! lock in batches, on the pipeline thread as the player needs events; the
//! first batch carries the bug of `--scenario` (a deadlock by default, so
//! the wait chains, the findings and the lockdep report have something to
//! show), then every `DEFECT_EVERY`th batch the next bug of `DEFECTS`,
//! each on a file and tasks of its own; the other batches are correct
//! `mixed` workloads (`--scenario mixed`: all of them). Each batch is
//! shifted in time to follow the previous one. The simulator's threads run at full
//! speed, so the playback is slowed down (`--speed`), and pauses longer
//! than `MAX_IDLE` of wall time are shortened to it.

use std::process::ExitCode;

use crate::analysis::Config;
use crate::cli::DemoArgs;
use crate::events::Event;
use crate::model::Flavour;
use crate::player::{PlayerConfig, Source, play, require_tty};
use crate::sim;
use crate::trace::Item;
use crate::views::tui::snapshot::Status;

/// The bugs injected in turn.
const DEFECTS: &[&str] = &[
    "inversion",
    "overlap",
    "unlocked-page",
    "unlock-unheld",
    "unfair",
    "lost-wakeup",
    "deadlock",
];
/// A bug every this many batches.
const DEFECT_EVERY: u64 = 6;
/// The simulator's bug tasks are `PID + 500 ..`; its bug file is inode 13.
const BUG_TIDS: std::ops::Range<u32> = sim::PID + 500..sim::PID + 510;
const BUG_INO: u64 = sim::INO + 1;

/// Events per simulated batch.
const BATCH: u64 = 4000;
/// Longest pause in the demo: the simulator's threads sometimes wait for
/// the scheduler for tens of milliseconds, which the slowed-down playback
/// would turn into seconds of nothing; such pauses are shortened.
const MAX_IDLE: std::time::Duration = std::time::Duration::from_millis(150);
/// Time between two batches.
const BATCH_GAP_NS: u64 = 200_000;

struct SimSource {
    cfg: sim::Config,
    /// The user's scenario (`mixed`: no bugs).
    first: String,
    batches: u64,
    injected: u64,
    batch: std::vec::IntoIter<Event>,
    /// Added to the next batch's timestamps.
    shift: Option<i128>,
    last_ts: u64,
}

impl SimSource {
    fn next_batch(&mut self) -> anyhow::Result<()> {
        self.cfg.scenario = if self.batches == 0 {
            self.first.clone()
        } else if self.first != "mixed" && self.batches.is_multiple_of(DEFECT_EVERY) {
            let k = (self.batches / DEFECT_EVERY - 1) as usize;
            DEFECTS[k % DEFECTS.len()].to_string()
        } else {
            "mixed".into()
        };
        self.batches += 1;
        let mut events = sim::simulate(&self.cfg).map_err(|e| crate::user_error(e.to_string()))?;
        if self.cfg.scenario != "mixed" {
            // Each bug on its own file and tasks: a deadlock stays, and the
            // next bug must not meet its locks.
            relabel_bug(&mut events, self.injected);
            self.injected += 1;
        }
        let first = events.first().map_or(0, |e| e.ts);
        // Continue after the previous batch, in whatever time the
        // simulator's clock says now.
        let shift = match self.shift {
            None => 0,
            Some(_) => i128::from(self.last_ts + BATCH_GAP_NS) - i128::from(first),
        };
        self.shift = Some(shift);
        let shifted: Vec<Event> = events
            .into_iter()
            .map(|mut e| {
                e.ts = (i128::from(e.ts) + shift).max(0) as u64;
                e
            })
            .collect();
        self.last_ts = shifted.last().map_or(self.last_ts, |e| e.ts);
        self.batch = shifted.into_iter();
        self.cfg.seed = self.cfg.seed.wrapping_add(1);
        Ok(())
    }
}

/// Moves the `k`th injected bug to a file, tasks and lock ids of its own.
fn relabel_bug(events: &mut [Event], k: u64) {
    use crate::events::Body;
    if k == 0 {
        return;
    }
    let k32 = k as u32;
    for e in events.iter_mut().filter(|e| BUG_TIDS.contains(&e.tid)) {
        e.tid += 10 * k32;
        match &mut e.body {
            Body::Tree { tree, ino, .. } => {
                *tree += k << 12;
                *ino += k;
            }
            Body::RlRequest { tree, lock, .. }
            | Body::RlAcquired { tree, lock }
            | Body::RlRelease { tree, lock }
            | Body::RlCancel { tree, lock }
            | Body::RlTrylockFailed { tree, lock } => {
                *tree += k << 12;
                *lock += k << 32;
            }
            Body::PageAdd { ino, .. } | Body::PunchBegin { ino, .. } if *ino == BUG_INO => {
                *ino += k;
            }
            _ => {}
        }
    }
}

impl Source for SimSource {
    fn next(&mut self) -> Option<anyhow::Result<Item>> {
        loop {
            if let Some(e) = self.batch.next() {
                return Some(Ok(Item::Event(e)));
            }
            if let Err(e) = self.next_batch() {
                return Some(Err(e));
            }
        }
    }

    fn restart(&mut self) -> anyhow::Result<bool> {
        Ok(false)
    }
}

pub fn run(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    let (scenario, seed, threads, speed) = (a.scenario.as_str(), a.seed, a.threads, a.speed);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(crate::user_error(format!(
            "--speed {speed}: must be a positive number"
        )));
    }
    let cfg = sim::Config {
        scenario: scenario.to_string(),
        seed,
        events: BATCH,
        threads,
    };
    // Bad arguments fail here, before the terminal is taken over.
    let mut source = SimSource {
        cfg,
        first: scenario.to_string(),
        batches: 0,
        injected: 0,
        batch: Vec::new().into_iter(),
        shift: None,
        last_ts: 0,
    };
    source.next_batch()?;
    require_tty()?;
    let pc = PlayerConfig {
        status: Status {
            source: if scenario == "mixed" {
                "demo (simulated, no bugs)".to_string()
            } else {
                format!("demo (simulated: {scenario}, then a bug every {DEFECT_EVERY} batches)")
            },
            profile: "simulate".into(),
            ..Status::default()
        },
        flavour: Some(Flavour::ExclFifo),
        cfg: Config::default(),
        speed,
        paused: false,
        page_size: None,
        lock_source: None,
        max_idle: Some(MAX_IDLE),
        scope: None,
    };
    play(source, pc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Checker, Kind};
    use crate::model::Model;

    /// The first batches of the demo through the checker: the bugs come
    /// one after the other, each found, none hiding another.
    #[test]
    fn the_demo_finds_each_bug_in_turn() {
        let mut src = SimSource {
            cfg: sim::Config {
                scenario: "deadlock".into(),
                seed: 1,
                events: 300,
                threads: 2,
            },
            first: "deadlock".into(),
            batches: 0,
            injected: 0,
            batch: Vec::new().into_iter(),
            shift: None,
            last_ts: 0,
        };
        let mut checker = Checker::over(Model::new(Some(Flavour::ExclFifo)), Config::default());
        let mut idx = 0;
        // The deadlock, then inversion, overlap and unlocked-page.
        while src.batches <= 4 * DEFECT_EVERY {
            let Some(Ok(Item::Event(e))) = src.next() else {
                panic!("the demo stream does not end");
            };
            checker.event(idx, &e);
            idx += 1;
        }
        let kinds: Vec<Kind> = checker
            .analysis()
            .findings()
            .iter()
            .map(|f| f.kind)
            .collect();
        for k in [
            Kind::DEADLOCK,
            Kind::ORDERING_INVERSION,
            Kind::CONFLICTING_GRANT,
            Kind::PAGE_IN_LOCKED_RANGE,
        ] {
            assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
        }
        // Each bug's file is its own.
        let files: std::collections::HashSet<_> = checker
            .analysis()
            .findings()
            .iter()
            .filter_map(|f| f.tree)
            .collect();
        assert!(files.len() >= 4, "{files:?}");
    }
}
