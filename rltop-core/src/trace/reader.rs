//! Reading traces, with resync past damaged chunks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::codec::Decoder;
use super::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, Item, MAGIC, MAX_CHUNK, MAX_HEADER, Problem, TraceError,
    TraceHeader, VERSION,
};
use crate::events::Event;

/// Reads start at 64 KiB and double up to 1 MiB: small inputs stay cheap,
/// big files are read in big blocks.
const FIRST_BLOCK: usize = 64 << 10;
const MAX_BLOCK: usize = 1 << 20;

/// A read buffer that can look ahead a whole chunk and be scanned for magic.
struct Source<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    lo: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    block: usize,
}

impl<R: Read> Source<R> {
    fn offset(&self) -> u64 {
        self.base + self.lo as u64
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.lo..]
    }

    fn consume(&mut self, n: usize) {
        self.lo = (self.lo + n).min(self.buf.len());
    }

    /// Makes at least `n` bytes available; false if the input ends first.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() - self.lo < n {
            if self.eof {
                return Ok(false);
            }
            if self.lo > 0 {
                // Drop consumed bytes before growing: memory stays about one
                // chunk, however long the file.
                self.buf.drain(..self.lo);
                self.base += self.lo as u64;
                self.lo = 0;
            }
            let len = self.buf.len();
            let want = (n - len).max(self.block);
            self.block = (self.block * 2).min(MAX_BLOCK);
            self.buf.resize(len + want, 0);
            let got = loop {
                match self.inner.read(&mut self.buf[len..]) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(len);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(len + got);
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(true)
    }
}

/// A validated chunk header.
struct Chunk {
    comp_len: usize,
    raw_len: usize,
    count: u32,
    first_ts: u64,
}

/// What is at the current position.
enum Here {
    Eof,
    /// Not a chunk magic.
    Garbage,
    Chunk(Chunk),
    Corrupt(String),
    /// The chunk runs past the end of the input.
    Truncated {
        have: u64,
        need: u64,
    },
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Reads a trace: the header at open, then [`Item`]s on iteration. Damaged
/// chunks become [`Item::Problem`]s and are skipped; an I/O error is yielded
/// as `Err` and ends the iteration.
pub struct TraceReader<R: Read = File> {
    src: Source<R>,
    name: String,
    header: TraceHeader,
    /// Created at the first chunk.
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    raw: Vec<u8>,
    queue: VecDeque<Item>,
    done: bool,
    events: u64,
    problems: u64,
}

impl TraceReader<File> {
    /// Opens the trace at `path` and reads its header.
    pub fn open(path: &Path) -> Result<TraceReader<File>, TraceError> {
        let file = File::open(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        TraceReader::from_reader(file, path.display().to_string())
    }
}

impl<'a> TraceReader<&'a [u8]> {
    /// Reads a trace from memory (tests, fuzzing).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<TraceReader<&'a [u8]>, TraceError> {
        TraceReader::from_reader(bytes, "<bytes>".into())
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads a trace from `inner`; `name` (a path, usually) appears in
    /// messages.
    pub fn from_reader(inner: R, name: String) -> Result<TraceReader<R>, TraceError> {
        let mut src = Source {
            inner,
            buf: Vec::new(),
            lo: 0,
            base: 0,
            eof: false,
            block: FIRST_BLOCK,
        };
        let header = read_header(&mut src, &name)?;
        Ok(TraceReader {
            src,
            header,
            zstd: None,
            name,
            raw: Vec::new(),
            queue: VecDeque::new(),
            done: false,
            events: 0,
            problems: 0,
        })
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Events yielded so far.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// Problems yielded so far.
    pub fn problems(&self) -> u64 {
        self.problems
    }

    /// Yields only the events, passing each problem to `on_problem`.
    pub fn events(
        self,
        mut on_problem: impl FnMut(&Problem),
    ) -> impl Iterator<Item = Result<Event, TraceError>> {
        self.filter_map(move |item| match item {
            Ok(Item::Event(ev)) => Some(Ok(ev)),
            Ok(Item::Problem(p)) => {
                on_problem(&p);
                None
            }
            Err(e) => Some(Err(e)),
        })
    }

    fn problem(&mut self, offset: u64, message: String) {
        self.problems += 1;
        self.queue
            .push_back(Item::Problem(Problem { offset, message }));
    }

    /// Looks at what starts at the current position, without consuming it.
    fn here(&mut self) -> io::Result<Here> {
        if !self.src.fill(1)? {
            return Ok(Here::Eof);
        }
        let full = self.src.fill(CHUNK_HEADER_LEN)?;
        let a = self.src.avail();
        let m = a.len().min(4);
        if a[..m] != CHUNK_MAGIC[..m] {
            return Ok(Here::Garbage);
        }
        if !full {
            return Ok(Here::Truncated {
                have: a.len() as u64,
                need: CHUNK_HEADER_LEN as u64,
            });
        }
        let comp_len = le32(a, 4);
        let raw_len = le32(a, 8);
        let count = le32(a, 12);
        let mut ts = [0; 8];
        ts.copy_from_slice(&a[16..24]);
        let first_ts = u64::from_le_bytes(ts);
        let crc = le32(a, 24);
        if comp_len > MAX_CHUNK || raw_len > MAX_CHUNK {
            return Ok(Here::Corrupt(format!(
                "length {} over the {} MiB limit",
                comp_len.max(raw_len),
                MAX_CHUNK >> 20
            )));
        }
        let total = CHUNK_HEADER_LEN + comp_len as usize;
        if !self.src.fill(total)? {
            return Ok(Here::Truncated {
                have: self.src.avail().len() as u64,
                need: total as u64,
            });
        }
        let a = self.src.avail();
        let mut h = crc32fast::Hasher::new();
        h.update(&a[4..24]);
        h.update(&a[CHUNK_HEADER_LEN..total]);
        if h.finalize() != crc {
            return Ok(Here::Corrupt("crc mismatch".into()));
        }
        Ok(Here::Chunk(Chunk {
            comp_len: comp_len as usize,
            raw_len: raw_len as usize,
            count,
            first_ts,
        }))
    }

    /// Skips forward to the next valid chunk. Returns its offset, or None at
    /// the end of the input (everything consumed).
    fn resync(&mut self) -> io::Result<Option<u64>> {
        loop {
            let a = self.src.avail();
            match a.windows(4).position(|w| w == CHUNK_MAGIC) {
                Some(i) => {
                    self.src.consume(i);
                    if let Here::Chunk(_) = self.here()? {
                        return Ok(Some(self.src.offset()));
                    }
                    // A magic-looking accident inside damaged data.
                    self.src.consume(1);
                }
                None => {
                    // Keep a possible partial magic at the end.
                    let keep = a.len().min(CHUNK_MAGIC.len() - 1);
                    let len = a.len();
                    self.src.consume(len - keep);
                    if !self.src.fill(keep + 1)? {
                        let rest = self.src.avail().len();
                        self.src.consume(rest);
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads what comes next into the queue, or sets `done`.
    fn advance(&mut self) -> io::Result<()> {
        let at = self.src.offset();
        match self.here()? {
            Here::Eof => self.done = true,
            Here::Chunk(c) => self.decode_chunk(at, c)?,
            Here::Garbage => {
                self.src.consume(1);
                match self.resync()? {
                    Some(to) => self.problem(
                        at,
                        format!("byte {at}: {} bytes of unknown data, skipped", to - at),
                    ),
                    None => {
                        let end = self.src.offset();
                        self.problem(
                            at,
                            format!(
                                "byte {at}: {} trailing bytes of unknown data ignored",
                                end - at
                            ),
                        );
                        self.done = true;
                    }
                }
            }
            Here::Corrupt(why) => {
                self.src.consume(1);
                let msg = format!("chunk at byte {at}: {why}, skipped");
                match self.resync()? {
                    Some(to) => self.problem(at, format!("{msg} (resumed at byte {to})")),
                    None => {
                        self.problem(at, format!("{msg}; no valid chunk after it"));
                        self.done = true;
                    }
                }
            }
            Here::Truncated { have, need } => {
                // A torn last chunk, or a damaged length that points past
                // the end: a later valid chunk tells which.
                self.src.consume(1);
                match self.resync()? {
                    Some(to) => self.problem(
                        at,
                        format!("chunk at byte {at}: bad length (past the end of the file), skipped (resumed at byte {to})"),
                    ),
                    None => {
                        self.problem(
                            at,
                            format!("chunk at byte {at}: truncated (file ends after {have} of its {need} bytes); the trace ends here"),
                        );
                        self.done = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// Decodes a CRC-checked chunk at the current position and consumes it.
    fn decode_chunk(&mut self, at: u64, c: Chunk) -> io::Result<()> {
        let payload = &self.src.avail()[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + c.comp_len];
        self.raw.clear();
        self.raw.reserve(c.raw_len);
        let zstd = match &mut self.zstd {
            Some(z) => z,
            none => none.insert(zstd::bulk::Decompressor::new()?),
        };
        let result = match zstd.decompress_to_buffer(payload, &mut self.raw) {
            Err(e) => Err(format!("bad zstd data ({e})")),
            Ok(n) if n != c.raw_len => {
                Err(format!("payload is {n} bytes, header says {}", c.raw_len))
            }
            Ok(_) => {
                // Decode the whole chunk before yielding any of it: a chunk
                // is either used entirely or skipped.
                let before = self.queue.len();
                let mut d = Decoder::new(&self.raw, c.first_ts);
                let mut res = Ok(());
                for i in 0..c.count {
                    match d.next_event() {
                        Ok(ev) => self.queue.push_back(Item::Event(ev)),
                        Err(e) => {
                            res = Err(format!("bad event encoding at event {i} ({e})"));
                            break;
                        }
                    }
                }
                if res.is_ok() && !d.is_empty() {
                    res = Err(format!(
                        "bytes left after the {} events it declares",
                        c.count
                    ));
                }
                if res.is_err() {
                    self.queue.truncate(before);
                } else {
                    self.events += u64::from(c.count);
                }
                res
            }
        };
        self.src.consume(CHUNK_HEADER_LEN + c.comp_len);
        if let Err(why) = result {
            self.problem(at, format!("chunk at byte {at}: {why}, skipped"));
        }
        Ok(())
    }
}

impl<R: Read> TraceReader<R> {
    /// Moves up to `max` next items into `out`; false at the end. The same
    /// items as [`Iterator::next`], without a call per item.
    pub fn next_batch(&mut self, out: &mut Vec<Result<Item, TraceError>>, max: usize) -> bool {
        if self.queue.is_empty() {
            match self.next() {
                Some(item) => out.push(item),
                None => return false,
            }
        }
        let n = self.queue.len().min(max.saturating_sub(1).max(1));
        out.extend(self.queue.drain(..n).map(Ok));
        true
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Item, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            if let Err(source) = self.advance() {
                self.done = true;
                return Some(Err(TraceError::Read {
                    name: self.name.clone(),
                    offset: self.src.offset(),
                    source,
                }));
            }
        }
    }
}

fn read_header<R: Read>(src: &mut Source<R>, name: &str) -> Result<TraceHeader, TraceError> {
    let io = |source| TraceError::Read {
        name: name.into(),
        offset: 0,
        source,
    };
    let bad = |reason: String| TraceError::BadHeader {
        name: name.into(),
        reason,
    };
    let full = src.fill(MAGIC.len()).map_err(io)?;
    let a = src.avail();
    if a.is_empty() {
        return Err(TraceError::Empty { name: name.into() });
    }
    if !full {
        return Err(if MAGIC.starts_with(a) {
            bad("file ends inside the magic".into())
        } else {
            TraceError::NotATrace { name: name.into() }
        });
    }
    if a[..8] != MAGIC {
        return Err(TraceError::NotATrace { name: name.into() });
    }
    if !src.fill(16).map_err(io)? {
        return Err(bad("file ends inside the header".into()));
    }
    let a = src.avail();
    let version = le32(a, 8);
    if version != VERSION {
        return Err(TraceError::UnsupportedVersion {
            name: name.into(),
            version,
        });
    }
    let len = le32(a, 12);
    if len > MAX_HEADER {
        return Err(bad(format!(
            "header length {len} over the {} KiB limit",
            MAX_HEADER >> 10
        )));
    }
    let end = 16 + len as usize;
    if !src.fill(end + 4).map_err(io)? {
        return Err(bad("file ends inside the header".into()));
    }
    let a = src.avail();
    let json = &a[16..end];
    if crc32fast::hash(json) != le32(a, end) {
        return Err(bad("checksum mismatch".into()));
    }
    let header = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    src.consume(end + 4);
    Ok(header)
}
