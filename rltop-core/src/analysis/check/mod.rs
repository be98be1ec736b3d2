//! The checker: the locking rules, one [`Rule`] per finding kind, run as
//! one [`Analysis`] over the model.
//!
//! Each rule lives in its own file and owns its state; it sees the events
//! it asks for ([`Rule::before_on`], [`Rule::after_on`]), time moving
//! ([`Rule::tick`]) and the end of the stream ([`Rule::finish`]), and
//! reports [`Draft`]s to the [`Ledger`]. The ledger decides what a draft
//! becomes: certain or not (gaps, tainted tasks, a recording's unseen
//! start), folded into an earlier finding, counted past the cap, or
//! withdrawn later. The rules' messages share one describer
//! ([`crate::analysis::describe`]) with the TUI and `report`.
//!
//! Nothing here allocates on the uncontended path: a rule is only called
//! for the event kinds it asked for, the wait-for graph is only walked when
//! a new wait edge appears ([`crate::analysis::waitfor`]), and the
//! reference lock is only asked for blockers/conflicts when the cheap test
//! fails.
//!
//! # Certainty and lost events
//!
//! Lost events never produce a false error (`docs/design.md`, principle 3). A *gap* is
//! a `lost` event or a damaged part of the trace reported by the reader. A
//! finding is `certain: false`, and does not fail `rltop check`, when a gap
//! could explain it:
//!
//! - Findings built on events that *were* seen (ordering_inversion,
//!   conflicting_grant, page_in_locked_range, fifo_violation, deadlock,
//!   leaked_lock, fault_during_punch) are uncertain when a gap lies at or
//!   after their earliest evidence event: a release, cancel or end event
//!   lost in between would explain them.
//! - Findings built on the *absence* of earlier events (unlock_unheld of a
//!   lock never seen: its request may have been lost; stall: a blocking
//!   request may have been lost) are uncertain after any gap at all. A
//!   release of a lock seen requested but never acquired is uncertain when a
//!   gap follows its request (a lost rl_acquired).
//! - leaked_lock is uncertain while a DIO on the same file is in flight
//!   (its completion may still release the lock).
//! - A `lost` event may be reported after the drops it counts: with a
//!   `since` time, every finding made since then is uncertain too.
//! - A gap taints every task busy at that moment (holding, waiting, or with
//!   IO, punch or mmap_lock in flight): the model may misjudge it (a lost
//!   release keeps a lock held, a lost dio_begin makes an IO's lock look
//!   like the task's). Its findings are uncertain until the model sees it
//!   idle again.
//! - A trace recorded live (header source `record`) starts mid-stream: locks
//!   may have been held before it began. There, unlock_unheld of a lock never
//!   seen is uncertain, stall and fifo_violation findings on a tree where
//!   an unknown lock was released are uncertain, and so is a stall whose
//!   waiter still waits at the end (its blocker may predate the trace).
//! - fifo_violation is certain only where both requests were seen entering
//!   the queue (`rl_queued`): the request event fires at the lock call's
//!   entry, and a preemption between it and the insertion (a 4.7 ms one
//!   was seen at `might_sleep()`) may reverse the order.
//! - Events with equal timestamps have no order: a conflicting_grant or
//!   fifo_violation is withdrawn when a release (or cancel) of what it was
//!   judged against follows with the same timestamp.
//! - A `fault` alone is never page_in_locked_range: the event fires at
//!   fault entry, and the fault then takes the range lock and waits; a
//!   `page_add` in the range is what proves the race.
//! - A deadlock is withdrawn if a member of its cycle later gets what it
//!   waited for (the model's wait-for edges were too pessimistic, e.g. an
//!   rwsem reader stealing mmap_lock past a waiting writer).
//! - A release of a still-waiting request by its own task runs inside that
//!   task's lock call; when the call then returns its error (`rl_cancel`)
//!   it was the call's own cancel path (Lustre's `range_lock()`), and the
//!   unlock_unheld it raised is withdrawn.
//! - A downgrade (`rl_downgrade`) is one change of mode in place: the
//!   lock keeps its place in the queue, so a writer queued behind it still
//!   waits and only the readers it alone blocked may go.
//! - A trylock failure is never a finding (kernel trylocks are coarse), and
//!   unmatched begin/end events are absorbed without findings.
//!
//! # Adding a rule
//!
//! One file here with a type implementing [`Rule`] (its `Kind` constant,
//! severity, summary, the events it wants, what it reports), one line in
//! [`rules`], and one fixture trace under `rl-user/tests/data/check/`
//! with its expected findings (`tests/check.rs`). See
//! `docs/architecture.md`.

mod conflicting_grant;
mod deadlock;
mod fifo_violation;
mod leaked_lock;
mod ledger;
mod lock_order;
mod ordering_inversion;
mod page_in_invalidated_range;
mod page_in_locked_range;
mod rule;
mod stall;
mod unlock_unheld;

use std::fmt;

use serde::Serialize;

pub use ledger::{Draft, FindingId, Ledger, Since};
pub use rule::{Cx, On, Rule};

use super::engine::{Analysis, Engine};
use crate::events::{Event, Tag};
use crate::model::{Lock, Model, Tree};

/// Every rule, in the order they run and report. Adding a rule is one
/// line here (and its file).
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(conflicting_grant::ConflictingGrant),
        Box::new(fifo_violation::FifoViolation::default()),
        Box::new(unlock_unheld::UnlockUnheld::default()),
        Box::new(ordering_inversion::OrderingInversion),
        Box::new(page_in_locked_range::PageInLockedRange),
        Box::new(page_in_invalidated_range::PageInInvalidatedRange),
        Box::new(lock_order::LockOrder),
        Box::new(stall::Stall::default()),
        Box::new(deadlock::Deadlock::default()),
        Box::new(leaked_lock::LeakedLock),
    ]
}

/// What a finding is about: its kind's name in the findings contract
/// (`docs/findings.md`). Each rule defines its own constant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Kind(&'static str);

impl Kind {
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One link of an ordering report: `tid` holds `holds` and wants `wants`,
/// with the kernel stacks of the two where the events carry them (lockdep
/// prints both: where the held lock was taken, and the new request).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub tid: u32,
    pub task: String,
    pub holds: String,
    pub wants: String,
    /// Where `holds` was asked for: frames, innermost first, `;`-separated.
    pub holds_at: Option<String>,
    /// Where `wants` is asked for.
    pub wants_at: Option<String>,
}

/// A rule broken, with the events that prove it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub certain: bool,
    pub ts: u64,
    pub tids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(u64, u64)>,
    pub message: String,
    /// Event indices (0-based positions in the stream), ascending.
    pub evidence: Vec<u64>,
    /// For ordering problems: the lockdep-style chain.
    #[serde(skip)]
    pub links: Vec<Link>,
    /// For ordering problems: the order broken, in words, when it is not
    /// Kara's (mmap_lock above the range lock).
    #[serde(skip)]
    pub rule: Option<&'static str>,
    /// Later occurrences of the same problem folded into this one.
    #[serde(skip)]
    pub repeats: u64,
    /// For a deadlock that a member's cancelled wait (a signal or a
    /// timeout) broke: how long the cycle stood, in ns. An extension of the
    /// findings contract, present only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_after_ns: Option<u64>,
}

/// Checker settings.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// A waiter the reference would grant may stay waiting this long.
    pub stall_ns: u64,
    /// The trace starts with no lock held (not a live recording begun
    /// mid-stream).
    pub clean_start: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stall_ns: 1_000_000_000,
            clean_start: true,
        }
    }
}

/// What the end of the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Timestamp of the first event (text output shows times relative to it).
    #[serde(skip)]
    pub first_ts: u64,
    pub events: u64,
    pub lost: u64,
    pub findings: Vec<Finding>,
    /// Findings past [`MAX_FINDINGS`], counted only (an extension of the
    /// JSON contract, present when not zero).
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: u64,
    /// Whether a suppressed finding was a certain error.
    #[serde(skip)]
    pub suppressed_fail: bool,
    /// Range-lock requests set aside because their range is no range of a
    /// file (start after last, or past the largest page index): a profile
    /// that does not fit the kernel's lock struct. No finding rests on
    /// them.
    #[serde(skip_serializing_if = "is_zero")]
    pub invalid_ranges: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Verdict {
    /// Fails iff some finding is a certain error.
    pub fn failed(&self) -> bool {
        self.suppressed_fail
            || self
                .findings
                .iter()
                .any(|f| f.certain && f.severity == Severity::Error)
    }
}

/// Findings kept; later ones are only counted (memory stays bounded on a
/// trace that is wrong everywhere).
pub const MAX_FINDINGS: usize = 10_000;

/// Runs every rule over a stream. See the module docs.
pub struct Checker {
    cfg: Config,
    rules: Vec<Box<dyn Rule>>,
    /// Each rule's kind and severity (asked once, not per event).
    labels: Vec<(Kind, Severity)>,
    /// Which rules want each event kind, before and after the model
    /// applies it (indices into `rules`).
    before: [Vec<usize>; Tag::COUNT],
    after: [Vec<usize>; Tag::COUNT],
    /// When each rule wants its next tick, and the earliest of them.
    wake: Vec<u64>,
    next_wake: u64,
    ledger: Ledger,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("rules", &self.rules.len())
            .field("findings", &self.ledger.findings().len())
            .finish()
    }
}

impl Checker {
    pub fn new(cfg: Config) -> Checker {
        Checker::with_rules(cfg, rules())
    }

    /// A checker running only `rules` (a rule's own tests).
    pub fn with_rules(cfg: Config, rules: Vec<Box<dyn Rule>>) -> Checker {
        let mut before: [Vec<usize>; Tag::COUNT] = std::array::from_fn(|_| Vec::new());
        let mut after: [Vec<usize>; Tag::COUNT] = std::array::from_fn(|_| Vec::new());
        for (i, r) in rules.iter().enumerate() {
            let (b, a) = (r.before_on(), r.after_on());
            for (t, (bv, av)) in before.iter_mut().zip(after.iter_mut()).enumerate() {
                if b.has_index(t) {
                    bv.push(i);
                }
                if a.has_index(t) {
                    av.push(i);
                }
            }
        }
        Checker {
            cfg,
            labels: rules.iter().map(|r| (r.kind(), r.severity())).collect(),
            wake: vec![0; rules.len()],
            rules,
            before,
            after,
            next_wake: 0,
            ledger: Ledger::new(cfg.clean_start),
        }
    }

    /// An engine running this checker over a new model.
    pub fn over(model: Model, cfg: Config) -> Engine<Checker> {
        Engine::new(model, Checker::new(cfg))
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        self.ledger.findings()
    }

    /// Findings so far that stand (not withdrawn): what a live view may
    /// show. A later event may still withdraw one (a release tied with a
    /// grant, a cycle that moves) or make it uncertain.
    pub fn standing(&self) -> impl Iterator<Item = &Finding> {
        self.ledger.standing()
    }

    /// Findings past [`MAX_FINDINGS`] so far, counted only.
    pub fn suppressed(&self) -> u64 {
        self.ledger.suppressed()
    }

    /// The summary and severity of each rule, in order (for `--help`-like
    /// listings and docs).
    pub fn catalog(&self) -> Vec<(Kind, Severity, &'static str)> {
        self.rules
            .iter()
            .map(|r| (r.kind(), r.severity(), r.summary()))
            .collect()
    }

    /// Ends the stream: rules finish (stalls still pending, leaked locks),
    /// and the ledger makes the verdict; findings are in stream order.
    pub fn finish(mut self, m: &Model) -> Verdict {
        self.ledger.end_ties();
        for (r, &(kind, sev)) in self.rules.iter_mut().zip(&self.labels) {
            let mut cx = Cx::new(m, &self.cfg, &mut self.ledger, kind, sev);
            r.finish(&mut cx);
        }
        self.ledger.verdict(m)
    }

    fn tick(&mut self, m: &Model, now: u64) {
        let mut next = u64::MAX;
        for ((r, wake), &(kind, sev)) in self.rules.iter_mut().zip(&mut self.wake).zip(&self.labels)
        {
            if *wake <= now {
                let mut cx = Cx::new(m, &self.cfg, &mut self.ledger, kind, sev);
                *wake = r.tick(&mut cx, now);
            }
            next = next.min(*wake);
        }
        self.next_wake = next;
    }
}

/// The tree and lock an `rl_*` event is about, as the model has them.
#[inline]
fn subject<'m>(m: &'m Model, ev: &Event) -> Option<(&'m Tree, &'m Lock)> {
    let (tree, lock) = ev.body.range_lock()?;
    let t = m.trees.get(&tree)?;
    Some((t, t.locks.get(&lock)?))
}

impl Analysis for Checker {
    #[inline]
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        self.ledger.settle(ev);
        if ev.ts >= self.next_wake {
            self.tick(m, ev.ts);
        }
        self.ledger.observe(m, ev);
        self.dispatch(Phase::Before, m, idx, ev);
    }

    #[inline]
    fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
        self.ledger.untaint(m, ev);
        self.dispatch(Phase::After, m, idx, ev);
    }
}

/// Which of a rule's event hooks runs.
#[derive(Clone, Copy)]
enum Phase {
    Before,
    After,
}

impl Checker {
    /// Runs the rules that want this event's kind in this phase.
    #[inline]
    fn dispatch(&mut self, phase: Phase, m: &Model, idx: u64, ev: &Event) {
        let table = match phase {
            Phase::Before => &self.before,
            Phase::After => &self.after,
        };
        let rules = &table[ev.body.tag() as usize];
        if rules.is_empty() {
            return;
        }
        let subject = subject(m, ev);
        for &i in rules {
            let (kind, sev) = self.labels[i];
            let mut cx = Cx::new(m, &self.cfg, &mut self.ledger, kind, sev);
            cx.subject = subject;
            match phase {
                Phase::Before => self.rules[i].before(&mut cx, idx, ev),
                Phase::After => self.rules[i].after(&mut cx, idx, ev),
            }
        }
    }
}

impl Engine<Checker> {
    /// Ends the stream and returns the checker's verdict.
    pub fn finish(self) -> Verdict {
        let (m, c) = self.into_parts();
        c.finish(&m)
    }
}

#[cfg(test)]
mod tests;
