//! `rltop probes [--verbose]`: what this kernel supports — each probe of the
//! profile, attached or why not. `--verbose` adds each program's verified
//! instruction count (the verifier's cost figure, kept under
//! [`INSN_BUDGET`] by a test).

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::cli::{LiveArgs, ProbesArgs};
use crate::probe::{Session, Status};

/// Most instructions the verifier may process for any one rltop program.
/// Per-event cost grows with it; a test keeps every program under it.
/// 2048 since the pre-exec filter of `record -- CMD` (24 verified
/// instructions in each program; one array read when executed, as rltop
/// has no child waiting to exec nearly always) took the largest, the
/// `filemap_fault` kprobe, from 1996 to 2020.
pub const INSN_BUDGET: u32 = 2048;

pub fn run(live: &LiveArgs, a: &ProbesArgs) -> anyhow::Result<ExitCode> {
    let verbose = a.verbose;
    let mut opts = live.options()?;
    opts.listing = true;
    crate::probe::check_privileges("rltop probes")?;
    let session = Session::start(&opts)?;
    let (release, _) = crate::cmd::record::uname();
    let mut out = String::new();
    writeln!(
        out,
        "kernel {release}, profile {} (asked: {})",
        session.profile, opts.profile
    )?;
    writeln!(out, "{}", session.detection)?;
    for n in &session.notes {
        writeln!(out, "{n}")?;
    }
    for l in &session.lock_lines {
        writeln!(out, "{l}")?;
    }
    if session.mounted_tracefs {
        writeln!(out, "mounted tracefs at {}", crate::probe::tracefs::TRACEFS)?;
    }
    let width = session
        .probes
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0);
    for p in &session.probes {
        // Which files a probe sees, when not all of them.
        let attached = match p.covers {
            Some(c) => format!("attached ({c})"),
            None => "attached".to_string(),
        };
        let status = match &p.status {
            Status::Attached { verified_insns } if verbose => match verified_insns {
                Some(n) => format!("{attached}  {n:>5} insns  ({})", p.program),
                None => format!("{attached}      ? insns  ({})", p.program),
            },
            Status::Attached { .. } => attached,
            Status::Unavailable(why) => format!("not attached: {why}"),
            Status::Failed(why) => format!("failed: {why}"),
        };
        writeln!(out, "{:width$}  {status}", p.name)?;
    }
    let attached = session.attached().len();
    writeln!(
        out,
        "{attached} of {} probes attached",
        session.probes.len()
    )?;
    super::write_stdout("probes", out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
