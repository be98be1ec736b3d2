//! rltop's core: everything that is plain Rust over events, without eBPF,
//! a build script or a terminal. The `rltop` binary (crate `rl-user`) adds
//! the live probes, the terminal and the commands.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//!   probe (live kernel, rl-user) ─┐
//!   trace (.rlt, JSONL)          ─┼─> events ─> model ─> analysis ─> views
//!   sim (reference lock)         ─┘       └─> trace (recorder)
//! ```
//!
//! - [`events`]: the [`events::Event`] every source yields; raw-record decoding, JSONL, text.
//! - [`trace`]: the `.rlt` trace file format v1 (see `docs/trace-format.md`).
//! - [`model`]: the current state rebuilt from events, driving the reference range lock per tree.
//! - [`analysis`]: the engine that drives the model for every analysis, the rules
//!   ([`analysis::check`]), statistics, histograms, timelines, what-if.
//! - [`views`]: what people read: findings, reports, histograms, timelines, metrics, and the
//!   TUI's snapshot, view state and renderers ([`views::tui`]).
//! - [`sim`]: a workload on the reference range lock, written as events.
//! - [`clock`]: the monotonic clock sources stamp events with.

pub mod analysis;
pub mod clock;
pub mod events;
pub mod model;
pub mod sim;
pub mod trace;
pub mod views;

#[cfg(test)]
mod testing;
