//! The bugs the defect scenarios inject, one each, as a synthetic event
//! sequence appended after the workload on a second tree (so the workload's
//! own events stay correct and the bug is exactly what the scenario names).
//!
//! | scenario | bug | finding |
//! |---|---|---|
//! | `inversion` | a task requests mmap_lock while holding a range lock | `ordering_inversion` |
//! | `overlap` | two tasks are granted overlapping exclusive ranges | `conflicting_grant` |
//! | `unlocked-page` | a page is added inside a range another task holds | `page_in_locked_range` |
//! | `unlock-unheld` | a release of a lock never acquired | `unlock_unheld` |
//! | `unfair` | a later request is granted before an earlier conflicting one | `fifo_violation` |
//! | `lost-wakeup` | a waiter is never woken after its blocker left | `stall` |
//! | `deadlock` | two tasks each wait for the other's range | `deadlock` |
//! | `leak` | a lock is still held when its task exits | `leaked_lock` |

use crate::events::{Body, Dev, Event, Mode, PunchOp};

use super::{MM, PID};

/// The second file, where the bugs happen.
pub const BUG_TREE: u64 = 0xffff_8880_3000_0000;
pub const BUG_DEV: Dev = Dev { major: 8, minor: 1 };
pub const BUG_INO: u64 = 13;
/// The tasks of the bug sequences.
pub const TASK_A: u32 = PID + 500;
pub const TASK_B: u32 = PID + 501;
pub const TASK_C: u32 = PID + 502;

struct Seq<'a> {
    events: &'a mut Vec<Event>,
    ts: u64,
}

impl Seq<'_> {
    /// Appends an event `gap` nanoseconds after the previous one.
    fn at(&mut self, gap: u64, tid: u32, body: Body) {
        self.ts += gap;
        self.events.push(Event {
            ts: self.ts,
            tid,
            pid: PID,
            cpu: None,
            body,
        });
    }
    /// 2 ms apart: far enough that no rule's window joins two steps.
    fn ev(&mut self, tid: u32, body: Body) {
        self.at(2_000_000, tid, body);
    }
    fn request(&mut self, tid: u32, lock: u64, start: u64, last: u64) {
        self.ev(
            tid,
            Body::RlRequest {
                tree: BUG_TREE,
                lock,
                start,
                last,
                mode: Mode::Excl,
            },
        );
    }
    /// The request entered the queue, 100 ns after its call (a kernel
    /// whose profile probes the insertion).
    fn queued(&mut self, tid: u32, lock: u64) {
        self.at(
            100,
            tid,
            Body::RlQueued {
                tree: BUG_TREE,
                lock,
            },
        );
    }
    fn acquired(&mut self, tid: u32, lock: u64) {
        self.ev(
            tid,
            Body::RlAcquired {
                tree: BUG_TREE,
                lock,
            },
        );
    }
    fn release(&mut self, tid: u32, lock: u64) {
        self.ev(
            tid,
            Body::RlRelease {
                tree: BUG_TREE,
                lock,
            },
        );
    }
}

const L1: u64 = 0xffff_c900_00a0_0000;
const L2: u64 = 0xffff_c900_00a0_0048;
const L3: u64 = 0xffff_c900_00a0_0090;

/// Appends the bug of `scenario` (nothing for `mixed`).
#[allow(clippy::too_many_lines)] // one arm per scenario or step of the simulated task
pub fn inject(scenario: &str, events: &mut Vec<Event>, _seed: u64) {
    if scenario == "mixed" {
        return;
    }
    let ts = events.last().map_or(0, |e| e.ts);
    let mut s = Seq { events, ts };
    s.ev(
        TASK_A,
        Body::Task {
            comm: "bug-a".into(),
            kthread: false,
        },
    );
    s.ev(
        TASK_B,
        Body::Task {
            comm: "bug-b".into(),
            kthread: false,
        },
    );
    s.ev(
        TASK_C,
        Body::Task {
            comm: "bug-c".into(),
            kthread: false,
        },
    );
    s.ev(
        TASK_A,
        Body::Tree {
            tree: BUG_TREE,
            dev: BUG_DEV,
            ino: BUG_INO,
        },
    );
    match scenario {
        "inversion" => {
            s.request(TASK_A, L1, 0, 7);
            s.acquired(TASK_A, L1);
            // The bug: mmap_lock after the range lock.
            s.ev(
                TASK_A,
                Body::MmapLockRequest {
                    mm: MM,
                    write: false,
                },
            );
            s.ev(
                TASK_A,
                Body::MmapLockAcquired {
                    mm: MM,
                    write: false,
                    success: true,
                },
            );
            s.ev(
                TASK_A,
                Body::MmapLockRelease {
                    mm: MM,
                    write: false,
                },
            );
            s.release(TASK_A, L1);
        }
        "overlap" => {
            s.request(TASK_A, L1, 0, 7);
            s.acquired(TASK_A, L1);
            s.request(TASK_B, L2, 4, 9);
            // The bug: granted while A holds pages 4..=7.
            s.acquired(TASK_B, L2);
            s.release(TASK_B, L2);
            s.release(TASK_A, L1);
        }
        "unlocked-page" => {
            s.ev(
                TASK_A,
                Body::PunchBegin {
                    dev: BUG_DEV,
                    ino: BUG_INO,
                    pos: 0,
                    len: 8 * 4096,
                    op: PunchOp::Punch,
                    id: None,
                },
            );
            s.request(TASK_A, L1, 0, 7);
            s.acquired(TASK_A, L1);
            // The bug: B adds page 3 without taking the range lock.
            s.ev(
                TASK_B,
                Body::PageAdd {
                    dev: BUG_DEV,
                    ino: BUG_INO,
                    index: 3,
                    order: Some(0),
                },
            );
            s.release(TASK_A, L1);
            s.ev(TASK_A, Body::PunchEnd { ret: 0, id: None });
        }
        "unlock-unheld" => {
            s.request(TASK_A, L1, 0, 7);
            s.acquired(TASK_A, L1);
            s.release(TASK_A, L1);
            // The bug: the same lock released twice.
            s.release(TASK_A, L1);
        }
        "unfair" => {
            // Insertion observed: the queue order is proven.
            s.request(TASK_A, L1, 0, 9);
            s.queued(TASK_A, L1);
            s.acquired(TASK_A, L1);
            s.request(TASK_B, L2, 0, 9);
            s.queued(TASK_B, L2);
            s.request(TASK_C, L3, 5, 5);
            s.queued(TASK_C, L3);
            s.release(TASK_A, L1);
            // The bug: C, queued behind B on page 5, goes first.
            s.acquired(TASK_C, L3);
            s.release(TASK_C, L3);
            s.acquired(TASK_B, L2);
            s.release(TASK_B, L2);
        }
        "lost-wakeup" => {
            s.request(TASK_A, L1, 0, 9);
            s.acquired(TASK_A, L1);
            s.request(TASK_B, L2, 2, 3);
            s.release(TASK_A, L1);
            // The bug: B is never woken. Time goes on (a marker 5 s later).
            s.at(
                5_000_000_000,
                TASK_C,
                Body::Marker {
                    text: "sim: 5 s later".into(),
                },
            );
            s.ev(TASK_C, Body::Exit);
        }
        "deadlock" => {
            s.request(TASK_A, L1, 0, 0);
            s.acquired(TASK_A, L1);
            s.request(TASK_B, L2, 1, 1);
            s.acquired(TASK_B, L2);
            // Each now waits for the other's page.
            s.request(TASK_A, L3, 1, 1);
            s.request(TASK_B, 0xffff_c900_00a0_00d8, 0, 0);
        }
        "leak" => {
            s.request(TASK_A, L1, 0, 7);
            s.acquired(TASK_A, L1);
            // The bug: A exits holding its range.
            s.ev(TASK_A, Body::Exit);
        }
        _ => {}
    }
}
