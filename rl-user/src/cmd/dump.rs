//! `rltop dump FILE [--format jsonl|text|count]`: print every event of a trace (or
//! a JSONL file), one per line, or (`count`) how many of each kind, per
//! test, and what was lost by cause. Damaged chunks are reported on stderr
//! as warnings and skipped.

use std::io::{self, Write};
use std::process::ExitCode;

use super::out::Stdout;
use crate::cli::{DumpArgs, DumpFormat};
use crate::events::{jsonl, text::TextWriter};
use crate::trace::{self, Item, TraceError};

pub fn run(a: &DumpArgs) -> anyhow::Result<ExitCode> {
    let (file, format) = (a.file.as_path(), a.format);
    let events = trace::open_events(file).map_err(user_facing)?;
    let mut out = Stdout::new("dump");
    let mut text = TextWriter::new();
    let name = file.display();
    let mut tally = crate::analysis::counts::Tally::default();
    let written = (|| -> Result<(), DumpError> {
        for item in events {
            match item.map_err(DumpError::Trace)? {
                Item::Event(ev) => match format {
                    DumpFormat::Jsonl => jsonl::write_event(&mut out, &ev),
                    DumpFormat::Text => text.write_event(&mut out, &ev),
                    DumpFormat::Count => {
                        tally.add(&ev);
                        Ok(())
                    }
                }
                .map_err(DumpError::Out)?,
                Item::Problem(p) => {
                    // Keep stdout and stderr in order for people reading both.
                    out.flush().map_err(DumpError::Out)?;
                    eprintln!("rltop: warning: {name}: {p}");
                }
            }
        }
        if format == DumpFormat::Count {
            out.write_all(crate::views::counts::render(&tally).as_bytes())
                .map_err(DumpError::Out)?;
        }
        Ok(())
    })();
    match written {
        // `rltop dump x | head` is a normal way to use dump.
        Ok(()) => out.finish(Ok(()))?,
        Err(DumpError::Out(e)) => out.finish(Err(e))?,
        Err(DumpError::Trace(e)) => return Err(user_facing(e)),
    }
    Ok(ExitCode::SUCCESS)
}

enum DumpError {
    Trace(TraceError),
    Out(io::Error),
}

/// Trace errors are all about the input the user named: one line, exit 2.
fn user_facing(e: TraceError) -> anyhow::Error {
    crate::user_error(e.to_string())
}
