//! The lock engine shared by [`crate::RangeLock`] and [`crate::RwRangeLock`]:
//! the state machine's core behind a mutex, plus one parked waiter per
//! waiting request.
//!
//! Only the waiters whose blocking count reaches zero are woken, after the
//! mutex is dropped. A blocked thread owns a flag that the granter sets under
//! the mutex; it spins on it briefly, then parks until it is set (so spurious
//! wake-ups and stale unpark tokens are harmless). A task re-checks its count
//! under the mutex when polled.

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::task::{Context, Poll, Waker};

use crate::core::{Core, NIL};
use crate::flavour::{Flavour, Mode};
use crate::sync::{Arc, AtomicBool, Mutex, MutexGuard, SPINS, Thread, current, park};

/// Who to wake when a waiting request is granted.
#[derive(Default)]
pub(crate) enum Waiter {
    /// Nobody (held, or not parked yet).
    #[default]
    None,
    /// A thread blocked in `lock`, and the flag it spins/parks on.
    Thread(Thread, Arc<AtomicBool>),
    /// A task awaiting a lock future.
    Task(Waker),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::None => {}
            Waiter::Thread(t, _) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
    }
}

/// Waiters to wake once the mutex is dropped; no allocation for one.
#[derive(Default)]
struct Wakeups {
    first: Waiter,
    rest: Vec<Waiter>,
}

impl Wakeups {
    /// Called under the mutex for a request just granted.
    fn push(&mut self, w: &mut Waiter) {
        let w = std::mem::take(w);
        if let Waiter::Thread(_, granted) = &w {
            granted.store(true, Release);
        }
        if matches!(self.first, Waiter::None) {
            self.first = w;
        } else {
            self.rest.push(w);
        }
    }

    fn wake(self) {
        self.first.wake();
        for w in self.rest {
            w.wake();
        }
    }
}

pub(crate) struct Raw<F> {
    core: Mutex<Core<F, Waiter>>,
}

impl<F: Flavour> Raw<F> {
    pub(crate) fn new() -> Self {
        Self {
            core: Mutex::new(Core::new()),
        }
    }

    #[inline]
    fn core(&self) -> MutexGuard<'_, Core<F, Waiter>> {
        crate::sync::lock(&self.core)
    }

    /// Block until `[start, last]` is granted; returns the slot.
    #[inline]
    pub(crate) fn lock(&self, start: u64, last: u64, mode: Mode) -> u32 {
        let mut core = self.core();
        let (slot, blocking) = core.insert(start, last, mode, Waiter::None);
        if blocking == 0 {
            return slot;
        }
        Self::wait(core, slot)
    }

    /// The slow path of [`lock`](Self::lock), out of line so that the
    /// uncontended path inlines into the caller.
    #[cold]
    #[inline(never)]
    #[cfg_attr(
        loom,
        allow(clippy::reversed_empty_ranges, clippy::absurd_extreme_comparisons)
    )] // SPINS = 0
    fn wait(mut core: MutexGuard<'_, Core<F, Waiter>>, slot: u32) -> u32 {
        let granted = Arc::new(AtomicBool::new(false));
        *core.payload_mut(slot) = Waiter::Thread(current(), granted.clone());
        drop(core);
        // The granter sets the flag under the mutex, after the count reached
        // 0, then unparks us: the flag alone says we own the range.
        for i in 0..SPINS {
            if granted.load(Acquire) {
                return slot;
            }
            if i + 4 < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        while !granted.load(Acquire) {
            park();
        }
        slot
    }

    pub(crate) fn try_lock(&self, start: u64, last: u64, mode: Mode) -> Option<u32> {
        let mut core = self.core();
        core.insert_if(start, last, mode, Waiter::None, true)
            .map(|(slot, _)| slot)
    }

    /// Remove `slot`, held or waiting, and wake whoever that grants.
    #[inline]
    pub(crate) fn unlock(&self, slot: u32) {
        let mut core = self.core();
        if core.waiting() == 0 {
            // Fast path: nobody waits, so nobody can be granted. The removed
            // payload is `Waiter::None` (only waiting requests have one).
            core.remove(slot, |_, _| unreachable!("nothing waits"));
            return;
        }
        let mut wakeups = Wakeups::default();
        core.remove(slot, |_, n| wakeups.push(n));
        drop(core);
        wakeups.wake();
    }

    pub(crate) fn downgrade(&self, slot: u32) {
        let mut wakeups = Wakeups::default();
        {
            let mut core = self.core();
            core.downgrade(slot, |_, n| wakeups.push(n));
        }
        wakeups.wake();
    }

    /// The range of queued request `slot`.
    pub(crate) fn range(&self, slot: u32) -> std::ops::RangeInclusive<u64> {
        let core = self.core();
        let n = core.node(slot);
        n.start..=n.last
    }

    /// Whether a held request overlaps `[start, last]`.
    pub(crate) fn is_locked(&self, start: u64, last: u64) -> bool {
        let mut held = false;
        self.core()
            .for_each_overlap(start, last, |_, n| held |= n.blocking == 0);
        held
    }

    pub(crate) fn len(&self) -> usize {
        self.core().len()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.core().waiting()
    }

    pub(crate) fn fmt_with(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core();
        let mut list = Vec::with_capacity(core.len());
        for s in core.slots() {
            let n = core.node(s);
            list.push((
                n.start..=n.last,
                n.mode,
                if n.blocking == 0 { "held" } else { "waiting" },
            ));
        }
        f.debug_struct(name).field("requests", &list).finish()
    }
}

/// The state of a lock future. Queues itself on first poll; dropping it
/// while queued withdraws the request (waking whoever it blocked).
pub(crate) struct RawAcquire<'a, F: Flavour> {
    raw: &'a Raw<F>,
    start: u64,
    last: u64,
    mode: Mode,
    /// `NIL` before the first poll and after completion.
    slot: u32,
    done: bool,
}

impl<'a, F: Flavour> RawAcquire<'a, F> {
    pub(crate) fn new(raw: &'a Raw<F>, start: u64, last: u64, mode: Mode) -> Self {
        Self {
            raw,
            start,
            last,
            mode,
            slot: NIL,
            done: false,
        }
    }

    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// Poll for the grant; `Ready(slot)` transfers the slot to the caller.
    ///
    /// # Panics
    /// If polled again after returning `Ready`.
    pub(crate) fn poll_acquire(&mut self, cx: &mut Context<'_>) -> Poll<u32> {
        assert!(!self.done, "range lock future polled after completion");
        let mut core = self.raw.core();
        if self.slot == NIL {
            let (slot, blocking) = core.insert(self.start, self.last, self.mode, Waiter::None);
            if blocking == 0 {
                self.done = true;
                return Poll::Ready(slot);
            }
            *core.payload_mut(slot) = Waiter::Task(cx.waker().clone());
            self.slot = slot;
            return Poll::Pending;
        }
        if core.node(self.slot).blocking == 0 {
            self.done = true;
            return Poll::Ready(std::mem::replace(&mut self.slot, NIL));
        }
        match core.payload_mut(self.slot) {
            Waiter::Task(w) if w.will_wake(cx.waker()) => {}
            p => *p = Waiter::Task(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<F: Flavour> Drop for RawAcquire<'_, F> {
    fn drop(&mut self) {
        if self.slot != NIL {
            // Cancelled while queued (or granted but never polled again):
            // either way removal wakes the requests that counted us.
            self.raw.unlock(self.slot);
        }
    }
}
