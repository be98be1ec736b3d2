//! Lock flavours: which requests conflict with which.

use std::fmt;

/// The mode of a request.
///
/// Exclusive flavours ([`ExclFifo`]) accept only [`Mode::Write`]
/// (also spelled [`Mode::EXCLUSIVE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Shared: conflicts only with writers (`range_read_lock`).
    Read,
    /// Exclusive: conflicts with every overlapping request (`range_write_lock`, `range_lock`).
    Write,
}

impl Mode {
    /// The only mode of the exclusive flavours.
    pub const EXCLUSIVE: Mode = Mode::Write;
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Read => "read",
            Mode::Write => "write",
        })
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A range-lock flavour: the conflict rule between two overlapping requests.
///
/// Every flavour shares the kernel's blocking-count rule: a request counts the
/// overlapping requests *already queued* (held or waiting) that conflict with it,
/// and is granted when that count reaches zero. The flavour only decides what
/// "conflict" means. Sealed: the two kernel flavours are [`ExclFifo`] and [`Rw`].
pub trait Flavour: sealed::Sealed + Send + Sync + 'static {
    /// Short name, used in error messages.
    const NAME: &'static str;
    /// Whether [`Mode::Read`] requests are supported.
    const SHARED: bool;
    /// Whether two overlapping requests in these modes exclude each other
    /// (symmetric).
    fn conflicts(a: Mode, b: Mode) -> bool;
}

/// Kara 2013 (`lib/range_lock.c`) and Lustre (`lustre/obdclass/range_lock.c`):
/// exclusive only; a request waits for every earlier-queued overlapping request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExclFifo;

/// Bueso 2017-2019 (`kernel/locking/range_rwlock.c`, `range_lock.c`):
/// reader/writer; a writer waits for every earlier overlapping request, a
/// reader only for earlier overlapping writers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rw;

impl sealed::Sealed for ExclFifo {}
impl sealed::Sealed for Rw {}

impl Flavour for ExclFifo {
    const NAME: &'static str = "excl_fifo";
    const SHARED: bool = false;
    #[inline]
    fn conflicts(_: Mode, _: Mode) -> bool {
        true
    }
}

impl Flavour for Rw {
    const NAME: &'static str = "rw";
    const SHARED: bool = true;
    #[inline]
    fn conflicts(a: Mode, b: Mode) -> bool {
        a == Mode::Write || b == Mode::Write
    }
}
