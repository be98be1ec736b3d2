//! Timeline renderings (`rltop export`): [`perfetto`] (protobuf TrackEvent)
//! and [`chrome`] (Chrome JSON), both from one [`Layout`] of a
//! [`Timeline`].
//!
//! Slices on one track must nest in both formats. A task's slices do not
//! always (it holds two locks and releases them out of order; a DIO's lock
//! is released by completion while the task goes on), nor do a tree's held
//! ranges (concurrent readers, disjoint ranges): each track is laid out in
//! lanes, lane 0 first, where every lane's slices nest.

pub mod chrome;
pub mod perfetto;

use std::collections::BTreeMap;

use crate::analysis::timeline::{Timeline, Track};

/// A slice's begin or end, in the order a viewer must see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub ts: u64,
    pub begin: bool,
    pub slice: usize,
}

/// Lanes and the order of begins and ends.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// The lane of each slice (index into `Timeline::slices`).
    pub lane: Vec<u32>,
    /// Lanes used per track.
    pub lanes: BTreeMap<Track, u32>,
    /// Every slice's begin and end, by time; on each lane, ends before the
    /// begins they precede and inner slices inside outer ones.
    pub edges: Vec<Edge>,
}

/// Lays out a timeline: per track, slices by begin (longest first at equal
/// begins) go to the first lane where they nest.
pub fn layout(tl: &Timeline) -> Layout {
    let slices = &tl.slices;
    let mut by_track: BTreeMap<Track, Vec<usize>> = BTreeMap::new();
    for (i, s) in slices.iter().enumerate() {
        by_track.entry(s.track).or_default().push(i);
    }
    let mut lane = vec![0u32; slices.len()];
    let mut lanes = BTreeMap::new();
    // (ts, sequence, edge): the sequence keeps each lane's own order.
    let mut edges: Vec<(u64, u64, Edge)> = Vec::with_capacity(2 * slices.len());
    let mut seq = 0u64;
    let mut emit = |edges: &mut Vec<(u64, u64, Edge)>, ts: u64, begin: bool, slice: usize| {
        edges.push((ts, seq, Edge { ts, begin, slice }));
        seq += 1;
    };
    for (track, mut idx) in by_track {
        idx.sort_by_key(|&i| (slices[i].begin, std::cmp::Reverse(slices[i].end), i));
        let mut stacks: Vec<Vec<usize>> = Vec::new();
        for i in idx {
            let s = &slices[i];
            let mut placed = None;
            for (l, st) in stacks.iter_mut().enumerate() {
                while let Some(&top) = st.last() {
                    if slices[top].end <= s.begin {
                        st.pop();
                        emit(&mut edges, slices[top].end, false, top);
                    } else {
                        break;
                    }
                }
                if st.last().is_none_or(|&top| slices[top].end >= s.end) {
                    placed = Some(l);
                    break;
                }
            }
            let l = placed.unwrap_or_else(|| {
                stacks.push(Vec::new());
                stacks.len() - 1
            });
            stacks[l].push(i);
            lane[i] = l as u32;
            emit(&mut edges, s.begin, true, i);
        }
        for st in &mut stacks {
            while let Some(top) = st.pop() {
                emit(&mut edges, slices[top].end, false, top);
            }
        }
        lanes.insert(track, stacks.len() as u32);
    }
    edges.sort_by_key(|e| (e.0, e.1));
    Layout {
        lane,
        lanes,
        edges: edges.into_iter().map(|e| e.2).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::timeline::{Slice, SliceKind};

    fn slice(begin: u64, end: u64) -> Slice {
        Slice {
            track: Track::Task(1),
            begin,
            end,
            kind: SliceKind::Hold,
            name: String::new(),
            args: Vec::new(),
            unfinished: false,
            flow_out: Vec::new(),
            flow_in: Vec::new(),
        }
    }

    #[test]
    fn overlapping_slices_get_lanes_and_nested_ones_share() {
        let tl = Timeline {
            // [0,10] holds [2,4] nested; [5,15] overlaps [0,10] without
            // nesting; [10,12] follows [0,10]; [5,5] is empty.
            slices: vec![
                slice(0, 10),
                slice(2, 4),
                slice(5, 15),
                slice(10, 12),
                slice(5, 5),
            ],
            ..Timeline::default()
        };
        let l = layout(&tl);
        assert_eq!(l.lane, vec![0, 0, 1, 0, 0]);
        assert_eq!(l.lanes[&Track::Task(1)], 2);
        // Per lane, begins and ends nest (a stack replay never fails).
        for lane in 0..2 {
            let mut st = Vec::new();
            let mut last = 0;
            for e in l.edges.iter().filter(|e| l.lane[e.slice] == lane) {
                assert!(e.ts >= last);
                last = e.ts;
                if e.begin {
                    st.push(e.slice);
                } else {
                    assert_eq!(st.pop(), Some(e.slice));
                }
            }
            assert!(st.is_empty());
        }
        assert_eq!(l.edges.len(), 10);
    }
}
