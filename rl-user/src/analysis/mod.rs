//! Analyses: read the [`Model`] as events arrive and emit [`Finding`]s with
//! the events that prove them.
//!
//! [`Checker`] owns the model. For each event it runs the checks that need
//! the state *before* the event (a grant, a release, an mmap_lock request, a
//! page entering the cache), applies the event, then runs the checks that
//! need the state after it (a new wait edge: deadlock search). Stalls are
//! checked as time advances and at the end; leaked locks at the end.
//! Nothing here allocates on the uncontended path: the wait-for graph is
//! only walked when a new wait edge appears ([`waitfor`]), and the reference
//! lock is only asked for blockers/conflicts when the cheap test fails.
//!
//! # Certainty and lost events
//!
//! Lost events never produce a false error (design principle 3). A *gap* is
//! a `lost` event or a damaged part of the trace reported by the reader. A
//! finding is `certain: false`, and does not fail `rltop check`, when a gap
//! could explain it:
//!
//! - Findings built on events that *were* seen (ordering_inversion,
//!   conflicting_grant, page_in_locked_range, fifo_violation, deadlock,
//!   leaked_lock, fault_during_punch) are uncertain when a gap lies at or
//!   after their earliest evidence event: a release, cancel or end event
//!   lost in between would explain them.
//! - Findings built on the *absence* of earlier events (unlock_unheld of a
//!   lock never seen: its request may have been lost; stall: a blocking
//!   request may have been lost) are uncertain after any gap at all. A
//!   release of a lock seen requested but never acquired is uncertain when a
//!   gap follows its request (a lost rl_acquired).
//! - leaked_lock is uncertain while a DIO on the same file is in flight
//!   (its completion may still release the lock).
//! - A `lost` event may be reported after the drops it counts: with a
//!   `since` time, every finding made since then is uncertain too.
//! - A gap taints every task busy at that moment (holding, waiting, or with
//!   IO, punch or mmap_lock in flight): the model may misjudge it (a lost
//!   release keeps a lock held, a lost dio_begin makes an IO's lock look
//!   like the task's). Its findings are uncertain until the model sees it
//!   idle again.
//! - A trace recorded live (header source `record`) starts mid-stream: locks
//!   may have been held before it began. There, unlock_unheld of a lock never
//!   seen is uncertain, stall and fifo_violation findings on a tree where
//!   an unknown lock was released are uncertain, and so is a stall whose
//!   waiter still waits at the end (its blocker may predate the trace).
//! - fifo_violation between two requests less than [`ORDER_WINDOW_NS`]
//!   apart is uncertain: their order of insertion into the kernel's tree
//!   is not observable (the request event fires before it).
//! - Events with equal timestamps have no order: a conflicting_grant or
//!   fifo_violation is withdrawn when a release (or cancel) of what it was
//!   judged against follows with the same timestamp.
//! - A `fault` alone is never page_in_locked_range: the event fires at
//!   fault entry, and the fault then takes the range lock and waits; a
//!   `page_add` in the range is what proves the race.
//! - A deadlock is withdrawn if a member of its cycle later gets what it
//!   waited for (the model's wait-for edges were too pessimistic, e.g. an
//!   rwsem reader stealing mmap_lock past a waiting writer).
//! - A trylock failure is never a finding (kernel trylocks are coarse), and
//!   unmatched begin/end events are absorbed without findings.

pub mod hist;
pub mod stats;
pub mod timeline;
pub mod waitfor;
pub mod whatif;
pub mod xfstests;

use serde::Serialize;

use crate::events::{Body, Dev, Event, Mode};
use crate::model::{FastMap, FastSet, Lock, LockState, Model, Wait};

/// What a finding is about (`design.md`, "Findings").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    OrderingInversion,
    ConflictingGrant,
    PageInLockedRange,
    UnlockUnheld,
    FifoViolation,
    Stall,
    Deadlock,
    LeakedLock,
    FaultDuringPunch,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderingInversion => "ordering_inversion",
            Kind::ConflictingGrant => "conflicting_grant",
            Kind::PageInLockedRange => "page_in_locked_range",
            Kind::UnlockUnheld => "unlock_unheld",
            Kind::FifoViolation => "fifo_violation",
            Kind::Stall => "stall",
            Kind::Deadlock => "deadlock",
            Kind::LeakedLock => "leaked_lock",
            Kind::FaultDuringPunch => "fault_during_punch",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Kind::FaultDuringPunch => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One link of an ordering report: `tid` holds `holds` and wants `wants`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub tid: u32,
    pub task: String,
    pub holds: String,
    pub wants: String,
}

/// A rule broken, with the events that prove it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub certain: bool,
    pub ts: u64,
    pub tids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(u64, u64)>,
    pub message: String,
    /// Event indices (0-based positions in the stream), ascending.
    pub evidence: Vec<u64>,
    /// For ordering problems: the lockdep-style chain.
    #[serde(skip)]
    pub links: Vec<Link>,
    /// Later occurrences of the same problem folded into this one.
    #[serde(skip)]
    pub repeats: u64,
}

/// Checker settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// A waiter the reference would grant may stay waiting this long.
    pub stall_ns: u64,
    /// The trace starts with no lock held (not a live recording begun
    /// mid-stream).
    pub clean_start: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stall_ns: 1_000_000_000,
            clean_start: true,
        }
    }
}

/// What the end of the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Timestamp of the first event (text output shows times relative to it).
    #[serde(skip)]
    pub first_ts: u64,
    pub events: u64,
    pub lost: u64,
    pub findings: Vec<Finding>,
    /// Findings past [`MAX_FINDINGS`], counted only (an extension of the
    /// JSON contract, present when not zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: u64,
    /// Whether a suppressed finding was a certain error.
    #[serde(skip)]
    pub suppressed_fail: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Verdict {
    /// Fails iff some finding is a certain error.
    pub fn failed(&self) -> bool {
        self.suppressed_fail
            || self
                .findings
                .iter()
                .any(|f| f.certain && f.severity == Severity::Error)
    }
}

/// Runs every analysis over a stream. See the module docs.
#[derive(Debug)]
pub struct Checker {
    model: Model,
    cfg: Config,
    findings: Vec<Finding>,
    /// Repeated problems fold into the first finding: (kind, a, b) -> index.
    dedup: FastMap<(Kind, u64, u64), usize>,
    /// Cycles already reported, as sorted tids.
    cycles: FastSet<Vec<u32>>,
    /// Waiters already reported as stalled: (tree, lock, request index).
    stalled: FastSet<(u64, u64, u64)>,
    /// Stall findings: (finding index, tree, lock, request index).
    stall_findings: Vec<(usize, u64, u64, u64)>,
    next_stall_scan: u64,
    /// Findings not kept past [`MAX_FINDINGS`], and whether one of them
    /// was a certain error.
    suppressed: u64,
    suppressed_fail: bool,
    /// Grants judged against locks whose release may yet come with the
    /// same timestamp (ties have no order); see [`Pending`].
    pending: Vec<Pending>,
    /// Findings withdrawn because such a release came (or a cycle moved).
    retracted: FastSet<usize>,
    /// Deadlock findings and their members' waits, until one of them moves.
    cycles_live: Vec<(usize, Vec<(u32, Wait)>)>,
    /// Tasks that may have lost events: what the model knows of them may
    /// be wrong (a missing release, a missing dio_begin that would make a
    /// lock the IO's), so their findings are uncertain until the model has
    /// seen them go from busy to idle after the gap (the value: seen busy).
    /// Empty unless there was a gap.
    tainted: FastMap<u32, bool>,
    /// After a gap, the tasks seen so far: a task first seen after a gap
    /// may have lost its first events (a dio_begin), so it starts tainted.
    known: Option<FastSet<u32>>,
}

/// A conflicting_grant or fifo_violation finding that a release (or
/// cancel) of one of `locks` at a timestamp not after `ts` would explain.
#[derive(Debug)]
struct Pending {
    finding: usize,
    tree: u64,
    locks: Vec<u64>,
    ts: u64,
}

/// Requests closer than this (ns) have no observable queue order: a
/// request event fires at the lock function's entry, before the kernel
/// inserts the request into the tree under its spinlock, and a task
/// preempted (or, in a VM, descheduled) in between is inserted late.
/// 334 µs was seen between two kprobe'd requests on a 2-vCPU QEMU TCG
/// guest whose kernel order was the reverse; a scheduler tick bounds the
/// common case.
pub const ORDER_WINDOW_NS: u64 = 1_000_000;

/// Findings kept; later ones are only counted (memory stays bounded on a
/// trace that is wrong everywhere).
pub const MAX_FINDINGS: usize = 10_000;

/// What a task waits for: description, request event, `(tree, range)`.
type WaitDesc = (String, u64, Option<(u64, (u64, u64))>);

/// How far back an explanation by a gap may reach.
#[derive(Clone, Copy)]
enum Since {
    /// Any gap at or after this event index explains the finding.
    Event(u64),
    /// The finding rests on the absence of earlier events: any gap does.
    History,
    /// Any gap explains it, but not the unseen start of a recording on
    /// its own (that is judged per tree at the end).
    AnyGap,
    /// Something other than a gap already makes it uncertain.
    Never,
}

impl Checker {
    pub fn new(model: Model, cfg: Config) -> Checker {
        Checker {
            model,
            cfg,
            findings: Vec::new(),
            dedup: FastMap::default(),
            cycles: FastSet::default(),
            stalled: FastSet::default(),
            stall_findings: Vec::new(),
            next_stall_scan: 0,
            suppressed: 0,
            suppressed_fail: false,
            pending: Vec::new(),
            retracted: FastSet::default(),
            cycles_live: Vec::new(),
            tainted: FastMap::default(),
            known: None,
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Findings so far that stand (not withdrawn): what a live view may
    /// show. A later event may still withdraw one (a release tied with a
    /// grant, a cycle that moves) or make it uncertain.
    pub fn standing(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.retracted.contains(i))
            .map(|(_, f)| f)
    }

    /// Findings past [`MAX_FINDINGS`] so far, counted only.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// A damaged part of the trace at `idx`: treated as a gap.
    pub fn gap(&mut self, idx: u64) {
        self.model.gap(idx, 0);
    }

    fn certain(&self, since: Since) -> bool {
        match (self.model.last_gap, since) {
            (Some(g), Since::Event(e)) => g < e,
            (Some(_), Since::History | Since::AnyGap) => false,
            (None, Since::History) => self.cfg.clean_start,
            (None, Since::AnyGap) => true,
            (None, Since::Event(_)) => true,
            (_, Since::Never) => false,
        }
    }

    fn describe_task(&self, tid: u32) -> String {
        match self.model.comm(tid) {
            Some(c) => format!("{c}/{tid}"),
            None => format!("{tid}"),
        }
    }

    fn describe_tree(&self, tree: u64) -> String {
        match self.model.file_of(tree) {
            Some((dev, ino)) => format!("tree {tree:#x} ({dev}:{ino})"),
            None => format!("tree {tree:#x}"),
        }
    }

    fn describe_lock(&self, tree: u64, lock: u64, l: &Lock) -> String {
        format!(
            "range lock {lock:#x} [{}, {}] {} on {}",
            l.start,
            l.last,
            l.mode.as_str(),
            self.describe_tree(tree)
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: Kind,
        since: Since,
        ts: u64,
        tids: Vec<u32>,
        tree: Option<u64>,
        range: Option<(u64, u64)>,
        message: String,
        mut evidence: Vec<u64>,
        links: Vec<Link>,
        dedup: Option<(u64, u64)>,
    ) -> Option<usize> {
        evidence.sort_unstable();
        evidence.dedup();
        let f = Finding {
            kind,
            severity: kind.severity(),
            certain: self.certain(since)
                && (self.tainted.is_empty() || !tids.iter().any(|t| self.tainted.contains_key(t))),
            ts,
            tids,
            tree,
            range,
            message,
            evidence,
            links,
            repeats: 0,
        };
        if let Some((a, b)) = dedup {
            if let Some(&i) = self.dedup.get(&(kind, a, b)) {
                let old = &mut self.findings[i];
                let repeats = old.repeats + 1;
                // A certain occurrence replaces an uncertain first one.
                if f.certain && !old.certain {
                    *old = f;
                }
                old.repeats = repeats;
                return None;
            }
            self.dedup.insert((kind, a, b), self.findings.len());
        }
        if self.findings.len() >= MAX_FINDINGS {
            // Keep the verdict right without keeping every finding.
            self.suppressed += 1;
            self.suppressed_fail |= f.certain && f.severity == Severity::Error;
            return None;
        }
        self.findings.push(f);
        Some(self.findings.len() - 1)
    }

    /// Checks and applies event number `idx`.
    pub fn event(&mut self, idx: u64, ev: &Event) {
        if !self.pending.is_empty() {
            self.settle(ev);
        }
        if ev.ts >= self.next_stall_scan {
            self.scan_stalls(ev.ts);
            // Scan a few times per threshold: stalls are reported at most
            // half a threshold late, and the scan stays off the hot path.
            self.next_stall_scan = ev.ts.saturating_add((self.cfg.stall_ns / 2).max(1));
        }
        if !self.cycles_live.is_empty() {
            match ev.body {
                Body::RlAcquired { tree, lock } => {
                    if let Some(owner) = self.model.lock(tree, lock).map(|l| l.tid) {
                        self.progress(owner);
                    }
                }
                Body::MmapLockAcquired { success: true, .. } => self.progress(ev.tid),
                _ => {}
            }
        }
        if let Some(known) = &mut self.known
            && known.insert(ev.tid)
            && !matches!(ev.body, Body::Lost { .. })
        {
            self.tainted.insert(ev.tid, false);
        }
        match &ev.body {
            Body::Lost {
                since: Some(since), ..
            } => {
                // The drops fell somewhere after `since`: a finding made
                // since then may rest on a missing event, though the
                // recorder only reported the gap now.
                for f in &mut self.findings {
                    if f.ts >= *since {
                        f.certain = false;
                    }
                }
                self.taint_busy();
            }
            Body::Lost { since: None, .. } => self.taint_busy(),
            Body::RlAcquired { tree, lock } => self.check_acquire(idx, ev, *tree, *lock),
            Body::RlRelease { tree, lock } => self.check_release(idx, ev, *tree, *lock),
            Body::MmapLockRequest { mm, write } => self.check_inversion(idx, ev, *mm, *write),
            Body::MmapLockAcquired {
                mm,
                write,
                success: true,
            } => {
                // A trylock (no request first) counts as a request too.
                let requested = matches!(
                    self.model.tasks.get(&ev.tid).and_then(|t| t.waiting),
                    Some(Wait::Mmap { mm: m, .. }) if m == *mm
                );
                if !requested {
                    self.check_inversion(idx, ev, *mm, *write);
                }
            }
            Body::Fault { dev, ino, index } => {
                self.check_page(idx, ev, *dev, *ino, *index, *index);
                self.check_punch(idx, ev, *dev, *ino, *index);
            }
            Body::PageAdd {
                dev,
                ino,
                index,
                order,
            } => {
                let n = 1u64.checked_shl(order.unwrap_or(0)).unwrap_or(u64::MAX);
                let last = index.saturating_add(n - 1);
                self.check_page(idx, ev, *dev, *ino, *index, last);
            }
            _ => {}
        }
        self.model.apply(idx, ev);
        if !self.tainted.is_empty() {
            self.untaint(ev);
        }
        match &ev.body {
            Body::RlRequest { tree, lock, .. } => {
                let waits = self
                    .model
                    .trees
                    .get(tree)
                    .is_some_and(|t| !t.oracle.is_grantable(*lock));
                if waits {
                    self.check_deadlock(ev.tid, ev.ts);
                }
            }
            Body::MmapLockRequest { mm, write } => {
                let blocked =
                    self.model.mms.get(mm).is_some_and(|m| {
                        waitfor::mmap_blockers(m, ev.tid, *write).next().is_some()
                    });
                if blocked {
                    self.check_deadlock(ev.tid, ev.ts);
                }
            }
            _ => {}
        }
    }

    /// A gap: every task the model knows (or with an IO, punch or
    /// mmap_lock in flight) may have lost events; tasks first seen later
    /// are tainted then.
    fn taint_busy(&mut self) {
        let m = &self.model;
        let known = self.known.get_or_insert_with(FastSet::default);
        known.extend(m.tasks.keys().copied());
        let tids = m
            .tasks
            .keys()
            .copied()
            .chain(m.punches.values().map(|p| p.tid))
            .chain(m.dios.values().map(|d| d.tid))
            .chain(
                m.mms
                    .values()
                    .flat_map(|mm| mm.holders.iter().chain(&mm.waiters).map(|u| u.tid)),
            );
        for t in tids {
            // Busy or not, it must be seen busy and then idle again.
            self.tainted.insert(t, false);
        }
    }

    /// Clears the taint of the tasks event `ev` touched once they are idle
    /// in the model: holding and waiting for nothing, nothing in flight.
    fn untaint(&mut self, ev: &Event) {
        let m = &self.model;
        let idle = |tid: u32| {
            m.tasks
                .get(&tid)
                .is_none_or(|t| t.held.is_empty() && t.waiting.is_none())
                && !m.punching(tid)
                && !m.dios.values().any(|d| d.tid == tid)
                && !m
                    .mms
                    .values()
                    .any(|mm| mm.holders.iter().any(|u| u.tid == tid))
        };
        // Only a task's own work after the gap shows the model is right
        // about it again: busy, then idle.
        if let Some(busy) = self.tainted.get_mut(&ev.tid) {
            if !idle(ev.tid) {
                *busy = true;
            } else if *busy {
                self.tainted.remove(&ev.tid);
            }
        }
        // A release or IO end by another task (completion) may idle the owner.
        if matches!(ev.body, Body::RlRelease { .. } | Body::DioEnd { .. }) {
            self.tainted
                .retain(|&t, busy| t == ev.tid || !*busy || !idle(t));
        }
    }

    /// Ends the stream: stalls still pending, leaked locks. Returns the
    /// verdict; findings are in stream order.
    pub fn finish(mut self) -> Verdict {
        self.pending.clear();
        let now = self.model.now;
        self.scan_stalls(now);
        self.check_leaks(now);
        if !self.cfg.clean_start {
            // A recording's unseen start: a tree where an unknown lock was
            // released had state from before the trace, which its waits may
            // have been on.
            for f in &mut self.findings {
                if matches!(f.kind, Kind::Stall | Kind::FifoViolation)
                    && f.tree
                        .is_some_and(|t| self.model.unknown_trees.contains(&t))
                {
                    f.certain = false;
                }
            }
            // A waiter still waiting at the end may wait for a lock held
            // since before the trace that is never released in it.
            for &(i, tree, lock, req) in &self.stall_findings {
                let waiting = self
                    .model
                    .lock(tree, lock)
                    .is_some_and(|l| l.req_idx == req && !l.is_held());
                if waiting && let Some(f) = self.findings.get_mut(i) {
                    f.certain = false;
                }
            }
        }
        for f in &mut self.findings {
            if f.repeats > 0 {
                f.message.push_str(&format!(" (and {} more)", f.repeats));
            }
        }
        if !self.retracted.is_empty() {
            let retracted = std::mem::take(&mut self.retracted);
            let mut i = 0;
            self.findings.retain(|_| {
                i += 1;
                !retracted.contains(&(i - 1))
            });
        }
        Verdict {
            first_ts: self.model.first_ts.unwrap_or(0),
            events: self.model.events,
            lost: self.model.lost,
            findings: self.findings,
            suppressed: self.suppressed,
            suppressed_fail: self.suppressed_fail,
        }
    }

    /// Settles pending grant findings: a release or cancel of what they
    /// were judged against, with a timestamp tied with the grant, means the
    /// events were merely ordered arbitrarily: withdraw the finding. Time
    /// moving past the grant makes the finding final.
    fn settle(&mut self, ev: &Event) {
        self.pending.retain(|p| p.ts >= ev.ts);
        if let Body::RlRelease { tree, lock }
        | Body::RlCancel { tree, lock }
        | Body::RlTrylockFailed { tree, lock } = ev.body
        {
            let retracted = &mut self.retracted;
            self.pending.retain_mut(|p| {
                if p.tree == tree {
                    p.locks.retain(|&l| l != lock);
                }
                if p.locks.is_empty() {
                    retracted.insert(p.finding);
                    return false;
                }
                true
            });
        }
    }

    fn check_acquire(&mut self, idx: u64, ev: &Event, tree: u64, lock: u64) {
        let Some(t) = self.model.trees.get(&tree) else {
            return;
        };
        let Some(l) = t.locks.get(&lock) else { return };
        if l.is_held() {
            return;
        }
        // Fast path: the reference grants it and the kernel's holders agree
        // with the reference's, so nothing held can conflict.
        let grantable = t.oracle.is_grantable(lock);
        if grantable && t.divergent == 0 {
            return;
        }
        let rmode = self.model.ref_mode(l.mode);
        let conflicting: Vec<(u64, u64)> = t
            .oracle
            .conflicts(l.start, l.last, rmode)
            .into_iter()
            .filter(|&id| id != lock)
            .filter_map(|id| match t.locks.get(&id)?.state {
                LockState::Held { idx, .. } => Some((id, idx)),
                LockState::Waiting => None,
            })
            .collect();
        let who = self.describe_task(ev.tid);
        let this = self.describe_lock(tree, lock, l);
        let (l_req, l_req_ts, l_tid, range) = (l.req_idx, l.req_ts, l.tid, (l.start, l.last));
        if let Some(&(other, other_acq)) = conflicting.first() {
            let o = &t.locks[&other];
            let message = format!(
                "{who} acquired {this} while {} held conflicting {}",
                self.describe_task(o.tid),
                self.describe_lock(tree, other, o)
            );
            let tids = vec![l_tid, o.tid];
            let mut evidence = vec![o.req_idx, other_acq, l_req, idx];
            evidence.extend(conflicting[1..].iter().map(|&(_, a)| a));
            let locks = conflicting.iter().map(|&(id, _)| id).collect();
            let at = self.push(
                Kind::ConflictingGrant,
                Since::Event(other_acq.min(l_req)),
                ev.ts,
                tids,
                Some(tree),
                Some(range),
                message,
                evidence,
                Vec::new(),
                None,
            );
            if let Some(finding) = at {
                self.pending.push(Pending {
                    finding,
                    tree,
                    locks,
                    ts: ev.ts,
                });
            }
            return;
        }
        if grantable {
            return;
        }
        let blockers = t.oracle.blockers(lock);
        let Some(&first) = blockers.first() else {
            return;
        };
        let Some(b) = t.locks.get(&first) else { return };
        let message = format!(
            "{who} acquired {this} before earlier-queued conflicting {} of {} (still waiting)",
            self.describe_lock(tree, first, b),
            self.describe_task(b.tid)
        );
        let tids = vec![l_tid, b.tid];
        let evidence = vec![b.req_idx, l_req, idx];
        let since = b.req_idx;
        // Request events fire before the kernel inserts into the tree: two
        // requests this close may have been inserted in either order.
        let close = l_req_ts.saturating_sub(b.req_ts) < ORDER_WINDOW_NS;
        let (since, message) = if close {
            (Since::Never, message + " (requests too close to order)")
        } else {
            (Since::Event(since), message)
        };
        let at = self.push(
            Kind::FifoViolation,
            since,
            ev.ts,
            tids,
            Some(tree),
            Some(range),
            message,
            evidence,
            Vec::new(),
            None,
        );
        if let Some(finding) = at {
            self.pending.push(Pending {
                finding,
                tree,
                locks: blockers,
                ts: ev.ts,
            });
        }
    }

    fn check_release(&mut self, idx: u64, ev: &Event, tree: u64, lock: u64) {
        match self.model.lock(tree, lock) {
            Some(l) if l.is_held() => {}
            Some(l) => {
                let message = format!(
                    "{} released {} that was still waiting (never acquired)",
                    self.describe_task(ev.tid),
                    self.describe_lock(tree, lock, l)
                );
                let (tid, range, req) = (l.tid, (l.start, l.last), l.req_idx);
                let mut tids = vec![ev.tid];
                if tid != ev.tid {
                    tids.push(tid);
                }
                // Only a lost rl_acquired explains this.
                self.push(
                    Kind::UnlockUnheld,
                    Since::Event(req),
                    ev.ts,
                    tids,
                    Some(tree),
                    Some(range),
                    message,
                    vec![req, idx],
                    Vec::new(),
                    None,
                );
            }
            None => {
                let message = format!(
                    "{} released range lock {lock:#x} on {}, which was not held",
                    self.describe_task(ev.tid),
                    self.describe_tree(tree)
                );
                self.push(
                    Kind::UnlockUnheld,
                    Since::History,
                    ev.ts,
                    vec![ev.tid],
                    Some(tree),
                    None,
                    message,
                    vec![idx],
                    Vec::new(),
                    None,
                );
            }
        }
    }

    fn check_inversion(&mut self, idx: u64, ev: &Event, mm: u64, write: bool) {
        let Some(task) = self.model.tasks.get(&ev.tid) else {
            return;
        };
        // A range lock taken for the task's own DIO in flight belongs to the
        // IO, not the task: Kara's design locks a bio's pages at submit,
        // after get_user_pages, and completion unlocks them, so the
        // submitter may take mmap_lock meanwhile (an async DIO returns to
        // user space and faults).
        let model = &self.model;
        // A tree not linked to a file (its `tree` event unseen) may be the
        // DIO's file's: then the DIO's pages must cover the lock.
        let io_owned = |tree: u64, l: &Lock| {
            model.dios.values().any(|d| {
                d.tid == ev.tid
                    && d.idx < l.req_idx
                    && match model.file_of(tree) {
                        Some(f) => f == (d.dev, d.ino),
                        None => d.pages.is_some_and(|(a, b)| a <= l.last && l.start <= b),
                    }
            })
        };
        let Some((tree, lock, l, acq)) = task.held.iter().find_map(|&(tree, lock)| {
            let l = model.lock(tree, lock)?;
            match l.state {
                LockState::Held { idx: acq, .. } if !io_owned(tree, l) => {
                    Some((tree, lock, l, acq))
                }
                _ => None,
            }
        }) else {
            return;
        };
        let who = self.describe_task(ev.tid);
        let held = self.describe_lock(tree, lock, l);
        let wants = format!(
            "mmap_lock of mm {mm:#x} ({})",
            if write { "write" } else { "read" }
        );
        let message = format!(
            "{who} requested {wants} while holding {held}: mmap_lock ranks above the range lock"
        );
        let links = vec![Link {
            tid: ev.tid,
            task: who,
            holds: held,
            wants,
        }];
        let range = Some((l.start, l.last));
        self.push(
            Kind::OrderingInversion,
            Since::Event(l.req_idx),
            ev.ts,
            vec![ev.tid],
            Some(tree),
            range,
            message,
            vec![l.req_idx, acq, idx],
            links,
            Some((tree, mm)),
        );
    }

    fn check_page(&mut self, idx: u64, ev: &Event, dev: Dev, ino: u64, first: u64, last: u64) {
        // `fault` fires at filemap_fault entry: the fault then takes the
        // range lock and waits, so only a page added proves the race. On a
        // file with a tree, a fault alone is never a finding.
        if matches!(ev.body, Body::Fault { .. }) {
            return;
        }
        let Some(tree) = self.model.tree_of(dev, ino) else {
            return;
        };
        let Some(t) = self.model.trees.get(&tree) else {
            return;
        };
        if t.locks.is_empty() {
            return;
        }
        // Fast path: the adding task holds the range itself (Kara's
        // design: lock the index, add the page, unlock). Another holder
        // overlapping it would be a conflicting_grant, reported already.
        if let Some(task) = self.model.tasks.get(&ev.tid)
            && task.held.iter().any(|&(tr, lk)| {
                tr == tree
                    && t.locks.get(&lk).is_some_and(|l| {
                        l.is_exclusive() && l.is_held() && l.start <= first && last <= l.last
                    })
            })
        {
            return;
        }
        // Fast path: no writer (rw) or nothing at all (excl) overlaps.
        let probe = self.model.ref_mode(Mode::Read);
        if t.oracle.would_grant(first, last, probe) {
            return;
        }
        let Some((lock, l, acq)) = t
            .oracle
            .conflicts(first, last, probe)
            .into_iter()
            .filter_map(|id| {
                let l = t.locks.get(&id)?;
                match l.state {
                    LockState::Held { idx, .. } if l.is_exclusive() && l.tid != ev.tid => {
                        Some((id, l, idx))
                    }
                    _ => None,
                }
            })
            .next()
        else {
            return;
        };
        // `fault` fires at filemap_fault entry: the fault may still take
        // the range lock and wait, so only a page added proves the race.
        let fault = matches!(ev.body, Body::Fault { .. });
        let what = if fault { "faulted" } else { "added" };
        let mut message = format!(
            "{} {what} page {first} of {dev}:{ino} inside {} held by {}",
            self.describe_task(ev.tid),
            self.describe_lock(tree, lock, l),
            self.describe_task(l.tid)
        );
        if fault {
            message.push_str(" (the fault may yet wait for the lock)");
        }
        let tids = vec![ev.tid, l.tid];
        let range = Some((l.start, l.last));
        let evidence = vec![l.req_idx, acq, idx];
        self.push(
            Kind::PageInLockedRange,
            if fault {
                Since::Never
            } else {
                Since::Event(acq)
            },
            ev.ts,
            tids,
            Some(tree),
            range,
            message,
            evidence,
            Vec::new(),
            Some((tree, lock)),
        );
    }

    fn check_punch(&mut self, idx: u64, ev: &Event, dev: Dev, ino: u64, index: u64) {
        // Where the file has a range-lock tree, the fault takes the range
        // lock and waits for the punch: page_in_locked_range checks that
        // race. This warning is for kernels without range locks.
        if self.model.punches.is_empty() || self.model.tree_of(dev, ino).is_some() {
            return;
        }
        let Some(p) = self.model.punches.values().find(|p| {
            p.tid != ev.tid && p.dev == dev && p.ino == ino && (p.first..=p.last).contains(&index)
        }) else {
            return;
        };
        let ptid = p.tid;
        let op = p.op.as_str();
        let message = format!(
            "{} faulted page {index} of {dev}:{ino} while {} was in a {op} of pages [{}, {}]",
            self.describe_task(ev.tid),
            self.describe_task(ptid),
            p.first,
            p.last
        );
        let (range, pidx) = ((p.first, p.last), p.idx);
        // The warning rests on the file having no tree: a lock tree not
        // linked to any file may be this file's (its `tree` event unseen),
        // and after a gap the link itself may be what was lost.
        let m = &self.model;
        let since = if m.trees.keys().any(|t| !m.tree_files.contains_key(t)) {
            Since::Never
        } else if m.last_gap.is_some() {
            Since::AnyGap
        } else {
            Since::Event(pidx)
        };
        self.push(
            Kind::FaultDuringPunch,
            since,
            ev.ts,
            vec![ev.tid, ptid],
            self.model.tree_of(dev, ino),
            Some(range),
            message,
            vec![pidx, idx],
            Vec::new(),
            Some((pidx, ev.tid as u64)),
        );
    }

    fn scan_stalls(&mut self, now: u64) {
        if self.model.grantable_waiters.is_empty() {
            return;
        }
        let stall = self.cfg.stall_ns;
        let mut due: Vec<((u64, u64), (u64, u64))> = self
            .model
            .grantable_waiters
            .iter()
            .filter(|(_, (since, _))| now.saturating_sub(*since) > stall)
            .map(|(k, v)| (*k, *v))
            .collect();
        // Report in the order they became grantable.
        due.sort_unstable_by_key(|&((tree, lock), (_, idx))| (idx, tree, lock));
        for ((tree, lock), (since, since_idx)) in due {
            let Some(l) = self.model.lock(tree, lock) else {
                continue;
            };
            if l.is_held() || !self.stalled.insert((tree, lock, l.req_idx)) {
                continue;
            }
            let waited = now - since;
            let message = format!(
                "{} still waits for {} {}.{:03} s after the reference lock would have granted it (lost wakeup?)",
                self.describe_task(l.tid),
                self.describe_lock(tree, lock, l),
                waited / 1_000_000_000,
                waited % 1_000_000_000 / 1_000_000
            );
            let (tid, range, req) = (l.tid, (l.start, l.last), l.req_idx);
            // Any gap may have hidden a blocker; a recording's unseen start
            // is judged per tree at the end.
            let at = self.push(
                Kind::Stall,
                Since::AnyGap,
                now,
                vec![tid],
                Some(tree),
                Some(range),
                message,
                vec![req, since_idx],
                Vec::new(),
                None,
            );
            if let Some(i) = at {
                self.stall_findings.push((i, tree, lock, req));
            }
        }
    }

    fn check_leaks(&mut self, now: u64) {
        let mut leaks: Vec<(u64, u64, u64)> = Vec::new();
        for (&tree, t) in &self.model.trees {
            for (&lock, l) in &t.locks {
                if let LockState::Held { idx, .. } = l.state
                    && l.holder_exited
                {
                    leaks.push((idx, tree, lock));
                }
            }
        }
        // Deterministic order: by acquisition.
        leaks.sort_unstable();
        for (acq, tree, lock) in leaks {
            let Some(t) = self.model.trees.get(&tree) else {
                continue;
            };
            let Some(l) = t.locks.get(&lock) else {
                continue;
            };
            let message = format!(
                "{} is still held at the end of the trace, but its holder {} exited",
                self.describe_lock(tree, lock, l),
                self.describe_task(l.tid)
            );
            // A DIO still in flight on the file may own it (completion
            // releases it): then this is not proven.
            let dio = self.model.dio_in_flight(self.model.file_of(tree));
            let (tid, range, req) = (l.tid, (l.start, l.last), l.req_idx);
            let since = if dio { Since::Never } else { Since::Event(acq) };
            self.push(
                Kind::LeakedLock,
                since,
                now,
                vec![tid],
                Some(tree),
                Some(range),
                message,
                vec![req, acq],
                Vec::new(),
                None,
            );
        }
    }

    /// Wait-for edges of `tid`: the owners of what blocks it now.
    fn edges(&self, tid: u32) -> Vec<(u32, u64)> {
        waitfor::edges(&self.model, tid)
    }

    /// What `tid` waits for, for reports, and the event that asked for it.
    fn wait_of(&self, tid: u32) -> Option<WaitDesc> {
        match self.model.tasks.get(&tid)?.waiting? {
            Wait::Range { tree, lock } => {
                let l = self.model.lock(tree, lock)?;
                Some((
                    self.describe_lock(tree, lock, l),
                    l.req_idx,
                    Some((tree, (l.start, l.last))),
                ))
            }
            Wait::Mmap { mm, write, idx } => Some((
                format!(
                    "mmap_lock of mm {mm:#x} ({})",
                    if write { "write" } else { "read" }
                ),
                idx,
                None,
            )),
        }
    }

    fn check_deadlock(&mut self, tid: u32, ts: u64) {
        let Some(cycle) = waitfor::find_cycle(tid, |t| self.edges(t)) else {
            return;
        };
        let mut key: Vec<u32> = cycle.iter().map(|s| s.tid).collect();
        key.sort_unstable();
        key.dedup();
        if !self.cycles.insert(key) {
            return;
        }
        let mut evidence = Vec::new();
        let mut links = Vec::new();
        let mut where_ = None;
        let n = cycle.len();
        // Step i waits for what step i+1 owns: that is what step i+1 "holds".
        let waits: Vec<_> = cycle.iter().map(|s| self.wait_of(s.tid)).collect();
        for (i, s) in cycle.iter().enumerate() {
            evidence.push(s.evidence);
            let wants = match &waits[i] {
                Some((w, req, loc)) => {
                    evidence.push(*req);
                    if where_.is_none() {
                        where_ = *loc;
                    }
                    w.clone()
                }
                None => "?".into(),
            };
            let prev = &cycle[(i + n - 1) % n];
            let holds = self.owned_description(s.tid, prev.evidence);
            links.push(Link {
                tid: s.tid,
                task: self.describe_task(s.tid),
                holds,
                wants,
            });
        }
        let chain: Vec<String> = links
            .iter()
            .map(|l| format!("{} waits for {}", l.task, l.wants))
            .collect();
        let message = format!("wait-for cycle: {}", chain.join(", "));
        let since = evidence.iter().copied().min().unwrap_or(0);
        let tids = cycle.iter().map(|s| s.tid).collect();
        let members: Vec<(u32, Wait)> = cycle
            .iter()
            .filter_map(|s| Some((s.tid, self.model.tasks.get(&s.tid)?.waiting?)))
            .collect();
        let at = self.push(
            Kind::Deadlock,
            Since::Event(since),
            ts,
            tids,
            where_.map(|w| w.0),
            where_.map(|w| w.1),
            message,
            evidence,
            links,
            None,
        );
        if let Some(i) = at {
            self.cycles_live.push((i, members));
        }
    }

    /// A member of a reported cycle got what it waited for: the cycle was
    /// not a deadlock (e.g. an rwsem reader stole the lock past a waiting
    /// writer). Withdraw the finding.
    fn progress(&mut self, tid: u32) {
        let Some(w) = self.model.tasks.get(&tid).and_then(|t| t.waiting) else {
            return;
        };
        let (retracted, cycles) = (&mut self.retracted, &mut self.cycles);
        self.cycles_live.retain(|(i, members)| {
            if members.contains(&(tid, w)) {
                retracted.insert(*i);
                // The same tasks may still deadlock for real later.
                let mut key: Vec<u32> = members.iter().map(|m| m.0).collect();
                key.sort_unstable();
                key.dedup();
                cycles.remove(&key);
                return false;
            }
            true
        });
    }

    /// Describes what `tid` owns that was granted/requested at event `idx`.
    fn owned_description(&self, tid: u32, idx: u64) -> String {
        for (&tree, t) in &self.model.trees {
            for (&lock, l) in &t.locks {
                let at = match l.state {
                    LockState::Held { idx, .. } => idx,
                    LockState::Waiting => l.req_idx,
                };
                if l.tid == tid && at == idx {
                    return self.describe_lock(tree, lock, l);
                }
            }
        }
        for (&mm, m) in &self.model.mms {
            if let Some(h) = m.holders.iter().find(|h| h.tid == tid && h.idx == idx) {
                return format!(
                    "mmap_lock of mm {mm:#x} ({})",
                    if h.write { "write" } else { "read" }
                );
            }
        }
        "?".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Mode;

    fn ev(ts: u64, tid: u32, body: Body) -> Event {
        Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body,
        }
    }

    fn run(cfg: Config, evs: &[Event]) -> Verdict {
        let mut c = Checker::new(Model::new(None), cfg);
        for (i, e) in evs.iter().enumerate() {
            c.event(i as u64, e);
        }
        c.finish()
    }

    /// A live recording begins while a lock is held: its release, and the
    /// wait it caused, are not proven bugs.
    #[test]
    fn recorded_traces_start_mid_stream() {
        let s = 1_000_000_000;
        let evs = [
            // 7 waits for a lock taken before the trace began (unseen).
            ev(
                s,
                7,
                Body::RlRequest {
                    tree: 1,
                    lock: 2,
                    start: 0,
                    last: 0,
                    mode: Mode::Excl,
                },
            ),
            ev(3 * s, 6, Body::RlRelease { tree: 1, lock: 1 }),
            ev(3 * s + 1, 7, Body::RlAcquired { tree: 1, lock: 2 }),
        ];
        let rec = run(
            Config {
                clean_start: false,
                ..Config::default()
            },
            &evs,
        );
        let kinds: Vec<_> = rec.findings.iter().map(|f| (f.kind, f.certain)).collect();
        assert_eq!(kinds, [(Kind::Stall, false), (Kind::UnlockUnheld, false)]);
        assert!(!rec.failed());
        // A stall on a tree with no unseen lock is a bug even there.
        let evs2 = [
            ev(
                s,
                6,
                Body::RlRequest {
                    tree: 1,
                    lock: 1,
                    start: 0,
                    last: 0,
                    mode: Mode::Excl,
                },
            ),
            ev(s, 6, Body::RlAcquired { tree: 1, lock: 1 }),
            ev(
                s,
                7,
                Body::RlRequest {
                    tree: 1,
                    lock: 2,
                    start: 0,
                    last: 0,
                    mode: Mode::Excl,
                },
            ),
            ev(s + 1, 6, Body::RlRelease { tree: 1, lock: 1 }),
            ev(
                3 * s,
                6,
                Body::Marker {
                    text: String::new(),
                },
            ),
            // Woken at last: it was never blocked by anything unseen.
            ev(3 * s + 1, 7, Body::RlAcquired { tree: 1, lock: 2 }),
        ];
        let rec2 = run(
            Config {
                clean_start: false,
                ..Config::default()
            },
            &evs2,
        );
        let kinds: Vec<_> = rec2.findings.iter().map(|f| (f.kind, f.certain)).collect();
        assert_eq!(kinds, [(Kind::Stall, true)]);
        // Still waiting at the end: maybe for a lock older than the trace.
        let rec3 = run(
            Config {
                clean_start: false,
                ..Config::default()
            },
            &evs2[..5],
        );
        let kinds: Vec<_> = rec3.findings.iter().map(|f| (f.kind, f.certain)).collect();
        assert_eq!(kinds, [(Kind::Stall, false)]);
        // The same events in a trace that starts clean are bugs.
        let clean = run(Config::default(), &evs);
        assert!(clean.failed());
        assert!(clean.findings.iter().all(|f| f.certain));
    }

    #[test]
    fn repeated_problems_fold_into_one_finding() {
        let dev = Dev { major: 8, minor: 1 };
        let mut evs = vec![
            ev(
                1,
                1,
                Body::Tree {
                    tree: 1,
                    dev,
                    ino: 5,
                },
            ),
            ev(
                2,
                1,
                Body::RlRequest {
                    tree: 1,
                    lock: 9,
                    start: 0,
                    last: 9,
                    mode: Mode::Write,
                },
            ),
            ev(3, 1, Body::RlAcquired { tree: 1, lock: 9 }),
        ];
        for i in 0..5 {
            evs.push(ev(
                4 + i,
                2,
                Body::PageAdd {
                    dev,
                    ino: 5,
                    index: i,
                    order: Some(0),
                },
            ));
        }
        let v = run(Config::default(), &evs);
        assert_eq!(v.findings.len(), 1);
        assert_eq!(v.findings[0].kind, Kind::PageInLockedRange);
        assert!(v.findings[0].message.ends_with("(and 4 more)"));
    }

    /// A task waiting for a range it holds itself is an AA deadlock, unless
    /// its DIO is in flight there: completion releases that lock.
    #[test]
    fn self_wait_is_a_deadlock_unless_dio_owns_the_lock() {
        let dev = Dev { major: 8, minor: 1 };
        let base = [
            ev(
                1,
                1,
                Body::Tree {
                    tree: 1,
                    dev,
                    ino: 5,
                },
            ),
            ev(
                2,
                1,
                Body::RlRequest {
                    tree: 1,
                    lock: 9,
                    start: 0,
                    last: 9,
                    mode: Mode::Excl,
                },
            ),
            ev(3, 1, Body::RlAcquired { tree: 1, lock: 9 }),
        ];
        let again = ev(
            4,
            1,
            Body::RlRequest {
                tree: 1,
                lock: 10,
                start: 5,
                last: 5,
                mode: Mode::Excl,
            },
        );
        let mut evs = base.to_vec();
        evs.push(again.clone());
        let v = run(Config::default(), &evs);
        assert_eq!(v.findings.len(), 1);
        let f = &v.findings[0];
        assert_eq!(
            (f.kind, f.certain, &f.tids[..]),
            (Kind::Deadlock, true, &[1][..])
        );
        assert_eq!(f.evidence, [2, 3]);

        let mut evs = vec![ev(
            0,
            1,
            Body::DioBegin {
                io: 7,
                dev,
                ino: 5,
                pos: 0,
                len: 40960,
                write: true,
            },
        )];
        evs.extend(base.iter().cloned());
        evs.push(again);
        evs.push(ev(5, 0, Body::DioEnd { io: 7, ret: 0 }));
        evs.push(ev(6, 0, Body::RlRelease { tree: 1, lock: 9 }));
        evs.push(ev(7, 1, Body::RlAcquired { tree: 1, lock: 10 }));
        evs.push(ev(8, 1, Body::RlRelease { tree: 1, lock: 10 }));
        let v = run(Config::default(), &evs);
        assert_eq!(v.findings, []);
    }

    #[test]
    fn findings_past_the_cap_are_counted_and_still_fail() {
        let evs: Vec<_> = (0..MAX_FINDINGS as u64 + 5)
            .map(|i| ev(i, 1, Body::RlRelease { tree: 1, lock: i }))
            .collect();
        let v = run(Config::default(), &evs);
        assert_eq!(v.findings.len(), MAX_FINDINGS);
        assert_eq!(v.suppressed, 5);
        assert!(v.failed());
        assert!(crate::views::findings::json(&v).ends_with(",\"suppressed\":5}"));
    }

    /// munmap() downgrades its mmap_lock (a read acquisition with no
    /// request, then a read release): no write hold may stay behind, or
    /// the next two writers "deadlock" on it (seen in system-wide
    /// recordings of parallel builds, when the trace ends meanwhile).
    #[test]
    fn mmap_write_downgrade_leaves_no_phantom_writer() {
        let acq = |write| Body::MmapLockAcquired {
            mm: 5,
            write,
            success: true,
        };
        let evs = [
            ev(1, 1, Body::MmapLockRequest { mm: 5, write: true }),
            ev(2, 1, acq(true)),
            // mmap_write_downgrade(), then mmap_read_unlock().
            ev(3, 1, acq(false)),
            ev(
                4,
                1,
                Body::MmapLockRelease {
                    mm: 5,
                    write: false,
                },
            ),
            // Two writers arrive; the trace ends before either is seen
            // acquiring.
            ev(5, 2, Body::MmapLockRequest { mm: 5, write: true }),
            ev(6, 1, Body::MmapLockRequest { mm: 5, write: true }),
        ];
        let v = run(Config::default(), &evs);
        assert_eq!(v.findings, [], "{:#?}", v.findings);
    }

    /// rwsem queueing: a reader queues behind a waiting writer, so
    /// reader-holds-range / writer-waits / reader-waits closes a cycle.
    #[test]
    fn mmap_reader_queued_behind_a_waiting_writer_can_deadlock() {
        let rq = |tree, lock| Body::RlRequest {
            tree,
            lock,
            start: 0,
            last: 0,
            mode: Mode::Excl,
        };
        let evs = [
            // 1 holds mmap_lock for reading.
            ev(
                1,
                1,
                Body::MmapLockRequest {
                    mm: 5,
                    write: false,
                },
            ),
            ev(
                2,
                1,
                Body::MmapLockAcquired {
                    mm: 5,
                    write: false,
                    success: true,
                },
            ),
            // 3 holds a range lock.
            ev(3, 3, rq(1, 30)),
            ev(4, 3, Body::RlAcquired { tree: 1, lock: 30 }),
            // 2 wants to write mmap_lock: waits for 1.
            ev(5, 2, Body::MmapLockRequest { mm: 5, write: true }),
            // 3 wants to read mmap_lock: queued behind writer 2.
            ev(
                6,
                3,
                Body::MmapLockRequest {
                    mm: 5,
                    write: false,
                },
            ),
            // 1 wants 3's range: 1 -> 3 -> 2 -> 1.
            ev(7, 1, rq(1, 10)),
        ];
        let v = run(Config::default(), &evs);
        let dl: Vec<_> = v
            .findings
            .iter()
            .filter(|f| f.kind == Kind::Deadlock)
            .collect();
        assert_eq!(dl.len(), 1, "{:#?}", v.findings);
        assert_eq!(dl[0].tids, [1, 3, 2]);
        assert_eq!(dl[0].evidence, [1, 3, 4, 5, 6]);
        assert!(dl[0].certain);
        // If the reader then gets mmap_lock after all (rwsem reader lock
        // stealing), there was no deadlock.
        let mut evs = evs.to_vec();
        evs.push(ev(
            8,
            3,
            Body::MmapLockAcquired {
                mm: 5,
                write: false,
                success: true,
            },
        ));
        let v = run(Config::default(), &evs);
        assert!(
            v.findings.iter().all(|f| f.kind != Kind::Deadlock),
            "{:#?}",
            v.findings
        );
    }
}
