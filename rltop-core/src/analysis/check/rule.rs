//! The [`Rule`] trait: one locking rule, one finding kind.
//!
//! Shaped like tokio-console's lints (a level, a one-sentence summary, a
//! check), but a rule here sees a stream, not a snapshot: it may keep state
//! between events (what it already reported, a cycle it may withdraw), so
//! its hooks take `&mut self` and run around the model's update.

use std::fmt;

use super::{Config, Draft, Finding, FindingId, Kind, Ledger, Severity};
use crate::events::{Event, Tag};
use crate::model::{Lock, Model, Tree};

/// A set of event kinds: which events a rule's hook wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct On(u64);

const _: () = assert!(Tag::COUNT <= 64, "On is a 64-bit set");

impl On {
    pub const NONE: On = On(0);

    pub const fn of(tags: &[Tag]) -> On {
        let mut bits = 0;
        let mut i = 0;
        while i < tags.len() {
            bits |= 1 << tags[i] as u8;
            i += 1;
        }
        On(bits)
    }

    pub fn has(self, t: Tag) -> bool {
        self.has_index(t as usize)
    }

    pub(super) fn has_index(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
}

/// What a rule sees when it runs: the model (before or after the event,
/// depending on the hook), the settings, and the ledger it reports to.
pub struct Cx<'a> {
    pub m: &'a Model,
    pub cfg: &'a Config,
    /// For an `rl_*` event, its lock and tree in the model (as of the
    /// hook), looked up once for every rule that wants the event.
    pub subject: Option<(&'a Tree, &'a Lock)>,
    ledger: &'a mut Ledger,
    kind: Kind,
    severity: Severity,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
        m: &'a Model,
        cfg: &'a Config,
        ledger: &'a mut Ledger,
        kind: Kind,
        severity: Severity,
    ) -> Cx<'a> {
        Cx {
            m,
            cfg,
            subject: None,
            ledger,
            kind,
            severity,
        }
    }

    /// Reports a finding of this rule's kind. Returns its id, or `None`
    /// when it folded into an earlier one or went past the cap.
    pub fn report(&mut self, d: Draft) -> Option<FindingId> {
        self.ledger.push(self.m, self.kind, self.severity, d)
    }

    /// Keeps a deadlock that a cancelled wait broke, saying how long it
    /// stood (see [`Ledger::broken`]).
    pub fn broken(&mut self, id: FindingId, idx: u64, after: u64, how: &str) {
        self.ledger.broken(id, idx, after, how);
    }

    /// Withdraws a finding this rule made (it was not a bug after all).
    pub fn retract(&mut self, id: FindingId) {
        self.ledger.retract(id);
    }

    /// Marks a finding this rule made uncertain.
    pub fn uncertain(&mut self, id: FindingId) {
        self.ledger.uncertain(id);
    }

    /// Marks every finding of this rule's kind that `pred` selects
    /// uncertain.
    pub fn uncertain_where(&mut self, pred: impl Fn(&Finding) -> bool) {
        let kind = self.kind;
        self.ledger.uncertain_where(|f| f.kind == kind && pred(f));
    }
}

/// One locking rule. Every hook has an empty default; a rule implements
/// the ones it needs and names the events its `before`/`after` want, so
/// it is never called for others.
pub trait Rule: fmt::Debug + Send {
    /// The kind of the findings it reports.
    fn kind(&self) -> Kind;
    fn severity(&self) -> Severity;
    /// The rule in one sentence, as the findings contract states it.
    fn summary(&self) -> &'static str;

    /// The event kinds [`Rule::before`] wants.
    fn before_on(&self) -> On {
        On::NONE
    }
    /// The event kinds [`Rule::after`] wants.
    fn after_on(&self) -> On {
        On::NONE
    }
    /// Event `idx`, with the model as it was before it.
    fn before(&mut self, _cx: &mut Cx<'_>, _idx: u64, _ev: &Event) {}
    /// Event `idx`, with the model after it.
    fn after(&mut self, _cx: &mut Cx<'_>, _idx: u64, _ev: &Event) {}
    /// Trace time reached `now` (before the event at `now` is checked).
    /// Returns when the rule wants its next tick; `u64::MAX`: never.
    fn tick(&mut self, _cx: &mut Cx<'_>, _now: u64) -> u64 {
        u64::MAX
    }
    /// The end of the stream.
    fn finish(&mut self, _cx: &mut Cx<'_>) {}
}
