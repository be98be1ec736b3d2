//! Event builders for the crate's unit tests, one copy for every module
//! (the integration tests of `rl-user` have theirs in `tests/common/`).

use crate::events::{Body, Event, Mode};

/// An event of task `tid` in its own process (pid = tid), CPU unknown.
pub(crate) fn ev(ts: u64, tid: u32, body: Body) -> Event {
    Event {
        ts,
        tid,
        pid: tid,
        cpu: None,
        body,
    }
}

/// `rl_request` of `[start, last]` on `tree` by the lock `lock`.
pub(crate) fn rl_request(tree: u64, lock: u64, start: u64, last: u64, mode: Mode) -> Body {
    Body::RlRequest {
        tree,
        lock,
        start,
        last,
        mode,
    }
}

/// Task `tid` requests `[start, last]` of tree 1 with the lock `lock`.
pub(crate) fn req(ts: u64, tid: u32, lock: u64, start: u64, last: u64, mode: Mode) -> Event {
    ev(ts, tid, rl_request(1, lock, start, last, mode))
}

/// `lock` of tree 1 is granted to `tid`.
pub(crate) fn acq(ts: u64, tid: u32, lock: u64) -> Event {
    ev(ts, tid, Body::RlAcquired { tree: 1, lock })
}

/// `lock` of tree 1 is released by `tid`.
pub(crate) fn rel(ts: u64, tid: u32, lock: u64) -> Event {
    ev(ts, tid, Body::RlRelease { tree: 1, lock })
}
