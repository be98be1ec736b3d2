//! `rltop whatif FILE [--format text|json] [--page-hold-ns N]`: predicted
//! waits and parallelism per file under Kara's range locking versus
//! whole-file serialization (see [`crate::analysis::whatif`]).

use std::process::ExitCode;

use crate::analysis::whatif::{Config, WhatIfRun};
use crate::cli::{CheckFormat, WhatifArgs};
use crate::views::whatif as render;

pub fn run(a: &WhatifArgs) -> anyhow::Result<ExitCode> {
    let (file, format) = (a.file.as_path(), a.format);
    let events = super::open(file)?;
    let header = events.header().clone();
    let cfg = Config {
        page_hold_ns: a.page_hold_ns,
        readahead_gap_ns: a.readahead_gap_ns,
        fault_read_max_ns: a.fault_read_max_ns,
    };
    let model = super::model_for(&header, None);
    let engine = super::drive(file, events, model, WhatIfRun::new(cfg))?;
    let (model, run) = engine.into_parts();
    let range_locks = run.range_locks();
    let name = file.display();
    if range_locks > 0 {
        eprintln!(
            "rltop: warning: {name}: this trace has {range_locks} range lock requests: it was recorded \
             with range locks already (source {:?}); whatif replays its file operations anyway",
            header.source
        );
    }
    let mut w = run.finish_named(&model);
    // Imported and older traces may list no probes: then unknown.
    if !header.probes.is_empty() {
        w.contention_traced = Some(
            header
                .probes
                .iter()
                .any(|p| p.starts_with("lock:contention_begin")),
        );
    }
    let out = match format {
        CheckFormat::Json => render::json(&w),
        CheckFormat::Text => render::text(&w),
    };
    super::write_stdout("whatif", out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
