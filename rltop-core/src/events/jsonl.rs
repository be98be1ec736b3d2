//! The JSONL event form (the contract in `docs/events.md`): one JSON object per
//! line, read strictly and written in one canonical field order.
//!
//! Reading is strict because JSONL is how people hand-write test traces: a
//! typo in a field name must be an error naming the line, not a silently
//! missing field.
//!
//! The `lost` kind has a `cpu` field of its own (the CPU whose events were
//! dropped), which shares its JSON key with the optional common `cpu`. On
//! input it fills both [`Event::cpu`] and [`Body::Lost`]'s `cpu`; on output
//! only the body's is written.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{Body, Dev, Event, FileLockClass, Mode, PunchOp};

/// Longest accepted line, newline excluded.
pub const MAX_LINE: usize = 1 << 20;
/// Longest accepted string field (`comm`, `text`), in bytes; the trace
/// format has the same cap, so everything JSONL accepts can be recorded.
pub const MAX_STRING: usize = 4096;

/// A JSONL problem: what is wrong and, when known, on which line.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("{}{reason}", LinePrefix(*line))]
    Invalid {
        /// 1-based line number; `None` from [`parse_line`], which does not know it.
        line: Option<u64>,
        reason: Reason,
    },
    #[error("{}read error: {source}", LinePrefix(*line))]
    Io {
        line: Option<u64>,
        #[source]
        source: io::Error,
    },
}

impl JsonlError {
    /// The 1-based line number, when known.
    pub fn line(&self) -> Option<u64> {
        match self {
            JsonlError::Invalid { line, .. } | JsonlError::Io { line, .. } => *line,
        }
    }

    fn at_line(mut self, n: u64) -> JsonlError {
        match &mut self {
            JsonlError::Invalid { line, .. } | JsonlError::Io { line, .. } => *line = Some(n),
        }
        self
    }
}

struct LinePrefix(Option<u64>);

impl fmt::Display for LinePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "line {n}: "),
            None => Ok(()),
        }
    }
}

/// Why a line is not a valid event.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("missing field \"kind\"")]
    MissingKind,
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    #[error("unknown field {field:?} for kind \"{kind}\"")]
    UnknownField { field: String, kind: &'static str },
    #[error("duplicate field {0:?}")]
    DuplicateField(String),
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    #[error("field \"{field}\" must be {expected}")]
    BadType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("field \"{field}\": {msg}")]
    BadValue { field: &'static str, msg: String },
    #[error("line is longer than {} bytes", MAX_LINE)]
    TooLong,
    #[error("line is not valid UTF-8")]
    NotUtf8,
}

fn invalid(reason: Reason) -> JsonlError {
    JsonlError::Invalid { line: None, reason }
}

/// Every field name of the contract. The index of a name is its bit in a
/// kind's allowed-field mask.
const FIELDS: [&str; 46] = [
    "ts",
    "kind",
    "tid",
    "pid",
    "cpu",
    "comm",
    "tree",
    "dev",
    "ino",
    "lock",
    "start",
    "last",
    "mode",
    "mm",
    "write",
    "success",
    "index",
    "order",
    "io",
    "pos",
    "len",
    "ret",
    "size",
    "addr",
    "flags",
    "text",
    "count",
    "since",
    "held",
    "stack",
    "op",
    "id",
    "first",
    "path",
    "fs",
    "i_rwsem",
    "invalidate_lock",
    "class",
    "try",
    "caller",
    "user",
    "probe",
    "seq",
    "kthread",
    "child",
    "child_pid",
];

#[derive(Clone, Copy)]
#[repr(u8)]
enum F {
    Ts,
    Kind,
    Tid,
    Pid,
    Cpu,
    Comm,
    Tree,
    Dev,
    Ino,
    Lock,
    Start,
    Last,
    Mode,
    Mm,
    Write,
    Success,
    Index,
    Order,
    Io,
    Pos,
    Len,
    Ret,
    Size,
    Addr,
    Flags,
    Text,
    Count,
    Since,
    Held,
    Stack,
    Op,
    Id,
    First,
    Path,
    Fs,
    IRwsem,
    InvalidateLock,
    Class,
    Try,
    Caller,
    User,
    Probe,
    Seq,
    Kthread,
    Child,
    ChildPid,
}

impl F {
    fn name(self) -> &'static str {
        FIELDS[self as usize]
    }
}

const fn mask(fields: &[F]) -> u64 {
    let mut m = 0;
    let mut i = 0;
    while i < fields.len() {
        m |= 1 << fields[i] as u64;
        i += 1;
    }
    m
}

const COMMON: u64 = mask(&[F::Ts, F::Kind, F::Tid, F::Pid, F::Cpu]);

/// Kind name and the kind-specific fields it allows (required or optional).
const KINDS: [(&str, u64); 36] = [
    ("task", mask(&[F::Comm, F::Kthread])),
    ("tree", mask(&[F::Tree, F::Dev, F::Ino])),
    (
        "rl_request",
        mask(&[F::Tree, F::Lock, F::Start, F::Last, F::Mode]),
    ),
    ("rl_acquired", mask(&[F::Tree, F::Lock])),
    ("rl_trylock_failed", mask(&[F::Tree, F::Lock])),
    ("rl_cancel", mask(&[F::Tree, F::Lock])),
    ("rl_release", mask(&[F::Tree, F::Lock])),
    ("rl_downgrade", mask(&[F::Tree, F::Lock])),
    ("rl_tree_init", mask(&[F::Tree])),
    ("rl_queued", mask(&[F::Tree, F::Lock])),
    ("rl_queue_seq", mask(&[F::Tree, F::Lock, F::Seq])),
    ("mmap_lock_request", mask(&[F::Mm, F::Write])),
    ("mmap_lock_acquired", mask(&[F::Mm, F::Write, F::Success])),
    ("mmap_lock_release", mask(&[F::Mm, F::Write])),
    ("fault", mask(&[F::Dev, F::Ino, F::Index])),
    ("page_add", mask(&[F::Dev, F::Ino, F::Index, F::Order])),
    (
        "dio_begin",
        mask(&[F::Io, F::Dev, F::Ino, F::Pos, F::Len, F::Write]),
    ),
    ("dio_end", mask(&[F::Io, F::Ret])),
    (
        "punch_begin",
        mask(&[F::Dev, F::Ino, F::Pos, F::Len, F::Op, F::Id]),
    ),
    ("punch_end", mask(&[F::Ret, F::Id])),
    ("truncate_begin", mask(&[F::Dev, F::Ino, F::Size, F::Id])),
    ("truncate_end", mask(&[F::Ret, F::Id])),
    ("contention_begin", mask(&[F::Addr, F::Flags, F::Caller])),
    ("contention_end", mask(&[F::Ret, F::Addr])),
    ("marker", mask(&[F::Text])),
    ("lost", mask(&[F::Count, F::Since, F::Probe])),
    ("exit", 0),
    ("fork", mask(&[F::Child, F::ChildPid])),
    (
        "ordering_evidence",
        mask(&[F::Mm, F::Write, F::Held, F::Stack]),
    ),
    (
        "invalidate_begin",
        mask(&[F::Dev, F::Ino, F::First, F::Last, F::Id]),
    ),
    ("invalidate_end", mask(&[F::Dev, F::Ino, F::Id])),
    (
        "file",
        mask(&[F::Dev, F::Ino, F::Path, F::Fs, F::IRwsem, F::InvalidateLock]),
    ),
    (
        "file_lock_request",
        mask(&[F::Dev, F::Ino, F::Class, F::Write, F::Try, F::Stack]),
    ),
    (
        "file_lock_acquired",
        mask(&[F::Dev, F::Ino, F::Class, F::Write, F::Success]),
    ),
    (
        "file_lock_release",
        mask(&[F::Dev, F::Ino, F::Class, F::Write]),
    ),
    (
        "page_fault",
        mask(&[F::Addr, F::User, F::Write, F::Held, F::Stack]),
    ),
];

/// One parsed JSON object: the known fields by index, plus the first
/// unknown key (reported once the kind is known).
struct Object {
    values: [Option<Value>; FIELDS.len()],
    unknown: Option<String>,
    duplicate: Option<&'static str>,
}

enum Key {
    Known(usize),
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match FIELDS.iter().position(|&n| n == s) {
                    Some(i) => Key::Known(i),
                    None => Key::Unknown(s.to_owned()),
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object, D::Error> {
        struct ObjVisitor;
        impl<'de> Visitor<'de> for ObjVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut obj = Object {
                    values: std::array::from_fn(|_| None),
                    unknown: None,
                    duplicate: None,
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Known(i) => {
                            let v: Value = map.next_value()?;
                            if obj.values[i].replace(v).is_some() && obj.duplicate.is_none() {
                                obj.duplicate = Some(FIELDS[i]);
                            }
                        }
                        Key::Unknown(k) => {
                            map.next_value::<de::IgnoredAny>()?;
                            obj.unknown.get_or_insert(k);
                        }
                    }
                }
                Ok(obj)
            }
        }
        d.deserialize_map(ObjVisitor)
    }
}

impl Object {
    fn take(&mut self, f: F) -> Option<Value> {
        self.values[f as usize].take()
    }

    fn req(&mut self, f: F) -> Result<Value, JsonlError> {
        self.take(f).ok_or(invalid(Reason::MissingField(f.name())))
    }

    fn u64(&mut self, f: F) -> Result<u64, JsonlError> {
        let v = self.req(f)?;
        as_u64(f, &v)
    }

    fn opt_u64(&mut self, f: F) -> Result<Option<u64>, JsonlError> {
        self.take(f).map(|v| as_u64(f, &v)).transpose()
    }

    fn u32(&mut self, f: F) -> Result<u32, JsonlError> {
        let v = self.req(f)?;
        as_u32(f, &v)
    }

    fn opt_u32(&mut self, f: F) -> Result<Option<u32>, JsonlError> {
        self.take(f).map(|v| as_u32(f, &v)).transpose()
    }

    fn i64(&mut self, f: F) -> Result<i64, JsonlError> {
        match self.req(f)? {
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            _ => Err(bad_type(f, "an integer (i64)")),
        }
    }

    fn bool(&mut self, f: F) -> Result<bool, JsonlError> {
        match self.req(f)? {
            Value::Bool(b) => Ok(b),
            _ => Err(bad_type(f, "true or false")),
        }
    }

    fn opt_bool(&mut self, f: F) -> Result<Option<bool>, JsonlError> {
        match self.take(f) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(bad_type(f, "true or false")),
        }
    }

    fn opt_string(&mut self, f: F) -> Result<Option<String>, JsonlError> {
        if self.values[f as usize].is_none() {
            return Ok(None);
        }
        self.string(f).map(Some)
    }

    fn class(&mut self) -> Result<FileLockClass, JsonlError> {
        match self.req(F::Class)? {
            Value::String(s) => FileLockClass::parse(&s),
            _ => None,
        }
        .ok_or_else(|| bad_type(F::Class, "\"i_rwsem\" or \"invalidate_lock\""))
    }

    fn string(&mut self, f: F) -> Result<String, JsonlError> {
        match self.req(f)? {
            Value::String(s) if s.len() > MAX_STRING => Err(invalid(Reason::BadValue {
                field: f.name(),
                msg: format!("longer than {MAX_STRING} bytes"),
            })),
            Value::String(s) => Ok(s),
            _ => Err(bad_type(f, "a string")),
        }
    }

    fn dev(&mut self) -> Result<Dev, JsonlError> {
        let s = match self.req(F::Dev)? {
            Value::String(s) => s,
            _ => return Err(bad_type(F::Dev, "a \"major:minor\" string")),
        };
        s.parse::<Dev>()
            .map_err(|msg| invalid(Reason::BadValue { field: "dev", msg }))
    }

    fn punch_op(&mut self) -> Result<PunchOp, JsonlError> {
        match self.take(F::Op) {
            None => Ok(PunchOp::Punch),
            Some(Value::String(s)) if PunchOp::parse(&s).is_some() => {
                Ok(PunchOp::parse(&s).unwrap_or_default())
            }
            Some(_) => Err(bad_type(
                F::Op,
                "\"punch\", \"zero\", \"collapse\" or \"insert\"",
            )),
        }
    }

    fn mode(&mut self) -> Result<Mode, JsonlError> {
        match self.req(F::Mode)? {
            Value::String(s) if s == "excl" => Ok(Mode::Excl),
            Value::String(s) if s == "read" => Ok(Mode::Read),
            Value::String(s) if s == "write" => Ok(Mode::Write),
            _ => Err(bad_type(F::Mode, "\"excl\", \"read\" or \"write\"")),
        }
    }
}

fn bad_type(f: F, expected: &'static str) -> JsonlError {
    invalid(Reason::BadType {
        field: f.name(),
        expected,
    })
}

fn as_u64(f: F, v: &Value) -> Result<u64, JsonlError> {
    v.as_u64().ok_or_else(|| bad_type(f, "an unsigned integer"))
}

fn as_u32(f: F, v: &Value) -> Result<u32, JsonlError> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad_type(f, "an unsigned 32-bit integer"))
}

/// Parses one line (without its newline) into an event. Errors carry no
/// line number; [`JsonlReader`] adds it.
#[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
pub fn parse_line(line: &str) -> Result<Event, JsonlError> {
    if line.len() > MAX_LINE {
        return Err(invalid(Reason::TooLong));
    }
    let mut o: Object = serde_json::from_str(line).map_err(|e| {
        // serde_json's messages end in "at line 1 column N", which would be
        // confusing next to our own line number: keep only the column.
        let msg = e.to_string();
        let msg = match msg.rfind(" at line ") {
            Some(i) => format!("{} (column {})", &msg[..i], e.column()),
            None => msg,
        };
        invalid(Reason::Json(msg))
    })?;
    let kind = match o.take(F::Kind) {
        Some(Value::String(k)) => k,
        Some(_) => return Err(bad_type(F::Kind, "a string")),
        None => return Err(invalid(Reason::MissingKind)),
    };
    let Some(&(kind, allowed)) = KINDS.iter().find(|(n, _)| *n == kind) else {
        return Err(invalid(Reason::UnknownKind(kind)));
    };
    if let Some(field) = o.unknown.take() {
        return Err(invalid(Reason::UnknownField { field, kind }));
    }
    let allowed = allowed | COMMON;
    if let Some(i) =
        (0..FIELDS.len()).find(|&i| o.values[i].is_some() && allowed & (1u64 << i) == 0)
    {
        return Err(invalid(Reason::UnknownField {
            field: FIELDS[i].to_owned(),
            kind,
        }));
    }
    if let Some(d) = o.duplicate {
        return Err(invalid(Reason::DuplicateField(d.to_owned())));
    }

    let ts = o.u64(F::Ts)?;
    let tid = o.u32(F::Tid)?;
    let pid = o.u32(F::Pid)?;
    let mut cpu = o.opt_u32(F::Cpu)?;
    let body = match kind {
        "task" => Body::Task {
            comm: o.string(F::Comm)?,
            kthread: o.opt_bool(F::Kthread)?.unwrap_or(false),
        },
        "tree" => Body::Tree {
            tree: o.u64(F::Tree)?,
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
        },
        "rl_request" => Body::RlRequest {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
            start: o.u64(F::Start)?,
            last: o.u64(F::Last)?,
            mode: o.mode()?,
        },
        "rl_acquired" => Body::RlAcquired {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_trylock_failed" => Body::RlTrylockFailed {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_cancel" => Body::RlCancel {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_release" => Body::RlRelease {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_downgrade" => Body::RlDowngrade {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_tree_init" => Body::RlTreeInit {
            tree: o.u64(F::Tree)?,
        },
        "rl_queued" => Body::RlQueued {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
        },
        "rl_queue_seq" => Body::RlQueueSeq {
            tree: o.u64(F::Tree)?,
            lock: o.u64(F::Lock)?,
            seq: o.u64(F::Seq)?,
        },
        "mmap_lock_request" => Body::MmapLockRequest {
            mm: o.u64(F::Mm)?,
            write: o.bool(F::Write)?,
        },
        "mmap_lock_acquired" => Body::MmapLockAcquired {
            mm: o.u64(F::Mm)?,
            write: o.bool(F::Write)?,
            success: o.bool(F::Success)?,
        },
        "mmap_lock_release" => Body::MmapLockRelease {
            mm: o.u64(F::Mm)?,
            write: o.bool(F::Write)?,
        },
        "fault" => Body::Fault {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            index: o.u64(F::Index)?,
        },
        "page_add" => Body::PageAdd {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            index: o.u64(F::Index)?,
            order: o.opt_u32(F::Order)?,
        },
        "dio_begin" => Body::DioBegin {
            io: o.u64(F::Io)?,
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            pos: o.u64(F::Pos)?,
            len: o.u64(F::Len)?,
            write: o.bool(F::Write)?,
        },
        "dio_end" => Body::DioEnd {
            io: o.u64(F::Io)?,
            ret: o.i64(F::Ret)?,
        },
        "punch_begin" => Body::PunchBegin {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            pos: o.u64(F::Pos)?,
            len: o.u64(F::Len)?,
            op: o.punch_op()?,
            id: o.opt_u64(F::Id)?,
        },
        "punch_end" => Body::PunchEnd {
            ret: o.i64(F::Ret)?,
            id: o.opt_u64(F::Id)?,
        },
        "truncate_begin" => Body::TruncateBegin {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            size: o.u64(F::Size)?,
            id: o.opt_u64(F::Id)?,
        },
        "truncate_end" => Body::TruncateEnd {
            ret: o.i64(F::Ret)?,
            id: o.opt_u64(F::Id)?,
        },
        "invalidate_begin" => Body::InvalidateBegin {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            first: o.u64(F::First)?,
            last: o.u64(F::Last)?,
            id: o.opt_u64(F::Id)?,
        },
        "invalidate_end" => Body::InvalidateEnd {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            id: o.opt_u64(F::Id)?,
        },
        "contention_begin" => Body::ContentionBegin {
            addr: o.u64(F::Addr)?,
            flags: o.u32(F::Flags)?,
            caller: o.opt_string(F::Caller)?,
        },
        "contention_end" => Body::ContentionEnd {
            addr: o.opt_u64(F::Addr)?,
            ret: o.i64(F::Ret)?,
        },
        "marker" => Body::Marker {
            text: o.string(F::Text)?,
        },
        "lost" => {
            // `cpu` is required here and names where events were dropped.
            let c = cpu.ok_or(invalid(Reason::MissingField("cpu")))?;
            cpu = Some(c);
            Body::Lost {
                count: o.u64(F::Count)?,
                cpu: c,
                since: o.opt_u64(F::Since)?,
                probe: o.opt_string(F::Probe)?,
            }
        }
        "exit" => Body::Exit,
        "fork" => Body::Fork {
            child: o.u32(F::Child)?,
            child_pid: o.u32(F::ChildPid)?,
        },
        "ordering_evidence" => Body::OrderingEvidence {
            mm: o.u64(F::Mm)?,
            write: o.bool(F::Write)?,
            held: o.u64(F::Held)?,
            stack: o.string(F::Stack)?,
        },
        "file" => Body::File {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            path: o.opt_string(F::Path)?,
            fs: o.opt_string(F::Fs)?,
            i_rwsem: o.opt_u64(F::IRwsem)?,
            invalidate_lock: o.opt_u64(F::InvalidateLock)?,
        },
        "file_lock_request" => Body::FileLockRequest {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            class: o.class()?,
            write: o.bool(F::Write)?,
            trylock: o.opt_bool(F::Try)?,
            stack: o.opt_string(F::Stack)?,
        },
        "file_lock_acquired" => Body::FileLockAcquired {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            class: o.class()?,
            write: o.bool(F::Write)?,
            success: o.bool(F::Success)?,
        },
        "file_lock_release" => Body::FileLockRelease {
            dev: o.dev()?,
            ino: o.u64(F::Ino)?,
            class: o.class()?,
            write: o.bool(F::Write)?,
        },
        "page_fault" => Body::PageFault {
            addr: o.u64(F::Addr)?,
            user: o.bool(F::User)?,
            write: o.opt_bool(F::Write)?,
            held: o.u64(F::Held)?,
            stack: o.opt_string(F::Stack)?,
        },
        // KINDS and this match list the same names.
        other => return Err(invalid(Reason::UnknownKind(other.to_owned()))),
    };
    Ok(Event {
        ts,
        tid,
        pid,
        cpu,
        body,
    })
}

/// Streams events from JSONL input, one `Result` per non-blank line. Errors
/// carry the 1-based line number; after a bad line the reader goes on with
/// the next one, after a read error it ends.
pub struct JsonlReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> JsonlReader<R> {
        JsonlReader {
            input,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The number of the last line read (1-based; 0 before the first).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Reads the next line into `buf`, capped at `MAX_LINE + 1` bytes (the
    /// rest of a longer line is consumed and dropped). Ok(false) at EOF.
    fn read_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let cap = (MAX_LINE + 2) as u64;
        let n = Read::take(&mut self.input, cap).read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            return Ok(Some(self.buf.len() <= MAX_LINE));
        }
        if self.buf.len() <= MAX_LINE {
            return Ok(Some(true)); // last line, without a newline
        }
        // Too long: skip to the end of the line without buffering it.
        loop {
            let (skip, found) = {
                let avail = self.input.fill_buf()?;
                if avail.is_empty() {
                    break;
                }
                match avail.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (avail.len(), false),
                }
            };
            self.input.consume(skip);
            if found {
                break;
            }
        }
        Ok(Some(false))
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Event, JsonlError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let fits = match self.read_line() {
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(fits)) => fits,
                Err(source) => {
                    self.done = true;
                    return Some(Err(JsonlError::Io {
                        line: Some(self.line + 1),
                        source,
                    }));
                }
            };
            self.line += 1;
            if !fits {
                return Some(Err(invalid(Reason::TooLong).at_line(self.line)));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(Err(invalid(Reason::NotUtf8).at_line(self.line)));
            };
            if text.trim().is_empty() {
                continue;
            }
            return Some(parse_line(text).map_err(|e| e.at_line(self.line)));
        }
    }
}

/// Writes `ev` as one canonical JSONL line: `ts, kind, tid, pid, [cpu]`, then
/// the kind's fields in the order of the contract's table.
#[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
pub fn write_event(w: &mut impl Write, ev: &Event) -> io::Result<()> {
    let mut o = Out {
        w,
        buf: itoa::Buffer::new(),
    };
    o.w.write_all(b"{\"ts\":")?;
    o.num(ev.ts)?;
    o.w.write_all(b",\"kind\":\"")?;
    o.w.write_all(ev.body.kind().as_bytes())?;
    o.w.write_all(b"\"")?;
    o.u64("tid", ev.tid.into())?;
    o.u64("pid", ev.pid.into())?;
    if let (Some(cpu), false) = (ev.cpu, matches!(ev.body, Body::Lost { .. })) {
        o.u64("cpu", cpu.into())?;
    }
    match &ev.body {
        Body::Task { comm, kthread } => {
            o.str("comm", comm)?;
            if *kthread {
                o.bool("kthread", true)?;
            }
        }
        Body::Tree { tree, dev, ino } => {
            o.u64("tree", *tree)?;
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
        }
        Body::RlRequest {
            tree,
            lock,
            start,
            last,
            mode,
        } => {
            o.u64("tree", *tree)?;
            o.u64("lock", *lock)?;
            o.u64("start", *start)?;
            o.u64("last", *last)?;
            o.str("mode", mode.as_str())?;
        }
        Body::RlAcquired { tree, lock }
        | Body::RlTrylockFailed { tree, lock }
        | Body::RlCancel { tree, lock }
        | Body::RlRelease { tree, lock }
        | Body::RlDowngrade { tree, lock }
        | Body::RlQueued { tree, lock } => {
            o.u64("tree", *tree)?;
            o.u64("lock", *lock)?;
        }
        Body::RlTreeInit { tree } => o.u64("tree", *tree)?,
        Body::RlQueueSeq { tree, lock, seq } => {
            o.u64("tree", *tree)?;
            o.u64("lock", *lock)?;
            o.u64("seq", *seq)?;
        }
        Body::MmapLockRequest { mm, write } | Body::MmapLockRelease { mm, write } => {
            o.u64("mm", *mm)?;
            o.bool("write", *write)?;
        }
        Body::MmapLockAcquired { mm, write, success } => {
            o.u64("mm", *mm)?;
            o.bool("write", *write)?;
            o.bool("success", *success)?;
        }
        Body::Fault { dev, ino, index } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("index", *index)?;
        }
        Body::PageAdd {
            dev,
            ino,
            index,
            order,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("index", *index)?;
            if let Some(order) = order {
                o.u64("order", (*order).into())?;
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
            o.u64("io", *io)?;
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("pos", *pos)?;
            o.u64("len", *len)?;
            o.bool("write", *write)?;
        }
        Body::DioEnd { io, ret } => {
            o.u64("io", *io)?;
            o.i64("ret", *ret)?;
        }
        Body::PunchBegin {
            dev,
            ino,
            pos,
            len,
            op,
            id,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("pos", *pos)?;
            o.u64("len", *len)?;
            if *op != PunchOp::Punch {
                o.str("op", op.as_str())?;
            }
            o.opt_u64("id", *id)?;
        }
        Body::TruncateBegin { dev, ino, size, id } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("size", *size)?;
            o.opt_u64("id", *id)?;
        }
        Body::PunchEnd { ret, id } | Body::TruncateEnd { ret, id } => {
            o.i64("ret", *ret)?;
            o.opt_u64("id", *id)?;
        }
        Body::InvalidateBegin {
            dev,
            ino,
            first,
            last,
            id,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.u64("first", *first)?;
            o.u64("last", *last)?;
            o.opt_u64("id", *id)?;
        }
        Body::InvalidateEnd { dev, ino, id } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.opt_u64("id", *id)?;
        }
        Body::ContentionBegin {
            addr,
            flags,
            caller,
        } => {
            o.u64("addr", *addr)?;
            o.u64("flags", (*flags).into())?;
            if let Some(c) = caller {
                o.str("caller", c)?;
            }
        }
        Body::ContentionEnd { addr, ret } => {
            o.i64("ret", *ret)?;
            if let Some(addr) = addr {
                o.u64("addr", *addr)?;
            }
        }
        Body::Marker { text } => o.str("text", text)?,
        Body::Lost {
            count,
            cpu,
            since,
            probe,
        } => {
            o.u64("count", *count)?;
            o.u64("cpu", (*cpu).into())?;
            if let Some(s) = since {
                o.u64("since", *s)?;
            }
            if let Some(p) = probe {
                o.str("probe", p)?;
            }
        }
        Body::Exit => {}
        Body::Fork { child, child_pid } => {
            o.u64("child", (*child).into())?;
            o.u64("child_pid", (*child_pid).into())?;
        }
        Body::OrderingEvidence {
            mm,
            write,
            held,
            stack,
        } => {
            o.u64("mm", *mm)?;
            o.bool("write", *write)?;
            o.u64("held", *held)?;
            o.str("stack", stack)?;
        }
        Body::File {
            dev,
            ino,
            path,
            fs,
            i_rwsem,
            invalidate_lock,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            if let Some(p) = path {
                o.str("path", p)?;
            }
            if let Some(f) = fs {
                o.str("fs", f)?;
            }
            if let Some(a) = i_rwsem {
                o.u64("i_rwsem", *a)?;
            }
            if let Some(a) = invalidate_lock {
                o.u64("invalidate_lock", *a)?;
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
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.str("class", class.as_str())?;
            o.bool("write", *write)?;
            if let Some(t) = trylock {
                o.bool("try", *t)?;
            }
            if let Some(s) = stack {
                o.str("stack", s)?;
            }
        }
        Body::FileLockAcquired {
            dev,
            ino,
            class,
            write,
            success,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.str("class", class.as_str())?;
            o.bool("write", *write)?;
            o.bool("success", *success)?;
        }
        Body::FileLockRelease {
            dev,
            ino,
            class,
            write,
        } => {
            o.dev(*dev)?;
            o.u64("ino", *ino)?;
            o.str("class", class.as_str())?;
            o.bool("write", *write)?;
        }
        Body::PageFault {
            addr,
            user,
            write,
            held,
            stack,
        } => {
            o.u64("addr", *addr)?;
            o.bool("user", *user)?;
            if let Some(w) = write {
                o.bool("write", *w)?;
            }
            o.u64("held", *held)?;
            if let Some(s) = stack {
                o.str("stack", s)?;
            }
        }
    }
    o.w.write_all(b"}\n")
}

/// Field writer: integers through `itoa`, strings through serde_json's
/// escaping, no intermediate `Value`.
struct Out<'a, W: Write> {
    w: &'a mut W,
    buf: itoa::Buffer,
}

impl<W: Write> Out<'_, W> {
    fn num(&mut self, n: impl itoa::Integer) -> io::Result<()> {
        self.w.write_all(self.buf.format(n).as_bytes())
    }

    fn key(&mut self, k: &str) -> io::Result<()> {
        self.w.write_all(b",\"")?;
        self.w.write_all(k.as_bytes())?;
        self.w.write_all(b"\":")
    }

    fn u64(&mut self, k: &str, v: u64) -> io::Result<()> {
        self.key(k)?;
        self.num(v)
    }

    fn opt_u64(&mut self, k: &str, v: Option<u64>) -> io::Result<()> {
        match v {
            Some(v) => self.u64(k, v),
            None => Ok(()),
        }
    }

    fn i64(&mut self, k: &str, v: i64) -> io::Result<()> {
        self.key(k)?;
        self.num(v)
    }

    fn bool(&mut self, k: &str, v: bool) -> io::Result<()> {
        self.key(k)?;
        self.w.write_all(if v { b"true" } else { b"false" })
    }

    fn str(&mut self, k: &str, v: &str) -> io::Result<()> {
        self.key(k)?;
        serde_json::to_writer(&mut *self.w, v).map_err(io::Error::from)
    }

    fn dev(&mut self, d: Dev) -> io::Result<()> {
        self.key("dev")?;
        self.w.write_all(b"\"")?;
        self.num(d.major)?;
        self.w.write_all(b":")?;
        self.num(d.minor)?;
        self.w.write_all(b"\"")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The contract documents every kind the reader accepts, with each of
    /// its fields, in its table in `docs/events.md`.
    #[test]
    fn every_kind_and_field_is_documented() {
        let doc = include_str!("../../../docs/events.md");
        for (kind, allowed) in KINDS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{kind}` |")))
                .unwrap_or_else(|| panic!("docs/events.md has no row for kind {kind}"));
            for (i, field) in FIELDS.iter().enumerate() {
                if allowed & (1 << i) != 0 {
                    assert!(
                        row.contains(&format!("`{field}`")),
                        "docs/events.md: kind {kind} does not name its field {field}"
                    );
                }
            }
        }
    }

    /// Arbitrary events as JSONL can carry them: valid devices, and for
    /// `lost` the common cpu equal to the body's (they share a JSON key).
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub(crate) fn arb_event() -> impl Strategy<Value = Event> {
        let dev = (0u32..1 << 12, 0u32..1 << 20).prop_map(|(major, minor)| Dev { major, minor });
        let mode = prop_oneof![Just(Mode::Excl), Just(Mode::Read), Just(Mode::Write)];
        let s = "\\PC{0,20}|[\\x00-\\x1f\"\\\\]{0,4}";
        let body = prop_oneof![
            (s, any::<bool>()).prop_map(|(comm, kthread)| Body::Task { comm, kthread }),
            (any::<u32>(), any::<u32>())
                .prop_map(|(child, child_pid)| Body::Fork { child, child_pid }),
            (any::<u64>(), dev.clone(), any::<u64>()).prop_map(|(tree, dev, ino)| Body::Tree {
                tree,
                dev,
                ino
            }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), mode).prop_map(
                |(tree, lock, start, last, mode)| Body::RlRequest {
                    tree,
                    lock,
                    start,
                    last,
                    mode
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(tree, lock)| Body::RlAcquired { tree, lock }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(tree, lock)| Body::RlTrylockFailed { tree, lock }),
            (any::<u64>(), any::<u64>()).prop_map(|(tree, lock)| Body::RlCancel { tree, lock }),
            (any::<u64>(), any::<u64>()).prop_map(|(tree, lock)| Body::RlRelease { tree, lock }),
            (any::<u64>(), any::<u64>()).prop_map(|(tree, lock)| Body::RlDowngrade { tree, lock }),
            any::<u64>().prop_map(|tree| Body::RlTreeInit { tree }),
            (any::<u64>(), any::<u64>()).prop_map(|(tree, lock)| Body::RlQueued { tree, lock }),
            (any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(tree, lock, seq)| Body::RlQueueSeq { tree, lock, seq }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(mm, write)| Body::MmapLockRequest { mm, write }),
            (any::<u64>(), any::<bool>(), any::<bool>())
                .prop_map(|(mm, write, success)| Body::MmapLockAcquired { mm, write, success }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(mm, write)| Body::MmapLockRelease { mm, write }),
            (dev.clone(), any::<u64>(), any::<u64>()).prop_map(|(dev, ino, index)| Body::Fault {
                dev,
                ino,
                index
            }),
            (
                dev.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<Option<u32>>()
            )
                .prop_map(|(dev, ino, index, order)| Body::PageAdd {
                    dev,
                    ino,
                    index,
                    order
                }),
            (
                any::<u64>(),
                dev.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(|(io, dev, ino, pos, len, write)| Body::DioBegin {
                    io,
                    dev,
                    ino,
                    pos,
                    len,
                    write
                }),
            (any::<u64>(), any::<i64>()).prop_map(|(io, ret)| Body::DioEnd { io, ret }),
            (
                dev.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                prop::sample::select(&PunchOp::ALL[..]),
                any::<Option<u64>>()
            )
                .prop_map(|(dev, ino, pos, len, op, id)| Body::PunchBegin {
                    dev,
                    ino,
                    pos,
                    len,
                    op,
                    id
                }),
            (any::<i64>(), any::<Option<u64>>()).prop_map(|(ret, id)| Body::PunchEnd { ret, id }),
            (
                dev.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<Option<u64>>()
            )
                .prop_map(|(dev, ino, size, id)| Body::TruncateBegin {
                    dev,
                    ino,
                    size,
                    id
                }),
            (any::<i64>(), any::<Option<u64>>())
                .prop_map(|(ret, id)| Body::TruncateEnd { ret, id }),
            (
                dev.clone(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<Option<u64>>()
            )
                .prop_map(|(dev, ino, first, last, id)| Body::InvalidateBegin {
                    dev,
                    ino,
                    first,
                    last,
                    id
                }),
            (dev.clone(), any::<u64>(), any::<Option<u64>>())
                .prop_map(|(dev, ino, id)| Body::InvalidateEnd { dev, ino, id }),
            (any::<u64>(), any::<u32>(), proptest::option::of(s)).prop_map(
                |(addr, flags, caller)| Body::ContentionBegin {
                    addr,
                    flags,
                    caller
                }
            ),
            (any::<Option<u64>>(), any::<i64>())
                .prop_map(|(addr, ret)| Body::ContentionEnd { addr, ret }),
            s.prop_map(|text| Body::Marker { text }),
            (
                any::<u64>(),
                any::<u32>(),
                any::<Option<u64>>(),
                proptest::option::of(s)
            )
                .prop_map(|(count, cpu, since, probe)| Body::Lost {
                    count,
                    cpu,
                    since,
                    probe
                }),
            Just(Body::Exit),
            (any::<u64>(), any::<bool>(), any::<u64>(), s).prop_map(|(mm, write, held, stack)| {
                Body::OrderingEvidence {
                    mm,
                    write,
                    held,
                    stack,
                }
            }),
            arb_lock_body(dev, s),
        ];
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<Option<u32>>(),
            body,
        )
            .prop_map(|(ts, tid, pid, cpu, body)| {
                let cpu = match body {
                    Body::Lost { cpu, .. } => Some(cpu),
                    _ => cpu,
                };
                Event {
                    ts,
                    tid,
                    pid,
                    cpu,
                    body,
                }
            })
    }

    /// The kinds of issue 14's locks part.
    fn arb_lock_body(
        dev: impl Strategy<Value = Dev> + Clone + 'static,
        s: &'static str,
    ) -> impl Strategy<Value = Body> {
        let class = prop_oneof![
            Just(FileLockClass::IRwsem),
            Just(FileLockClass::InvalidateLock)
        ];
        prop_oneof![
            (
                dev.clone(),
                any::<u64>(),
                proptest::option::of(s),
                proptest::option::of(s),
                any::<Option<u64>>(),
                any::<Option<u64>>()
            )
                .prop_map(|(dev, ino, path, fs, i_rwsem, invalidate_lock)| {
                    Body::File {
                        dev,
                        ino,
                        path,
                        fs,
                        i_rwsem,
                        invalidate_lock,
                    }
                }),
            (
                dev.clone(),
                any::<u64>(),
                class.clone(),
                any::<bool>(),
                any::<Option<bool>>(),
                proptest::option::of(s)
            )
                .prop_map(|(dev, ino, class, write, trylock, stack)| {
                    Body::FileLockRequest {
                        dev,
                        ino,
                        class,
                        write,
                        trylock,
                        stack,
                    }
                }),
            (
                dev.clone(),
                any::<u64>(),
                class.clone(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(|(dev, ino, class, write, success)| Body::FileLockAcquired {
                    dev,
                    ino,
                    class,
                    write,
                    success
                }),
            (dev, any::<u64>(), class, any::<bool>()).prop_map(|(dev, ino, class, write)| {
                Body::FileLockRelease {
                    dev,
                    ino,
                    class,
                    write,
                }
            }),
            (
                any::<u64>(),
                any::<bool>(),
                any::<Option<bool>>(),
                any::<u64>(),
                proptest::option::of(s)
            )
                .prop_map(|(addr, user, write, held, stack)| Body::PageFault {
                    addr,
                    user,
                    write,
                    held,
                    stack
                }),
        ]
    }

    fn line(ev: &Event) -> String {
        let mut v = Vec::new();
        write_event(&mut v, ev).unwrap();
        String::from_utf8(v).unwrap()
    }

    proptest! {
        #[test]
        fn write_then_parse_is_identity(ev in arb_event()) {
            let l = line(&ev);
            prop_assert!(l.ends_with('\n') && l.matches('\n').count() == 1);
            let back = parse_line(l.trim_end_matches('\n')).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, ev);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse_line(&s);
        }
    }

    fn err(l: &str) -> String {
        parse_line(l).unwrap_err().to_string()
    }

    #[test]
    fn canonical_field_order() {
        let ev = Event {
            ts: 5,
            tid: 7,
            pid: 6,
            cpu: Some(1),
            body: Body::DioBegin {
                io: 9,
                dev: Dev { major: 8, minor: 3 },
                ino: 12,
                pos: 8192,
                len: 4096,
                write: true,
            },
        };
        assert_eq!(
            line(&ev),
            "{\"ts\":5,\"kind\":\"dio_begin\",\"tid\":7,\"pid\":6,\"cpu\":1,\"io\":9,\"dev\":\"8:3\",\"ino\":12,\"pos\":8192,\"len\":4096,\"write\":true}\n"
        );
    }

    /// The fields issue 14 added: `op` and `id` on punch and truncate
    /// events, the two window kinds; absent, they mean what they meant.
    #[test]
    fn file_operation_ids_ops_and_windows() {
        let dev = Dev { major: 7, minor: 1 };
        let cases = [
            (
                r#"{"ts":1,"kind":"punch_begin","tid":2,"pid":2,"dev":"7:1","ino":12,"pos":0,"len":4096,"op":"collapse","id":4096}"#,
                Body::PunchBegin {
                    dev,
                    ino: 12,
                    pos: 0,
                    len: 4096,
                    op: PunchOp::Collapse,
                    id: Some(4096),
                },
            ),
            // An old line: a punch, paired by task.
            (
                r#"{"ts":1,"kind":"punch_begin","tid":2,"pid":2,"dev":"7:1","ino":12,"pos":0,"len":4096}"#,
                Body::PunchBegin {
                    dev,
                    ino: 12,
                    pos: 0,
                    len: 4096,
                    op: PunchOp::Punch,
                    id: None,
                },
            ),
            (
                r#"{"ts":1,"kind":"punch_end","tid":9,"pid":9,"ret":-95,"id":4096}"#,
                Body::PunchEnd {
                    ret: -95,
                    id: Some(4096),
                },
            ),
            (
                r#"{"ts":1,"kind":"truncate_begin","tid":2,"pid":2,"dev":"7:1","ino":12,"size":0,"id":1}"#,
                Body::TruncateBegin {
                    dev,
                    ino: 12,
                    size: 0,
                    id: Some(1),
                },
            ),
            (
                r#"{"ts":1,"kind":"truncate_end","tid":2,"pid":2,"ret":0}"#,
                Body::TruncateEnd { ret: 0, id: None },
            ),
            (
                r#"{"ts":1,"kind":"invalidate_begin","tid":2,"pid":2,"dev":"7:1","ino":12,"first":1,"last":18446744073709551615,"id":1}"#,
                Body::InvalidateBegin {
                    dev,
                    ino: 12,
                    first: 1,
                    last: u64::MAX,
                    id: Some(1),
                },
            ),
            (
                r#"{"ts":1,"kind":"invalidate_end","tid":2,"pid":2,"dev":"7:1","ino":12,"id":1}"#,
                Body::InvalidateEnd {
                    dev,
                    ino: 12,
                    id: Some(1),
                },
            ),
        ];
        for (text, body) in cases {
            let ev = parse_line(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ev.body, body, "{text}");
            // Canonical form: written back as read.
            assert_eq!(line(&ev).trim_end(), text);
        }
        // `"op":"punch"` is the default, so it is not written back.
        let ev = parse_line(
            r#"{"ts":1,"kind":"punch_begin","tid":2,"pid":2,"dev":"7:1","ino":12,"pos":0,"len":1,"op":"punch"}"#,
        )
        .unwrap();
        assert!(!line(&ev).contains("\"op\""));
        assert_eq!(
            err(
                r#"{"ts":1,"kind":"punch_begin","tid":2,"pid":2,"dev":"7:1","ino":1,"pos":0,"len":1,"op":"trim"}"#
            ),
            "field \"op\" must be \"punch\", \"zero\", \"collapse\" or \"insert\""
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"dio_end","tid":2,"pid":2,"io":1,"ret":0,"id":3}"#),
            "unknown field \"id\" for kind \"dio_end\""
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"invalidate_end","tid":2,"pid":2,"dev":"7:1","id":3}"#),
            "missing field \"ino\""
        );
    }

    #[test]
    fn strict_errors() {
        assert_eq!(
            err(r#"{"ts":1,"kind":"foo","tid":1,"pid":1}"#),
            "unknown kind \"foo\""
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"fault","tid":1,"pid":1,"bar":2,"dev":"8:1","ino":1,"index":1}"#),
            "unknown field \"bar\" for kind \"fault\""
        );
        // A contract field that belongs to another kind is unknown here too.
        assert_eq!(
            err(r#"{"ts":1,"kind":"fault","tid":1,"pid":1,"len":2,"dev":"8:1","ino":1,"index":1}"#),
            "unknown field \"len\" for kind \"fault\""
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"fault","tid":1,"pid":1,"dev":"8:1","index":1}"#),
            "missing field \"ino\""
        );
        assert_eq!(err(r#"{"ts":1,"tid":1,"pid":1}"#), "missing field \"kind\"");
        assert_eq!(
            err(r#"{"ts":-1,"kind":"exit","tid":1,"pid":1}"#),
            "field \"ts\" must be an unsigned integer"
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"exit","tid":4294967296,"pid":1}"#),
            "field \"tid\" must be an unsigned 32-bit integer"
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"exit","tid":1,"pid":1,"tid":2}"#),
            "duplicate field \"tid\""
        );
        assert!(
            err(r#"{"ts":1,"kind":"tree","tid":1,"pid":1,"tree":1,"dev":"8","ino":1}"#)
                .starts_with("field \"dev\": device \"8\"")
        );
        assert!(err("[1]").starts_with("not a JSON object"));
        assert!(
            err(r#"{"ts":1,"kind":"exit","tid":1,"pid":1} x"#).starts_with("not a JSON object")
        );
        assert_eq!(
            err(r#"{"ts":1,"kind":"lost","tid":0,"pid":0,"count":3}"#),
            "missing field \"cpu\""
        );
    }

    #[test]
    fn reader_numbers_lines_and_skips_blank_ones() {
        let input = "\n{\"ts\":1,\"kind\":\"exit\",\"tid\":1,\"pid\":1}\r\n  \n{\"ts\":2,\"kind\":\"nope\",\"tid\":1,\"pid\":1}\n{\"ts\":3,\"kind\":\"exit\",\"tid\":1,\"pid\":1}";
        let out: Vec<_> = JsonlReader::new(input.as_bytes()).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().ts, 1);
        assert_eq!(
            out[1].as_ref().unwrap_err().to_string(),
            "line 4: unknown kind \"nope\""
        );
        assert_eq!(out[2].as_ref().unwrap().ts, 3);
    }

    #[test]
    fn reader_rejects_long_lines_and_goes_on() {
        let mut input = vec![b' '; MAX_LINE + 10];
        input.push(b'\n');
        input.extend_from_slice(b"{\"ts\":3,\"kind\":\"exit\",\"tid\":1,\"pid\":1}\n\xff\n");
        let out: Vec<_> = JsonlReader::new(&input[..]).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(
            out[0].as_ref().unwrap_err().to_string(),
            format!("line 1: line is longer than {MAX_LINE} bytes")
        );
        assert_eq!(out[1].as_ref().unwrap().ts, 3);
        assert_eq!(
            out[2].as_ref().unwrap_err().to_string(),
            "line 3: line is not valid UTF-8"
        );
    }
}
