//! `conflicting_grant`: two conflicting range locks were held at the same
//! time on one tree.
//!
//! Checked when the kernel reports an acquisition, against what is held
//! then (the model before the event). Withdrawn when a release of what it
//! conflicts with follows with the same timestamp (ties have no order).

use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};
use crate::model::{Lock, LockState, Model, Tree};

impl Kind {
    pub const CONFLICTING_GRANT: Kind = Kind("conflicting_grant");
}

#[derive(Debug)]
pub struct ConflictingGrant;

/// An acquisition the fast path cannot clear: `Some(grantable)` unless the
/// reference grants it and the kernel's holders agree with the
/// reference's, so that nothing held can conflict.
pub(super) fn slow_acquire(t: &Tree, l: &Lock, lock: u64) -> Option<bool> {
    if l.is_held() {
        return None;
    }
    // The model already knows when the reference lets a waiting lock own
    // its range (`grantable_since`): no need to ask it on the fast path.
    if l.grantable_since.is_some() && t.divergent == 0 {
        return None;
    }
    let grantable = t.oracle.is_grantable(lock);
    if grantable && t.divergent == 0 {
        return None;
    }
    Some(grantable)
}

/// The held locks conflicting with `lock` of tree `t`, with the events
/// that acquired them.
pub(super) fn held_conflicts(m: &Model, t: &Tree, lock: u64) -> Vec<(u64, u64)> {
    let Some(l) = t.locks.get(&lock) else {
        return Vec::new();
    };
    t.oracle
        .conflicts(l.start, l.last, m.ref_mode(l.mode))
        .into_iter()
        .filter(|&id| id != lock)
        .filter_map(|id| match t.locks.get(&id)?.state {
            LockState::Held { idx, .. } => Some((id, idx)),
            LockState::Waiting => None,
        })
        .collect()
}

impl Rule for ConflictingGrant {
    fn kind(&self) -> Kind {
        Kind::CONFLICTING_GRANT
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "two conflicting range locks were held at the same time on one tree"
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
        if slow_acquire(t, l, lock).is_none() {
            return;
        }
        let conflicting = held_conflicts(m, t, lock);
        let Some(&(other, other_acq)) = conflicting.first() else {
            return;
        };
        let o = &t.locks[&other];
        let message = format!(
            "{} acquired {} while {} held conflicting {}",
            describe::task(m, ev.tid),
            describe::range_lock(m, tree, lock, l),
            describe::task(m, o.tid),
            describe::range_lock(m, tree, other, o)
        );
        let mut evidence = vec![o.req_idx, other_acq, l.req_idx, idx];
        evidence.extend(conflicting[1..].iter().map(|&(_, a)| a));
        cx.report(Draft {
            tids: vec![l.tid, o.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence,
            tie: Some((tree, conflicting.iter().map(|&(id, _)| id).collect())),
            ..Draft::new(Since::Event(other_acq.min(l.req_idx)), ev.ts, message)
        });
    }
}
