use super::*;
use crate::events::{Body, FileLockClass, PunchOp};

const DEV: Dev = Dev { major: 8, minor: 1 };

/// An event of task `tid` (its own process) at `ts`.
fn ev(ts: u64, tid: u32, body: Body) -> Event {
    Event {
        ts,
        tid,
        pid: tid,
        cpu: None,
        body,
    }
}

const KINDS: [OpKind; 6] = [
    OpKind::PageAdd,
    OpKind::Fault,
    OpKind::DioRead,
    OpKind::DioWrite,
    OpKind::Punch,
    OpKind::Truncate,
];

fn op(ts: u64, tid: u32, start: u64, last: u64, hold: u64) -> FileOp {
    FileOp::new(ts, tid, DEV, 1, OpKind::DioWrite, start, last, hold)
}

/// Worked by hand (times in us):
/// A: [0,3] at 0 for 100; B: [10,13] at 10 for 100; C: [2,2] at 20 for 50.
/// Range: A 0-100, B 10-110 (disjoint), C waits for A: 100-150 (wait 80).
///   busy 0-150 = 150, holds 250: parallelism 250/150; at most 2 at once.
/// Whole file: A 0-100, B waits 90: 100-200, C waits 180: 200-250.
///   busy 250, holds 250: parallelism 1.
#[test]
fn three_operations_worked_by_hand() {
    let ops = [
        op(0, 1, 0, 3, 100),
        op(10, 2, 10, 13, 100),
        op(20, 3, 2, 2, 50),
    ];
    let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
    assert_eq!(
        (r.ops, r.waited, r.wait_total_ns, r.wait_max_ns),
        (3, 1, 80, 80)
    );
    assert_eq!(
        (r.busy_ns, r.hold_total_ns, r.max_concurrent, r.span_ns),
        (150, 250, 2, 150)
    );
    assert!((r.parallelism - 250.0 / 150.0).abs() < 1e-12);
    let w = &replay(&ops, Policy::WholeFile)[&(DEV, 1)];
    assert_eq!(
        (w.ops, w.waited, w.wait_total_ns, w.wait_max_ns),
        (3, 2, 270, 180)
    );
    assert_eq!(
        (w.busy_ns, w.hold_total_ns, w.max_concurrent, w.span_ns),
        (250, 250, 1, 250)
    );
    assert_eq!(w.parallelism, 1.0);
    // Under range locking only C (a DIO write here) waited.
    assert_eq!(
        r.waits_by_kind
            .iter()
            .map(|(k, w)| (*k, w.waited, w.wait_total_ns))
            .collect::<Vec<_>>(),
        [(OpKind::DioWrite, 1, 80)]
    );
}

/// invalidate_lock style: DIOs and page ops share the file, punch is
/// exclusive. Same ops as above but C is a punch: A 0-100 and B 10-110
/// share; C (punch) waits for both: 110-160 (wait 90). Busy 0-160.
#[test]
fn shared_whole_file_lets_io_run_together_but_not_punch() {
    let mut ops = [
        op(0, 1, 0, 3, 100),
        op(10, 2, 10, 13, 100),
        op(20, 3, 2, 2, 50),
    ];
    ops[2].kind = OpKind::Punch;
    let r = &replay(&ops, Policy::FileShared)[&(DEV, 1)];
    assert_eq!(
        (
            r.waited,
            r.wait_total_ns,
            r.busy_ns,
            r.max_concurrent,
            r.span_ns
        ),
        (1, 90, 160, 2, 160)
    );
    // A later DIO queues behind the waiting punch (FIFO): D at 30 for 10
    // waits until the punch ends at 160 (130).
    let ops2 = [ops[0], ops[1], ops[2], op(30, 4, 40, 40, 10)];
    let r = &replay(&ops2, Policy::FileShared)[&(DEV, 1)];
    assert_eq!(
        (r.waited, r.wait_total_ns, r.wait_max_ns),
        (2, 90 + 130, 130)
    );
}

/// A task that waits does everything after it that much later.
/// Task 1: [0,0] at 0 for 100. Task 2: [0,0] at 10 for 10, then [50,50]
/// at 30 for 10 (disjoint from everything).
/// Range: task 2's first op waits 90 (granted at 100, held to 110); its
/// second op arrives at 30 + 90 = 120, runs at once (120-130).
#[test]
fn a_waiting_task_is_delayed_afterwards() {
    let ops = [
        op(0, 1, 0, 0, 100),
        op(10, 2, 0, 0, 10),
        op(30, 2, 50, 50, 10),
    ];
    let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
    assert_eq!((r.waited, r.wait_total_ns), (1, 90));
    // busy: 0-110, then 120-130.
    assert_eq!((r.busy_ns, r.span_ns), (120, 130));
    assert_eq!(r.max_concurrent, 1);
}

/// FIFO among overlapping requests: C ([5,5]) queues behind B ([0,9],
/// waiting for A) although A ([0,2]) does not touch page 5.
/// A 0-100; B arrives 10, waits for A: 100-200 (wait 90); C arrives 20,
/// waits for B: 200-210 (wait 180).
#[test]
fn overlapping_requests_keep_fifo_order() {
    let ops = [
        op(0, 1, 0, 2, 100),
        op(10, 2, 0, 9, 100),
        op(20, 3, 5, 5, 10),
    ];
    let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
    assert_eq!((r.waited, r.wait_total_ns, r.wait_max_ns), (2, 270, 180));
}

proptest::proptest! {
    /// Any operations: every one is replayed once under each policy
    /// with its own hold; the whole file never runs two at once;
    /// pairwise disjoint ranges never wait under range locking; and
    /// parallelism never exceeds the most running at once.
    #[test]
    fn replays_are_complete_and_consistent(
        raw in proptest::collection::vec(
            (0u64..1_000, 1u32..5, 0u64..64, 0u64..8, 0u64..200, 0u8..6, 0u64..2),
            1..40,
        )
    ) {
        let mut ops: Vec<FileOp> = raw
            .iter()
            .map(|&(ts, tid, start, len, hold, kind, ino)| FileOp::new(ts, tid, DEV, ino, KINDS[kind as usize], start, start + len, hold))
            .collect();
        ops.sort_by_key(|o| o.ts);
        let holds: u64 = ops.iter().map(|o| o.hold).sum();
        for policy in Policy::ALL {
            let r = replay(&ops, policy);
            let n: u64 = r.values().map(|f| f.ops).sum();
            let h: u64 = r.values().map(|f| f.hold_total_ns).sum();
            proptest::prop_assert_eq!(n, ops.len() as u64);
            proptest::prop_assert_eq!(h, holds);
            for f in r.values() {
                proptest::prop_assert!(f.busy_ns <= f.hold_total_ns);
                proptest::prop_assert!(f.parallelism <= f.max_concurrent as f64 + 1e-9);
                if policy == Policy::WholeFile {
                    proptest::prop_assert!(f.max_concurrent <= 1);
                }
            }
        }
        let disjoint = ops.iter().enumerate().all(|(i, a)| {
            ops[i + 1..]
                .iter()
                .all(|b| a.ino != b.ino || a.last < b.start || b.last < a.start)
        });
        if disjoint {
            let r = replay(&ops, Policy::Range);
            proptest::prop_assert!(r.values().all(|f| f.waited == 0));
        }
    }
}

proptest::proptest! {
    /// Streaming: running the simulation up to any safe horizon between
    /// pushes (every later operation arrives at or after it) gives the
    /// figures of the batch replay.
    #[test]
    fn advancing_between_pushes_changes_nothing(
        raw in proptest::collection::vec(
            (0u64..300, 1u32..4, 0u64..16, 0u64..4, 0u64..100, 0u8..6, 0u64..50),
            1..40,
        )
    ) {
        let mut ops: Vec<(FileOp, u64)> = raw
            .iter()
            .map(|&(ts, tid, start, len, hold, kind, back)| (FileOp::new(ts, tid, DEV, 1, KINDS[kind as usize], start, start + len, hold), back))
            .collect();
        ops.sort_by_key(|o| o.0.ts);
        let plain: Vec<FileOp> = ops.iter().map(|o| o.0).collect();
        for policy in Policy::ALL {
            let mut r = Replay::new(policy);
            for (i, &(o, back)) in ops.iter().enumerate() {
                r.push(o);
                // Any horizon up to the next arrival is safe.
                if let Some(next) = ops.get(i + 1) {
                    r.advance(next.0.ts.saturating_sub(back));
                }
            }
            proptest::prop_assert_eq!(r.finish(), replay(&plain, policy));
        }
    }
}

/// The collector releases operations only once nothing can arrive
/// before them: a DIO in flight holds back the page ops after it.
#[test]
fn collector_releases_in_arrival_order_behind_operations_in_flight() {
    let page = |ts| page_at(ts, 2, 0);
    // A run of page adds ends 2 ns after its last page here (the same
    // index again starts a new one).
    let mut c = Collector::new(Config {
        readahead_gap_ns: 2,
        ..Config::default()
    });
    let mut out = Vec::new();
    c.event(&page(5));
    c.event(&ev(
        10,
        1,
        Body::DioBegin {
            io: 7,
            dev: DEV,
            ino: 1,
            pos: 0,
            len: 4096,
            write: false,
        },
    ));
    assert_eq!(c.ready(&mut out), 10);
    assert_eq!(out.iter().map(|o| o.ts).collect::<Vec<_>>(), [5]);
    c.event(&page(20));
    c.event(&page(30));
    // Still held back by the DIO begun at 10.
    assert_eq!(c.ready(&mut out), 10);
    assert_eq!(out.len(), 1);
    c.event(&ev(40, 0, Body::DioEnd { io: 7, ret: 4096 }));
    assert_eq!(c.ready(&mut out), 40);
    let got: Vec<_> = out.iter().map(|o| (o.ts, o.kind, o.hold)).collect();
    assert_eq!(
        got,
        [
            (5, OpKind::PageAdd, 1000),
            (10, OpKind::DioRead, 30),
            (20, OpKind::PageAdd, 1000),
            (30, OpKind::PageAdd, 1000),
        ]
    );
}

#[test]
fn collector_pairs_operations_and_uses_kara_ranges() {
    let evs = [
        ev(
            10,
            1,
            Body::DioBegin {
                io: 7,
                dev: DEV,
                ino: 1,
                pos: 4096,
                len: 8192,
                write: true,
            },
        ),
        ev(
            15,
            2,
            Body::TruncateBegin {
                dev: DEV,
                ino: 1,
                size: 5000,
                id: None,
            },
        ),
        ev(
            20,
            3,
            Body::PageAdd {
                dev: DEV,
                ino: 1,
                index: 8,
                order: Some(2),
            },
        ),
        ev(30, 0, Body::DioEnd { io: 7, ret: 8192 }),
        ev(40, 2, Body::TruncateEnd { ret: 0, id: None }),
        ev(50, 4, Body::PunchEnd { ret: 0, id: None }),
    ];
    let mut c = Collector::new(Config {
        page_hold_ns: 5,
        ..Config::default()
    });
    for e in &evs {
        c.event(e);
    }
    let (ops, unmatched) = c.finish();
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.ts, o.tid, o.kind, o.start, o.last, o.hold))
        .collect();
    assert_eq!(
        got,
        [
            (10, 1, OpKind::DioWrite, 1, 2, 20),
            (15, 2, OpKind::Truncate, 2, u64::MAX, 25),
            (20, 3, OpKind::PageAdd, 8, 11, 5),
        ]
    );
    assert_eq!(unmatched, 1);
}

/// With ids, an end pairs with the begin of its id whichever task emits
/// it; collapse locks from its position to ~0.
#[test]
fn collector_pairs_by_id_across_tasks() {
    let punch = |ts, tid, op, id| {
        ev(
            ts,
            tid,
            Body::PunchBegin {
                dev: DEV,
                ino: 1,
                pos: 8192,
                len: 4096,
                op,
                id: Some(id),
            },
        )
    };
    let evs = [
        punch(10, 1, PunchOp::Punch, 5),
        punch(11, 1, PunchOp::Collapse, 6),
        ev(
            20,
            9,
            Body::PunchEnd {
                ret: 0,
                id: Some(6),
            },
        ),
        ev(
            30,
            8,
            Body::PunchEnd {
                ret: 0,
                id: Some(5),
            },
        ),
        ev(
            31,
            1,
            Body::PunchEnd {
                ret: 0,
                id: Some(7),
            },
        ),
    ];
    let mut c = Collector::new(Config::default());
    for e in &evs {
        c.event(e);
    }
    let (ops, unmatched) = c.finish();
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.ts, o.tid, o.kind, o.start, o.last, o.hold))
        .collect();
    assert_eq!(
        got,
        [
            (10, 1, OpKind::Punch, 2, 2, 20),
            (11, 1, OpKind::Punch, 2, u64::MAX, 9),
        ]
    );
    assert_eq!(unmatched, 1);
}

fn on(fs: Fs, kind: OpKind, ts: u64, tid: u32, hold: u64) -> FileOp {
    FileOp {
        fs,
        shares_i_rwsem: matches!(kind, OpKind::DioRead),
        ..FileOp::new(ts, tid, DEV, 1, kind, 0, 3, hold)
    }
}

fn lock_waits(f: &Figures) -> Vec<(&'static str, u64, u64)> {
    f.waits_by_lock
        .iter()
        .map(|(k, w)| (*k, w.waited, w.wait_total_ns))
        .collect()
}

/// Mainline, worked by hand on ext4: a punch (task 1) at 0 for 100 holds
/// i_rwsem and invalidate_lock exclusively. A page_add (task 2) at 10
/// waits on invalidate_lock until 100 (90); a DIO read (task 3) at 20 waits
/// on i_rwsem until 100 (80); a fault (task 4) at 30 takes neither.
#[test]
fn mainline_punch_blocks_fills_on_invalidate_lock_and_dio_on_i_rwsem() {
    let ops = [
        on(Fs::Ext4, OpKind::Punch, 0, 1, 100),
        on(Fs::Ext4, OpKind::PageAdd, 10, 2, 1),
        on(Fs::Ext4, OpKind::DioRead, 20, 3, 10),
        on(Fs::Ext4, OpKind::Fault, 30, 4, 1),
    ];
    let r = &replay(&ops, Policy::Mainline)[&(DEV, 1)];
    assert_eq!((r.ops, r.waited, r.wait_total_ns), (4, 2, 170));
    assert_eq!(
        lock_waits(r),
        [("i_rwsem", 1, 80), ("invalidate_lock", 1, 90)]
    );
    // The fill and the DIO read share: both run from 100.
    assert_eq!(r.max_concurrent, 2);
}

/// btrfs punches under i_rwsem alone (`flock::op_locks`): the page_add
/// does not wait, the DIO read still does.
#[test]
fn mainline_btrfs_punch_leaves_invalidate_lock_free() {
    let ops = [
        on(Fs::Btrfs, OpKind::Punch, 0, 1, 100),
        on(Fs::Btrfs, OpKind::PageAdd, 10, 2, 1),
        on(Fs::Btrfs, OpKind::DioRead, 20, 3, 10),
    ];
    let r = &replay(&ops, Policy::Mainline)[&(DEV, 1)];
    assert_eq!(lock_waits(r), [("i_rwsem", 1, 80)]);
}

/// DIO writes that mainline does under an exclusive i_rwsem serialize;
/// shared ones (overwrites, aligned XFS writes) run together.
#[test]
fn mainline_dio_writes_share_i_rwsem_only_where_the_filesystem_does() {
    let mut ops = [
        on(Fs::Xfs, OpKind::DioWrite, 0, 1, 100),
        on(Fs::Xfs, OpKind::DioWrite, 10, 2, 100),
    ];
    let r = &replay(&ops, Policy::Mainline)[&(DEV, 1)];
    assert_eq!((r.waited, r.wait_total_ns), (1, 90));
    for o in &mut ops {
        o.shares_i_rwsem = true;
    }
    let r = &replay(&ops, Policy::Mainline)[&(DEV, 1)];
    assert_eq!((r.waited, r.max_concurrent), (0, 2));
}

/// A trace of mainline: the page_add's event comes at 100, after its
/// measured 90 ns wait for the punch's invalidate_lock. The replay starts
/// it 90 earlier, at 10, so mainline predicts the wait measured, and the
/// task's next operation (at 150 in the trace) arrives at 150. Under range
/// locks the page (5) is outside the punch (0-3): no wait; the task runs
/// no earlier than its trace after that (the next operation arrives at
/// 150, after the punch), so nothing else waits.
#[test]
fn measured_waits_move_arrivals_so_a_mainline_trace_replays_to_itself() {
    let mut fill = on(Fs::Ext4, OpKind::PageAdd, 100, 2, 1);
    (fill.start, fill.last) = (5, 5);
    fill.measured[lock_index(FileLockClass::InvalidateLock)] = KindWaits {
        waited: 1,
        wait_total_ns: 90,
    };
    let next = on(Fs::Ext4, OpKind::PageAdd, 150, 2, 1);
    let mut late = on(Fs::Ext4, OpKind::Punch, 0, 1, 100);
    late.hold = 100;
    let ops = [late, fill, next];
    let m = &replay(&ops, Policy::Mainline)[&(DEV, 1)];
    assert_eq!((m.waited, m.wait_total_ns), (1, 90));
    assert_eq!(lock_waits(m), [("invalidate_lock", 1, 90)]);
    assert_eq!(
        m.vs_measured,
        Agreement {
            both: 1,
            both_predicted_ns: 90,
            both_measured_ns: 90,
            ..Agreement::default()
        }
    );
    let r = &replay(&ops, Policy::Range)[&(DEV, 1)];
    assert_eq!((r.waited, r.wait_total_ns), (0, 0));
    // Had the task kept its 90 ns lead, the next page (0-3, at 60) would
    // have waited 40 for the punch.
    assert_eq!(r.span_ns, 151);
}

/// A model that knows file `(DEV, 1)` on ext4, its `i_rwsem` at `ir` and
/// its `invalidate_lock` at `il` (a `file` event).
fn ext4_file_with_locks(ir: u64, il: u64) -> Model {
    let mut model = Model::new(None);
    model.apply(
        0,
        &ev(
            1,
            1,
            Body::File {
                dev: DEV,
                ino: 1,
                path: None,
                fs: Some("ext4".into()),
                i_rwsem: Some(ir),
                invalidate_lock: Some(il),
            },
        ),
    );
    model
}

/// The collector gives a task's measured waits on a learned lock address
/// to its next operation on that file, only for the locks mainline takes
/// for it; waits followed by nothing expire; every wait counts in
/// `measured`.
#[test]
fn collector_attributes_measured_waits_to_the_next_operation() {
    let (ir, il) = (0x1000, 0x2000);
    let model = ext4_file_with_locks(ir, il);
    let cb = |ts, tid, addr| {
        ev(
            ts,
            tid,
            Body::ContentionBegin {
                addr,
                flags: 0,
                caller: None,
            },
        )
    };
    let ce = |ts, tid| ev(ts, tid, Body::ContentionEnd { addr: None, ret: 0 });
    let page = |ts, tid| page_at(ts, tid, 0);
    let evs = [
        // Task 2: an i_rwsem wait (a buffered write's: not the page_add's)
        // and an invalidate_lock wait, then its page_add.
        cb(10, 2, ir),
        ce(30, 2),
        cb(40, 2, il),
        ce(100, 2),
        page(101, 2),
        // Task 3: a wait on an unknown address, then one followed by
        // nothing within the window.
        cb(200, 3, 0x9999),
        ce(210, 3),
        cb(300, 3, il),
        ce(400, 3),
        page(400 + ATTRIBUTE_WINDOW_NS + 1, 4),
        page(400 + ATTRIBUTE_WINDOW_NS + 2, 3),
    ];
    let mut c = Collector::new(Config::default());
    let mut ops = Vec::new();
    for e in &evs {
        c.event_in(Some(&model), e);
        c.ready(&mut ops);
    }
    let all = c.measured().clone();
    assert_eq!(
        all[&(DEV, 1)],
        [
            KindWaits {
                waited: 1,
                wait_total_ns: 20
            },
            KindWaits {
                waited: 2,
                wait_total_ns: 160
            }
        ]
    );
    ops.extend(c.finish().0);
    let m: Vec<_> = ops.iter().map(|o| (o.tid, o.measured_wait())).collect();
    assert_eq!(m, [(2, 60), (4, 0), (3, 0)]);
    assert!(ops.iter().all(|o| o.fs == Fs::Ext4));
}

fn page_at(ts: u64, tid: u32, index: u64) -> Event {
    ev(
        ts,
        tid,
        Body::PageAdd {
            dev: DEV,
            ino: 1,
            index,
            order: None,
        },
    )
}

fn collect(cfg: Config, m: Option<&Model>, evs: &[Event]) -> Vec<(u64, OpKind, u64, u64, u64)> {
    let mut c = Collector::new(cfg);
    let mut ops = Vec::new();
    for e in evs {
        c.event_in(m, e);
        c.ready(&mut ops);
    }
    ops.extend(c.finish().0);
    ops.iter()
        .map(|o| (o.ts, o.kind, o.start, o.last, o.hold))
        .collect()
}

/// A task's page adds at consecutive indices, close together, are one
/// operation over their pages (a large folio counts its pages); a gap in
/// time or in the indices, another task or another file starts another.
#[test]
fn page_adds_in_a_run_are_one_operation() {
    let cfg = Config {
        page_hold_ns: 5,
        readahead_gap_ns: 100,
        ..Config::default()
    };
    let folio = ev(
        20,
        1,
        Body::PageAdd {
            dev: DEV,
            ino: 1,
            index: 2,
            order: Some(1),
        },
    );
    let other_file = ev(
        40,
        1,
        Body::PageAdd {
            dev: DEV,
            ino: 2,
            index: 5,
            order: None,
        },
    );
    let evs = [
        page_at(10, 1, 0),
        page_at(15, 1, 1),
        folio,             // pages 2-3
        page_at(25, 2, 4), // another task
        page_at(30, 1, 4),
        other_file,
        page_at(50, 1, 5),  // its file again: a new run
        page_at(300, 1, 6), // 250 ns after the last: a new run
        page_at(310, 1, 8), // not the next index
    ];
    assert_eq!(
        collect(cfg, None, &evs),
        [
            (10, OpKind::PageAdd, 0, 4, 25),
            (25, OpKind::PageAdd, 4, 4, 5),
            (40, OpKind::PageAdd, 5, 5, 5),
            (50, OpKind::PageAdd, 5, 5, 5),
            (300, OpKind::PageAdd, 6, 6, 5),
            (310, OpKind::PageAdd, 8, 8, 5),
        ]
    );
}

/// The readahead of a task's own fault (its pages hold the faulting
/// index) holds until the task's next event, at most
/// `fault_read_max_ns` past its last page; a readahead without the
/// faulting page (asynchronous) holds as any run.
#[test]
fn a_faults_readahead_holds_until_the_task_goes_on() {
    let cfg = Config {
        page_hold_ns: 5,
        readahead_gap_ns: 100,
        fault_read_max_ns: 1_000,
    };
    let fault = |ts, index| {
        ev(
            ts,
            1,
            Body::Fault {
                dev: DEV,
                ino: 1,
                index,
            },
        )
    };
    let next = |ts| {
        ev(
            ts,
            1,
            Body::MmapLockRequest {
                mm: 1,
                write: false,
            },
        )
    };
    let evs = [
        fault(0, 3),
        page_at(10, 1, 2),
        page_at(11, 1, 3),
        page_at(12, 1, 4),
        next(400),
        // Asynchronous readahead past the faulting page.
        fault(500, 4),
        page_at(510, 1, 5),
        page_at(511, 1, 6),
        next(900),
        // Nothing after it for longer than the bound.
        fault(1_000, 7),
        page_at(1_010, 1, 7),
        next(5_000),
    ];
    let got = collect(cfg, None, &evs);
    let runs: Vec<_> = got
        .iter()
        .filter(|o| o.1 == OpKind::PageAdd)
        .map(|&(ts, _, s, l, h)| (ts, s, l, h))
        .collect();
    assert_eq!(
        runs,
        [(10, 2, 4, 390), (510, 5, 6, 6), (1_010, 7, 7, 1_000)]
    );
    assert_eq!(got.iter().filter(|o| o.1 == OpKind::Fault).count(), 3);
}

/// A wait for the run's own file lock ends the run (readahead let go of
/// the lock: `filemap_fault` takes it again); a wait for any other lock
/// does not. A second wait for the same lock before any operation starts
/// the measured waits again: the first was for a section that ended with
/// nothing to replay (`page_cache_ra_order` falling back).
#[test]
fn waits_end_runs_only_on_their_file_and_restart_on_the_same_lock() {
    let il = 0x2000;
    let model = ext4_file_with_locks(0x1000, il);
    let cb = |ts, addr| {
        ev(
            ts,
            1,
            Body::ContentionBegin {
                addr,
                flags: 2,
                caller: None,
            },
        )
    };
    let ce = |ts| ev(ts, 1, Body::ContentionEnd { addr: None, ret: 0 });
    let cfg = Config {
        page_hold_ns: 5,
        readahead_gap_ns: 100,
        ..Config::default()
    };
    let evs = [
        cb(10, il),
        ce(20),
        cb(30, il),
        ce(70),
        page_at(71, 1, 0),
        cb(72, 0x9999), // a spinlock: the run goes on
        ce(73),
        page_at(74, 1, 1),
        cb(80, il), // its own file's lock: the run ends
        ce(90),
    ];
    let mut c = Collector::new(cfg);
    let mut ops = Vec::new();
    for e in &evs {
        c.event_in(Some(&model), e);
        c.ready(&mut ops);
    }
    ops.extend(c.finish().0);
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.ts, o.start, o.last, o.hold, o.measured_wait()))
        .collect();
    // Only the second wait (40 ns) is the run's.
    assert_eq!(got, [(71, 0, 1, 8, 40)]);
}
