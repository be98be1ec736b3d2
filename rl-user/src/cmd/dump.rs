//! `rltop dump FILE [--format jsonl|text]`.
use std::{path::Path, process::ExitCode};
use crate::cli::DumpFormat;
pub fn run(_file: &Path, _format: DumpFormat) -> anyhow::Result<ExitCode> {
    Err(crate::user_error("dump: not built yet"))
}
