//! `ordering_inversion`: a task requested mmap_lock while holding a range
//! lock (mmap_lock ranks above the range lock: Kara 2013).
//!
//! A range lock taken for the task's own DIO in flight belongs to the IO,
//! not the task: Kara's design locks a bio's pages at submit, after
//! get_user_pages, and completion unlocks them, so the submitter may take
//! mmap_lock meanwhile (an async DIO returns to user space and faults).

use super::{Cx, Draft, Kind, Link, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, Tag};
use crate::model::{Lock, LockState, Wait};

impl Kind {
    pub const ORDERING_INVERSION: Kind = Kind("ordering_inversion");
}

#[derive(Debug)]
pub struct OrderingInversion;

impl Rule for OrderingInversion {
    fn kind(&self) -> Kind {
        Kind::ORDERING_INVERSION
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a task requested mmap_lock while holding a range lock (mmap_lock ranks above the range lock)"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::MmapLockRequest, Tag::MmapLockAcquired])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let (mm, write) = match ev.body {
            Body::MmapLockRequest { mm, write } => (mm, write),
            Body::MmapLockAcquired {
                mm,
                write,
                success: true,
            } => {
                // A trylock (no request first) counts as a request too.
                let requested = matches!(
                    cx.m.tasks.get(&ev.tid).and_then(|t| t.waiting),
                    Some(Wait::Mmap { mm: w, .. }) if w == mm
                );
                if requested {
                    return;
                }
                (mm, write)
            }
            _ => return,
        };
        let m = cx.m;
        let Some(task) = m.tasks.get(&ev.tid) else {
            return;
        };
        // A tree not linked to a file (its `tree` event unseen) may be the
        // DIO's file's: then the DIO's pages must cover the lock.
        let io_owned = |tree: u64, l: &Lock| {
            m.dios.values().any(|d| {
                d.tid == ev.tid
                    && d.idx < l.req_idx
                    && match m.file_of(tree) {
                        Some(f) => f == (d.dev, d.ino),
                        None => d.pages.is_some_and(|(a, b)| a <= l.last && l.start <= b),
                    }
            })
        };
        let Some((tree, lock, l, acq)) = task.held.iter().find_map(|&(tree, lock)| {
            let l = m.lock(tree, lock)?;
            match l.state {
                LockState::Held { idx: acq, .. } if !io_owned(tree, l) => {
                    Some((tree, lock, l, acq))
                }
                _ => None,
            }
        }) else {
            return;
        };
        let who = describe::task(m, ev.tid);
        let held = describe::range_lock(m, tree, lock, l);
        let wants = describe::mmap_lock(m, mm, write);
        let message = format!(
            "{who} requested {wants} while holding {held}: mmap_lock ranks above the range lock"
        );
        cx.report(Draft {
            tids: vec![ev.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence: vec![l.req_idx, acq, idx],
            links: vec![Link {
                tid: ev.tid,
                task: who,
                holds: held,
                wants,
                ..Link::default()
            }],
            dedup: Some((tree, mm)),
            ..Draft::new(Since::Event(l.req_idx), ev.ts, message)
        });
    }
}
