//! Writing traces.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::codec::{self, ChunkState};
use super::{
    CHUNK_EVENTS, CHUNK_HEADER_LEN, CHUNK_MAGIC, CHUNK_RAW_TARGET, MAGIC, TraceError, TraceHeader,
    TraceStats, VERSION,
};
use crate::events::Event;

/// zstd level: 3 compresses a 65536-event chunk in a few milliseconds.
const ZSTD_LEVEL: i32 = 3;

/// Writes a trace: the header at creation, then a chunk per [`flush`] (or
/// every [`CHUNK_EVENTS`] events).
///
/// Crash safety: chunks are appended whole with one `write_all`; a failed
/// write is cut back off the file, so what was flushed before stays
/// readable, and the unwritten events stay buffered for the next flush.
///
/// [`flush`]: TraceWriter::flush
pub struct TraceWriter {
    file: File,
    path: PathBuf,
    /// Encoded events of the open chunk.
    raw: Vec<u8>,
    pending: u32,
    first_ts: u64,
    state: ChunkState,
    zstd: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
    stats: TraceStats,
}

/// Creates (or, unless `new`, truncates) an output file the way rltop
/// writes every file as root: mode 0600, never through a symlink, only a
/// regular file, and not in a directory other users may write to (where a
/// planted file or hard link could redirect the write) unless `force`.
pub fn create_private(path: &Path, new: bool, force: bool) -> Result<File, TraceError> {
    let io_err = |source| TraceError::Io {
        path: path.to_owned(),
        source,
    };
    if !force {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let meta = std::fs::metadata(dir).map_err(io_err)?;
        if meta.permissions().mode() & 0o002 != 0 {
            return Err(TraceError::SharedDir {
                path: path.to_owned(),
                dir: dir.to_owned(),
            });
        }
    }
    {
        let mut opts = OpenOptions::new();
        opts.write(true).mode(0o600);
        if new {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        // O_NOFOLLOW: never write through a symlink someone planted (record
        // runs as root). O_NONBLOCK: do not hang opening a FIFO; it has no
        // effect on regular files.
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
        let file = opts.open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => TraceError::Symlink {
                path: path.to_owned(),
            },
            _ => io_err(e),
        })?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(TraceError::NotRegular {
                path: path.to_owned(),
            });
        }
        // An existing file keeps its old mode through O_TRUNC: tighten it.
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_err)?;
        Ok(file)
    }
}

impl TraceWriter {
    /// Creates (or truncates) `path` with [`create_private`].
    pub fn create(path: &Path, header: &TraceHeader) -> Result<TraceWriter, TraceError> {
        TraceWriter::open(path, header, false, false)
    }

    /// Like [`create`](TraceWriter::create), with `force` as in
    /// [`create_private`].
    pub fn create_forced(
        path: &Path,
        header: &TraceHeader,
        force: bool,
    ) -> Result<TraceWriter, TraceError> {
        TraceWriter::open(path, header, false, force)
    }

    /// Like [`create`](TraceWriter::create), but fails if `path` exists: for
    /// temporary files.
    pub fn create_new(
        path: &Path,
        header: &TraceHeader,
        force: bool,
    ) -> Result<TraceWriter, TraceError> {
        TraceWriter::open(path, header, true, force)
    }

    fn open(
        path: &Path,
        header: &TraceHeader,
        new: bool,
        force: bool,
    ) -> Result<TraceWriter, TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = create_private(path, new, force)?;

        let header = TraceHeader {
            version: VERSION,
            ..header.clone()
        };
        let json = serde_json::to_vec(&header).map_err(|e| io_err(e.into()))?;
        let mut head = Vec::with_capacity(json.len() + 20);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(json.len() as u32).to_le_bytes());
        head.extend_from_slice(&json);
        head.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        file.write_all(&head).map_err(io_err)?;

        Ok(TraceWriter {
            file,
            path: path.to_owned(),
            raw: Vec::with_capacity(1 << 20),
            pending: 0,
            first_ts: 0,
            state: ChunkState::new(0),
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(io_err)?,
            out: Vec::new(),
            stats: TraceStats {
                bytes: head.len() as u64,
                ..TraceStats::default()
            },
        })
    }

    /// Buffers `ev`; writes a chunk when one is full.
    pub fn push(&mut self, ev: &Event) -> Result<(), TraceError> {
        if let Some(len) = codec::oversized_string(ev) {
            return Err(TraceError::StringTooLong { len });
        }
        if self.pending == 0 {
            self.first_ts = ev.ts;
            self.state = ChunkState::new(ev.ts);
        }
        codec::encode(&mut self.raw, &mut self.state, ev);
        self.pending += 1;
        self.stats.pending += 1;
        if self.pending >= CHUNK_EVENTS || self.raw.len() >= CHUNK_RAW_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered events as one chunk (no fsync).
    pub fn flush(&mut self) -> Result<(), TraceError> {
        if self.pending == 0 {
            return Ok(());
        }
        let io_err = |source| TraceError::Io {
            path: self.path.clone(),
            source,
        };
        let payload = self.zstd.compress(&self.raw).map_err(io_err)?;
        self.out.clear();
        self.out.extend_from_slice(&CHUNK_MAGIC);
        self.out
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&(self.raw.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&self.pending.to_le_bytes());
        self.out.extend_from_slice(&self.first_ts.to_le_bytes());
        // The CRC covers the header fields too: a flipped length is caught
        // before it can send the reader astray.
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.out[4..24]);
        crc.update(&payload);
        self.out.extend_from_slice(&crc.finalize().to_le_bytes());
        debug_assert_eq!(self.out.len(), CHUNK_HEADER_LEN);
        self.out.extend_from_slice(&payload);

        if let Err(e) = self.file.write_all(&self.out) {
            // Cut a partial chunk back off so the file ends on a chunk
            // boundary and a later flush appends cleanly. Best effort: if
            // this fails too, readers still stop at the torn chunk.
            let good = self.stats.bytes;
            let _ = self.file.set_len(good);
            let _ = self.file.seek(SeekFrom::Start(good));
            return Err(io_err(e));
        }
        self.stats.bytes += self.out.len() as u64;
        self.stats.events += u64::from(self.pending);
        self.stats.pending = 0;
        self.stats.chunks += 1;
        self.pending = 0;
        self.raw.clear();
        Ok(())
    }

    /// Events and bytes written so far.
    pub fn stats(&self) -> TraceStats {
        self.stats
    }

    /// Flushes, fsyncs and closes the trace.
    pub fn finish(mut self) -> Result<TraceStats, TraceError> {
        self.flush()?;
        self.file.sync_all().map_err(|source| TraceError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.stats)
    }

    /// The path written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TraceWriter {
    /// Dropped without `finish` (an error path): keep what was pushed.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Body;
    use crate::testing::ev;
    use crate::trace::{Item, TraceReader};

    #[test]
    fn failed_flush_loses_nothing_already_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.rlt");
        let mut w = TraceWriter::create(&p, &TraceHeader::new("test")).unwrap();
        w.push(&ev(1, 1, Body::Exit)).unwrap();
        w.flush().unwrap();
        let good = w.stats();
        // Swap in a read-only descriptor: the next flush fails.
        w.file = File::open(&p).unwrap();
        w.push(&ev(2, 1, Body::Exit)).unwrap();
        assert!(w.flush().is_err());
        assert_eq!(w.stats(), TraceStats { pending: 1, ..good });
        drop(w);
        let items: Vec<_> = TraceReader::open(&p).unwrap().map(Result::unwrap).collect();
        assert_eq!(items, [Item::Event(ev(1, 1, Body::Exit))]);
    }

    #[test]
    fn long_strings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w =
            TraceWriter::create(&dir.path().join("t.rlt"), &TraceHeader::new("test")).unwrap();
        let text = "x".repeat(codec::MAX_STRING + 1);
        let err = w
            .push(&Event {
                body: Body::Marker { text },
                ..ev(1, 1, Body::Exit)
            })
            .unwrap_err();
        assert!(
            matches!(err, TraceError::StringTooLong { len: 4097 }),
            "{err}"
        );
        assert_eq!(w.stats().pending, 0);
    }
}
