//! The `rltop` sub-commands: each reads a source, drives the pipeline, and
//! renders its result. They return the process exit code.

pub mod check;
pub mod demo;
pub mod dump;
pub mod export;
pub mod generate;
pub mod hist;
pub mod import;
pub mod live;
pub mod out;
pub mod probes;
pub mod record;
pub mod replay;
pub mod report;
pub mod simulate;
pub mod whatif;

use std::io::Write;

pub(crate) use out::write_stdout;
use std::path::Path;

use crate::analysis::scope::{ScopeFilter, ScopeFinder};
use crate::analysis::stats::Stats;
use crate::analysis::{Analysis, Engine};
use crate::cli::CheckFlavour;
use crate::events::Event;
use crate::model::{Flavour, Model};
use crate::trace::{self, Item, ReadAhead, TraceHeader};
use crate::views::scope::ScopeNote;

/// Opens a trace (or a JSONL file) for a command: its header, and its
/// events decoded ahead on a thread of their own. Errors are one line.
pub(crate) fn open(file: &Path) -> anyhow::Result<ReadAhead> {
    let events = trace::open_events(file).map_err(|e| crate::user_error(e.to_string()))?;
    Ok(ReadAhead::new(events))
}

/// What a command sees of a trace, in order.
pub(crate) enum Step<'a> {
    /// Event number `idx` (0-based position in the stream).
    Event(u64, &'a Event),
    /// A damaged part of the file, before event `idx`: a gap.
    Gap(u64),
}

/// Feeds every event and every damaged part of `events` (read from `file`)
/// to `f`, warning about each damaged part on stderr. Returns how many
/// events there were.
pub(crate) fn stream(
    file: &Path,
    events: ReadAhead,
    mut f: impl FnMut(Step<'_>),
) -> anyhow::Result<u64> {
    let name = file.display();
    let mut idx = 0u64;
    for item in events {
        match item.map_err(|e| crate::user_error(e.to_string()))? {
            Item::Event(ev) => {
                f(Step::Event(idx, &ev));
                idx += 1;
            }
            Item::Problem(p) => {
                eprintln!("rltop: warning: {name}: {p}");
                f(Step::Gap(idx));
            }
        }
    }
    Ok(idx)
}

/// The tasks the views of `file` show (issue 16). For a recording of a
/// command, its [`Scope`](crate::analysis::scope::Scope), found in a pass
/// of its own before the view's; `None` for every task (no command in the
/// trace). The pass is quiet: the view's pass warns about damage.
pub(crate) fn scope_of(
    file: &Path,
    header: &TraceHeader,
    flavour: Option<CheckFlavour>,
) -> anyhow::Result<Option<ScopeFilter>> {
    if !header.may_have_command() {
        return Ok(None);
    }
    let events = open(file)?;
    let mut engine = Engine::new(model_for(events.header(), flavour), ScopeFinder::new());
    let mut idx = 0u64;
    for item in events {
        match item.map_err(|e| crate::user_error(e.to_string()))? {
            Item::Event(ev) => {
                engine.event(idx, &ev);
                idx += 1;
            }
            Item::Problem(_) => engine.gap(idx),
        }
    }
    let scope = engine.into_parts().1.finish();
    Ok(scope.has_command().then(|| ScopeFilter::new(scope)))
}

/// The statistics for a view of `file` (with wait chains), scoped to the
/// command its recording ran (unless `all_tasks`), and the header line
/// that says so.
pub(crate) fn scoped_stats(
    file: &Path,
    header: &TraceHeader,
    flavour: Option<CheckFlavour>,
    all_tasks: bool,
) -> anyhow::Result<(Stats, Option<ScopeNote>)> {
    Ok(match scope_of(file, header, flavour)? {
        Some(f) => {
            let note = ScopeNote::new(f.scope(), header.command.as_deref(), all_tasks);
            (Stats::new(true).with_scope(f, all_tasks), note)
        }
        None => (Stats::new(true), None),
    })
}

/// The model for a trace: of the range lock flavour the trace's header
/// names, else the user's (`--flavour`), else (`None`) the one the first
/// request's mode implies.
/// Its page size and lock source are those the trace was recorded with.
pub(crate) fn model_for(header: &TraceHeader, user: Option<CheckFlavour>) -> Model {
    let mut m = Model::new(flavour_of(header, user));
    m.set_page_size(header.page_size);
    m.set_lock_source(header.lock_source.as_deref());
    m
}

/// See [`model_for`].
pub(crate) fn flavour_of(header: &TraceHeader, user: Option<CheckFlavour>) -> Option<Flavour> {
    header
        .flavour
        .as_deref()
        .and_then(Flavour::parse)
        .or(user.map(Flavour::from))
}

/// Streams `events` (read from `file`) through an engine over `analysis`
/// and returns it at the end of the stream.
pub(crate) fn drive<A: Analysis>(
    file: &Path,
    events: ReadAhead,
    model: Model,
    analysis: A,
) -> anyhow::Result<Engine<A>> {
    let mut engine = Engine::new(model, analysis);
    stream(file, events, |step| match step {
        Step::Event(idx, ev) => engine.event(idx, ev),
        Step::Gap(idx) => engine.gap(idx),
    })?;
    Ok(engine)
}

/// Writes `bytes` to `path` whole or not at all: into a new temporary file
/// beside it ([`crate::trace::create_private`]: mode 0600, never through a
/// symlink, not in a directory others can write to unless `force`),
/// renamed into place. A symlink at `path` is replaced, never followed.
pub(crate) fn write_output_file(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let tmp = import::temp_path(path);
    let cannot = |e: &dyn std::fmt::Display| {
        crate::user_error(format!("cannot write {}: {e}", path.display()))
    };
    let mut f = crate::trace::create_private(&tmp, true, force).map_err(|e| match e {
        e @ crate::trace::TraceError::SharedDir { .. } => crate::user_error(e.to_string()),
        e => cannot(&e),
    })?;
    let result = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(&e));
    }
    Ok(())
}
