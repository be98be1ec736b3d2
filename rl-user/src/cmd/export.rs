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

use crate::analysis::timeline::{Builder, Timeline};
use crate::analysis::{Checker, Config};
use crate::cli::{CheckFlavour, ExportArgs};
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
    let model = super::model_for(header, flavour);
    let engine = super::drive(file, events, model, (Checker::new(cfg), Builder::new()))?;
    let (model, (checker, builder)) = engine.into_parts();
    Ok(builder.finish(checker.finish(&model)))
}

pub fn run(a: &ExportArgs, force: bool) -> anyhow::Result<ExitCode> {
    let (file, perfetto_out, chrome_out, stall_ms, flavour) = (
        a.file.as_path(),
        a.perfetto.as_deref(),
        a.chrome.as_deref(),
        a.stall_ms,
        a.flavour,
    );
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
