//! The ledger: what a rule's [`Draft`] becomes.
//!
//! Rules say what they found and what it rests on ([`Since`]); the ledger
//! applies the project's rules of truth to all of them alike (see the
//! checker's module docs, "Certainty and lost events"):
//!
//! - certainty: a gap that could explain the finding, a recording's unseen
//!   start, or a task the model may misjudge since a gap (taint) makes it
//!   uncertain;
//! - dedup: the same problem again folds into the first finding;
//! - the cap: past [`MAX_FINDINGS`] findings are only counted;
//! - retraction: a finding judged against a lock whose release follows
//!   with the same timestamp (ties have no order) is withdrawn, and a rule
//!   may withdraw its own.

use super::{Finding, Kind, Link, MAX_FINDINGS, Severity, Verdict};
use crate::events::{Body, Event};
use crate::model::{FastMap, FastSet, Model};

/// A finding's position in the ledger.
pub type FindingId = usize;

/// How far back an explanation by a gap may reach.
#[derive(Clone, Copy, Debug)]
pub enum Since {
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

/// What a rule found, before the ledger judges it.
#[derive(Debug)]
pub struct Draft {
    pub since: Since,
    pub ts: u64,
    pub tids: Vec<u32>,
    pub tree: Option<u64>,
    pub range: Option<(u64, u64)>,
    pub message: String,
    /// Event indices, any order (the ledger sorts them).
    pub evidence: Vec<u64>,
    pub links: Vec<Link>,
    /// The ordering rule broken, for the lockdep-style report.
    pub rule: Option<&'static str>,
    /// Repeats of the same problem (this kind and key) fold into the first.
    pub dedup: Option<(u64, u64)>,
    /// Withdraw the finding when a release, cancel or failed trylock of one
    /// of these locks of this tree follows with the same timestamp.
    pub tie: Option<(u64, Vec<u64>)>,
}

impl Draft {
    pub fn new(since: Since, ts: u64, message: String) -> Draft {
        Draft {
            since,
            ts,
            tids: Vec::new(),
            tree: None,
            range: None,
            message,
            evidence: Vec::new(),
            links: Vec::new(),
            rule: None,
            dedup: None,
            tie: None,
        }
    }
}

/// A finding that a release (or cancel) of one of `locks` at a timestamp
/// not after `ts` would explain.
#[derive(Debug)]
struct Pending {
    finding: FindingId,
    tree: u64,
    locks: Vec<u64>,
    ts: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Ledger {
    clean_start: bool,
    findings: Vec<Finding>,
    /// Repeated problems fold into the first finding: (kind, a, b) -> index.
    dedup: FastMap<(Kind, u64, u64), FindingId>,
    /// Findings not kept past [`MAX_FINDINGS`], and whether one of them
    /// was a certain error.
    suppressed: u64,
    suppressed_fail: bool,
    pending: Vec<Pending>,
    retracted: FastSet<FindingId>,
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

impl Ledger {
    pub fn new(clean_start: bool) -> Ledger {
        Ledger {
            clean_start,
            findings: Vec::new(),
            dedup: FastMap::default(),
            suppressed: 0,
            suppressed_fail: false,
            pending: Vec::new(),
            retracted: FastSet::default(),
            tainted: FastMap::default(),
            known: None,
        }
    }

    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Findings so far that were not withdrawn.
    pub fn standing(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.retracted.contains(i))
            .map(|(_, f)| f)
    }

    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    fn certain(&self, m: &Model, since: Since) -> bool {
        match (m.last_gap, since) {
            (Some(g), Since::Event(e)) => g < e,
            (Some(_), Since::History | Since::AnyGap) => false,
            (None, Since::History) => self.clean_start,
            (None, Since::AnyGap) => true,
            (None, Since::Event(_)) => true,
            (_, Since::Never) => false,
        }
    }

    /// Judges and keeps a draft of `kind`. Returns its id, or `None` when
    /// it folded into an earlier finding or went past the cap.
    pub fn push(
        &mut self,
        m: &Model,
        kind: Kind,
        severity: Severity,
        d: Draft,
    ) -> Option<FindingId> {
        let mut evidence = d.evidence;
        evidence.sort_unstable();
        evidence.dedup();
        let f = Finding {
            kind,
            severity,
            certain: self.certain(m, d.since)
                && (self.tainted.is_empty()
                    || !d.tids.iter().any(|t| self.tainted.contains_key(t))),
            ts: d.ts,
            tids: d.tids,
            tree: d.tree,
            range: d.range,
            message: d.message,
            evidence,
            links: d.links,
            rule: d.rule,
            repeats: 0,
            broken_after_ns: None,
        };
        if let Some((a, b)) = d.dedup {
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
        let id = self.findings.len();
        self.findings.push(f);
        if let Some((tree, locks)) = d.tie {
            self.pending.push(Pending {
                finding: id,
                tree,
                locks,
                ts: d.ts,
            });
        }
        Some(id)
    }

    /// A deadlock was broken by a cancelled wait at event `idx`, `after`
    /// ns after it formed: it stays, and says so.
    pub fn broken(&mut self, id: FindingId, idx: u64, after: u64, how: &str) {
        if let Some(f) = self.findings.get_mut(id) {
            f.broken_after_ns = Some(after);
            f.message.push_str(&format!(
                "; broken after {}.{:03} s: {how}",
                after / 1_000_000_000,
                after % 1_000_000_000 / 1_000_000
            ));
            if let Err(at) = f.evidence.binary_search(&idx) {
                f.evidence.insert(at, idx);
            }
        }
    }

    pub fn retract(&mut self, id: FindingId) {
        self.retracted.insert(id);
    }

    pub fn uncertain(&mut self, id: FindingId) {
        if let Some(f) = self.findings.get_mut(id) {
            f.certain = false;
        }
    }

    pub fn uncertain_where(&mut self, pred: impl Fn(&Finding) -> bool) {
        for f in &mut self.findings {
            if pred(f) {
                f.certain = false;
            }
        }
    }

    /// Settles findings waiting on ties: a release or cancel of what they
    /// were judged against, with a timestamp tied with them, means the
    /// events were merely ordered arbitrarily: withdraw the finding. Time
    /// moving past the finding makes it final.
    #[inline]
    pub fn settle(&mut self, ev: &Event) {
        if !self.pending.is_empty() {
            self.settle_ties(ev);
        }
    }

    fn settle_ties(&mut self, ev: &Event) {
        self.pending.retain(|p| p.ts >= ev.ts);
        if let Body::RlRelease { tree, lock }
        | Body::RlDowngrade { tree, lock }
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

    /// The end of the stream: nothing tied with it can come any more.
    pub fn end_ties(&mut self) {
        self.pending.clear();
    }

    /// Takes note of an event before the rules check it: a task first seen
    /// after a gap, a gap itself (with the model before it).
    #[inline]
    pub fn observe(&mut self, m: &Model, ev: &Event) {
        if self.known.is_some() || matches!(ev.body, Body::Lost { .. }) {
            self.observe_gaps(m, ev);
        }
    }

    fn observe_gaps(&mut self, m: &Model, ev: &Event) {
        if let Some(known) = &mut self.known
            && known.insert(ev.tid)
            && !matches!(ev.body, Body::Lost { .. })
        {
            self.tainted.insert(ev.tid, false);
        }
        match ev.body {
            Body::Lost {
                since: Some(since), ..
            } => {
                // The drops fell somewhere after `since`: a finding made
                // since then may rest on a missing event, though the
                // recorder only reported the gap now.
                for f in &mut self.findings {
                    if f.ts >= since {
                        f.certain = false;
                    }
                }
                self.taint_busy(m);
            }
            Body::Lost { since: None, .. } => self.taint_busy(m),
            _ => {}
        }
    }

    /// A gap: every task the model knows (or with an IO, punch or
    /// mmap_lock in flight) may have lost events; tasks first seen later
    /// are tainted then.
    fn taint_busy(&mut self, m: &Model) {
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
    /// in the model (after the event): holding and waiting for nothing,
    /// nothing in flight.
    #[inline]
    pub fn untaint(&mut self, m: &Model, ev: &Event) {
        if !self.tainted.is_empty() {
            self.untaint_touched(m, ev);
        }
    }

    fn untaint_touched(&mut self, m: &Model, ev: &Event) {
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

    /// The verdict: repeats counted in the messages, withdrawn findings
    /// left out, in stream order.
    pub fn verdict(mut self, m: &Model) -> Verdict {
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
            first_ts: m.first_ts.unwrap_or(0),
            events: m.events,
            lost: m.lost,
            findings: self.findings,
            suppressed: self.suppressed,
            suppressed_fail: self.suppressed_fail,
            invalid_ranges: m.invalid_ranges,
        }
    }
}
