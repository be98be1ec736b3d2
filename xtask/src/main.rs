//! Project tasks: `cargo xtask <task>`.
//!
//! - `setup`: everything a fresh machine needs to build and test rltop
//!   (Debian packages, nightly with rust-src and clippy, bpf-linker against
//!   the nightly's own LLVM, tracefs). Idempotent and quick when done.
//! - `demo`: set up, build, and run rltop's main job: a live recording of a
//!   known workload when root on a kernel with the tracepoints, else the
//!   bundled demo trace; then, on a terminal, the TUI (the recording
//!   replayed, or `rltop demo`).
//! - `test`: set up, then run the steps of `TEST_STEPS` (build, clippy, docs, tests).
//! - `dist`: a static musl rltop with its man page and completions, in a
//!   tarball with its SHA-256, for a test VM (see dist.rs).
//! - `clippy-ebpf`: clippy on the eBPF crate (nightly, BPF target).
//! - `vm-test`: rltop on Debian's kernel in QEMU (see vm.rs).
//! - `soak`: 10-minute recordings (record, live TUI) under mixed IO: RSS
//!   over time, drops (see soak.rs).
//! - `bench capture`: capture overhead against bpftrace (see bench.rs).
//! - `bench peers`: the same beside `perf record` too, with file sizes and
//!   the time from a recording to a contention report (see bench.rs).
//! - `bench check`: analysis throughput and memory on long simulated traces,
//!   beside decoding (see bench_check.rs).
//! - `bench lock`: rl-reference's locks beside the `range-lock` and
//!   `range-mutex` crates, N = 10, 1 000, 100 000 held ranges, exclusive and
//!   rw: ns/op and speed ratios (rl-reference/benches/lock.rs).

mod bench;
mod bench_capacity;
mod bench_check;
mod dist;
mod setup;
mod soak;
mod vm;
mod vm_locks;
mod vm_vng;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "rltop project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing needs (idempotent).
    Setup,
    /// Set up, build, and show rltop at work.
    Demo {
        /// Show the bundled trace (it has range-lock events, which mainline
        /// kernels do not emit) even where a live recording could run.
        #[arg(long)]
        bundled: bool,
        /// Do not end in the TUI (it only starts on a terminal anyway).
        #[arg(long)]
        no_tui: bool,
    },
    /// Set up, then run every test.
    Test,
    /// Set up, then run clippy on the eBPF crate with the nightly.
    ClippyEbpf,
    /// Set up, then run rltop on Debian's kernel in QEMU (TCG).
    VmTest,
    /// Set up, then build the tarball for a test VM (target/dist/).
    Dist,
    /// Long recordings (record, then the live TUI) under a mixed IO
    /// workload: memory over time and drops.
    Soak {
        /// Minutes per run.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Overhead of live capture on a fault/DIO/punch-heavy loop, beside bpftrace.
    Capture {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 2000)]
        iterations: u64,
    },
    /// rltop against its peers in one run: overhead beside bpftrace and
    /// `perf record` on the same tracepoints, bytes per event against
    /// perf.data, time from the recording to a contention report.
    Peers {
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[arg(long, default_value_t = 2000)]
        iterations: u64,
    },
    /// `rltop check`/`report` throughput and peak memory on simulated
    /// traces, beside `rltop dump` of the same trace.
    Check {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Trace lengths (events), comma separated.
        #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
        events: Vec<u64>,
    },
    /// The highest event rate `rltop record` keeps with zero loss: a paced
    /// mmap_lock churn, its rate doubled step by step, each step's count
    /// checked against bpftrace's in-kernel count of the same run.
    Capacity {
        /// Seconds per step.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Workload threads (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Rounds a second per thread at the first step (each round is a
        /// map, 16 page touches and an unmap).
        #[arg(long, default_value_t = 1000)]
        start_rate: u64,
        /// Most paced steps before the last, unpaced one.
        #[arg(long, default_value_t = 12)]
        steps: usize,
        /// Passed to `rltop record --buffer-mb`.
        #[arg(long)]
        buffer_mb: Option<u32>,
    },
    /// rl-reference's range locks beside the `range-lock` and `range-mutex`
    /// crates on the same random workloads: the table of ns/op and ratios.
    Lock {
        /// Rounds (each runs every lock once; ratios are taken per round).
        #[arg(long, default_value_t = 15)]
        rounds: usize,
        /// Milliseconds per lock per round.
        #[arg(long, default_value_t = 50)]
        ms: u64,
    },
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command, inheriting stdio; fails when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Builds rl-user's binaries (release) and returns their directory.
pub fn release_bins(root: &Path) -> anyhow::Result<PathBuf> {
    run(Command::new("cargo").current_dir(root).args([
        "build",
        "--release",
        "-p",
        "rl-user",
        "--bins",
    ]))?;
    Ok(target_dir(root).join("release"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target/`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d), // join keeps an absolute path as it is
        None => root.join("target"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = root();
    match cli.task {
        Task::Setup => setup::all(),
        Task::Test => {
            setup::all()?;
            test(&root)
        }
        Task::Demo { bundled, no_tui } => {
            setup::all()?;
            demo(&root, bundled)?;
            if !no_tui {
                demo_tui(&root, bundled)?;
            }
            Ok(())
        }
        Task::Dist => {
            setup::all()?;
            dist::main(&root)
        }
        Task::VmTest => {
            setup::all()?;
            vm::test(&root)
        }
        Task::Soak { minutes } => {
            setup::all()?;
            soak::run(&root, minutes)
        }
        Task::ClippyEbpf => {
            setup::all()?;
            clippy_ebpf(&root)
        }
        Task::Bench {
            what: Bench::Capture { rounds, iterations },
        } => {
            setup::all()?;
            bench::capture(
                &root,
                &bench::Options {
                    rounds,
                    iterations,
                    peers: false,
                },
            )
        }
        Task::Bench {
            what: Bench::Peers { rounds, iterations },
        } => {
            setup::all()?;
            bench::capture(
                &root,
                &bench::Options {
                    rounds,
                    iterations,
                    peers: true,
                },
            )
        }
        Task::Bench {
            what: Bench::Check { rounds, events },
        } => bench_check::run(&root, &bench_check::Options { rounds, events }),
        Task::Bench {
            what:
                Bench::Capacity {
                    secs,
                    threads,
                    start_rate,
                    steps,
                    buffer_mb,
                },
        } => {
            setup::all()?;
            bench_capacity::run(
                &root,
                &bench_capacity::Options {
                    secs,
                    threads,
                    start_rate,
                    steps,
                    buffer_mb,
                },
            )
        }
        Task::Bench {
            what: Bench::Lock { rounds, ms },
        } => run(Command::new("cargo")
            .current_dir(&root)
            .args([
                "bench",
                "-p",
                "rl-reference",
                "--bench",
                "lock",
                "--",
                "table",
            ])
            .args(["--rounds", &rounds.to_string(), "--ms", &ms.to_string()])),
    }
}

/// One step of `cargo xtask test`.
struct Step {
    name: &'static str,
    run: fn(&Path) -> anyhow::Result<()>,
}

/// What `cargo xtask test` runs, in order, after set-up. A new kind of test
/// (e.g. kprobe tests in a VM) is one more entry here.
const TEST_STEPS: &[Step] = &[
    Step {
        name: "build",
        run: build,
    },
    Step {
        name: "clippy-ebpf",
        run: clippy_ebpf,
    },
    Step {
        name: "clippy",
        run: clippy_user,
    },
    Step {
        name: "doc",
        run: doc,
    },
    Step {
        name: "test",
        run: cargo_test,
    },
    Step {
        name: "vm-test",
        run: vm::test,
    },
    Step {
        name: "loom",
        run: loom,
    },
    Step {
        name: "miri",
        run: miri,
    },
];

fn test(root: &Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut done = Vec::new();
    for step in TEST_STEPS {
        println!("== xtask test: {}", step.name);
        let t = std::time::Instant::now();
        if let Err(e) = (step.run)(root) {
            println!(
                "xtask test: FAILED at step {} ({e:#}); passed before it: {}",
                step.name,
                summary(&done)
            );
            return Err(e);
        }
        done.push((step.name, t.elapsed()));
    }
    println!(
        "xtask test: all {} steps passed in {:.0?}: {}",
        done.len(),
        started.elapsed(),
        summary(&done)
    );
    Ok(())
}

fn summary(done: &[(&str, std::time::Duration)]) -> String {
    if done.is_empty() {
        return "none".into();
    }
    done.iter()
        .map(|(n, d)| format!("{n} ({:.0?})", d))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The default members (rl-ebpf is not one: it cannot build for the host;
/// rl-user/build.rs builds it for BPF with the nightly).
fn build(root: &Path) -> anyhow::Result<()> {
    run(Command::new("cargo").current_dir(root).arg("build"))
}

/// loom model checks of rl-reference's concurrent locks (own target dir:
/// `--cfg loom` rebuilds everything it touches).
fn loom(root: &Path) -> anyhow::Result<()> {
    run(Command::new("cargo")
        .current_dir(root)
        .args(["test", "-p", "rl-reference", "--test", "loom", "--release"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", target_dir(root).join("loom")))
}

/// rl-reference under miri: the state machines, the locks, and the thread
/// tests miri can run (isolation off: proptest asks for the cwd).
fn miri(root: &Path) -> anyhow::Result<()> {
    run(Command::new("rustup")
        .current_dir(root)
        .args([
            "run",
            "nightly",
            "cargo",
            "miri",
            "test",
            "-p",
            "rl-reference",
        ])
        .args([
            "--lib", "--test", "oracle", "--test", "stress", "--test", "threads",
        ])
        .env("MIRIFLAGS", "-Zmiri-disable-isolation"))
}

fn cargo_test(root: &Path) -> anyhow::Result<()> {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(root).arg("test");
    // Root-only tests decide for themselves: without root they skip. In CI,
    // which runs as root, a skip would hide a broken capture path, so there
    // they are told to fail instead.
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    if ci && is_root() {
        cargo.env("RLTOP_REQUIRE_ROOT_TESTS", "1");
    } else if !is_root() {
        println!("xtask: not root: the live-capture tests will skip themselves");
    }
    // Golden outputs are insta snapshots (rl-user/tests/README.md). This step
    // checks them and never accepts a change, whatever the caller's
    // environment says: `INSTA_UPDATE=always` or `force` would rewrite a
    // changed snapshot in place and pass, and `INSTA_FORCE_PASS=1` would pass
    // a failed one. In CI nothing is written; elsewhere a changed snapshot
    // fails and leaves a `.snap.new` beside it for `cargo insta review`.
    cargo
        .env("INSTA_UPDATE", if ci { "no" } else { "new" })
        .env("INSTA_FORCE_PASS", "0");
    run(&mut cargo)
}

/// The API docs of the user-space crates, warnings (broken links, links to
/// private items) as errors: what `cargo doc` shows must be right.
fn doc(root: &Path) -> anyhow::Result<()> {
    run(Command::new("cargo")
        .current_dir(root)
        .args([
            "doc",
            "--no-deps",
            "-p",
            "rltop-core",
            "-p",
            "rl-user",
            "-p",
            "rl-reference",
            "-p",
            "rl-common",
            "-p",
            "xtask",
        ])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

/// Clippy on the user-space crates, tests included, warnings as errors.
fn clippy_user(root: &Path) -> anyhow::Result<()> {
    run(Command::new("cargo").current_dir(root).args([
        "clippy",
        "-p",
        "rl-user",
        "-p",
        "rltop-core",
        "-p",
        "rl-reference",
        "-p",
        "rl-common",
        "-p",
        "xtask",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Clippy on the eBPF crate, which only the nightly can build (for BPF).
fn clippy_ebpf(root: &Path) -> anyhow::Result<()> {
    run(Command::new("rustup")
        .current_dir(root)
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "-p",
            "rl-ebpf",
            "--target",
            "bpfel-unknown-none",
        ])
        .args(["-Z", "build-std=core", "--", "-D", "warnings"]))
}

/// Why a live recording cannot run here, or None when it can.
fn live_blocker() -> Option<String> {
    if !is_root() {
        return Some("not root (live tracing needs root: `sudo cargo xtask demo`)".into());
    }
    // Set-up has mounted tracefs if it could.
    let filemap = Path::new("/sys/kernel/tracing/events/filemap");
    if !filemap.is_dir() {
        return Some(format!(
            "{} does not exist (tracefs not mounted, or no filemap tracepoints)",
            filemap.display()
        ));
    }
    None
}

#[allow(clippy::too_many_lines)] // one scenario, step after step, as the test or benchmark runs it
fn demo(root: &Path, bundled: bool) -> anyhow::Result<()> {
    let bin = release_bins(root)?;
    let rltop = bin.join("rltop");
    // Under the target dir (the root filesystem, ext4 here), not /tmp, which
    // may be tmpfs: the punch-hole probe is ext4's tracepoint.
    let dir = target_dir(root).join("demo");
    let work = dir.join("work");
    std::fs::create_dir_all(&work)?;
    let trace = dir.join("demo.rlt");
    let _ = std::fs::remove_file(&trace);
    let blocker = if bundled {
        Some("--bundled given".to_string())
    } else {
        live_blocker()
    };
    // The workload's file, from the JSON line it prints at the end.
    let mut workload_ino = None;
    match &blocker {
        None => {
            println!(
                "== live: recording rl-workload (mmap faults, O_DIRECT writes, punch hole, truncate) for up to 5 s"
            );
            let out = capture_stdout(
                Command::new(&rltop)
                    .arg("record")
                    .arg("-o")
                    .arg(&trace)
                    .args(["--duration", "5", "--"])
                    .arg(bin.join("rl-workload"))
                    .arg("--dir")
                    .arg(&work)
                    .args(["--iterations", "200"]),
            )?;
            print!("{out}");
            workload_ino = out
                .split("\"ino\":")
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .map(str::to_string);
        }
        Some(why) => {
            println!("== no live recording: {why}");
            println!(
                "== showing the bundled hand-written trace rl-user/tests/data/demo.jsonl instead"
            );
            run(Command::new(&rltop)
                .arg("import")
                .arg(root.join("rl-user/tests/data/demo.jsonl"))
                .arg("-o")
                .arg(&trace))?;
        }
    }
    let text = capture(
        Command::new(&rltop)
            .args(["dump", "--format", "text"])
            .arg(&trace),
    )?;
    // A live trace starts with whatever else the machine was doing (the
    // workload's own start-up faults too): show the events on its file.
    let on_file = |l: &&str| match &workload_ino {
        Some(ino) => {
            l.contains(&format!(" ino {ino} "))
                || (l.contains("rl-workload/")
                    && ["dio_end", "punch_end", "truncate_end"]
                        .iter()
                        .any(|k| l.contains(k)))
        }
        None => true,
    };
    // The bundled trace is short: all of it.
    let limit = if workload_ino.is_some() {
        40
    } else {
        usize::MAX
    };
    let shown: Vec<&str> = text.lines().filter(on_file).take(limit).collect();
    let filter = match &workload_ino {
        Some(ino) => format!(", the workload's file (inode {ino}) only"),
        None => String::new(),
    };
    println!(
        "== {} events (rltop dump --format text {}{filter}):",
        shown.len(),
        trace.display()
    );
    for line in shown {
        println!("{line}");
    }
    let jsonl = capture(
        Command::new(&rltop)
            .args(["dump", "--format", "jsonl"])
            .arg(&trace),
    )?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in jsonl.lines() {
        if let Some(k) = line
            .split("\"kind\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        {
            *counts.entry(k.to_string()).or_default() += 1;
        }
    }
    println!(
        "== events by kind ({} in all):",
        counts.values().sum::<u64>()
    );
    for (k, n) in counts {
        println!("{n:>8}  {k}");
    }
    println!(
        "(the trace is {}; `rltop dump` it again, or record your own with `sudo rltop record -o FILE -- CMD`)",
        trace.display()
    );
    Ok(())
}

/// Ends the demo in the TUI, when there is a terminal to show it on (CI and
/// pipes get the text above only): the live recording replayed when one
/// was made, else `rltop demo`, a simulated workload shown live.
fn demo_tui(root: &Path, bundled: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        println!("== (no terminal: skipping the TUI; run `rltop demo` in one)");
        return Ok(());
    }
    let rltop = target_dir(root).join("release").join("rltop");
    let trace = target_dir(root).join("demo").join("demo.rlt");
    let live = !bundled && live_blocker().is_none() && trace.is_file();
    let mut cmd = Command::new(&rltop);
    if live {
        println!(
            "== the TUI: `rltop replay {}` (q quits, ? for keys)",
            trace.display()
        );
        cmd.arg("replay").arg(&trace);
    } else {
        println!(
            "== the TUI: `rltop demo`, a simulated workload with an injected deadlock (q quits, ? for keys)"
        );
        cmd.arg("demo");
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs a command with standard error shown as it comes, and returns its
/// standard output; fails when it fails.
fn capture_stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        print!("{}", String::from_utf8_lossy(&out.stdout));
        bail!("{cmd:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and returns its standard output; fails with its standard
/// error when it fails.
fn capture(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
