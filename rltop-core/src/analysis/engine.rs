//! The engine: drives the [`Model`] once over an event stream and feeds
//! every [`Analysis`] around each event.
//!
//! For each event an analysis sees the model *before* it is applied (what
//! the event ends: a release ends a hold, an acquisition ends a wait), then
//! *after* (what it begins: a new wait edge). Every consumer of a stream —
//! `check`, `report`, `hist`, `export`, `whatif`, the metrics server, the
//! TUI's pipeline — is an [`Engine`] over the analyses it needs, so none
//! owns a private model and the before/apply/after sequence is written once.
//!
//! Analyses compose as tuples (`(Checker, Stats)`), and `Option<A>` is an
//! analysis that may be off (`--by-test`). Dispatch is static: the engine
//! adds nothing per event beyond the analyses' own work.

use crate::events::Event;
use crate::model::Model;

/// Something computed from the stream and the model. Every hook has an
/// empty default: an analysis implements what it needs.
pub trait Analysis {
    /// Event number `idx`, with the model as it was before the event.
    fn before(&mut self, _m: &Model, _idx: u64, _ev: &Event) {}
    /// Event number `idx`, with the model after it.
    fn after(&mut self, _m: &Model, _idx: u64, _ev: &Event) {}
    /// A damaged part of the trace before event `idx` (the model has
    /// recorded the gap already). `lost` events come through `before`.
    fn gap(&mut self, _m: &Model, _idx: u64) {}
}

impl Analysis for () {}

impl<A: Analysis> Analysis for Option<A> {
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        if let Some(a) = self {
            a.before(m, idx, ev);
        }
    }
    fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
        if let Some(a) = self {
            a.after(m, idx, ev);
        }
    }
    fn gap(&mut self, m: &Model, idx: u64) {
        if let Some(a) = self {
            a.gap(m, idx);
        }
    }
}

impl<A: Analysis + ?Sized> Analysis for &mut A {
    fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
        (**self).before(m, idx, ev);
    }
    fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
        (**self).after(m, idx, ev);
    }
    fn gap(&mut self, m: &Model, idx: u64) {
        (**self).gap(m, idx);
    }
}

/// Tuples of analyses run each hook in order.
macro_rules! tuple {
    ($($a:ident $i:tt),+) => {
        impl<$($a: Analysis),+> Analysis for ($($a,)+) {
            fn before(&mut self, m: &Model, idx: u64, ev: &Event) {
                $(self.$i.before(m, idx, ev);)+
            }
            fn after(&mut self, m: &Model, idx: u64, ev: &Event) {
                $(self.$i.after(m, idx, ev);)+
            }
            fn gap(&mut self, m: &Model, idx: u64) {
                $(self.$i.gap(m, idx);)+
            }
        }
    };
}
tuple!(A 0, B 1);
tuple!(A 0, B 1, C 2);
tuple!(A 0, B 1, C 2, D 3);

/// One model, driven once, and the analyses fed around it.
#[derive(Debug)]
pub struct Engine<A> {
    model: Model,
    analysis: A,
}

impl<A: Analysis> Engine<A> {
    pub fn new(model: Model, analysis: A) -> Engine<A> {
        Engine { model, analysis }
    }

    /// Event number `idx` (0-based position in the stream).
    pub fn event(&mut self, idx: u64, ev: &Event) {
        self.analysis.before(&self.model, idx, ev);
        self.model.apply(idx, ev);
        self.analysis.after(&self.model, idx, ev);
    }

    /// A damaged part of the trace before event `idx`: a gap.
    pub fn gap(&mut self, idx: u64) {
        self.model.gap(idx, 0);
        self.analysis.gap(&self.model, idx);
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn analysis(&self) -> &A {
        &self.analysis
    }

    pub fn analysis_mut(&mut self) -> &mut A {
        &mut self.analysis
    }

    /// The model and the analyses, to read one while changing the other.
    pub fn parts(&mut self) -> (&Model, &mut A) {
        (&self.model, &mut self.analysis)
    }

    pub fn into_parts(self) -> (Model, A) {
        (self.model, self.analysis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Body;

    /// Records which hooks ran, in order, and what the model had seen.
    #[derive(Default)]
    struct Log(Vec<(char, u64, u64)>);

    impl Analysis for Log {
        fn before(&mut self, m: &Model, idx: u64, _ev: &Event) {
            self.0.push(('b', idx, m.events));
        }
        fn after(&mut self, m: &Model, idx: u64, _ev: &Event) {
            self.0.push(('a', idx, m.events));
        }
        fn gap(&mut self, m: &Model, idx: u64) {
            self.0.push(('g', idx, m.last_gap.unwrap_or(u64::MAX)));
        }
    }

    #[test]
    fn each_analysis_sees_the_model_before_and_after_each_event() {
        let ev = Event {
            ts: 1,
            tid: 1,
            pid: 1,
            cpu: None,
            body: Body::Exit,
        };
        let mut e = Engine::new(Model::new(None), (Log::default(), Some(Log::default())));
        e.event(0, &ev);
        e.gap(1);
        e.event(1, &ev);
        let (_, (a, b)) = e.into_parts();
        let want = [
            ('b', 0, 0),
            ('a', 0, 1),
            ('g', 1, 1),
            ('b', 1, 1),
            ('a', 1, 2),
        ];
        assert_eq!(a.0, want);
        assert_eq!(b.map(|b| b.0), Some(want.to_vec()));
    }
}
