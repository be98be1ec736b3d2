//! `rltop demo`: a simulated workload shown live in the TUI, for people
//! without root or a kernel with range locks.
//!
//! The simulator ([`crate::sim`]) runs real threads on the reference range
//! lock in batches, on the pipeline thread as the player needs events; the
//! first batch carries the bug of `--scenario` (a deadlock by default, so
//! the wait chains, the findings and the lockdep report have something to
//! show), later ones are correct `mixed` workloads. Each batch is shifted in
//! time to follow the previous one. The simulator's threads run at full
//! speed, so the playback is slowed down (`--speed`), and pauses longer
//! than [`MAX_IDLE`] of wall time are shortened to it.

use std::process::ExitCode;

use super::replay::{PlayerConfig, Source, play, require_tty};
use crate::analysis::Config;
use crate::events::Event;
use crate::model::Flavour;
use crate::sim;
use crate::trace::Item;
use crate::views::tui::snapshot::Status;

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
    batch: std::vec::IntoIter<Event>,
    /// Added to the next batch's timestamps.
    shift: Option<i128>,
    last_ts: u64,
}

impl SimSource {
    fn next_batch(&mut self) -> anyhow::Result<()> {
        let events = sim::simulate(&self.cfg).map_err(|e| crate::user_error(e.to_string()))?;
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
        // Later batches: the correct workload, another seed each time.
        self.cfg.scenario = "mixed".into();
        self.cfg.seed = self.cfg.seed.wrapping_add(1);
        Ok(())
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

pub fn run(scenario: &str, seed: u64, threads: usize, speed: f64) -> anyhow::Result<ExitCode> {
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
        batch: Vec::new().into_iter(),
        shift: None,
        last_ts: 0,
    };
    source.next_batch()?;
    require_tty()?;
    let pc = PlayerConfig {
        status: Status {
            source: format!("demo ({scenario}, then mixed; simulated)"),
            profile: "simulate".into(),
            ..Status::default()
        },
        flavour: Some(Flavour::ExclFifo),
        cfg: Config::default(),
        speed,
        paused: false,
        max_idle: Some(MAX_IDLE),
    };
    play(source, pc)
}
