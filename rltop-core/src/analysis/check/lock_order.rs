//! The documented order of mainline's page-cache locks, checked like
//! lockdep (an `ordering_inversion`):
//!
//! - `i_rwsem` -> `invalidate_lock` (include/linux/fs.h, mm/filemap.c): a
//!   task holding a file's `invalidate_lock` must not ask for an `i_rwsem`
//!   of the same filesystem type (lockdep's classes are per type);
//! - `mmap_lock` -> `invalidate_lock` (`filemap_fault`): a task holding an
//!   `invalidate_lock` must not ask for `mmap_lock`, nor take a page fault
//!   with page faults enabled — with per-VMA locks (6.4+) a fault asks for
//!   no `mmap_lock`, but it takes the VMA's lock and then the faulting
//!   file's `invalidate_lock`;
//! - the same for a range lock (Kara 2013: `mmap_lock` ranks above it) and
//!   a page fault, which per-VMA locks hide from the `mmap_lock` rule.
//!
//! A hold counts when the events prove it: acquired (fentry, kprobe), or
//! requested (`xfs_ilock`, lockdep) before the task went on to ask for
//! something else. Holds inferred from operations never count. Trylocks
//! cannot deadlock and are not checked.

use super::{Cx, Draft, Kind, Link, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::events::{Body, Event, FileLockClass, Tag};
use crate::model::{FileLock, FlUse, LockState, Model, Seen};

#[derive(Debug)]
pub struct LockOrder;

/// An `invalidate_lock` `tid` is proven to hold, with the hold.
fn held_invalidate_lock(m: &Model, tid: u32) -> Option<(FileLock, FlUse)> {
    m.flocks.iter().find_map(|(l, s)| {
        let h = s
            .holders
            .iter()
            .find(|h| h.tid == tid && h.seen != Seen::Inferred)?;
        (l.class == FileLockClass::InvalidateLock).then_some((*l, *h))
    })
}

const INVALIDATE_BELOW_I_RWSEM: &str = "i_rwsem ranks above invalidate_lock (include/linux/fs.h:\n\
     a file's operations take i_rwsem, then its mapping's invalidate_lock)";
const INVALIDATE_BELOW_MMAP: &str = "mmap_lock ranks above invalidate_lock (mm/filemap.c:\n\
     page faults take mmap_lock or the VMA's lock, then the invalidate_lock\n\
     of the faulting file)";
const RANGE_BELOW_FAULT: &str = "mmap_lock ranks above the range lock (page faults take\n\
     mmap_lock or the VMA's lock, then the range lock of the faulting page)";

impl Rule for LockOrder {
    fn kind(&self) -> Kind {
        Kind::ORDERING_INVERSION
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a task holding invalidate_lock asked for i_rwsem or mmap_lock, or a task holding invalidate_lock or a range lock took a page fault"
    }
    fn before_on(&self) -> On {
        On::of(&[Tag::FileLockRequest, Tag::MmapLockRequest, Tag::PageFault])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        let m = cx.m;
        let tid = ev.tid;
        let (wants, rule, other_fs) = match &ev.body {
            Body::FileLockRequest {
                dev,
                ino,
                class: FileLockClass::IRwsem,
                write,
                trylock,
                ..
            } if *trylock != Some(true) => (
                describe::file_lock(
                    m,
                    FileLock {
                        dev: *dev,
                        ino: *ino,
                        class: FileLockClass::IRwsem,
                    },
                    *write,
                ),
                INVALIDATE_BELOW_I_RWSEM,
                Some(m.fs_of(*dev, *ino)),
            ),
            Body::MmapLockRequest { mm, write } => (
                describe::mmap_lock(m, *mm, *write),
                INVALIDATE_BELOW_MMAP,
                None,
            ),
            Body::PageFault { addr, .. } => {
                if let Some(d) = self.fault_under_range_lock(m, idx, ev, *addr) {
                    cx.report(d);
                    return;
                }
                (
                    format!("a page fault at {addr:#x}"),
                    INVALIDATE_BELOW_MMAP,
                    None,
                )
            }
            _ => return,
        };
        let Some((held, h)) = held_invalidate_lock(m, tid) else {
            return;
        };
        // lockdep's lock classes are per filesystem type.
        if let Some(fs) = other_fs
            && fs != m.fs_of(held.dev, held.ino)
        {
            return;
        }
        let who = describe::task(m, tid);
        let holds = describe::file_lock(m, held, h.write);
        let verb = if matches!(ev.body, Body::PageFault { .. }) {
            "took"
        } else {
            "asked for"
        };
        let mut message = format!(
            "{who} {verb} {wants} while holding {holds}: {}",
            rule.split(" (").next().unwrap_or(rule)
        );
        let holds_at = m.fl_stacks.get(&(held, tid)).cloned();
        let wants_at = match &ev.body {
            Body::PageFault { stack, .. } | Body::FileLockRequest { stack, .. } => stack.clone(),
            _ => None,
        };
        if let Some(st) = &holds_at {
            message.push_str(&format!(" (held lock taken at: {st})"));
        }
        if let (Body::PageFault { .. }, Some(st)) = (&ev.body, &wants_at) {
            message.push_str(&format!(" (fault stack: {st})"));
        }
        cx.report(Draft {
            tids: vec![tid],
            evidence: vec![h.idx, idx],
            links: vec![Link {
                tid,
                task: who,
                holds,
                wants,
                holds_at,
                wants_at,
            }],
            rule: Some(rule),
            dedup: Some((
                held.ino ^ ((held.class as u64) << 63),
                // A fault and the mmap_lock it then asks for are one problem.
                match ev.body.tag() {
                    Tag::FileLockRequest => 1,
                    _ => 2,
                },
            )),
            ..Draft::new(Since::Event(h.idx), ev.ts, message)
        });
    }
}

impl LockOrder {
    /// A page fault while the task holds a range lock it acquired (not one
    /// its own DIO in flight owns: completion releases those).
    fn fault_under_range_lock(&self, m: &Model, idx: u64, ev: &Event, addr: u64) -> Option<Draft> {
        let task = m.tasks.get(&ev.tid)?;
        let (tree, lock, l, acq) = task.held.iter().find_map(|&(tree, lock)| {
            let l = m.lock(tree, lock)?;
            let own_dio = m.dios.values().any(|d| {
                d.tid == ev.tid
                    && d.idx < l.req_idx
                    && m.file_of(tree).is_none_or(|f| f == (d.dev, d.ino))
            });
            match l.state {
                LockState::Held { idx: acq, .. } if !own_dio => Some((tree, lock, l, acq)),
                _ => None,
            }
        })?;
        let who = describe::task(m, ev.tid);
        let holds = describe::range_lock(m, tree, lock, l);
        let wants = format!("a page fault at {addr:#x}");
        let mut message = format!(
            "{who} took {wants} while holding {holds}: mmap_lock ranks above the range lock"
        );
        if let Body::PageFault {
            stack: Some(st), ..
        } = &ev.body
        {
            message.push_str(&format!(" (fault stack: {st})"));
        }
        Some(Draft {
            tids: vec![ev.tid],
            tree: Some(tree),
            range: Some((l.start, l.last)),
            evidence: vec![l.req_idx, acq, idx],
            links: vec![Link {
                tid: ev.tid,
                task: who,
                holds,
                wants,
                wants_at: match &ev.body {
                    Body::PageFault { stack, .. } => stack.clone(),
                    _ => None,
                },
                ..Link::default()
            }],
            rule: Some(RANGE_BELOW_FAULT),
            dedup: Some((tree, lock)),
            ..Draft::new(Since::Event(l.req_idx), ev.ts, message)
        })
    }
}
