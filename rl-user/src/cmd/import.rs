//! `rltop import FILE.jsonl -o FILE`.
use std::{path::Path, process::ExitCode};
pub fn run(_file: &Path, _output: &Path) -> anyhow::Result<ExitCode> {
    Err(crate::user_error("import: not built yet"))
}
