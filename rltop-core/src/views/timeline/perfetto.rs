//! A [`Timeline`] as a Perfetto protobuf trace of TrackEvents.
//!
//! Tracks: a process track per pid with a thread track per task (lane 0)
//! and child tracks for its other lanes; a track per tree (lane 0) with
//! child tracks for its other lanes and a `waiters` counter track; a
//! `markers` and a `findings` track for instants. Flows (`flow_ids` /
//! `terminating_flow_ids`) go from the hold a release ended to the hold it
//! granted. Everything is on one packet sequence, without interning.
//!
//! [`proto`] mirrors the subset of Perfetto's `trace.proto`,
//! `trace_packet.proto` and `track_event/*.proto` used, with their field
//! numbers; proto2, so repeated scalars are not packed.

use std::collections::BTreeMap;

use prost::Message;

use super::{Layout, layout};
use crate::analysis::timeline::{InstantTrack, Timeline, Track};

/// The messages, as in Perfetto's protos (field numbers from there).
pub mod proto {
    /// `perfetto.protos.Trace`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Trace {
        #[prost(message, repeated, tag = "1")]
        pub packet: Vec<TracePacket>,
    }

    /// `perfetto.protos.TracePacket` (`track_event` and `track_descriptor`
    /// are members of its `data` oneof: set one).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TracePacket {
        #[prost(uint64, optional, tag = "8")]
        pub timestamp: Option<u64>,
        #[prost(uint32, optional, tag = "10")]
        pub trusted_packet_sequence_id: Option<u32>,
        #[prost(message, optional, tag = "11")]
        pub track_event: Option<TrackEvent>,
        #[prost(uint32, optional, tag = "13")]
        pub sequence_flags: Option<u32>,
        #[prost(message, optional, tag = "60")]
        pub track_descriptor: Option<TrackDescriptor>,
    }

    /// `TracePacket.SequenceFlags`.
    pub const SEQ_INCREMENTAL_STATE_CLEARED: u32 = 1;
    pub const SEQ_NEEDS_INCREMENTAL_STATE: u32 = 2;

    /// `perfetto.protos.TrackDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrackDescriptor {
        #[prost(uint64, optional, tag = "1")]
        pub uuid: Option<u64>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "3")]
        pub process: Option<ProcessDescriptor>,
        #[prost(message, optional, tag = "4")]
        pub thread: Option<ThreadDescriptor>,
        #[prost(uint64, optional, tag = "5")]
        pub parent_uuid: Option<u64>,
        #[prost(message, optional, tag = "8")]
        pub counter: Option<CounterDescriptor>,
    }

    /// `perfetto.protos.ProcessDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProcessDescriptor {
        #[prost(int32, optional, tag = "1")]
        pub pid: Option<i32>,
        #[prost(string, optional, tag = "6")]
        pub process_name: Option<String>,
    }

    /// `perfetto.protos.ThreadDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ThreadDescriptor {
        #[prost(int32, optional, tag = "1")]
        pub pid: Option<i32>,
        #[prost(int64, optional, tag = "2")]
        pub tid: Option<i64>,
        #[prost(string, optional, tag = "5")]
        pub thread_name: Option<String>,
    }

    /// `perfetto.protos.CounterDescriptor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CounterDescriptor {
        #[prost(enumeration = "Unit", optional, tag = "3")]
        pub unit: Option<i32>,
    }

    /// `CounterDescriptor.Unit`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Unit {
        Unspecified = 0,
        TimeNs = 1,
        Count = 2,
    }

    /// `perfetto.protos.TrackEvent`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TrackEvent {
        #[prost(message, repeated, tag = "4")]
        pub debug_annotations: Vec<DebugAnnotation>,
        #[prost(enumeration = "EventType", optional, tag = "9")]
        pub r#type: Option<i32>,
        #[prost(uint64, optional, tag = "11")]
        pub track_uuid: Option<u64>,
        #[prost(string, repeated, tag = "22")]
        pub categories: Vec<String>,
        #[prost(string, optional, tag = "23")]
        pub name: Option<String>,
        #[prost(int64, optional, tag = "30")]
        pub counter_value: Option<i64>,
        #[prost(fixed64, repeated, packed = "false", tag = "47")]
        pub flow_ids: Vec<u64>,
        #[prost(fixed64, repeated, packed = "false", tag = "48")]
        pub terminating_flow_ids: Vec<u64>,
    }

    /// `TrackEvent.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum EventType {
        Unspecified = 0,
        SliceBegin = 1,
        SliceEnd = 2,
        Instant = 3,
        Counter = 4,
    }

    /// `perfetto.protos.DebugAnnotation` (name and string value only).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DebugAnnotation {
        #[prost(string, optional, tag = "6")]
        pub string_value: Option<String>,
        #[prost(string, optional, tag = "10")]
        pub name: Option<String>,
    }
}

use proto::{
    CounterDescriptor, DebugAnnotation, EventType, ProcessDescriptor, ThreadDescriptor, Trace,
    TracePacket, TrackDescriptor, TrackEvent,
};

const SEQUENCE: u32 = 1;

fn annotations(args: &[(&'static str, String)]) -> Vec<DebugAnnotation> {
    args.iter()
        .map(|(n, v)| DebugAnnotation {
            name: Some((*n).to_string()),
            string_value: Some(v.clone()),
        })
        .collect()
}

fn descriptor(d: TrackDescriptor) -> TracePacket {
    TracePacket {
        trusted_packet_sequence_id: Some(SEQUENCE),
        track_descriptor: Some(d),
        ..TracePacket::default()
    }
}

fn event(ts: u64, e: TrackEvent) -> TracePacket {
    TracePacket {
        timestamp: Some(ts),
        trusted_packet_sequence_id: Some(SEQUENCE),
        sequence_flags: Some(proto::SEQ_NEEDS_INCREMENTAL_STATE),
        track_event: Some(e),
        ..TracePacket::default()
    }
}

/// Track uuids of a laid-out timeline.
struct Uuids {
    next: u64,
    /// (track, lane) -> uuid.
    lanes: BTreeMap<(Track, u32), u64>,
    counters: BTreeMap<u64, u64>,
    markers: u64,
    findings: u64,
}

impl Uuids {
    fn take(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// The timeline as a Perfetto `Trace` message.
#[allow(clippy::too_many_lines)] // one document or view, written top to bottom
pub fn trace(tl: &Timeline) -> Trace {
    let lay: Layout = layout(tl);
    let mut u = Uuids {
        next: 0,
        lanes: BTreeMap::new(),
        counters: BTreeMap::new(),
        markers: 0,
        findings: 0,
    };
    let mut packets = Vec::new();

    // Processes, their threads (tasks) and the tasks' extra lanes.
    let mut pids = std::collections::BTreeSet::new();
    for (&tid, info) in &tl.tasks {
        if !lay.lanes.contains_key(&Track::Task(tid)) {
            continue;
        }
        if pids.insert(info.pid) {
            let id = u.take();
            let name = tl
                .tasks
                .get(&info.pid)
                .and_then(|t| t.comm.clone())
                .unwrap_or_else(|| format!("pid {}", info.pid));
            packets.push(descriptor(TrackDescriptor {
                uuid: Some(id),
                process: Some(ProcessDescriptor {
                    pid: Some(info.pid as i32),
                    process_name: Some(name),
                }),
                ..TrackDescriptor::default()
            }));
        }
    }
    for (&track, &n) in &lay.lanes {
        let base = u.take();
        u.lanes.insert((track, 0), base);
        match track {
            Track::Task(tid) => {
                let info = tl.tasks.get(&tid).cloned().unwrap_or_default();
                packets.push(descriptor(TrackDescriptor {
                    uuid: Some(base),
                    thread: Some(ThreadDescriptor {
                        pid: Some(info.pid as i32),
                        tid: Some(i64::from(tid)),
                        thread_name: Some(info.label(tid)),
                    }),
                    ..TrackDescriptor::default()
                }));
            }
            Track::Tree(tree) => {
                packets.push(descriptor(TrackDescriptor {
                    uuid: Some(base),
                    name: Some(tl.tree_label(tree)),
                    ..TrackDescriptor::default()
                }));
            }
            Track::Tests => {
                packets.push(descriptor(TrackDescriptor {
                    uuid: Some(base),
                    name: Some("xfstests".to_string()),
                    ..TrackDescriptor::default()
                }));
            }
        }
        for lane in 1..n {
            let id = u.take();
            u.lanes.insert((track, lane), id);
            let name = match track {
                Track::Task(tid) => format!("{} (lane {lane})", tl.task_label(tid)),
                Track::Tree(tree) => format!("{} (lane {lane})", tl.tree_label(tree)),
                Track::Tests => format!("xfstests (lane {lane})"),
            };
            packets.push(descriptor(TrackDescriptor {
                uuid: Some(id),
                parent_uuid: Some(base),
                name: Some(name),
                ..TrackDescriptor::default()
            }));
        }
    }
    // Waiter counters: under their tree's track (or alone, for a tree
    // without held ranges).
    let counter_trees: std::collections::BTreeSet<u64> =
        tl.counters.iter().map(|c| c.tree).collect();
    for tree in counter_trees {
        let id = u.take();
        u.counters.insert(tree, id);
        packets.push(descriptor(TrackDescriptor {
            uuid: Some(id),
            parent_uuid: u.lanes.get(&(Track::Tree(tree), 0)).copied(),
            name: Some(format!("{} waiters", tl.tree_label(tree))),
            counter: Some(CounterDescriptor {
                unit: Some(proto::Unit::Count as i32),
            }),
            ..TrackDescriptor::default()
        }));
    }
    for (slot, name) in [(0, "markers"), (1, "findings")] {
        let id = u.take();
        if slot == 0 {
            u.markers = id;
        } else {
            u.findings = id;
        }
        packets.push(descriptor(TrackDescriptor {
            uuid: Some(id),
            name: Some(name.to_string()),
            ..TrackDescriptor::default()
        }));
    }
    if let Some(first) = packets.first_mut() {
        first.sequence_flags = Some(proto::SEQ_INCREMENTAL_STATE_CLEARED);
    }

    // Events by time: slice edges in layout order, then counters and
    // instants (their order at equal times does not matter).
    let mut evs: Vec<(u64, usize, TracePacket)> = Vec::new();
    for (n, e) in lay.edges.iter().enumerate() {
        let s = &tl.slices[e.slice];
        let track = u.lanes[&(s.track, lay.lane[e.slice])];
        let te = if e.begin {
            let mut args = s.args.clone();
            if s.unfinished {
                args.push(("unfinished", "true".to_string()));
            }
            TrackEvent {
                r#type: Some(EventType::SliceBegin as i32),
                track_uuid: Some(track),
                name: Some(s.name.clone()),
                categories: vec![s.kind.as_str().to_string()],
                debug_annotations: annotations(&args),
                flow_ids: s.flow_out.clone(),
                terminating_flow_ids: s.flow_in.clone(),
                ..TrackEvent::default()
            }
        } else {
            TrackEvent {
                r#type: Some(EventType::SliceEnd as i32),
                track_uuid: Some(track),
                ..TrackEvent::default()
            }
        };
        evs.push((e.ts, n, event(e.ts, te)));
    }
    let base = evs.len();
    for (n, c) in tl.counters.iter().enumerate() {
        evs.push((
            c.ts,
            base + n,
            event(
                c.ts,
                TrackEvent {
                    r#type: Some(EventType::Counter as i32),
                    track_uuid: Some(u.counters[&c.tree]),
                    counter_value: Some(c.waiters as i64),
                    ..TrackEvent::default()
                },
            ),
        ));
    }
    let base = evs.len();
    for (n, i) in tl.instants.iter().enumerate() {
        let track = match i.track {
            InstantTrack::Markers => u.markers,
            InstantTrack::Findings => u.findings,
        };
        let cat = match i.track {
            InstantTrack::Markers => "marker",
            InstantTrack::Findings => "finding",
        };
        evs.push((
            i.ts,
            base + n,
            event(
                i.ts,
                TrackEvent {
                    r#type: Some(EventType::Instant as i32),
                    track_uuid: Some(track),
                    name: Some(i.name.clone()),
                    categories: vec![cat.to_string()],
                    debug_annotations: annotations(&i.args),
                    ..TrackEvent::default()
                },
            ),
        ));
    }
    evs.sort_by_key(|e| (e.0, e.1));
    packets.extend(evs.into_iter().map(|e| e.2));
    Trace { packet: packets }
}

/// The timeline as Perfetto protobuf bytes.
pub fn encode(tl: &Timeline) -> Vec<u8> {
    trace(tl).encode_to_vec()
}
