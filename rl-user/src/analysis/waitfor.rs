//! The wait-for graph: task -> the tasks owning what blocks it.
//!
//! The graph is never materialised: edges are computed on demand from the
//! model (reference blockers of a range-lock waiter, conflicting holders of
//! an mmap_lock), and only when a new wait edge appears.

use crate::model::FastMap;

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
