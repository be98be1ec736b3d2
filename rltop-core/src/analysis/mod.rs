//! Analyses: what is computed from the event stream and the [`Model`].
//!
//! [`engine`] drives the model once and feeds every analysis around each
//! event: the checker ([`check`]: the locking rules, findings with
//! evidence), the statistics ([`stats`]: lock_stat tables, wait chains),
//! histograms ([`hist`]), timelines ([`timeline`]), the what-if replay
//! ([`whatif`]) and the xfstests splitter ([`xfstests`]). The wait-for graph
//! ([`waitfor`]) and the wording of locks and tasks ([`describe`]) are
//! shared by all of them and by the views.
//!
//! [`Model`]: crate::model::Model

pub mod check;
pub mod counts;
pub mod describe;
pub mod engine;
pub mod hist;
pub mod scope;
pub mod stats;
pub mod timeline;
pub mod waitfor;
pub mod whatif;
pub mod xfstests;

pub use check::{Checker, Config, Finding, Kind, Link, MAX_FINDINGS, Severity, Verdict};
pub use engine::{Analysis, Engine};
