//! `rltop report FILE [--format text|json] [-k KEY] [--flavour F]`: the
//! contention summary of a trace (see [`crate::views::report`]).
//!
//! Streams the file once through the model and the statistics: memory
//! follows the live state and the number of lock classes, not the trace.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::Step;
use crate::analysis::stats::Stats;
use crate::analysis::xfstests::Splitter;
use crate::cli::{CheckFlavour, CheckFormat};
use crate::model::Model;
use crate::views::report::{self, SortKey};
use crate::views::xfstests::{self as by_test_view, TestReport};

pub fn run(
    file: &Path,
    format: CheckFormat,
    sort: SortKey,
    by_test: bool,
    flavour: Option<CheckFlavour>,
) -> anyhow::Result<ExitCode> {
    let events = super::open(file)?;
    let mut model = Model::new(super::check::flavour_of(events.header(), flavour));
    model.set_page_size(events.header().page_size);
    let mut stats = Stats::new(true);
    let mut splitter = Splitter::new();
    // The statistics of each finished test (waits and holds are counted
    // in the test where they end).
    let mut parts: Vec<Stats> = Vec::new();
    let name = file.display();
    super::stream(file, events, |step| match step {
        Step::Event(idx, ev) => {
            if by_test && splitter.event(idx, ev) && splitter.segments().len() > 1 {
                parts.push(stats.take_rows());
            }
            stats.before(&model, ev);
            model.apply(idx, ev);
            stats.after(&model, idx, ev);
        }
        Step::Gap(idx) => {
            model.gap(idx, 0);
            stats.gap();
            splitter.gap(idx);
        }
    })?;
    let out = if by_test {
        if !splitter.has_tests() {
            eprintln!(
                "rltop: warning: {name}: no xfstests marker (`run fstests <seq> at ...`) in this trace"
            );
        }
        parts.push(stats.take_rows());
        let tests: Vec<TestReport> = splitter
            .segments()
            .iter()
            .zip(&parts)
            .map(|(seg, st)| TestReport::new(seg, report::build(st, &model, sort)))
            .collect();
        let whole = report::build(&Stats::new(false), &model, sort);
        match format {
            CheckFormat::Json => by_test_view::report_json(&whole, &tests),
            CheckFormat::Text => by_test_view::report_text(&whole, &tests),
        }
    } else {
        let r = report::build(&stats, &model, sort);
        match format {
            CheckFormat::Json => report::json(&r),
            CheckFormat::Text => report::text(&r),
        }
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
