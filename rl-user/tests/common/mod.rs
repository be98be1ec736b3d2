//! What the integration tests share (`mod common;` at the top of each
//! file): the root policy, the paths of the binaries and of `tests/data/`,
//! running `rltop`, reading a trace back, and event builders.
//!
//! A test file uses only part of it; the rest would be dead code in that
//! test crate, hence the `allow`s below.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use rltop::events::{Body, Event, Mode};
use rltop::trace::{self, Item};

// ------------------------------------------------------------------ paths

/// The `rltop` binary under test.
pub const RLTOP: &str = env!("CARGO_BIN_EXE_rltop");

/// The IO workload of the capture tests (`src/bin/rl-workload.rs`).
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_rl-workload");

/// The `rl-user` crate's directory (`../fuzz` is the fuzz crate).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/data/<rel>`: the hand-written traces, e.g. `data("check/stall.jsonl")`.
pub fn data(rel: &str) -> PathBuf {
    crate_dir().join("tests/data").join(rel)
}

// -------------------------------------------------------------- running

/// Runs `rltop` with `args` to completion, output captured.
pub fn rltop(args: &[&str]) -> Output {
    Command::new(RLTOP).args(args).output().unwrap()
}

/// A run's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every event of a trace (`.rlt` or JSONL); a damaged one fails the test.
pub fn trace_events(path: &Path) -> Vec<Event> {
    trace::open_events(path)
        .unwrap()
        .map(|i| match i.unwrap() {
            Item::Event(e) => e,
            Item::Problem(p) => panic!("{p}"),
        })
        .collect()
}

/// A child process killed when the test lets go of it (also on panic), so
/// a failing test leaves no recorder or workload behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

// ---------------------------------------------------------------- root

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when the root-only test `test` may run. Without root it is
/// skipped with a message, unless `RLTOP_REQUIRE_ROOT_TESTS=1` (what
/// `cargo xtask test` sets in CI, as root): then a skip would hide a
/// broken capture path, so it panics instead.
pub fn need_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("RLTOP_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1") {
        panic!("{test} needs root and RLTOP_REQUIRE_ROOT_TESTS=1");
    }
    eprintln!("skipping {test}: needs root");
    false
}

// -------------------------------------------------------------- events

/// An event of task `tid` in its own process (pid = tid), CPU unknown.
pub fn ev(ts: u64, tid: u32, body: Body) -> Event {
    Event {
        ts,
        tid,
        pid: tid,
        cpu: None,
        body,
    }
}

/// `rl_request` of `[start, last]` on `tree` by the lock `lock`.
pub fn rl_request(tree: u64, lock: u64, start: u64, last: u64, mode: Mode) -> Body {
    Body::RlRequest {
        tree,
        lock,
        start,
        last,
        mode,
    }
}

/// `rl_acquired` of `lock` on `tree`.
pub fn rl_acquired(tree: u64, lock: u64) -> Body {
    Body::RlAcquired { tree, lock }
}

/// `rl_release` of `lock` on `tree`.
pub fn rl_release(tree: u64, lock: u64) -> Body {
    Body::RlRelease { tree, lock }
}

// ------------------------------------------------------------ snapshots

/// A text output against its accepted insta snapshot (`tests/snapshots/`,
/// see `tests/README.md`). insta compares text with trailing whitespace
/// trimmed; every output compared this way ends in exactly one newline, and
/// that is checked here too, so the comparison stays byte for byte.
#[allow(unused_macros)] // as dead_code above: not every test file snapshots
macro_rules! assert_text_snapshot {
    ($name:expr, $got:expr $(,)?) => {{
        let got: &str = &$got;
        $crate::common::assert_one_final_newline($name, got);
        insta::assert_snapshot!($name, got, stringify!($got));
    }};
}
#[allow(unused_imports)]
pub(crate) use assert_text_snapshot;

/// `got` is trimmed of trailing whitespace plus exactly one `\n`.
pub fn assert_one_final_newline(name: &str, got: &str) {
    assert!(
        got.strip_suffix('\n')
            .is_some_and(|body| body.trim_end().len() == body.len()),
        "{name}: the output does not end in exactly one newline: ...{:?}",
        &got[got.char_indices().rev().nth(39).map_or(0, |(i, _)| i)..]
    );
}
