//! `rltop` with no sub-command, live (root). On a terminal it runs the TUI
//! (see [`crate::views::tui`]): the probe session and the analyses run on
//! the pipeline thread, the drawing on this one. With `--text`, or when
//! stdout is not a terminal, it streams the events it sees as text, one per
//! line (the `rltop dump --format text` form), and a summary with drop
//! counts when stopped with Ctrl-C.

use std::io::{self, IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::out::Stdout;
use crate::analysis::Config;
use crate::cli::LiveArgs;
use crate::events::text::TextWriter;
use crate::model::Model;
use crate::probe::{self, Options, Session};
use crate::signals;
use crate::term::{self as ui, FRAME, Shared};
use crate::views::tui::pipeline::Pipeline;
use crate::views::tui::snapshot::Status;

pub fn run(live: &LiveArgs, text: bool) -> anyhow::Result<ExitCode> {
    let opts = live.options()?;
    probe::check_privileges("rltop")?;
    if text || !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        return run_text(&opts);
    }
    run_tui(opts)
}

/// The TUI. The session is started on the pipeline thread (it stays
/// there); start-up errors come back before the terminal is taken over.
fn run_tui(opts: Options) -> anyhow::Result<ExitCode> {
    let shared = Arc::new(Shared::default());
    let (started_tx, started_rx) = mpsc::channel::<anyhow::Result<Vec<String>>>();
    let worker = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("rltop-pipeline".into())
            .spawn(move || {
                let mut session = match Session::start(&opts) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(session.not_attached()));
                let status = Status {
                    source: "live".into(),
                    profile: opts.profile.clone(),
                    probes: Some((
                        session.attached().len(),
                        session.attached().len() + session.not_attached().len(),
                    )),
                    ..Status::default()
                };
                if let Err(e) = pipeline(&mut session, &shared, status) {
                    shared.fail(format!("{e:#}"));
                }
            })?
    };
    let not_attached = match started_rx.recv() {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            let _ = worker.join();
            return Err(e);
        }
        Err(_) => {
            let _ = worker.join();
            return Err(crate::user_error(
                "the probe session ended before it started",
            ));
        }
    };
    let result = ui::run(&shared, None).map_err(ui::to_anyhow);
    let _ = worker.join();
    for line in not_attached {
        eprintln!("rltop: warning: not attached: {line}");
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// The pipeline thread: events from the kernel into the analyses, a
/// snapshot per frame, until the user quits.
fn pipeline(session: &mut Session, shared: &Shared, status: Status) -> anyhow::Result<()> {
    // A live trace starts mid-stream: locks may be held already.
    let cfg = Config {
        clean_start: false,
        ..Config::default()
    };
    let mut model = Model::new(None);
    model.set_page_size(Some(crate::probe::page_size()));
    model.set_lock_source(Some(session.lock_source.as_str()));
    let mut p = Pipeline::new(model, cfg);
    let mut last_drops = Instant::now();
    let mut last_frame: Option<Instant> = None;
    let mut paths = crate::probe::paths::Resolver::start();
    let mut last_paths = Instant::now();
    while !shared.quitting() {
        // Short polls while events flow keep frames on time; the session
        // sleeps inside poll when the kernel is quiet.
        session.poll(FRAME, &mut |ev| p.event(ev))?;
        if last_drops.elapsed() >= Duration::from_secs(1) {
            session.lost_events()?;
            last_drops = Instant::now();
        }
        if last_paths.elapsed() >= Duration::from_secs(1) {
            ask_paths(&mut paths, p.model());
            last_paths = Instant::now();
        }
        if paths.poll() {
            p.set_paths(Arc::new(paths.paths().clone()));
        }
        if last_frame.is_none_or(|t| t.elapsed() >= FRAME) {
            let now = probe::monotonic_ns();
            shared.publish(p.snapshot_at(status.clone(), Some(now)));
            last_frame = Some(Instant::now());
        }
    }
    Ok(())
}

/// Asks for the paths of the files in the model, among the open files of
/// the tasks traced.
fn ask_paths(r: &mut crate::probe::paths::Resolver, m: &Model) {
    let files = m
        .tree_files
        .values()
        .copied()
        .chain(m.dios.values().map(|d| (d.dev, d.ino)))
        .chain(m.punches.values().map(|p| (p.dev, p.ino)));
    let mut pids: Vec<u32> = m.tasks.values().map(|t| t.pid).filter(|&p| p > 0).collect();
    pids.sort_unstable();
    pids.dedup();
    r.ask(files, &pids);
}

/// The text stream.
fn run_text(opts: &Options) -> anyhow::Result<ExitCode> {
    let mut session = Session::start(opts)?;
    for line in session.not_attached() {
        eprintln!("rltop: warning: not attached: {line}");
    }
    eprintln!(
        "rltop: {} probes attached; streaming events, Ctrl-C to stop",
        session.attached().len()
    );
    signals::install_stop_handlers();

    let mut out = Stdout::new("live");
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
    // `sudo rltop | head` ends here.
    out.finish(failed.map_or(Ok(()), Err))?;
    eprintln!("rltop: {events} events, {lost} lost");
    Ok(ExitCode::SUCCESS)
}
