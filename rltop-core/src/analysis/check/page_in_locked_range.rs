//! `page_in_locked_range`: a page was added to the page cache at an index
//! inside a range another holder had locked exclusively (the punch hole vs
//! mmap race of Kara 2013).
//!
//! Only a `page_add` proves it: a `fault` fires at filemap_fault entry, and
//! the fault then takes the range lock and waits.

use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Dev, Event, Mode, Tag};
use crate::model::LockState;

impl Kind {
    pub const PAGE_IN_LOCKED_RANGE: Kind = Kind("page_in_locked_range");
}

#[derive(Debug)]
pub struct PageInLockedRange;

/// The pages a `page_add` put in the cache: `(dev, ino, first, last)`. A
/// folio of unknown order (a kernel without the field) is only known to
/// hold its first page.
pub(super) fn added_pages(ev: &Event) -> Option<(Dev, u64, u64, u64)> {
    let Body::PageAdd {
        dev,
        ino,
        index,
        order,
    } = ev.body
    else {
        return None;
    };
    let n = 1u64.checked_shl(order.unwrap_or(0)).unwrap_or(u64::MAX);
    Some((dev, ino, index, index.saturating_add(n - 1)))
}

impl Rule for PageInLockedRange {
    fn kind(&self) -> Kind {
        Kind::PAGE_IN_LOCKED_RANGE
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a page was added to the page cache inside a range another holder had locked exclusively"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::PageAdd])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let Some((dev, ino, first, last)) = added_pages(ev) else {
            return;
        };
        let m = cx.m;
        let Some(tree) = m.tree_of(dev, ino) else {
            return;
        };
        let Some(t) = m.trees.get(&tree) else {
            return;
        };
        if t.locks.is_empty() {
            return;
        }
        // Fast path: the adding task holds the range itself (Kara's
        // design: lock the index, add the page, unlock). Another holder
        // overlapping it would be a conflicting_grant, reported already.
        if let Some(task) = m.tasks.get(&ev.tid)
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
        let probe = m.ref_mode(Mode::Read);
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
        let message = format!(
            "{} added page {first} of {dev}:{ino} inside {} held by {}",
            describe::task(m, ev.tid),
            describe::range_lock(m, tree, lock, l),
            describe::task(m, l.tid)
        );
        cx.report(Draft {
            tids: vec![ev.tid, l.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence: vec![l.req_idx, acq, idx],
            dedup: Some((tree, lock)),
            ..Draft::new(Since::Event(acq), ev.ts, message)
        });
    }
}
