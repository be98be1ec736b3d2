//! `rltop report FILE [--format text|json] [-k KEY] [--flavour F]`: the
//! contention summary of a trace (see [`crate::views::report`]).
//!
//! Streams the file once through the model and the statistics: memory
//! follows the live state and the number of lock classes, not the trace.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::analysis::stats::Stats;
use crate::cli::{CheckFlavour, CheckFormat};
use crate::model::Model;
use crate::trace::{self, Item};
use crate::views::report::{self, SortKey};

pub fn run(
    file: &Path,
    format: CheckFormat,
    sort: SortKey,
    flavour: Option<CheckFlavour>,
) -> anyhow::Result<ExitCode> {
    let events = trace::open_events(file).map_err(|e| crate::user_error(e.to_string()))?;
    let events = trace::ReadAhead::new(events);
    let mut model = Model::new(super::check::flavour_of(events.header(), flavour));
    let mut stats = Stats::new(true);
    let name = file.display();
    let mut idx = 0u64;
    for item in events {
        match item.map_err(|e| crate::user_error(e.to_string()))? {
            Item::Event(ev) => {
                stats.before(&model, &ev);
                model.apply(idx, &ev);
                stats.after(&model, idx, &ev);
                idx += 1;
            }
            Item::Problem(p) => {
                eprintln!("rltop: warning: {name}: {p}");
                model.gap(idx, 0);
                stats.gap();
            }
        }
    }
    let r = report::build(&stats, &model, sort);
    let out = match format {
        CheckFormat::Json => report::json(&r),
        CheckFormat::Text => report::text(&r),
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(crate::user_error(format!("report: writing output: {e}"))),
    }
    Ok(ExitCode::SUCCESS)
}
