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
use std::io;
use std::path::Path;
use std::process::ExitCode;

use crate::analysis::xfstests::{self, Splitter};
use crate::analysis::{Checker, Config, Verdict};
use crate::cli::{CheckArgs, VerdictFormat};
use crate::events::Body;
use crate::events::text::TextWriter;
use crate::trace::{self, Item};
use crate::views::findings as render;
use crate::views::scope::ScopeNote;
use crate::views::xfstests as by_test_view;

pub fn run(a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (file, format, by_test, stall_ms, flavour) =
        (a.file.as_path(), a.format, a.by_test, a.stall_ms, a.flavour);
    let events = super::open(file)?;
    let header = events.header();
    let header_copy = header.clone();
    let model = super::model_for(header, flavour);
    let cfg = Config {
        stall_ns: stall_ms.saturating_mul(1_000_000),
        // A live recording starts while locks may already be held.
        clean_start: header.source != "record",
    };
    let by_test = by_test || format == VerdictFormat::Junit;
    let name = file.display();
    let engine = super::drive(
        file,
        events,
        model,
        (Checker::new(cfg), by_test.then(Splitter::new)),
    )?;
    let (model, (checker, splitter)) = engine.into_parts();
    let mut verdict = checker.finish(&model);
    // Per test, the findings are about the command: those naming only
    // tasks outside its scope are left out (plain `check` judges the whole
    // machine: a kernel bug is one whoever hits it).
    let scope = if by_test {
        super::scope_of(file, &header_copy, flavour)?.and_then(|f| {
            ScopeNote::new(f.scope(), header_copy.command.as_deref(), a.all_tasks).map(|n| (f, n))
        })
    } else {
        None
    };
    let note = scope.map(|(f, mut note)| {
        if !a.all_tasks {
            let before = verdict.findings.len();
            verdict
                .findings
                .retain(|x| x.tids.is_empty() || x.tids.iter().any(|&t| f.scope().has_tid(t)));
            note.findings_left_out = before - verdict.findings.len();
        }
        note
    });
    let splitter = splitter.unwrap_or_default();
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
            let mut s = by_test_view::check_json(&verdict, &tests, note.as_ref());
            s.push('\n');
            s
        }
        (VerdictFormat::Text, false) => render::text(&verdict, &evidence_lines(file, &verdict)?),
        (VerdictFormat::Text, true) => by_test_view::check_text(
            &verdict,
            &tests,
            &evidence_lines(file, &verdict)?,
            note.as_ref(),
        ),
        (VerdictFormat::Junit, _) => by_test_view::junit(
            &file.display().to_string(),
            &verdict,
            &tests,
            &evidence_lines(file, &verdict)?,
        ),
    };
    super::write_stdout("check", out.as_bytes())?;
    Ok(if verdict.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
