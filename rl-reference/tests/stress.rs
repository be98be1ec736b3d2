//! Many threads hammering one lock: per-page atomic ownership proves that
//! conflicting ranges are never held together, and the run finishing proves
//! no waiter is lost.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::SeqCst};

use rl_reference::{RangeLock, RwRangeLock};

const PAGES: u64 = 64;

fn threads() -> u64 {
    if cfg!(miri) { 3 } else { 16 }
}

fn ops() -> u64 {
    if cfg!(miri) { 30 } else { 3000 }
}

/// xorshift: deterministic per thread, no dependency.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn range(next: &mut impl FnMut() -> u64) -> (u64, u64) {
    let start = next() % PAGES;
    // Mostly small ranges, sometimes a wide one (a truncate).
    let len = if next().is_multiple_of(16) {
        next() % PAGES
    } else {
        next() % 4
    };
    (start, (start + len).min(PAGES - 1))
}

/// Page owner state: 0 free, > 0 number of readers, -1 writer.
fn enter_write(pages: &[AtomicI32], s: u64, l: u64) {
    for p in &pages[s as usize..=l as usize] {
        assert_eq!(
            p.compare_exchange(0, -1, SeqCst, SeqCst),
            Ok(0),
            "write overlap"
        );
    }
}

fn exit_write(pages: &[AtomicI32], s: u64, l: u64) {
    for p in &pages[s as usize..=l as usize] {
        assert_eq!(p.swap(0, SeqCst), -1);
    }
}

fn enter_read(pages: &[AtomicI32], s: u64, l: u64) {
    for p in &pages[s as usize..=l as usize] {
        assert!(p.fetch_add(1, SeqCst) >= 0, "read under a writer");
    }
}

fn exit_read(pages: &[AtomicI32], s: u64, l: u64) {
    for p in &pages[s as usize..=l as usize] {
        assert!(p.fetch_sub(1, SeqCst) > 0);
    }
}

#[test]
fn stress_range_lock() {
    let lock = RangeLock::new();
    let pages: Vec<AtomicI32> = (0..PAGES).map(|_| AtomicI32::new(0)).collect();
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads() {
            let (lock, pages, done) = (&lock, &pages, &done);
            s.spawn(move || {
                let mut next = rng(t + 1);
                for _ in 0..ops() {
                    let (a, b) = range(&mut next);
                    let g = if next().is_multiple_of(8) {
                        match lock.try_lock(a..=b) {
                            Some(g) => g,
                            None => continue,
                        }
                    } else {
                        lock.lock(a..=b)
                    };
                    enter_write(pages, a, b);
                    std::hint::spin_loop();
                    exit_write(pages, a, b);
                    drop(g);
                    done.fetch_add(1, SeqCst);
                }
            });
        }
    });
    assert!(lock.is_empty());
    assert!(done.load(SeqCst) > 0);
}

#[test]
fn stress_rw_range_lock() {
    let lock = RwRangeLock::new();
    let pages: Vec<AtomicI32> = (0..PAGES).map(|_| AtomicI32::new(0)).collect();
    std::thread::scope(|s| {
        for t in 0..threads() {
            let (lock, pages) = (&lock, &pages);
            s.spawn(move || {
                let mut next = rng(t + 100);
                for _ in 0..ops() {
                    let (a, b) = range(&mut next);
                    match next() % 4 {
                        0 => {
                            let g = lock.write(a..=b);
                            enter_write(pages, a, b);
                            exit_write(pages, a, b);
                            // Downgrade keeps the range: readers may join, writers may not.
                            let r = g.downgrade();
                            enter_read(pages, a, b);
                            exit_read(pages, a, b);
                            drop(r);
                        }
                        1 => {
                            let _g = lock.write(a..=b);
                            enter_write(pages, a, b);
                            exit_write(pages, a, b);
                        }
                        2 if next().is_multiple_of(2) => {
                            if let Some(_g) = lock.try_read(a..=b) {
                                enter_read(pages, a, b);
                                exit_read(pages, a, b);
                            }
                        }
                        _ => {
                            let _g = lock.read(a..=b);
                            enter_read(pages, a, b);
                            exit_read(pages, a, b);
                        }
                    }
                }
            });
        }
    });
    assert!(lock.is_empty());
}

#[test]
fn stress_async_with_cancellation() {
    if cfg!(miri) {
        return; // tokio's multi-thread runtime is too slow under miri
    }
    let lock = std::sync::Arc::new(RwRangeLock::new());
    let pages: std::sync::Arc<Vec<AtomicI32>> =
        std::sync::Arc::new((0..PAGES).map(|_| AtomicI32::new(0)).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (lock, pages) = (lock.clone(), pages.clone());
            tasks.push(tokio::spawn(async move {
                let mut next = rng(t + 1000);
                for _ in 0..500 {
                    let (a, b) = range(&mut next);
                    let write = next().is_multiple_of(2);
                    let cancel = next().is_multiple_of(5);
                    if write {
                        let fut = lock.write_async(a..=b);
                        let g = if cancel {
                            match tokio::time::timeout(std::time::Duration::from_micros(50), fut)
                                .await
                            {
                                Ok(g) => g,
                                Err(_) => continue, // dropped: request withdrawn
                            }
                        } else {
                            fut.await
                        };
                        enter_write(&pages, a, b);
                        tokio::task::yield_now().await;
                        exit_write(&pages, a, b);
                        drop(g);
                    } else {
                        let fut = lock.read_async(a..=b);
                        let g = if cancel {
                            match tokio::time::timeout(std::time::Duration::from_micros(50), fut)
                                .await
                            {
                                Ok(g) => g,
                                Err(_) => continue,
                            }
                        } else {
                            fut.await
                        };
                        enter_read(&pages, a, b);
                        tokio::task::yield_now().await;
                        exit_read(&pages, a, b);
                        drop(g);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    assert!(lock.is_empty());
}
