//! `rltop record --metrics [ADDR:]PORT`: OpenMetrics served while
//! recording (see [`crate::views::metrics`] for what is served).
//!
//! Two threads apart from the recording loop:
//!
//! - the *analysis* thread takes the batches of events the recorder wrote
//!   and runs them through the [`Checker`] and [`Stats`], as `rltop check`
//!   and `rltop report` would on the trace. The recorder hands batches over
//!   with a non-blocking send into a bounded queue: when the analysis falls
//!   behind, the batch is skipped for the metrics (counted, and treated as
//!   a gap), never delaying the recording;
//! - the *server* thread answers HTTP/1.1 `GET /metrics` (any path, in
//!   fact) with the current figures, one connection at a time.
//!
//! A bare port binds to 127.0.0.1: serving to the network must be asked
//! for with an explicit address (e.g. `0.0.0.0:9464`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::analysis::counts::Counts;
use crate::analysis::stats::Stats;
use crate::analysis::{Checker, Config, Engine, Finding};
use crate::events::Event;
use crate::model::{Model, Wait};
use crate::views::metrics::{self, Input};

/// Batches the analysis may lag behind before batches are skipped.
const QUEUE: usize = 256;

/// Where to serve: `PORT` (loopback) or `ADDR:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("--metrics {s:?}: expected PORT or ADDRESS:PORT (e.g. 127.0.0.1:9464)")
    })
}

/// What the analysis thread keeps.
struct Live {
    engine: Engine<(Checker, Stats, Counts)>,
    idx: u64,
}

struct Shared {
    live: Mutex<Live>,
    /// Events skipped (the queue was full).
    skipped: AtomicU64,
    /// The skip count the analysis has already treated as a gap.
    seen_skipped: AtomicU64,
}

/// The metrics endpoint: feed it the recorder's batches.
pub struct Metrics {
    tx: Option<SyncSender<Vec<Event>>>,
    shared: Arc<Shared>,
    addr: SocketAddr,
    analysis: Option<std::thread::JoinHandle<()>>,
}

impl Metrics {
    /// Binds `addr` and starts the two threads; the analyses run over
    /// `model` (made for the recording: its page size, its lock source).
    pub fn start(addr: SocketAddr, model: Model) -> std::io::Result<Metrics> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            live: Mutex::new(Live {
                // A recording starts mid-stream, as `rltop check` knows
                // from the trace header.
                engine: Engine::new(
                    model,
                    (
                        Checker::new(Config {
                            clean_start: false,
                            ..Config::default()
                        }),
                        Stats::new(false),
                        Counts::default(),
                    ),
                ),
                idx: 0,
            }),
            skipped: AtomicU64::new(0),
            seen_skipped: AtomicU64::new(0),
        });
        let (tx, rx) = sync_channel::<Vec<Event>>(QUEUE);
        let s = shared.clone();
        let analysis = std::thread::Builder::new()
            .name("rltop-metrics".into())
            .spawn(move || analyse(&s, rx))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("rltop-http".into())
            .spawn(move || serve(&s, listener))?;
        Ok(Metrics {
            tx: Some(tx),
            shared,
            addr,
            analysis: Some(analysis),
        })
    }

    /// The address actually bound (a port of 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Hands a batch over without ever blocking; a batch the analysis has
    /// no room for is skipped and counted.
    pub fn offer(&self, batch: &[Event]) {
        if batch.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(batch.to_vec()) {
            Ok(()) => {}
            Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                self.shared
                    .skipped
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every batch handed over so far has been analysed (tests,
    /// and the final figures before exit). The server keeps serving.
    pub fn drain(&mut self) {
        self.tx = None;
        if let Some(h) = self.analysis.take() {
            let _ = h.join();
        }
    }

    /// The document a scrape gets now.
    pub fn render(&self) -> String {
        render(&self.shared)
    }
}

fn analyse(s: &Shared, rx: Receiver<Vec<Event>>) {
    for batch in rx {
        let mut l = s.live.lock().unwrap_or_else(|e| e.into_inner());
        let skipped = s.skipped.load(Ordering::Relaxed);
        if skipped != s.seen_skipped.swap(skipped, Ordering::Relaxed) {
            // Events were skipped before this batch: a gap.
            let idx = l.idx;
            l.engine.gap(idx);
        }
        let Live { engine, idx } = &mut *l;
        for ev in &batch {
            engine.event(*idx, ev);
            *idx += 1;
        }
    }
}

fn render(s: &Shared) -> String {
    let l = s.live.lock().unwrap_or_else(|e| e.into_inner());
    let (checker, stats, counts) = l.engine.analysis();
    let model = l.engine.model();
    let findings: Vec<&Finding> = checker.standing().collect();
    let mut waiting = [0; 4];
    for t in model.tasks.values() {
        match t.waiting {
            Some(Wait::Range { .. }) => waiting[0] += 1,
            Some(Wait::Mmap { .. }) => waiting[1] += 1,
            Some(Wait::File { lock, .. }) => {
                waiting[2 + lock.class as usize] += 1;
            }
            None => {}
        }
    }
    metrics::openmetrics(&Input {
        stats,
        events_by_kind: &counts.by_kind,
        lost: model.lost,
        skipped: s.skipped.load(Ordering::Relaxed),
        findings: &findings,
        suppressed: checker.suppressed(),
        waiting,
    })
}

fn serve(s: &Shared, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        // A client that stalls is dropped; the recorder never waits for it.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = respond(s, conn);
    }
}

fn respond(s: &Shared, mut conn: TcpStream) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    r.read_line(&mut request)?;
    // The rest of the head, up to the blank line.
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(s),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "rltop serves /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}
