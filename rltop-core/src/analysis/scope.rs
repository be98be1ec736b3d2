//! Which tasks a recording is about (issue 16).
//!
//! `record -- CMD` records the whole machine, because the holder of a lock
//! the command waits for may be anyone, and writes the command's process
//! tree as `fork` events. The views then show, by default, only:
//! - the command's tasks (the children of `fork` events);
//! - the tasks that owned what those tasks waited for (held it, or were
//!   queued ahead), at any time of the wait: [`waitfor::blockers`];
//! - the kernel threads that worked on the files the command worked on.
//!
//! [`ScopeFinder`] is an analysis run over the trace once, first; its
//! [`Scope`] then drives a [`ScopeFilter`] in the pass that builds the view.
//! A trace without `fork` events (no command, or written before them) has
//! no scope: every task is shown.
//!
//! Tids are reused. A task is keyed by its tid and its *life*: a tid's life
//! changes when a `task` event names it after its `exit`, or when a `fork`
//! creates it again. Both passes see the same events in the same order, so
//! they number lives alike ([`Lives`]).

use crate::events::{Body, Dev, Event};
use crate::model::{FastMap, FastSet, Model};

use super::engine::Analysis;
use super::waitfor;

/// What rows of tasks outside the scope are marked with, under `--all-tasks`.
pub const OUTSIDE: &str = "[outside]";

/// A task over one life of its tid: `(tid, life)`.
pub type Key = (u32, u32);

/// Numbers the lives of tids, from `task`, `exit` and `fork` events.
#[derive(Clone, Debug, Default)]
pub struct Lives {
    /// Per tid: its life, and whether it has exited in it.
    tids: FastMap<u32, (u32, bool)>,
}

impl Lives {
    /// Takes event `ev` into account (before anything asks about it).
    pub fn observe(&mut self, ev: &Event) {
        match ev.body {
            Body::Task { .. } => {
                let l = self.tids.entry(ev.tid).or_default();
                if l.1 {
                    *l = (l.0 + 1, false);
                }
            }
            Body::Exit => self.tids.entry(ev.tid).or_default().1 = true,
            Body::Fork { child, .. } => match self.tids.get_mut(&child) {
                Some(l) => *l = (l.0 + 1, false),
                None => {
                    self.tids.insert(child, (0, false));
                }
            },
            _ => {}
        }
    }

    /// The task `tid` is now.
    pub fn key(&self, tid: u32) -> Key {
        (tid, self.tids.get(&tid).map_or(0, |l| l.0))
    }
}

/// Why a task is in a [`Scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// One of the command's tasks.
    Command,
    /// Not the command's, but it owned what a task of the command waited for.
    Holder,
    /// A kernel thread that worked on a file the command worked on.
    KernelThread,
}

/// The tasks a recording of a command is about. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    members: FastMap<Key, Why>,
    /// The tids of `members`, in any of their lives.
    tids: FastSet<u32>,
    /// The command's first process: its pid and name.
    root: Option<(u32, Option<String>)>,
    /// Tasks with events that are not members.
    outside: usize,
}

impl Scope {
    /// Whether the trace has a command's process tree at all. Without one,
    /// nothing is left out.
    pub fn has_command(&self) -> bool {
        self.root.is_some()
    }

    /// The command's first process (`pid`, name).
    pub fn root(&self) -> Option<(u32, Option<&str>)> {
        self.root.as_ref().map(|(p, c)| (*p, c.as_deref()))
    }

    /// How many tasks are in the scope for `why`.
    pub fn count(&self, why: Why) -> usize {
        self.members.values().filter(|&&w| w == why).count()
    }

    /// How many tasks with events are outside the scope.
    pub fn outside(&self) -> usize {
        self.outside
    }

    /// Whether `tid`, in any of its lives, is in the scope (for what names
    /// tasks by tid alone: a finding).
    pub fn has_tid(&self, tid: u32) -> bool {
        self.tids.contains(&tid)
    }

    /// Why task `key` is in the scope, if it is.
    pub fn why(&self, key: Key) -> Option<Why> {
        self.members.get(&key).copied()
    }
}

/// Builds the [`Scope`] of a trace, in a pass of its own. See the module docs.
#[derive(Debug, Default)]
pub struct ScopeFinder {
    lives: Lives,
    members: FastMap<Key, Why>,
    root: Option<Key>,
    root_comm: Option<String>,
    /// Files the command worked on.
    cmd_files: FastSet<(Dev, u64)>,
    /// Per file, the kernel threads that worked on it.
    kthread_files: FastMap<(Dev, u64), FastSet<Key>>,
    /// The command's tasks waiting now (their tids).
    waiting: FastSet<u32>,
    /// Every task with an event.
    seen: FastSet<Key>,
}

impl ScopeFinder {
    pub fn new() -> ScopeFinder {
        ScopeFinder::default()
    }

    fn is_command(&self, key: Key) -> bool {
        self.members.get(&key) == Some(&Why::Command)
    }

    /// Everything command task `tid` waits on now belongs in the scope.
    fn add_blockers(&mut self, m: &Model, tid: u32) {
        for b in waitfor::blockers(m, tid) {
            let key = self.lives.key(b.tid);
            self.members.entry(key).or_insert(Why::Holder);
        }
    }

    /// The scope, once the whole trace went through.
    pub fn finish(mut self) -> Scope {
        for f in &self.cmd_files {
            for &k in self.kthread_files.get(f).into_iter().flatten() {
                self.members.entry(k).or_insert(Why::KernelThread);
            }
        }
        let outside = self
            .seen
            .iter()
            .filter(|k| !self.members.contains_key(k))
            .count();
        Scope {
            root: self.root.map(|(tid, _)| (tid, self.root_comm.take())),
            tids: self.members.keys().map(|k| k.0).collect(),
            members: self.members,
            outside,
        }
    }
}

/// Whether event `ev` acquires something (a new owner a waiter may wait on).
fn acquires(body: &Body) -> bool {
    matches!(
        body,
        Body::RlAcquired { .. }
            | Body::RlRequest { .. }
            | Body::MmapLockAcquired { success: true, .. }
            | Body::MmapLockRequest { .. }
            | Body::FileLockAcquired { success: true, .. }
            | Body::FileLockRequest { .. }
            | Body::PunchBegin { .. }
            | Body::TruncateBegin { .. }
            | Body::DioBegin { .. }
    )
}

impl Analysis for ScopeFinder {
    fn before(&mut self, _m: &Model, _idx: u64, ev: &Event) {
        self.lives.observe(ev);
        if let Body::Fork { child, .. } = ev.body {
            let parent = self.lives.key(ev.tid);
            let child = self.lives.key(child);
            // The first fork by a task outside the tree is rltop forking
            // the command.
            if self.root.is_none() && !self.is_command(parent) {
                self.root = Some(child);
            }
            self.members.insert(child, Why::Command);
        }
    }

    fn after(&mut self, m: &Model, _idx: u64, ev: &Event) {
        let key = self.lives.key(ev.tid);
        // Names, markers and losses are not a task's work.
        if !matches!(
            ev.body,
            Body::Tree { .. } | Body::File { .. } | Body::Marker { .. } | Body::Lost { .. }
        ) {
            self.seen.insert(key);
        }
        let command = self.is_command(key);
        if let Body::Task { comm, .. } = &ev.body
            && self.root == Some(key)
            && self.root_comm.is_none()
        {
            self.root_comm = Some(comm.clone());
        }
        let file = ev.body.file().or_else(|| {
            let (tree, _) = ev.body.range_lock()?;
            m.file_of(tree)
        });
        if let Some(f) = file {
            if command {
                self.cmd_files.insert(f);
            } else if m.tasks.get(&ev.tid).is_some_and(|t| t.kthread) {
                self.kthread_files.entry(f).or_default().insert(key);
            }
        }
        if command {
            if m.tasks.get(&ev.tid).is_some_and(|t| t.waiting.is_some()) {
                self.waiting.insert(ev.tid);
                self.add_blockers(m, ev.tid);
            } else {
                self.waiting.remove(&ev.tid);
            }
        } else if !self.waiting.is_empty() && acquires(&ev.body) {
            // The lock may pass to someone who was not in the way when the
            // wait began (a reader stealing an rwsem, a new queue head).
            let waiting: Vec<u32> = self.waiting.iter().copied().collect();
            for tid in waiting {
                self.add_blockers(m, tid);
            }
        }
        if matches!(ev.body, Body::Exit) {
            self.waiting.remove(&ev.tid);
        }
    }
}

/// A [`Scope`] applied along a second pass over the same trace: is the task
/// of this event in it? Feed it every event, before asking about it.
#[derive(Clone, Debug)]
pub struct ScopeFilter {
    scope: Scope,
    lives: Lives,
}

impl ScopeFilter {
    pub fn new(scope: Scope) -> ScopeFilter {
        ScopeFilter {
            scope,
            lives: Lives::default(),
        }
    }

    pub fn observe(&mut self, ev: &Event) {
        self.lives.observe(ev);
    }

    /// Why `tid` (as it is now) is in the scope; `None`: it is not.
    pub fn why(&self, tid: u32) -> Option<Why> {
        self.scope.why(self.lives.key(tid))
    }

    /// Whether `tid` (as it is now) is shown. Always, without a command.
    pub fn contains(&self, tid: u32) -> bool {
        !self.scope.has_command() || self.why(tid).is_some()
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::engine::Engine;
    use crate::events::Mode;
    use crate::testing::{acq, ev, rel, req};

    const RLTOP: u32 = 100;
    const CMD: u32 = 200;
    const CHILD: u32 = 201;
    const NEIGHBOUR: u32 = 300;
    const HOLDER: u32 = 400;
    const KWORKER: u32 = 500;
    const OTHER_KWORKER: u32 = 501;

    fn task(ts: u64, tid: u32, comm: &str, kthread: bool) -> Event {
        ev(
            ts,
            tid,
            Body::Task {
                comm: comm.into(),
                kthread,
            },
        )
    }

    fn fork(ts: u64, parent: u32, child: u32) -> Event {
        ev(
            ts,
            parent,
            Body::Fork {
                child,
                child_pid: child,
            },
        )
    }

    const DEV: Dev = Dev { major: 7, minor: 0 };

    fn fault(ts: u64, tid: u32, ino: u64) -> Event {
        ev(
            ts,
            tid,
            Body::Fault {
                dev: DEV,
                ino,
                index: 0,
            },
        )
    }

    fn scope_of(events: &[Event]) -> Scope {
        let mut e = Engine::new(Model::new(None), ScopeFinder::new());
        for (i, x) in events.iter().enumerate() {
            e.event(i as u64, x);
        }
        e.into_parts().1.finish()
    }

    /// A command whose child waits for a range lock a neighbour holds, a
    /// busy neighbour elsewhere, and kworkers on the command's file and
    /// on another file.
    fn trace() -> Vec<Event> {
        vec![
            ev(
                0,
                0,
                Body::Tree {
                    tree: 1,
                    dev: DEV,
                    ino: 10,
                },
            ),
            task(1, NEIGHBOUR, "cc1", false),
            fault(2, NEIGHBOUR, 99),
            task(3, HOLDER, "holder", false),
            req(4, HOLDER, 0xa, 0, 10, Mode::Excl),
            acq(5, HOLDER, 0xa),
            fork(6, RLTOP, CMD),
            task(7, CMD, "fsx", false),
            fork(8, CMD, CHILD),
            task(9, CHILD, "fsx", false),
            req(10, CHILD, 0xb, 0, 10, Mode::Excl),
            task(11, KWORKER, "kworker/0:1", true),
            fault(12, KWORKER, 10),
            task(13, OTHER_KWORKER, "kworker/1:1", true),
            fault(14, OTHER_KWORKER, 99),
            rel(15, HOLDER, 0xa),
            acq(16, CHILD, 0xb),
            fault(17, NEIGHBOUR, 99),
        ]
    }

    #[test]
    fn the_command_its_holders_and_kernel_threads_on_its_files() {
        let s = scope_of(&trace());
        assert!(s.has_command());
        assert_eq!(s.root(), Some((CMD, Some("fsx"))));
        assert_eq!(s.why((CMD, 0)), Some(Why::Command));
        assert_eq!(s.why((CHILD, 0)), Some(Why::Command));
        assert_eq!(s.why((HOLDER, 0)), Some(Why::Holder));
        assert_eq!(s.why((KWORKER, 0)), Some(Why::KernelThread));
        assert_eq!(s.why((NEIGHBOUR, 0)), None);
        assert_eq!(s.why((OTHER_KWORKER, 0)), None);
        // Not rltop either: its only event is the fork.
        assert_eq!(s.why((RLTOP, 0)), None);
        assert_eq!(s.outside(), 3, "neighbour, other kworker, rltop");
        assert_eq!(
            (s.count(Why::Command), s.count(Why::Holder)),
            (2, 1),
            "{s:?}"
        );
    }

    #[test]
    fn a_neighbour_that_holds_nothing_the_command_waits_for_is_left_out() {
        // The same, but the holder's lock does not overlap: no wait.
        let mut t = trace();
        for e in &mut t {
            if let Body::RlRequest {
                lock: 0xa,
                start,
                last,
                ..
            } = &mut e.body
            {
                (*start, *last) = (100, 110);
            }
        }
        let s = scope_of(&t);
        assert_eq!(s.why((HOLDER, 0)), None);
    }

    #[test]
    fn without_forks_there_is_no_scope_and_everything_is_shown() {
        let t: Vec<Event> = trace()
            .into_iter()
            .filter(|e| !matches!(e.body, Body::Fork { .. }))
            .collect();
        let s = scope_of(&t);
        assert!(!s.has_command());
        let f = ScopeFilter::new(s);
        assert!(f.contains(NEIGHBOUR));
    }

    #[test]
    fn a_reused_tid_is_another_task() {
        // The command's child exits; later a neighbour gets its tid.
        let t = vec![
            fork(1, RLTOP, CMD),
            task(2, CMD, "sh", false),
            fork(3, CMD, CHILD),
            task(4, CHILD, "sh", false),
            ev(5, CHILD, Body::Exit),
            fault(6, CHILD, 3),
            task(7, CHILD, "cc1", false),
            fault(8, CHILD, 4),
        ];
        let s = scope_of(&t);
        let mut f = ScopeFilter::new(s);
        let mut shown = Vec::new();
        for e in &t {
            f.observe(e);
            shown.push(f.contains(e.tid));
        }
        // The teardown fault after exit is still the child's; the new
        // task's events are not.
        assert_eq!(
            shown,
            [false, true, true, true, true, true, false, false],
            "{:?}",
            f.scope()
        );
    }
}
