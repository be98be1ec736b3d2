//! The command line (`design.md`, "Command line"). Names and flags are a contract.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use crate::views::report::SortKey;

#[derive(Debug, Parser)]
#[command(
    name = "rltop",
    version,
    about = "See and check kernel range locking, live or from traces"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record a trace until Ctrl-C, the duration, or CMD exits.
    Record {
        /// Trace file to write (created mode 0600; never through a symlink).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// At the end, print each probe's runs and mean nanoseconds in the
        /// kernel (enables the kernel's BPF run-time accounting meanwhile).
        #[arg(long)]
        probe_cost: bool,
        /// Serve OpenMetrics (contention and wait/hold histograms, drops,
        /// findings by kind) at http://ADDR/metrics while recording. A bare
        /// PORT binds to 127.0.0.1; give an address (e.g. 0.0.0.0:9464) to
        /// serve beyond this machine.
        #[arg(long, value_name = "[ADDR:]PORT")]
        metrics: Option<String>,
        /// Command to run while recording; recording stops when it exits.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Print the events of a trace, one per line.
    Dump {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = DumpFormat::Jsonl)]
        format: DumpFormat,
    },
    /// Build a trace from JSONL events.
    Import {
        file: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Check a trace: ordering rules, conformance to the reference lock,
    /// deadlocks, stalls. Exit 0 = no certain error, 1 = findings, 2 = could
    /// not run.
    Check {
        /// A trace (`.rlt`) or a JSONL file.
        file: PathBuf,
        /// `junit`: JUnit XML, one testcase per xfstests test (implies
        /// `--by-test`).
        #[arg(long, value_enum, default_value_t = VerdictFormat::Text)]
        format: VerdictFormat,
        /// Split the trace into xfstests tests at their `run fstests <seq>`
        /// markers: a verdict and a summary per test.
        #[arg(long)]
        by_test: bool,
        /// Report a waiter the reference lock would grant that still waits
        /// after this many milliseconds (lost wakeup).
        #[arg(long, default_value_t = 1000)]
        stall_ms: u64,
        /// Range lock flavour, when the trace header does not say; else
        /// decided by the request modes.
        #[arg(long, value_enum)]
        flavour: Option<CheckFlavour>,
    },
    /// Contention summary, lock_stat style: per range lock tree/inode,
    /// operation and mode, per mmap_lock, per file operation and kernel
    /// lock; then the longest waits with their wait chains.
    Report {
        /// A trace (`.rlt`) or a JSONL file.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Sort rows by this key, descending (perf lock's `contended` and
        /// `avg_wait` are accepted too).
        #[arg(short = 'k', long = "sort", value_enum, default_value_t = SortKey::Contentions)]
        sort: SortKey,
        /// Split the trace into xfstests tests at their `run fstests <seq>`
        /// markers: a summary and a report per test.
        #[arg(long)]
        by_test: bool,
        /// Range lock flavour, when the trace header does not say.
        #[arg(long, value_enum)]
        flavour: Option<CheckFlavour>,
    },
    /// A synthetic workload on the reference range lock, written as a trace:
    /// `mixed` (Kara's design, correct), or one injected bug per defect
    /// scenario (inversion, overlap, unlocked-page, unlock-unheld, unfair,
    /// lost-wakeup, deadlock, leak).
    Simulate {
        #[arg(long, default_value = "mixed")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// About how many events the workload records.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// Simulated tasks doing file operations.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// What if this kernel had Kara's range locks: replay the file
    /// operations of a trace (recorded without range locks) through the
    /// reference range lock, per page / DIO request / punched range /
    /// truncated tail, against whole-file serialization; predicted waits
    /// and parallelism per file.
    Whatif {
        /// A trace (`.rlt`) or a JSONL file.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// How long buffered IO and faults hold a page's lock (ns): the
        /// trace does not time them.
        #[arg(long, default_value_t = 1000)]
        page_hold_ns: u64,
    },
    /// The TUI over a trace: play/pause (space), speed (< >), step (.),
    /// seek (g), next finding (n).
    Replay {
        /// A trace (`.rlt`) or a JSONL file.
        file: PathBuf,
        /// Playback speed: 1 = the trace's own time, 0.01 = 100 times slower.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Start paused at the first event.
        #[arg(long)]
        paused: bool,
        /// Report a waiter the reference lock would grant that still waits
        /// after this many milliseconds (lost wakeup).
        #[arg(long, default_value_t = 1000)]
        stall_ms: u64,
        /// Range lock flavour, when the trace header does not say.
        #[arg(long, value_enum)]
        flavour: Option<CheckFlavour>,
    },
    /// A simulated workload on the reference range lock, shown live in the
    /// TUI: no root or patched kernel needed.
    Demo {
        /// The bug the first batch injects (see `simulate`); later, every
        /// sixth batch injects the next bug, the others run the correct
        /// `mixed` workload (`mixed` here: no bugs at all).
        #[arg(long, default_value = "deadlock")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated tasks doing file operations.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Playback speed against the simulator's clock (it runs flat out).
        #[arg(long, default_value_t = 0.01)]
        speed: f64,
    },
    /// Histograms of lock wait or hold times, bcc/bpftrace log2 style, as
    /// text, bpftrace JSON, CSV, Prometheus or HdrHistogram logs.
    /// Several files are shown side by side, or added up with --merge.
    Hist {
        /// Traces (`.rlt`), JSONL files, or HDR logs written by `--format
        /// hdr` (on other machines, say).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Wait (contended acquisitions only, as lock_stat) or hold times.
        #[arg(long, value_enum, default_value_t = HistMetric::Wait)]
        metric: HistMetric,
        /// One series per operation, lock tree (mm, kernel lock, file), task,
        /// or xfstests test (`run fstests <seq> at ...` markers).
        #[arg(long, value_enum, default_value_t = HistBy::Op)]
        by: HistBy,
        #[arg(long, value_enum, default_value_t = HistFormat::Text)]
        format: HistFormat,
        /// Also draw the histograms into this SVG file (mode 0600, never
        /// through a symlink, not into a directory others can write to).
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
        /// Add the files' histograms up, exactly (same series keys add).
        #[arg(long)]
        merge: bool,
        /// Write the output to this file instead of stdout (mode 0600,
        /// never through a symlink, not into a directory others can write
        /// to).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Range lock flavour, when the trace header does not say.
        #[arg(long, value_enum)]
        flavour: Option<CheckFlavour>,
    },
    /// Timelines: a trace as a Perfetto protobuf trace (TrackEvent) or a
    /// Chrome JSON trace, for ui.perfetto.dev or chrome://tracing.
    Export {
        /// A trace (`.rlt`) or a JSONL file.
        file: PathBuf,
        /// Write a Perfetto protobuf trace here.
        #[arg(long, value_name = "OUT", required_unless_present = "chrome")]
        perfetto: Option<PathBuf>,
        /// Write a Chrome JSON trace here.
        #[arg(long, value_name = "OUT.json")]
        chrome: Option<PathBuf>,
        /// Waiters the reference lock would grant that still wait after
        /// this many milliseconds are stall findings.
        #[arg(long, default_value_t = 1000)]
        stall_ms: u64,
        /// Range lock flavour, when the trace header does not say.
        #[arg(long, value_enum)]
        flavour: Option<CheckFlavour>,
    },
    /// Show what this kernel supports: each probe, attached or why not.
    Probes {
        /// Also print each program's verified instruction count.
        #[arg(short, long)]
        verbose: bool,
    },
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
