//! The live TUI (`rltop`, `rltop replay`, `rltop demo`).
//!
//! - [`pipeline`]: the analyses fed event by event, on their own thread;
//!   builds [`snapshot::Snapshot`]s at most ~20 times a second.
//! - [`snapshot`]: the plain data one frame shows (pure, no I/O).
//! - [`app`]: view state and key handling (pure).
//! - [`render`]: draws a snapshot (pure, tested with `TestBackend`).
//!
//! The terminal itself (set-up and restore, the drawing thread's loop) is
//! the binary's (`rl-user/src/term`).

pub mod app;
pub mod pipeline;
pub mod render;
pub mod snapshot;
