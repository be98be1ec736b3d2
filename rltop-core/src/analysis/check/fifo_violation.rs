//! `fifo_violation`: a request was granted before an earlier-queued
//! conflicting request, against the flavour's rule.
//!
//! Checked on acquisitions the reference would not grant yet, when nothing
//! held conflicts (that is a `conflicting_grant`). The order that counts
//! is the order in which the requests entered the queue, which only
//! `rl_queued` events show (the profile's probe on the insertion, under
//! the tree's lock). A request event fires at the lock call's entry, and a
//! preemption there (`might_sleep()`) may let a later request enter first:
//! without `rl_queued` for both, the finding is uncertain. Withdrawn when
//! a release or cancel of a blocker follows with the same timestamp.

use super::conflicting_grant::{held_conflicts, slow_acquire};
use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};

impl Kind {
    pub const FIFO_VIOLATION: Kind = Kind("fifo_violation");
}

#[derive(Debug)]
pub struct FifoViolation;

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
        On::of(&[Tag::RlAcquired])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let Body::RlAcquired { tree, lock } = ev.body else {
            return;
        };
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
        let (since, message, evidence) = match (b.queued, l.queued) {
            // Both seen entering the queue, the blocker first: proven.
            (Some((bq, bts)), Some((lq, lts))) if bts < lts => (
                Since::Event(bq),
                message,
                vec![b.req_idx, l.req_idx, bq, lq, idx],
            ),
            // The blocker entered after it (the reference queued them by
            // their requests, before the first insertion was seen): fair.
            (Some(_), Some(_)) => return,
            _ => (
                Since::Never,
                message + " (queue order not observed: no insertion probe)",
                vec![b.req_idx, l.req_idx, idx],
            ),
        };
        cx.report(Draft {
            tids: vec![l.tid, b.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence,
            tie: Some((tree, blockers)),
            ..Draft::new(since, ev.ts, message)
        });
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        if !cx.cfg.clean_start {
            // A recording's unseen start: a tree where an unknown lock was
            // released had state from before the trace, which the queue
            // order may have been judged without.
            let unknown = &cx.m.unknown_trees;
            cx.uncertain_where(|f| f.tree.is_some_and(|t| unknown.contains(&t)));
        }
    }
}
