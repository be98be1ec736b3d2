//! `rltop record -o FILE [--duration SECS] [-- CMD ARGS...]`.
use std::{path::Path, process::ExitCode};
use crate::cli::LiveArgs;
pub fn run(_live: &LiveArgs, _output: &Path, _duration: Option<f64>, _argv: &[String]) -> anyhow::Result<ExitCode> {
    Err(crate::user_error("record: not built yet"))
}
