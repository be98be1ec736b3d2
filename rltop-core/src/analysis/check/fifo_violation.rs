//! `fifo_violation`: a request was granted before an earlier-queued
//! conflicting request, against the flavour's rule.
//!
//! Checked on acquisitions the reference would not grant yet, when nothing
//! held conflicts (that is a `conflicting_grant`). The order that counts
//! is the order in which the requests entered the queue. A request event
//! fires at the lock call's entry, and a preemption there (`might_sleep()`)
//! may let a later request enter first, so the order of the requests
//! proves nothing. Two events do:
//!
//! - `rl_queued` (a probe on the insertion, under the tree's lock): both
//!   requests seen entering the queue, the blocker first;
//! - `rl_queue_seq` (the lock's sequence number, set under the tree's lock
//!   as it inserts, read when the call returns): the blocker's number is
//!   lower. The blocker still waits at the grant, so its number comes
//!   later: the finding waits for the blocker's acquisition. A blocker
//!   cancelled meanwhile, or never returning in the trace, leaves it
//!   uncertain (it may have left the queue before the grant).
//!
//! Without either the finding is uncertain. Withdrawn when a release or
//! cancel of a blocker follows with the same timestamp (`rl_queued` case).

use super::conflicting_grant::{held_conflicts, slow_acquire};
use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};

impl Kind {
    pub const FIFO_VIOLATION: Kind = Kind("fifo_violation");
}

#[derive(Debug, Default)]
pub struct FifoViolation {
    /// Grants past a blocker whose place in the queue is not known yet.
    pending: Vec<Pending>,
}

/// A grant of a request with sequence number `seq`, past `blocker` of
/// `tree`, whose number comes when its call returns.
#[derive(Debug)]
struct Pending {
    tree: u64,
    blocker: u64,
    seq: u64,
    draft: Draft,
}

/// Why a grant past an earlier request proves nothing: the finding is
/// uncertain, and its message says why.
#[derive(Clone, Copy, Debug)]
enum Unproven {
    /// Neither request's entry into the queue was seen.
    NotObserved,
    /// The earlier request never returned, so its number is not known.
    NeverReturned,
    /// The earlier request was cancelled: it may have left before.
    Cancelled,
}

impl Unproven {
    fn why(self) -> &'static str {
        match self {
            Unproven::NotObserved => {
                " (queue order not observed: no insertion probe or sequence number)"
            }
            Unproven::NeverReturned => {
                " (the earlier request never returned in the trace: its place in the queue is not known)"
            }
            Unproven::Cancelled => {
                " (the earlier request was then cancelled: it may have left the queue before the grant)"
            }
        }
    }

    /// Makes `d` uncertain, saying why.
    fn mark(self, d: &mut Draft) {
        d.since = Since::Never;
        d.message += self.why();
    }
}

impl Rule for FifoViolation {
    fn kind(&self) -> Kind {
        Kind::FIFO_VIOLATION
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a request was granted before an earlier-queued conflicting request, against the flavour's rule"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::RlAcquired, Tag::RlCancel])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        match ev.body {
            Body::RlAcquired { tree, lock } => {
                self.settle(cx, idx, tree, lock, true);
                self.grant(cx, idx, ev, tree, lock);
            }
            Body::RlCancel { tree, lock } => self.settle(cx, idx, tree, lock, false),
            _ => {}
        }
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        // Blockers that never returned: their place is not known.
        for p in std::mem::take(&mut self.pending) {
            let mut d = p.draft;
            Unproven::NeverReturned.mark(&mut d);
            cx.report(d);
        }
        if !cx.cfg.clean_start {
            // A recording's unseen start: a tree where an unknown lock was
            // released had state from before the trace, which the queue
            // order may have been judged without.
            let unknown = &cx.m.unknown_trees;
            cx.uncertain_where(|f| f.tree.is_some_and(|t| unknown.contains(&t)));
        }
    }
}

impl FifoViolation {
    /// Judges the grant of `lock`.
    fn grant(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event, tree: u64, lock: u64) {
        let m = cx.m;
        let Some((t, l)) = cx.subject else {
            return;
        };
        let Some(grantable) = slow_acquire(t, l, lock) else {
            return;
        };
        if grantable || !held_conflicts(m, t, lock).is_empty() {
            return;
        }
        let blockers = t.oracle.blockers(lock);
        let Some(&first) = blockers.first() else {
            return;
        };
        let Some(b) = t.locks.get(&first) else {
            return;
        };
        let message = format!(
            "{} acquired {} before earlier-queued conflicting {} of {} (still waiting)",
            describe::task(m, ev.tid),
            describe::range_lock(m, tree, lock, l),
            describe::range_lock(m, tree, first, b),
            describe::task(m, b.tid)
        );
        let draft = |since, message, evidence, tie| Draft {
            tids: vec![l.tid, b.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence,
            tie,
            ..Draft::new(since, ev.ts, message)
        };
        let tie = Some((tree, blockers.clone()));
        match (b.queued, l.queued, l.seq) {
            // Both seen entering the queue, the blocker first: proven.
            (Some((bq, bts)), Some((lq, lts)), _) if bts < lts => {
                cx.report(draft(
                    Since::Event(bq),
                    message,
                    vec![b.req_idx, l.req_idx, bq, lq, idx],
                    tie,
                ));
            }
            // The blocker entered after it (the reference queued them by
            // their requests, before the first insertion was seen): fair.
            (Some(_), Some(_), _) => {}
            // Its number is known; the blocker's comes when it returns.
            (_, _, Some((seq, si))) => self.pending.push(Pending {
                tree,
                blocker: first,
                seq,
                draft: draft(
                    Since::Event(b.req_idx),
                    message,
                    vec![b.req_idx, l.req_idx, si, idx],
                    None,
                ),
            }),
            _ => {
                let mut d = draft(Since::Never, message, vec![b.req_idx, l.req_idx, idx], tie);
                Unproven::NotObserved.mark(&mut d);
                cx.report(d);
            }
        }
    }

    /// The blocker `lock` of pending grants returns: acquired, its number
    /// (read just before) decides; cancelled, nothing is proven.
    fn settle(&mut self, cx: &mut Cx<'_>, idx: u64, tree: u64, lock: u64, acquired: bool) {
        if self.pending.is_empty() {
            return;
        }
        let seq = cx.m.lock(tree, lock).and_then(|l| l.seq);
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            if (p.tree, p.blocker) != (tree, lock) {
                i += 1;
                continue;
            }
            let mut p = self.pending.swap_remove(i);
            match (acquired, seq) {
                // Entered the queue after the grantee: fair.
                (true, Some((bs, _))) if bs > p.seq => {}
                (true, Some((bs, bi))) if bs < p.seq => {
                    p.draft.evidence.extend([bi, idx]);
                    cx.report(p.draft);
                }
                // No number, or the same one: not a queue order.
                (true, _) => {
                    Unproven::NotObserved.mark(&mut p.draft);
                    cx.report(p.draft);
                }
                (false, _) => {
                    Unproven::Cancelled.mark(&mut p.draft);
                    p.draft.evidence.push(idx);
                    cx.report(p.draft);
                }
            }
        }
    }
}
