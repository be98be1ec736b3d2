//! The drawing thread: waits for a key or the next frame tick, draws the
//! newest snapshot when it changed (at most ~20 frames a second), and sends
//! replay controls to the pipeline thread. It never touches the model, so a
//! busy pipeline cannot make keys slow, and an idle one costs a wake-up per
//! tick and no drawing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};

mod guard;

use crate::signals;
use crate::views::tui::app::{Action, AppState, Control, handle_key};
use crate::views::tui::render::render;
use crate::views::tui::snapshot::Snapshot;
use guard::Term;

/// Frame period: the most often a new snapshot is drawn.
pub const FRAME: Duration = Duration::from_millis(50);

/// What the pipeline thread and the drawing thread share.
#[derive(Default)]
pub struct Shared {
    snap: Mutex<Arc<Snapshot>>,
    generation: AtomicU64,
    /// The user quit: the pipeline thread stops.
    pub quit: AtomicBool,
    /// The pipeline stopped on an error: the TUI ends and prints it.
    error: Mutex<Option<String>>,
}

impl Shared {
    pub fn publish(&self, s: Snapshot) {
        let new = Arc::new(s);
        let old = std::mem::replace(
            &mut *self.snap.lock().unwrap_or_else(|p| p.into_inner()),
            new,
        );
        self.generation.fetch_add(1, Ordering::Release);
        // A big snapshot is freed here, not while the drawing thread waits
        // for the lock.
        drop(old);
    }

    pub fn latest(&self) -> (u64, Arc<Snapshot>) {
        let g = self.generation.load(Ordering::Acquire);
        (
            g,
            self.snap.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        )
    }

    pub fn fail(&self, msg: String) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn quitting(&self) -> bool {
        self.quit.load(Ordering::Relaxed)
    }
}

/// Why the TUI stopped other than by the user's wish.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// The pipeline thread stopped on this error (one line for people).
    #[error("{0}")]
    Pipeline(String),
}

/// Runs the TUI until `q`, Ctrl-C, SIGTERM or a pipeline error (returned).
/// `controls` is the replay control channel (`None` live).
pub fn run(shared: &Shared, controls: Option<&Sender<Control>>) -> Result<(), TuiError> {
    signals::install_stop_handlers();
    let result = draw_loop(shared, controls);
    shared.quit.store(true, Ordering::Relaxed);
    result?;
    match shared.error() {
        Some(e) => Err(TuiError::Pipeline(e)),
        None => Ok(()),
    }
}

/// The edge's view of a [`TuiError`]: a pipeline error is the user's to
/// act on (one line, exit 2), a terminal error is ours.
pub fn to_anyhow(e: TuiError) -> anyhow::Error {
    match e {
        TuiError::Pipeline(m) => crate::user_error(m),
        e => anyhow::Error::new(e),
    }
}

fn draw_loop(shared: &Shared, controls: Option<&Sender<Control>>) -> Result<(), TuiError> {
    let mut term = Term::enter()?;
    let mut app = AppState::new(controls.is_some());
    let mut drawn: Option<u64> = None;
    let mut dirty = true;
    loop {
        if signals::stop_requested() || shared.error().is_some() {
            return Ok(());
        }
        let (generation, snap) = shared.latest();
        if dirty || drawn != Some(generation) {
            term.terminal.draw(|f| render(f, &snap, &app))?;
            drawn = Some(generation);
            dirty = false;
        }
        // Blocks until a key or the next tick: no busy loop.
        if !event::poll(FRAME)? {
            continue;
        }
        match event::read()? {
            Event::Key(k) => {
                dirty = true;
                match handle_key(&mut app, k, &snap) {
                    Action::None => {}
                    Action::Quit => return Ok(()),
                    Action::Control(c) => {
                        if let Some(tx) = controls {
                            // The pipeline thread gone means it ended; the
                            // next frame shows why.
                            let _ = tx.send(c);
                        }
                    }
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}
