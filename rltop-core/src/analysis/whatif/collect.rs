//! Pairs the trace's begins and ends into [`FileOp`]s and releases them in
//! arrival order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::{Config, FileOp, Fs, KindWaits, OpKind, lock_index};
use crate::events::{Body, Dev, Event, FileLockClass, PunchOp};
use crate::model::{FastMap, Model, OpKey, PAGE_SHIFT, byte_pages};

/// A measured wait is given to the task's next operation on the same file
/// only if that begins within this long after the wait ended. The lock is
/// taken right before the operation's begin event (a few microseconds in
/// the kernel: `docs/kernel-fs-ops.md`), except a punch or truncate's
/// `inode_dio_wait` between `i_rwsem` and `invalidate_lock`.
pub const ATTRIBUTE_WINDOW_NS: u64 = 50_000_000;

/// The earliest a replay may start `o`: the trace's time already holds the
/// waits measured before it (`Replay` starts it that much earlier).
fn arrival(o: &FileOp) -> u64 {
    o.ts.saturating_sub(o.measured_wait())
}

/// Removes one `k` from a multiset.
fn take(set: &mut BTreeMap<u64, u32>, k: u64) {
    if let Some(n) = set.get_mut(&k) {
        *n -= 1;
        if *n == 0 {
            set.remove(&k);
        }
    }
}

/// Whether [`super::Policy::Mainline`] has `kind` take lock `i` (indexed as
/// [`super::MAINLINE_LOCKS`]): the measured waits it can predict.
fn mainline_takes(kind: OpKind, i: usize) -> bool {
    match kind {
        OpKind::PageAdd => i == lock_index(FileLockClass::InvalidateLock),
        OpKind::Fault => false,
        OpKind::DioRead | OpKind::DioWrite => i == lock_index(FileLockClass::IRwsem),
        OpKind::Punch | OpKind::Truncate => true,
    }
}

/// A run of page-cache adds by one task: contiguous indices on one file,
/// each within [`Config::readahead_gap_ns`] of the last. Readahead
/// (`page_cache_ra_unbounded`) and a write add a range's folios in one
/// loop, under one `invalidate_lock` hold in the first case: the run is one
/// operation over its pages.
#[derive(Debug, Clone, Copy)]
struct Batch {
    op: FileOp,
    /// When its last page was added.
    last_add: u64,
    /// The task's fault on this file that came just before (its index),
    /// if any: a batch holding that index is the fault's own readahead.
    fault: Option<u64>,
}

impl Batch {
    /// Whether this is the synchronous readahead of the task's fault:
    /// `filemap_fault` then takes `invalidate_lock` shared again and waits
    /// for the folio's read under it (`lock_folio_maybe_drop_mmap`), until
    /// the fault returns (or retries: the task's next event).
    fn for_fault(&self) -> bool {
        self.fault
            .is_some_and(|i| (self.op.start..=self.op.last).contains(&i))
    }
}

/// A task's measured waits on one file's page-cache locks, not yet given
/// to an operation.
#[derive(Debug, Clone, Copy)]
struct Waits {
    dev: Dev,
    ino: u64,
    /// The first wait's begin (its entry in `in_flight`: the operation
    /// that follows may start this early in a replay).
    since: u64,
    /// When the last wait ended.
    last_end: u64,
    /// The wait under way: its lock and begin.
    open: Option<(FileLockClass, u64)>,
    by: [KindWaits; 2],
}

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
    /// Begin times of the operations in flight, and of measured waits not
    /// yet given to an operation (a multiset).
    in_flight: BTreeMap<u64, u32>,
    /// The earliest replayed arrivals (`ts` less the measured wait: see
    /// `arrival`) of completed operations not yet released (a multiset).
    early_pending: BTreeMap<u64, u32>,
    /// The latest time seen.
    now: u64,
    /// Begins never ended, ends never begun.
    pub unmatched: u64,
    /// Measured waits per task, until its next operation.
    waits: FastMap<u32, Waits>,
    /// Every measured wait per file (indexed as `MAINLINE_LOCKS`).
    measured: BTreeMap<(Dev, u64), [KindWaits; 2]>,
    /// A lower bound of each file's size in bytes: the furthest byte an
    /// operation touched, or the size a truncate set.
    known_end: FastMap<(Dev, u64), u64>,
    /// Page-add runs under way, per task.
    batches: FastMap<u32, Batch>,
    /// Each task's last fault not yet followed by a page-add run:
    /// `(dev, ino, index, ts)`.
    faults: FastMap<u32, (Dev, u64, u64, u64)>,
}

impl Collector {
    pub fn new(cfg: Config) -> Collector {
        Collector {
            cfg,
            ..Collector::default()
        }
    }

    fn complete(&mut self, o: FileOp) {
        if o.measured_wait() > 0 {
            *self.early_pending.entry(arrival(&o)).or_default() += 1;
        }
        self.pending.push(Reverse((o.ts, self.seq)));
        self.pending_ops.insert(self.seq, o);
        self.seq += 1;
    }

    fn begin(&mut self, ts: u64) {
        *self.in_flight.entry(ts).or_default() += 1;
    }

    fn end(&mut self, ts: u64) {
        take(&mut self.in_flight, ts);
    }

    /// Every wait the trace measured on a file's `i_rwsem` and
    /// `invalidate_lock` so far, per file.
    pub fn measured(&self) -> &BTreeMap<(Dev, u64), [KindWaits; 2]> {
        &self.measured
    }

    /// The next event, without the model's facts.
    pub fn event(&mut self, ev: &Event) {
        self.event_in(None, ev);
    }

    /// A `contention_*` event: on a learned page-cache lock's address (the
    /// model knows it from the trace's `file` events), a measured wait.
    fn contention(&mut self, m: Option<&Model>, ev: &Event) {
        let tid = ev.tid;
        match ev.body {
            Body::ContentionBegin { addr, .. } => {
                let Some((dev, ino, class)) = m.and_then(|m| m.file_lock_at(addr)) else {
                    return;
                };
                // Waits on another file, or on this lock already, were for
                // a section that has ended without an operation (readahead
                // retried: `page_cache_ra_order` found a folio there, then
                // `page_cache_ra_unbounded` takes the lock again).
                if self.waits.get(&tid).is_some_and(|w| {
                    (w.dev, w.ino) != (dev, ino) || w.by[lock_index(class)].waited > 0
                }) {
                    self.drop_waits(tid);
                }
                if !self.waits.contains_key(&tid) {
                    self.begin(ev.ts);
                }
                let w = self.waits.entry(tid).or_insert(Waits {
                    dev,
                    ino,
                    since: ev.ts,
                    last_end: ev.ts,
                    open: None,
                    by: [KindWaits::default(); 2],
                });
                w.open = Some((class, ev.ts));
            }
            Body::ContentionEnd { .. } => {
                let Some(w) = self.waits.get_mut(&tid) else {
                    return;
                };
                let Some((class, begin)) = w.open.take() else {
                    return;
                };
                let ns = ev.ts.saturating_sub(begin);
                w.by[lock_index(class)].one(ns);
                w.last_end = ev.ts;
                self.measured.entry((w.dev, w.ino)).or_default()[lock_index(class)].one(ns);
            }
            _ => {}
        }
    }

    /// The task's waits were not followed by an operation of their file.
    fn drop_waits(&mut self, tid: u32) {
        if let Some(w) = self.waits.remove(&tid) {
            self.end(w.since);
        }
    }

    /// The measured waits that precede the task's operation just begun on
    /// `(dev, ino)` (given to it), if any; only the locks mainline takes
    /// for it count (a buffered write's `i_rwsem` wait before its
    /// `page_add`s is not the page_add's: the write itself has no event).
    fn waits_before(&mut self, tid: u32, dev: Dev, ino: u64, kind: OpKind) -> [KindWaits; 2] {
        let none = [KindWaits::default(); 2];
        match self.waits.get(&tid) {
            Some(w) if w.open.is_none() && (w.dev, w.ino) == (dev, ino) => {
                let mut by = w.by;
                self.drop_waits(tid);
                for (i, b) in by.iter_mut().enumerate() {
                    if !mainline_takes(kind, i) {
                        *b = KindWaits::default();
                    }
                }
                by
            }
            // A wait under way is another operation's (this one began
            // without it); waits on another file belong to no operation.
            Some(w) if w.open.is_none() => {
                self.drop_waits(tid);
                none
            }
            _ => none,
        }
    }

    /// Ends `tid`'s page-add run, if any; `next` is the task's next event's
    /// time (`None`: none came within the run's window, or the trace
    /// ended). A fault's readahead holds until the fault returns, the
    /// task's next event, at most [`Config::fault_read_max_ns`] after its
    /// last page; another run holds [`Config::page_hold_ns`] after it.
    fn close_batch(&mut self, tid: u32, next: Option<u64>) {
        let Some(b) = self.batches.remove(&tid) else {
            return;
        };
        self.end(arrival(&b.op));
        let tail = if b.for_fault() {
            let max = self.cfg.fault_read_max_ns;
            next.map_or(max, |t| t.saturating_sub(b.last_add).min(max))
        } else {
            self.cfg.page_hold_ns
        };
        let mut o = b.op;
        o.hold = b.last_add.saturating_sub(o.ts).saturating_add(tail);
        self.complete(o);
    }

    /// Adds a page (or a large folio's pages) to the task's run, or ends
    /// the run and begins another.
    fn page_add(&mut self, o: FileOp) {
        let tid = o.tid;
        if let Some(b) = self.batches.get_mut(&tid)
            && (b.op.dev, b.op.ino) == (o.dev, o.ino)
            && b.op.last.checked_add(1) == Some(o.start)
            && o.ts.saturating_sub(b.last_add) <= self.cfg.readahead_gap_ns
        {
            b.op.last = o.last;
            b.last_add = o.ts;
            return;
        }
        self.close_batch(tid, Some(o.ts));
        let fault = match self.faults.remove(&tid) {
            // Its readahead comes right after the fault, but for the waits
            // on `invalidate_lock` in between.
            Some((dev, ino, index, ts))
                if (dev, ino) == (o.dev, o.ino)
                    && o.ts.saturating_sub(ts) <= ATTRIBUTE_WINDOW_NS =>
            {
                Some(index)
            }
            _ => None,
        };
        let mut op = o;
        op.measured = self.waits_before(tid, o.dev, o.ino, OpKind::PageAdd);
        self.begin(arrival(&op));
        self.batches.insert(
            tid,
            Batch {
                op,
                last_add: o.ts,
                fault,
            },
        );
    }

    /// Whether `ev` ends its task's page-add run: any event of the task but
    /// a page add and a wait for a lock other than the run's file's own.
    fn ends_batch(&self, m: Option<&Model>, ev: &Event) -> bool {
        let Some(b) = self.batches.get(&ev.tid) else {
            return false;
        };
        match ev.body {
            Body::PageAdd { .. } => false,
            Body::ContentionBegin { addr, .. } => m
                .and_then(|m| m.file_lock_at(addr))
                .is_some_and(|(dev, ino, _)| (dev, ino) == (b.op.dev, b.op.ino)),
            Body::ContentionEnd { .. } => false,
            _ => true,
        }
    }

    fn extend_known(&mut self, dev: Dev, ino: u64, end: u64) {
        let e = self.known_end.entry((dev, ino)).or_default();
        *e = (*e).max(end);
    }

    /// Whether mainline would do this DIO write under a shared `i_rwsem`:
    /// ext4 (`ext4_dio_write_checks`) only for an overwrite that does not
    /// extend the file; XFS (`xfs_file_dio_write_aligned`) for a write
    /// aligned to the block, else as ext4 (its unaligned path tries shared
    /// for a pure overwrite); btrfs (`btrfs_direct_write`) when the write
    /// ends within the file. The replay cannot see which blocks are
    /// allocated: "within the largest offset seen so far" stands for an
    /// overwrite, and 4 KiB for the block size.
    fn dio_write_shares(&self, fs: Fs, dev: Dev, ino: u64, pos: u64, len: u64) -> bool {
        let within = pos
            .checked_add(len)
            .is_some_and(|end| self.known_end.get(&(dev, ino)).is_some_and(|&k| end <= k));
        let aligned = pos.is_multiple_of(4096) && len.is_multiple_of(4096);
        match fs {
            Fs::Xfs => aligned || within,
            Fs::Ext4 | Fs::Btrfs | Fs::Other => within,
        }
    }

    /// The next event; `m` (the model before it) gives the file's
    /// filesystem and names `contention_*` addresses.
    #[allow(clippy::too_many_lines)] // one arm per event kind: the table reads better whole than split
    pub fn event_in(&mut self, m: Option<&Model>, ev: &Event) {
        self.now = self.now.max(ev.ts);
        let fs_of = |dev, ino| Fs::of(m.and_then(|m| m.fs_of(dev, ino)));
        let op = |kind, dev, ino, start, last, hold| FileOp {
            fs: fs_of(dev, ino),
            ..FileOp::new(ev.ts, ev.tid, dev, ino, kind, start, last, hold)
        };
        if self.ends_batch(m, ev) {
            self.close_batch(ev.tid, Some(ev.ts));
        }
        match ev.body {
            Body::ContentionBegin { .. } | Body::ContentionEnd { .. } => self.contention(m, ev),
            Body::Exit => self.drop_waits(ev.tid),
            Body::PageAdd {
                dev,
                ino,
                index,
                order,
            } => {
                let n = 1u64 << order.unwrap_or(0).min(20);
                let last = index.saturating_add(n - 1);
                self.extend_known(dev, ino, last.saturating_add(1) << PAGE_SHIFT);
                self.page_add(op(OpKind::PageAdd, dev, ino, index, last, 0));
            }
            Body::Fault { dev, ino, index } => {
                let hold = self.cfg.page_hold_ns;
                let mut o = op(OpKind::Fault, dev, ino, index, index, hold);
                o.measured = self.waits_before(ev.tid, dev, ino, OpKind::Fault);
                self.extend_known(dev, ino, index.saturating_add(1) << PAGE_SHIFT);
                self.faults.insert(ev.tid, (dev, ino, index, ev.ts));
                self.complete(o);
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
                    let mut o = op(kind, dev, ino, s, l, 0);
                    o.shares_i_rwsem = !write || self.dio_write_shares(o.fs, dev, ino, pos, len);
                    o.measured = self.waits_before(ev.tid, dev, ino, kind);
                    self.begin(arrival(&o));
                    if let Some(old) = self.dios.insert(io, o) {
                        self.end(arrival(&old));
                        self.unmatched += 1;
                    }
                }
            }
            Body::DioEnd { io, ret } => match self.dios.remove(&io) {
                Some(mut o) => {
                    self.end(arrival(&o));
                    if let Ok(done @ 1..) = u64::try_from(ret) {
                        // At least this far: the DIO began in its first page.
                        self.extend_known(
                            o.dev,
                            o.ino,
                            (o.start << PAGE_SHIFT).saturating_add(done),
                        );
                    }
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
                    let mut o = op(OpKind::Punch, dev, ino, s, l, 0);
                    o.measured = self.waits_before(ev.tid, dev, ino, OpKind::Punch);
                    self.begin(arrival(&o));
                    if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                        self.end(arrival(&old));
                        self.unmatched += 1;
                    }
                }
            }
            Body::TruncateBegin { dev, ino, size, id } => {
                let first = size.div_ceil(1 << PAGE_SHIFT);
                let mut o = op(OpKind::Truncate, dev, ino, first, u64::MAX, 0);
                o.measured = self.waits_before(ev.tid, dev, ino, OpKind::Truncate);
                self.begin(arrival(&o));
                self.known_end.insert((dev, ino), size);
                if let Some(old) = self.punches.insert(OpKey::new(ev.tid, id), o) {
                    self.end(arrival(&old));
                    self.unmatched += 1;
                }
            }
            Body::PunchEnd { id, .. } | Body::TruncateEnd { id, .. } => {
                let truncate = matches!(ev.body, Body::TruncateEnd { .. });
                match self.punches.remove(&OpKey::new(ev.tid, id)) {
                    Some(mut o) if (o.kind == OpKind::Truncate) == truncate => {
                        self.end(arrival(&o));
                        o.hold = ev.ts.saturating_sub(o.ts);
                        self.complete(o);
                    }
                    Some(o) => {
                        // A begin of the other kind: both ends unmatched.
                        self.end(arrival(&o));
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
        // A run's pages were seen; only its end is unknown.
        let tids: Vec<u32> = self.batches.keys().copied().collect();
        for t in tids {
            self.close_batch(t, None);
        }
        self.faults.clear();
        self.unmatched += (self.dios.len() + self.punches.len()) as u64;
        self.dios.clear();
        self.punches.clear();
        self.in_flight.clear();
        self.waits.clear();
    }

    /// Moves the operations that no later event can precede into `out`,
    /// in arrival order (by time, then completion order), and returns the
    /// time before which no operation not yet released can be replayed
    /// (its begin, less the waits measured before it).
    pub fn ready(&mut self, out: &mut Vec<FileOp>) -> u64 {
        if !self.waits.is_empty() {
            let now = self.now;
            let stale: Vec<u32> = self
                .waits
                .iter()
                .filter(|(_, w)| {
                    w.open.is_none() && now > w.last_end.saturating_add(ATTRIBUTE_WINDOW_NS)
                })
                .map(|(&t, _)| t)
                .collect();
            for t in stale {
                self.drop_waits(t);
            }
        }
        if !self.batches.is_empty() {
            // A run can no longer grow (past the gap), nor a fault's
            // readahead hold longer (past its bound).
            let (now, gap, max) = (
                self.now,
                self.cfg.readahead_gap_ns,
                self.cfg.fault_read_max_ns,
            );
            let done: Vec<u32> = self
                .batches
                .iter()
                .filter(|(_, b)| {
                    now > b
                        .last_add
                        .saturating_add(if b.for_fault() { max.max(gap) } else { gap })
                })
                .map(|(&t, _)| t)
                .collect();
            for t in done {
                self.close_batch(t, None);
            }
        }
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
                if o.measured_wait() > 0 {
                    take(&mut self.early_pending, arrival(&o));
                }
                out.push(o);
            }
        }
        // An operation still held may be replayed from before its time.
        self.early_pending
            .keys()
            .next()
            .map_or(horizon, |&t| t.min(horizon))
    }

    /// The operations not yet released, in arrival order, and the count of
    /// unmatched begins and ends.
    pub fn finish(mut self) -> (Vec<FileOp>, u64) {
        // A fault's readahead holds at most to the trace's end.
        let tids: Vec<u32> = self.batches.keys().copied().collect();
        for t in tids {
            self.close_batch(t, Some(self.now));
        }
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
