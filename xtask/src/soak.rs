//! `cargo xtask soak [--minutes N]`: long recordings under a mixed IO
//! workload, watching rltop's memory and drops.
//!
//! Two runs of `minutes` each, as root on this kernel:
//! 1. `rltop record` (system-wide, default buffer size) while `rl-workload
//!    --heavy` runs in a loop;
//! 2. the live TUI (`rltop` in a tmux pane, so it has a terminal) under the
//!    same workload: the whole live pipeline (capture, model, analyses,
//!    snapshots, drawing).
//!
//! Every 10 s it samples rltop's RSS (`/proc/PID/status` VmRSS); at the end
//! it prints the samples and checks that the recording lost nothing and that
//! memory stayed bounded (the last third's peak within 1.5x of the first
//! third's plus 8 MB).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs the workload in a loop until `stop` exists.
fn workload_loop(workload: &Path, dir: &Path, stop: &Path) -> anyhow::Result<std::process::Child> {
    let script = format!(
        "while [ ! -e '{}' ]; do '{}' --heavy --dir '{}' --iterations 500 > /dev/null || exit 1; done",
        stop.display(),
        workload.display(),
        dir.display()
    );
    Command::new("nice")
        .args(["-n", "5", "sh", "-c", &script])
        .spawn()
        .context("starting the workload loop")
}

/// Samples `pid`'s RSS every 10 s for `dur`; returns (seconds, kB) pairs.
fn sample(pid: u32, dur: Duration) -> Vec<(u64, u64)> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    while t0.elapsed() < dur {
        if let Some(kb) = rss_kb(pid) {
            out.push((t0.elapsed().as_secs(), kb));
        } else {
            break;
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    out
}

fn judge(name: &str, samples: &[(u64, u64)]) -> anyhow::Result<()> {
    if samples.len() < 6 {
        bail!("{name}: rltop went away after {} samples", samples.len());
    }
    let third = samples.len() / 3;
    let first = samples[..third].iter().map(|s| s.1).max().unwrap_or(0);
    let last = samples[samples.len() - third..]
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    println!("{name}: RSS (MB) every 10 s:");
    let line: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1}", s.1 as f64 / 1024.0))
        .collect();
    println!("  {}", line.join(" "));
    println!(
        "{name}: peak RSS first third {:.1} MB, last third {:.1} MB",
        first as f64 / 1024.0,
        last as f64 / 1024.0
    );
    if last as f64 > first as f64 * 1.5 + 8192.0 {
        bail!("{name}: memory grew over the run");
    }
    Ok(())
}

#[allow(clippy::too_many_lines)] // one scenario, step after step, as the test or benchmark runs it
pub fn run(root: &Path, minutes: u64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("soak needs root (it loads eBPF programs)");
    }
    let bin = crate::release_bins(root)?;
    let (rltop, workload) = (bin.join("rltop"), bin.join("rl-workload"));
    let dir = crate::target_dir(root).join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dur = Duration::from_secs(minutes * 60);

    // 1. rltop record.
    let trace = dir.join("soak.rlt");
    let stop = dir.join("stop");
    let rec = Command::new(&rltop)
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(3));
    let mut wl = workload_loop(&workload, &dir, &stop)?;
    let samples = sample(rec.id(), dur);
    std::fs::write(&stop, b"")?;
    let _ = wl.wait();
    let _ = Command::new("kill")
        .args(["-INT", &rec.id().to_string()])
        .status();
    let out = rec.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = err
        .lines()
        .find(|l| l.contains(" lost) in "))
        .unwrap_or("")
        .to_string();
    println!("record: {summary}");
    judge("record", &samples)?;
    if !summary.contains("(0 lost)") {
        bail!("record: events were lost: {summary}");
    }

    // 2. The live TUI, in a tmux pane.
    let _ = std::fs::remove_file(&stop);
    let session = "rltop-soak";
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .status();
    crate::run(Command::new("tmux").args([
        "new-session",
        "-d",
        "-s",
        session,
        "-x",
        "160",
        "-y",
        "50",
        &rltop.display().to_string(),
    ]))?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = Command::new("pgrep")
        .args(["-n", "-x", "rltop"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        })
        .context("finding the TUI's pid")?;
    let mut wl = workload_loop(&workload, &dir, &stop)?;
    let samples = sample(pid, dur);
    std::fs::write(&stop, b"")?;
    let _ = wl.wait();
    let screen = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()?;
    let screen = String::from_utf8_lossy(&screen.stdout).into_owned();
    let _ = Command::new("tmux")
        .args(["send-keys", "-t", session, "q"])
        .status();
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", session])
        .status();
    let status = screen
        .lines()
        .rev()
        .find(|l| l.contains("lost"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("tui: status line at the end: {status}");
    judge("tui", &samples)?;
    if !status.contains("lost 0") {
        bail!("tui: events were lost (or no status line): {status}");
    }
    let _ = std::fs::remove_file(&trace);
    Ok(())
}
