//! `rltop probes [--verbose]`.
use std::process::ExitCode;
use crate::cli::LiveArgs;
pub fn run(_live: &LiveArgs, _verbose: bool) -> anyhow::Result<ExitCode> {
    Err(crate::user_error("probes: not built yet"))
}
