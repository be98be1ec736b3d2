//! The command line (`docs/cli.md`). Names and flags are a contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::events::Dev;
use crate::probe::Options;
pub use crate::views::report::SortKey;

#[derive(Debug, Parser)]
#[command(
    name = "rltop",
    version,
    long_version = crate::LONG_VERSION,
    about = "See and check kernel range locking, live or from traces"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Print the man page (`man`) or a shell's completion script
    /// (`complete-bash`, `complete-zsh`, `complete-fish`) and exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<Generate>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Live: stream events as text lines instead of the TUI (the default
    /// when stdout is not a terminal).
    #[arg(long)]
    pub text: bool,
    /// Write output files even into a directory other users can write to
    /// (refused by default: rltop runs as root).
    #[arg(long, global = true)]
    pub force: bool,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, roff (`rltop.1`).
    Man,
    /// The bash completion script.
    CompleteBash,
    /// The zsh completion script (`_rltop`).
    CompleteZsh,
    /// The fish completion script.
    CompleteFish,
}

/// What to trace: shared by `rltop`, `record` and `probes`.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct LiveArgs {
    /// Probe profile: `auto` (default: the tracepoints, plus the range-lock
    /// flavour detected from kallsyms/BTF when the kernel has kprobes),
    /// `tracepoints`, `kprobes` (file events from kprobes instead of their
    /// tracepoints, plus the detected range-lock flavour), a range-lock flavour (`kara2013`, `bueso2017`,
    /// `bueso2019`, `lustre`: tracepoints plus its kprobes), or FILE.toml.
    #[arg(long, global = true, default_value = "auto")]
    pub profile: String,
    /// Trace only these processes (tgids) and the children they fork while recording.
    #[arg(long, value_delimiter = ',', global = true)]
    pub pid: Vec<u32>,
    /// Trace only file events on this device (`major:minor`, as `stat` prints it).
    #[arg(long, global = true)]
    pub dev: Option<String>,
    /// Trace only file events on this inode number.
    #[arg(long, global = true)]
    pub ino: Option<u64>,
    /// Ring buffer size in MiB (rounded up to a power of two).
    #[arg(long, global = true, default_value_t = 32)]
    pub buffer_mb: u32,
    /// Source of the page-cache lock events (`file_lock_*`): `auto` (the
    /// best this kernel has), `fentry`, `kprobe`, `lockdep`, `xfs_ilock` or
    /// `none`; `rltop probes` says which is used and why.
    #[arg(long, global = true, default_value = "auto")]
    pub lock_source: String,
}

impl LiveArgs {
    /// The probe options these arguments ask for (checked: a bad device,
    /// profile or buffer size is a one-line error).
    pub fn options(&self) -> anyhow::Result<Options> {
        let live = self;
        let dev = match &live.dev {
            Some(s) => Some(
                s.parse::<Dev>()
                    .map_err(|e| crate::user_error(format!("--dev: {e}")))?,
            ),
            None => None,
        };
        if !matches!(live.profile.as_str(), "auto" | "tracepoints" | "kprobes") {
            // A bad profile is reported before anything else (even privileges).
            crate::probe::profile::Profile::load(&live.profile).map_err(crate::user_error)?;
        }
        if live.lock_source != "auto"
            && crate::probe::flock::Source::parse(&live.lock_source).is_none()
        {
            return Err(crate::user_error(format!(
                "--lock-source {:?}: expected auto, fentry, kprobe, lockdep, xfs_ilock or none",
                live.lock_source
            )));
        }
        if live.buffer_mb == 0 || live.buffer_mb > 1024 {
            return Err(crate::user_error("--buffer-mb must be between 1 and 1024"));
        }
        Ok(Options {
            profile: live.profile.clone(),
            pids: live.pid.clone(),
            dev,
            ino: live.ino,
            ring_bytes: (live.buffer_mb << 20).next_power_of_two(),
            listing: false,
            lock_source: live.lock_source.clone(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record a trace until Ctrl-C, the duration, or CMD exits.
    Record(RecordArgs),
    /// Print the events of a trace, one per line.
    Dump(DumpArgs),
    /// Build a trace from JSONL events.
    Import(ImportArgs),
    /// Check a trace: ordering rules, conformance to the reference lock,
    /// deadlocks, stalls. Exit 0 = no certain error, 1 = findings, 2 = could
    /// not run.
    Check(CheckArgs),
    /// Contention summary, lock_stat style: per range lock tree/inode,
    /// operation and mode, per mmap_lock, per file operation and kernel
    /// lock; then the longest waits with their wait chains.
    Report(ReportArgs),
    /// A synthetic workload on the reference range lock, written as a trace:
    /// `mixed` (Kara's design, correct), or one injected bug per defect
    /// scenario (inversion, overlap, unlocked-page, unlock-unheld, unfair,
    /// lost-wakeup, deadlock, leak).
    Simulate(SimulateArgs),
    /// What if this kernel had Kara's range locks: replay the file
    /// operations of a trace (recorded without range locks) through the
    /// reference range lock, per page / DIO request / punched range /
    /// truncated tail, against whole-file serialization; predicted waits
    /// and parallelism per file.
    Whatif(WhatifArgs),
    /// The TUI over a trace: play/pause (space), speed (< >), step (.),
    /// seek (g), next finding (n).
    Replay(ReplayArgs),
    /// A simulated workload on the reference range lock, shown live in the
    /// TUI: no root or patched kernel needed.
    Demo(DemoArgs),
    /// Histograms of lock wait or hold times, bcc/bpftrace log2 style, as
    /// text, bpftrace JSON, CSV, Prometheus or HdrHistogram logs.
    /// Several files are shown side by side, or added up with --merge.
    Hist(HistArgs),
    /// Timelines: a trace as a Perfetto protobuf trace (TrackEvent) or a
    /// Chrome JSON trace, for ui.perfetto.dev or chrome://tracing.
    Export(ExportArgs),
    /// Show what this kernel supports: each probe, attached or why not.
    Probes(ProbesArgs),
}

/// Arguments of `rltop record` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Trace file to write (created mode 0600; never through a symlink).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// At the end, print each probe's runs and mean nanoseconds in the
    /// kernel (enables the kernel's BPF run-time accounting meanwhile).
    #[arg(long)]
    pub probe_cost: bool,
    /// Serve OpenMetrics (contention and wait/hold histograms, drops,
    /// findings by kind) at http://ADDR/metrics while recording. A bare
    /// PORT binds to 127.0.0.1; give an address (e.g. 0.0.0.0:9464) to
    /// serve beyond this machine.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub metrics: Option<String>,
    /// Command to run while recording; recording stops when it exits.
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

/// Arguments of `rltop dump` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct DumpArgs {
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = DumpFormat::Jsonl)]
    pub format: DumpFormat,
}

/// Arguments of `rltop import` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct ImportArgs {
    pub file: PathBuf,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Arguments of `rltop check` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A trace (`.rlt`) or a JSONL file.
    pub file: PathBuf,
    /// `junit`: JUnit XML, one testcase per xfstests test (implies
    /// `--by-test`).
    #[arg(long, value_enum, default_value_t = VerdictFormat::Text)]
    pub format: VerdictFormat,
    /// Split the trace into xfstests tests at their `run fstests <seq>`
    /// markers: a verdict and a summary per test.
    #[arg(long)]
    pub by_test: bool,
    /// Report a waiter the reference lock would grant that still waits
    /// after this many milliseconds (lost wakeup).
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Range lock flavour, when the trace header does not say; else
    /// decided by the request modes.
    #[arg(long, value_enum)]
    pub flavour: Option<CheckFlavour>,
    /// For a recording of a command (`record -- CMD`): with `--by-test`,
    /// the findings about every task, instead of only those about the
    /// command's tasks, the tasks that held what they waited for, and the
    /// kernel threads on their files (plain `check` judges every task).
    #[arg(long)]
    pub all_tasks: bool,
}

/// Arguments of `rltop report` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A trace (`.rlt`) or a JSONL file.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// Sort rows by this key, descending (perf lock's `contended` and
    /// `avg_wait` are accepted too).
    #[arg(short = 'k', long = "sort", value_enum, default_value_t = SortKey::Contentions)]
    pub sort: SortKey,
    /// Split the trace into xfstests tests at their `run fstests <seq>`
    /// markers: a summary and a report per test.
    #[arg(long)]
    pub by_test: bool,
    /// Range lock flavour, when the trace header does not say.
    #[arg(long, value_enum)]
    pub flavour: Option<CheckFlavour>,
    /// For a recording of a command (`record -- CMD`): show every task,
    /// and mark those outside the command's, instead of only the command's
    /// tasks, the tasks that held what they waited for, and the kernel
    /// threads on their files.
    #[arg(long)]
    pub all_tasks: bool,
}

/// Arguments of `rltop simulate` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[arg(long, default_value = "mixed")]
    pub scenario: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// About how many events the workload records.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Simulated tasks doing file operations.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Arguments of `rltop whatif` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct WhatifArgs {
    /// A trace (`.rlt`) or a JSONL file.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// How long a fault, or a run of page-cache adds, holds its lock after
    /// its last page (ns): the trace does not time them.
    #[arg(long, default_value_t = 1000)]
    pub page_hold_ns: u64,
    /// Page-cache adds of one task at consecutive indices of one file,
    /// each within this long of the previous (ns), are one operation (a
    /// readahead or a write's pages).
    #[arg(long, default_value_t = 100_000)]
    pub readahead_gap_ns: u64,
    /// The longest a fault's own readahead holds `invalidate_lock` after
    /// its last page (ns): it holds until the task's next event, as
    /// `filemap_fault` waits for the read under the lock.
    #[arg(long, default_value_t = 10_000_000)]
    pub fault_read_max_ns: u64,
}

/// Arguments of `rltop replay` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A trace (`.rlt`) or a JSONL file.
    pub file: PathBuf,
    /// Playback speed: 1 = the trace's own time, 0.01 = 100 times slower.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start paused at the first event.
    #[arg(long)]
    pub paused: bool,
    /// Report a waiter the reference lock would grant that still waits
    /// after this many milliseconds (lost wakeup).
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Range lock flavour, when the trace header does not say.
    #[arg(long, value_enum)]
    pub flavour: Option<CheckFlavour>,
    /// For a recording of a command (`record -- CMD`): show every task's
    /// ranges, waits and counts, instead of only the command's tasks, the
    /// tasks that held what they waited for, and the kernel threads on
    /// their files.
    #[arg(long)]
    pub all_tasks: bool,
}

/// Arguments of `rltop demo` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The bug the first batch injects (see `simulate`); later, every
    /// sixth batch injects the next bug, the others run the correct
    /// `mixed` workload (`mixed` here: no bugs at all).
    #[arg(long, default_value = "deadlock")]
    pub scenario: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated tasks doing file operations.
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    /// Playback speed against the simulator's clock (it runs flat out).
    #[arg(long, default_value_t = 0.01)]
    pub speed: f64,
}

/// Arguments of `rltop hist` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct HistArgs {
    /// Traces (`.rlt`), JSONL files, or HDR logs written by `--format
    /// hdr` (on other machines, say).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Wait (contended acquisitions only, as lock_stat) or hold times.
    #[arg(long, value_enum, default_value_t = HistMetric::Wait)]
    pub metric: HistMetric,
    /// One series per operation, lock tree (mm, kernel lock, file), task,
    /// or xfstests test (`run fstests <seq> at ...` markers).
    #[arg(long, value_enum, default_value_t = HistBy::Op)]
    pub by: HistBy,
    #[arg(long, value_enum, default_value_t = HistFormat::Text)]
    pub format: HistFormat,
    /// Also draw the histograms into this SVG file (mode 0600, never
    /// through a symlink, not into a directory others can write to).
    #[arg(long, value_name = "OUT")]
    pub svg: Option<PathBuf>,
    /// Add the files' histograms up, exactly (same series keys add).
    #[arg(long)]
    pub merge: bool,
    /// Write the output to this file instead of stdout (mode 0600,
    /// never through a symlink, not into a directory others can write
    /// to).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Range lock flavour, when the trace header does not say.
    #[arg(long, value_enum)]
    pub flavour: Option<CheckFlavour>,
    /// For a recording of a command (`record -- CMD`): show every task,
    /// and mark those outside the command's, instead of only the command's
    /// tasks, the tasks that held what they waited for, and the kernel
    /// threads on their files.
    #[arg(long)]
    pub all_tasks: bool,
}

/// Arguments of `rltop export` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A trace (`.rlt`) or a JSONL file.
    pub file: PathBuf,
    /// Write a Perfetto protobuf trace here.
    #[arg(long, value_name = "OUT", required_unless_present = "chrome")]
    pub perfetto: Option<PathBuf>,
    /// Write a Chrome JSON trace here.
    #[arg(long, value_name = "OUT.json")]
    pub chrome: Option<PathBuf>,
    /// Waiters the reference lock would grant that still wait after
    /// this many milliseconds are stall findings.
    #[arg(long, default_value_t = 1000)]
    pub stall_ms: u64,
    /// Range lock flavour, when the trace header does not say.
    #[arg(long, value_enum)]
    pub flavour: Option<CheckFlavour>,
}

/// Arguments of `rltop probes` (its help is the variant's doc comment).
#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Also print each program's verified instruction count.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DumpFormat {
    Jsonl,
    Text,
    /// Decode every event and print only how many there were (a decoding
    /// baseline for benchmarks, and a quick integrity check).
    Count,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFormat {
    Text,
    Json,
}

/// Output formats of `rltop check`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum VerdictFormat {
    Text,
    Json,
    /// JUnit XML for CI systems: one testcase per xfstests test.
    Junit,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CheckFlavour {
    /// Exclusive FIFO (Kara 2013, Lustre).
    #[value(name = "excl_fifo")]
    ExclFifo,
    /// Reader/writer (Bueso).
    Rw,
}

impl From<CheckFlavour> for crate::model::Flavour {
    fn from(f: CheckFlavour) -> crate::model::Flavour {
        match f {
            CheckFlavour::ExclFifo => crate::model::Flavour::ExclFifo,
            CheckFlavour::Rw => crate::model::Flavour::Rw,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HistMetric {
    Wait,
    Hold,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HistBy {
    Op,
    Tree,
    Task,
    Test,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HistFormat {
    /// bcc's log2 histograms.
    Text,
    /// bpftrace's `-f json` shape.
    Json,
    /// One row per bucket.
    Csv,
    /// Prometheus text exposition, classic histograms in seconds.
    Prom,
    /// HdrHistogram interval log, one V2 (deflate) histogram per series.
    Hdr,
}
