//! `unlock_unheld`: release of a lock that was not held.
//!
//! A lock never seen rests on the absence of its request (which a gap or
//! a recording's unseen start may explain); a lock seen requested but not
//! acquired only on a lost `rl_acquired` after its request.

use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};

impl Kind {
    pub const UNLOCK_UNHELD: Kind = Kind("unlock_unheld");
}

#[derive(Debug)]
pub struct UnlockUnheld;

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
        On::of(&[Tag::RlRelease])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let Body::RlRelease { tree, lock } = ev.body else {
            return;
        };
        let m = cx.m;
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
                // Only a lost rl_acquired explains this.
                Draft {
                    tids,
                    tree: Some(tree),
                    range: Some((l.start, l.last)),
                    evidence: vec![l.req_idx, idx],
                    ..Draft::new(Since::Event(l.req_idx), ev.ts, message)
                }
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
