//! `rltop simulate --scenario NAME [--seed N] [--events N] [--threads N] -o FILE`:
//! a synthetic workload on the reference range lock (see [`crate::sim`]),
//! written as a trace that every other command reads like a recording.

use std::process::ExitCode;

use crate::cli::SimulateArgs;
use crate::sim::{self, Config};
use crate::trace::{TraceHeader, TraceWriter};
use crate::user_error;

pub fn run(a: &SimulateArgs, force: bool) -> anyhow::Result<ExitCode> {
    let cfg = &Config {
        scenario: a.scenario.clone(),
        seed: a.seed,
        events: a.events,
        threads: a.threads,
    };
    let output = a.output.as_path();
    let events = sim::simulate(cfg).map_err(|e| user_error(e.to_string()))?;
    let header = TraceHeader {
        source: "simulate".into(),
        profile: format!("simulate:{}", cfg.scenario),
        flavour: Some("excl_fifo".into()),
        host: "simulator".into(),
        start_monotonic_ns: events.first().map(|e| e.ts),
        ..TraceHeader::default()
    };
    let mut writer = TraceWriter::create_forced(output, &header, force)
        .map_err(|e| user_error(format!("cannot create the trace: {e}")))?;
    for ev in &events {
        writer
            .push(ev)
            .map_err(|e| user_error(format!("writing {}: {e}", output.display())))?;
    }
    let stats = writer
        .finish()
        .map_err(|e| user_error(format!("writing {}: {e}", output.display())))?;
    eprintln!(
        "rltop: simulated {} ({} threads, seed {}): {} events -> {}",
        cfg.scenario,
        cfg.threads,
        cfg.seed,
        stats.events,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
