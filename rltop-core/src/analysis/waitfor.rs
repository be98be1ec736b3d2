//! The wait-for graph: task -> the tasks owning what blocks it.
//!
//! The graph is never materialised: edges are computed on demand from the
//! model (reference blockers of a range-lock waiter, conflicting holders of
//! an mmap_lock), and only when a new wait edge appears.

use crate::model::{FastMap, FileLock, LockState, Mm, MmapUse, Model, Op, Seen, Wait, flock};

/// Most tasks a cycle search visits; wait chains longer than this are not
/// followed (the search is bounded, so a pathological trace stays fast).
pub const MAX_VISIT: usize = 4096;

/// One step of a cycle: `tid` waits for something owned by the next step's
/// task; `evidence` is the event that made the owner own it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub tid: u32,
    pub evidence: u64,
}

/// What an mmap_lock waiter `tid` waits for: the conflicting holders
/// (`true`: held), and (rwsem queueing: no lock stealing past a waiting
/// writer) the earlier waiters it queues behind (`false`): writers for a
/// reader, all for a writer.
pub fn mmap_blocking(m: &Mm, tid: u32, write: bool) -> impl Iterator<Item = (&MmapUse, bool)> + '_ {
    let holders = m
        .holders
        .iter()
        .filter(move |h| (write || h.write) && h.tid != tid)
        .map(|h| (h, true));
    let pos = m
        .waiters
        .iter()
        .position(|w| w.tid == tid)
        .unwrap_or(m.waiters.len());
    let earlier = m.waiters[..pos]
        .iter()
        .filter(move |w| write || w.write)
        .map(|w| (w, false));
    holders.chain(earlier)
}

/// [`mmap_blocking`] as `(owner, evidence)` pairs.
pub fn mmap_blockers(m: &Mm, tid: u32, write: bool) -> impl Iterator<Item = (u32, u64)> + '_ {
    mmap_blocking(m, tid, write).map(|(u, _)| (u.tid, u.idx))
}

/// What a blocker owns that its waiter waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owned {
    /// Range lock `lock` of `tree`, held or queued ahead.
    Range { tree: u64, lock: u64 },
    /// The mmap_lock of `mm`, held (`held`) or queued ahead, for `write`.
    Mmap { mm: u64, write: bool, held: bool },
    /// A file's page-cache lock, held (`held`) or queued ahead, for
    /// `write`, known as `seen` says.
    File {
        lock: FileLock,
        write: bool,
        held: bool,
        seen: Seen,
    },
}

impl Owned {
    /// Whether the events prove this edge: not a hold inferred from an
    /// operation or taken from a request whose acquisition was not seen,
    /// and not an rwsem's queue order. That order is read from the
    /// requests' tracepoints, which fire before the task joins the queue
    /// (a preemption in between swaps two), and rwsem readers may steal
    /// the lock past a waiting writer.
    pub fn proven(self) -> bool {
        match self {
            Owned::Range { .. } => true,
            Owned::Mmap { held, .. } => held,
            Owned::File { held, seen, .. } => held && seen == Seen::Exact,
        }
    }
}

/// Something a waiter waits on: the task owning it and the event by which
/// it owns it. `dio`: a range lock held for a direct IO, which IO
/// completion releases, not its locker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub tid: u32,
    pub evidence: u64,
    pub dio: bool,
    pub owns: Owned,
}

/// Everything `tid` waits on now. A range lock waiter waits for the
/// reference lock's blockers (held conflicting locks, and earlier-queued
/// ones where the flavour queues); an mmap_lock waiter for the conflicting
/// holders and the earlier waiters it queues behind.
pub fn blockers(m: &Model, tid: u32) -> Vec<Blocker> {
    match m.tasks.get(&tid).and_then(|t| t.waiting) {
        Some(Wait::Range { tree, lock }) => {
            let Some(t) = m.trees.get(&tree) else {
                return Vec::new();
            };
            t.oracle
                .blockers(lock)
                .into_iter()
                .filter_map(|id| {
                    let b = t.locks.get(&id)?;
                    let owns = Owned::Range { tree, lock: id };
                    Some(match b.state {
                        LockState::Held { idx, .. } => Blocker {
                            tid: b.tid,
                            evidence: idx,
                            dio: matches!(b.op, Op::DioRead | Op::DioWrite)
                                || m.file_of(tree).is_some_and(|(dev, ino)| {
                                    m.dios
                                        .values()
                                        .any(|d| d.tid == b.tid && d.dev == dev && d.ino == ino)
                                }),
                            owns,
                        },
                        LockState::Waiting => Blocker {
                            tid: b.tid,
                            evidence: b.req_idx,
                            dio: false,
                            owns,
                        },
                    })
                })
                .collect()
        }
        Some(Wait::Mmap { mm, write, .. }) => m
            .mms
            .get(&mm)
            .map(|s| {
                mmap_blocking(s, tid, write)
                    .map(|(u, held)| Blocker {
                        tid: u.tid,
                        evidence: u.idx,
                        dio: false,
                        owns: Owned::Mmap {
                            mm,
                            write: u.write,
                            held,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default(),
        Some(Wait::File { lock, write, .. }) => m
            .flocks
            .get(&lock)
            .map(|s| {
                flock::blocking(s, tid, write)
                    .map(|(u, held)| Blocker {
                        tid: u.tid,
                        evidence: u.idx,
                        dio: false,
                        owns: Owned::File {
                            lock,
                            write: u.write,
                            held,
                            seen: u.seen,
                        },
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// The wait-for edges out of `tid`: `(owner tid, evidence event)` of each
/// task that must act for `tid` to go on. A DIO lock is released by IO
/// completion, not by its locker, so it is no edge to the locker.
pub fn edges(m: &Model, tid: u32) -> Vec<(u32, u64)> {
    blockers(m, tid)
        .into_iter()
        .filter(|b| !b.dio)
        .map(|b| (b.tid, b.evidence))
        .collect()
}

/// A wait chain from `start`: each step waits for something owned by the
/// next (the oldest blocker is followed at each hop). Ends at a task that
/// waits for nothing, at a lock held for a direct IO (its completion, not
/// its locker, releases it: `dio` is then true), after `max` steps, or where
/// it meets itself again (`cycle` is then true).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// `(tid, evidence)`: the task, and the event by which it owns what the
    /// previous step waits for (the first step's is its own request).
    pub steps: Vec<(u32, u64)>,
    /// What each step after the first owns that the previous one waits for
    /// (`owns[i]` is step `i + 1`'s).
    pub owns: Vec<Owned>,
    pub cycle: bool,
    pub dio: bool,
}

/// Follows the wait-for graph from `start` (see [`Chain`]).
pub fn chain(m: &Model, start: u32, max: usize) -> Chain {
    let mut c = Chain::default();
    let mut cur = start;
    let mut ev = match m.tasks.get(&start).and_then(|t| t.waiting) {
        Some(Wait::Range { tree, lock }) => m.lock(tree, lock).map_or(0, |l| l.req_idx),
        Some(Wait::Mmap { idx, .. } | Wait::File { idx, .. }) => idx,
        None => return c,
    };
    loop {
        c.steps.push((cur, ev));
        if c.steps.len() >= max || c.dio {
            return c;
        }
        let Some(b) = blockers(m, cur).into_iter().min_by_key(|b| b.evidence) else {
            return c;
        };
        if c.steps.iter().any(|s| s.0 == b.tid) && !b.dio {
            c.cycle = true;
            return c;
        }
        c.dio = b.dio;
        c.owns.push(b.owns);
        cur = b.tid;
        ev = b.evidence;
    }
}

/// Finds a cycle through `start`: a path `start -> ... -> start`. `edges(t)`
/// gives `(owner tid, evidence)` pairs for what `t` waits for. Returns the
/// steps in wait order, starting at `start` (a self-wait gives one step).
pub fn find_cycle(start: u32, mut edges: impl FnMut(u32) -> Vec<(u32, u64)>) -> Option<Vec<Step>> {
    // Depth-first, with the path kept as a stack of (tid, edges, next edge).
    let mut parent: FastMap<u32, Option<(u32, u64)>> = FastMap::default();
    parent.insert(start, None);
    type Frame = (u32, Vec<(u32, u64)>, usize);
    let mut stack: Vec<Frame> = vec![(start, edges(start), 0)];
    while let Some((tid, out, i)) = stack.last_mut() {
        let Some(&(next, ev)) = out.get(*i) else {
            stack.pop();
            continue;
        };
        *i += 1;
        let tid = *tid;
        if next == start {
            // Close the cycle: walk the parents back to `start`.
            let mut steps = vec![Step { tid, evidence: ev }];
            let mut cur = tid;
            while let Some(Some((p, pev))) = parent.get(&cur) {
                steps.push(Step {
                    tid: *p,
                    evidence: *pev,
                });
                cur = *p;
            }
            steps.reverse();
            return Some(steps);
        }
        if parent.contains_key(&next) || parent.len() >= MAX_VISIT {
            continue;
        }
        parent.insert(next, Some((tid, ev)));
        let e = edges(next);
        stack.push((next, e, 0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(u32, u32, u64)]) -> impl FnMut(u32) -> Vec<(u32, u64)> + '_ {
        move |t| {
            edges
                .iter()
                .filter(|e| e.0 == t)
                .map(|e| (e.1, e.2))
                .collect()
        }
    }

    #[test]
    fn finds_the_whole_cycle_in_wait_order() {
        let g = [(1, 2, 10), (2, 3, 20), (3, 1, 30), (2, 4, 40)];
        let c = find_cycle(1, graph(&g)).unwrap();
        assert_eq!(
            c,
            vec![
                Step {
                    tid: 1,
                    evidence: 10
                },
                Step {
                    tid: 2,
                    evidence: 20
                },
                Step {
                    tid: 3,
                    evidence: 30
                }
            ]
        );
        // The same cycle, seen from another member.
        let c = find_cycle(3, graph(&g)).unwrap();
        assert_eq!(c.iter().map(|s| s.tid).collect::<Vec<_>>(), vec![3, 1, 2]);
    }

    #[test]
    fn no_cycle_in_a_chain_or_a_cycle_elsewhere() {
        let g = [(1, 2, 0), (2, 3, 0), (3, 2, 0)];
        assert_eq!(find_cycle(1, graph(&g)), None);
        assert_eq!(find_cycle(9, graph(&g)), None);
    }

    #[test]
    fn self_wait_and_diamonds() {
        assert_eq!(
            find_cycle(5, graph(&[(5, 5, 7)])),
            Some(vec![Step {
                tid: 5,
                evidence: 7
            }])
        );
        let g = [(1, 2, 0), (1, 3, 0), (2, 4, 0), (3, 4, 0), (4, 1, 9)];
        let c = find_cycle(1, graph(&g)).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.last().unwrap(),
            &Step {
                tid: 4,
                evidence: 9
            }
        );
    }
}
