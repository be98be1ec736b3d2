//! `deadlock`: a cycle in the wait-for graph (range locks and mmap_lock).
//!
//! Searched when a new wait edge appears (after a request the model says
//! must wait). Withdrawn if a member of the cycle later gets what it waited
//! for: the model's edges were too pessimistic (e.g. an rwsem reader
//! stealing mmap_lock past a waiting writer). A member that gives its wait
//! up instead (`rl_cancel`: a signal or a timeout in an interruptible or
//! killable lock call, or Lustre's release of its own waiting request
//! inside that call) broke a real deadlock: the finding stays, saying it
//! was broken and how long it stood.

use super::{Cx, Draft, FindingId, Kind, Link, On, Rule, Severity, Since};
use crate::analysis::describe;
use crate::analysis::waitfor::{self, Owned};
use crate::events::{Body, Event, Tag};
use crate::model::{FastSet, Model, Wait};

impl Kind {
    pub const DEADLOCK: Kind = Kind("deadlock");
}

#[derive(Debug, Default)]
pub struct Deadlock {
    /// Cycles already reported, as sorted tids.
    cycles: FastSet<Vec<u32>>,
    /// Deadlock findings, when they formed, and their members' waits,
    /// until one of them moves.
    live: Vec<LiveCycle>,
}

/// A reported cycle: its finding, when it formed, and each member's wait.
type LiveCycle = (FindingId, u64, Vec<(u32, Wait)>);

/// What a task waits for, in words, with the event that asked for it and
/// where (`(tree, range)`).
type WaitDesc = (String, u64, Option<(u64, (u64, u64))>);

fn wait_of(m: &Model, tid: u32) -> Option<WaitDesc> {
    match m.tasks.get(&tid)?.waiting? {
        Wait::Range { tree, lock } => {
            let l = m.lock(tree, lock)?;
            Some((
                describe::range_lock(m, tree, lock, l),
                l.req_idx,
                Some((tree, (l.start, l.last))),
            ))
        }
        Wait::Mmap { mm, write, idx } => Some((describe::mmap_lock(m, mm, write), idx, None)),
        Wait::File { lock, write, idx } => Some((describe::file_lock(m, lock, write), idx, None)),
    }
}

/// What a blocker owns, in words.
fn owned(m: &Model, o: Owned) -> String {
    match o {
        Owned::Range { tree, lock } => match m.lock(tree, lock) {
            Some(l) => describe::range_lock(m, tree, lock, l),
            None => "?".into(),
        },
        Owned::Mmap {
            mm,
            write,
            held: true,
        } => describe::mmap_lock(m, mm, write),
        // Queued ahead, not held: reports have always shown it unnamed.
        Owned::Mmap { held: false, .. } => "?".into(),
        Owned::File {
            lock,
            write,
            held,
            seen,
        } => {
            let queued = if held { "" } else { " (queued)" };
            format!(
                "{}{queued}{}",
                describe::file_lock(m, lock, write),
                describe::seen(seen)
            )
        }
    }
}

impl Deadlock {
    fn search(&mut self, cx: &mut Cx<'_>, tid: u32, ts: u64) {
        let m = cx.m;
        let Some(cycle) = waitfor::find_cycle(tid, |t| waitfor::edges(m, t)) else {
            return;
        };
        let mut key: Vec<u32> = cycle.iter().map(|s| s.tid).collect();
        key.sort_unstable();
        key.dedup();
        if !self.cycles.insert(key) {
            return;
        }
        let n = cycle.len();
        let mut evidence = Vec::new();
        let mut links = Vec::new();
        let mut where_ = None;
        // An edge resting on a hold the events do not prove (inferred, or
        // a request whose acquisition is not traced) makes it uncertain.
        let mut proven = true;
        for (i, s) in cycle.iter().enumerate() {
            evidence.push(s.evidence);
            let wants = match wait_of(m, s.tid) {
                Some((w, req, loc)) => {
                    evidence.push(req);
                    if where_.is_none() {
                        where_ = loc;
                    }
                    w
                }
                None => "?".into(),
            };
            // Step i waits for what step i+1 owns: that is what step i+1
            // holds. The blocker behind the previous step's edge says what.
            let prev = &cycle[(i + n - 1) % n];
            let blocker = waitfor::blockers(m, prev.tid)
                .into_iter()
                .find(|b| b.tid == s.tid && b.evidence == prev.evidence);
            proven &= blocker.is_some_and(|b| b.owns.proven());
            let holds = blocker.map_or_else(|| "?".into(), |b| owned(m, b.owns));
            links.push(Link {
                tid: s.tid,
                task: describe::task(m, s.tid),
                holds,
                wants,
                ..Link::default()
            });
        }
        let chain: Vec<String> = links
            .iter()
            .map(|l| format!("{} waits for {}", l.task, l.wants))
            .collect();
        let message = format!("wait-for cycle: {}", chain.join(", "));
        let since = evidence.iter().copied().min().unwrap_or(0);
        let members: Vec<(u32, Wait)> = cycle
            .iter()
            .filter_map(|s| Some((s.tid, m.tasks.get(&s.tid)?.waiting?)))
            .collect();
        let at = cx.report(Draft {
            tids: cycle.iter().map(|s| s.tid).collect(),
            tree: where_.map(|w| w.0),
            range: where_.map(|w| w.1),
            evidence,
            links,
            ..Draft::new(
                if proven {
                    Since::Event(since)
                } else {
                    Since::Never
                },
                ts,
                message,
            )
        });
        if let Some(i) = at {
            self.live.push((i, ts, members));
        }
    }

    /// A member of a reported cycle got what it waited for: the cycle was
    /// not a deadlock. Withdraw the finding.
    fn progress(&mut self, cx: &mut Cx<'_>, tid: u32) {
        let Some(w) = cx.m.tasks.get(&tid).and_then(|t| t.waiting) else {
            return;
        };
        let cycles = &mut self.cycles;
        self.live.retain(|(i, _, members)| {
            if members.contains(&(tid, w)) {
                cx.retract(*i);
                // The same tasks may still deadlock for real later.
                let mut key: Vec<u32> = members.iter().map(|m| m.0).collect();
                key.sort_unstable();
                key.dedup();
                cycles.remove(&key);
                return false;
            }
            true
        });
    }
}

impl Deadlock {
    /// A member of a reported cycle gave up its wait (event `idx`): the
    /// deadlock was real and a signal or timeout broke it.
    fn broken(&mut self, cx: &mut Cx<'_>, idx: u64, ts: u64, tid: u32) {
        let Some(w) = cx.m.tasks.get(&tid).and_then(|t| t.waiting) else {
            return;
        };
        let task = describe::task(cx.m, tid);
        self.live.retain(|(i, since, members)| {
            if members.contains(&(tid, w)) {
                let how = format!("{task} gave up its wait (a signal or a timeout)");
                cx.broken(*i, idx, ts.saturating_sub(*since), &how);
                return false;
            }
            true
        });
    }
}

impl Rule for Deadlock {
    fn kind(&self) -> Kind {
        Kind::DEADLOCK
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a cycle in the wait-for graph (range locks, mmap_lock, i_rwsem and invalidate_lock)"
    }
    fn before_on(&self) -> On {
        On::of(&[
            Tag::RlAcquired,
            Tag::RlCancel,
            Tag::RlRelease,
            Tag::MmapLockAcquired,
            Tag::FileLockAcquired,
            Tag::ContentionEnd,
        ])
    }
    fn after_on(&self) -> On {
        On::of(&[
            Tag::RlRequest,
            Tag::MmapLockRequest,
            Tag::FileLockRequest,
            Tag::ContentionBegin,
        ])
    }

    fn before(&mut self, cx: &mut Cx<'_>, idx: u64, ev: &Event) {
        if self.live.is_empty() {
            return;
        }
        match ev.body {
            Body::RlCancel { .. } => {
                if let Some(owner) = cx.subject.map(|(_, l)| l.tid) {
                    self.broken(cx, idx, ev.ts, owner);
                }
            }
            // Its own waiting request released inside its lock call: the
            // call's cancel path (Lustre's `range_lock()` on a signal).
            Body::RlRelease { .. } => {
                if let Some(l) = cx.subject.map(|(_, l)| l)
                    && !l.is_held()
                    && l.tid == ev.tid
                {
                    self.broken(cx, idx, ev.ts, l.tid);
                }
            }
            Body::RlAcquired { .. } => {
                if let Some(owner) = cx.subject.map(|(_, l)| l.tid) {
                    self.progress(cx, owner);
                }
            }
            Body::MmapLockAcquired { success: true, .. }
            | Body::FileLockAcquired { success: true, .. }
            | Body::ContentionEnd { .. } => self.progress(cx, ev.tid),
            _ => {}
        }
    }

    fn after(&mut self, cx: &mut Cx<'_>, _idx: u64, ev: &Event) {
        let m = cx.m;
        let waits = match ev.body {
            // Just requested: it waits iff the reference did not grant it
            // on arrival.
            Body::RlRequest { .. } => cx.subject.is_some_and(|(_, l)| l.contended),
            Body::MmapLockRequest { mm, write } => m
                .mms
                .get(&mm)
                .is_some_and(|s| waitfor::mmap_blockers(s, ev.tid, write).next().is_some()),
            // A wait on a page-cache lock began (a request, or contention).
            Body::FileLockRequest { .. } | Body::ContentionBegin { .. } => {
                matches!(
                    m.tasks.get(&ev.tid).and_then(|t| t.waiting),
                    Some(Wait::File { .. })
                ) && !waitfor::blockers(m, ev.tid).is_empty()
            }
            _ => false,
        };
        if waits {
            self.search(cx, ev.tid, ev.ts);
        }
    }
}
