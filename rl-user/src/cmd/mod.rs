//! The `rltop` sub-commands: each reads a source, drives the pipeline, and
//! renders its result. They return the process exit code.

pub mod check;
pub mod demo;
pub mod dump;
pub mod export;
pub mod hist;
pub mod import;
pub mod live;
pub mod probes;
pub mod record;
pub mod replay;
pub mod report;
pub mod signals;
pub mod simulate;

use std::io::Write;
use std::path::Path;

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

/// Writes `out` to stdout; a closed pipe is not an error.
pub(crate) fn write_stdout(what: &str, out: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(crate::user_error(format!("{what}: writing output: {e}"))),
    }
}
