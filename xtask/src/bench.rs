//! `cargo xtask bench capture`: what live capture costs the traced workload.
//!
//! Runs `rl-workload --heavy` (copy-on-write faults, O_DIRECT writes, punch
//! hole, truncate: event-dense) side by side, in rotating order, in several
//! rounds of one run:
//!
//! - untraced;
//! - under `rltop record` (system-wide, every event to a trace file);
//! - under bpftrace on the same tracepoints, printing every event;
//! - under bpftrace on the same tracepoints, counting them in the kernel.
//!
//! and prints, per mode, the median time per iteration, the speed relative
//! to untraced, and for rltop the events per second captured, drops and
//! bytes per event on disk. Machines here are shared and noisy: compare the
//! ratios of one run, not absolute times across runs.
//!
//! `bench peers` adds `perf record` of the same tracepoints (system-wide,
//! like rltop) as a mode, compares perf.data's bytes per event with the
//! trace's, and times getting from the finished recording to a contention
//! summary: `perf script` (every event as text, what a perf-based
//! pipeline parses) and `perf lock contention` against `rltop report`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The tracepoints rltop's default profile attaches (formatted names).
const TRACEPOINTS: &[&str] = &[
    "mmap_lock:mmap_lock_start_locking",
    "mmap_lock:mmap_lock_acquire_returned",
    "mmap_lock:mmap_lock_released",
    "filemap:mm_filemap_fault",
    "filemap:mm_filemap_add_to_page_cache",
    "iomap:iomap_dio_rw_begin",
    "iomap:iomap_dio_complete",
    // The filesystem-operation probes (rl-user/src/probe/fsops.rs).
    "raw_syscalls:sys_exit",
    "sched:sched_switch",
    "syscalls:sys_enter_fallocate",
    "syscalls:sys_enter_ioctl",
    "syscalls:sys_enter_ftruncate",
    "syscalls:sys_enter_truncate",
    "ext4:ext4_punch_hole",
    "ext4:ext4_zero_range",
    "ext4:ext4_collapse_range",
    "ext4:ext4_insert_range",
    "ext4:ext4_truncate_enter",
    "ext4:ext4_truncate_exit",
    "ext4:ext4_mark_inode_dirty",
    "ext4:ext4_ext_remove_space_done",
    "xfs:xfs_free_file_space",
    "xfs:xfs_zero_file_space",
    "xfs:xfs_collapse_file_space",
    "xfs:xfs_insert_file_space",
    "xfs:xfs_setattr",
    "xfs:xfs_iunlock",
    "xfs:xfs_itruncate_extents_end",
    "iomap:iomap_iter",
    "iomap:iomap_dio_rw_queued",
    "iomap:iomap_dio_invalidate_fail",
    "lock:contention_begin",
    "lock:contention_end",
    "printk:console",
    "sched:sched_process_exit",
    "sched:sched_process_free",
    "sched:sched_process_fork",
    "task:task_rename",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Untraced,
    Rltop,
    BpftracePrint,
    BpftraceCount,
    PerfRecord,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Untraced => "untraced",
            Mode::Rltop => "rltop record",
            Mode::BpftracePrint => "bpftrace, printing every event",
            Mode::BpftraceCount => "bpftrace, counting in kernel",
            Mode::PerfRecord => "perf record, same tracepoints",
        }
    }
}

#[derive(Default)]
struct Sample {
    us_per_iter: Vec<f64>,
    events: u64,
    lost: u64,
    bytes: u64,
    workload_secs: f64,
    notes: Vec<String>,
}

pub struct Options {
    pub rounds: usize,
    pub iterations: u64,
    /// Also `perf record`, file sizes and time to a report (`bench peers`).
    pub peers: bool,
}

/// Starts `perf record` of the tracepoints, system-wide, into `out`, and
/// waits until it has set up its events.
fn start_perf(out: &Path, log: &Path) -> anyhow::Result<std::process::Child> {
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-a", "-q", "-o"]).arg(out);
    for tp in TRACEPOINTS {
        cmd.args(["-e", tp]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting perf record")?;
    // perf writes its header once its events are open.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(out).map_or(0, |m| m.len()) == 0 {
        if Instant::now() > deadline {
            bail!("perf record did not start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(child)
}

/// Wall seconds of `cmd` with stdout to /dev/null.
fn time_cmd(cmd: &mut Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Events in a perf.data file (`perf script` lines).
fn perf_events(data: &Path) -> anyhow::Result<u64> {
    let out = Command::new("perf")
        .args(["script", "-F", "event", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("perf script")?;
    Ok(out.stdout.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// bpftrace program printing every event with its fields.
fn bpftrace_print_script() -> String {
    let mut s = String::new();
    for tp in TRACEPOINTS {
        s.push_str(&format!(
            "tracepoint:{tp} {{ printf(\"%llu %d %s\\n\", nsecs, tid, probe); }}\n"
        ));
    }
    s
}

/// bpftrace program counting events per tracepoint in the kernel.
fn bpftrace_count_script() -> String {
    let probes: Vec<String> = TRACEPOINTS
        .iter()
        .map(|t| format!("tracepoint:{t}"))
        .collect();
    format!("{} {{ @[probe] = count(); }}\n", probes.join(",\n"))
}

fn run_workload(workload: &Path, dir: &Path, iterations: u64) -> anyhow::Result<f64> {
    let out = Command::new(workload)
        .args(["--heavy", "--dir"])
        .arg(dir)
        .args(["--iterations", &iterations.to_string()])
        .output()
        .context("running rl-workload")?;
    if !out.status.success() {
        bail!(
            "rl-workload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_elapsed(&String::from_utf8_lossy(&out.stdout))
}

/// `elapsed_ns` from the workload's JSON line.
fn parse_elapsed(stdout: &str) -> anyhow::Result<f64> {
    let line = stdout
        .lines()
        .last()
        .context("rl-workload printed nothing")?;
    let v = line
        .split("\"elapsed_ns\":")
        .nth(1)
        .context("no elapsed_ns in rl-workload output")?;
    let n: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    Ok(n.parse::<f64>()? / 1e9)
}

/// `rltop: N events (M lost) in S s, B bytes (...)`.
pub(crate) fn parse_rltop_summary(stderr: &str) -> Option<(u64, u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.contains(" events (") && l.contains(" lost) in "))?;
    let num = |after: &str, s: &str| -> Option<u64> {
        let t = s.split(after).nth(1)?;
        t.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let events = num("rltop: ", line)?;
    let lost = num("events (", line)?;
    let bytes = num(" s, ", line)?;
    Some((events, lost, bytes))
}

/// Starts bpftrace and waits until its probes are attached.
pub(crate) fn start_bpftrace(script: &Path, out: &Path) -> anyhow::Result<std::process::Child> {
    let out_file = std::fs::File::create(out)?;
    let child = Command::new("bpftrace")
        .arg(script)
        .stdout(out_file)
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    // bpftrace prints "Attaching N probes..." once attached; attachment of
    // 18 tracepoints takes a few seconds with its LLVM start-up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if text.contains("Attaching") {
            std::thread::sleep(Duration::from_millis(500));
            return Ok(child);
        }
        if Instant::now() > deadline {
            bail!("bpftrace did not attach within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn stop(child: &mut std::process::Child) {
    // bpftrace prints its maps and exits cleanly on SIGINT.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

#[allow(clippy::too_many_lines)] // one scenario, step after step, as the test or benchmark runs it
pub fn capture(root: &Path, opts: &Options) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("bench capture needs root (it loads eBPF programs)");
    }
    let bin = crate::release_bins(root)?;
    let (rltop, workload) = (bin.join("rltop"), bin.join("rl-workload"));
    let dir = crate::target_dir(root).join("bench-capture");
    std::fs::create_dir_all(&dir)?;
    let have_bpftrace = Command::new("bpftrace")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let print_script = dir.join("print.bt");
    let count_script = dir.join("count.bt");
    std::fs::write(&print_script, bpftrace_print_script())?;
    std::fs::write(&count_script, bpftrace_count_script())?;

    let mut modes = vec![Mode::Untraced, Mode::Rltop];
    if have_bpftrace {
        modes.extend([Mode::BpftracePrint, Mode::BpftraceCount]);
    } else {
        eprintln!("bpftrace is not installed (run `cargo xtask setup`): its rows are skipped");
    }
    let have_perf = Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if opts.peers {
        if !have_perf {
            bail!("perf is not installed (apt-get install linux-perf, or run `cargo xtask setup`)");
        }
        modes.push(Mode::PerfRecord);
    }
    let perf_data = dir.join("perf.data");
    let mut perf_bytes = 0u64;
    let mut samples: Vec<Sample> = modes.iter().map(|_| Sample::default()).collect();
    // Warm the page cache and the file system once.
    run_workload(&workload, &dir, opts.iterations / 4 + 1)?;

    for round in 0..opts.rounds {
        for k in 0..modes.len() {
            // Rotate the order so no mode always follows another.
            let i = (k + round) % modes.len();
            let mode = modes[i];
            let s = &mut samples[i];
            let secs = match mode {
                Mode::Untraced => run_workload(&workload, &dir, opts.iterations)?,
                Mode::Rltop => {
                    let trace = dir.join("bench.rlt");
                    let out = Command::new(&rltop)
                        .arg("record")
                        .arg("-o")
                        .arg(&trace)
                        .arg("--")
                        .arg(&workload)
                        .args(["--heavy", "--dir"])
                        .arg(&dir)
                        .args(["--iterations", &opts.iterations.to_string()])
                        .output()
                        .context("running rltop record")?;
                    if !out.status.success() {
                        bail!(
                            "rltop record failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                    let secs = parse_elapsed(&String::from_utf8_lossy(&out.stdout))?;
                    let (events, lost, bytes) =
                        parse_rltop_summary(&String::from_utf8_lossy(&out.stderr))
                            .context("no summary line from rltop record")?;
                    s.events += events;
                    s.lost += lost;
                    s.bytes += bytes;
                    s.workload_secs += secs;
                    secs
                }
                Mode::PerfRecord => {
                    let _ = std::fs::remove_file(&perf_data);
                    let mut child = start_perf(&perf_data, &dir.join("perf.log"))?;
                    let secs = run_workload(&workload, &dir, opts.iterations)?;
                    stop(&mut child);
                    let events = perf_events(&perf_data)?;
                    perf_bytes = std::fs::metadata(&perf_data)?.len();
                    s.events += events;
                    s.bytes += perf_bytes;
                    s.workload_secs += secs;
                    secs
                }
                Mode::BpftracePrint | Mode::BpftraceCount => {
                    let script = if mode == Mode::BpftracePrint {
                        &print_script
                    } else {
                        &count_script
                    };
                    let out = dir.join("bpftrace.out");
                    let mut child = start_bpftrace(script, &out)?;
                    let secs = run_workload(&workload, &dir, opts.iterations)?;
                    stop(&mut child);
                    let text = std::fs::read_to_string(&out).unwrap_or_default();
                    if let Some(l) = text.lines().find(|l| l.starts_with("Lost ")) {
                        s.notes.push(l.to_string());
                    }
                    if mode == Mode::BpftracePrint {
                        s.events +=
                            text.lines().filter(|l| l.contains("tracepoint:")).count() as u64;
                        s.workload_secs += secs;
                    }
                    secs
                }
            };
            s.us_per_iter.push(secs * 1e6 / opts.iterations as f64);
        }
        eprintln!("round {}/{} done", round + 1, opts.rounds);
    }

    let base = median(&samples[0].us_per_iter);
    // Paired per round: each mode against the untraced run of the same
    // round, which cancels slow drifts of the machine's load.
    let paired = |s: &Sample| -> f64 {
        let r: Vec<f64> = samples[0]
            .us_per_iter
            .iter()
            .zip(&s.us_per_iter)
            .map(|(u, t)| u / t)
            .collect();
        median(&r)
    };
    println!();
    println!(
        "capture overhead: rl-workload --heavy, {} iterations x {} rounds\n\
         speed = median untraced time / median traced time; paired = median over rounds of the same ratio within a round",
        opts.iterations, opts.rounds
    );
    println!(
        "{:<32} {:>9} {:>7} {:>8} {:>10} {:>6} {:>11}",
        "mode", "us/iter", "speed", "paired", "events/s", "lost", "bytes/event"
    );
    for (mode, s) in modes.iter().zip(&samples) {
        let m = median(&s.us_per_iter);
        let rate = if s.workload_secs > 0.0 {
            format!("{:.0}", s.events as f64 / s.workload_secs)
        } else {
            "-".into()
        };
        let (lost, bpe) = match mode {
            Mode::Rltop => (
                s.lost.to_string(),
                format!("{:.2}", s.bytes as f64 / s.events.max(1) as f64),
            ),
            Mode::PerfRecord => (
                "-".into(),
                format!("{:.2}", s.bytes as f64 / s.events.max(1) as f64),
            ),
            _ => ("-".into(), "-".into()),
        };
        println!(
            "{:<32} {:>9.1} {:>7.3} {:>8.3} {:>10} {:>6} {:>11}",
            mode.label(),
            m,
            base / m,
            paired(s),
            rate,
            lost,
            bpe
        );
        for n in &s.notes {
            println!("{:<32} note: {n}", "");
        }
    }
    println!(
        "all rounds: {:?}",
        samples
            .iter()
            .map(|s| s.us_per_iter.iter().map(|v| v.round()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    if opts.peers {
        let trace = dir.join("bench.rlt");
        let rounds = opts.rounds.max(1);
        let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
        let mut perf_script = Command::new("perf");
        perf_script.args(["script", "-i"]).arg(&perf_data);
        let mut perf_lock = Command::new("perf");
        perf_lock.args(["lock", "contention", "-i"]).arg(&perf_data);
        let mut rl_report = Command::new(&rltop);
        rl_report.arg("report").arg(&trace);
        let mut rl_check = Command::new(&rltop);
        rl_check.args(["check", "--format", "json"]).arg(&trace);
        for (name, cmd) in [
            ("perf script (all events as text)", &mut perf_script),
            ("perf lock contention", &mut perf_lock),
            ("rltop report", &mut rl_report),
            ("rltop check", &mut rl_check),
        ] {
            let mut v = Vec::new();
            for _ in 0..rounds {
                match time_cmd(cmd) {
                    Ok(t) => v.push(t),
                    // `check` exits 1 on findings: time it all the same.
                    Err(e) if name == "rltop check" => {
                        eprintln!("note: {e}");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            rows.push((name, v));
        }
        println!();
        println!(
            "from a finished recording to a report (same workload; perf.data {:.1} MB, trace {:.1} MB):",
            perf_bytes as f64 / 1e6,
            std::fs::metadata(&trace).map_or(0, |m| m.len()) as f64 / 1e6
        );
        for (name, v) in &rows {
            if !v.is_empty() {
                println!("{name:<36} {:>8.3} s", median(v));
            }
        }
    }
    let _ = std::fs::remove_file(dir.join("bench.rlt"));
    Ok(())
}
