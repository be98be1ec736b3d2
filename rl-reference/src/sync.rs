//! The sync primitives the locks use: std normally, loom's under `--cfg loom`.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, atomic::AtomicBool};

/// Lock, ignoring poisoning: the critical sections cannot panic half-way
/// through an update (only allocation failure could).
#[cfg(loom)]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current, park};

#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, atomic::AtomicBool};

/// Lock (parking_lot mutexes do not poison).
#[cfg(not(loom))]
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current, park};

/// How many times a blocked thread polls its grant flag before parking (the
/// last few polls yield the CPU first, so a spinning waiter does not starve
/// the holder on a busy machine): a quick handoff costs no sleep and no
/// wake-up syscall. None under loom (it would only multiply interleavings).
#[cfg(not(loom))]
pub(crate) const SPINS: u32 = 1000;
#[cfg(loom)]
pub(crate) const SPINS: u32 = 0;
