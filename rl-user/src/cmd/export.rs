//! `rltop export FILE --perfetto OUT [--chrome OUT.json]`: the trace as a
//! timeline (see [`crate::analysis::timeline`] and
//! [`crate::views::timeline`]), for ui.perfetto.dev or chrome://tracing.
//!
//! The file is streamed once; the timeline is kept whole (it is as long as
//! the trace). Output files are written whole or not at all, mode 0600,
//! never through a symlink, not into a directory others can write to
//! unless `--force`.

use std::path::Path;
use std::process::ExitCode;

use super::Step;
use crate::analysis::Config;
use crate::analysis::timeline::{Builder, Timeline};
use crate::cli::CheckFlavour;
use crate::views::timeline::{chrome, perfetto};

/// The timeline of a trace or JSONL file.
pub fn build(
    file: &Path,
    stall_ms: u64,
    flavour: Option<CheckFlavour>,
) -> anyhow::Result<Timeline> {
    let events = super::open(file)?;
    let header = events.header();
    let cfg = Config {
        stall_ns: stall_ms.saturating_mul(1_000_000),
        clean_start: header.source != "record",
    };
    let mut b = Builder::new(super::check::flavour_of(header, flavour), cfg);
    super::stream(file, events, |step| match step {
        Step::Event(idx, ev) => b.event(idx, ev),
        Step::Gap(idx) => b.gap(idx),
    })?;
    Ok(b.finish())
}

pub fn run(
    file: &Path,
    perfetto_out: Option<&Path>,
    chrome_out: Option<&Path>,
    stall_ms: u64,
    flavour: Option<CheckFlavour>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    if perfetto_out.is_none() && chrome_out.is_none() {
        return Err(crate::user_error(
            "export: say where to write: --perfetto OUT and/or --chrome OUT.json",
        ));
    }
    let tl = build(file, stall_ms, flavour)?;
    if let Some(out) = perfetto_out {
        super::write_output_file(out, &perfetto::encode(&tl), force)?;
    }
    if let Some(out) = chrome_out {
        super::write_output_file(out, &chrome::encode(&tl), force)?;
    }
    Ok(ExitCode::SUCCESS)
}
