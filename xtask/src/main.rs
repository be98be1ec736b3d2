//! Project tasks: `cargo xtask <task>`.
//!
//! - `setup`: everything a fresh machine needs to build and test rltop
//!   (Debian packages, nightly with rust-src, bpf-linker against the
//!   nightly's own LLVM). Idempotent and quick when already done.
//! - `demo`: set up, build, and run rltop's main job: a live recording of a
//!   known workload when root on a kernel with the tracepoints, else the
//!   bundled demo trace.
//! - `test`: set up, then build and run every test.
//! - `bench capture`: capture overhead against bpftrace (see bench.rs).

mod bench;
mod setup;

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
    Demo,
    /// Set up, then run every test.
    Test,
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
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command, inheriting stdio; fails when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
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
        Task::Demo => {
            setup::all()?;
            demo(&root)
        }
        Task::Bench { what: Bench::Capture { rounds, iterations } } => {
            setup::all()?;
            bench::capture(&root, &bench::Options { rounds, iterations })
        }
    }
}

fn test(root: &Path) -> anyhow::Result<()> {
    let mut cargo = Command::new("cargo");
    cargo.current_dir(root).arg("test");
    // Root-only tests skip themselves without root; in CI (as root) a skip
    // would hide a broken capture path, so there they must run.
    if is_root() {
        cargo.env("RLTOP_REQUIRE_ROOT_TESTS", "1");
    } else {
        eprintln!("xtask: not root: the live-capture tests will skip themselves");
    }
    run(&mut cargo)?;
    println!("xtask test: all tests passed");
    Ok(())
}

fn demo(root: &Path) -> anyhow::Result<()> {
    run(Command::new("cargo").current_dir(root).args(["build", "--release", "-p", "rl-user", "--bins"]))?;
    let bin = root.join("target/release");
    let rltop = bin.join("rltop");
    let dir = root.join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let trace = dir.join("demo.rlt");
    let live = is_root() && (Path::new("/sys/kernel/tracing/events").is_dir() || setup::mount_tracefs().is_ok());
    if live {
        println!("== live: recording rl-workload (mmap faults, O_DIRECT writes, punch hole, truncate) for up to 5 s");
        run(Command::new(&rltop)
            .arg("record")
            .arg("-o")
            .arg(&trace)
            .args(["--duration", "5", "--"])
            .arg(bin.join("rl-workload"))
            .arg("--dir")
            .arg(&dir)
            .args(["--iterations", "20"]))?;
    } else {
        println!("== not root or no tracefs: showing the bundled demo trace (rl-user/tests/data/demo.jsonl)");
        run(Command::new(&rltop).arg("import").arg(root.join("rl-user/tests/data/demo.jsonl")).arg("-o").arg(&trace))?;
    }
    let out = Command::new(&rltop).args(["dump", "--format", "text"]).arg(&trace).output()?;
    if !out.status.success() {
        bail!("rltop dump failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    println!("== first events (rltop dump --format text {}):", trace.display());
    // The workload's own file events are the interesting part of a live trace.
    let interesting = ["fault", "page_add", "dio_", "punch_", "truncate_", "rl_", "marker"];
    for line in text.lines().filter(|l| !live || interesting.iter().any(|k| l.contains(k))).take(30) {
        println!("{line}");
    }
    let jsonl = Command::new(&rltop).args(["dump", "--format", "jsonl"]).arg(&trace).output()?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for line in String::from_utf8_lossy(&jsonl.stdout).lines() {
        if let Some(k) = line.split("\"kind\":\"").nth(1).and_then(|s| s.split('"').next()) {
            *counts.entry(k.to_string()).or_default() += 1;
        }
    }
    println!("== events by kind:");
    for (k, n) in counts {
        println!("{n:>8}  {k}");
    }
    println!("(the trace is {}; `rltop dump` it again, or record your own with `sudo rltop record -o FILE -- CMD`)", trace.display());
    Ok(())
}
