//! The `.rlt` trace file format, version 1 (byte layout in
//! `docs/trace-format.md`).
//!
//! A trace is a small JSON header followed by independent zstd-compressed
//! chunks of compactly encoded events. Every chunk carries a CRC and decodes
//! on its own, so a corrupt chunk costs only its own events: the reader
//! reports it as a [`Problem`], scans forward to the next chunk magic and
//! goes on. A recorder killed mid-write leaves at worst a truncated last
//! chunk, which is reported and ends the stream.
//!
//! - [`TraceWriter`] writes a trace (mode 0600, never through a symlink).
//! - [`TraceReader`] reads one, yielding [`Item`]s: events and problems.
//! - [`open_events`] opens either a trace or a JSONL file, for commands that
//!   take both.

mod codec;
mod reader;
mod writer;

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::Event;
use crate::events::jsonl::{JsonlError, JsonlReader};

pub use codec::{DecodeError, MAX_STRING};
pub use reader::TraceReader;
pub use writer::{TraceWriter, create_private};

/// File magic: the first 8 bytes of every trace.
pub const MAGIC: [u8; 8] = *b"RLTRACE\0";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Chunk magic: the first 4 bytes of every chunk, what resync scans for.
pub const CHUNK_MAGIC: [u8; 4] = *b"RLCK";
/// Bytes of a chunk header: magic, compressed len, raw len, count, first ts, crc.
pub const CHUNK_HEADER_LEN: usize = 28;
/// Largest header JSON accepted.
pub const MAX_HEADER: u32 = 1 << 20;
/// Largest compressed or raw chunk payload accepted.
pub const MAX_CHUNK: u32 = 64 << 20;
/// The writer closes a chunk after this many events...
pub const CHUNK_EVENTS: u32 = 65536;
/// ...or once its raw payload reaches this size (keeps chunks far below
/// [`MAX_CHUNK`] even with long strings).
pub const CHUNK_RAW_TARGET: usize = 8 << 20;

/// What a trace says about itself, stored as JSON in the file header.
/// Unknown JSON fields are ignored, so later versions can add fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceHeader {
    pub version: u32,
    /// `uname -r` of the traced kernel ("" when not recorded live).
    pub kernel_release: String,
    pub host: String,
    /// Clock of the event timestamps: "monotonic".
    pub clock: String,
    /// The probes that were attached.
    pub probes: Vec<String>,
    pub profile: String,
    /// Range lock flavour, when known.
    pub flavour: Option<String>,
    pub start_realtime_ns: Option<u64>,
    pub start_monotonic_ns: Option<u64>,
    /// What made the trace: "record", "import", "simulate", ...
    pub source: String,
    /// Page size of the traced kernel in bytes (`sysconf(_SC_PAGESIZE)` at
    /// recording start); absent means 4096.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    /// Which source fed the `file_lock_*` events (issue 14): "fentry",
    /// "kprobe", "xfs_ilock", "lockdep" or "none"; absent in older traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_source: Option<String>,
    /// `record -- CMD`: the command line. Its process tree is in the trace
    /// as `fork` events, and the views show its tasks (issue 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

impl Default for TraceHeader {
    fn default() -> TraceHeader {
        TraceHeader {
            version: VERSION,
            kernel_release: String::new(),
            host: "unknown".into(),
            clock: "monotonic".into(),
            probes: Vec::new(),
            profile: String::new(),
            flavour: None,
            start_realtime_ns: None,
            start_monotonic_ns: None,
            source: String::new(),
            page_size: None,
            lock_source: None,
            command: None,
        }
    }
}

impl TraceHeader {
    /// Whether the trace may hold a command's process tree (`fork`
    /// events), so the views look for one: a recording of a command, or
    /// events from JSONL, which say nothing of themselves beforehand.
    pub fn may_have_command(&self) -> bool {
        self.command.is_some() || matches!(self.source.as_str(), "jsonl" | "import")
    }

    /// A header with defaults and the given source.
    pub fn new(source: &str) -> TraceHeader {
        TraceHeader {
            source: source.into(),
            ..TraceHeader::default()
        }
    }
}

/// Totals of a [`TraceWriter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Events written to the file (flushed).
    pub events: u64,
    /// Events buffered, not yet written.
    pub pending: u64,
    /// Bytes in the file.
    pub bytes: u64,
    pub chunks: u64,
}

/// A damaged part of a trace that the reader skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// File offset where the damage starts.
    pub offset: u64,
    /// What is wrong and what was done, e.g. "chunk at byte 812: crc
    /// mismatch, skipped".
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What reading a trace yields: events in file order, and problems where
/// they were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    Problem(Problem),
}

/// Errors opening, writing or reading traces. Messages are one line for
/// people: what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to write {}: it is a symbolic link; give the path of a regular file", path.display())]
    Symlink { path: PathBuf },
    #[error("refusing to write {}: not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error(
        "refusing to write {}: its directory {} is writable by other users, who could plant a file or link there; write elsewhere or pass --force",
        path.display(),
        dir.display()
    )]
    SharedDir { path: PathBuf, dir: PathBuf },
    #[error(
        "{name} is not an rltop trace (bad magic); record one with `rltop record -o FILE` or build one with `rltop import`"
    )]
    NotATrace { name: String },
    #[error(
        "{name} is empty, not an rltop trace; record one with `rltop record -o FILE` or build one with `rltop import`"
    )]
    Empty { name: String },
    #[error(
        "{name} is trace format version {version}, but this rltop reads only version {VERSION}; use a newer rltop"
    )]
    UnsupportedVersion { name: String, version: u32 },
    #[error("{name}: corrupt trace header: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("{name}: read error at byte {offset}: {source}")]
    Read {
        name: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(
        "event string is {len} bytes; traces hold strings up to {} bytes",
        MAX_STRING
    )]
    StringTooLong { len: usize },
    #[error("{name}: {source}")]
    Jsonl {
        name: String,
        #[source]
        source: JsonlError,
    },
}

/// Events from a trace or a JSONL file; see [`open_events`].
pub enum Events {
    Trace(TraceReader<File>),
    Jsonl {
        name: String,
        reader: JsonlReader<BufReader<File>>,
        header: TraceHeader,
        done: bool,
    },
}

impl Events {
    /// The trace header; for JSONL input a default one with source "jsonl".
    pub fn header(&self) -> &TraceHeader {
        match self {
            Events::Trace(r) => r.header(),
            Events::Jsonl { header, .. } => header,
        }
    }
}

impl Events {
    /// Moves up to `max` next items into `out`; false at the end.
    pub fn next_batch(&mut self, out: &mut Vec<Result<Item, TraceError>>, max: usize) -> bool {
        match self {
            Events::Trace(r) => r.next_batch(out, max),
            Events::Jsonl { .. } => match self.next() {
                Some(item) => {
                    out.push(item);
                    true
                }
                None => false,
            },
        }
    }
}

impl Iterator for Events {
    type Item = Result<Item, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Events::Trace(r) => r.next(),
            Events::Jsonl {
                name, reader, done, ..
            } => {
                if *done {
                    return None;
                }
                match reader.next()? {
                    Ok(ev) => Some(Ok(Item::Event(ev))),
                    Err(source) => {
                        // JSONL is strict: the first bad line ends the stream.
                        *done = true;
                        Some(Err(TraceError::Jsonl {
                            name: name.clone(),
                            source,
                        }))
                    }
                }
            }
        }
    }
}

/// Events decoded on a thread of their own, handed over in batches: the
/// analyses run while the next chunks decompress, so on two cores a
/// stream costs the slower of decoding and analysis, not their sum. Same
/// items in the same order as the [`Events`] it wraps.
pub struct ReadAhead {
    header: TraceHeader,
    rx: std::sync::mpsc::Receiver<Vec<Result<Item, TraceError>>>,
    batch: std::vec::IntoIter<Result<Item, TraceError>>,
}

/// Items per hand-over: large enough that the channel costs nothing per
/// event, small enough to stay in cache.
const READ_AHEAD_BATCH: usize = 4096;
/// Batches in flight: bounds memory whatever the trace length.
const READ_AHEAD_DEPTH: usize = 4;

impl ReadAhead {
    pub fn new(events: Events) -> ReadAhead {
        let header = events.header().clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD_DEPTH);
        std::thread::spawn(move || {
            let mut events = events;
            let mut batch = Vec::with_capacity(READ_AHEAD_BATCH);
            loop {
                let room = READ_AHEAD_BATCH - batch.len();
                if !events.next_batch(&mut batch, room) {
                    break;
                }
                if batch.len() >= READ_AHEAD_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_AHEAD_BATCH));
                    if tx.send(full).is_err() {
                        return; // The reader went away.
                    }
                }
            }
            let _ = tx.send(batch);
        });
        ReadAhead {
            header,
            rx,
            batch: Vec::new().into_iter(),
        }
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }
}

impl Iterator for ReadAhead {
    type Item = Result<Item, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.batch.next() {
                return Some(item);
            }
            self.batch = self.rx.recv().ok()?.into_iter();
        }
    }
}

/// Opens `path` as a trace, or as JSONL when its first non-blank byte is `{`.
pub fn open_events(path: &Path) -> Result<Events, TraceError> {
    let io_err = |source| TraceError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut head = [0u8; 4096];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    file.rewind().map_err(io_err)?;
    let first = head[..n].iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Ok(Events::Jsonl {
            name: path.display().to_string(),
            reader: JsonlReader::new(BufReader::with_capacity(1 << 16, file)),
            header: TraceHeader::new("jsonl"),
            done: false,
        });
    }
    TraceReader::from_reader(file, path.display().to_string()).map(Events::Trace)
}
