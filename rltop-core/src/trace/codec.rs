//! The compact binary event encoding inside a chunk (`docs/trace-format.md`).
//!
//! Each chunk is encoded from a fresh [`ChunkState`], so chunks decode on
//! their own. Fields are LEB128 varints; values that move little from one
//! event to the next (timestamps, page indices, file positions) are stored as
//! zigzag deltas so zstd sees small repeating byte patterns.

use crate::events::{Body, Dev, Event, FileLockClass, Mode, PunchOp};

/// Longest string (`comm`, `text`) an event may carry, in bytes.
pub const MAX_STRING: usize = 4096;

/// Kind byte layout: low 5 bits the kind code, then flags.
const KIND_MASK: u8 = 0x1f;
/// pid == tid: pid is not stored.
const F_PID_IS_TID: u8 = 0x20;
/// The event has a cpu.
const F_CPU: u8 = 0x40;
/// The kind's optional field is present (`page_add` order, `contention_end`
/// addr, `lost` since, `contention_begin` caller; the `id` of punch,
/// truncate and invalidate events, and for `punch_begin` a non-default
/// `op`: see [`put_punch_opt`]).
const F_OPT: u8 = 0x80;
/// Kind codes from this one up do not fit the 5 bits: the kind byte holds
/// `KIND_EXT` and the next byte the code itself.
const KIND_EXT: u8 = 31;

/// `punch_begin`'s optional-field byte (after `len`, when [`F_OPT`] is set):
/// bit 0 = an `id` varint follows, bits 1-2 = the op (0 punch, 1 zero,
/// 2 collapse, 3 insert). Never 0, no other bits.
const PUNCH_OPT_ID: u8 = 0x01;
const PUNCH_OPT_OP_SHIFT: u8 = 1;
const PUNCH_OPT_BITS: u8 = 0x07;

fn punch_op_code(op: PunchOp) -> u8 {
    match op {
        PunchOp::Punch => 0,
        PunchOp::Zero => 1,
        PunchOp::Collapse => 2,
        PunchOp::Insert => 3,
    }
}

/// Why a chunk's payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload ends inside an event")]
    Short,
    #[error("varint too long")]
    BadVarint,
    #[error("unknown event kind code {0}")]
    BadKind(u8),
    #[error("flag bits {0:#x} not valid for this kind")]
    BadFlags(u8),
    #[error("value out of range for field {0}")]
    Range(&'static str),
    #[error("string longer than {} bytes", MAX_STRING)]
    LongString,
    #[error("string is not UTF-8")]
    NotUtf8,
}

/// Delta state shared by the encoder and decoder of one chunk.
#[derive(Debug, Clone, Copy)]
pub struct ChunkState {
    ts: u64,
    tid: u32,
    index: u64,
    pos: u64,
}

impl ChunkState {
    /// State at the start of a chunk whose first event has timestamp `first_ts`.
    pub fn new(first_ts: u64) -> ChunkState {
        ChunkState {
            ts: first_ts,
            tid: 0,
            index: 0,
            pos: 0,
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Delta of `v` from `prev`, wrapping: round-trips every u64 pair.
fn put_delta(out: &mut Vec<u8>, prev: &mut u64, v: u64) {
    put(out, zigzag(v.wrapping_sub(*prev) as i64));
    *prev = v;
}

fn put_dev(out: &mut Vec<u8>, d: Dev) {
    // major and minor separately: lossless even for devices that do not fit
    // the kernel's 12/20-bit dev_t.
    put(out, d.major.into());
    put(out, d.minor.into());
}

fn put_opt(out: &mut Vec<u8>, v: Option<u64>) {
    if let Some(v) = v {
        put(out, v);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn kind_code(b: &Body) -> u8 {
    match b {
        Body::Task { .. } => 0,
        Body::Tree { .. } => 1,
        Body::RlRequest { .. } => 2,
        Body::RlAcquired { .. } => 3,
        Body::RlTrylockFailed { .. } => 4,
        Body::RlCancel { .. } => 5,
        Body::RlRelease { .. } => 6,
        Body::MmapLockRequest { .. } => 7,
        Body::MmapLockAcquired { .. } => 8,
        Body::MmapLockRelease { .. } => 9,
        Body::Fault { .. } => 10,
        Body::PageAdd { .. } => 11,
        Body::DioBegin { .. } => 12,
        Body::DioEnd { .. } => 13,
        Body::PunchBegin { .. } => 14,
        Body::PunchEnd { .. } => 15,
        Body::TruncateBegin { .. } => 16,
        Body::TruncateEnd { .. } => 17,
        Body::ContentionBegin { .. } => 18,
        Body::ContentionEnd { .. } => 19,
        Body::Marker { .. } => 20,
        Body::Lost { probe: None, .. } => 21,
        // A probe's misses (its name follows): a code of its own, so that
        // traces written before it decode as they did.
        Body::Lost { probe: Some(_), .. } => 34,
        Body::Exit => 22,
        Body::OrderingEvidence { .. } => 23,
        Body::InvalidateBegin { .. } => 24,
        Body::InvalidateEnd { .. } => 25,
        Body::File { .. } => 29,
        Body::PageFault { .. } => 30,
        Body::FileLockRequest { .. } => 31,
        Body::FileLockAcquired { .. } => 32,
        Body::FileLockRelease { .. } => 33,
        Body::RlDowngrade { .. } => 35,
        Body::RlTreeInit { .. } => 36,
        Body::RlQueued { .. } => 37,
        Body::RlQueueSeq { .. } => 38,
        Body::Fork { .. } => 39,
    }
}

fn class_byte(c: FileLockClass) -> u8 {
    match c {
        FileLockClass::IRwsem => 0,
        FileLockClass::InvalidateLock => 1,
    }
}

/// Longest string in `ev`, if it is over [`MAX_STRING`]: such an event
/// cannot be encoded.
pub fn oversized_string(ev: &Event) -> Option<usize> {
    match &ev.body {
        Body::Task { comm: s, .. }
        | Body::Marker { text: s }
        | Body::OrderingEvidence { stack: s, .. }
        | Body::ContentionBegin {
            caller: Some(s), ..
        }
        | Body::PageFault { stack: Some(s), .. }
        | Body::FileLockRequest { stack: Some(s), .. }
        | Body::Lost { probe: Some(s), .. }
            if s.len() > MAX_STRING =>
        {
            Some(s.len())
        }
        Body::File { path, fs, .. } => [path, fs]
            .into_iter()
            .flatten()
            .map(String::len)
            .find(|&n| n > MAX_STRING),
        _ => None,
    }
}

/// Appends `ev` to `out`. The caller has checked [`oversized_string`].
#[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
pub fn encode(out: &mut Vec<u8>, st: &mut ChunkState, ev: &Event) {
    let code = kind_code(&ev.body);
    let mut k = code.min(KIND_EXT);
    if ev.pid == ev.tid {
        k |= F_PID_IS_TID;
    }
    if ev.cpu.is_some() {
        k |= F_CPU;
    }
    if matches!(
        ev.body,
        Body::PageAdd { order: Some(_), .. }
            | Body::ContentionEnd { addr: Some(_), .. }
            | Body::Lost { since: Some(_), .. }
            | Body::PunchEnd { id: Some(_), .. }
            | Body::TruncateBegin { id: Some(_), .. }
            | Body::TruncateEnd { id: Some(_), .. }
            | Body::InvalidateBegin { id: Some(_), .. }
            | Body::InvalidateEnd { id: Some(_), .. }
            | Body::ContentionBegin {
                caller: Some(_),
                ..
            }
            | Body::Task { kthread: true, .. }
    ) || matches!(ev.body, Body::PunchBegin { op, id, .. } if id.is_some() || op != PunchOp::Punch)
    {
        k |= F_OPT;
    }
    out.push(k);
    if code >= KIND_EXT {
        out.push(code);
    }
    put_delta(out, &mut st.ts, ev.ts);
    // Consecutive events often come from one task: tid as a delta.
    put(out, zigzag(i64::from(ev.tid) - i64::from(st.tid)));
    st.tid = ev.tid;
    if ev.pid != ev.tid {
        put(out, ev.pid.into());
    }
    if let Some(c) = ev.cpu {
        put(out, c.into());
    }
    match &ev.body {
        // A kernel thread is the optional flag alone.
        Body::Task { comm, .. } => put_str(out, comm),
        Body::Tree { tree, dev, ino } => {
            put(out, *tree);
            put_dev(out, *dev);
            put(out, *ino);
        }
        Body::RlRequest {
            tree,
            lock,
            start,
            last,
            mode,
        } => {
            put(out, *tree);
            put(out, *lock);
            put_delta(out, &mut st.index, *start);
            // Ranges are short: the length, not the end.
            put(out, last.wrapping_sub(*start));
            out.push(match mode {
                Mode::Excl => 0,
                Mode::Read => 1,
                Mode::Write => 2,
            });
        }
        Body::RlAcquired { tree, lock }
        | Body::RlTrylockFailed { tree, lock }
        | Body::RlCancel { tree, lock }
        | Body::RlRelease { tree, lock }
        | Body::RlDowngrade { tree, lock }
        | Body::RlQueued { tree, lock } => {
            put(out, *tree);
            put(out, *lock);
        }
        Body::RlTreeInit { tree } => put(out, *tree),
        Body::RlQueueSeq { tree, lock, seq } => {
            put(out, *tree);
            put(out, *lock);
            put(out, *seq);
        }
        Body::MmapLockRequest { mm, write } | Body::MmapLockRelease { mm, write } => {
            put(out, *mm);
            out.push(u8::from(*write));
        }
        Body::MmapLockAcquired { mm, write, success } => {
            put(out, *mm);
            out.push(u8::from(*write) | u8::from(*success) << 1);
        }
        Body::Fault { dev, ino, index } => {
            put_dev(out, *dev);
            put(out, *ino);
            put_delta(out, &mut st.index, *index);
        }
        Body::PageAdd {
            dev,
            ino,
            index,
            order,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            put_delta(out, &mut st.index, *index);
            if let Some(o) = order {
                put(out, (*o).into());
            }
        }
        Body::DioBegin {
            io,
            dev,
            ino,
            pos,
            len,
            write,
        } => {
            put(out, *io);
            put_dev(out, *dev);
            put(out, *ino);
            put_delta(out, &mut st.pos, *pos);
            put(out, *len);
            out.push(u8::from(*write));
        }
        Body::DioEnd { io, ret } => {
            put(out, *io);
            put(out, zigzag(*ret));
        }
        Body::PunchBegin {
            dev,
            ino,
            pos,
            len,
            op,
            id,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            put_delta(out, &mut st.pos, *pos);
            put(out, *len);
            if id.is_some() || *op != PunchOp::Punch {
                out.push(
                    punch_op_code(*op) << PUNCH_OPT_OP_SHIFT
                        | if id.is_some() { PUNCH_OPT_ID } else { 0 },
                );
                if let Some(id) = id {
                    put(out, *id);
                }
            }
        }
        Body::TruncateBegin { dev, ino, size, id } => {
            put_dev(out, *dev);
            put(out, *ino);
            put(out, *size);
            put_opt(out, *id);
        }
        Body::PunchEnd { ret, id } | Body::TruncateEnd { ret, id } => {
            put(out, zigzag(*ret));
            put_opt(out, *id);
        }
        Body::InvalidateBegin {
            dev,
            ino,
            first,
            last,
            id,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            put_delta(out, &mut st.index, *first);
            // Often u64::MAX (truncate): the length, wrapping, is short.
            put(out, last.wrapping_sub(*first));
            put_opt(out, *id);
        }
        Body::InvalidateEnd { dev, ino, id } => {
            put_dev(out, *dev);
            put(out, *ino);
            put_opt(out, *id);
        }
        Body::ContentionBegin {
            addr,
            flags,
            caller,
        } => {
            put(out, *addr);
            put(out, (*flags).into());
            if let Some(c) = caller {
                put_str(out, c);
            }
        }
        Body::ContentionEnd { addr, ret } => {
            put(out, zigzag(*ret));
            if let Some(a) = addr {
                put(out, *a);
            }
        }
        Body::Marker { text } => put_str(out, text),
        Body::Lost {
            count,
            cpu,
            since,
            probe,
        } => {
            put(out, *count);
            put(out, (*cpu).into());
            if let Some(s) = since {
                put(out, *s);
            }
            if let Some(p) = probe {
                put_str(out, p);
            }
        }
        Body::Exit => {}
        Body::Fork { child, child_pid } => {
            put(out, (*child).into());
            put(out, (*child_pid).into());
        }
        Body::OrderingEvidence {
            mm,
            write,
            held,
            stack,
        } => {
            put(out, *mm);
            out.push(u8::from(*write));
            put(out, *held);
            put_str(out, stack);
        }
        Body::File {
            dev,
            ino,
            path,
            fs,
            i_rwsem,
            invalidate_lock,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            // Which optional fields follow, one bit each in this order.
            out.push(
                u8::from(path.is_some())
                    | u8::from(fs.is_some()) << 1
                    | u8::from(i_rwsem.is_some()) << 2
                    | u8::from(invalidate_lock.is_some()) << 3,
            );
            if let Some(p) = path {
                put_str(out, p);
            }
            if let Some(f) = fs {
                put_str(out, f);
            }
            if let Some(a) = i_rwsem {
                put(out, *a);
            }
            if let Some(a) = invalidate_lock {
                put(out, *a);
            }
        }
        Body::FileLockRequest {
            dev,
            ino,
            class,
            write,
            trylock,
            stack,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            out.push(class_byte(*class));
            // bit 0 write, bit 1 `try` present, bit 2 its value, bit 3
            // stack present.
            out.push(
                u8::from(*write)
                    | u8::from(trylock.is_some()) << 1
                    | u8::from(*trylock == Some(true)) << 2
                    | u8::from(stack.is_some()) << 3,
            );
            if let Some(s) = stack {
                put_str(out, s);
            }
        }
        Body::FileLockAcquired {
            dev,
            ino,
            class,
            write,
            success,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            out.push(class_byte(*class));
            out.push(u8::from(*write) | u8::from(*success) << 1);
        }
        Body::FileLockRelease {
            dev,
            ino,
            class,
            write,
        } => {
            put_dev(out, *dev);
            put(out, *ino);
            out.push(class_byte(*class));
            out.push(u8::from(*write));
        }
        Body::PageFault {
            addr,
            user,
            write,
            held,
            stack,
        } => {
            put(out, *addr);
            // bit 0 user, bit 1 `write` present, bit 2 its value, bit 3 stack present.
            out.push(
                u8::from(*user)
                    | u8::from(write.is_some()) << 1
                    | u8::from(*write == Some(true)) << 2
                    | u8::from(stack.is_some()) << 3,
            );
            put(out, *held);
            if let Some(s) = stack {
                put_str(out, s);
            }
        }
    }
}

/// A cursor over one chunk's decompressed payload.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    st: ChunkState,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8], first_ts: u64) -> Decoder<'a> {
        Decoder {
            buf,
            pos: 0,
            st: ChunkState::new(first_ts),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Short)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, DecodeError> {
        // Most values (deltas, small ids) fit one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        // Addresses take 9 or 10 bytes: decode them from a fixed window
        // when the payload has one, without a bounds check per byte.
        if let Some(w) = self.buf.get(self.pos..self.pos + 10) {
            let mut v = 0u64;
            for (i, &b) in w.iter().enumerate() {
                if i == 9 && b > 1 {
                    return Err(DecodeError::BadVarint);
                }
                v |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    self.pos += i + 1;
                    return Ok(v);
                }
            }
            return Err(DecodeError::BadVarint);
        }
        self.u64_tail()
    }

    /// [`Self::u64`] near the end of the payload.
    fn u64_tail(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            // The 10th byte may only hold the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError::Range(field))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(unzigzag(self.u64()?))
    }

    fn delta(&mut self, prev: u64) -> Result<u64, DecodeError> {
        Ok(prev.wrapping_add(self.i64()? as u64))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Range(field)),
        }
    }

    fn dev(&mut self) -> Result<Dev, DecodeError> {
        Ok(Dev {
            major: self.u32("dev")?,
            minor: self.u32("dev")?,
        })
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u64()?;
        if len > MAX_STRING as u64 {
            return Err(DecodeError::LongString);
        }
        let len = len as usize;
        let bytes = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or(DecodeError::Short)?;
        self.pos += len;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }

    /// The kind's optional varint, present when [`F_OPT`] was set.
    fn opt(&mut self, present: bool) -> Result<Option<u64>, DecodeError> {
        if present {
            Ok(Some(self.u64()?))
        } else {
            Ok(None)
        }
    }

    fn index(&mut self) -> Result<u64, DecodeError> {
        self.st.index = self.delta(self.st.index)?;
        Ok(self.st.index)
    }

    fn file_pos(&mut self) -> Result<u64, DecodeError> {
        self.st.pos = self.delta(self.st.pos)?;
        Ok(self.st.pos)
    }

    /// `dev`, `ino` and `class` of the `file_lock_*` kinds.
    fn file_lock(&mut self) -> Result<(Dev, u64, FileLockClass), DecodeError> {
        let dev = self.dev()?;
        let ino = self.u64()?;
        let class = match self.byte()? {
            0 => FileLockClass::IRwsem,
            1 => FileLockClass::InvalidateLock,
            _ => return Err(DecodeError::Range("class")),
        };
        Ok((dev, ino, class))
    }

    /// Decodes the next event. Never panics, whatever the bytes.
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub fn next_event(&mut self) -> Result<Event, DecodeError> {
        let k = self.byte()?;
        let mut code = k & KIND_MASK;
        if code == KIND_EXT {
            code = self.byte()?;
            if code < KIND_EXT {
                // Codes below 31 are always stored in the kind byte.
                return Err(DecodeError::BadKind(code));
            }
        }
        let opt = k & F_OPT != 0;
        if opt && !matches!(code, 0 | 11 | 14..=19 | 21 | 24 | 25 | 34) {
            return Err(DecodeError::BadFlags(k));
        }
        self.st.ts = self.delta(self.st.ts)?;
        let tid_delta = self.i64()?;
        let tid = u32::try_from(i64::from(self.st.tid).wrapping_add(tid_delta))
            .map_err(|_| DecodeError::Range("tid"))?;
        self.st.tid = tid;
        let pid = if k & F_PID_IS_TID != 0 {
            tid
        } else {
            self.u32("pid")?
        };
        if pid == tid && k & F_PID_IS_TID == 0 {
            // The encoder always sets the flag then: canonical form only.
            return Err(DecodeError::BadFlags(k));
        }
        let cpu = if k & F_CPU != 0 {
            Some(self.u32("cpu")?)
        } else {
            None
        };
        let body = match code {
            0 => Body::Task {
                comm: self.string()?,
                kthread: opt,
            },
            1 => Body::Tree {
                tree: self.u64()?,
                dev: self.dev()?,
                ino: self.u64()?,
            },
            2 => {
                let tree = self.u64()?;
                let lock = self.u64()?;
                let start = self.index()?;
                let last = start.wrapping_add(self.u64()?);
                let mode = match self.byte()? {
                    0 => Mode::Excl,
                    1 => Mode::Read,
                    2 => Mode::Write,
                    _ => return Err(DecodeError::Range("mode")),
                };
                Body::RlRequest {
                    tree,
                    lock,
                    start,
                    last,
                    mode,
                }
            }
            3 => Body::RlAcquired {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            4 => Body::RlTrylockFailed {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            5 => Body::RlCancel {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            6 => Body::RlRelease {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            35 => Body::RlDowngrade {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            36 => Body::RlTreeInit { tree: self.u64()? },
            37 => Body::RlQueued {
                tree: self.u64()?,
                lock: self.u64()?,
            },
            38 => Body::RlQueueSeq {
                tree: self.u64()?,
                lock: self.u64()?,
                seq: self.u64()?,
            },
            7 => Body::MmapLockRequest {
                mm: self.u64()?,
                write: self.bool("write")?,
            },
            8 => {
                let mm = self.u64()?;
                let b = self.byte()?;
                if b > 3 {
                    return Err(DecodeError::Range("write/success"));
                }
                Body::MmapLockAcquired {
                    mm,
                    write: b & 1 != 0,
                    success: b & 2 != 0,
                }
            }
            9 => Body::MmapLockRelease {
                mm: self.u64()?,
                write: self.bool("write")?,
            },
            10 => Body::Fault {
                dev: self.dev()?,
                ino: self.u64()?,
                index: self.index()?,
            },
            11 => Body::PageAdd {
                dev: self.dev()?,
                ino: self.u64()?,
                index: self.index()?,
                order: if opt { Some(self.u32("order")?) } else { None },
            },
            12 => Body::DioBegin {
                io: self.u64()?,
                dev: self.dev()?,
                ino: self.u64()?,
                pos: self.file_pos()?,
                len: self.u64()?,
                write: self.bool("write")?,
            },
            13 => Body::DioEnd {
                io: self.u64()?,
                ret: self.i64()?,
            },
            14 => {
                let dev = self.dev()?;
                let ino = self.u64()?;
                let pos = self.file_pos()?;
                let len = self.u64()?;
                let (op, id) = if opt {
                    let b = self.byte()?;
                    if b == 0 || b & !PUNCH_OPT_BITS != 0 {
                        return Err(DecodeError::Range("punch op"));
                    }
                    let op = PunchOp::ALL[usize::from(b >> PUNCH_OPT_OP_SHIFT)];
                    let id = if b & PUNCH_OPT_ID != 0 {
                        Some(self.u64()?)
                    } else {
                        None
                    };
                    (op, id)
                } else {
                    (PunchOp::Punch, None)
                };
                Body::PunchBegin {
                    dev,
                    ino,
                    pos,
                    len,
                    op,
                    id,
                }
            }
            15 => Body::PunchEnd {
                ret: self.i64()?,
                id: self.opt(opt)?,
            },
            16 => Body::TruncateBegin {
                dev: self.dev()?,
                ino: self.u64()?,
                size: self.u64()?,
                id: self.opt(opt)?,
            },
            17 => Body::TruncateEnd {
                ret: self.i64()?,
                id: self.opt(opt)?,
            },
            18 => Body::ContentionBegin {
                addr: self.u64()?,
                flags: self.u32("flags")?,
                caller: if opt { Some(self.string()?) } else { None },
            },
            19 => {
                let ret = self.i64()?;
                Body::ContentionEnd {
                    addr: if opt { Some(self.u64()?) } else { None },
                    ret,
                }
            }
            20 => Body::Marker {
                text: self.string()?,
            },
            21 | 34 => Body::Lost {
                count: self.u64()?,
                cpu: self.u32("cpu")?,
                since: if opt { Some(self.u64()?) } else { None },
                probe: if code == 34 {
                    Some(self.string()?)
                } else {
                    None
                },
            },
            22 => Body::Exit,
            39 => Body::Fork {
                child: self.u32("child")?,
                child_pid: self.u32("child_pid")?,
            },
            23 => Body::OrderingEvidence {
                mm: self.u64()?,
                write: self.bool("write")?,
                held: self.u64()?,
                stack: self.string()?,
            },
            24 => {
                let dev = self.dev()?;
                let ino = self.u64()?;
                let first = self.index()?;
                let last = first.wrapping_add(self.u64()?);
                Body::InvalidateBegin {
                    dev,
                    ino,
                    first,
                    last,
                    id: self.opt(opt)?,
                }
            }
            25 => Body::InvalidateEnd {
                dev: self.dev()?,
                ino: self.u64()?,
                id: self.opt(opt)?,
            },
            29 => {
                let dev = self.dev()?;
                let ino = self.u64()?;
                let present = self.byte()?;
                if present > 0xf {
                    return Err(DecodeError::Range("file fields"));
                }
                let bit = |b: u8| present & (1 << b) != 0;
                Body::File {
                    dev,
                    ino,
                    path: if bit(0) { Some(self.string()?) } else { None },
                    fs: if bit(1) { Some(self.string()?) } else { None },
                    i_rwsem: if bit(2) { Some(self.u64()?) } else { None },
                    invalidate_lock: if bit(3) { Some(self.u64()?) } else { None },
                }
            }
            30 => {
                let addr = self.u64()?;
                let b = self.byte()?;
                // A value bit without its presence bit is not canonical.
                if b > 0xf || (b & 4 != 0 && b & 2 == 0) {
                    return Err(DecodeError::Range("page_fault flags"));
                }
                Body::PageFault {
                    addr,
                    user: b & 1 != 0,
                    write: (b & 2 != 0).then_some(b & 4 != 0),
                    held: self.u64()?,
                    stack: if b & 8 != 0 {
                        Some(self.string()?)
                    } else {
                        None
                    },
                }
            }
            31 => {
                let (dev, ino, class) = self.file_lock()?;
                let b = self.byte()?;
                if b > 15 || (b & 4 != 0 && b & 2 == 0) {
                    return Err(DecodeError::Range("file_lock_request flags"));
                }
                Body::FileLockRequest {
                    dev,
                    ino,
                    class,
                    write: b & 1 != 0,
                    trylock: (b & 2 != 0).then_some(b & 4 != 0),
                    stack: if b & 8 != 0 {
                        Some(self.string()?)
                    } else {
                        None
                    },
                }
            }
            32 => {
                let (dev, ino, class) = self.file_lock()?;
                let b = self.byte()?;
                if b > 3 {
                    return Err(DecodeError::Range("write/success"));
                }
                Body::FileLockAcquired {
                    dev,
                    ino,
                    class,
                    write: b & 1 != 0,
                    success: b & 2 != 0,
                }
            }
            33 => {
                let (dev, ino, class) = self.file_lock()?;
                Body::FileLockRelease {
                    dev,
                    ino,
                    class,
                    write: self.bool("write")?,
                }
            }
            c => return Err(DecodeError::BadKind(c)),
        };
        Ok(Event {
            ts: self.st.ts,
            tid,
            pid,
            cpu,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::jsonl::tests::arb_event;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(evs in proptest::collection::vec(arb_event(), 0..40)) {
            let first = evs.first().map_or(0, |e| e.ts);
            let mut st = ChunkState::new(first);
            let mut buf = Vec::new();
            for e in &evs {
                encode(&mut buf, &mut st, e);
            }
            let mut d = Decoder::new(&buf, first);
            for e in &evs {
                prop_assert_eq!(&d.next_event().unwrap(), e);
            }
            prop_assert!(d.is_empty());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), ts: u64) {
            let mut d = Decoder::new(&bytes, ts);
            while !d.is_empty() {
                if d.next_event().is_err() {
                    break;
                }
            }
        }
    }

    /// `punch_begin`'s optional byte: present only for an id or an op
    /// other than punch, never 0 or with unknown bits.
    #[test]
    fn punch_options_are_canonical() {
        let ev = |op, id| Event {
            ts: 1,
            tid: 2,
            pid: 2,
            cpu: None,
            body: Body::PunchBegin {
                dev: Dev { major: 7, minor: 1 },
                ino: 12,
                pos: 4096,
                len: 4096,
                op,
                id,
            },
        };
        let enc = |e: &Event| {
            let mut b = Vec::new();
            encode(&mut b, &mut ChunkState::new(1), e);
            b
        };
        let plain = enc(&ev(PunchOp::Punch, None));
        assert_eq!(plain[0] & F_OPT, 0);
        let zero = enc(&ev(PunchOp::Zero, None));
        assert_eq!(zero.len(), plain.len() + 1);
        assert_eq!(*zero.last().unwrap(), 1 << PUNCH_OPT_OP_SHIFT);
        let with_id = enc(&ev(PunchOp::Insert, Some(300)));
        assert_eq!(with_id.len(), plain.len() + 3);
        for e in [ev(PunchOp::Zero, None), ev(PunchOp::Insert, Some(300))] {
            assert_eq!(Decoder::new(&enc(&e), 1).next_event(), Ok(e));
        }
        // The option byte 0, or an unknown bit: rejected.
        for bad in [0u8, 0x08] {
            let mut b = plain.clone();
            b[0] |= F_OPT;
            b.push(bad);
            assert_eq!(
                Decoder::new(&b, 1).next_event(),
                Err(DecodeError::Range("punch op"))
            );
        }
    }

    #[test]
    fn codes_from_31_take_a_second_byte() {
        let ev = |body| Event {
            ts: 0,
            tid: 1,
            pid: 1,
            cpu: None,
            body,
        };
        let dev = Dev { major: 8, minor: 3 };
        let mut buf = Vec::new();
        let mut st = ChunkState::new(0);
        encode(
            &mut buf,
            &mut st,
            &ev(Body::FileLockRelease {
                dev,
                ino: 5,
                class: FileLockClass::InvalidateLock,
                write: true,
            }),
        );
        // kind byte: code 31 (escape) | pid == tid; then the code itself.
        assert_eq!(&buf[..2], &[KIND_EXT | F_PID_IS_TID, 33]);
        // An escaped code below 31 is not canonical.
        let mut bad = buf.clone();
        bad[1] = 29;
        assert_eq!(
            Decoder::new(&bad, 0).next_event(),
            Err(DecodeError::BadKind(29))
        );
        // `file` (29) fits the kind byte; a presence bit beyond the four fields is refused.
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &mut ChunkState::new(0),
            &ev(Body::File {
                dev,
                ino: 5,
                path: None,
                fs: Some("xfs".into()),
                i_rwsem: None,
                invalidate_lock: Some(7),
            }),
        );
        assert_eq!(buf[0], 29 | F_PID_IS_TID);
        let present = 1 + 1 + 1 + 2 + 1; // kind, ts, tid, dev (2), ino
        assert_eq!(buf[present], 0b1010);
        buf[present] = 0x10;
        assert_eq!(
            Decoder::new(&buf, 0).next_event(),
            Err(DecodeError::Range("file fields"))
        );
    }

    #[test]
    fn varint_edges() {
        for v in [0, 1, 127, 128, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(Decoder::new(&b, 0).u64(), Ok(v));
        }
        // Eleven-byte and overflowing ten-byte varints are rejected.
        assert_eq!(
            Decoder::new(&[0xff; 11], 0).u64(),
            Err(DecodeError::BadVarint)
        );
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(Decoder::new(&b, 0).u64(), Err(DecodeError::BadVarint));
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
