//! `rltop` with no sub-command: the live view.
use std::process::ExitCode;
use crate::cli::LiveArgs;
pub fn run(_live: &LiveArgs) -> anyhow::Result<ExitCode> {
    Err(crate::user_error("the live TUI is not built yet; use `rltop record -o FILE` and `rltop dump FILE`"))
}
