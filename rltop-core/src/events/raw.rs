//! Decoding of kernel ring-buffer records (`rl-common`) into [`Event`]s.

use rl_common::{
    BATCH_LEN, BATCH_SIZE, COMM_LEN, FLAG_ID, FLAG_NO_ORDER, FLAG_SUCCESS, FLAG_WRITE, Kind,
    MARKER_RECORD_SIZE, MARKER_TEXT_LEN, OP_MASK, RECORD_SIZE, RecordHeader,
};

use super::{Body, Dev, Event, Mode, PunchOp};

/// What the decoder puts in an `ordering_evidence` stack before user space
/// symbolizes it: this prefix and the kernel stack id.
pub const STACK_ID_PREFIX: &str = "stackid:";

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
            out(decode(&b[at..at + RECORD_SIZE]));
        }
    } else {
        out(decode(b));
    }
}

/// Decodes one ring-buffer record.
pub fn decode(b: &[u8]) -> Result<Event, RawError> {
    const HDR: usize = core::mem::size_of::<RecordHeader>();
    if b.len() < HDR {
        return Err(RawError::Short(b.len()));
    }
    let h = header(b);
    let kind = Kind::from_u8(h.kind).ok_or(RawError::UnknownKind(h.kind))?;
    let want = if kind == Kind::Marker {
        MARKER_RECORD_SIZE
    } else {
        RECORD_SIZE
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
        Kind::ContentionBegin => Body::ContentionBegin {
            addr: w(0),
            flags: w(1) as u32,
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
        // User space symbolizes the stack id (see `probe::Session`).
        Kind::OrderEvidence => Body::OrderingEvidence {
            mm: w(0),
            write,
            held: w(2),
            stack: format!("{STACK_ID_PREFIX}{}", w(1) as i64),
        },
        Kind::Lost => return Err(RawError::NotFromKernel(kind)),
    };
    Ok(Event {
        ts: h.ts,
        tid: h.tid,
        pid: h.pid,
        cpu: Some(h.cpu as u32),
        body,
    })
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
