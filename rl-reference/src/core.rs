//! The shared engine: an augmented AVL interval tree of requests with the
//! kernel's per-node blocking counts.
//!
//! Nodes live in an arena (`Vec`) and link by `u32` index, so the locks can
//! name a request by its slot without hashing, and insert/remove allocate
//! nothing once the arena has grown. Keys are `(start, seq)`: in-order walks
//! visit requests the way the kernel's interval tree does (by start, equal
//! starts in queue order). Each node carries `max_last` of its subtree, so an
//! overlap walk costs O(log N + k·log N) for k overlapping nodes and O(log N)
//! when nothing overlaps.
//!
//! The one rule: a node's `blocking` is the number of nodes with a smaller
//! `seq` that overlap and conflict with it. It is fixed at insertion (counting
//! the tree then) and only decreases: removing a node X decrements every
//! later (`seq` > X's) overlapping node that conflicts with X — for a held X
//! that is every conflicting overlapping node (the kernel's unlock), for a
//! waiting X only the later ones (the kernel's seqnum rule on cancellation).

use std::marker::PhantomData;
use std::ops::ControlFlow;

use crate::flavour::{Flavour, Mode};

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

pub(crate) struct Node<T> {
    pub(crate) start: u64,
    pub(crate) last: u64,
    max_last: u64,
    pub(crate) seq: u64,
    left: u32,
    right: u32,
    height: u8,
    pub(crate) mode: Mode,
    /// Earlier conflicting overlapping nodes still in the tree; 0 = held.
    pub(crate) blocking: u32,
    pub(crate) payload: T,
}

/// The interval tree plus blocking counts. `T` is per-request data: the id
/// for the state machine, the parked waiter for the locks.
pub(crate) struct Core<F, T> {
    nodes: Vec<Node<T>>,
    root: u32,
    /// Head of the free-slot list, linked through `left`.
    free: u32,
    len: usize,
    /// Nodes with `blocking > 0`; when 0, removal skips the decrement walk.
    waiting: usize,
    next_seq: u64,
    _flavour: PhantomData<F>,
}

impl<F: Flavour, T: Default> Default for Core<F, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Flavour, T: Default> Core<F, T> {
    pub(crate) const fn new() -> Self {
        Self {
            nodes: Vec::new(),
            root: NIL,
            free: NIL,
            len: 0,
            waiting: 0,
            next_seq: 0,
            _flavour: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn waiting(&self) -> usize {
        self.waiting
    }

    #[inline]
    pub(crate) fn node(&self, slot: u32) -> &Node<T> {
        &self.nodes[slot as usize]
    }

    #[inline]
    pub(crate) fn node_mut(&mut self, slot: u32) -> &mut Node<T> {
        &mut self.nodes[slot as usize]
    }

    #[inline]
    fn height(&self, t: u32) -> u8 {
        if t == NIL { 0 } else { self.nodes[t as usize].height }
    }

    #[inline]
    fn max_last(&self, t: u32) -> Option<u64> {
        if t == NIL { None } else { Some(self.nodes[t as usize].max_last) }
    }

    #[inline]
    fn key(&self, t: u32) -> (u64, u64) {
        let n = &self.nodes[t as usize];
        (n.start, n.seq)
    }

    /// Number of queued requests that conflict with a new `[start, last]`
    /// request in `mode`, stopping early once `limit` is reached.
    pub(crate) fn count_conflicts(&self, start: u64, last: u64, mode: Mode, limit: u32) -> u32 {
        let mut count = 0u32;
        let _ = self.walk(self.root, start, last, &mut |n: &Node<T>| {
            if F::conflicts(n.mode, mode) {
                count += 1;
                if count >= limit {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        });
        count
    }

    /// Queue a request; returns its slot and blocking count (0 = granted).
    pub(crate) fn insert(&mut self, start: u64, last: u64, mode: Mode, payload: T) -> (u32, u32) {
        debug_assert!(start <= last);
        let blocking = self.count_conflicts(start, last, mode, u32::MAX);
        let seq = self.next_seq;
        self.next_seq += 1;
        let node = Node {
            start,
            last,
            max_last: last,
            seq,
            left: NIL,
            right: NIL,
            height: 1,
            mode,
            blocking,
            payload,
        };
        let slot = if self.free == NIL {
            let slot = u32::try_from(self.nodes.len()).expect("more than 2^32 - 1 queued requests");
            assert!(slot != NIL, "more than 2^32 - 1 queued requests");
            self.nodes.push(node);
            slot
        } else {
            let slot = self.free;
            self.free = self.nodes[slot as usize].left;
            self.nodes[slot as usize] = node;
            slot
        };
        self.root = self.insert_at(self.root, slot);
        self.len += 1;
        if blocking > 0 {
            self.waiting += 1;
        }
        (slot, blocking)
    }

    /// Remove a request (release if held, cancel if waiting) and return its
    /// payload. `granted` sees each node whose count reaches 0, in tree order.
    pub(crate) fn remove(&mut self, slot: u32, mut granted: impl FnMut(u32, &mut Node<T>)) -> T {
        let key = self.key(slot);
        self.root = self.remove_at(self.root, key);
        self.len -= 1;
        let n = &mut self.nodes[slot as usize];
        let (start, last, seq, mode) = (n.start, n.last, n.seq, n.mode);
        if n.blocking > 0 {
            self.waiting -= 1;
        }
        let payload = std::mem::take(&mut n.payload);
        n.left = self.free;
        self.free = slot;
        if self.waiting > 0 {
            self.decrement(start, last, |n| {
                n.seq > seq && F::conflicts(n.mode, mode)
            }, &mut granted);
        }
        payload
    }

    /// Turn a held writer into a reader: later overlapping readers stop
    /// counting it (`range_downgrade_write`).
    pub(crate) fn downgrade(&mut self, slot: u32, mut granted: impl FnMut(u32, &mut Node<T>)) {
        let n = &mut self.nodes[slot as usize];
        debug_assert!(n.mode == Mode::Write && n.blocking == 0);
        n.mode = Mode::Read;
        let (start, last, seq) = (n.start, n.last, n.seq);
        if self.waiting > 0 {
            // Before the change they conflicted (writer); now they do not.
            self.decrement(start, last, |n| {
                n.seq > seq && !F::conflicts(n.mode, Mode::Read)
            }, &mut granted);
        }
    }

    fn decrement(
        &mut self,
        start: u64,
        last: u64,
        counted: impl Fn(&Node<T>) -> bool,
        granted: &mut impl FnMut(u32, &mut Node<T>),
    ) {
        let mut waiting = self.waiting;
        self.walk_mut(self.root, start, last, &mut |slot, n| {
            if counted(n) {
                debug_assert!(n.blocking > 0);
                n.blocking -= 1;
                if n.blocking == 0 {
                    waiting -= 1;
                    granted(slot, n);
                }
            }
        });
        self.waiting = waiting;
    }

    /// Visit the nodes overlapping `[start, last]` in `(start, seq)` order.
    pub(crate) fn for_each_overlap(
        &self,
        start: u64,
        last: u64,
        mut f: impl FnMut(u32, &Node<T>),
    ) {
        let _ = self.walk_slots(self.root, start, last, &mut |slot, n| {
            f(slot, n);
            ControlFlow::Continue(())
        });
    }

    /// Slots of the earlier conflicting overlapping nodes `slot` still counts.
    pub(crate) fn blockers(&self, slot: u32) -> Vec<u32> {
        let me = &self.nodes[slot as usize];
        let mut out = Vec::new();
        if me.blocking == 0 {
            return out;
        }
        self.for_each_overlap(me.start, me.last, |s, n| {
            if n.seq < me.seq && F::conflicts(n.mode, me.mode) {
                out.push(s);
            }
        });
        debug_assert_eq!(out.len(), me.blocking as usize);
        out
    }

    /// All slots in `(start, seq)` order.
    pub(crate) fn slots(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len);
        self.for_each_overlap(0, u64::MAX, |s, _| out.push(s));
        out
    }

    fn walk(
        &self,
        t: u32,
        start: u64,
        last: u64,
        f: &mut impl FnMut(&Node<T>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        self.walk_slots(t, start, last, &mut |_, n| f(n))
    }

    fn walk_slots(
        &self,
        t: u32,
        start: u64,
        last: u64,
        f: &mut impl FnMut(u32, &Node<T>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if t == NIL {
            return ControlFlow::Continue(());
        }
        let n = &self.nodes[t as usize];
        // Nothing in this subtree reaches `start`.
        if n.max_last < start {
            return ControlFlow::Continue(());
        }
        self.walk_slots(n.left, start, last, f)?;
        // This node and its right subtree begin after `last`.
        if n.start > last {
            return ControlFlow::Continue(());
        }
        if n.last >= start {
            f(t, n)?;
        }
        self.walk_slots(n.right, start, last, f)
    }

    fn walk_mut(
        &mut self,
        t: u32,
        start: u64,
        last: u64,
        f: &mut impl FnMut(u32, &mut Node<T>),
    ) {
        if t == NIL {
            return;
        }
        let n = &self.nodes[t as usize];
        if n.max_last < start {
            return;
        }
        let (left, right, n_start, n_last) = (n.left, n.right, n.start, n.last);
        self.walk_mut(left, start, last, f);
        if n_start > last {
            return;
        }
        if n_last >= start {
            f(t, &mut self.nodes[t as usize]);
        }
        self.walk_mut(right, start, last, f);
    }

    // ----- AVL maintenance -------------------------------------------------

    /// Recompute height and `max_last` of `t` from its children.
    #[inline]
    fn update(&mut self, t: u32) {
        let (l, r) = {
            let n = &self.nodes[t as usize];
            (n.left, n.right)
        };
        let height = 1 + self.height(l).max(self.height(r));
        let mut max_last = self.nodes[t as usize].last;
        if let Some(m) = self.max_last(l) {
            max_last = max_last.max(m);
        }
        if let Some(m) = self.max_last(r) {
            max_last = max_last.max(m);
        }
        let n = &mut self.nodes[t as usize];
        n.height = height;
        n.max_last = max_last;
    }

    fn rotate_right(&mut self, t: u32) -> u32 {
        let l = self.nodes[t as usize].left;
        self.nodes[t as usize].left = self.nodes[l as usize].right;
        self.nodes[l as usize].right = t;
        self.update(t);
        self.update(l);
        l
    }

    fn rotate_left(&mut self, t: u32) -> u32 {
        let r = self.nodes[t as usize].right;
        self.nodes[t as usize].right = self.nodes[r as usize].left;
        self.nodes[r as usize].left = t;
        self.update(t);
        self.update(r);
        r
    }

    /// Update `t` and restore the AVL balance; returns the subtree root.
    fn rebalance(&mut self, t: u32) -> u32 {
        self.update(t);
        let (l, r) = {
            let n = &self.nodes[t as usize];
            (n.left, n.right)
        };
        let (hl, hr) = (self.height(l), self.height(r));
        if hl > hr + 1 {
            let (ll, lr) = (self.nodes[l as usize].left, self.nodes[l as usize].right);
            if self.height(ll) < self.height(lr) {
                self.nodes[t as usize].left = self.rotate_left(l);
            }
            self.rotate_right(t)
        } else if hr > hl + 1 {
            let (rl, rr) = (self.nodes[r as usize].left, self.nodes[r as usize].right);
            if self.height(rr) < self.height(rl) {
                self.nodes[t as usize].right = self.rotate_right(r);
            }
            self.rotate_left(t)
        } else {
            t
        }
    }

    fn insert_at(&mut self, t: u32, slot: u32) -> u32 {
        if t == NIL {
            return slot;
        }
        if self.key(slot) < self.key(t) {
            let l = self.nodes[t as usize].left;
            self.nodes[t as usize].left = self.insert_at(l, slot);
        } else {
            let r = self.nodes[t as usize].right;
            self.nodes[t as usize].right = self.insert_at(r, slot);
        }
        self.rebalance(t)
    }

    fn remove_at(&mut self, t: u32, key: (u64, u64)) -> u32 {
        debug_assert!(t != NIL, "removing a node that is not in the tree");
        match key.cmp(&self.key(t)) {
            std::cmp::Ordering::Less => {
                let l = self.nodes[t as usize].left;
                self.nodes[t as usize].left = self.remove_at(l, key);
            }
            std::cmp::Ordering::Greater => {
                let r = self.nodes[t as usize].right;
                self.nodes[t as usize].right = self.remove_at(r, key);
            }
            std::cmp::Ordering::Equal => {
                let (l, r) = {
                    let n = &self.nodes[t as usize];
                    (n.left, n.right)
                };
                if l == NIL {
                    return r;
                }
                if r == NIL {
                    return l;
                }
                // Put the successor in t's place.
                let (rest, succ) = self.remove_min(r);
                let s = &mut self.nodes[succ as usize];
                s.left = l;
                s.right = rest;
                return self.rebalance(succ);
            }
        }
        self.rebalance(t)
    }

    /// Detach the minimum of subtree `t`: (new subtree root, detached slot).
    fn remove_min(&mut self, t: u32) -> (u32, u32) {
        let l = self.nodes[t as usize].left;
        if l == NIL {
            return (self.nodes[t as usize].right, t);
        }
        let (rest, min) = self.remove_min(l);
        self.nodes[t as usize].left = rest;
        (self.rebalance(t), min)
    }

    /// Check the AVL, ordering, `max_last` and blocking-count invariants
    /// (tests only; O(N²)).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        fn rec<F: Flavour, T: Default>(c: &Core<F, T>, t: u32, lo: Option<(u64, u64)>, count: &mut usize) -> (u8, u64) {
            if t == NIL {
                return (0, 0);
            }
            *count += 1;
            let n = &c.nodes[t as usize];
            if let Some(lo) = lo {
                assert!(c.key(t) > lo);
            }
            let (hl, ml) = rec(c, n.left, lo, count);
            let (hr, mr) = rec(c, n.right, Some(c.key(t)), count);
            assert!(hl.abs_diff(hr) <= 1, "unbalanced");
            assert_eq!(n.height, 1 + hl.max(hr));
            let m = n.last.max(if n.left == NIL { 0 } else { ml }).max(if n.right == NIL { 0 } else { mr });
            assert_eq!(n.max_last, m);
            (n.height, m)
        }
        let mut count = 0;
        rec(self, self.root, None, &mut count);
        assert_eq!(count, self.len);
        let slots = self.slots();
        let mut waiting = 0;
        for &x in &slots {
            let a = self.node(x);
            let expect = slots
                .iter()
                .filter(|&&y| {
                    let b = self.node(y);
                    b.seq < a.seq && b.start <= a.last && a.start <= b.last && F::conflicts(a.mode, b.mode)
                })
                .count();
            assert_eq!(a.blocking as usize, expect);
            waiting += usize::from(a.blocking > 0);
        }
        assert_eq!(waiting, self.waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavour::{ExclFifo, Rw};

    #[test]
    fn avl_stays_balanced() {
        let mut c: Core<ExclFifo, u64> = Core::new();
        let mut slots = Vec::new();
        for i in 0..200u64 {
            let s = (i * 37) % 200;
            slots.push(c.insert(s * 10, s * 10 + 3, Mode::Write, i).0);
        }
        c.check();
        assert_eq!(c.waiting(), 0);
        for (i, s) in slots.iter().enumerate() {
            if i % 3 == 0 {
                c.remove(*s, |_, _| panic!("nothing waits"));
            }
        }
        c.check();
        assert!(c.height(c.root) <= 10);
    }

    #[test]
    fn overlap_counts() {
        let mut c: Core<Rw, u64> = Core::new();
        let (a, ba) = c.insert(0, 10, Mode::Read, 1);
        let (_, bb) = c.insert(5, 5, Mode::Read, 2);
        let (w, bw) = c.insert(3, 7, Mode::Write, 3);
        let (r, br) = c.insert(7, 20, Mode::Read, 4);
        assert_eq!((ba, bb, bw, br), (0, 0, 2, 1));
        c.check();
        let mut granted = Vec::new();
        c.remove(a, |s, _| granted.push(s));
        assert!(granted.is_empty());
        assert_eq!(c.blockers(r), vec![w]);
        c.check();
    }
}
