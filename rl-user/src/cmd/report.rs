//! `rltop report FILE [--format text|json] [-k KEY] [--flavour F]`: the
//! contention summary of a trace (see [`crate::views::report`]).
//!
//! Streams the file once through the model and the statistics: memory
//! follows the live state and the number of lock classes, not the trace.

use std::process::ExitCode;

use crate::analysis::stats::Stats;
use crate::analysis::xfstests::TestStats;
use crate::cli::{CheckFormat, ReportArgs};
use crate::views::report;
use crate::views::xfstests::{self as by_test_view, TestReport};

pub fn run(a: &ReportArgs) -> anyhow::Result<ExitCode> {
    let (file, format, sort, by_test, flavour) =
        (a.file.as_path(), a.format, a.sort, a.by_test, a.flavour);
    let events = super::open(file)?;
    let model = super::model_for(events.header(), flavour);
    let (stats, note) = super::scoped_stats(file, events.header(), flavour, a.all_tasks)?;
    let name = file.display();
    let out = if by_test {
        let engine = super::drive(file, events, model, TestStats::new(stats))?;
        let (model, per_test) = engine.into_parts();
        let (splitter, parts) = per_test.finish();
        if !splitter.has_tests() {
            eprintln!(
                "rltop: warning: {name}: no xfstests marker (`run fstests <seq> at ...`) in this trace"
            );
        }
        let tests: Vec<TestReport> = splitter
            .segments()
            .iter()
            .zip(&parts)
            .map(|(seg, st)| TestReport::new(seg, report::build(st, &model, sort)))
            .collect();
        let mut whole = report::build(&Stats::new(false), &model, sort);
        whole.scope = note;
        match format {
            CheckFormat::Json => by_test_view::report_json(&whole, &tests),
            CheckFormat::Text => by_test_view::report_text(&whole, &tests),
        }
    } else {
        let engine = super::drive(file, events, model, stats)?;
        let mut r = report::build(engine.analysis(), engine.model(), sort);
        r.scope = note;
        match format {
            CheckFormat::Json => report::json(&r),
            CheckFormat::Text => report::text(&r),
        }
    };
    super::write_stdout("report", out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
