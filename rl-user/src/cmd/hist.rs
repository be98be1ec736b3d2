//! `rltop hist FILE... [--metric wait|hold] [--by op|tree|task|test]
//! [--format text|json|csv|prom|hdr] [--svg OUT] [--merge] [-o OUT]`:
//! histograms of lock wait or hold times (see [`crate::analysis::hist`] and
//! [`crate::views::hist`]).
//!
//! Each file is streamed once. Several files are shown side by side (a
//! `trace` label per series), or added up exactly with `--merge`. A file
//! may also be an HDR interval log written by `--format hdr` (on another
//! machine, say): its histograms are read back exactly and merge the same.

use std::path::Path;
use std::process::ExitCode;

use crate::analysis::hist::{By, HistSet, Histograms};
use crate::analysis::stats::Metric;
use crate::cli::{CheckFlavour, HistArgs, HistBy, HistFormat, HistMetric};
use crate::views::hist as view;
use crate::views::scope::ScopeNote;

/// The histograms of one file: a trace, a JSONL file, or an interval log
/// `rltop hist --format hdr` wrote (histograms from another machine).
pub fn build(
    file: &Path,
    metric: Metric,
    by: By,
    flavour: Option<CheckFlavour>,
    all_tasks: bool,
) -> anyhow::Result<HistSet> {
    if let Some(set) = read_hdr_file(file)? {
        if set.metric != metric || set.by != by {
            return Err(crate::user_error(format!(
                "{}: holds {} times by {}; ask for --metric {} --by {}",
                file.display(),
                set.metric.as_str(),
                set.by.as_str(),
                set.metric.as_str(),
                set.by.as_str()
            )));
        }
        return Ok(set);
    }
    let events = super::open(file)?;
    let header = events.header().clone();
    let model = super::model_for(&header, flavour);
    let mut hist = Histograms::new(metric, by);
    if let Some(f) = super::scope_of(file, &header, flavour)?
        && let Some(note) = ScopeNote::new(f.scope(), header.command.as_deref(), all_tasks)
    {
        hist = hist.with_scope(f, all_tasks, format!("{}: {}", file.display(), note.text()));
    }
    let engine = super::drive(file, events, model, hist)?;
    Ok(engine.into_parts().1.finish())
}

pub fn run(a: &HistArgs, force: bool) -> anyhow::Result<ExitCode> {
    let metric = match a.metric {
        HistMetric::Wait => Metric::Wait,
        HistMetric::Hold => Metric::Hold,
    };
    let by = match a.by {
        HistBy::Op => By::Op,
        HistBy::Tree => By::Tree,
        HistBy::Task => By::Task,
        HistBy::Test => By::Test,
    };
    let mut set = HistSet::new(metric, by);
    let apart = a.files.len() > 1 && !a.merge;
    for f in &a.files {
        let mut s = build(f, metric, by, a.flavour, a.all_tasks)?;
        if apart {
            s.label_trace(&f.display().to_string());
        }
        set.merge(&s);
    }
    let out = match a.format {
        HistFormat::Text => view::text(&set),
        HistFormat::Json => view::json(&set),
        HistFormat::Csv => view::csv(&set),
        HistFormat::Prom => view::prom(&set),
        HistFormat::Hdr => view::hdr(&set)?,
    };
    if let Some(svg) = &a.svg {
        super::write_output_file(svg, view::svg(&set).as_bytes(), force)?;
    }
    match &a.output {
        Some(path) => super::write_output_file(path, out.as_bytes(), force)?,
        None => super::write_stdout("hist", out.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Largest HDR interval log `hist` reads.
const MAX_HDR_LOG_BYTES: u64 = 64 << 20;

/// The histograms of an interval log `rltop hist --format hdr` wrote, or
/// `None` when `file` is something else.
fn read_hdr_file(file: &Path) -> anyhow::Result<Option<HistSet>> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| {
        crate::user_error(format!("cannot read {}: {e}", file.display()))
    };
    let mut f = std::fs::File::open(file).map_err(|e| cannot(&e))?;
    let mut head = [0u8; 16];
    let n = f.read(&mut head).map_err(|e| cannot(&e))?;
    if !view::is_hdr(&head[..n]) {
        return Ok(None);
    }
    // An interval log holds one line per series: a few KiB. Bound what an
    // untrusted file can make us hold.
    let meta = f.metadata().map_err(|e| cannot(&e))?;
    if meta.len() > MAX_HDR_LOG_BYTES {
        return Err(crate::user_error(format!(
            "{} is {} MiB, larger than an rltop HDR log can be ({} MiB); is it the right file?",
            file.display(),
            meta.len() >> 20,
            MAX_HDR_LOG_BYTES >> 20
        )));
    }
    let text = std::fs::read_to_string(file).map_err(|e| cannot(&e))?;
    view::read_hdr(&text)
        .map(Some)
        .map_err(|e| crate::user_error(format!("{}: {e}", file.display())))
}
