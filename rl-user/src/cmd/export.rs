//! placeholder
use crate::cli::CheckFlavour;
use std::path::Path;
use std::process::ExitCode;
pub fn run(
    _file: &Path,
    _p: Option<&Path>,
    _c: Option<&Path>,
    _s: u64,
    _f: Option<CheckFlavour>,
) -> anyhow::Result<ExitCode> {
    todo!()
}
