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

// ------------------------------------------------- loop-mounted filesystems

/// The filesystems the live tests cover, each on its own loop device.
pub const FILESYSTEMS: [&str; 3] = ["ext4", "xfs", "btrfs"];

/// Whether a live test on `fs` can run here: root, its `mkfs`, and the
/// kernel's support. Skips with a message, or fails where the tests must
/// run (`RLTOP_REQUIRE_ROOT_TESTS=1`, CI: `cargo xtask setup` installs
/// `xfsprogs` and `btrfs-progs`).
pub fn need_fs(test: &str, fs: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    let required = std::env::var("RLTOP_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    let mkfs = format!("mkfs.{fs}");
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {mkfs}")])
        .output()
        .is_ok_and(|o| o.status.success());
    let supported = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().last() == Some(fs)));
    let why = match (found, supported) {
        (false, _) => format!("no {mkfs} (cargo xtask setup installs it)"),
        (_, false) => format!("this kernel has no {fs}"),
        _ => return true,
    };
    assert!(!required, "{test}: {why}");
    eprintln!("skipping {test}: {why}");
    false
}

/// A filesystem made in a sparse image in a temporary directory and
/// loop-mounted there; unmounted (freeing its loop device) when dropped.
pub struct LoopFs {
    /// The temporary directory holding the image and the mount point.
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub fs: &'static str,
}

impl LoopFs {
    pub fn new(fs: &'static str) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix(&format!("loopfs-{fs}"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let img = dir.path().join("fs.img");
        // XFS wants 300 MB at least; the image is sparse.
        std::fs::File::create(&img)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let force = if fs == "ext4" { "-F" } else { "-f" };
        let out = Command::new(format!("mkfs.{fs}"))
            .args(["-q", force])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "mkfs.{fs}: {}", stderr(&out));
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", fs, "-o", "loop"])
            .arg(&img)
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount {fs}: {}", stderr(&out));
        LoopFs { dir, mnt, fs }
    }

    /// The filesystem's device as the kernel's events carry it (`s_dev`,
    /// from mountinfo: for btrfs, `stat` shows a subvolume's instead).
    pub fn dev(&self) -> String {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mnt = self.mnt.to_str().unwrap();
        info.lines()
            .find(|l| l.split(' ').nth(4) == Some(mnt))
            .and_then(|l| l.split(' ').nth(2))
            .unwrap_or_else(|| panic!("{mnt} is not in mountinfo"))
            .to_string()
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = &self.dir;
    }
}
