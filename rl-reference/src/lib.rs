#![doc = include_str!("../README.md")]

mod core;
mod flavour;
mod lock;
mod raw;
mod state_machine;
mod sync;

pub use flavour::{ExclFifo, Flavour, Mode, Rw};
pub use lock::{
    LockFuture, RangeGuard, RangeLock, ReadFuture, ReadGuard, RwRangeLock, WriteFuture, WriteGuard,
};
pub use state_machine::{Error, Outcome, Request, State, StateMachine};

/// The exclusive FIFO flavour (Kara 2013, Lustre): state machine and lock.
pub mod excl_fifo {
    /// The exclusive FIFO oracle.
    pub type StateMachine = crate::StateMachine<crate::ExclFifo>;
    pub use crate::ExclFifo as Flavour;
    pub use crate::RangeLock as Lock;
}

/// The reader/writer flavour (Bueso 2017-2019): state machine and lock.
pub mod rw {
    /// The reader/writer oracle.
    pub type StateMachine = crate::StateMachine<crate::Rw>;
    pub use crate::Rw as Flavour;
    pub use crate::RwRangeLock as Lock;
}
