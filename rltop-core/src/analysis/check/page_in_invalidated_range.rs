//! `page_in_invalidated_range`: another task added a page to the page
//! cache inside a range whose punch, zero, collapse or truncate had begun
//! invalidating it and had not yet freed its blocks — the race Kara's
//! range lock was for, and what mainline's `invalidate_lock` forbids.
//!
//! The window is the kernel's own: `invalidate_begin`/`invalidate_end` are
//! emitted only where the probes proved that the operation's task holds
//! the mapping's `invalidate_lock` for writing (`docs/kernel-fs-ops.md`).
//! Every path that adds a page takes that lock shared, and a `page_add`
//! fires inside its section: on a correct kernel no other task's page can
//! be added in between. Only a `page_add` proves it (a `fault` fires at
//! `filemap_fault` entry, then waits for the lock). A page added by the
//! operation's own task (the partial pages zeroed at a range's edges) is
//! allowed. Equal timestamps have no order: uncertain. A gap after the
//! window opened may have hidden its end: uncertain.

use super::page_in_locked_range::added_pages;
use super::{Cx, Draft, Kind, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Event, Tag};

impl Kind {
    pub const PAGE_IN_INVALIDATED_RANGE: Kind = Kind("page_in_invalidated_range");
}

#[derive(Debug)]
pub struct PageInInvalidatedRange;

impl Rule for PageInInvalidatedRange {
    fn kind(&self) -> Kind {
        Kind::PAGE_IN_INVALIDATED_RANGE
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "another task added a page inside a range whose punch, zero, collapse or truncate had begun invalidating the page cache and not yet freed its blocks"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::PageAdd])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let m = cx.m;
        if m.windows.is_empty() {
            return;
        }
        let Some((dev, ino, first, last)) = added_pages(ev) else {
            return;
        };
        let Some(w) = m.windows.values().find(|w| {
            w.tid != ev.tid && w.dev == dev && w.ino == ino && w.first <= last && first <= w.last
        }) else {
            return;
        };
        let what = m
            .punches
            .values()
            .find(|p| p.tid == w.tid && p.dev == dev && p.ino == ino);
        let op = what.map_or("operation", |p| p.op.as_str());
        let message = format!(
            "{} added page {first} of {} inside {}'s {op} of pages {}, which holds its invalidate_lock for writing and is between invalidating those pages and freeing their blocks",
            describe::task(m, ev.tid),
            describe::file(m, dev, ino),
            describe::task(m, w.tid),
            describe::pages(w.first, w.last)
        );
        let mut evidence = vec![w.idx, idx];
        if let Some(p) = what {
            evidence.push(p.idx);
        }
        // Events with equal timestamps have no order.
        let since = if ev.ts > w.ts {
            Since::Event(w.idx)
        } else {
            Since::Never
        };
        cx.report(Draft {
            tids: vec![ev.tid, w.tid],
            range: Some((w.first, w.last)),
            evidence,
            dedup: Some((w.idx, ev.tid as u64)),
            ..Draft::new(since, ev.ts, message)
        });
    }
}
