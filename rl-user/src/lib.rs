//! rltop: see and check range locking in a running Linux kernel.
//!
//! This crate is the `rltop` binary's: the live kernel side and the edges.
//! Everything pure (events, trace files, the model, analyses, views, the
//! simulator) is `rltop-core`'s, re-exported here under the same names.
//!
//! ```text
//!   probe (live kernel) ─┐
//!   trace (.rlt, JSONL) ─┼─> events ─> model ─> analysis ─> views ─> cmd, term
//!   sim                  ─┘       └─> trace (recorder)
//! ```
//!
//! - [`probe`]: loads the eBPF programs, resolves kernel layouts (tracefs, BTF), collects events.
//! - [`player`]: feeds a trace or the simulator to the TUI in (scaled) real time.
//! - [`serve`]: the OpenMetrics endpoint of `record --metrics`.
//! - [`term`]: the terminal: set-up and restore, the drawing thread's loop.
//! - [`cli`], [`cmd`]: the command line and the `rltop` sub-commands.

pub use rltop_core::{analysis, clock, events, model, sim, trace, views};

/// `rltop --version`: the version, the commit it was built from and the
/// SHA-256 of the eBPF object inside it (both from `build.rs`), so that a
/// binary copied into a test VM says what it is.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RLTOP_COMMIT"),
    ", eBPF object sha256:",
    env!("RLTOP_EBPF_SHA256"),
    ")"
);

pub mod cli;
pub mod cmd;
pub mod player;
pub mod probe;
pub mod serve;
pub mod signals;
pub mod term;

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
