//! `rltop check FILE [--format text|json|junit] [--by-test] [--stall-ms N]
//! [--flavour F]`: run the analyses over a trace (or JSONL) and report
//! findings, for the whole trace or per xfstests test (see
//! [`crate::analysis::xfstests`]).
//!
//! Streams the file once (memory follows the live state, not the trace
//! length). Exit 0 when no certain error was found, 1 otherwise, 2 when the
//! file could not be read. The text form reads the file a second time, only
//! to print the evidence events of the findings.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use super::Step;
use crate::analysis::xfstests::{self, Splitter};
use crate::analysis::{Checker, Config, Verdict};
use crate::cli::{CheckFlavour, VerdictFormat};
use crate::events::Body;
use crate::events::text::TextWriter;
use crate::model::{Flavour, Model};
use crate::trace::{self, Item};
use crate::views::findings as render;
use crate::views::xfstests as by_test_view;

pub fn run(
    file: &Path,
    format: VerdictFormat,
    by_test: bool,
    stall_ms: u64,
    flavour: Option<CheckFlavour>,
) -> anyhow::Result<ExitCode> {
    let events = super::open(file)?;
    let header = events.header();
    let flavour = flavour_of(header, flavour);
    let cfg = Config {
        stall_ns: stall_ms.saturating_mul(1_000_000),
        // A live recording starts while locks may already be held.
        clean_start: header.source != "record",
    };
    let mut model = Model::new(flavour);
    model.set_page_size(header.page_size);
    let mut checker = Checker::new(model, cfg);
    let by_test = by_test || format == VerdictFormat::Junit;
    let mut splitter = Splitter::new();
    let name = file.display();
    super::stream(file, events, |step| match step {
        Step::Event(idx, ev) => {
            if by_test {
                splitter.event(idx, ev);
            }
            checker.event(idx, ev);
        }
        Step::Gap(idx) => {
            checker.gap(idx);
            splitter.gap(idx);
        }
    })?;
    let verdict = checker.finish();
    if by_test && !splitter.has_tests() {
        eprintln!(
            "rltop: warning: {name}: no xfstests marker (`run fstests <seq> at ...`) in this trace"
        );
    }
    let tests = xfstests::split(&verdict, &splitter);
    let out = match (format, by_test) {
        (VerdictFormat::Json, false) => {
            let mut s = render::json(&verdict);
            s.push('\n');
            s
        }
        (VerdictFormat::Json, true) => {
            let mut s = by_test_view::check_json(&verdict, &tests);
            s.push('\n');
            s
        }
        (VerdictFormat::Text, false) => render::text(&verdict, &evidence_lines(file, &verdict)?),
        (VerdictFormat::Text, true) => {
            by_test_view::check_text(&verdict, &tests, &evidence_lines(file, &verdict)?)
        }
        (VerdictFormat::Junit, _) => by_test_view::junit(
            &file.display().to_string(),
            &verdict,
            &tests,
            &evidence_lines(file, &verdict)?,
        ),
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(crate::user_error(format!("check: writing output: {e}"))),
    }
    Ok(if verdict.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The range lock flavour: the trace's own word first, then the user's,
/// else (`None`) the first request's mode decides.
pub(crate) fn flavour_of(
    header: &trace::TraceHeader,
    user: Option<CheckFlavour>,
) -> Option<Flavour> {
    header
        .flavour
        .as_deref()
        .and_then(Flavour::parse)
        .or(user.map(|f| match f {
            CheckFlavour::ExclFifo => Flavour::ExclFifo,
            CheckFlavour::Rw => Flavour::Rw,
        }))
}

/// The text lines of the evidence events, from a second pass over the file.
fn evidence_lines(file: &Path, v: &Verdict) -> anyhow::Result<HashMap<u64, String>> {
    let wanted: HashSet<u64> = v
        .findings
        .iter()
        .flat_map(|f| f.evidence.iter().copied())
        .collect();
    let mut lines = HashMap::new();
    let Some(&max) = wanted.iter().max() else {
        return Ok(lines);
    };
    let events = trace::open_events(file).map_err(|e| crate::user_error(e.to_string()))?;
    let mut tw = TextWriter::new();
    let mut idx = 0u64;
    for item in events {
        let Item::Event(ev) = item.map_err(|e| crate::user_error(e.to_string()))? else {
            continue;
        };
        if wanted.contains(&idx) {
            let mut buf = Vec::new();
            tw.write_event(&mut buf, &ev)?;
            lines.insert(idx, String::from_utf8_lossy(&buf).into_owned());
        } else if idx == 0 || matches!(ev.body, Body::Task { .. } | Body::Exit) {
            // Keeps the time origin and task names of `rltop dump`.
            tw.write_event(&mut io::sink(), &ev)?;
        }
        if idx >= max {
            break;
        }
        idx += 1;
    }
    Ok(lines)
}
