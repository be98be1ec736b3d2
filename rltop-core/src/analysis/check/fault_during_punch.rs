//! `fault_during_punch` (warning): a fault on a page of a range being
//! punched or truncated by another task, on a file without a range-lock
//! tree (kernels without range locks).
//!
//! Where the file has a tree, the fault takes the range lock and waits for
//! the punch: `page_in_locked_range` checks that race.

use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};

impl Kind {
    pub const FAULT_DURING_PUNCH: Kind = Kind("fault_during_punch");
}

#[derive(Debug)]
pub struct FaultDuringPunch;

impl Rule for FaultDuringPunch {
    fn kind(&self) -> Kind {
        Kind::FAULT_DURING_PUNCH
    }
    fn severity(&self) -> Severity {
        Severity::Warning
    }
    fn summary(&self) -> &'static str {
        "a fault on a page of a range being punched by another task (kernels without range locks)"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::Fault])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let Body::Fault { dev, ino, index } = ev.body else {
            return;
        };
        let m = cx.m;
        if m.punches.is_empty() || m.tree_of(dev, ino).is_some() {
            return;
        }
        let Some(p) = m.punches.values().find(|p| {
            p.tid != ev.tid && p.dev == dev && p.ino == ino && (p.first..=p.last).contains(&index)
        }) else {
            return;
        };
        let ptid = p.tid;
        let op = p.op.as_str();
        let message = format!(
            "{} faulted page {index} of {dev}:{ino} while {} was in a {op} of pages [{}, {}]",
            describe::task(m, ev.tid),
            describe::task(m, ptid),
            p.first,
            p.last
        );
        // The warning rests on the file having no tree: a lock tree not
        // linked to any file may be this file's (its `tree` event unseen),
        // and after a gap the link itself may be what was lost.
        let since = if m.trees.keys().any(|t| !m.tree_files.contains_key(t)) {
            Since::Never
        } else if m.last_gap.is_some() {
            Since::AnyGap
        } else {
            Since::Event(p.idx)
        };
        cx.report(Draft {
            tids: vec![ev.tid, ptid],
            tree: m.tree_of(dev, ino),
            range: Some((p.first, p.last)),
            evidence: vec![p.idx, idx],
            dedup: Some((p.idx, ev.tid as u64)),
            ..Draft::new(since, ev.ts, message)
        });
    }
}
