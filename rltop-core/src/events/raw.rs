//! Decoding of kernel ring-buffer records (`rl-common`) into [`Event`]s.

use rl_common::{
    BATCH_LEN, BATCH_SIZE, COMM_LEN, FILE_RECORD_SIZE, FLAG_ID, FLAG_NO_ORDER, FLAG_SUCCESS,
    FLAG_TRY, FLAG_TRY_KNOWN, FLAG_USER, FLAG_WRITE, FS_NAME_LEN, Kind, LOCK_MODE_NONE,
    LOCK_MODE_WRITE, LOCK_OP_DEMOTE, LOCK_OP_LOCK, LOCK_OP_TRYLOCK, LOCK_OP_TRYLOCK_OK,
    LOCK_OP_UNLOCK, LockClass, MARKER_RECORD_SIZE, MARKER_TEXT_LEN, NAME_BYTES, OP_MASK,
    PATH_COMPLETE, PATH_CUT, PATH_DEPTH, RECORD_SIZE, RecordHeader,
};

use super::{Body, Dev, Event, FileLockClass, Mode, PunchOp};

/// What the decoder puts in an `ordering_evidence` stack before user space
/// symbolizes it: this prefix and the kernel stack id.
pub const STACK_ID_PREFIX: &str = "stackid:";

/// What the decoder puts in a `contention_begin` caller before user space
/// names it: this prefix and the kernel code address (hex).
pub const CALLER_IP_PREFIX: &str = "ip:";

/// What the decoder puts first in a `file` path when the kernel side's walk
/// reached the filesystem's root: the path is within the filesystem, and
/// user space puts the mount point in front (`probe::names`).
pub const FS_PATH_PREFIX: &str = "fs:";

/// Why a ring-buffer record could not be decoded. Seeing one means the
/// kernel and user halves disagree about the ABI: a bug, not bad input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record kind {0} is unknown")]
    UnknownKind(u8),
    #[error("{kind:?} record has {len} bytes, expected {want}")]
    BadSize { kind: Kind, len: usize, want: usize },
    #[error("{0:?} records are never written by the kernel side")]
    NotFromKernel(Kind),
    #[error("a FileLockOps record stands for several events; decode it with decode_entry")]
    Several,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn header(b: &[u8]) -> RecordHeader {
    RecordHeader {
        ts: u64_at(b, 0),
        tid: u32_at(b, 8),
        pid: u32_at(b, 12),
        kind: b[16],
        flags: b[17],
        cpu: u16::from_ne_bytes([b[18], b[19]]),
        dev: u32_at(b, 20),
    }
}

/// Text of a NUL-padded kernel byte string, lossily as UTF-8.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Decodes one ring-buffer entry: a [`rl_common::Batch`] of records from one
/// CPU (told apart by its length), or a single record.
pub fn decode_entry(b: &[u8], out: &mut impl FnMut(Result<Event, RawError>)) {
    if b.len() == BATCH_SIZE {
        let n = (u32_at(b, 0) as usize).min(BATCH_LEN);
        for i in 0..n {
            let at = 8 + i * RECORD_SIZE;
            decode_record(&b[at..at + RECORD_SIZE], out);
        }
    } else {
        decode_record(b, out);
    }
}

/// Decodes one record into its events: one, except a
/// [`Kind::FileLockOps`] record, which stands for several.
fn decode_record(b: &[u8], out: &mut impl FnMut(Result<Event, RawError>)) {
    const HDR: usize = core::mem::size_of::<RecordHeader>();
    if b.len() >= RECORD_SIZE && b[16] == Kind::FileLockOps as u8 {
        let h = header(b);
        let w = |i: usize| u64_at(b, HDR + 8 * i);
        let ev = |body| Event {
            ts: h.ts,
            tid: h.tid,
            pid: h.pid,
            cpu: Some(h.cpu as u32),
            body,
        };
        for body in lock_ops(Dev::from_kernel(h.dev), w(0), w(1), w(2), w(3)) {
            out(Ok(ev(body)));
        }
    } else {
        // A return with the lock's queue sequence number: its own event
        // first (the checker judges the outcome with it).
        if b.len() >= RECORD_SIZE
            && (b[16] == Kind::RlAcquired as u8 || b[16] == Kind::RlCancel as u8)
            && header(b).flags & rl_common::FLAG_QUEUE_SEQ != 0
        {
            let h = header(b);
            let w = |i: usize| u64_at(b, HDR + 8 * i);
            out(Ok(Event {
                ts: h.ts,
                tid: h.tid,
                pid: h.pid,
                cpu: Some(h.cpu as u32),
                body: Body::RlQueueSeq {
                    tree: w(0),
                    lock: w(1),
                    seq: w(2),
                },
            }));
        }
        out(decode(b));
    }
}

/// The events of a [`Kind::FileLockOps`] record, in the kernel's order:
/// i_rwsem before invalidate_lock, except when demoting (xfs_ilock_demote
/// downgrades MMAPLOCK before IOLOCK).
pub fn lock_ops(dev: Dev, ino: u64, op: u64, io: u64, inv: u64) -> Vec<Body> {
    let mut locks = [
        (FileLockClass::IRwsem, io),
        (FileLockClass::InvalidateLock, inv),
    ];
    if op == LOCK_OP_DEMOTE {
        locks.reverse();
    }
    let mut out = Vec::new();
    for (class, mode) in locks {
        if mode == LOCK_MODE_NONE {
            continue;
        }
        let write = mode == LOCK_MODE_WRITE;
        let request = |write, trylock| Body::FileLockRequest {
            dev,
            ino,
            class,
            write,
            trylock: Some(trylock),
            stack: None,
        };
        let acquired = |write| Body::FileLockAcquired {
            dev,
            ino,
            class,
            write,
            success: true,
        };
        match op {
            LOCK_OP_LOCK => out.push(request(write, false)),
            LOCK_OP_TRYLOCK => out.push(request(write, true)),
            LOCK_OP_TRYLOCK_OK => {
                out.push(request(write, true));
                out.push(acquired(write));
            }
            LOCK_OP_UNLOCK => out.push(Body::FileLockRelease {
                dev,
                ino,
                class,
                write,
            }),
            LOCK_OP_DEMOTE if write => {
                out.push(Body::FileLockRelease {
                    dev,
                    ino,
                    class,
                    write: true,
                });
                out.push(request(false, false));
                out.push(acquired(false));
            }
            _ => {}
        }
    }
    out
}

/// Decodes one ring-buffer record.
#[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
pub fn decode(b: &[u8]) -> Result<Event, RawError> {
    const HDR: usize = core::mem::size_of::<RecordHeader>();
    if b.len() < HDR {
        return Err(RawError::Short(b.len()));
    }
    let h = header(b);
    let kind = Kind::from_u8(h.kind).ok_or(RawError::UnknownKind(h.kind))?;
    let want = match kind {
        Kind::Marker => MARKER_RECORD_SIZE,
        Kind::File => FILE_RECORD_SIZE,
        _ => RECORD_SIZE,
    };
    if b.len() < want {
        return Err(RawError::BadSize {
            kind,
            len: b.len(),
            want,
        });
    }
    let w = |i: usize| u64_at(b, HDR + 8 * i);
    let dev = Dev::from_kernel(h.dev);
    let write = h.flags & FLAG_WRITE != 0;
    // The id of punch, truncate and invalidate records, in word `i`.
    let id = |i: usize| (h.flags & FLAG_ID != 0).then(|| w(i));
    let body = match kind {
        Kind::Task => Body::Task {
            comm: c_text(&b[HDR..HDR + COMM_LEN]),
            kthread: h.flags & rl_common::FLAG_KTHREAD != 0,
        },
        Kind::Tree => Body::Tree {
            tree: w(0),
            dev,
            ino: w(1),
        },
        Kind::RlRequest => Body::RlRequest {
            tree: w(0),
            lock: w(1),
            start: w(2),
            last: w(3),
            mode: match h.flags {
                1 => Mode::Read,
                2 => Mode::Write,
                _ => Mode::Excl,
            },
        },
        Kind::RlAcquired => Body::RlAcquired {
            tree: w(0),
            lock: w(1),
        },
        Kind::RlTrylockFailed => Body::RlTrylockFailed {
            tree: w(0),
            lock: w(1),
        },
        Kind::RlCancel => Body::RlCancel {
            tree: w(0),
            lock: w(1),
        },
        Kind::RlDowngrade => Body::RlDowngrade {
            tree: w(0),
            lock: w(1),
        },
        Kind::RlTreeInit => Body::RlTreeInit { tree: w(0) },
        Kind::RlQueued => Body::RlQueued {
            tree: w(0),
            lock: w(1),
        },
        Kind::RlRelease => Body::RlRelease {
            tree: w(0),
            lock: w(1),
        },
        Kind::MmapLockRequest => Body::MmapLockRequest { mm: w(0), write },
        Kind::MmapLockAcquired => Body::MmapLockAcquired {
            mm: w(0),
            write,
            success: h.flags & FLAG_SUCCESS != 0,
        },
        Kind::MmapLockRelease => Body::MmapLockRelease { mm: w(0), write },
        Kind::Fault => Body::Fault {
            dev,
            ino: w(0),
            index: w(1),
        },
        Kind::PageAdd => Body::PageAdd {
            dev,
            ino: w(0),
            index: w(1),
            // Without the tracepoint's order field the size is unknown.
            order: (h.flags & FLAG_NO_ORDER == 0).then(|| w(2) as u32),
        },
        Kind::DioBegin => Body::DioBegin {
            io: w(0),
            dev,
            ino: w(1),
            pos: w(2),
            len: w(3),
            write,
        },
        Kind::DioEnd => Body::DioEnd {
            io: w(0),
            ret: w(1) as i64,
        },
        Kind::PunchBegin => Body::PunchBegin {
            dev,
            ino: w(0),
            pos: w(1),
            len: w(2),
            op: PunchOp::ALL[usize::from(h.flags & OP_MASK)],
            id: id(3),
        },
        Kind::PunchEnd => Body::PunchEnd {
            ret: w(0) as i64,
            id: id(1),
        },
        Kind::TruncateBegin => Body::TruncateBegin {
            dev,
            ino: w(0),
            size: w(1),
            id: id(2),
        },
        Kind::TruncateEnd => Body::TruncateEnd {
            ret: w(0) as i64,
            id: id(1),
        },
        Kind::InvalidateBegin => Body::InvalidateBegin {
            dev,
            ino: w(0),
            first: w(1),
            last: w(2),
            id: id(3),
        },
        Kind::InvalidateEnd => Body::InvalidateEnd {
            dev,
            ino: w(0),
            id: id(1),
        },
        // `w2`: the caller's code address, 0 when the stack had none
        // (named by user space, see `probe::names`).
        Kind::ContentionBegin => Body::ContentionBegin {
            addr: w(0),
            flags: w(1) as u32,
            caller: (w(2) != 0).then(|| format!("{CALLER_IP_PREFIX}{:x}", w(2))),
        },
        Kind::ContentionEnd => Body::ContentionEnd {
            addr: Some(w(0)),
            ret: w(1) as i64,
        },
        Kind::Marker => {
            let len = (u32_at(b, HDR) as usize).min(MARKER_TEXT_LEN);
            let text = &b[HDR + 8..HDR + 8 + len];
            // Console lines end with a newline on some kernels; the marker is the text.
            Body::Marker {
                text: c_text(text).trim_end_matches('\n').to_owned(),
            }
        }
        Kind::Exit => Body::Exit,
        Kind::Fork => Body::Fork {
            child: w(0) as u32,
            child_pid: w(1) as u32,
        },
        // User space symbolizes the stack id (see `probe::Session`).
        Kind::OrderEvidence => Body::OrderingEvidence {
            mm: w(0),
            write,
            held: w(2),
            stack: format!("{STACK_ID_PREFIX}{}", w(1) as i64),
        },
        Kind::File => file(b, dev),
        Kind::FileLockRequest | Kind::FileLockAcquired | Kind::FileLockRelease => {
            let class = if w(1) == LockClass::InvalidateLock as u64 {
                FileLockClass::InvalidateLock
            } else {
                FileLockClass::IRwsem
            };
            let ino = w(0);
            match kind {
                Kind::FileLockRequest => Body::FileLockRequest {
                    dev,
                    ino,
                    class,
                    write,
                    trylock: (h.flags & FLAG_TRY_KNOWN != 0).then_some(h.flags & FLAG_TRY != 0),
                    // The stack id plus one, 0 for none.
                    stack: (w(2) != 0).then(|| format!("{STACK_ID_PREFIX}{}", w(2) - 1)),
                },
                Kind::FileLockAcquired => Body::FileLockAcquired {
                    dev,
                    ino,
                    class,
                    write,
                    success: h.flags & FLAG_SUCCESS != 0,
                },
                _ => Body::FileLockRelease {
                    dev,
                    ino,
                    class,
                    write,
                },
            }
        }
        Kind::PageFault => Body::PageFault {
            addr: w(0),
            user: h.flags & FLAG_USER != 0,
            write: fault_write(w(3)),
            held: w(2),
            stack: ((w(1) as i64) >= 0).then(|| format!("{STACK_ID_PREFIX}{}", w(1) as i64)),
        },
        Kind::Lost => return Err(RawError::NotFromKernel(kind)),
        // Several events: `decode_entry` expands it.
        Kind::FileLockOps => return Err(RawError::Several),
    };
    Ok(Event {
        ts: h.ts,
        tid: h.tid,
        pid: h.pid,
        cpu: Some(h.cpu as u32),
        body,
    })
}

/// Whether a page fault was a write, from the hardware error code: on
/// x86-64 bit 1 (`X86_PF_WRITE`, defined by the CPU, see
/// arch/x86/include/asm/trapnr.h and the SDM). Unknown elsewhere.
fn fault_write(error_code: u64) -> Option<bool> {
    if cfg!(target_arch = "x86_64") {
        Some(error_code & 2 != 0)
    } else {
        None
    }
}

/// A [`rl_common::FileRecord`]: the path's components come leaf first.
fn file(b: &[u8], dev: Dev) -> Body {
    const HDR: usize = core::mem::size_of::<RecordHeader>();
    let ino = u64_at(b, HDR);
    let i_rwsem = u64_at(b, HDR + 8);
    let invalidate_lock = u64_at(b, HDR + 16);
    let fs = c_text(&b[HDR + 24..HDR + 24 + FS_NAME_LEN]);
    let at = HDR + 24 + FS_NAME_LEN;
    let depth = (u32_at(b, at) as usize).min(PATH_DEPTH);
    let flags = u32_at(b, at + 4);
    let slots = at + 8;
    let mut parts: Vec<String> = (0..depth)
        .map(|i| c_text(&b[slots + i * NAME_BYTES..slots + (i + 1) * NAME_BYTES]))
        .collect();
    parts.reverse();
    let path = if parts.is_empty() {
        None
    } else if flags & PATH_COMPLETE != 0 && flags & PATH_CUT == 0 {
        Some(format!("{FS_PATH_PREFIX}/{}", parts.join("/")))
    } else {
        // Deeper than the walk goes, or a name cut: say so, never guess.
        Some(format!(".../{}", parts.join("/")))
    };
    Body::File {
        dev,
        ino,
        path,
        fs: (!fs.is_empty()).then_some(fs),
        i_rwsem: (i_rwsem != 0).then_some(i_rwsem),
        invalidate_lock: (invalidate_lock != 0).then_some(invalidate_lock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rl_common::{MarkerRecord, Record};

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is one of rl-common's #[repr(C)] records without padding;
        // reading its bytes is reading initialised integers.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_a_dio_begin() {
        let r = Record {
            hdr: RecordHeader {
                ts: 5,
                tid: 7,
                pid: 6,
                kind: Kind::DioBegin as u8,
                flags: FLAG_WRITE,
                cpu: 1,
                dev: (8 << 20) | 3,
            },
            w: [0xffff_8880_0000_1000, 42, 8192, 4096],
        };
        let e = decode(&bytes(&r)).unwrap();
        assert_eq!(e.ts, 5);
        assert_eq!((e.tid, e.pid, e.cpu), (7, 6, Some(1)));
        assert_eq!(
            e.body,
            Body::DioBegin {
                io: 0xffff_8880_0000_1000,
                dev: Dev { major: 8, minor: 3 },
                ino: 42,
                pos: 8192,
                len: 4096,
                write: true
            }
        );
    }

    #[test]
    fn decodes_a_marker_and_cuts_at_len() {
        let mut m = MarkerRecord {
            hdr: RecordHeader {
                kind: Kind::Marker as u8,
                ..Default::default()
            },
            len: 5,
            _pad: 0,
            text: [b'x'; MARKER_TEXT_LEN],
        };
        m.text[..5].copy_from_slice(b"run f");
        assert_eq!(
            decode(&bytes(&m)).unwrap().body,
            Body::Marker {
                text: "run f".into()
            }
        );
    }

    #[test]
    fn decodes_a_batch_up_to_its_count() {
        let mut b = rl_common::Batch {
            n: 2,
            ..Default::default()
        };
        for (i, r) in b.records.iter_mut().enumerate() {
            *r = Record {
                hdr: RecordHeader {
                    ts: i as u64,
                    kind: Kind::Exit as u8,
                    ..Default::default()
                },
                w: [0; 4],
            };
        }
        let mut got = Vec::new();
        decode_entry(&bytes(&b), &mut |e| got.push(e.unwrap().ts));
        assert_eq!(got, vec![0, 1]);
        // A count beyond the array is clamped, never read past the entry.
        b.n = 99;
        let mut n = 0;
        decode_entry(&bytes(&b), &mut |_| n += 1);
        assert_eq!(n, BATCH_LEN);
    }

    #[test]
    fn decodes_ordering_evidence_with_its_stack_id() {
        let r = Record {
            hdr: RecordHeader {
                ts: 9,
                tid: 3,
                pid: 3,
                kind: Kind::OrderEvidence as u8,
                flags: FLAG_WRITE,
                cpu: 0,
                dev: 0,
            },
            w: [0xffff_8880_0000_2000, (-14i64) as u64, 2, 0],
        };
        assert_eq!(
            decode(&bytes(&r)).unwrap().body,
            Body::OrderingEvidence {
                mm: 0xffff_8880_0000_2000,
                write: true,
                held: 2,
                stack: "stackid:-14".into()
            }
        );
    }

    fn rec(kind: Kind, flags: u8, w: [u64; 4]) -> Record {
        Record {
            hdr: RecordHeader {
                ts: 1,
                tid: 2,
                pid: 2,
                kind: kind as u8,
                flags,
                cpu: 0,
                dev: (7 << 20) | 1,
            },
            w,
        }
    }

    #[test]
    fn decodes_ops_with_their_ids_and_windows() {
        let dev = Dev { major: 7, minor: 1 };
        let d = |r: Record| decode(&bytes(&r)).unwrap().body;
        assert_eq!(
            d(rec(Kind::PunchBegin, FLAG_ID | 2, [12, 4096, 8192, 77])),
            Body::PunchBegin {
                dev,
                ino: 12,
                pos: 4096,
                len: 8192,
                op: PunchOp::Collapse,
                id: Some(77)
            }
        );
        // Without FLAG_ID the spare word is not an id.
        assert_eq!(
            d(rec(Kind::PunchBegin, 0, [12, 0, 1, 99])),
            Body::PunchBegin {
                dev,
                ino: 12,
                pos: 0,
                len: 1,
                op: PunchOp::Punch,
                id: None
            }
        );
        assert_eq!(
            d(rec(Kind::PunchEnd, FLAG_ID, [(-22i64) as u64, 77, 0, 0])),
            Body::PunchEnd {
                ret: -22,
                id: Some(77)
            }
        );
        assert_eq!(
            d(rec(Kind::TruncateBegin, FLAG_ID, [12, 100, 5, 0])),
            Body::TruncateBegin {
                dev,
                ino: 12,
                size: 100,
                id: Some(5)
            }
        );
        assert_eq!(
            d(rec(Kind::TruncateEnd, FLAG_ID, [0, 5, 0, 0])),
            Body::TruncateEnd {
                ret: 0,
                id: Some(5)
            }
        );
        assert_eq!(
            d(rec(Kind::InvalidateBegin, FLAG_ID, [12, 1, u64::MAX, 5])),
            Body::InvalidateBegin {
                dev,
                ino: 12,
                first: 1,
                last: u64::MAX,
                id: Some(5)
            }
        );
        assert_eq!(
            d(rec(Kind::InvalidateEnd, FLAG_ID, [12, 5, 0, 0])),
            Body::InvalidateEnd {
                dev,
                ino: 12,
                id: Some(5)
            }
        );
        // A page_add from a tracepoint without `order`: size unknown.
        assert_eq!(
            d(rec(Kind::PageAdd, FLAG_NO_ORDER, [12, 3, 0, 0])),
            Body::PageAdd {
                dev,
                ino: 12,
                index: 3,
                order: None
            }
        );
    }

    #[test]
    fn decodes_a_file_record_leaf_first() {
        let mut r = rl_common::FileRecord {
            hdr: RecordHeader {
                ts: 1,
                tid: 2,
                pid: 2,
                kind: Kind::File as u8,
                flags: 0,
                cpu: 0,
                dev: (7 << 20) | 1,
            },
            ino: 12,
            i_rwsem: 0xffff_8880_0000_1000,
            invalidate_lock: 0,
            fs: [0; FS_NAME_LEN],
            depth: 2,
            path_flags: PATH_COMPLETE,
            path: [[0; NAME_BYTES]; PATH_DEPTH],
        };
        r.fs[..4].copy_from_slice(b"ext4");
        r.path[0][..1].copy_from_slice(b"f");
        r.path[1][..3].copy_from_slice(b"dir");
        let body = |r: &rl_common::FileRecord| decode(&bytes(r)).unwrap().body;
        assert_eq!(
            body(&r),
            Body::File {
                dev: Dev { major: 7, minor: 1 },
                ino: 12,
                path: Some("fs:/dir/f".into()),
                fs: Some("ext4".into()),
                i_rwsem: Some(0xffff_8880_0000_1000),
                invalidate_lock: None,
            }
        );
        // A walk that stopped early or cut a name says so.
        r.path_flags = PATH_COMPLETE | PATH_CUT;
        assert!(matches!(body(&r), Body::File { path: Some(p), .. } if p == ".../dir/f"));
        r.depth = 0;
        assert!(matches!(body(&r), Body::File { path: None, .. }));
        // A record of the wrong size for its kind is refused.
        assert!(matches!(
            decode(&bytes(&r)[..RECORD_SIZE]),
            Err(RawError::BadSize { .. })
        ));
    }

    #[test]
    fn decodes_file_locks_and_faults() {
        let rec = |kind: Kind, flags: u8, w: [u64; 4]| Record {
            hdr: RecordHeader {
                kind: kind as u8,
                flags,
                dev: 8 << 20,
                ..Default::default()
            },
            w,
        };
        let dev = Dev { major: 8, minor: 0 };
        let r = rec(
            Kind::FileLockRequest,
            FLAG_WRITE | FLAG_TRY_KNOWN,
            [5, LockClass::InvalidateLock as u64, 0, 0],
        );
        assert_eq!(
            decode(&bytes(&r)).unwrap().body,
            Body::FileLockRequest {
                dev,
                ino: 5,
                class: FileLockClass::InvalidateLock,
                write: true,
                trylock: Some(false),
                stack: None,
            }
        );
        // A write request of an invalidate_lock with its stack: the stack
        // id plus one.
        let r = rec(
            Kind::FileLockRequest,
            FLAG_WRITE | FLAG_TRY_KNOWN,
            [5, LockClass::InvalidateLock as u64, 43, 0],
        );
        assert!(matches!(
            decode(&bytes(&r)).unwrap().body,
            Body::FileLockRequest { stack: Some(s), .. } if s == format!("{STACK_ID_PREFIX}42")
        ));
        let r = rec(Kind::FileLockAcquired, FLAG_SUCCESS, [5, 0, 0, 0]);
        assert_eq!(
            decode(&bytes(&r)).unwrap().body,
            Body::FileLockAcquired {
                dev,
                ino: 5,
                class: FileLockClass::IRwsem,
                write: false,
                success: true
            }
        );
        let r = rec(Kind::PageFault, FLAG_USER, [0x7000, (-1i64) as u64, 1, 6]);
        assert_eq!(
            decode(&bytes(&r)).unwrap().body,
            Body::PageFault {
                addr: 0x7000,
                user: true,
                write: fault_write(6),
                held: 1,
                stack: None
            }
        );
        let r = rec(
            Kind::ContentionBegin,
            0,
            [0x10, 2, 0xffff_ffff_8100_0000, 0],
        );
        assert!(matches!(
            decode(&bytes(&r)).unwrap().body,
            Body::ContentionBegin { caller: Some(c), .. } if c == "ip:ffffffff81000000"
        ));
    }

    #[test]
    fn a_return_with_its_queue_number_is_that_number_then_the_outcome() {
        for kind in [Kind::RlAcquired, Kind::RlCancel] {
            let r = rec(kind, rl_common::FLAG_QUEUE_SEQ, [1, 2, 41, 0]);
            let mut got = Vec::new();
            decode_entry(&bytes(&r), &mut |e| got.push(e.unwrap().body));
            assert_eq!(
                got[0],
                Body::RlQueueSeq {
                    tree: 1,
                    lock: 2,
                    seq: 41
                }
            );
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].range_lock(), Some((1, 2)));
            // Without the bit: the outcome alone.
            let mut got = Vec::new();
            decode_entry(&bytes(&rec(kind, 0, [1, 2, 41, 0])), &mut |e| {
                got.push(e.unwrap().body)
            });
            assert_eq!(got.len(), 1);
        }
    }

    #[test]
    fn a_lock_ops_record_is_its_events_in_kernel_order() {
        let r = Record {
            hdr: RecordHeader {
                ts: 3,
                kind: Kind::FileLockOps as u8,
                dev: 7 << 20,
                ..Default::default()
            },
            w: [9, LOCK_OP_LOCK, LOCK_MODE_WRITE, LOCK_MODE_WRITE],
        };
        let mut got = Vec::new();
        decode_entry(&bytes(&r), &mut |e| got.push(e.unwrap().body));
        let dev = Dev { major: 7, minor: 0 };
        let req = |class, write, trylock| Body::FileLockRequest {
            dev,
            ino: 9,
            class,
            write,
            trylock: Some(trylock),
            stack: None,
        };
        assert_eq!(
            got,
            [
                req(FileLockClass::IRwsem, true, false),
                req(FileLockClass::InvalidateLock, true, false)
            ]
        );
        // Demoting: invalidate_lock first, each a release, request, grant.
        let d = lock_ops(dev, 9, LOCK_OP_DEMOTE, LOCK_MODE_WRITE, LOCK_MODE_WRITE);
        assert_eq!(d.len(), 6);
        assert!(matches!(
            d[0],
            Body::FileLockRelease {
                class: FileLockClass::InvalidateLock,
                write: true,
                ..
            }
        ));
        assert!(matches!(
            d[5],
            Body::FileLockAcquired {
                class: FileLockClass::IRwsem,
                write: false,
                success: true,
                ..
            }
        ));
        assert_eq!(
            lock_ops(
                dev,
                9,
                LOCK_OP_UNLOCK,
                LOCK_MODE_NONE,
                rl_common::LOCK_MODE_READ
            ),
            [Body::FileLockRelease {
                dev,
                ino: 9,
                class: FileLockClass::InvalidateLock,
                write: false
            }]
        );
        assert_eq!(decode(&bytes(&r)), Err(RawError::Several));
    }

    #[test]
    fn rejects_unknown_and_short_records() {
        assert_eq!(decode(&[0u8; 3]), Err(RawError::Short(3)));
        let r = Record {
            hdr: RecordHeader {
                kind: 200,
                ..Default::default()
            },
            w: [0; 4],
        };
        assert_eq!(decode(&bytes(&r)), Err(RawError::UnknownKind(200)));
        let r = Record {
            hdr: RecordHeader {
                kind: Kind::Marker as u8,
                ..Default::default()
            },
            w: [0; 4],
        };
        assert!(matches!(decode(&bytes(&r)), Err(RawError::BadSize { .. })));
    }
}
