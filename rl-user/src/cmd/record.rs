//! `rltop record -o FILE [--duration SECS] [-- CMD ARGS...]`: live events
//! into a trace file, until Ctrl-C (SIGINT or SIGTERM), the duration, or CMD
//! exits. The file is flushed at least every second, so a recorder killed
//! with SIGKILL leaves a readable trace up to its last flush.
//!
//! With `--metrics [ADDR:]PORT`, OpenMetrics are served meanwhile from the
//! same events (see [`crate::serve`]), on threads apart from this loop.
//!
//! Exit status: 2 when recording could not start or a write failed; else
//! CMD's exit status when a command was run (128 + signal if it was killed),
//! so `rltop record -o run.rlt -- ./check -g quick` fails when `check` does.

use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::cli::{LiveArgs, RecordArgs};
use crate::events::Event;
use crate::probe::{self, Session};
use crate::signals;
use crate::trace::{TraceHeader, TraceWriter};
use crate::user_error;

/// How often the file is flushed (the crash-safety promise is once a second).
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How long one poll of the ring buffer waits for a wake-up. Records are
/// submitted without wake-ups until the ring fills past a threshold, so this
/// bounds their latency.
const POLL: Duration = Duration::from_millis(50);

/// This machine's kernel release and host name (uname).
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname to write into.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.release), s(&u.nodename))
}

#[allow(clippy::too_many_lines)] // the recording loop and its set-up, in order
pub fn run(live: &LiveArgs, a: &RecordArgs, force: bool) -> anyhow::Result<ExitCode> {
    let (output, duration, probe_cost, metrics, argv) = (
        a.output.as_path(),
        a.duration,
        a.probe_cost,
        a.metrics.as_deref(),
        a.cmd.as_slice(),
    );
    let opts = live.options()?;
    let metrics_addr = metrics
        .map(crate::serve::parse_addr)
        .transpose()
        .map_err(user_error)?;
    let duration = match duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            return Err(user_error(
                "--duration must be a positive number of seconds",
            ));
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    probe::check_privileges("rltop record")?;

    let mut session = Session::start(&opts)?;
    if session.mounted_tracefs {
        eprintln!("rltop: mounted tracefs at {}", probe::tracefs::TRACEFS);
    }
    if session.detection.contains("NOT traced") {
        // Range-lock functions are there and none is traced: loudly.
        eprintln!("rltop: warning: {}", session.detection);
    } else {
        eprintln!("rltop: {}", session.detection);
    }
    for n in &session.notes {
        eprintln!("rltop: {n}");
    }
    for line in session.not_attached() {
        eprintln!("rltop: warning: not attached: {line}");
    }

    let (kernel_release, host) = uname();
    let header = TraceHeader {
        kernel_release,
        host,
        probes: session.attached(),
        profile: session.profile.clone(),
        flavour: session.flavour.clone(),
        start_realtime_ns: Some(probe::realtime_ns()),
        start_monotonic_ns: Some(probe::monotonic_ns()),
        source: "record".into(),
        page_size: Some(probe::page_size()),
        lock_source: Some(session.lock_source.as_str().into()),
        command: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        ..TraceHeader::default()
    };
    // Before the trace file: a port in use leaves no file behind.
    let metrics = match metrics_addr {
        None => None,
        Some(a) => {
            let m = crate::serve::Metrics::start(a, super::model_for(&header, None))
                .map_err(|e| user_error(format!("--metrics: cannot listen on {a}: {e}")))?;
            if !m.addr().ip().is_loopback() {
                eprintln!(
                    "rltop: warning: metrics are served beyond this machine on {}",
                    m.addr()
                );
            }
            eprintln!("rltop: serving OpenMetrics on http://{}/metrics", m.addr());
            Some(m)
        }
    };
    let mut writer = TraceWriter::create_forced(output, &header, force)
        .map_err(|e| user_error(format!("cannot create the trace: {e}")))?;

    let cost_accounting = if probe_cost {
        Some(session.enable_cost_accounting()?)
    } else {
        None
    };
    signals::install_stop_handlers();
    let mut child = match argv.split_first() {
        None => None,
        Some((prog, args)) => Some(
            std::process::Command::new(prog)
                .args(args)
                .spawn()
                .map_err(|e| user_error(format!("cannot run {prog}: {e}")))?,
        ),
    };
    eprintln!(
        "rltop: recording {} probes to {}{}",
        session.attached().len(),
        output.display(),
        if child.is_some() {
            ""
        } else {
            "; Ctrl-C to stop"
        }
    );

    let started = Instant::now();
    let mut costs = Vec::new();
    let result = record_loop(
        &mut session,
        &mut writer,
        &mut child,
        started,
        duration,
        metrics.as_ref(),
        &mut |s| {
            if cost_accounting.is_some() {
                costs = s.costs();
            }
        },
    );
    let child_status = stop_child(&mut child);
    match result {
        Ok(lost) => {
            let stats = writer
                .finish()
                .with_context(|| format!("finishing {}", output.display()))?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "rltop: {} events ({lost} lost) in {secs:.1} s, {} bytes ({:.1} bytes/event) -> {}",
                stats.events,
                stats.bytes,
                if stats.events > 0 {
                    stats.bytes as f64 / stats.events as f64
                } else {
                    0.0
                },
                output.display()
            );
            if !session.missed_by_probe.is_empty() {
                eprintln!(
                    "rltop: of those lost, missed in the kernel (marked as gaps in the trace): {}",
                    crate::views::report::probe_counts(&session.missed_by_probe)
                );
            }
            if let Some(fit) = &session.fit
                && let Some(why) = &fit.unfit
            {
                eprintln!(
                    "rltop: error: range locks NOT recorded ({} events dropped): {why}",
                    fit.dropped
                );
            }
            if session.trimmed > 0 {
                eprintln!(
                    "rltop: left out {} events from while probes were being attached or detached \
                     (a partly traced stretch: requests without their acquisitions)",
                    session.trimmed
                );
            }
            if cost_accounting.is_some() {
                let (runs, ns) = costs
                    .iter()
                    .fold((0u64, 0f64), |(r, t), c| (r + c.1, t + c.1 as f64 * c.2));
                for (name, n, mean) in costs.iter().filter(|c| c.1 > 0) {
                    eprintln!("rltop: probe cost: {name}: {n} runs, {mean:.0} ns/run");
                }
                eprintln!(
                    "rltop: probe cost: all probes: {runs} runs, {:.0} ns/run",
                    ns / runs.max(1) as f64
                );
            }
            Ok(child_status.unwrap_or(ExitCode::SUCCESS))
        }
        Err(e) => {
            // Whatever was flushed before the failure stays readable.
            Err(user_error(format!(
                "recording to {} stopped: {}; events flushed before this are still readable",
                output.display(),
                crate::one_line(&e)
            )))
        }
    }
}

/// Reads the ring buffer into the writer until told to stop. Returns the
/// number of lost events.
fn record_loop(
    session: &mut Session,
    writer: &mut TraceWriter,
    child: &mut Option<Child>,
    started: Instant,
    duration: Option<Duration>,
    metrics: Option<&crate::serve::Metrics>,
    before_stop: &mut impl FnMut(&Session),
) -> anyhow::Result<u64> {
    let mut last_flush = Instant::now();
    let mut lost = 0;
    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    loop {
        session.poll(POLL, &mut |ev| batch.push(ev))?;
        let stop = signals::stop_requested()
            || duration.is_some_and(|d| started.elapsed() >= d)
            || child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        let flush = stop || last_flush.elapsed() >= FLUSH_EVERY;
        if flush {
            lost += session.lost_events()?;
        }
        if stop {
            before_stop(session);
            // Detach, then everything still staged or in the ring.
            session.finish(&mut |ev| batch.push(ev))?;
        }
        for ev in &batch {
            writer.push(ev).context("writing the trace")?;
        }
        if let Some(m) = metrics {
            m.offer(&batch);
        }
        batch.clear();
        if flush {
            writer.flush().context("writing the trace")?;
            last_flush = Instant::now();
        }
        if stop {
            return Ok(lost);
        }
    }
}

/// Ends the traced command if it still runs, and returns its exit status.
fn stop_child(child: &mut Option<Child>) -> Option<ExitCode> {
    let c = child.as_mut()?;
    if matches!(c.try_wait(), Ok(None)) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    let status = c.wait().ok()?;
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Some(ExitCode::from(code.clamp(0, 255) as u8))
}
