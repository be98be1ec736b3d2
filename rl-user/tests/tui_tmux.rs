//! End to end: `rltop replay` of a simulated deadlock trace inside tmux,
//! driven with send-keys and read with capture-pane. It steps to the
//! finding, switches views, opens the finding's report, filters the
//! Overview, and quits; the terminal must be given back (the TUI's screen
//! gone, the exit status 0). Skips only when tmux is not installed (and
//! fails then too when `CI` is set).

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{RLTOP, WORKLOAD, need_root};

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
    /// The socket file, removed on drop (kill-server leaves it behind).
    socket_path: Option<PathBuf>,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let socket = format!("rltop-test-{}-{}", std::process::id(), rand_suffix());
        let mut t = Tmux {
            socket,
            socket_path: None,
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "rltop",
            "-x",
            "130",
            "-y",
            "40",
            cmd,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let out = t.run(&["display-message", "-p", "#{socket_path}"]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        t.socket_path = (!path.is_empty()).then(|| PathBuf::from(path));
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux")
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.run(&["send-keys", "-t", "rltop", k]);
            assert!(out.status.success(), "send-keys {k}: {out:?}");
            // One key at a time, as a person types: each gets its frame.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "rltop"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `what` (and returns the screen).
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        if let Some(p) = &self.socket_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn have_tmux() -> bool {
    match Command::new("tmux").arg("-V").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "tmux is not installed, and CI is set: the TUI end-to-end test must run"
            );
            eprintln!(
                "skipping the TUI end-to-end test: tmux is not installed (apt-get install tmux)"
            );
            false
        }
    }
}

fn simulated_deadlock(dir: &Path) -> PathBuf {
    let trace = dir.join("deadlock.rlt");
    let out = Command::new(RLTOP)
        .args([
            "simulate",
            "--scenario",
            "deadlock",
            "--events",
            "3000",
            "-o",
        ])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "simulate: {out:?}");
    trace
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

#[test]
fn replay_in_tmux_views_finding_filter_quit() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = simulated_deadlock(dir.path());
    let cmd = format!(
        "{} replay --paused {}; echo RLTOP-EXIT=$?; sleep 60",
        shell_quote(Path::new(RLTOP)),
        shell_quote(&trace)
    );
    let t = Tmux::start(&cmd);
    let s = t.wait_for("paused");
    assert!(s.contains("1 Overview"), "{s}");
    assert!(s.contains("lost 0"), "lost events shown: {s}");

    // Run to the next finding: the deadlock the simulator injected.
    t.keys(&["n"]);
    let s = t.wait_for("Findings (1)");
    assert!(s.contains("paused"), "stops at the finding: {s}");

    // Findings view, open the report.
    t.keys(&["4"]);
    let s = t.wait_for("newest first");
    assert!(s.contains("deadlock"), "{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("WARNING: circular locking deadlock detected");
    assert!(s.contains("the existing dependency chain"), "{s}");
    t.keys(&["Escape"]);

    // Wait chains: the cycle.
    t.keys(&["3"]);
    let s = t.wait_for("Wait chains:");
    assert!(s.contains("cycle: deadlock"), "{s}");
    assert!(s.contains("bug-a/4500") && s.contains("bug-b/4501"), "{s}");

    // Overview, filter on the bug's inode (13): one of two files left.
    t.keys(&["1", "/", "1", "3", "Enter"]);
    let s = t.wait_for("of 2 files match \"13\"");
    assert!(s.contains("8:1:13"), "{s}");
    assert!(!s.contains("8:1:12 "), "filtered out: {s}");

    // Ranges of the filtered file.
    t.keys(&["Enter"]);
    let s = t.wait_for("Ranges of 8:1:13");
    assert!(s.contains("waiting"), "{s}");

    // Help, then quit: the terminal comes back.
    t.keys(&["?"]);
    t.wait_for("keys");
    t.keys(&["Escape", "q"]);
    let s = t.wait_for("RLTOP-EXIT=");
    assert!(s.contains("RLTOP-EXIT=0"), "{s}");
    assert!(!s.contains("1 Overview"), "the TUI screen is gone: {s}");
}

#[test]
fn ctrl_c_quits_cleanly() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = simulated_deadlock(dir.path());
    let cmd = format!(
        "{} replay {}; echo RLTOP-EXIT=$?; sleep 60",
        shell_quote(Path::new(RLTOP)),
        shell_quote(&trace)
    );
    let t = Tmux::start(&cmd);
    t.wait_for("1 Overview");
    t.keys(&["C-c"]);
    let s = t.wait_for("RLTOP-EXIT=");
    assert!(s.contains("RLTOP-EXIT=0"), "{s}");
}

#[test]
fn without_a_terminal_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let trace = simulated_deadlock(dir.path());
    let out = Command::new(RLTOP)
        .arg("replay")
        .arg(&trace)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs a terminal"), "{err}");
    // A missing file says so, before anything else.
    let out = Command::new(RLTOP)
        .args(["replay", "/nonexistent/trace.rlt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Root, and an eBPF object in the binary (not built with AYA_BUILD_SKIP).
fn can_trace(test: &str) -> bool {
    if option_env!("AYA_BUILD_SKIP").is_some() {
        eprintln!("skipping {test}: built with AYA_BUILD_SKIP (no eBPF object to load)");
        return false;
    }
    need_root(test)
}

#[test]
fn live_tui_as_root_shows_a_workload() {
    if !have_tmux() || !can_trace("live_tui_as_root_shows_a_workload") {
        return;
    }
    // The workload's file must be on ext4 (the punch probe is ext4's): the
    // target dir is.
    let dir = tempfile::Builder::new()
        .prefix("tui-live")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let cmd = format!(
        "{}; echo RLTOP-EXIT=$?; sleep 60",
        shell_quote(Path::new(RLTOP))
    );
    let t = Tmux::start(&cmd);
    let s = t.wait_for("probes ");
    assert!(s.contains("live"), "{s}");
    let out = Command::new(WORKLOAD)
        .arg("--dir")
        .arg(dir.path())
        .args(["--iterations", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // `{"pid":..,"path":..,"dev":"254:0","ino":123,...}`
    let json: serde_json::Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("workload JSON line");
    let name = format!("{}:{}", json["dev"].as_str().unwrap(), json["ino"]);
    let s = t.wait_for(&name);
    assert!(s.contains("lost "), "{s}");
    // Its direct IOs and punches are in the histograms.
    t.keys(&["5"]);
    let s = t.wait_for("dio_write: time in flight");
    assert!(s.contains("punch: time in flight"), "{s}");
    t.keys(&["q"]);
    let s = t.wait_for("RLTOP-EXIT=");
    assert!(s.contains("RLTOP-EXIT=0"), "{s}");
}

#[test]
fn sigterm_restores_the_terminal() {
    if !have_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = simulated_deadlock(dir.path());
    let cmd = format!(
        "{} replay --paused {}; echo RLTOP-EXIT=$?; sleep 60",
        shell_quote(Path::new(RLTOP)),
        shell_quote(&trace)
    );
    let t = Tmux::start(&cmd);
    t.wait_for("1 Overview");
    // rltop is the child of the pane's shell.
    let out = t.run(&["display-message", "-p", "-t", "rltop", "#{pane_pid}"]);
    let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let pid: i32 = children
        .split_whitespace()
        .next()
        .expect("rltop runs")
        .parse()
        .unwrap();
    // SAFETY: kill has no memory-safety preconditions; pid is our child's child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let s = t.wait_for("RLTOP-EXIT=");
    assert!(s.contains("RLTOP-EXIT=0"), "{s}");
    assert!(!s.contains("1 Overview"), "the TUI screen is gone: {s}");
}
