//! `stall`: a waiter stayed blocked although, by the reference lock,
//! nothing blocked it (a lost wakeup); the threshold is `--stall-ms`.
//!
//! Scanned a few times per threshold as trace time moves, and at the end.
//! It rests on the absence of a blocker: any gap makes it uncertain, and in
//! a recording begun mid-stream so does a tree with state from before the
//! trace, or a waiter still waiting at the end, unless the tree's init is
//! in the trace (`rl_tree_init`): then every lock of it is, and nothing
//! unseen can block the waiter.

use super::{Cx, Draft, FindingId, Kind, Rule, Severity, Since};
use crate::analysis::describe;
use crate::model::FastSet;

impl Kind {
    pub const STALL: Kind = Kind("stall");
}

#[derive(Debug, Default)]
pub struct Stall {
    /// Waiters already reported: (tree, lock, request index).
    stalled: FastSet<(u64, u64, u64)>,
    /// Findings made: (finding, tree, lock, request index).
    found: Vec<(FindingId, u64, u64, u64)>,
}

impl Stall {
    fn scan(&mut self, cx: &mut Cx<'_>, now: u64) {
        let m = cx.m;
        if m.grantable_waiters.is_empty() {
            return;
        }
        let stall = cx.cfg.stall_ns;
        let mut due: Vec<((u64, u64), (u64, u64))> = m
            .grantable_waiters
            .iter()
            .filter(|(_, (since, _))| now.saturating_sub(*since) > stall)
            .map(|(k, v)| (*k, *v))
            .collect();
        // Report in the order they became grantable.
        due.sort_unstable_by_key(|&((tree, lock), (_, idx))| (idx, tree, lock));
        for ((tree, lock), (since, since_idx)) in due {
            let Some(l) = m.lock(tree, lock) else {
                continue;
            };
            if l.is_held() || !self.stalled.insert((tree, lock, l.req_idx)) {
                continue;
            }
            let waited = now - since;
            let message = format!(
                "{} still waits for {} {}.{:03} s after the reference lock would have granted it (lost wakeup?)",
                describe::task(m, l.tid),
                describe::range_lock(m, tree, lock, l),
                waited / 1_000_000_000,
                waited % 1_000_000_000 / 1_000_000
            );
            // Any gap may have hidden a blocker; a recording's unseen start
            // is judged per tree at the end.
            let at = cx.report(Draft {
                tids: vec![l.tid],
                tree: Some(tree),
                range: Some((l.start, l.last)),
                evidence: vec![l.req_idx, since_idx],
                ..Draft::new(Since::AnyGap, now, message)
            });
            if let Some(i) = at {
                self.found.push((i, tree, lock, l.req_idx));
            }
        }
    }
}

impl Rule for Stall {
    fn kind(&self) -> Kind {
        Kind::STALL
    }
    fn severity(&self) -> Severity {
        Severity::Error
    }
    fn summary(&self) -> &'static str {
        "a waiter stayed blocked although, by the reference lock, nothing blocked it (lost wakeup)"
    }

    fn tick(&mut self, cx: &mut Cx<'_>, now: u64) -> u64 {
        self.scan(cx, now);
        // Scan a few times per threshold: stalls are reported at most half
        // a threshold late, and the scan stays off the hot path.
        now.saturating_add((cx.cfg.stall_ns / 2).max(1))
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        let m = cx.m;
        self.scan(cx, m.now);
        if cx.cfg.clean_start {
            return;
        }
        // A recording's unseen start: a tree where an unknown lock was
        // released had state from before the trace, which its waits may
        // have been on.
        cx.uncertain_where(|f| f.tree.is_some_and(|t| m.unknown_trees.contains(&t)));
        // A waiter still waiting at the end may wait for a lock held since
        // before the trace that is never released in it.
        for &(i, tree, lock, req) in &self.found {
            let waiting = m
                .lock(tree, lock)
                .is_some_and(|l| l.req_idx == req && !l.is_held());
            if waiting && !m.inited_trees.contains(&tree) {
                cx.uncertain(i);
            }
        }
    }
}
