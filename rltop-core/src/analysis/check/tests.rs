//! The checker's own tests: the ledger's rules of truth across rules.

use super::*;
use crate::events::{Body, Dev, Event, Mode};
use crate::testing::ev;

fn run(cfg: Config, evs: &[Event]) -> Verdict {
    let mut c = Checker::over(Model::new(None), cfg);
    for (i, e) in evs.iter().enumerate() {
        c.event(i as u64, e);
    }
    c.finish()
}

/// `rl_request` of `lock` on tree 1.
fn rl_req(ts: u64, tid: u32, lock: u64, start: u64, last: u64, mode: Mode) -> Event {
    ev(
        ts,
        tid,
        Body::RlRequest {
            tree: 1,
            lock,
            start,
            last,
            mode,
        },
    )
}

/// `rl_acquired` of `lock` on tree 1.
fn rl_acq(ts: u64, tid: u32, lock: u64) -> Event {
    ev(ts, tid, Body::RlAcquired { tree: 1, lock })
}

/// `rl_queued` of `lock` on tree 1: it entered the queue.
fn rl_queued(ts: u64, tid: u32, lock: u64) -> Event {
    ev(ts, tid, Body::RlQueued { tree: 1, lock })
}

/// `rl_release` of `lock` on tree 1.
fn rl_rel(ts: u64, tid: u32, lock: u64) -> Event {
    ev(ts, tid, Body::RlRelease { tree: 1, lock })
}

/// A live recording begins while a lock is held: its release, and the
/// wait it caused, are not proven bugs.
#[test]
fn recorded_traces_start_mid_stream() {
    let s = 1_000_000_000;
    let evs = [
        // 7 waits for a lock taken before the trace began (unseen).
        ev(
            s,
            7,
            Body::RlRequest {
                tree: 1,
                lock: 2,
                start: 0,
                last: 0,
                mode: Mode::Excl,
            },
        ),
        ev(3 * s, 6, Body::RlRelease { tree: 1, lock: 1 }),
        ev(3 * s + 1, 7, Body::RlAcquired { tree: 1, lock: 2 }),
    ];
    let rec = run(
        Config {
            clean_start: false,
            ..Config::default()
        },
        &evs,
    );
    let kinds: Vec<_> = rec.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::STALL, false), (Kind::UNLOCK_UNHELD, false)]);
    assert!(!rec.failed());
    // A stall on a tree with no unseen lock is a bug even there.
    let evs2 = [
        ev(
            s,
            6,
            Body::RlRequest {
                tree: 1,
                lock: 1,
                start: 0,
                last: 0,
                mode: Mode::Excl,
            },
        ),
        ev(s, 6, Body::RlAcquired { tree: 1, lock: 1 }),
        ev(
            s,
            7,
            Body::RlRequest {
                tree: 1,
                lock: 2,
                start: 0,
                last: 0,
                mode: Mode::Excl,
            },
        ),
        ev(s + 1, 6, Body::RlRelease { tree: 1, lock: 1 }),
        ev(
            3 * s,
            6,
            Body::Marker {
                text: String::new(),
            },
        ),
        // Woken at last: it was never blocked by anything unseen.
        ev(3 * s + 1, 7, Body::RlAcquired { tree: 1, lock: 2 }),
    ];
    let rec2 = run(
        Config {
            clean_start: false,
            ..Config::default()
        },
        &evs2,
    );
    let kinds: Vec<_> = rec2.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::STALL, true)]);
    // Still waiting at the end: maybe for a lock older than the trace.
    let rec3 = run(
        Config {
            clean_start: false,
            ..Config::default()
        },
        &evs2[..5],
    );
    let kinds: Vec<_> = rec3.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::STALL, false)]);
    // The same events in a trace that starts clean are bugs.
    let clean = run(Config::default(), &evs);
    assert!(clean.failed());
    assert!(clean.findings.iter().all(|f| f.certain));
}

#[test]
fn repeated_problems_fold_into_one_finding() {
    let dev = Dev { major: 8, minor: 1 };
    let mut evs = vec![
        ev(
            1,
            1,
            Body::Tree {
                tree: 1,
                dev,
                ino: 5,
            },
        ),
        ev(
            2,
            1,
            Body::RlRequest {
                tree: 1,
                lock: 9,
                start: 0,
                last: 9,
                mode: Mode::Write,
            },
        ),
        ev(3, 1, Body::RlAcquired { tree: 1, lock: 9 }),
    ];
    for i in 0..5 {
        evs.push(ev(
            4 + i,
            2,
            Body::PageAdd {
                dev,
                ino: 5,
                index: i,
                order: Some(0),
            },
        ));
    }
    let v = run(Config::default(), &evs);
    assert_eq!(v.findings.len(), 1);
    assert_eq!(v.findings[0].kind, Kind::PAGE_IN_LOCKED_RANGE);
    assert!(v.findings[0].message.ends_with("(and 4 more)"));
}

/// A task waiting for a range it holds itself is an AA deadlock, unless
/// its DIO is in flight there: completion releases that lock.
#[test]
fn self_wait_is_a_deadlock_unless_dio_owns_the_lock() {
    let dev = Dev { major: 8, minor: 1 };
    let base = [
        ev(
            1,
            1,
            Body::Tree {
                tree: 1,
                dev,
                ino: 5,
            },
        ),
        ev(
            2,
            1,
            Body::RlRequest {
                tree: 1,
                lock: 9,
                start: 0,
                last: 9,
                mode: Mode::Excl,
            },
        ),
        ev(3, 1, Body::RlAcquired { tree: 1, lock: 9 }),
    ];
    let again = ev(
        4,
        1,
        Body::RlRequest {
            tree: 1,
            lock: 10,
            start: 5,
            last: 5,
            mode: Mode::Excl,
        },
    );
    let mut evs = base.to_vec();
    evs.push(again.clone());
    let v = run(Config::default(), &evs);
    assert_eq!(v.findings.len(), 1);
    let f = &v.findings[0];
    assert_eq!(
        (f.kind, f.certain, &f.tids[..]),
        (Kind::DEADLOCK, true, &[1][..])
    );
    assert_eq!(f.evidence, [2, 3]);

    let mut evs = vec![ev(
        0,
        1,
        Body::DioBegin {
            io: 7,
            dev,
            ino: 5,
            pos: 0,
            len: 40960,
            write: true,
        },
    )];
    evs.extend(base.iter().cloned());
    evs.push(again);
    evs.push(ev(5, 0, Body::DioEnd { io: 7, ret: 0 }));
    evs.push(ev(6, 0, Body::RlRelease { tree: 1, lock: 9 }));
    evs.push(ev(7, 1, Body::RlAcquired { tree: 1, lock: 10 }));
    evs.push(ev(8, 1, Body::RlRelease { tree: 1, lock: 10 }));
    let v = run(Config::default(), &evs);
    assert_eq!(v.findings, []);
}

#[test]
fn findings_past_the_cap_are_counted_and_still_fail() {
    let evs: Vec<_> = (0..MAX_FINDINGS as u64 + 5)
        .map(|i| ev(i, 1, Body::RlRelease { tree: 1, lock: i }))
        .collect();
    let v = run(Config::default(), &evs);
    assert_eq!(v.findings.len(), MAX_FINDINGS);
    assert_eq!(v.suppressed, 5);
    assert!(v.failed());
    assert!(crate::views::findings::json(&v).ends_with(",\"suppressed\":5}"));
}

/// munmap() downgrades its mmap_lock (a read acquisition with no
/// request, then a read release): no write hold may stay behind, or
/// the next two writers "deadlock" on it (seen in system-wide
/// recordings of parallel builds, when the trace ends meanwhile).
#[test]
fn mmap_write_downgrade_leaves_no_phantom_writer() {
    let acq = |write| Body::MmapLockAcquired {
        mm: 5,
        write,
        success: true,
    };
    let evs = [
        ev(1, 1, Body::MmapLockRequest { mm: 5, write: true }),
        ev(2, 1, acq(true)),
        // mmap_write_downgrade(), then mmap_read_unlock().
        ev(3, 1, acq(false)),
        ev(
            4,
            1,
            Body::MmapLockRelease {
                mm: 5,
                write: false,
            },
        ),
        // Two writers arrive; the trace ends before either is seen
        // acquiring.
        ev(5, 2, Body::MmapLockRequest { mm: 5, write: true }),
        ev(6, 1, Body::MmapLockRequest { mm: 5, write: true }),
    ];
    let v = run(Config::default(), &evs);
    assert_eq!(v.findings, [], "{:#?}", v.findings);
}

/// rwsem queueing: a reader queues behind a waiting writer, so
/// reader-holds-range / writer-waits / reader-waits closes a cycle.
#[test]
fn mmap_reader_queued_behind_a_waiting_writer_can_deadlock() {
    let rq = |tree, lock| Body::RlRequest {
        tree,
        lock,
        start: 0,
        last: 0,
        mode: Mode::Excl,
    };
    let evs = [
        // 1 holds mmap_lock for reading.
        ev(
            1,
            1,
            Body::MmapLockRequest {
                mm: 5,
                write: false,
            },
        ),
        ev(
            2,
            1,
            Body::MmapLockAcquired {
                mm: 5,
                write: false,
                success: true,
            },
        ),
        // 3 holds a range lock.
        ev(3, 3, rq(1, 30)),
        ev(4, 3, Body::RlAcquired { tree: 1, lock: 30 }),
        // 2 wants to write mmap_lock: waits for 1.
        ev(5, 2, Body::MmapLockRequest { mm: 5, write: true }),
        // 3 wants to read mmap_lock: queued behind writer 2.
        ev(
            6,
            3,
            Body::MmapLockRequest {
                mm: 5,
                write: false,
            },
        ),
        // 1 wants 3's range: 1 -> 3 -> 2 -> 1.
        ev(7, 1, rq(1, 10)),
    ];
    let v = run(Config::default(), &evs);
    let dl: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.kind == Kind::DEADLOCK)
        .collect();
    assert_eq!(dl.len(), 1, "{:#?}", v.findings);
    assert_eq!(dl[0].tids, [1, 3, 2]);
    assert_eq!(dl[0].evidence, [1, 3, 4, 5, 6]);
    // Reported, but not certain: 3 queues behind 2 only by the order of
    // their requests' tracepoints, which fire before the rwsem's queueing
    // (a preemption in between swaps them).
    assert!(!dl[0].certain);
    // If the reader then gets mmap_lock after all (rwsem reader lock
    // stealing), there was no deadlock.
    let mut evs = evs.to_vec();
    evs.push(ev(
        8,
        3,
        Body::MmapLockAcquired {
            mm: 5,
            write: false,
            success: true,
        },
    ));
    let v = run(Config::default(), &evs);
    assert!(
        v.findings.iter().all(|f| f.kind != Kind::DEADLOCK),
        "{:#?}",
        v.findings
    );
}

/// The contract documents every finding kind a rule reports, with its
/// severity, in the kinds table of `docs/findings.md`.
#[test]
fn every_finding_kind_is_documented() {
    let doc = include_str!("../../../../docs/findings.md");
    for r in rules() {
        let kind = r.kind().as_str();
        let sev = match r.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        assert!(
            doc.lines()
                .any(|l| l.starts_with(&format!("| `{kind}`")) && l.contains(&format!("| {sev} |"))),
            "docs/findings.md has no {sev} row for {kind}"
        );
    }
}

/// A page fault under an `invalidate_lock` taken for write (the fentry and
/// kprobe sources carry the write request's stack): one inversion whose
/// report shows both stacks, lockdep-style, where the lock was taken and
/// where the fault came from.
#[test]
fn inversion_under_invalidate_lock_shows_both_stacks() {
    use crate::events::FileLockClass;
    let dev = Dev { major: 7, minor: 0 };
    let lock = |stack: Option<&str>| Body::FileLockRequest {
        dev,
        ino: 12,
        class: FileLockClass::InvalidateLock,
        write: true,
        trylock: Some(false),
        stack: stack.map(str::to_string),
    };
    let evs = [
        ev(
            10,
            5,
            lock(Some("down_write+0x1;rltest_fault+0x2c [rltest_locks]")),
        ),
        ev(
            11,
            5,
            Body::FileLockAcquired {
                dev,
                ino: 12,
                class: FileLockClass::InvalidateLock,
                write: true,
                success: true,
            },
        ),
        ev(
            12,
            5,
            Body::PageFault {
                addr: 0x7000,
                user: false,
                write: Some(true),
                held: 1,
                stack: Some("exc_page_fault+0x1;rltest_fault+0x40 [rltest_locks]".into()),
            },
        ),
    ];
    let mut m = Model::new(None);
    m.set_lock_source(Some("fentry"));
    let mut c = Checker::over(m, Config::default());
    for (i, e) in evs.iter().enumerate() {
        c.event(i as u64, e);
    }
    let v = c.finish();
    assert_eq!(v.findings.len(), 1, "{:#?}", v.findings);
    let f = &v.findings[0];
    assert_eq!((f.kind, f.certain), (Kind::ORDERING_INVERSION, true));
    assert_eq!(
        f.links[0].holds_at.as_deref(),
        Some("down_write+0x1;rltest_fault+0x2c [rltest_locks]")
    );
    assert!(
        f.message.contains("held lock taken at: down_write+0x1"),
        "{}",
        f.message
    );
    let text = crate::views::findings::text(&v, &Default::default());
    assert!(
        text.contains(
            "the held lock was taken at:\n  down_write+0x1\n  rltest_fault+0x2c [rltest_locks]\n"
        ) && text.contains("the new request is at:\n  exc_page_fault+0x1\n"),
        "{text}"
    );
    // Released: the stack goes with the hold.
    let mut m = Model::new(None);
    m.set_lock_source(Some("fentry"));
    for (i, e) in evs[..2].iter().enumerate() {
        m.apply(i as u64, e);
    }
    assert_eq!(m.fl_stacks.len(), 1);
    m.apply(
        2,
        &ev(
            13,
            5,
            Body::FileLockRelease {
                dev,
                ino: 12,
                class: FileLockClass::InvalidateLock,
                write: true,
            },
        ),
    );
    assert!(m.fl_stacks.is_empty());
}

/// Lustre's cancel: on a signal, `range_lock()` unlocks its own
/// never-granted lock, then returns the error. The release runs inside the
/// waiting task's own call, and the call's error return proves it was the
/// cancel: no finding, and the lock is one the model knew. Without that
/// return, or released by another task, it stays a finding.
#[test]
fn a_release_inside_the_waiters_own_cancelled_call_is_its_cancel() {
    let req = |ts, tid, lock| rl_req(ts, tid, lock, 0, 9, Mode::Excl);
    let rel = rl_rel;
    let held_then_waiting = |waiter_tail: &[Event]| {
        let mut evs = vec![req(10, 6, 1), rl_acq(11, 6, 1), req(20, 7, 2)];
        evs.extend_from_slice(waiter_tail);
        evs.push(rel(100, 6, 1));
        evs
    };
    // Released inside its call, then the call's -ERESTARTSYS.
    let cancel = held_then_waiting(&[
        rel(30, 7, 2),
        ev(31, 7, Body::RlCancel { tree: 1, lock: 2 }),
    ]);
    let v = run(Config::default(), &cancel);
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    // The same release with no error return after it: a bug.
    let unreturned = held_then_waiting(&[rel(30, 7, 2)]);
    let v = run(Config::default(), &unreturned);
    let kinds: Vec<_> = v.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::UNLOCK_UNHELD, true)]);
    // Another task releasing the waiter's request: a bug, whatever follows.
    let other = held_then_waiting(&[
        rel(30, 8, 2),
        ev(31, 7, Body::RlCancel { tree: 1, lock: 2 }),
    ]);
    let v = run(Config::default(), &other);
    let kinds: Vec<_> = v.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&Kind::UNLOCK_UNHELD), "{kinds:?}");
}

/// A downgrade is one change of mode that keeps the lock's place in the
/// queue: the reader queued behind it goes, the writer queued next keeps
/// waiting, and so does the reader behind that writer (FIFO). As a release
/// and a new read request it would be queued last and "granted past" the
/// writer: a false fifo_violation.
#[test]
fn a_downgrade_past_a_queued_writer_lets_only_the_readers_it_blocked_go() {
    let (req, acq, rel) = (rl_req, rl_acq, rl_rel);
    let ms = 1_000_000;
    let q = rl_queued;
    let head = [
        req(ms, 1, 1, 0, 9, Mode::Write),
        q(ms + 1, 1, 1),
        acq(ms + 2, 1, 1),
        req(10 * ms, 2, 2, 0, 9, Mode::Read),
        q(10 * ms + 1, 2, 2),
        req(20 * ms, 3, 3, 0, 9, Mode::Write),
        q(20 * ms + 1, 3, 3),
        req(30 * ms, 4, 4, 2, 3, Mode::Read),
        q(30 * ms + 1, 4, 4),
        ev(40 * ms, 1, Body::RlDowngrade { tree: 1, lock: 1 }),
    ];
    let mut good = head.to_vec();
    good.extend([
        acq(41 * ms, 2, 2),
        rel(50 * ms, 2, 2),
        rel(60 * ms, 1, 1),
        acq(61 * ms, 3, 3),
        rel(70 * ms, 3, 3),
        acq(71 * ms, 4, 4),
        rel(80 * ms, 4, 4),
    ]);
    let v = run(Config::default(), &good);
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    // The reader behind the writer let in by the downgrade: a bug still.
    let mut bad = head.to_vec();
    bad.extend([acq(41 * ms, 4, 4)]);
    let v = run(Config::default(), &bad);
    assert!(
        v.findings.iter().any(|f| f.certain),
        "a grant past the queued writer is found: {:?}",
        v.findings
    );
}

/// An ABBA deadlock that a signal broke (one wait cancelled, 3 s in): the
/// other task then gets its lock, which would withdraw a deadlock the
/// model only feared. Here it stays, certain, saying it was broken and
/// how long it stood.
#[test]
fn a_deadlock_a_signal_broke_stays_a_finding_with_how_long_it_stood() {
    let s = 1_000_000_000;
    let req = |ts, tid, lock, start| rl_req(ts, tid, lock, start, start, Mode::Excl);
    let (acq, rel) = (rl_acq, rl_rel);
    let evs = [
        req(s, 1, 10, 0),
        acq(s + 1, 1, 10),
        req(s + 2, 2, 20, 5),
        acq(s + 3, 2, 20),
        req(s + 4, 1, 11, 5),
        req(s + 5, 2, 21, 0),
        // 3 s later a signal interrupts task 2's wait.
        ev(4 * s + 5, 2, Body::RlCancel { tree: 1, lock: 21 }),
        rel(4 * s + 6, 2, 20),
        acq(4 * s + 7, 1, 11),
        rel(4 * s + 8, 1, 11),
        rel(4 * s + 9, 1, 10),
    ];
    let v = run(Config::default(), &evs);
    let d: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.kind == Kind::DEADLOCK)
        .collect();
    assert_eq!(d.len(), 1, "{:?}", v.findings);
    assert!(d[0].certain);
    assert_eq!(d[0].broken_after_ns, Some(3 * s));
    assert!(
        d[0].message.contains("broken after 3.000 s"),
        "{}",
        d[0].message
    );
    assert!(d[0].evidence.contains(&6), "the cancel is evidence");
    assert!(v.failed());
    // Lustre's cancel: the call releases its own waiting request first.
    let mut lustre = evs.to_vec();
    lustre.insert(6, rel(4 * s + 4, 2, 21));
    let v = run(Config::default(), &lustre);
    let kinds: Vec<_> = v.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::DEADLOCK, true)], "{:?}", v.findings);
    assert!(v.findings[0].message.contains("broken after"));
}

/// A lost wakeup in a live recording: the holder released, and its
/// waiter still waits when the recording ends. Without the tree's init in
/// the trace, a lock taken before the recording may block the waiter:
/// uncertain. With it (`rl_tree_init`), every lock of the tree is in the
/// trace: a certain stall, and the run fails.
#[test]
fn a_waiter_hung_on_a_tree_whose_whole_life_is_traced_is_a_certain_stall() {
    let s = 1_000_000_000;
    let req = |ts, tid, lock| rl_req(ts, tid, lock, 0, 9, Mode::Excl);
    let hang = [
        req(s, 6, 1),
        rl_acq(s + 1, 6, 1),
        req(s + 2, 7, 2),
        rl_rel(s + 3, 6, 1),
        ev(
            4 * s,
            6,
            Body::Marker {
                text: String::new(),
            },
        ),
    ];
    let live = Config {
        clean_start: false,
        ..Config::default()
    };
    let v = run(live, &hang);
    let kinds: Vec<_> = v.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::STALL, false)]);
    let mut inited = vec![ev(s - 1, 5, Body::RlTreeInit { tree: 1 })];
    inited.extend(hang);
    let v = run(live, &inited);
    let kinds: Vec<_> = v.findings.iter().map(|f| (f.kind, f.certain)).collect();
    assert_eq!(kinds, [(Kind::STALL, true)]);
    assert!(v.failed());
}

/// The queue order from the locks' sequence numbers (`rl_queue_seq`, read
/// as each call returns): task 2 asks first, task 3 2 ms later, and 3 is
/// served first. Fair if 2 entered the queue after 3 (preempted between
/// its call and its insertion); a violation if before, known only when 2
/// returns; unknown if 2 is cancelled or never returns.
#[test]
fn a_grant_past_an_earlier_request_is_judged_by_the_queue_numbers() {
    let ms = 1_000_000;
    let seq = |ts, tid, lock, seq| ev(ts, tid, Body::RlQueueSeq { tree: 1, lock, seq });
    let req = |ts, tid, lock| rl_req(ts, tid, lock, 0, 9, Mode::Excl);
    let head = |late: u64| {
        vec![
            req(ms, 1, 1),
            seq(ms + 1, 1, 1, 1),
            rl_acq(ms + 2, 1, 1),
            req(10 * ms, 2, 2),
            req(12 * ms, 3, 3),
            rl_rel(20 * ms, 1, 1),
            seq(21 * ms, 3, 3, 3),
            rl_acq(21 * ms + 1, 3, 3),
            rl_rel(30 * ms, 3, 3),
            // 2's number: `late` (2) entered before 3, else after.
            seq(31 * ms, 2, 2, late),
        ]
    };
    let fifo = |evs: &[Event]| -> Vec<bool> {
        run(Config::default(), evs)
            .findings
            .iter()
            .filter(|f| f.kind == Kind::FIFO_VIOLATION)
            .map(|f| f.certain)
            .collect()
    };
    let mut fair = head(4);
    fair.extend([rl_acq(31 * ms + 1, 2, 2), rl_rel(40 * ms, 2, 2)]);
    assert_eq!(fifo(&fair), Vec::<bool>::new(), "2 entered after 3");
    let mut unfair = head(2);
    unfair.extend([rl_acq(31 * ms + 1, 2, 2), rl_rel(40 * ms, 2, 2)]);
    assert_eq!(fifo(&unfair), [true], "2 entered before 3");
    let mut cancelled = head(2);
    cancelled.pop();
    cancelled.extend([
        seq(31 * ms, 2, 2, 2),
        ev(31 * ms + 1, 2, Body::RlCancel { tree: 1, lock: 2 }),
    ]);
    assert_eq!(
        fifo(&cancelled),
        [false],
        "2 may have left before 3's grant"
    );
    let mut hung = head(2);
    hung.pop();
    assert_eq!(fifo(&hung), [false], "2's place never read");
}
