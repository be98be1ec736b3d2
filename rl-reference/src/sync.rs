//! The sync primitives the locks use: std normally, loom's under `--cfg loom`.

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, atomic::AtomicBool};
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current, park};

#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, atomic::AtomicBool};
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current, park};

/// How many times a blocked thread polls its grant flag before parking: a
/// lock handed over within a microsecond or two costs no sleep and no
/// wake-up syscall. None under loom (it would only multiply interleavings).
#[cfg(not(loom))]
pub(crate) const SPINS: u32 = 1000;
#[cfg(loom)]
pub(crate) const SPINS: u32 = 0;
