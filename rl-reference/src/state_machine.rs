//! The deterministic oracle: no threads, no clocks, caller-chosen ids.

use rustc_hash::FxHashMap as HashMap;
use std::fmt;

use crate::core::Core;
use crate::flavour::{Flavour, Mode};

/// What the state machine rejects. Every operation that returns an error
/// leaves the state unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `start > last`: ranges are inclusive and never empty.
    #[error("invalid range [{start}, {last}]: start > last")]
    InvalidRange {
        /// First page of the rejected range.
        start: u64,
        /// Last page of the rejected range.
        last: u64,
    },
    /// The id names a request that is still queued (held or waiting).
    #[error("id {0:#x} is already queued")]
    DuplicateId(u64),
    /// No queued request has this id.
    #[error("unknown id {0:#x}")]
    UnknownId(u64),
    /// `release`/`downgrade` of a request that is still waiting.
    #[error("id {0:#x} is waiting, not held")]
    NotHeld(u64),
    /// `cancel` of a request that is already held.
    #[error("id {0:#x} is held, not waiting")]
    NotWaiting(u64),
    /// `downgrade` of a reader.
    #[error("id {0:#x} is not held for writing")]
    NotWriter(u64),
    /// A [`Mode::Read`] request to an exclusive flavour.
    #[error("the {flavour} flavour has no shared (read) mode")]
    SharedUnsupported {
        /// [`Flavour::NAME`].
        flavour: &'static str,
    },
}

/// Where a queued request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Granted: owns its range.
    Held,
    /// Queued behind `blocking` earlier conflicting requests.
    Waiting {
        /// How many earlier conflicting overlapping requests it still waits for.
        blocking: u32,
    },
}

/// Outcome of [`StateMachine::request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Granted immediately.
    Granted,
    /// Queued; it will appear in the result of a later `release`/`cancel`/`downgrade`.
    Queued,
}

/// A snapshot of one queued request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// The caller's id.
    pub id: u64,
    /// First page (inclusive).
    pub start: u64,
    /// Last page (inclusive).
    pub last: u64,
    /// Read or write.
    pub mode: Mode,
    /// Held or waiting.
    pub state: State,
    /// Queue position: strictly increasing in request order, never reused.
    pub seq: u64,
}

/// The reference state machine of flavour `F` (see the crate docs for the
/// rules). Use the aliases [`crate::excl_fifo::StateMachine`] and
/// [`crate::rw::StateMachine`].
///
/// Costs: `request`, `release` and `cancel` are O(log N) plus O(log N) per
/// overlapping request touched; queries that return lists are O(log N + k log N).
pub struct StateMachine<F> {
    core: Core<F, u64>,
    ids: HashMap<u64, u32>,
}

impl<F: Flavour> Default for StateMachine<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Flavour> fmt::Debug for StateMachine<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachine")
            .field("flavour", &F::NAME)
            .field("requests", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl<F: Flavour> StateMachine<F> {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            core: Core::new(),
            // Ids are kernel addresses: Fx, not SipHash (a tenth of `rltop check`).
            ids: HashMap::default(),
        }
    }

    fn check_args(start: u64, last: u64, mode: Mode) -> Result<(), Error> {
        if start > last {
            return Err(Error::InvalidRange { start, last });
        }
        if mode == Mode::Read && !F::SHARED {
            return Err(Error::SharedUnsupported { flavour: F::NAME });
        }
        Ok(())
    }

    fn slot(&self, id: u64) -> Result<u32, Error> {
        self.ids.get(&id).copied().ok_or(Error::UnknownId(id))
    }

    /// Queue request `id` for pages `[start, last]` (`range_lock`,
    /// `range_read_lock`, `range_write_lock`, and their interruptible/killable
    /// variants). It counts the earlier queued requests it conflicts with and
    /// is granted now if there are none.
    ///
    /// # Errors
    /// [`Error::InvalidRange`], [`Error::DuplicateId`], [`Error::SharedUnsupported`].
    pub fn request(
        &mut self,
        id: u64,
        start: u64,
        last: u64,
        mode: Mode,
    ) -> Result<Outcome, Error> {
        Self::check_args(start, last, mode)?;
        if self.ids.contains_key(&id) {
            return Err(Error::DuplicateId(id));
        }
        let (slot, blocking) = self.core.insert(start, last, mode, id);
        self.ids.insert(id, slot);
        Ok(if blocking == 0 {
            Outcome::Granted
        } else {
            Outcome::Queued
        })
    }

    /// Trylock: take the range iff [`request`](Self::request) would be granted
    /// now; on `false` nothing is queued.
    ///
    /// The kernel's trylocks may fail more often (Bueso's
    /// `range_*_trylock` uses a coarse test that can fail although nothing
    /// overlaps), so a checker must not flag a kernel trylock *failure* where
    /// this returns `true`; a kernel trylock *success* where this returns
    /// `false` is a bug.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub fn try_request(
        &mut self,
        id: u64,
        start: u64,
        last: u64,
        mode: Mode,
    ) -> Result<bool, Error> {
        Self::check_args(start, last, mode)?;
        if self.ids.contains_key(&id) {
            return Err(Error::DuplicateId(id));
        }
        let Some((slot, _)) = self.core.insert_if(start, last, mode, id, true) else {
            return Ok(false);
        };
        self.ids.insert(id, slot);
        Ok(true)
    }

    fn remove(&mut self, id: u64, slot: u32) -> Vec<u64> {
        let mut granted = Vec::new();
        self.core.remove(slot, |_, id| granted.push(*id));
        self.ids.remove(&id);
        granted
    }

    /// Unlock held request `id`. Returns the ids granted as a result, in the
    /// kernel's wake order (tree order: by start, then queue order). The id
    /// may be reused afterwards.
    ///
    /// # Errors
    /// [`Error::UnknownId`], [`Error::NotHeld`] (use [`cancel`](Self::cancel)).
    pub fn release(&mut self, id: u64) -> Result<Vec<u64>, Error> {
        let slot = self.slot(id)?;
        if self.core.node(slot).blocking > 0 {
            return Err(Error::NotHeld(id));
        }
        Ok(self.remove(id, slot))
    }

    /// Withdraw waiting request `id` (an interruptible/killable wait that was
    /// interrupted, or a dropped future). Only the later requests that counted
    /// it are decremented (the kernel's seqnum rule); returns the ids granted
    /// as a result, in wake order.
    ///
    /// # Errors
    /// [`Error::UnknownId`], [`Error::NotWaiting`] (use [`release`](Self::release)).
    pub fn cancel(&mut self, id: u64) -> Result<Vec<u64>, Error> {
        let slot = self.slot(id)?;
        if self.core.node(slot).blocking == 0 {
            return Err(Error::NotWaiting(id));
        }
        Ok(self.remove(id, slot))
    }

    /// `range_downgrade_write`: held writer `id` becomes a reader; later
    /// overlapping readers stop waiting for it. Returns the ids granted.
    ///
    /// # Errors
    /// [`Error::UnknownId`], [`Error::NotHeld`], [`Error::NotWriter`] (always for
    /// an exclusive flavour's requests, which cannot be downgraded).
    pub fn downgrade(&mut self, id: u64) -> Result<Vec<u64>, Error> {
        let slot = self.slot(id)?;
        let n = self.core.node(slot);
        if n.blocking > 0 {
            return Err(Error::NotHeld(id));
        }
        if n.mode != Mode::Write || !F::SHARED {
            return Err(Error::NotWriter(id));
        }
        let mut granted = Vec::new();
        self.core.downgrade(slot, |_, id| granted.push(*id));
        Ok(granted)
    }

    /// What blocks `id` right now: the earlier-queued overlapping requests
    /// that conflict with it (held or waiting), in tree order. Empty iff held.
    ///
    /// # Errors
    /// [`Error::UnknownId`].
    pub fn blockers(&self, id: u64) -> Result<Vec<u64>, Error> {
        let slot = self.slot(id)?;
        Ok(self
            .core
            .blockers(slot)
            .into_iter()
            .map(|s| *self.core.payload(s))
            .collect())
    }

    /// Whether `id` may own its range now (nothing earlier blocks it). For a
    /// queued request this is the same as being held: grants are immediate.
    ///
    /// # Errors
    /// [`Error::UnknownId`].
    pub fn is_grantable(&self, id: u64) -> Result<bool, Error> {
        Ok(self.core.node(self.slot(id)?).blocking == 0)
    }

    /// Whether a new request for `[start, last]` in `mode` would be granted
    /// now (what [`try_request`](Self::try_request) answers, without queuing).
    ///
    /// # Errors
    /// [`Error::InvalidRange`], [`Error::SharedUnsupported`].
    pub fn would_grant(&self, start: u64, last: u64, mode: Mode) -> Result<bool, Error> {
        Self::check_args(start, last, mode)?;
        Ok(self.core.count_conflicts(start, last, mode, 1) == 0)
    }

    /// The queued requests a new request for `[start, last]` in `mode` would
    /// wait for, in tree order.
    ///
    /// # Errors
    /// [`Error::InvalidRange`], [`Error::SharedUnsupported`].
    pub fn conflicts(&self, start: u64, last: u64, mode: Mode) -> Result<Vec<u64>, Error> {
        Self::check_args(start, last, mode)?;
        let mut out = Vec::new();
        self.core.for_each_overlap(start, last, |s, n| {
            if F::conflicts(n.mode, mode) {
                out.push(*self.core.payload(s));
            }
        });
        Ok(out)
    }

    /// Held or waiting; `None` if `id` is not queued.
    pub fn state(&self, id: u64) -> Option<State> {
        self.get(id).map(|r| r.state)
    }

    /// Snapshot of request `id`.
    pub fn get(&self, id: u64) -> Option<Request> {
        self.ids.get(&id).map(|&s| self.request_at(s))
    }

    fn request_at(&self, slot: u32) -> Request {
        let n = self.core.node(slot);
        Request {
            id: *self.core.payload(slot),
            start: n.start,
            last: n.last,
            mode: n.mode,
            state: if n.blocking == 0 {
                State::Held
            } else {
                State::Waiting {
                    blocking: n.blocking,
                }
            },
            seq: n.seq,
        }
    }

    /// All queued requests in tree order (by start, then queue order).
    pub fn iter(&self) -> impl Iterator<Item = Request> + '_ {
        self.core.slots().into_iter().map(|s| self.request_at(s))
    }

    /// Held requests in tree order.
    pub fn held(&self) -> impl Iterator<Item = Request> + '_ {
        self.iter().filter(|r| r.state == State::Held)
    }

    /// Waiting requests in tree order.
    pub fn waiting(&self) -> impl Iterator<Item = Request> + '_ {
        self.iter().filter(|r| r.state != State::Held)
    }

    /// Queued requests overlapping `[start, last]`, in tree order.
    pub fn overlapping(&self, start: u64, last: u64) -> Vec<Request> {
        let mut out = Vec::new();
        self.core.for_each_overlap(start, last, |s, _| out.push(s));
        out.into_iter().map(|s| self.request_at(s)).collect()
    }

    /// Number of queued requests (held + waiting).
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// No request is queued.
    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    /// Number of waiting requests.
    pub fn waiting_len(&self) -> usize {
        self.core.waiting()
    }

    #[cfg(test)]
    pub(crate) fn check(&self) {
        self.core.check();
        assert_eq!(self.ids.len(), self.core.len());
        for (&id, &slot) in &self.ids {
            assert_eq!(*self.core.payload(slot), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavour::{ExclFifo, Rw};

    #[test]
    fn excl_waits_for_earlier_waiters() {
        let mut sm = StateMachine::<ExclFifo>::new();
        assert_eq!(sm.request(1, 0, 9, Mode::Write), Ok(Outcome::Granted));
        assert_eq!(sm.request(2, 5, 14, Mode::Write), Ok(Outcome::Queued));
        // 3 overlaps only the waiting 2, and still waits (FIFO).
        assert_eq!(sm.request(3, 12, 20, Mode::Write), Ok(Outcome::Queued));
        assert_eq!(sm.blockers(3), Ok(vec![2]));
        assert_eq!(sm.release(1), Ok(vec![2]));
        assert_eq!(sm.release(2), Ok(vec![3]));
        assert_eq!(sm.request(2, 0, 0, Mode::Write), Ok(Outcome::Granted));
        assert_eq!(
            sm.request(9, 0, 0, Mode::Read),
            Err(Error::SharedUnsupported {
                flavour: "excl_fifo"
            })
        );
        assert_eq!(
            sm.request(9, 3, 2, Mode::Write),
            Err(Error::InvalidRange { start: 3, last: 2 })
        );
        assert_eq!(
            sm.request(2, 30, 30, Mode::Write),
            Err(Error::DuplicateId(2))
        );
        sm.check();
    }

    #[test]
    fn rw_cancel_uses_seqnum() {
        let mut sm = StateMachine::<Rw>::new();
        assert_eq!(sm.request(1, 0, 0, Mode::Read), Ok(Outcome::Granted));
        assert_eq!(sm.request(2, 0, 5, Mode::Write), Ok(Outcome::Queued));
        assert_eq!(sm.request(3, 3, 5, Mode::Read), Ok(Outcome::Queued));
        assert_eq!(sm.request(4, 4, 4, Mode::Read), Ok(Outcome::Queued));
        assert_eq!(sm.release(2), Err(Error::NotHeld(2)));
        assert_eq!(sm.cancel(1), Err(Error::NotWaiting(1)));
        assert_eq!(sm.cancel(2), Ok(vec![3, 4]));
        assert_eq!(sm.state(1), Some(State::Held));
        sm.check();
    }

    #[test]
    fn rw_downgrade() {
        let mut sm = StateMachine::<Rw>::new();
        assert_eq!(sm.request(1, 0, 9, Mode::Write), Ok(Outcome::Granted));
        assert_eq!(sm.request(2, 0, 0, Mode::Read), Ok(Outcome::Queued));
        assert_eq!(sm.request(3, 1, 1, Mode::Write), Ok(Outcome::Queued));
        assert_eq!(sm.request(4, 2, 2, Mode::Read), Ok(Outcome::Queued));
        assert_eq!(sm.downgrade(1), Ok(vec![2, 4]));
        assert_eq!(sm.downgrade(1), Err(Error::NotWriter(1)));
        assert_eq!(sm.blockers(3), Ok(vec![1]));
        assert_eq!(sm.try_request(5, 9, 9, Mode::Read), Ok(true));
        assert_eq!(sm.try_request(6, 9, 9, Mode::Write), Ok(false));
        assert_eq!(sm.would_grant(1, 1, Mode::Read), Ok(false));
        sm.check();
    }
}
