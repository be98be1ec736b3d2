//! rltop: see and check range locking in a running Linux kernel.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//!   probe (live kernel) ─┐
//!   trace (.rlt, JSONL) ─┼─> events ─> model ─> analyses ─> views (cmd)
//!                        └─> trace (recorder)
//! ```
//!
//! - [`events`]: the [`events::Event`] every source yields; raw-record decoding, JSONL, text.
//! - [`probe`]: loads the eBPF programs, resolves kernel layouts (tracefs, BTF), collects events.
//! - [`trace`]: the `.rlt` trace file format v1 (see `docs/trace-format.md`).
//! - [`model`]: the current state rebuilt from events, driving the reference range lock per tree.
//! - [`analysis`]: findings (ordering, conformance, wait-for cycles, stalls, leaks) with evidence.
//! - [`views`]: what people read: findings (text with lockdep-shaped reports, JSON),
//!   contention reports, and the live TUI ([`views::tui`]).
//! - [`cmd`]: the `rltop` sub-commands.

pub mod analysis;
pub mod cli;
pub mod cmd;
pub mod events;
pub mod model;
pub mod probe;
pub mod sim;
pub mod trace;
pub mod views;

/// An error the user can act on: printed as one line, exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// An error and its causes on one line, `a: b: c`, leaving out a cause
/// whose text its parent already shows (our errors print their source).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !prev.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
        prev = s;
    }
    out
}

/// Shorthand for returning a [`UserError`].
pub fn user_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}
