//! The real locks: [`RangeLock`] (exclusive, FIFO) and [`RwRangeLock`]
//! (reader/writer), blocking, try and async, on the state machine's rules.

use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::flavour::{ExclFifo, Mode, Rw};
use crate::raw::{Raw, RawAcquire};

// Locks are shared between threads, guards may be unlocked on another
// thread, futures may move between tokio workers.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RangeLock>();
    send_sync::<RwRangeLock>();
    send_sync::<RangeGuard<'_>>();
    send_sync::<ReadGuard<'_>>();
    send_sync::<WriteGuard<'_>>();
    send_sync::<LockFuture<'_>>();
    send_sync::<ReadFuture<'_>>();
    send_sync::<WriteFuture<'_>>();
};

#[inline]
#[track_caller]
fn bounds(range: &RangeInclusive<u64>) -> (u64, u64) {
    let (start, last) = (*range.start(), *range.end());
    assert!(
        start <= last,
        "empty range {start}..={last}: start must be <= last"
    );
    (start, last)
}

/// An exclusive range lock over `u64` indices with FIFO fairness
/// (the Kara 2013 / Lustre rules, flavour [`ExclFifo`]).
///
/// A request waits for every earlier request whose range overlaps it, held
/// **or still waiting**, so no request can starve and overlapping requests are
/// granted strictly in arrival order. Requests on disjoint ranges never wait
/// for each other.
///
/// Guards are `Send`: a range may be unlocked on another thread than the one
/// that locked it (as the kernel's direct IO does from bio completion).
///
/// ```
/// use rl_reference::RangeLock;
///
/// let lock = RangeLock::new();
/// let a = lock.lock(0..=9);
/// let b = lock.lock(10..=19);          // disjoint: granted at once
/// assert!(lock.try_lock(5..=12).is_none());
/// drop(a);
/// drop(b);
/// assert!(lock.try_lock(5..=12).is_some());
/// ```
pub struct RangeLock {
    raw: Raw<ExclFifo>,
}

/// Guard of a [`RangeLock`] range; unlocks on drop.
#[must_use = "the range is unlocked as soon as the guard is dropped"]
pub struct RangeGuard<'a> {
    lock: &'a RangeLock,
    /// Only the slot: a 16-byte guard is returned in registers (with the
    /// range inline it went through the stack, a few ns per lock); the range
    /// is in the slot's node.
    slot: u32,
}

/// Future of [`RangeLock::lock_async`]. Cancel-safe: dropping it withdraws
/// the request and wakes the requests that were waiting behind it.
#[must_use = "futures do nothing unless polled"]
pub struct LockFuture<'a> {
    lock: &'a RangeLock,
    inner: RawAcquire<'a, ExclFifo>,
}

impl Default for RangeLock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RangeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw.fmt_with("RangeLock", f)
    }
}

impl RangeLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        Self { raw: Raw::new() }
    }

    /// Lock `range` (inclusive), blocking the thread until every earlier
    /// overlapping request is gone.
    ///
    /// Like any lock, locking a range that overlaps one this thread already
    /// holds (or waits for) deadlocks.
    ///
    /// # Panics
    /// If `range` is empty (`start > last`).
    #[track_caller]
    pub fn lock(&self, range: RangeInclusive<u64>) -> RangeGuard<'_> {
        let (start, last) = bounds(&range);
        let slot = self.raw.lock(start, last, Mode::Write);
        RangeGuard { lock: self, slot }
    }

    /// Lock `range` if that would not wait, i.e. nothing overlapping is held
    /// or queued.
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn try_lock(&self, range: RangeInclusive<u64>) -> Option<RangeGuard<'_>> {
        let (start, last) = bounds(&range);
        let slot = self.raw.try_lock(start, last, Mode::Write)?;
        Some(RangeGuard { lock: self, slot })
    }

    /// Lock `range` asynchronously. The request joins the queue when the
    /// future is first polled; dropping the future cancels it.
    ///
    /// # Panics
    /// If `range` is empty (when called, not when polled).
    #[track_caller]
    pub fn lock_async(&self, range: RangeInclusive<u64>) -> LockFuture<'_> {
        let (start, last) = bounds(&range);
        LockFuture {
            lock: self,
            inner: RawAcquire::new(&self.raw, start, last, Mode::Write),
        }
    }

    /// Whether a held range overlaps `range` (a snapshot).
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn is_locked(&self, range: RangeInclusive<u64>) -> bool {
        let (start, last) = bounds(&range);
        self.raw.is_locked(start, last)
    }

    /// Number of queued requests, held and waiting (a snapshot).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Nothing is held or waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of waiting requests (a snapshot).
    pub fn waiting(&self) -> usize {
        self.raw.waiting()
    }
}

impl RangeGuard<'_> {
    /// The locked range.
    pub fn range(&self) -> RangeInclusive<u64> {
        self.lock.raw.range(self.slot)
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.unlock(self.slot);
    }
}

impl fmt::Debug for RangeGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RangeGuard").field(&self.range()).finish()
    }
}

impl<'a> Future for LockFuture<'a> {
    type Output = RangeGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RangeGuard<'a>> {
        let this = self.get_mut();
        let lock = this.lock;
        this.inner
            .poll_acquire(cx)
            .map(|slot| RangeGuard { lock, slot })
    }
}

impl fmt::Debug for LockFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockFuture")
            .field(&(self.inner.start()..=self.inner.last()))
            .finish()
    }
}

/// A reader/writer range lock over `u64` indices (the Bueso rules, flavour
/// [`Rw`]).
///
/// A writer waits for every earlier overlapping request; a reader waits only
/// for earlier overlapping writers, held **or queued**, so readers cannot
/// starve writers and nobody steals the lock. Overlapping readers share.
///
/// ```
/// use rl_reference::RwRangeLock;
///
/// let lock = RwRangeLock::new();
/// let r1 = lock.read(0..=99);
/// let r2 = lock.read(50..=149);        // readers share
/// assert!(lock.try_write(90..=90).is_none());
/// let w = lock.write(150..=199);       // disjoint writer
/// drop((r1, r2, w));
/// let w = lock.write(0..=199);
/// let r = w.downgrade();               // keep it, let readers in
/// assert!(lock.try_read(10..=10).is_some());
/// drop(r);
/// ```
pub struct RwRangeLock {
    raw: Raw<Rw>,
}

/// Shared guard of an [`RwRangeLock`] range; unlocks on drop.
#[must_use = "the range is unlocked as soon as the guard is dropped"]
pub struct ReadGuard<'a> {
    lock: &'a RwRangeLock,
    /// Only the slot: a 16-byte guard is returned in registers (with the
    /// range inline it went through the stack, a few ns per lock); the range
    /// is in the slot's node.
    slot: u32,
}

/// Exclusive guard of an [`RwRangeLock`] range; unlocks on drop.
#[must_use = "the range is unlocked as soon as the guard is dropped"]
pub struct WriteGuard<'a> {
    lock: &'a RwRangeLock,
    /// Only the slot: a 16-byte guard is returned in registers (with the
    /// range inline it went through the stack, a few ns per lock); the range
    /// is in the slot's node.
    slot: u32,
}

/// Future of [`RwRangeLock::read_async`]; cancel-safe like [`LockFuture`].
#[must_use = "futures do nothing unless polled"]
pub struct ReadFuture<'a> {
    lock: &'a RwRangeLock,
    inner: RawAcquire<'a, Rw>,
}

/// Future of [`RwRangeLock::write_async`]; cancel-safe like [`LockFuture`].
#[must_use = "futures do nothing unless polled"]
pub struct WriteFuture<'a> {
    lock: &'a RwRangeLock,
    inner: RawAcquire<'a, Rw>,
}

impl Default for RwRangeLock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RwRangeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw.fmt_with("RwRangeLock", f)
    }
}

impl RwRangeLock {
    /// An unlocked lock.
    pub fn new() -> Self {
        Self { raw: Raw::new() }
    }

    /// Lock `range` shared, blocking until no earlier overlapping writer
    /// (held or queued) remains.
    ///
    /// # Panics
    /// If `range` is empty (`start > last`).
    #[track_caller]
    pub fn read(&self, range: RangeInclusive<u64>) -> ReadGuard<'_> {
        let (start, last) = bounds(&range);
        let slot = self.raw.lock(start, last, Mode::Read);
        ReadGuard { lock: self, slot }
    }

    /// Lock `range` exclusively, blocking until no earlier overlapping
    /// request remains.
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn write(&self, range: RangeInclusive<u64>) -> WriteGuard<'_> {
        let (start, last) = bounds(&range);
        let slot = self.raw.lock(start, last, Mode::Write);
        WriteGuard { lock: self, slot }
    }

    /// Shared lock if it would not wait (no overlapping writer held or queued).
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn try_read(&self, range: RangeInclusive<u64>) -> Option<ReadGuard<'_>> {
        let (start, last) = bounds(&range);
        let slot = self.raw.try_lock(start, last, Mode::Read)?;
        Some(ReadGuard { lock: self, slot })
    }

    /// Exclusive lock if it would not wait (nothing overlapping queued).
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn try_write(&self, range: RangeInclusive<u64>) -> Option<WriteGuard<'_>> {
        let (start, last) = bounds(&range);
        let slot = self.raw.try_lock(start, last, Mode::Write)?;
        Some(WriteGuard { lock: self, slot })
    }

    /// Shared lock, asynchronously; queued on first poll, cancelled on drop.
    ///
    /// # Panics
    /// If `range` is empty (when called).
    #[track_caller]
    pub fn read_async(&self, range: RangeInclusive<u64>) -> ReadFuture<'_> {
        let (start, last) = bounds(&range);
        ReadFuture {
            lock: self,
            inner: RawAcquire::new(&self.raw, start, last, Mode::Read),
        }
    }

    /// Exclusive lock, asynchronously; queued on first poll, cancelled on drop.
    ///
    /// # Panics
    /// If `range` is empty (when called).
    #[track_caller]
    pub fn write_async(&self, range: RangeInclusive<u64>) -> WriteFuture<'_> {
        let (start, last) = bounds(&range);
        WriteFuture {
            lock: self,
            inner: RawAcquire::new(&self.raw, start, last, Mode::Write),
        }
    }

    /// Whether a held range (read or write) overlaps `range` (a snapshot).
    ///
    /// # Panics
    /// If `range` is empty.
    #[track_caller]
    pub fn is_locked(&self, range: RangeInclusive<u64>) -> bool {
        let (start, last) = bounds(&range);
        self.raw.is_locked(start, last)
    }

    /// Number of queued requests, held and waiting (a snapshot).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Nothing is held or waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of waiting requests (a snapshot).
    pub fn waiting(&self) -> usize {
        self.raw.waiting()
    }
}

impl ReadGuard<'_> {
    /// The locked range.
    pub fn range(&self) -> RangeInclusive<u64> {
        self.lock.raw.range(self.slot)
    }
}

impl<'a> WriteGuard<'a> {
    /// The locked range.
    pub fn range(&self) -> RangeInclusive<u64> {
        self.lock.raw.range(self.slot)
    }

    /// Become a reader without letting a writer in (`range_downgrade_write`):
    /// later overlapping readers that waited only for this writer are granted.
    pub fn downgrade(self) -> ReadGuard<'a> {
        let this = std::mem::ManuallyDrop::new(self);
        this.lock.raw.downgrade(this.slot);
        ReadGuard {
            lock: this.lock,
            slot: this.slot,
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.unlock(self.slot);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.lock.raw.unlock(self.slot);
    }
}

impl fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadGuard").field(&self.range()).finish()
    }
}

impl fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteGuard").field(&self.range()).finish()
    }
}

impl<'a> Future for ReadFuture<'a> {
    type Output = ReadGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReadGuard<'a>> {
        let this = self.get_mut();
        let lock = this.lock;
        this.inner
            .poll_acquire(cx)
            .map(|slot| ReadGuard { lock, slot })
    }
}

impl<'a> Future for WriteFuture<'a> {
    type Output = WriteGuard<'a>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WriteGuard<'a>> {
        let this = self.get_mut();
        let lock = this.lock;
        this.inner
            .poll_acquire(cx)
            .map(|slot| WriteGuard { lock, slot })
    }
}

impl fmt::Debug for ReadFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadFuture")
            .field(&(self.inner.start()..=self.inner.last()))
            .finish()
    }
}

impl fmt::Debug for WriteFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WriteFuture")
            .field(&(self.inner.start()..=self.inner.last()))
            .finish()
    }
}
