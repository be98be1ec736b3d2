//! `unlock_unheld`: release of a lock that was not held.
//!
//! A lock never seen rests on the absence of its request (which a gap or
//! a recording's unseen start may explain); a lock seen requested but not
//! acquired only on a lost `rl_acquired` after its request.
//!
//! A release of a still-waiting request by its own task runs inside that
//! task's lock call (a task asleep in it does nothing else). When the call
//! then returns its error (`rl_cancel`), the release was the call's own
//! cancel path (Lustre's `range_lock()` unlocks its never-granted lock on
//! a signal) and the finding is withdrawn.

use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};

impl Kind {
    pub const UNLOCK_UNHELD: Kind = Kind("unlock_unheld");
}

#[derive(Debug, Default)]
pub struct UnlockUnheld {
    /// Findings on a release inside the waiting task's own lock call:
    /// `(tree, lock)` -> (tid, finding), until that call returns.
    in_call: crate::model::FastMap<(u64, u64), (u32, super::FindingId)>,
}

impl Rule for UnlockUnheld {
    fn kind(&self) -> Kind {
        Kind::UNLOCK_UNHELD
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "release of a lock that was not held"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::RlRelease, Tag::RlCancel, Tag::RlRequest])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let (tree, lock) = match ev.body {
            Body::RlRelease { tree, lock } => (tree, lock),
            Body::RlCancel { tree, lock } => {
                if let Some((tid, id)) = self.in_call.remove(&(tree, lock))
                    && tid == ev.tid
                {
                    cx.retract(id);
                }
                return;
            }
            Body::RlRequest { tree, lock, .. } => {
                if !self.in_call.is_empty() {
                    self.in_call.remove(&(tree, lock));
                }
                return;
            }
            _ => return,
        };
        let m = cx.m;
        if m.invalid_locks.contains(&(tree, lock)) {
            // Its request was set aside (not a range of a file).
            return;
        }
        let draft = match cx.subject.map(|(_, l)| l) {
            Some(l) if l.is_held() => return,
            Some(l) => {
                let message = format!(
                    "{} released {} that was still waiting (never acquired)",
                    describe::task(m, ev.tid),
                    describe::range_lock(m, tree, lock, l)
                );
                let mut tids = vec![ev.tid];
                if l.tid != ev.tid {
                    tids.push(l.tid);
                }
                // Only a lost rl_acquired explains this, or the call's own
                // cancel (withdrawn when the call returns its error).
                let own = l.tid == ev.tid;
                let draft = Draft {
                    tids,
                    tree: Some(tree),
                    range: Some((l.start, l.last)),
                    evidence: vec![l.req_idx, idx],
                    ..Draft::new(Since::Event(l.req_idx), ev.ts, message)
                };
                if own {
                    if let Some(id) = cx.report(draft) {
                        self.in_call.insert((tree, lock), (ev.tid, id));
                    }
                    return;
                }
                draft
            }
            None => {
                let message = format!(
                    "{} released range lock {lock:#x} on {}, which was not held",
                    describe::task(m, ev.tid),
                    describe::tree(m, tree)
                );
                Draft {
                    tids: vec![ev.tid],
                    tree: Some(tree),
                    evidence: vec![idx],
                    ..Draft::new(Since::History, ev.ts, message)
                }
            }
        };
        cx.report(draft);
    }
}
