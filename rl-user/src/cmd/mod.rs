//! The `rltop` sub-commands: each reads a source, drives the pipeline, and
//! renders its result. They return the process exit code.

pub mod check;
pub mod dump;
pub mod import;
pub mod live;
pub mod probes;
pub mod record;
pub mod report;
pub mod signals;
pub mod simulate;
