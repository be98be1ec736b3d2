//! `rltop whatif FILE [--format text|json] [--page-hold-ns N]`: predicted
//! waits and parallelism per file under Kara's range locking versus
//! whole-file serialization (see [`crate::analysis::whatif`]).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::Step;
use crate::analysis::whatif::{Config, WhatIfRun};
use crate::cli::CheckFormat;
use crate::views::whatif as render;

pub fn run(file: &Path, format: CheckFormat, page_hold_ns: u64) -> anyhow::Result<ExitCode> {
    let events = super::open(file)?;
    let header = events.header().clone();
    let cfg = Config { page_hold_ns };
    let mut run = WhatIfRun::new(cfg);
    let mut range_locks = 0u64;
    super::stream(file, events, |step| match step {
        Step::Event(_, ev) => {
            if matches!(ev.body, crate::events::Body::RlRequest { .. }) {
                range_locks += 1;
            }
            run.event(ev);
        }
        Step::Gap(_) => run.gap(),
    })?;
    let name = file.display();
    if range_locks > 0 {
        eprintln!(
            "rltop: warning: {name}: this trace has {range_locks} range lock requests: it was recorded \
             with range locks already (source {:?}); whatif replays its file operations anyway",
            header.source
        );
    }
    let w = run.finish();
    let out = match format {
        CheckFormat::Json => render::json(&w),
        CheckFormat::Text => render::text(&w),
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(crate::user_error(format!("whatif: writing output: {e}"))),
    }
    Ok(ExitCode::SUCCESS)
}
