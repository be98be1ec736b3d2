//! The state machines against a naive O(n²) model of the kernel rules, over
//! random operation sequences.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rl_reference::{Error, ExclFifo, Flavour, Mode, Outcome, Rw, State, StateMachine};

/// The rules written as plainly as possible: a request is held iff no
/// earlier (in queue order) request still queued overlaps and conflicts.
#[derive(Clone, Debug)]
struct Entry {
    id: u64,
    start: u64,
    last: u64,
    mode: Mode,
    seq: u64,
}

#[derive(Default)]
struct Model {
    queue: Vec<Entry>, // queue order
    next_seq: u64,
}

fn conflicts<F: Flavour>(a: Mode, b: Mode) -> bool {
    F::conflicts(a, b)
}

impl Model {
    fn blockers<F: Flavour>(&self, i: usize) -> Vec<&Entry> {
        let x = &self.queue[i];
        let mut v: Vec<&Entry> = self.queue[..i]
            .iter()
            .filter(|y| y.start <= x.last && x.start <= y.last && conflicts::<F>(x.mode, y.mode))
            .collect();
        v.sort_by_key(|e| (e.start, e.seq));
        v
    }

    fn held<F: Flavour>(&self) -> Vec<u64> {
        (0..self.queue.len())
            .filter(|&i| self.blockers::<F>(i).is_empty())
            .map(|i| self.queue[i].id)
            .collect()
    }

    /// Ids held now but not in `before`, in (start, seq) order.
    fn newly_held<F: Flavour>(&self, before: &[u64]) -> Vec<u64> {
        let mut v: Vec<&Entry> = self
            .queue
            .iter()
            .enumerate()
            .filter(|(i, e)| !before.contains(&e.id) && self.blockers::<F>(*i).is_empty())
            .map(|(_, e)| e)
            .collect();
        v.sort_by_key(|e| (e.start, e.seq));
        v.into_iter().map(|e| e.id).collect()
    }

    fn find(&self, id: u64) -> Option<usize> {
        self.queue.iter().position(|e| e.id == id)
    }

    fn would_grant<F: Flavour>(&self, start: u64, last: u64, mode: Mode) -> bool {
        !self
            .queue
            .iter()
            .any(|y| y.start <= last && start <= y.last && conflicts::<F>(mode, y.mode))
    }

    fn apply<F: Flavour>(&mut self, op: &Op) -> Result<Vec<u64>, Error> {
        let held = self.held::<F>();
        match *op {
            Op::Request {
                id,
                start,
                len,
                write,
                try_,
            } => {
                let (last, mode) = (start + len, if write { Mode::Write } else { Mode::Read });
                if mode == Mode::Read && !F::SHARED {
                    return Err(Error::SharedUnsupported { flavour: F::NAME });
                }
                if self.find(id).is_some() {
                    return Err(Error::DuplicateId(id));
                }
                if try_ && !self.would_grant::<F>(start, last, mode) {
                    return Ok(vec![]);
                }
                self.queue.push(Entry {
                    id,
                    start,
                    last,
                    mode,
                    seq: self.next_seq,
                });
                self.next_seq += 1;
                Ok(self.newly_held::<F>(&held))
            }
            Op::Release(id) | Op::Cancel(id) | Op::Downgrade(id) => {
                let i = self.find(id).ok_or(Error::UnknownId(id))?;
                let is_held = held.contains(&id);
                match op {
                    Op::Release(_) if !is_held => return Err(Error::NotHeld(id)),
                    Op::Cancel(_) if is_held => return Err(Error::NotWaiting(id)),
                    Op::Downgrade(_) if !is_held => return Err(Error::NotHeld(id)),
                    Op::Downgrade(_) if self.queue[i].mode != Mode::Write || !F::SHARED => {
                        return Err(Error::NotWriter(id));
                    }
                    Op::Downgrade(_) => self.queue[i].mode = Mode::Read,
                    _ => {
                        self.queue.remove(i);
                    }
                }
                Ok(self.newly_held::<F>(&held))
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Request {
        id: u64,
        start: u64,
        len: u64,
        write: bool,
        try_: bool,
    },
    Release(u64),
    Cancel(u64),
    Downgrade(u64),
}

fn op() -> impl Strategy<Value = Op> {
    op_in(24, 40, 4)
}

/// Ids `0..ids`, starts `0..starts`; `requests` : 3 : 1 : 1 for request,
/// release, cancel, downgrade.
fn op_in(ids: u64, starts: u64, requests: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        requests => (0..ids, 0..starts, prop_oneof![3 => 0..4u64, 1 => 0..30u64], any::<bool>(), prop::bool::weighted(0.15))
            .prop_map(|(id, start, len, write, try_)| Op::Request { id, start, len, write, try_ }),
        3 => (0..ids).prop_map(Op::Release),
        1 => (0..ids).prop_map(Op::Cancel),
        1 => (0..ids).prop_map(Op::Downgrade),
    ]
}

/// Up to 160 queued requests: the tree has several leaves (of 32) and inner
/// levels, and equal starts span leaves.
fn wide_ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op_in(160, 120, 8), 1..if cfg!(miri) { 40 } else { 700 })
}

fn run<F: Flavour>(ops: &[Op], probes: &[(u64, u64, bool)]) -> Result<(), TestCaseError> {
    let mut sm = StateMachine::<F>::new();
    let mut model = Model::default();
    for op in ops {
        let expect = model.apply::<F>(op);
        let got = match *op {
            Op::Request {
                id,
                start,
                len,
                write,
                try_,
            } => {
                let mode = if write { Mode::Write } else { Mode::Read };
                if try_ {
                    sm.try_request(id, start, start + len, mode)
                        .map(|ok| if ok { vec![id] } else { vec![] })
                } else {
                    sm.request(id, start, start + len, mode).map(|o| {
                        if o == Outcome::Granted {
                            vec![id]
                        } else {
                            vec![]
                        }
                    })
                }
            }
            Op::Release(id) => sm.release(id),
            Op::Cancel(id) => sm.cancel(id),
            Op::Downgrade(id) => sm.downgrade(id),
        };
        prop_assert_eq!(&got, &expect, "op {:?}", op);

        // Whole state, in tree order.
        let mut order: Vec<&Entry> = model.queue.iter().collect();
        order.sort_by_key(|e| (e.start, e.seq));
        let got: Vec<_> = sm
            .iter()
            .map(|r| (r.id, r.start, r.last, r.mode, r.state))
            .collect();
        let want: Vec<_> = order
            .iter()
            .map(|e| {
                let i = model.find(e.id).unwrap();
                let b = model.blockers::<F>(i).len() as u32;
                let state = if b == 0 {
                    State::Held
                } else {
                    State::Waiting { blocking: b }
                };
                (e.id, e.start, e.last, e.mode, state)
            })
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(sm.len(), model.queue.len());
        prop_assert_eq!(sm.waiting_len(), sm.waiting().count());
        for (i, e) in model.queue.iter().enumerate() {
            let want: Vec<u64> = model.blockers::<F>(i).iter().map(|b| b.id).collect();
            prop_assert_eq!(sm.blockers(e.id).unwrap(), want.clone());
            prop_assert_eq!(sm.is_grantable(e.id).unwrap(), want.is_empty());
        }
        for &(start, len, write) in probes {
            let mode = if write || !F::SHARED {
                Mode::Write
            } else {
                Mode::Read
            };
            prop_assert_eq!(
                sm.would_grant(start, start + len, mode).unwrap(),
                model.would_grant::<F>(start, start + len, mode)
            );
            prop_assert_eq!(
                sm.conflicts(start, start + len, mode).unwrap().is_empty(),
                model.would_grant::<F>(start, start + len, mode)
            );
        }
    }
    Ok(())
}

fn max_ops() -> usize {
    if cfg!(miri) { 40 } else { 120 }
}

fn cases() -> u32 {
    if cfg!(miri) { 2 } else { 384 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn excl_fifo_matches_model(ops in prop::collection::vec(op(), 1..max_ops()),
                               probes in prop::collection::vec((0..40u64, 0..6u64, any::<bool>()), 3)) {
        // The exclusive flavour has only writers: map reads to writes so
        // most requests are valid; a few reads still test the error.
        let ops: Vec<Op> = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| match op {
                Op::Request { id, start, len, write, try_ } => Op::Request { id, start, len, write: write || i % 7 != 0, try_ },
                op => op,
            })
            .collect();
        run::<ExclFifo>(&ops, &probes)?;
    }

    #[test]
    fn rw_matches_model(ops in prop::collection::vec(op(), 1..max_ops()),
                        probes in prop::collection::vec((0..40u64, 0..6u64, any::<bool>()), 3)) {
        run::<Rw>(&ops, &probes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 1 } else { 32 }, ..ProptestConfig::default() })]

    #[test]
    fn excl_fifo_matches_model_wide(ops in wide_ops(),
                                    probes in prop::collection::vec((0..120u64, 0..6u64, any::<bool>()), 3)) {
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Request { id, start, len, try_, .. } => Op::Request { id, start, len, write: true, try_ },
                op => op,
            })
            .collect();
        run::<ExclFifo>(&ops, &probes)?;
    }

    #[test]
    fn rw_matches_model_wide(ops in wide_ops(),
                             probes in prop::collection::vec((0..120u64, 0..6u64, any::<bool>()), 3)) {
        run::<Rw>(&ops, &probes)?;
    }
}

#[test]
fn invalid_ranges_and_reuse() {
    let mut sm = rl_reference::rw::StateMachine::new();
    assert_eq!(
        sm.request(1, 5, 4, Mode::Read),
        Err(Error::InvalidRange { start: 5, last: 4 })
    );
    assert_eq!(
        sm.try_request(1, 5, 4, Mode::Read),
        Err(Error::InvalidRange { start: 5, last: 4 })
    );
    assert_eq!(
        sm.would_grant(5, 4, Mode::Read),
        Err(Error::InvalidRange { start: 5, last: 4 })
    );
    assert!(sm.is_empty());
    // Full u64 range, and id reuse after release.
    assert_eq!(
        sm.request(0xffff_8880_0000_1000, 0, u64::MAX, Mode::Write),
        Ok(Outcome::Granted)
    );
    assert_eq!(
        sm.request(7, u64::MAX, u64::MAX, Mode::Read),
        Ok(Outcome::Queued)
    );
    assert_eq!(sm.release(0xffff_8880_0000_1000), Ok(vec![7]));
    assert_eq!(
        sm.request(0xffff_8880_0000_1000, 0, 0, Mode::Write),
        Ok(Outcome::Granted)
    );
    assert_eq!(sm.release(99), Err(Error::UnknownId(99)));
    assert_eq!(sm.state(7), Some(State::Held));
    assert_eq!(sm.state(8), None);
}
