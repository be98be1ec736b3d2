//! `rltop` with no sub-command, live (root). Until the TUI lands, it streams
//! the events it sees as text, one per line (the `rltop dump --format text`
//! form), and a summary with drop counts when stopped with Ctrl-C.

use std::io::{self, BufWriter, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::signals;
use crate::cli::LiveArgs;
use crate::events::text::TextWriter;
use crate::probe::{self, Options, Session};

pub fn run(live: &LiveArgs) -> anyhow::Result<ExitCode> {
    let opts = Options::from_cli(live)?;
    probe::check_privileges("rltop")?;
    let mut session = Session::start(&opts)?;
    for line in session.not_attached() {
        eprintln!("rltop: warning: not attached: {line}");
    }
    eprintln!(
        "rltop: {} probes attached; streaming events, Ctrl-C to stop",
        session.attached().len()
    );
    signals::install_stop_handlers();

    let mut out = BufWriter::new(io::stdout().lock());
    let mut text = TextWriter::new();
    let mut failed: Option<io::Error> = None;
    let (mut events, mut lost) = (0u64, 0u64);
    let mut last_check = Instant::now();
    while !signals::stop_requested() && failed.is_none() {
        let mut sink = |ev: crate::events::Event| {
            events += 1;
            if failed.is_none()
                && let Err(e) = text.write_event(&mut out, &ev)
            {
                failed = Some(e);
            }
        };
        session.poll(Duration::from_millis(100), &mut sink)?;
        if last_check.elapsed() >= Duration::from_secs(1) {
            lost += session.lost_events()?;
            last_check = Instant::now();
        }
        if failed.is_none()
            && let Err(e) = out.flush()
        {
            failed = Some(e);
        }
    }
    // What the CPUs still had staged, in order.
    if failed.is_none() {
        session.finish(&mut |ev| {
            events += 1;
            if failed.is_none()
                && let Err(e) = text.write_event(&mut out, &ev)
            {
                failed = Some(e);
            }
        })?;
        if let Err(e) = out.flush() {
            failed.get_or_insert(e);
        }
    }
    match failed {
        // `sudo rltop | head` ends here.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Some(e) => return Err(crate::user_error(format!("writing events: {e}"))),
        None => {}
    }
    eprintln!("rltop: {events} events, {lost} lost");
    Ok(ExitCode::SUCCESS)
}
