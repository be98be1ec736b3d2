//! `cargo xtask bench capacity`: the highest event rate that `rltop record`
//! keeps with zero loss on this machine (issue 17, item 4).
//!
//! The workload is `rl-locktest mmap-churn SECS THREADS RATE`: THREADS
//! threads map, touch and unmap anonymous memory, each paced to RATE rounds
//! a second, so every round is a burst of `mmap_lock` events (the request,
//! the acquisition and the release of the mmap and munmap write locks,
//! and of a fault's fallback to the read lock). Step by step the rate
//! doubles, until a step loses events, the workload stops getting faster
//! (the machine is saturated), or the steps run out; a last unpaced step
//! shows the workload's own ceiling.
//!
//! Each step runs under `rltop record -- rl-locktest ...` while one
//! bpftrace counts the same three tracepoints in the kernel, per process,
//! from the command's `exec` on (rltop does not trace its child before
//! `exec`, so neither does the count). A step is *kept* when the trace has
//! no `lost` event and its `mmap_lock_*` events of the command are exactly
//! the kernel's count. Equal counts with losses reported are honest; a
//! difference with no loss reported is a silent miss, and fails the bench.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::bench::{parse_rltop_summary, start_bpftrace, stop};

pub struct Options {
    /// Seconds per step.
    pub secs: f64,
    /// Workload threads (default: one per CPU).
    pub threads: Option<usize>,
    /// Rounds a second per thread at the first step.
    pub start_rate: u64,
    /// Most paced steps.
    pub steps: usize,
    /// `rltop record --buffer-mb` (default: rltop's own).
    pub buffer_mb: Option<u32>,
}

/// One step's figures.
struct Step {
    /// Rounds a second per thread asked for; 0 = unpaced.
    rate: u64,
    /// The command's pid (its key in bpftrace's count).
    pid: u32,
    /// The command's mmap_lock events in the trace.
    recorded: u64,
    /// The same, counted in the kernel.
    counted: u64,
    /// `lost` records in the whole trace.
    lost: u64,
    /// Events of the whole trace (every task), its bytes, and the
    /// recording's seconds (start-up and the wait for exit included).
    trace_events: u64,
    trace_bytes: u64,
    trace_secs: f64,
    /// The command's events a second, first to last recorded.
    rate_per_s: f64,
}

impl Step {
    fn kept(&self) -> bool {
        self.lost == 0 && self.recorded == self.counted
    }
}

/// bpftrace counting the mmap_lock tracepoints of each `rl-locktest`
/// process after its exec, keyed by pid (tgid). The exec gate matters:
/// between the exec's rename and `sched_process_exec` the ELF loader maps
/// the binary under mmap_lock, which rltop leaves out with the rest of the
/// pre-exec child.
fn count_script() -> String {
    "tracepoint:sched:sched_process_exec /comm == \"rl-locktest\"/ { @go[pid] = 1; }\n\
     tracepoint:mmap_lock:mmap_lock_start_locking,\n\
     tracepoint:mmap_lock:mmap_lock_acquire_returned,\n\
     tracepoint:mmap_lock:mmap_lock_released\n\
     /@go[pid]/ { @n[pid] = count(); }\n\
     END { clear(@go); }\n"
        .to_string()
}

/// `@n[PID]: COUNT` lines of bpftrace's exit dump.
fn parse_counts(text: &str) -> HashMap<u32, u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("@n[")?;
            let (pid, n) = rest.split_once("]: ")?;
            Some((pid.parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

/// `S` of record's summary line `rltop: N events (M lost) in S s, ...`.
fn recording_secs(stderr: &str) -> Option<f64> {
    let line = stderr.lines().find(|l| l.contains(" lost) in "))?;
    line.split(" lost) in ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// The integer after `"key":` in a canonical JSONL line.
fn field(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits: &str = &line[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The command's pid and its mmap_lock events (count, first and last ts),
/// from `rltop dump` of the trace. The command is the child of rltop's own
/// fork, the trace's first `fork` event.
fn command_events(rltop: &Path, trace: &Path) -> anyhow::Result<(u32, u64, u64, u64)> {
    let mut child = Command::new(rltop)
        .arg("dump")
        .arg(trace)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running rltop dump")?;
    let out = child.stdout.take().context("dump's stdout")?;
    let mut pid: Option<u32> = None;
    let (mut n, mut first, mut last) = (0u64, 0u64, 0u64);
    let mut tag = String::new();
    for line in std::io::BufReader::with_capacity(1 << 20, out).lines() {
        let line = line?;
        if pid.is_none() && line.contains("\"kind\":\"fork\"") {
            let p = field(&line, "\"child_pid\":").context("fork without child_pid")?;
            pid = Some(u32::try_from(p)?);
            tag = format!("\"pid\":{p},");
        }
        if pid.is_some() && line.contains("\"kind\":\"mmap_lock_") && line.contains(&tag) {
            let ts = field(&line, "\"ts\":").context("event without ts")?;
            if n == 0 {
                first = ts;
            }
            last = ts;
            n += 1;
        }
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("rltop dump {} failed: {st}", trace.display());
    }
    let pid = pid.context("the trace has no fork of the command")?;
    Ok((pid, n, first, last))
}

#[allow(clippy::too_many_lines)] // the steps, then the table
pub fn run(root: &Path, opts: &Options) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("bench capacity needs root (it loads eBPF programs)");
    }
    if Command::new("bpftrace")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        bail!("bench capacity needs bpftrace for the in-kernel count (run `cargo xtask setup`)");
    }
    let bin = crate::release_bins(root)?;
    let (rltop, locktest) = (bin.join("rltop"), bin.join("rl-locktest"));
    let dir = crate::target_dir(root).join("bench-capacity");
    std::fs::create_dir_all(&dir)?;
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let script = dir.join("count.bt");
    std::fs::write(&script, count_script())?;
    let bt_out = dir.join("count.out");
    let mut bt = start_bpftrace(&script, &bt_out)?;
    let trace = dir.join("step.rlt");

    let mut steps: Vec<Step> = Vec::new();
    let mut rate = opts.start_rate.max(1);
    let mut paced = 0;
    let result = (|| -> anyhow::Result<()> {
        loop {
            let mut cmd = Command::new(&rltop);
            cmd.arg("record").arg("-o").arg(&trace);
            if let Some(mb) = opts.buffer_mb {
                cmd.args(["--buffer-mb", &mb.to_string()]);
            }
            let out = cmd
                .arg("--")
                .arg(&locktest)
                .args([
                    "mmap-churn",
                    &opts.secs.to_string(),
                    &threads.to_string(),
                    &rate.to_string(),
                ])
                .output()
                .context("running rltop record")?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() {
                bail!("rltop record failed: {stderr}");
            }
            let (trace_events, lost, trace_bytes) =
                parse_rltop_summary(&stderr).context("no summary line from rltop record")?;
            let (pid, recorded, first, last) = command_events(&rltop, &trace)?;
            let span = (last.saturating_sub(first)) as f64 / 1e9;
            let step = Step {
                rate,
                pid,
                recorded,
                counted: 0, // filled in from bpftrace's dump at the end
                lost,
                trace_events,
                trace_bytes,
                trace_secs: recording_secs(&stderr).unwrap_or(opts.secs),
                rate_per_s: if span > 0.0 {
                    recorded as f64 / span
                } else {
                    0.0
                },
            };
            eprintln!(
                "step {}: {} rounds/s x {threads} threads: {:.0} events/s of the command, {lost} lost",
                steps.len() + 1,
                if rate == 0 {
                    "unpaced".to_string()
                } else {
                    rate.to_string()
                },
                step.rate_per_s
            );
            let faster = steps
                .last()
                .is_none_or(|p| step.rate_per_s > 1.3 * p.rate_per_s);
            let was_unpaced = rate == 0;
            let lost_some = step.lost > 0;
            steps.push(step);
            if was_unpaced {
                return Ok(());
            }
            paced += 1;
            // Past saturation or loss, one unpaced step shows the ceiling.
            rate = if lost_some || !faster || paced >= opts.steps {
                0
            } else {
                rate * 2
            };
        }
    })();
    stop(&mut bt);
    let _ = std::fs::remove_file(&trace);
    result?;
    let counts = parse_counts(&std::fs::read_to_string(&bt_out).unwrap_or_default());
    for s in &mut steps {
        s.counted = counts.get(&s.pid).copied().unwrap_or(0);
    }

    println!();
    println!(
        "recording capacity: rl-locktest mmap-churn, {threads} threads, {} s a step; \
         kept = no loss and the command's mmap_lock events equal to bpftrace's in-kernel count",
        opts.secs
    );
    println!(
        "{:>10} {:>12} {:>11} {:>11} {:>6} {:>12} {:>11}  verdict",
        "rounds/s", "events/s", "recorded", "in-kernel", "lost", "trace ev/s", "bytes/event"
    );
    for s in &steps {
        let verdict = if s.kept() {
            "kept"
        } else if s.lost > 0 {
            "lost (counted)"
        } else {
            "SILENT MISS"
        };
        println!(
            "{:>10} {:>12.0} {:>11} {:>11} {:>6} {:>12.0} {:>11.2}  {verdict}",
            if s.rate == 0 {
                "unpaced".to_string()
            } else {
                (s.rate * threads as u64).to_string()
            },
            s.rate_per_s,
            s.recorded,
            s.counted,
            s.lost,
            s.trace_events as f64 / s.trace_secs,
            s.trace_bytes as f64 / s.trace_events.max(1) as f64,
        );
    }
    match steps
        .iter()
        .filter(|s| s.kept())
        .max_by(|a, b| a.rate_per_s.total_cmp(&b.rate_per_s))
    {
        Some(best) => {
            let ceiling = steps.last().is_some_and(|s| s.rate == 0 && s.kept());
            println!(
                "highest rate kept with zero loss: {:.0} events/s of the command ({:.2} bytes/event){}",
                best.rate_per_s,
                best.trace_bytes as f64 / best.trace_events.max(1) as f64,
                if ceiling {
                    "; the unpaced workload was kept too, so the machine's ceiling came first"
                } else {
                    ""
                }
            );
        }
        None => println!("no step was kept with zero loss"),
    }
    if let Some(s) = steps
        .iter()
        .find(|s| s.lost == 0 && s.recorded != s.counted)
    {
        bail!(
            "a silent miss: at {} rounds/s the trace has {} of the command's mmap_lock events, \
             the kernel counted {}, and no loss was written",
            s.rate,
            s.recorded,
            s.counted
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_counts_parse_per_pid() {
        let text = "Attaching 5 probes...\n\n\n@n[4242]: 123456\n@n[17]: 9\n";
        let c = parse_counts(text);
        assert_eq!(c.get(&4242), Some(&123_456));
        assert_eq!(c.get(&17), Some(&9));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn recording_seconds_from_the_summary() {
        let e = "rltop: 165827 events (0 lost) in 3.3 s, 425332 bytes (2.6 bytes/event) -> x.rlt\n";
        assert_eq!(recording_secs(e), Some(3.3));
        assert_eq!(recording_secs("nothing"), None);
    }

    #[test]
    fn fields_of_a_canonical_line() {
        let l = r#"{"ts":5021334,"kind":"fork","tid":211,"pid":211,"child":300,"child_pid":300}"#;
        assert_eq!(field(l, "\"ts\":"), Some(5_021_334));
        assert_eq!(field(l, "\"child_pid\":"), Some(300));
        assert_eq!(field(l, "\"nope\":"), None);
    }
}
