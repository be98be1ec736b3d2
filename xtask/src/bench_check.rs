//! `cargo xtask bench check`: the analyses' throughput and memory on long
//! simulated traces, beside decoding the same trace, in one run.
//!
//! For each trace length (1M and 10M events by default) it runs, `rounds`
//! times in turn: `rltop dump --format count` (decode only), `rltop dump
//! --format jsonl` (decode and print: the yardstick), `rltop check
//! --format json` and `rltop report --format json`, each with output to
//! /dev/null, each once pinned to one CPU (`taskset -c 0`: both of check's
//! threads share it) and once free. It prints events per second of wall
//! time and per CPU-second, peak RSS, and the ratios check/dump. Peak RSS at
//! 1M against 10M shows whether memory grows with trace length.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

pub struct Options {
    pub rounds: usize,
    pub events: Vec<u64>,
}

/// One run's cost.
#[derive(Clone, Copy, Default)]
struct Cost {
    wall: f64,
    cpu: f64,
    max_rss_kb: i64,
}

/// Runs `cmd` with stdout to /dev/null; returns its wall time, CPU time
/// (user + system, all threads) and peak RSS, from wait4's rusage.
fn measure(cmd: &mut Command) -> anyhow::Result<Cost> {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, whose
    // pid we own and have not waited for yet.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above: our own child, valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 on {cmd:?}: {}", std::io::Error::last_os_error());
    }
    // The check exits 1 when it finds something: that is not a failure here.
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) > 1 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{cmd:?} failed ({status:#x}): {err}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Cost {
        wall,
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        max_rss_kb: ru.ru_maxrss,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The simulated trace of about `n` events (made once, then reused).
fn trace(rltop: &Path, dir: &Path, n: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("mixed-{n}.rlt"));
    if !path.exists() {
        let tmp = dir.join(format!("mixed-{n}.rlt.tmp"));
        let _ = std::fs::remove_file(&tmp);
        crate::run(
            Command::new(rltop)
                .args(["simulate", "--scenario", "mixed", "--seed", "1"])
                .args(["--events", &n.to_string(), "--threads", "4", "-o"])
                .arg(&tmp),
        )?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// How many events `rltop dump --format count` decodes.
fn count(rltop: &Path, trace: &Path) -> anyhow::Result<u64> {
    let out = Command::new(rltop)
        .args(["dump", "--format", "count"])
        .arg(trace)
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected count output {s:?}"))
}

const JOBS: [(&str, &[&str]); 4] = [
    ("decode", &["dump", "--format", "count"]),
    ("dump", &["dump", "--format", "jsonl"]),
    ("check", &["check", "--format", "json"]),
    ("report", &["report", "--format", "json"]),
];

pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    crate::run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "rl-user",
        "--bin",
        "rltop",
    ]))?;
    let rltop = crate::target_dir(root).join("release/rltop");
    let dir = crate::target_dir(root).join("bench-check");
    std::fs::create_dir_all(&dir)?;
    let taskset = Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "bench check: {} rounds; medians; events/s per wall second and per CPU second (all threads)",
        opts.rounds
    );
    let mut summary = Vec::new();
    for &n in &opts.events {
        let path = trace(&rltop, &dir, n)?;
        let events = count(&rltop, &path)?;
        let size = std::fs::metadata(&path)?.len();
        println!(
            "\ntrace: {} ({events} events, {:.1} bytes/event)",
            path.display(),
            size as f64 / events as f64
        );
        // [job][pinned] -> samples
        let mut costs: Vec<[Vec<Cost>; 2]> = vec![[Vec::new(), Vec::new()]; JOBS.len()];
        for _ in 0..opts.rounds {
            // Interleaved, so a noisy neighbour hits every job alike.
            for (j, (_, args)) in JOBS.iter().enumerate() {
                for pinned in [false, true] {
                    if pinned && !taskset {
                        continue;
                    }
                    let mut cmd = if pinned {
                        let mut c = Command::new("taskset");
                        c.args(["-c", "0"]).arg(&rltop);
                        c
                    } else {
                        Command::new(&rltop)
                    };
                    cmd.args(*args).arg(&path);
                    costs[j][pinned as usize].push(measure(&mut cmd)?);
                }
            }
        }
        println!(
            "{:<8} {:>12} {:>14} {:>14} {:>12}",
            "job", "wall s", "M ev/s wall", "M ev/s 1 CPU", "peak RSS"
        );
        let mut wall = [0f64; JOBS.len()];
        let mut one_cpu = [0f64; JOBS.len()];
        for (j, (name, _)) in JOBS.iter().enumerate() {
            let free = &costs[j][0];
            let w = median(free.iter().map(|c| c.wall).collect());
            // Pinned to one CPU, wall time is the one-core cost; without
            // taskset, fall back to CPU time.
            let one = if costs[j][1].is_empty() {
                median(free.iter().map(|c| c.cpu).collect())
            } else {
                median(costs[j][1].iter().map(|c| c.wall).collect())
            };
            let rss = free.iter().map(|c| c.max_rss_kb).max().unwrap_or(0);
            wall[j] = w;
            one_cpu[j] = one;
            println!(
                "{name:<8} {w:>12.3} {:>14.2} {:>14.2} {:>9} MB",
                events as f64 / w / 1e6,
                events as f64 / one / 1e6,
                rss / 1024
            );
            summary.push((n, *name, rss));
        }
        let analysis = one_cpu[2] - one_cpu[0];
        if analysis > 0.0 {
            println!(
                "analyses alone (check minus decode, one CPU): {:.2} M events/s",
                events as f64 / analysis / 1e6
            );
        }
        println!(
            "ratios on one CPU: check/dump {:.2}, check/decode {:.2}, report/dump {:.2} (target: check/dump <= 2)",
            one_cpu[2] / one_cpu[1],
            one_cpu[2] / one_cpu[0],
            one_cpu[3] / one_cpu[1]
        );
    }
    if opts.events.len() > 1 {
        println!("\npeak RSS by trace length (memory must not grow with the trace):");
        for (name, _) in JOBS {
            let line: Vec<String> = summary
                .iter()
                .filter(|s| s.1 == name)
                .map(|s| format!("{} ev: {} MB", s.0, s.2 / 1024))
                .collect();
            println!("  {name:<8} {}", line.join(", "));
        }
    }
    Ok(())
}
