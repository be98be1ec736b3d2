//! The player: a trace (or the simulator) fed to the TUI in trace time,
//! with play/pause, speed, step, seek and "run to the next finding"
//! (`rltop replay`, `rltop demo`).
//!
//! The [`Player`] runs on the pipeline thread: it reads events from a
//! [`Source`] as the playback clock reaches them, runs them through the
//! [`Pipeline`], and publishes a snapshot at most every frame. It processes
//! events in bounded slices (a few milliseconds), checking the controls in
//! between, so the TUI stays responsive at any event rate; paused or at the
//! end it blocks on the control channel and uses no CPU. `rltop demo` plays
//! a generated stream through the same player.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::analysis::Config;
use crate::analysis::scope::{Scope, ScopeFilter};
use crate::events::Event;
use crate::model::{Flavour, Model};
use crate::term::{self as ui, FRAME, Shared};
use crate::trace::{self, Item};
use crate::views::tui::app::Control;
use crate::views::tui::pipeline::Pipeline;
use crate::views::tui::snapshot::{Play, Snapshot, Status};

/// Where a player's events come from.
pub trait Source: Send {
    /// The next event, a problem (a damaged part: a gap), or the end.
    fn next(&mut self) -> Option<anyhow::Result<Item>>;
    /// Starts again from the first event; `false` when it cannot (a
    /// generated stream): seeking backwards is then refused.
    fn restart(&mut self) -> anyhow::Result<bool>;
    /// Timestamp of the last event, once known.
    fn end(&mut self) -> Option<u64> {
        None
    }
}

/// A trace file (or JSONL), reopened to seek backwards. Its end time comes
/// from a scan on another thread, so playback starts at once.
pub struct FileSource {
    path: PathBuf,
    events: trace::Events,
    end: Option<u64>,
    end_rx: Option<Receiver<u64>>,
}

impl FileSource {
    /// The trace's header.
    pub fn header(&self) -> &trace::TraceHeader {
        self.events.header()
    }

    pub fn open(path: &Path) -> anyhow::Result<FileSource> {
        let events = trace::open_events(path).map_err(|e| crate::user_error(e.to_string()))?;
        let (tx, rx) = mpsc::channel();
        let scan = path.to_owned();
        std::thread::spawn(move || {
            let Ok(events) = trace::open_events(&scan) else {
                return;
            };
            let last = events
                .filter_map(|i| match i {
                    Ok(Item::Event(e)) => Some(e.ts),
                    _ => None,
                })
                .max();
            if let Some(t) = last {
                let _ = tx.send(t);
            }
        });
        Ok(FileSource {
            path: path.to_owned(),
            events,
            end: None,
            end_rx: Some(rx),
        })
    }
}

impl Source for FileSource {
    fn next(&mut self) -> Option<anyhow::Result<Item>> {
        Some(
            self.events
                .next()?
                .map_err(|e| crate::user_error(e.to_string())),
        )
    }

    fn restart(&mut self) -> anyhow::Result<bool> {
        self.events =
            trace::open_events(&self.path).map_err(|e| crate::user_error(e.to_string()))?;
        Ok(true)
    }

    fn end(&mut self) -> Option<u64> {
        if self.end.is_none()
            && let Some(rx) = &self.end_rx
            && let Ok(t) = rx.try_recv()
        {
            self.end = Some(t);
            self.end_rx = None;
        }
        self.end
    }
}

/// How the player was set up.
pub struct PlayerConfig {
    pub status: Status,
    pub flavour: Option<Flavour>,
    /// The trace's page size and lock source (its header), for the model.
    pub page_size: Option<u64>,
    pub lock_source: Option<String>,
    pub cfg: Config,
    pub speed: f64,
    pub paused: bool,
    /// Shorten a wait for the next event to this much wall time (the
    /// demo: the simulator's threads idle when the scheduler delays them).
    pub max_idle: Option<Duration>,
    /// A recording of a command: the tasks shown, and `--all-tasks`.
    pub scope: Option<(Scope, bool)>,
}

impl PlayerConfig {
    /// A model for the trace this plays.
    fn model(&self) -> Model {
        let mut m = Model::new(self.flavour);
        m.set_page_size(self.page_size);
        m.set_lock_source(self.lock_source.as_deref());
        m
    }

    /// A pipeline from the start of the trace.
    fn pipeline(&self) -> Pipeline {
        let p = Pipeline::new(self.model(), self.cfg);
        match &self.scope {
            Some((s, all)) => p.with_scope(ScopeFilter::new(s.clone()), *all),
            None => p,
        }
    }
}

/// Where playback is heading besides "follow the clock".
#[derive(Clone, Copy, Debug, PartialEq)]
enum Goal {
    /// One event.
    Step,
    /// Trace time (ns from the first event).
    Seek(u64),
    /// Until there are more findings than this.
    Finding(usize),
}

/// Longest slice of work between two looks at the controls.
const SLICE: Duration = Duration::from_millis(15);
/// Slowest and fastest playback.
const SPEEDS: (f64, f64) = (1.0 / (1 << 20) as f64, (1 << 20) as f64);

pub struct Player<S: Source> {
    source: S,
    pc: PlayerConfig,
    pipeline: Option<Pipeline>,
    /// The last snapshot, kept once the stream ended (the pipeline is then
    /// consumed by its verdict).
    last: Option<Snapshot>,
    /// The next event, read but not yet due.
    pending: Option<Event>,
    paused: bool,
    speed: f64,
    goal: Option<Goal>,
    /// Playback clock: trace time `anchor_ts` at wall time `anchor_at`.
    anchor_ts: Option<u64>,
    anchor_at: Instant,
    first_ts: Option<u64>,
    finished: bool,
    seekable: bool,
    note: Option<String>,
    published: Option<Instant>,
    /// Something changed since the last snapshot.
    dirty: bool,
}

impl<S: Source> Player<S> {
    pub(crate) fn new(source: S, pc: PlayerConfig) -> Player<S> {
        let pipeline = pc.pipeline();
        Player {
            source,
            paused: pc.paused,
            speed: pc.speed.clamp(SPEEDS.0, SPEEDS.1),
            pc,
            pipeline: Some(pipeline),
            last: None,
            pending: None,
            goal: None,
            anchor_ts: None,
            anchor_at: Instant::now(),
            first_ts: None,
            finished: false,
            seekable: true,
            note: None,
            published: None,
            dirty: true,
        }
    }

    /// The current trace time of the playback clock.
    fn clock(&self) -> Option<u64> {
        let a = self.anchor_ts?;
        let dt = self.anchor_at.elapsed().as_secs_f64() * self.speed;
        Some(a.saturating_add((dt * 1e9) as u64))
    }

    fn reanchor(&mut self) {
        let now = self.pipeline.as_ref().and_then(|p| {
            let m = p.model();
            (m.events > 0).then_some(m.now)
        });
        self.anchor_ts = now
            .or(self.pending.as_ref().map(|e| e.ts))
            .or(self.first_ts);
        self.anchor_at = Instant::now();
    }

    fn status(&mut self) -> Status {
        let mut s = self.pc.status.clone();
        s.play = Some(Play {
            paused: self.paused,
            speed: self.speed,
            finished: self.finished,
            seekable: self.seekable,
        });
        if let (Some(end), Some(first)) = (self.source.end(), self.first_ts) {
            s.end = Some(end.saturating_sub(first));
        }
        s.note = self.note.clone();
        s
    }

    fn publish(&mut self, shared: &Shared) {
        let status = self.status();
        let snap = match (&mut self.pipeline, &mut self.last) {
            (Some(p), _) => p.snapshot(status),
            (None, Some(last)) => {
                let mut s = last.clone();
                s.status.play = status.play;
                s.status.note = status.note;
                s.status.end = status.end;
                s
            }
            (None, None) => Snapshot::default(),
        };
        shared.publish(snap);
        self.published = Some(Instant::now());
        self.dirty = false;
    }

    fn control(&mut self, c: Control) -> anyhow::Result<()> {
        self.note = None;
        match c {
            Control::TogglePause if self.finished => {
                // Play again from the start.
                if self.restart()? {
                    self.paused = false;
                    self.goal = None;
                    self.anchor_ts = None;
                }
            }
            Control::TogglePause => {
                self.paused = !self.paused;
                self.goal = None;
                self.reanchor();
            }
            Control::Speed(f) => {
                self.reanchor();
                self.speed = (self.speed * f).clamp(SPEEDS.0, SPEEDS.1);
            }
            Control::Step => {
                self.paused = true;
                self.goal = Some(Goal::Step);
            }
            Control::NextFinding => {
                let n = self.pipeline.as_ref().map_or(0, |p| p.findings().len());
                self.paused = true;
                self.goal = Some(Goal::Finding(n));
            }
            Control::Seek(t) => {
                self.paused = true;
                let now = self
                    .pipeline
                    .as_ref()
                    .and_then(|p| Some(p.model().now.saturating_sub(p.model().first_ts?)));
                let behind = match now {
                    Some(now) => t < now,
                    None => self.finished,
                };
                if (behind || (self.finished && self.pipeline.is_none())) && !self.restart()? {
                    return Ok(());
                }
                self.goal = Some(Goal::Seek(t));
            }
        }
        Ok(())
    }

    /// Back to the first event with fresh analyses; false (and a note)
    /// when the source cannot.
    fn restart(&mut self) -> anyhow::Result<bool> {
        if !self.source.restart()? {
            self.note = Some("this stream cannot seek backwards".into());
            return Ok(false);
        }
        self.pipeline = Some(self.pc.pipeline());
        self.last = None;
        self.pending = None;
        self.finished = false;
        Ok(true)
    }

    /// Whether an event at `ts` may be processed now.
    fn due(&self, ts: u64) -> bool {
        let first = self.first_ts.unwrap_or(ts);
        match self.goal {
            Some(Goal::Step) | Some(Goal::Finding(_)) => true,
            Some(Goal::Seek(t)) => ts.saturating_sub(first) <= t,
            None if self.paused => false,
            None => self.clock().is_none_or(|c| ts <= c),
        }
    }

    /// The time of the next event, reading one if none is pending. `None`
    /// at the end.
    fn peek(&mut self) -> anyhow::Result<Option<u64>> {
        while self.pending.is_none() {
            match self.source.next() {
                None => return Ok(None),
                Some(Err(e)) => {
                    // A damaged file ends here; what was read stays shown.
                    self.note = Some(e.to_string());
                    return Ok(None);
                }
                Some(Ok(Item::Problem(p))) => {
                    self.note = Some(format!("damaged part skipped: {p}"));
                    if let Some(pl) = &mut self.pipeline {
                        pl.gap();
                    }
                }
                Some(Ok(Item::Event(ev))) => {
                    self.first_ts.get_or_insert(ev.ts);
                    if self.anchor_ts.is_none() {
                        self.anchor_ts = Some(ev.ts);
                        self.anchor_at = Instant::now();
                    }
                    self.pending = Some(ev);
                }
            }
        }
        Ok(self.pending.as_ref().map(|e| e.ts))
    }

    /// Runs due events for at most one slice. Returns how long until the
    /// next event is due (`None`: nothing to wait for, block on controls).
    fn work(&mut self) -> anyhow::Result<Option<Duration>> {
        let start = Instant::now();
        let mut n = 0u32;
        loop {
            if self.pipeline.is_none() {
                return Ok(None);
            }
            let Some(ts) = self.peek()? else {
                // The end: the verdict's findings (stalls, leaks) join.
                let status = self.status();
                if let Some(p) = self.pipeline.take() {
                    self.finished = true;
                    self.paused = true;
                    self.goal = None;
                    let mut status = status;
                    if let Some(pl) = status.play.as_mut() {
                        pl.finished = true;
                        pl.paused = true;
                    }
                    self.last = Some(p.finish(status));
                    self.dirty = true;
                }
                return Ok(None);
            };
            if !self.due(ts) {
                if let Some(Goal::Seek(_)) = self.goal {
                    // Arrived.
                    self.goal = None;
                    self.reanchor();
                }
                if self.paused || self.goal.is_some() {
                    return Ok(None);
                }
                let mut wait = match self.clock() {
                    Some(c) => {
                        let ns = ts.saturating_sub(c) as f64 / self.speed;
                        Duration::from_nanos(ns.min(1e12) as u64)
                    }
                    None => Duration::ZERO,
                };
                if let Some(max) = self.pc.max_idle
                    && wait > max
                {
                    // Move the clock on so the event is due in `max`.
                    let ahead = (max.as_secs_f64() * self.speed * 1e9) as u64;
                    self.anchor_ts = Some(ts.saturating_sub(ahead));
                    self.anchor_at = Instant::now();
                    wait = max;
                }
                return Ok(Some(wait));
            }
            let Some(ev) = self.pending.take() else {
                return Ok(None);
            };
            let pl = self.pipeline.as_mut().expect("checked above");
            pl.event(ev);
            self.dirty = true;
            match self.goal {
                Some(Goal::Step) => {
                    self.goal = None;
                    self.reanchor();
                    return Ok(None);
                }
                Some(Goal::Finding(k)) if pl.findings().len() > k => {
                    self.goal = None;
                    self.reanchor();
                    return Ok(None);
                }
                _ => {}
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) && start.elapsed() >= SLICE {
                return Ok(Some(Duration::ZERO));
            }
        }
    }

    /// The pipeline thread's loop, until the user quits.
    pub(crate) fn run(mut self, shared: &Shared, rx: &Receiver<Control>) {
        while !shared.quitting() {
            let wait = match self.work() {
                Ok(w) => w,
                Err(e) => {
                    shared.fail(format!("{e:#}"));
                    return;
                }
            };
            let frame_due = self.published.is_none_or(|t| t.elapsed() >= FRAME);
            // At most one snapshot a frame while events flow; at once when
            // playback stops (paused, stepped, arrived, ended).
            if self.dirty && (frame_due || wait.is_none()) {
                self.publish(shared);
            }
            // Sleep until the next event is due, a frame is due while
            // playing, or a control arrives; block when nothing is to come.
            let got = match wait {
                Some(d) if d.is_zero() => rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                }),
                Some(d) => rx.recv_timeout(d.min(FRAME)),
                None => rx.recv_timeout(Duration::from_millis(500)),
            };
            match got {
                Ok(c) => {
                    if let Err(e) = self.control(c) {
                        shared.fail(format!("{e:#}"));
                        return;
                    }
                    self.dirty = true;
                    while let Ok(c) = rx.try_recv() {
                        if let Err(e) = self.control(c) {
                            shared.fail(format!("{e:#}"));
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Runs the TUI with a player on its own thread.
pub fn play<S: Source + 'static>(source: S, pc: PlayerConfig) -> anyhow::Result<ExitCode> {
    require_tty()?;
    let shared = std::sync::Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let player = Player::new(source, pc);
    let worker = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("rltop-pipeline".into())
            .spawn(move || player.run(&shared, &rx))?
    };
    let result = ui::run(&shared, Some(&tx)).map_err(ui::to_anyhow);
    shared.quit.store(true, Ordering::Relaxed);
    drop(tx);
    // The player wakes at least twice a second to see `quit`.
    let _ = worker.join();
    result.map(|()| ExitCode::SUCCESS)
}

/// The TUI needs a terminal on stdin and stdout.
pub fn require_tty() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(crate::user_error(
            "the TUI needs a terminal (stdin and stdout are not both a TTY); \
             for batch output use `rltop check`, `rltop report` or `rltop dump`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Body, Mode};

    /// Events from memory, restartable like a file.
    struct VecSource {
        events: Vec<Event>,
        at: usize,
    }

    impl Source for VecSource {
        fn next(&mut self) -> Option<anyhow::Result<Item>> {
            let e = self.events.get(self.at)?.clone();
            self.at += 1;
            Some(Ok(Item::Event(e)))
        }
        fn restart(&mut self) -> anyhow::Result<bool> {
            self.at = 0;
            Ok(true)
        }
    }

    const T: u64 = 0xffff_8880_0000_1000;

    fn ev(ts: u64, tid: u32, body: Body) -> Event {
        Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        }
    }

    /// 1 ms apart: two tasks lock crossing ranges in opposite order (a
    /// deadlock at the fourth request), then a third, unrelated lock.
    fn events() -> Vec<Event> {
        let req = |ts, tid, lock: u32, start| {
            ev(
                ts,
                tid,
                Body::RlRequest {
                    tree: T + u64::from(lock >= 3),
                    lock: u64::from(lock),
                    start,
                    last: start,
                    mode: Mode::Excl,
                },
            )
        };
        let acq = |ts, tid, lock: u32| {
            ev(
                ts,
                tid,
                Body::RlAcquired {
                    tree: T + u64::from(lock >= 3),
                    lock: u64::from(lock),
                },
            )
        };
        vec![
            req(1_000_000, 1, 1, 0),
            acq(2_000_000, 1, 1),
            req(3_000_000, 2, 3, 5),
            acq(4_000_000, 2, 3),
            req(5_000_000, 1, 4, 5),
            req(6_000_000, 2, 2, 0),
            req(7_000_000, 3, 9, 100),
            acq(8_000_000, 3, 9),
        ]
    }

    fn player(paused: bool) -> Player<VecSource> {
        Player::new(
            VecSource {
                events: events(),
                at: 0,
            },
            PlayerConfig {
                status: Status::default(),
                flavour: None,
                page_size: None,
                lock_source: None,
                cfg: Config::default(),
                speed: 1.0,
                paused,
                max_idle: None,
                scope: None,
            },
        )
    }

    fn seen(p: &Player<VecSource>) -> u64 {
        p.pipeline.as_ref().map_or(0, |p| p.events())
    }

    #[test]
    fn paused_player_runs_nothing_and_step_runs_one_event() {
        let mut p = player(true);
        assert_eq!(p.work().unwrap(), None, "paused: nothing to wait for");
        assert_eq!(seen(&p), 0);
        p.control(Control::Step).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 1);
        p.control(Control::Step).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 2);
        assert!(p.paused);
    }

    #[test]
    fn seek_forward_then_back_restarts_from_the_first_event() {
        let mut p = player(true);
        // To 2.5 ms after the first event: the events at 1, 2 and 3 ms.
        p.control(Control::Seek(2_500_000)).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 3);
        assert!(p.paused && p.goal.is_none());
        // Back to 0.5 ms: only the first event.
        p.control(Control::Seek(500_000)).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 1);
    }

    #[test]
    fn next_finding_stops_right_after_the_deadlock() {
        let mut p = player(true);
        p.control(Control::NextFinding).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 6, "the sixth event closes the cycle");
        let f = p.pipeline.as_ref().unwrap().findings();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, crate::analysis::Kind::DEADLOCK);
        assert!(p.paused);
    }

    #[test]
    fn playing_follows_the_clock_and_the_end_keeps_the_last_frame() {
        let mut p = player(false);
        // At 1000x the 7 ms of trace take 7 us: one slice runs them all.
        p.control(Control::Speed(1000.0)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        while p.work().unwrap().is_some() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(p.finished && p.pipeline.is_none());
        let last = p.last.as_ref().expect("the last frame is kept");
        assert_eq!(last.status.events, 8);
        assert!(
            last.findings
                .iter()
                .any(|f| f.finding.kind == crate::analysis::Kind::DEADLOCK)
        );
        // Play at the end starts again from the first event.
        p.control(Control::TogglePause).unwrap();
        assert!(!p.finished && !p.paused);
        assert_eq!(seen(&p), 0);
        while p.work().unwrap().is_some() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(p.finished);
        // Seeking back after the end starts again.
        p.control(Control::Seek(0)).unwrap();
        p.work().unwrap();
        assert_eq!(seen(&p), 1);
        assert!(!p.finished);
    }
}
