//! `rltop import FILE.jsonl -o FILE`: build a trace from JSONL events.
//!
//! All or nothing: the trace is written to a temporary file next to the
//! output and renamed into place only when every line parsed, so a bad line
//! never leaves a half-written trace behind.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::ImportArgs;
use crate::events::jsonl::JsonlReader;
use crate::trace::{TraceError, TraceHeader, TraceWriter};

pub fn run(a: &ImportArgs, force: bool) -> anyhow::Result<ExitCode> {
    let (file, output) = (a.file.as_path(), a.output.as_path());
    let input = File::open(file)
        .map_err(|e| crate::user_error(format!("cannot read {}: {e}", file.display())))?;
    let tmp = temp_path(output);
    let mut header = TraceHeader::new("import");
    header.host = "unknown".into();
    let mut w = TraceWriter::create_new(&tmp, &header, force).map_err(|e| match e {
        TraceError::Io { source, .. } => {
            crate::user_error(format!("cannot create {}: {source}", output.display()))
        }
        e => crate::user_error(e.to_string()),
    })?;
    // From here on the temporary file is ours to remove on failure.
    let result = (|| -> anyhow::Result<u64> {
        for ev in JsonlReader::new(BufReader::with_capacity(1 << 16, input)) {
            let ev = ev.map_err(|e| {
                crate::user_error(format!("{}: {e} (no trace written)", file.display()))
            })?;
            w.push(&ev)
                .map_err(|e| crate::user_error(format!("{}: {e}", file.display())))?;
        }
        let stats = w.finish().map_err(|e| crate::user_error(e.to_string()))?;
        fs::rename(&tmp, output)
            .map_err(|e| crate::user_error(format!("cannot create {}: {e}", output.display())))?;
        // Make the rename itself durable; best effort.
        if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(stats.events)
    })();
    match result {
        Ok(n) => {
            log::info!("imported {n} events into {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `.NAME.PID.tmp` in the output's directory: same filesystem, so the
/// rename is atomic.
pub(crate) fn temp_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = format!(
        ".{}.{}.tmp",
        name.as_deref().unwrap_or("trace"),
        std::process::id()
    );
    match output.parent() {
        Some(dir) => dir.join(tmp),
        None => PathBuf::from(tmp),
    }
}
