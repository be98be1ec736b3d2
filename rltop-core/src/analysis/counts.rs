//! Events counted per kind (`rltop_events_total{kind}`).

use std::collections::BTreeMap;

use super::engine::Analysis;
use crate::events::Event;
use crate::model::Model;

/// Events seen, per JSONL kind.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub by_kind: BTreeMap<&'static str, u64>,
}

impl Analysis for Counts {
    fn before(&mut self, _m: &Model, _idx: u64, ev: &Event) {
        *self.by_kind.entry(ev.body.kind()).or_default() += 1;
    }
}
