//! `rltop dump FILE [--format jsonl|text|count]`: print every event of a trace (or
//! a JSONL file), one per line. Damaged chunks are reported on stderr as
//! warnings and skipped.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::cli::DumpFormat;
use crate::events::{jsonl, text::TextWriter};
use crate::trace::{self, Item, TraceError};

pub fn run(file: &Path, format: DumpFormat) -> anyhow::Result<ExitCode> {
    let events = trace::open_events(file).map_err(user_facing)?;
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let mut text = TextWriter::new();
    let name = file.display();
    let mut count = 0u64;
    let written = (|| -> Result<(), DumpError> {
        for item in events {
            match item.map_err(DumpError::Trace)? {
                Item::Event(ev) => match format {
                    DumpFormat::Jsonl => jsonl::write_event(&mut out, &ev),
                    DumpFormat::Text => text.write_event(&mut out, &ev),
                    DumpFormat::Count => {
                        count += 1;
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
            writeln!(out, "{count} events").map_err(DumpError::Out)?;
        }
        out.flush().map_err(DumpError::Out)
    })();
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `rltop dump x | head` is a normal way to use dump.
        Err(DumpError::Out(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(DumpError::Out(e)) => Err(crate::user_error(format!("dump: writing output: {e}"))),
        Err(DumpError::Trace(e)) => Err(user_facing(e)),
    }
}

enum DumpError {
    Trace(TraceError),
    Out(io::Error),
}

/// Trace errors are all about the input the user named: one line, exit 2.
fn user_facing(e: TraceError) -> anyhow::Error {
    crate::user_error(e.to_string())
}
