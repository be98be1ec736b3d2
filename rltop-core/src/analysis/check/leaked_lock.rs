//! `leaked_lock`: a lock still held when its holder's work ended (the
//! holder exited and the trace stopped cleanly).
//!
//! Uncertain while a DIO on the same file is in flight: its completion may
//! still release the lock.

use super::{Cx, Draft, Kind, Rule, Severity, Since};
use crate::analysis::describe;
use crate::model::LockState;

impl Kind {
    pub const LEAKED_LOCK: Kind = Kind("leaked_lock");
}

#[derive(Debug)]
pub struct LeakedLock;

impl Rule for LeakedLock {
    fn kind(&self) -> Kind {
        Kind::LEAKED_LOCK
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a lock still held when its holder's work ended (the trace stopped cleanly)"
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        let m = cx.m;
        let mut leaks: Vec<(u64, u64, u64)> = Vec::new();
        for (&tree, t) in &m.trees {
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
            let Some(l) = m.lock(tree, lock) else {
                continue;
            };
            let message = format!(
                "{} is still held at the end of the trace, but its holder {} exited",
                describe::range_lock(m, tree, lock, l),
                describe::task(m, l.tid)
            );
            // A DIO still in flight on the file may own it (completion
            // releases it): then this is not proven.
            let since = if m.dio_in_flight(m.file_of(tree)) {
                Since::Never
            } else {
                Since::Event(acq)
            };
            cx.report(Draft {
                tids: vec![l.tid],
                tree: Some(tree),
                range: Some((l.start, l.last)),
                evidence: vec![l.req_idx, acq],
                ..Draft::new(since, m.now, message)
            });
        }
    }
}
