//! loom model checks of the locks:
//! `RUSTFLAGS="--cfg loom" cargo test -p rl-reference --test loom --release`.
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::thread;
use rl_reference::{RangeLock, RwRangeLock};

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Two threads on overlapping ranges never run their critical sections
/// together, and neither is left asleep (loom fails a model that ends with
/// a thread parked forever).
#[test]
fn mutual_exclusion_and_no_lost_wakeup() {
    loom::model(|| {
        let lock = Arc::new(RangeLock::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let critical = |inside: &AtomicUsize| {
            assert_eq!(
                inside.fetch_add(1, SeqCst),
                0,
                "overlapping ranges held together"
            );
            inside.fetch_sub(1, SeqCst);
        };
        let th = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let _g = lock.lock(0..=4);
                critical(&inside);
            })
        };
        {
            let _g = lock.lock(4..=9);
            critical(&inside);
        }
        th.join().unwrap();
        assert!(lock.is_empty());
    });
}

/// FIFO: B queued behind a *waiting* A (overlapping B, not the holder's
/// range in full) is granted only after A is done.
#[test]
fn fifo_behind_waiting_request() {
    loom::model(|| {
        let lock = Arc::new(RangeLock::new());
        let a_done = Arc::new(AtomicBool::new(false));
        let g = lock.lock(0..=0);
        // A queues first (polled once), then B in another thread.
        let mut fa = pin!(lock.lock_async(0..=3));
        assert!(poll_once(fa.as_mut()).is_pending());
        let th = {
            let (lock, a_done) = (lock.clone(), a_done.clone());
            thread::spawn(move || {
                let _b = lock.lock(3..=5);
                assert!(a_done.load(SeqCst), "B overtook the earlier waiting A");
            })
        };
        drop(g);
        let Poll::Ready(a) = poll_once(fa.as_mut()) else {
            panic!("A not granted after release")
        };
        a_done.store(true, SeqCst);
        drop(a);
        th.join().unwrap();
    });
}

/// Dropping a queued future withdraws it and wakes what it blocked, before
/// or after the holder's release, racing with the blocked thread's enqueue.
/// A future dropped after being granted but before being polled again
/// releases instead.
fn cancellation(cancel_first: bool) {
    loom::model(move || {
        let lock = Arc::new(RangeLock::new());
        let g = lock.lock(0..=9);
        let mut fa = Box::pin(lock.lock_async(0..=9));
        assert!(poll_once(fa.as_mut()).is_pending());
        let b = {
            let lock = lock.clone();
            thread::spawn(move || {
                let _b = lock.lock(5..=5);
            })
        };
        if cancel_first {
            drop(fa);
            drop(g);
        } else {
            drop(g);
            drop(fa);
        }
        b.join().unwrap();
        assert!(lock.is_empty());
    });
}

#[test]
fn cancel_then_release() {
    cancellation(true);
}

#[test]
fn release_then_cancel() {
    cancellation(false);
}

/// Readers share, a writer excludes both; everyone finishes.
#[test]
fn rw_readers_share_writer_excludes() {
    loom::model(|| {
        let lock = Arc::new(RwRangeLock::new());
        let readers = Arc::new(AtomicUsize::new(0));
        let writer = Arc::new(AtomicBool::new(false));
        let r = {
            let (lock, readers, writer) = (lock.clone(), readers.clone(), writer.clone());
            thread::spawn(move || {
                let _g = lock.read(0..=5);
                readers.fetch_add(1, SeqCst);
                assert!(!writer.load(SeqCst));
                readers.fetch_sub(1, SeqCst);
            })
        };
        {
            let _g = lock.write(5..=9);
            writer.store(true, SeqCst);
            assert_eq!(readers.load(SeqCst), 0);
            writer.store(false, SeqCst);
        }
        let _g = lock.read(0..=9);
        r.join().unwrap();
    });
}

/// A downgraded writer lets a waiting reader in while it still holds.
#[test]
fn downgrade_admits_reader() {
    loom::model(|| {
        let lock = Arc::new(RwRangeLock::new());
        let w = lock.write(0..=9);
        let r = {
            let lock = lock.clone();
            thread::spawn(move || drop(lock.read(3..=3)))
        };
        let held = w.downgrade();
        r.join().unwrap(); // would deadlock if the reader were not woken
        drop(held);
    });
}

/// One release wakes two waiters on disjoint parts of the range; a third
/// thread's unrelated range never waits.
#[test]
fn release_wakes_every_waiter_it_unblocks() {
    loom::model(|| {
        let lock = Arc::new(RangeLock::new());
        let g = lock.lock(0..=9);
        let spawn = |r: std::ops::RangeInclusive<u64>| {
            let lock = lock.clone();
            thread::spawn(move || drop(lock.lock(r)))
        };
        let (a, b) = (spawn(0..=0), spawn(9..=9));
        assert!(lock.try_lock(20..=20).is_some());
        drop(g);
        a.join().unwrap();
        b.join().unwrap();
    });
}
