//! The live TUI (`rltop`, `rltop replay`, `rltop demo`).
//!
//! - [`pipeline`]: the analyses fed event by event, on their own thread;
//!   builds [`snapshot::Snapshot`]s at most ~20 times a second.
//! - [`snapshot`]: the plain data one frame shows (pure, no I/O).
//! - [`app`]: view state and key handling (pure).
//! - [`render`]: draws a snapshot (pure, tested with `TestBackend`).
//! - [`term`]: terminal set-up and restore (panic, Ctrl-C, `q`).
//! - [`ui`]: the drawing thread's loop: input, snapshots, frames.

pub mod app;
pub mod pipeline;
pub mod render;
pub mod snapshot;
pub mod term;
pub mod ui;
