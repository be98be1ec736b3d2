//! Live probes: load rltop's eBPF programs into the running kernel, attach
//! what this kernel supports, and turn the ring buffer into [`Event`]s.
//!
//! Start-up resolves every kernel layout first ([`tracefs`] formats, [`btf`]
//! members, see [`catalog`]), passes the offsets in as read-only globals,
//! then attaches each ready probe. A probe that cannot attach is reported
//! with the reason and the others go on.

pub mod btf;
pub mod catalog;
pub mod tracefs;

use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use rl_common::Filter;

use crate::events::{Body, Dev, Event};
use crate::user_error;
use catalog::{Attach, ProbeSpec};

/// The eBPF object built by `build.rs` (empty when built with AYA_BUILD_SKIP).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rl-ebpf"));

/// What the user asked to trace.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub profile: String,
    pub pids: Vec<u32>,
    pub dev: Option<Dev>,
    pub ino: Option<u64>,
    /// Ring buffer bytes (a power of two).
    pub ring_bytes: u32,
}

impl Options {
    /// From the command line's shared live arguments.
    pub fn from_cli(live: &crate::cli::LiveArgs) -> anyhow::Result<Options> {
        let dev = match &live.dev {
            Some(s) => Some(s.parse::<Dev>().map_err(|e| user_error(format!("--dev: {e}")))?),
            None => None,
        };
        if live.buffer_mb == 0 || live.buffer_mb > 1024 {
            return Err(user_error("--buffer-mb must be between 1 and 1024"));
        }
        Ok(Options {
            profile: live.profile.clone(),
            pids: live.pid.clone(),
            dev,
            ino: live.ino,
            ring_bytes: (live.buffer_mb << 20).next_power_of_two(),
        })
    }
}

/// The outcome for one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Attached; the verifier's instruction count when the kernel reports it.
    Attached { verified_insns: Option<u32> },
    /// Not attached: what this kernel lacks.
    Unavailable(String),
    /// The kernel refused to load or attach it.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub name: String,
    pub program: &'static str,
    pub status: Status,
}

/// Fails with one clear line unless this process may load eBPF programs.
pub fn check_privileges(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    // CAP_SYS_ADMIN (21), or CAP_BPF (39) with CAP_PERFMON (38).
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |bit: u32| caps & (1 << bit) != 0;
    if has(21) || (has(39) && has(38)) {
        return Ok(());
    }
    Err(user_error(format!(
        "{what} needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs; run it with sudo"
    )))
}

/// The profiles this build knows.
pub const PROFILES: &[&str] = &["auto", "tracepoints"];

fn profile_specs(profile: &str) -> anyhow::Result<(&'static str, &'static [ProbeSpec])> {
    match profile {
        // Only the tracepoint profile exists so far; auto picks it.
        "auto" | "tracepoints" => Ok(("tracepoints", catalog::TRACEPOINTS)),
        other => Err(user_error(format!(
            "unknown profile {other:?}: available profiles are {}",
            PROFILES.join(", ")
        ))),
    }
}

/// A live tracing session: the loaded programs and their ring buffer.
/// Dropping it detaches every probe.
pub struct Session {
    // Kept alive: dropping `Ebpf` detaches the programs.
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    last_drops: Vec<u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub profile: &'static str,
    pub probes: Vec<ProbeReport>,
    /// Whether rltop mounted tracefs itself.
    pub mounted_tracefs: bool,
    decode_errors: u64,
}

impl Session {
    /// Resolves layouts, loads and attaches the profile's probes.
    pub fn start(opts: &Options) -> anyhow::Result<Session> {
        let (profile, specs) = profile_specs(&opts.profile)?;
        check_privileges("tracing")?;
        if EBPF_OBJECT.is_empty() {
            return Err(user_error(
                "this rltop was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it normally",
            ));
        }
        let (tracefs, mounted_tracefs) = tracefs::Tracefs::open().map_err(user_error)?;
        let btf = btf::Btf::from_kernel().ok();
        let resolved = catalog::resolve(specs, &tracefs, btf.as_ref());
        if resolved.ready.iter().all(Result::is_err) {
            return Err(user_error(
                "no probe can attach on this kernel; `rltop probes` lists what each one lacks",
            ));
        }

        raise_memlock();
        let filter = Filter {
            self_tgid: std::process::id(),
            pid_filter: u32::from(!opts.pids.is_empty()),
            dev: opts.dev.map(Dev::to_kernel).unwrap_or(0),
            _pad: 0,
            ino: opts.ino.unwrap_or(0),
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("TP", &resolved.tp, true)
            .override_global("KOFF", &resolved.kernel, true)
            .override_global("FILTER", &filter, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();

        if !opts.pids.is_empty() {
            let mut pids: aya::maps::HashMap<_, u32, u8> =
                aya::maps::HashMap::try_from(ebpf.map_mut("PIDS").context("PIDS map")?)?;
            for &pid in &opts.pids {
                pids.insert(pid, 1, 0).context("filling the pid filter")?;
            }
        }

        let mut probes = Vec::with_capacity(specs.len());
        for (spec, ready) in specs.iter().zip(resolved.ready) {
            let status = match ready {
                Err(why) => Status::Unavailable(why),
                Ok(()) => match attach(&mut ebpf, spec) {
                    Ok(insns) => Status::Attached { verified_insns: insns },
                    Err(e) => Status::Failed(format!("{e:#}")),
                },
            };
            probes.push(ProbeReport { name: spec.name(), program: spec.program, status });
        }

        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map")?)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("DROPS map")?)?;
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        Ok(Session {
            _ebpf: ebpf,
            ring,
            drops,
            last_drops: vec![0; ncpus],
            logger,
            profile,
            probes,
            mounted_tracefs,
            decode_errors: 0,
        })
    }

    /// Names of the attached probes.
    pub fn attached(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| matches!(p.status, Status::Attached { .. }))
            .map(|p| p.name.clone())
            .collect()
    }

    /// One line per probe that is not attached, for a start-up warning.
    pub fn not_attached(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter_map(|p| match &p.status {
                Status::Attached { .. } => None,
                Status::Unavailable(why) | Status::Failed(why) => Some(format!("{}: {why}", p.name)),
            })
            .collect()
    }

    /// Waits up to `timeout` for records, then hands every available event
    /// to `out`. Returns how many events were delivered.
    pub fn poll(&mut self, timeout: Duration, out: &mut impl FnMut(Event)) -> anyhow::Result<usize> {
        let mut fds = [
            libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd {
                fd: self.logger.as_ref().map_or(-1, |l| l.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfd for the whole call; a
        // negative fd is ignored by poll(2).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("polling the ring buffer");
            }
        }
        if fds[1].revents != 0
            && let Some(l) = self.logger.as_mut()
        {
            l.flush();
        }
        Ok(self.drain(out))
    }

    /// Hands every record now in the ring to `out`.
    pub fn drain(&mut self, out: &mut impl FnMut(Event)) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            match crate::events::raw::decode(&item) {
                Ok(ev) => {
                    out(ev);
                    n += 1;
                }
                Err(e) => {
                    self.decode_errors += 1;
                    if self.decode_errors == 1 {
                        log::error!("undecodable ring-buffer record ({e}); rltop's kernel and user halves disagree");
                    }
                }
            }
        }
        n
    }

    /// Emits a `lost` event for each CPU whose drop counter grew since the
    /// last call, stamped with the current monotonic time.
    pub fn lost_events(&mut self, out: &mut impl FnMut(Event)) -> anyhow::Result<u64> {
        let values = self.drops.get(&0, 0).context("reading drop counters")?;
        let now = monotonic_ns();
        let mut total = 0;
        for (cpu, (&v, last)) in values.iter().zip(self.last_drops.iter_mut()).enumerate() {
            if v > *last {
                out(Event { ts: now, tid: 0, pid: 0, cpu: Some(cpu as u32), body: Body::Lost { count: v - *last, cpu: cpu as u32 } });
                total += v - *last;
                *last = v;
            }
        }
        Ok(total)
    }
}

fn attach(ebpf: &mut Ebpf, spec: &ProbeSpec) -> anyhow::Result<Option<u32>> {
    let prog = ebpf
        .program_mut(spec.program)
        .with_context(|| format!("program {} is not in the eBPF object", spec.program))?;
    match spec.attach {
        Attach::Tracepoint => {
            let p: &mut TracePoint = prog.try_into()?;
            p.load().map_err(verifier_error)?;
            p.attach(spec.category, spec.event)?;
        }
        Attach::Raw => {
            let p: &mut RawTracePoint = prog.try_into()?;
            p.load().map_err(verifier_error)?;
            p.attach(spec.event)?;
        }
    }
    let prog = ebpf.program(spec.program).expect("just attached");
    Ok(prog.info().ok().and_then(|i| i.verified_instruction_count()))
}

/// Keeps the verifier's verdict (its last lines) and drops the rest of the log.
fn verifier_error(e: aya::programs::ProgramError) -> anyhow::Error {
    match e {
        aya::programs::ProgramError::LoadError { io_error, verifier_log } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            anyhow::anyhow!("the verifier rejected it ({io_error}): {}", tail.into_iter().rev().collect::<Vec<_>>().join(" / "))
        }
        other => other.into(),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use
/// the memory cgroup. Raising it may fail without CAP_SYS_RESOURCE, which
/// matters only on old kernels.
fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels from 5.11");
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_REALTIME in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
