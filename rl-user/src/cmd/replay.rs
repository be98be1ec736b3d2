//! `rltop replay FILE`: the TUI over a trace, played back in trace time
//! (see [`crate::player`]).

use std::process::ExitCode;

use crate::analysis::Config;
use crate::cli::ReplayArgs;
use crate::player::{FileSource, PlayerConfig, play, require_tty};
use crate::views::scope::ScopeNote;
use crate::views::tui::snapshot::Status;

pub fn run(a: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let (file, speed, paused, stall_ms, flavour) =
        (a.file.as_path(), a.speed, a.paused, a.stall_ms, a.flavour);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(crate::user_error(format!(
            "--speed {speed}: must be a positive number (1 = real time)"
        )));
    }
    let source = FileSource::open(file)?;
    let header = source.header().clone();
    require_tty()?;
    // A recording of a command shows its tasks (issue 16): found in a pass
    // over the whole file before playing.
    let scope = super::scope_of(file, &header, flavour)?.map(|f| f.scope().clone());
    let note = scope
        .as_ref()
        .and_then(|s| ScopeNote::new(s, header.command.as_deref(), a.all_tasks));
    let pc = PlayerConfig {
        status: Status {
            source: format!("replay {}", file.display()),
            profile: header.profile.clone(),
            scope: note.map(|n| n.short()),
            ..Status::default()
        },
        flavour: super::flavour_of(&header, flavour),
        page_size: header.page_size,
        lock_source: header.lock_source.clone(),
        cfg: Config {
            stall_ns: stall_ms.saturating_mul(1_000_000),
            clean_start: header.source != "record",
        },
        speed,
        paused,
        // A replay keeps the trace's time: `n` and `g` skip idle parts.
        max_idle: None,
        scope: scope.map(|s| (s, a.all_tasks)),
    };
    play(source, pc)
}
