//! Pairs the trace's begins and ends into [`FileOp`]s and releases them in
//! arrival order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{Config, FileOp, OpKind};
use crate::events::{Body, Event, PunchOp};
use crate::model::{FastMap, OpKey, PAGE_SHIFT, byte_pages};

/// Collects the file operations of a stream (pairs begins with ends) and
/// releases them in arrival order as soon as no operation can still arrive
/// earlier: memory follows the operations in flight in the trace, not the
/// trace's length.
#[derive(Debug, Default)]
pub struct Collector {
    cfg: Config,
    /// Completed operations not yet released: `(ts, completion order)`.
    pending: BinaryHeap<Reverse<(u64, u64)>>,
    pending_ops: FastMap<u64, FileOp>,
    seq: u64,
    /// Begun DIOs by `io`: the op with its hold still unknown.
    dios: FastMap<u64, FileOp>,
    /// Begun punches and truncates, by id (by task in traces without ids:
    /// an end with an id may come from another task than its begin).
    punches: FastMap<OpKey, FileOp>,
    /// Begin times of the operations in flight (a multiset).
    in_flight: BTreeMap<u64, u32>,
    /// The latest time seen.
    now: u64,
    /// Begins never ended, ends never begun.
    pub unmatched: u64,
}

impl Collector {
    pub fn new(cfg: Config) -> Collector {
        Collector {
            cfg,
            ..Collector::default()
        }
    }

    fn complete(&mut self, o: FileOp) {
        self.pending.push(Reverse((o.ts, self.seq)));
        self.pending_ops.insert(self.seq, o);
        self.seq += 1;
    }

    fn begin(&mut self, ts: u64) {
        *self.in_flight.entry(ts).or_default() += 1;
    }

    fn end(&mut self, ts: u64) {
        if let Some(n) = self.in_flight.get_mut(&ts) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&ts);
            }
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub fn event(&mut self, ev: &Event) {
        self.now = self.now.max(ev.ts);
        let op = |kind, dev, ino, start, last, hold| FileOp {
            ts: ev.ts,
            tid: ev.tid,
            dev,
            ino,
            kind,
            start,
            last,
            hold,
        };
        match ev.body {
            Body::PageAdd {
                dev,
                ino,
                index,
                order,
            } => {
                let n = 1u64 << order.unwrap_or(0).min(20);
                let last = index.saturating_add(n - 1);
                let hold = self.cfg.page_hold_ns;
                self.complete(op(OpKind::PageAdd, dev, ino, index, last, hold));
            }
            Body::Fault { dev, ino, index } => {
                let hold = self.cfg.page_hold_ns;
                self.complete(op(OpKind::Fault, dev, ino, index, index, hold));
            }
            Body::DioBegin {
                io,
                dev,
                ino,
                pos,
                len,
                write,
            } => {
                let kind = if write {
                    OpKind::DioWrite
                } else {
                    OpKind::DioRead
                };
                if let Some((s, l)) = byte_pages(pos, len) {
                    self.begin(ev.ts);
                    if let Some(old) = self.dios.insert(io, op(kind, dev, ino, s, l, 0)) {
                        self.end(old.ts);
                        self.unmatched += 1;
                    }
                }
            }
            Body::DioEnd { io, .. } => match self.dios.remove(&io) {
                Some(mut o) => {
                    self.end(o.ts);
                    o.hold = ev.ts.saturating_sub(o.ts);
                    self.complete(o);
                }
                None => self.unmatched += 1,
            },
            Body::PunchBegin {
                dev,
                ino,
                pos,
                len,
                op: pop,
                id,
            } => {
                // Zero locks its range as a punch does; collapse and insert
                // move every page from `pos` on, so they lock to ~0.
                let pages = match pop {
                    PunchOp::Collapse | PunchOp::Insert if len > 0 => {
                        Some((pos >> PAGE_SHIFT, u64::MAX))
                    }
                    _ => byte_pages(pos, len),
                };
                if let Some((s, l)) = pages {
                    self.begin(ev.ts);
                    let o = op(OpKind::Punch, dev, ino, s, l, 0);
                    if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                        self.end(old.ts);
                        self.unmatched += 1;
                    }
                }
            }
            Body::TruncateBegin { dev, ino, size, id } => {
                let first = size.div_ceil(1 << PAGE_SHIFT);
                self.begin(ev.ts);
                let o = op(OpKind::Truncate, dev, ino, first, u64::MAX, 0);
                if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                    self.end(old.ts);
                    self.unmatched += 1;
                }
            }
            Body::PunchEnd { id, .. } | Body::TruncateEnd { id, .. } => {
                let truncate = matches!(ev.body, Body::TruncateEnd { .. });
                match self.punches.remove(&OpKey::new(ev.tid, id)) {
                    Some(mut o) if (o.kind == OpKind::Truncate) == truncate => {
                        self.end(o.ts);
                        o.hold = ev.ts.saturating_sub(o.ts);
                        self.complete(o);
                    }
                    Some(o) => {
                        // A begin of the other kind: both ends unmatched.
                        self.end(o.ts);
                        self.unmatched += 2;
                    }
                    None => self.unmatched += 1,
                }
            }
            Body::Lost { .. } => self.gap(),
            _ => {}
        }
    }

    /// Lost events or a damaged part of the trace: begins in flight may
    /// have lost their ends (and would pair with unrelated ones). Forget
    /// them; they count as unmatched.
    pub fn gap(&mut self) {
        self.unmatched += (self.dios.len() + self.punches.len()) as u64;
        self.dios.clear();
        self.punches.clear();
        self.in_flight.clear();
    }

    /// Moves the operations that no later event can precede into `out`,
    /// in arrival order (by time, then completion order), and returns the
    /// time before which every operation has now been released.
    pub fn ready(&mut self, out: &mut Vec<FileOp>) -> u64 {
        let horizon = self
            .in_flight
            .keys()
            .next()
            .map_or(self.now, |&t| t.min(self.now));
        while let Some(&Reverse((ts, seq))) = self.pending.peek() {
            if ts >= horizon {
                break;
            }
            self.pending.pop();
            if let Some(o) = self.pending_ops.remove(&seq) {
                out.push(o);
            }
        }
        horizon
    }

    /// The operations not yet released, in arrival order, and the count of
    /// unmatched begins and ends.
    pub fn finish(mut self) -> (Vec<FileOp>, u64) {
        let unmatched = self.unmatched + (self.dios.len() + self.punches.len()) as u64;
        let mut out = Vec::with_capacity(self.pending.len());
        while let Some(Reverse((_, seq))) = self.pending.pop() {
            if let Some(o) = self.pending_ops.remove(&seq) {
                out.push(o);
            }
        }
        (out, unmatched)
    }
}

