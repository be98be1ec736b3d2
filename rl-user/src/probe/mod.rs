//! Live probes: load rltop's eBPF programs into the running kernel, attach
//! what this kernel supports, and turn the ring buffer into [`Event`]s.
//!
//! Start-up resolves every kernel layout first ([`tracefs`] formats, [`btf`]
//! members, see [`catalog`]), passes the offsets in as read-only globals,
//! then attaches each ready probe. A probe that cannot attach is reported
//! with the reason and the others go on.

pub mod btf;
pub mod catalog;
pub mod fit;
pub mod flock;
pub mod fsops;
pub mod kfile;
pub mod kprobes;
pub mod modwatch;
pub mod names;
pub mod paths;
pub mod profile;
pub mod tracefs;

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::time::Duration;

use anyhow::Context as _;
use aya::maps::{MapData, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::{KProbe, RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use rl_common::{Batching, Filter, RangeLockLayout};

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
    /// `rltop probes`: a range-lock profile that cannot attach here (no
    /// kprobes, missing symbols) is still loaded, so the verifier checks
    /// its programs, and each probe says why it is not attached.
    pub listing: bool,
    /// `--lock-source`: `auto` or a source name (see [`flock::Source`]).
    pub lock_source: String,
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
    /// What it covers, when not every file (e.g. "ext4 only").
    pub covers: Option<&'static str>,
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

/// The range-lock probes of `--profile` (a built-in flavour or a TOML
/// file), or of the flavour `auto` detected; None for the tracepoints only.
/// Returns the plan and a line saying what detection found. Errors are one
/// line for the user: no kprobes here, a symbol missing, a bad profile.
fn range_lock_plan(
    asked: &str,
    listing: bool,
    tracefs: &tracefs::Tracefs,
    btf: Option<&btf::Btf>,
) -> anyhow::Result<(Option<profile::Plan>, String, Option<String>)> {
    let (plan, line) = match range_lock_plan_strict(asked, tracefs, btf) {
        Err(e) if listing && asked != "auto" && asked != "kprobes" => {
            // Listed anyway: every probe of the profile is loaded, and says why it is not attached.
            let p = profile::Profile::load(asked).map_err(user_error)?;
            let plan = p.plan_unchecked(btf).map_err(user_error)?;
            let why = format!("{e:#}");
            return Ok((Some(plan), format!("range locks: {why}"), Some(why)));
        }
        other => other?,
    };
    Ok((plan, line, None))
}

fn range_lock_plan_strict(
    asked: &str,
    tracefs: &tracefs::Tracefs,
    btf: Option<&btf::Btf>,
) -> anyhow::Result<(Option<profile::Plan>, String)> {
    use profile::{Detection, Kallsyms, Profile};
    if asked == "tracepoints" {
        return Ok((None, "range locks: not probed (profile tracepoints)".into()));
    }
    let explicit = if asked == "auto" || asked == "kprobes" {
        None
    } else {
        Some(Profile::load(asked).map_err(user_error)?)
    };
    let kprobes = profile::kprobes_available(tracefs.root());
    if let Some(p) = &explicit
        && !kprobes
    {
        return Err(user_error(format!(
            "profile {} needs kprobes, which this kernel does not have (no kprobe PMU in \
             /sys/bus/event_source/devices and no kprobe_events in tracefs); without --profile \
             rltop runs its tracepoint probes",
            p.name
        )));
    }
    let syms = match Kallsyms::read() {
        Ok(s) => s,
        Err(e) if explicit.is_some() => {
            return Err(user_error(format!(
                "cannot read /proc/kallsyms to find the profile's functions: {e}"
            )));
        }
        Err(_) => Kallsyms::default(),
    };
    match explicit {
        Some(p) => {
            let plan = plan_with_module_btf(&p, &syms, btf).map_err(user_error)?;
            let line = plan_line(&plan, "profile", " (asked)");
            Ok((Some(plan), line))
        }
        None => match detect_with_modules(&syms, btf) {
            Detection::None => Ok((
                None,
                "range locks: no range-lock functions in /proc/kallsyms".into(),
            )),
            Detection::Ambiguous(names) => Ok((
                None,
                format!(
                    "range locks: NOT traced: functions of {} found (same symbols, no BTF to tell them apart): choose with {}",
                    names.join(" or "),
                    names
                        .iter()
                        .map(|n| format!("--profile {n}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
            Detection::Found(_) if !kprobes => Ok((
                None,
                "range locks: functions found, but this kernel has no kprobes to probe them".into(),
            )),
            Detection::Found(p) => match plan_with_module_btf(&p, &syms, btf) {
                Ok(plan) => {
                    let line = plan_line(&plan, "detected profile", "");
                    Ok((Some(plan), line))
                }
                Err(e) => Ok((None, format!("range locks: {e}"))),
            },
        },
    }
}

/// The BTF that describes a profile's lock struct when its functions are a
/// module's and that module has BTF (`/sys/kernel/btf/<module>`, split BTF
/// on vmlinux's): the module's name and that BTF.
pub(crate) fn module_btf(
    syms: &profile::Kallsyms,
    p: &profile::Profile,
) -> Option<(String, btf::Btf)> {
    let m = p.lock.first().and_then(|l| syms.module_of(&l.symbol))?;
    btf::Btf::for_module(m).ok().map(|b| (m.to_owned(), b))
}

/// Detection from kallsyms and BTF, where the BTF of the module that has
/// the functions decides between flavours with the same symbols (Kara's
/// and Lustre's) when vmlinux's cannot.
pub(crate) fn detect_with_modules(
    syms: &profile::Kallsyms,
    btf: Option<&btf::Btf>,
) -> profile::Detection {
    use profile::{Detection, Profile};
    match profile::detect(syms, btf) {
        Detection::Ambiguous(names) => {
            match Profile::builtin(&names[0]).and_then(|p| module_btf(syms, &p)) {
                Some((_, mbtf)) => profile::detect(syms, Some(&mbtf)),
                None => Detection::Ambiguous(names),
            }
        }
        d => d,
    }
}

/// The detection line of a planned profile: `range locks: <how> <name><note>, offsets from ...; <queue order>`.
fn plan_line(plan: &profile::Plan, how: &str, note: &str) -> String {
    format!(
        "range locks: {how} {}{note}, offsets from {}; {}",
        plan.name,
        plan.offsets_from,
        plan.queue_order()
    )
}

/// Plans `p` with the BTF of the module that has its functions when that
/// module has BTF (saying so in `offsets_from`), else with vmlinux's.
pub(crate) fn plan_with_module_btf(
    p: &profile::Profile,
    syms: &profile::Kallsyms,
    btf: Option<&btf::Btf>,
) -> Result<profile::Plan, String> {
    let module_btf = module_btf(syms, p);
    let mut plan = p.plan(syms, module_btf.as_ref().map(|(_, b)| b).or(btf))?;
    if let Some((m, _)) = &module_btf
        && plan.offsets_from.starts_with("BTF")
    {
        plan.offsets_from = format!("{} (module {m})", plan.offsets_from);
    }
    Ok(plan)
}

/// A live tracing session: the loaded programs and their ring buffer.
/// Dropping it detaches every probe.
pub struct Session {
    // Kept alive: dropping `Ebpf` detaches the programs (see `finish`).
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    stage: PerCpuArray<MapData, rl_common::Staging>,
    /// Per-CPU batches arrive out of time order; see [`Reorder`].
    reorder: Reorder,
    /// Whether CPUs can be kicked to hand over their staged records.
    kicks: bool,
    last_kick: std::time::Instant,
    drops: PerCpuArray<MapData, u64>,
    last_drops: Vec<u64>,
    /// When the drop counters were last read (monotonic ns): drops seen
    /// at the next read happened after this.
    drops_read_at: u64,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The profile traced: "tracepoints", or a range-lock profile's name.
    pub profile: String,
    /// The range-lock flavour (`excl_fifo`/`rw`) of that profile.
    pub flavour: Option<String>,
    /// What range-lock detection found, for the user.
    pub detection: String,
    pub probes: Vec<ProbeReport>,
    /// Kernel stacks of ordering evidence, and the symbols to name them.
    stacks: Option<StackTraceMap<MapData>>,
    ksyms: Option<std::collections::BTreeMap<u64, String>>,
    /// Whether rltop mounted tracefs itself.
    pub mounted_tracefs: bool,
    /// What the probes can and cannot see here, one line each (windows,
    /// page size, page_add sizes).
    pub notes: Vec<String>,
    decode_errors: u64,
    /// Whether the range-lock profile fits this kernel's lock (None
    /// without one): a profile that does not is stopped.
    pub fit: Option<fit::Fit>,
    /// The page-cache lock probes (issue 14): the source used, and what
    /// `rltop probes` says about them.
    pub lock_source: flock::Source,
    pub lock_lines: Vec<String>,
    /// The session's kprobes, whose misses `lost_events` reads.
    kprobes: kprobes::Kprobes,
    /// Each attached program's `recursion_misses` at the last look.
    recursion: BTreeMap<&'static str, u64>,
    /// Hits the kernel missed so far, per probe (kprobe nmissed, program
    /// recursion misses), for the summary.
    pub missed_by_probe: BTreeMap<String, u64>,
    names: names::Names,
    /// The window in which every probe was attached (monotonic ns): from
    /// the end of `start` to the beginning of `finish`. Programs attach and
    /// detach one by one, so outside it some kinds are traced and others
    /// not: a request whose acquisition is not, which reads as a wait that
    /// never ends (a false deadlock when the recorder stops under load,
    /// seen with mmap_lock). Events outside it are left out, but names.
    window: (u64, u64),
    /// How many events were left out for that.
    pub trimmed: u64,
    /// Range-lock profiles of modules loaded while recording.
    modwatch: Option<modwatch::ModWatch>,
}

impl Session {
    /// Resolves layouts, loads and attaches the profile's probes.
    #[allow(clippy::too_many_lines)] // start-up in order: each step needs the ones before it
    pub fn start(opts: &Options) -> anyhow::Result<Session> {
        let specs = catalog::TRACEPOINTS;
        check_privileges("tracing")?;
        if EBPF_OBJECT.is_empty() {
            return Err(user_error(
                "this rltop was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it normally",
            ));
        }
        let (tracefs, mounted_tracefs) = tracefs::Tracefs::open().map_err(user_error)?;
        // Every kprobe of the session, made through tracefs (maxactive,
        // nmissed); see `kprobes`.
        let mut kp = kprobes::Kprobes::new(tracefs.root().to_path_buf());
        let btf = btf::Btf::from_kernel().ok();
        let mut resolved = catalog::resolve(specs, &tracefs, btf.as_ref());
        // The filesystem-operation probes (their own module).
        let mut fs_plan = {
            let dio_ready = specs
                .iter()
                .zip(&resolved.ready)
                .any(|(s, r)| s.program == "dio_begin" && r.is_ok());
            let kallsyms = std::fs::read_to_string("/proc/kallsyms").ok();
            fsops::resolve(
                &tracefs,
                btf.as_ref(),
                kallsyms.as_deref(),
                dio_ready,
                page_size(),
                &mut resolved.kernel,
            )
        };
        // File kprobes where the file tracepoints are missing (or under
        // profile kprobes, instead of them).
        let kprobes = profile::kprobes_available(tracefs.root());
        let syms = if kprobes {
            profile::Kallsyms::read().ok()
        } else {
            None
        };
        let prefer = opts.profile == "kprobes";
        if prefer && !kprobes && !opts.listing {
            return Err(user_error(
                "profile kprobes needs kprobes, which this kernel does not have (no kprobe PMU in \
                 /sys/bus/event_source/devices and no kprobe_events in tracefs); without --profile \
                 rltop runs its tracepoint probes",
            ));
        }
        let kfile_ready = {
            let tp_ready = |p: &str| {
                specs
                    .iter()
                    .zip(&resolved.ready)
                    .any(|(s, r)| s.program == p && r.is_ok())
                    || fs_plan.is_ready(p)
            };
            kfile::resolve(
                kprobes,
                syms.as_ref(),
                btf.as_ref(),
                prefer,
                &tp_ready,
                &mut resolved.kernel,
            )
        };
        if prefer {
            for (k, r) in kfile::KFILE.iter().zip(&kfile_ready) {
                if r.is_ok() {
                    for (s, sr) in specs.iter().zip(resolved.ready.iter_mut()) {
                        if k.instead_of.contains(&s.program) && sr.is_ok() {
                            *sr = Err(format!("replaced by {} (profile kprobes)", k.name()));
                        }
                    }
                    for (s, sr) in fsops::FSOPS.iter().zip(fs_plan.ready.iter_mut()) {
                        if k.instead_of.contains(&s.program) && sr.is_ok() {
                            *sr = Err(format!("replaced by {} (profile kprobes)", k.name()));
                        }
                    }
                }
            }
        }
        let (plan, detection, cannot_attach) =
            range_lock_plan(&opts.profile, opts.listing, &tracefs, btf.as_ref())?;
        // `tree` events read the inode's number and device (BTF).
        let mut plan = plan;
        let mut detection = detection;
        if let Some(p) = plan.as_mut()
            && p.layout.tree_inode != rl_common::TREE_INODE_NONE
        {
            let mut k = resolved.kernel;
            let ok = btf.as_ref().is_some_and(|b| {
                [
                    ("inode", "i_ino", &mut k.inode_ino),
                    ("inode", "i_sb", &mut k.inode_sb),
                    ("super_block", "s_dev", &mut k.sb_dev),
                ]
                .into_iter()
                .all(|(s, m, slot)| b.member_offset(s, m).map(|o| *slot = o).is_ok())
            });
            if ok {
                resolved.kernel = k;
            } else {
                p.layout.tree_inode = rl_common::TREE_INODE_NONE;
                detection
                    .push_str("; no tree events: kernel BTF lacks inode or super_block members");
            }
        }
        // The page-cache lock probes read kallsyms for the rwsem functions
        // and the lock text, whether or not kprobes exist (fentry needs none).
        let all_syms = profile::Kallsyms::read().ok();
        let mut fplan = flock::Plan::resolve(
            &opts.lock_source,
            &tracefs,
            btf.as_ref(),
            all_syms.as_ref(),
            kprobes,
        )?;
        fplan.fs_learners_where(|p| fs_plan.is_ready(p));
        if resolved.ready.iter().all(Result::is_err)
            && fs_plan.ready.iter().all(Result::is_err)
            && plan.is_none()
            && kfile_ready.iter().all(Result::is_err)
        {
            return Err(user_error(
                "no probe can attach on this kernel; `rltop probes` lists what each one lacks",
            ));
        }

        // Batch per CPU only when idle CPUs can be kicked to hand theirs over.
        let kick_ready = specs
            .iter()
            .zip(&resolved.ready)
            .any(|(s, r)| s.program == "flush_kick" && r.is_ok());
        let batching = Batching {
            len: if kick_ready {
                rl_common::BATCH_LEN as u32
            } else {
                1
            },
            _pad: 0,
            flush_ns: BATCH_FLUSH.as_nanos() as u64,
        };

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
            .override_global("BATCHING", &batching, true)
            .override_global("FSOPS", &fs_plan.layout, true)
            .override_global(
                "RL",
                &plan.as_ref().map_or(RangeLockLayout::NONE, |p| p.layout),
                true,
            )
            .override_global("FL", &fplan.layout, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;
        let logger = aya_log::EbpfLogger::init(&mut ebpf).ok();
        if let Some(p) = &plan {
            write_rl_layout(&mut ebpf, &p.layout)?;
        }
        // Profiles whose module loads later (or unloads): see `modwatch`.
        let modwatch = (!opts.listing
            && kp.available()
            && matches!(opts.profile.as_str(), "auto" | "kprobes"))
        .then(|| {
            let module = plan
                .as_ref()
                .zip(syms.as_ref())
                .and_then(|(p, s)| p.module(s).map(str::to_owned));
            (plan.is_none() || module.is_some()).then(|| modwatch::ModWatch::new(module))
        })
        .flatten();

        if !opts.pids.is_empty() {
            let mut pids: aya::maps::HashMap<_, u32, u8> =
                aya::maps::HashMap::try_from(ebpf.map_mut("PIDS").context("PIDS map")?)?;
            for &pid in &opts.pids {
                pids.insert(pid, 1, 0).context("filling the pid filter")?;
            }
        }

        // The BTF-typed page-cache add first: where it attaches, it stands
        // in for the formatted program and the page-add learner.
        let attach_status = |ebpf: &mut Ebpf, spec: &ProbeSpec| match attach(ebpf, spec) {
            Ok(insns) => Status::Attached {
                verified_insns: insns,
            },
            Err(e) => Status::Failed(format!("{e:#}")),
        };
        let mut page_add_btf = None;
        for (spec, ready) in specs.iter().zip(&resolved.ready) {
            if spec.program == catalog::PAGE_ADD_BTF && ready.is_ok() {
                page_add_btf = Some(attach_status(&mut ebpf, spec));
            }
        }
        let btf_adds = matches!(page_add_btf, Some(Status::Attached { .. }));
        if btf_adds {
            fplan.page_add_learned_by_its_probe(catalog::PAGE_ADD_BTF_USED);
        }
        let learners = flock::attach_learners(&mut ebpf, &fplan);
        let mut probes = Vec::with_capacity(specs.len());
        for (spec, ready) in specs.iter().zip(resolved.ready) {
            let status = match ready {
                Err(why) => Status::Unavailable(why),
                Ok(()) if spec.program == catalog::PAGE_ADD_BTF => {
                    page_add_btf.take().expect("attached above")
                }
                Ok(()) if btf_adds && spec.program == catalog::PAGE_ADD_FORMATTED => {
                    Status::Unavailable(catalog::PAGE_ADD_BTF_USED.into())
                }
                Ok(()) => attach_status(&mut ebpf, spec),
            };
            probes.push(ProbeReport {
                name: spec.name(),
                program: spec.program,
                status,
                covers: None,
            });
        }
        probes.extend(fsops::attach(&mut ebpf, &fs_plan));
        let mut notes = std::mem::take(&mut fs_plan.notes);
        if resolved.tp.add_order == rl_common::NO_FIELD
            && probes.iter().any(|p| {
                p.program == catalog::PAGE_ADD_FORMATTED
                    && matches!(p.status, Status::Attached { .. })
            })
        {
            notes.push(
                "filemap:mm_filemap_add_to_page_cache has no order field on this kernel: the size of \
                 each page_add is unknown (marked so in the trace)"
                    .into(),
            );
        }
        for (k, ready) in kfile::KFILE.iter().zip(kfile_ready) {
            let status = match ready {
                Err(why) if opts.listing && why == kfile::NO_KPROBES => {
                    match load_kprobe(&mut ebpf, k.program) {
                        Ok(Some(n)) => Status::Unavailable(format!(
                            "{why} (program verified here: {n} instructions)"
                        )),
                        Ok(None) => Status::Unavailable(why),
                        Err(e) => Status::Failed(format!("{e:#}")),
                    }
                }
                Err(why) => Status::Unavailable(why),
                Ok(()) => match attach_kprobe(
                    &mut ebpf,
                    &mut kp,
                    &profile::KprobeAttach {
                        program: k.program,
                        symbol: k.symbol.to_string(),
                        ret: k.ret,
                    },
                ) {
                    Ok(insns) => Status::Attached {
                        verified_insns: insns,
                    },
                    Err(e) => Status::Failed(format!("{e:#}")),
                },
            };
            probes.push(ProbeReport {
                name: k.name(),
                program: k.program,
                status,
                covers: None,
            });
        }
        if let Some(plan) = &plan {
            for k in &plan.probes {
                let status = match &cannot_attach {
                    Some(why) => match load_kprobe(&mut ebpf, k.program) {
                        Ok(Some(n)) => Status::Unavailable(format!(
                            "{} (program verified here: {n} instructions)",
                            short_reason(why, &k.symbol)
                        )),
                        Ok(None) => Status::Unavailable(short_reason(why, &k.symbol)),
                        Err(e) => Status::Failed(format!("{e:#}")),
                    },
                    None => attach_plan_probe(&mut ebpf, &mut kp, k, &probes),
                };
                probes.push(ProbeReport {
                    name: kprobe_name(k, kp.available()),
                    program: k.program,
                    status,
                    covers: None,
                });
            }
        }

        if let Some(plan) = &plan {
            detection = detection.replace(&plan.queue_order(), &queue_order(plan, &probes));
        }
        let flive = flock::attach(
            &mut ebpf,
            &fplan,
            opts.listing,
            plan.as_ref().is_some_and(|p| p.layout.order_check != 0),
            learners,
            &mut probes,
            &mut kp,
        );
        if let Some(why) = &flive.refused
            && !opts.listing
        {
            return Err(user_error(why.clone()));
        }

        if let Some(n) = uncounted_skips_note(&crate::cmd::record::uname().0, &probes) {
            notes.push(n);
        }

        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map")?)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("DROPS map")?)?;
        let stage = PerCpuArray::try_from(ebpf.take_map("STAGE").context("STAGE map")?)?;
        let stacks = ebpf
            .take_map("STACKS")
            .and_then(|m| StackTraceMap::try_from(m).ok());
        let kicks = probes
            .iter()
            .any(|p| p.program == "flush_kick" && matches!(p.status, Status::Attached { .. }));
        let ncpus = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .context("counting CPUs")?;
        Ok(Session {
            ebpf: Some(ebpf),
            ring,
            stage,
            reorder: Reorder::default(),
            kicks,
            last_kick: std::time::Instant::now(),
            drops,
            last_drops: vec![0; ncpus],
            // Programs were attached just before: nothing dropped earlier.
            drops_read_at: monotonic_ns(),
            logger,
            profile: plan.as_ref().map_or_else(
                || if prefer { "kprobes" } else { "tracepoints" }.to_string(),
                |p| p.name.clone(),
            ),
            flavour: plan.as_ref().map(|p| p.flavour.clone()),
            detection,
            probes,
            stacks,
            ksyms: None,
            mounted_tracefs,
            notes,
            decode_errors: 0,
            fit: plan.as_ref().map(|p| fit::Fit::new(&p.name)),
            lock_source: flive.source,
            lock_lines: flive.lines,
            kprobes: kp,
            recursion: BTreeMap::new(),
            missed_by_probe: BTreeMap::new(),
            names: names::Names::new(),
            window: (monotonic_ns(), u64::MAX),
            trimmed: 0,
            modwatch,
        })
    }

    /// Starts the kernel's per-program run-time accounting (it costs a
    /// clock read per run, so only on request); accounting stops when the
    /// returned fd is dropped.
    pub fn enable_cost_accounting(&self) -> anyhow::Result<std::os::fd::OwnedFd> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")
    }

    /// For each attached probe: runs and mean nanoseconds per run, as the
    /// kernel accounted them since [`Session::enable_cost_accounting`].
    pub fn costs(&self) -> Vec<(String, u64, f64)> {
        // The kernel counts per program, and one program may serve several
        // probes (the file learners): one line per program, so that no run
        // is counted twice.
        let mut by_program: Vec<(&str, String, usize)> = Vec::new();
        for p in self
            .probes
            .iter()
            .filter(|p| matches!(p.status, Status::Attached { .. }))
        {
            match by_program.iter_mut().find(|(prog, ..)| *prog == p.program) {
                Some((_, _, more)) => *more += 1,
                None => by_program.push((p.program, p.name.clone(), 0)),
            }
        }
        by_program
            .into_iter()
            .filter_map(|(program, name, more)| {
                let info = self.ebpf.as_ref()?.program(program)?.info().ok()?;
                let n = info.run_count();
                let mean = if n > 0 {
                    info.run_time().as_nanos() as f64 / n as f64
                } else {
                    0.0
                };
                let name = if more > 0 {
                    format!("{name} and {more} more ({program})")
                } else {
                    name
                };
                Some((name, n, mean))
            })
            .collect()
    }

    /// Names of the attached probes.
    pub fn attached(&self) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| matches!(p.status, Status::Attached { .. }))
            .map(|p| p.name.clone())
            .collect()
    }

    /// One line per probe that is not attached, for a start-up warning
    /// (a tracepoint whose kprobe stand-in attached is not one).
    pub fn not_attached(&self) -> Vec<String> {
        missing_lines(&self.probes)
    }

    /// Waits up to `timeout` for records, then hands `out`, in time order,
    /// every event that can no longer be preceded by one still staged on a
    /// CPU. Returns how many events were delivered.
    pub fn poll(
        &mut self,
        timeout: Duration,
        out: &mut impl FnMut(Event),
    ) -> anyhow::Result<usize> {
        let mut fds = [
            libc::pollfd {
                fd: self.ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
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
        for line in self.watch_modules() {
            log::warn!("{line}");
        }
        self.read_ring();
        let watermark = if !self.kicks {
            // Every record went straight to the ring, in nearly time order.
            u64::MAX
        } else if self.last_kick.elapsed() >= KICK_EVERY {
            // Everything staged before `start` is in the ring once every CPU
            // has been kicked and the ring read again.
            let start = monotonic_ns();
            self.kick_all_cpus();
            self.read_ring();
            self.last_kick = std::time::Instant::now();
            start
        } else {
            self.reorder.watermark
        };
        Ok(self.release(watermark, out))
    }

    /// Hands `out` the reordered events up to `watermark` that fall in
    /// [`Session::window`], named and symbolized.
    fn release(&mut self, watermark: u64, out: &mut impl FnMut(Event)) -> usize {
        let (stacks, ksyms, names) = (&self.stacks, &mut self.ksyms, &mut self.names);
        let fit = &mut self.fit;
        let (from, until) = self.window;
        let trimmed = &mut self.trimmed;
        let mut n = 0;
        self.reorder.release(watermark, &mut |mut ev| {
            // Names and the command's forks are kept: each is sent once,
            // and says nothing about locks.
            let name = matches!(
                ev.body,
                Body::Task { .. } | Body::Tree { .. } | Body::File { .. } | Body::Fork { .. }
            );
            if (ev.ts < from || ev.ts > until) && !name {
                *trimmed += 1;
                return;
            }
            if let Some(fit) = fit.as_mut() {
                match fit.keep(&ev) {
                    (true, _) => {}
                    (false, Some(why)) => {
                        log::error!("{why}");
                        return;
                    }
                    (false, None) => return,
                }
            }
            n += 1;
            symbolize(stacks, ksyms, &mut ev);
            names.fix(&mut ev, stacks, ksyms);
            out(ev)
        });
        n
    }

    /// Stops tracing: detaches every probe, collects what the CPUs still
    /// had staged and what is in the ring, and hands it all to `out` in
    /// time order.
    pub fn finish(&mut self, out: &mut impl FnMut(Event)) -> anyhow::Result<usize> {
        // Detach first: afterwards nothing writes to the staging areas.
        self.window.1 = monotonic_ns();
        drop(self.ebpf.take());
        self.read_ring();
        let staged = self
            .stage
            .get(&0, 0)
            .context("reading the staged records")?;
        for cpu_stage in staged.iter() {
            // A staged batch has the layout of a ring entry: decode it as one.
            // SAFETY: Batch is #[repr(C)] plain integers without padding;
            // viewing it as its bytes is sound.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&cpu_stage.batch as *const rl_common::Batch).cast::<u8>(),
                    rl_common::BATCH_SIZE,
                )
            };
            push_entry(&mut self.reorder, &mut self.decode_errors, bytes);
        }
        Ok(self.release(u64::MAX, out))
    }

    /// Moves every ring entry into the reorder buffer.
    fn read_ring(&mut self) {
        while let Some(item) = self.ring.next() {
            push_entry(&mut self.reorder, &mut self.decode_errors, &item);
        }
    }

    /// Runs `flush_kick` on every CPU: this thread visits each CPU and makes
    /// a `getppid` there, whose tracepoint hands that CPU's staged records
    /// to the ring. A CPU we may not run on keeps its records until its
    /// next event or the end.
    fn kick_all_cpus(&mut self) {
        // Only CPUs with staged records need a visit. A record whose
        // timestamp was taken before the caller's watermark is either
        // counted here or already in the ring.
        let staged: Vec<bool> = match self.stage.get(&0, 0) {
            Ok(v) => v.iter().map(|s| s.batch.n > 0).collect(),
            Err(_) => vec![true; self.last_drops.len()],
        };
        // SAFETY: cpu_set_t is plain bits; the calls get valid pointers.
        unsafe {
            let mut saved: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut saved) != 0 {
                return;
            }
            for cpu in 0..self.last_drops.len() {
                if !libc::CPU_ISSET(cpu, &saved) || !staged.get(cpu).copied().unwrap_or(true) {
                    continue;
                }
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) == 0 {
                    libc::syscall(libc::SYS_getppid);
                }
            }
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &saved);
        }
    }

    /// Queues a `lost` event for each CPU whose drop counter grew since the
    /// last call, stamped with the current monotonic time and, as `since`,
    /// the time of the previous read (the drops fell between: the checker
    /// treats the whole window as a gap, so a finding made from events
    /// released before this `lost` event is still judged uncertain); `poll` and
    /// `finish` deliver it in order. Returns how many were lost.
    pub fn lost_events(&mut self) -> anyhow::Result<u64> {
        let values = self.drops.get(&0, 0).context("reading drop counters")?;
        let now = monotonic_ns();
        let since = std::mem::replace(&mut self.drops_read_at, now);
        let mut total = 0;
        for (cpu, (&v, last)) in values.iter().zip(self.last_drops.iter_mut()).enumerate() {
            if v > *last {
                let ev = Event {
                    ts: now,
                    tid: 0,
                    pid: 0,
                    cpu: Some(cpu as u32),
                    body: Body::Lost {
                        count: v - *last,
                        cpu: cpu as u32,
                        since: Some(since),
                        probe: None,
                    },
                };
                self.reorder.push(ev);
                total += v - *last;
                *last = v;
            }
        }
        // Hits the kernel missed: kprobes' nmissed (a return with no free
        // instance, a probe hit while another kprobe ran on that CPU) and
        // each program's recursion misses (it was not run because a BPF
        // program was already running on that CPU). Not one CPU's drops:
        // `cpu` is u32::MAX, and `probe` names the probe.
        let mut missed = self.kprobes.missed();
        missed.extend(self.recursion_misses());
        for (probe, count) in missed {
            *self.missed_by_probe.entry(probe.clone()).or_default() += count;
            self.reorder.push(Event {
                ts: now,
                tid: 0,
                pid: 0,
                cpu: Some(u32::MAX),
                body: Body::Lost {
                    count,
                    cpu: u32::MAX,
                    since: Some(since),
                    probe: Some(probe),
                },
            });
            total += count;
        }
        Ok(total)
    }
}

impl Session {
    /// New recursion misses of each attached program since the last call,
    /// as ("program <name>", count), from the kernel's `recursion_misses`
    /// (/proc/self/fdinfo of the program, 5.12+).
    fn recursion_misses(&mut self) -> Vec<(String, u64)> {
        let Some(ebpf) = self.ebpf.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut programs: Vec<&'static str> = self
            .probes
            .iter()
            .filter(|p| matches!(p.status, Status::Attached { .. }))
            .map(|p| p.program)
            .collect();
        programs.sort_unstable();
        programs.dedup();
        for program in programs {
            let Some(fd) = ebpf.program(program).and_then(|p| p.fd().ok()) else {
                continue;
            };
            let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
            let Some(n) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| fdinfo_recursion_misses(&t))
            else {
                continue;
            };
            let last = self.recursion.entry(program).or_insert(0);
            if n > *last {
                out.push((format!("program {program}"), n - *last));
                *last = n;
            }
        }
        out
    }
}

/// The `recursion_misses:` line of a BPF program's fdinfo.
fn fdinfo_recursion_misses(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("recursion_misses:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Decodes one ring entry (a batch or a single record) into `reorder`.
fn push_entry(reorder: &mut Reorder, decode_errors: &mut u64, bytes: &[u8]) {
    crate::events::raw::decode_entry(bytes, &mut |r| match r {
        Ok(ev) => reorder.push(ev),
        Err(e) => {
            *decode_errors += 1;
            if *decode_errors == 1 {
                log::error!(
                    "undecodable ring-buffer record ({e}); rltop's kernel and user halves disagree"
                );
            }
        }
    });
}

/// How often idle CPUs are kicked to hand over staged records; this bounds
/// how late an event is delivered.
const KICK_EVERY: Duration = Duration::from_millis(50);
/// A staged batch older than this goes to the ring at the CPU's next record.
const BATCH_FLUSH: Duration = Duration::from_millis(5);

/// Puts the events of per-CPU batches back in time order: events wait here
/// until no CPU can still hold an older one (the watermark), then leave
/// sorted by timestamp (ties keep arrival order).
///
/// Each CPU's events arrive nearly sorted (its batches are in order; only a
/// program interrupting another writes around its staging), so they are
/// kept in one sorted run per CPU, appended at the back, and released by
/// merging the runs' heads: no per-event heap work, no moving events
/// around (a binary heap of events cost a quarter of the recorder's CPU).
#[derive(Default)]
struct Reorder {
    /// Sorted runs by CPU (the last one for events without a CPU).
    runs: Vec<VecDeque<Pending>>,
    seq: u64,
    watermark: u64,
}

struct Pending {
    ts: u64,
    seq: u64,
    ev: Event,
}

impl Pending {
    fn key(&self) -> (u64, u64) {
        (self.ts, self.seq)
    }
}

impl Reorder {
    fn push(&mut self, ev: Event) {
        self.seq += 1;
        // Run 0: events of no one CPU (no cpu, or u32::MAX: a probe's misses).
        let run = match ev.cpu {
            Some(c) if c != u32::MAX => c as usize + 1,
            _ => 0,
        };
        if self.runs.len() <= run {
            self.runs.resize_with(run + 1, VecDeque::new);
        }
        let run = &mut self.runs[run];
        let p = Pending {
            ts: ev.ts,
            seq: self.seq,
            ev,
        };
        if run.back().is_none_or(|b| b.ts <= p.ts) {
            run.push_back(p);
        } else {
            // Rare: an event older than ones already here (a nested
            // program's record, a late `lost`). Its place, from the back.
            let at = run.partition_point(|q| q.key() <= p.key());
            run.insert(at, p);
        }
    }

    /// Hands over, in order, every event older than `watermark`.
    fn release(&mut self, watermark: u64, out: &mut impl FnMut(Event)) -> usize {
        self.watermark = self.watermark.max(watermark);
        let mut n = 0;
        loop {
            let mut best: Option<(usize, (u64, u64))> = None;
            for (i, run) in self.runs.iter().enumerate() {
                if let Some(h) = run.front()
                    && h.ts < self.watermark
                    && best.is_none_or(|b| h.key() < b.1)
                {
                    best = Some((i, h.key()));
                }
            }
            let Some((i, _)) = best else {
                return n;
            };
            out(self.runs[i].pop_front().expect("has a head").ev);
            n += 1;
        }
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
        Attach::Btf => {
            let btf = aya::Btf::from_sys_fs().context("kernel BTF")?;
            let p: &mut aya::programs::BtfTracePoint = prog.try_into()?;
            p.load(spec.event, &btf).map_err(verifier_error)?;
            p.attach()?;
        }
    }
    let prog = ebpf.program(spec.program).expect("just attached");
    Ok(prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count()))
}

/// Why one probe of a profile that cannot attach is not attached.
fn short_reason(why: &str, symbol: &str) -> String {
    if why.contains("needs kprobes") {
        "this kernel has no kprobes".into()
    } else if why.contains(&format!(" {symbol},")) || why.contains(&format!(" {symbol} in")) {
        format!("no {symbol} in /proc/kallsyms")
    } else {
        why.to_string()
    }
}

/// Loads a kprobe program once (the verifier checks it); its verified
/// instruction count.
fn load_kprobe(ebpf: &mut Ebpf, program: &str) -> anyhow::Result<Option<u32>> {
    let prog = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} is not in the eBPF object"))?;
    let p: &mut KProbe = prog.try_into()?;
    if p.fd().is_err() {
        p.load().map_err(verifier_error)?;
    }
    Ok(ebpf
        .program(program)
        .and_then(|p| p.info().ok())
        .and_then(|i| i.verified_instruction_count()))
}

/// Loads (once) a kprobe program and attaches it to one more symbol:
/// through tracefs where the kernel has `kprobe_events` (return probes
/// with [`kprobes::MAXACTIVE`], misses counted), else through the perf
/// kprobe PMU (aya), whose return probes keep the kernel's default
/// maxactive.
fn attach_kprobe(
    ebpf: &mut Ebpf,
    kp: &mut kprobes::Kprobes,
    k: &profile::KprobeAttach,
) -> anyhow::Result<Option<u32>> {
    load_kprobe(ebpf, k.program)?;
    let prog = ebpf
        .program_mut(k.program)
        .with_context(|| format!("program {} is not in the eBPF object", k.program))?;
    let p: &mut KProbe = prog.try_into()?;
    if kp.available() {
        let fd = p.fd()?.as_fd().try_clone_to_owned()?;
        kp.attach(&k.symbol, k.ret, &fd)?;
    } else {
        p.attach(&k.symbol, 0).map_err(|e| match e {
            aya::programs::ProgramError::SyscallError(s)
                if s.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                anyhow::anyhow!("symbol {} is not in this kernel", k.symbol)
            }
            other => other.into(),
        })?;
    }
    let prog = ebpf.program(k.program).expect("just attached");
    Ok(prog
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count()))
}

/// Attaches one of a plan's kprobes, unless it is the fallback for a
/// queue insertion that `earlier` (the plan's reports so far) already
/// probes.
pub(crate) fn attach_plan_probe(
    ebpf: &mut Ebpf,
    kp: &mut kprobes::Kprobes,
    k: &profile::KprobeAttach,
    earlier: &[ProbeReport],
) -> Status {
    match insertion_probed(k, earlier) {
        Some(why) => Status::Unavailable(why),
        None => match attach_kprobe(ebpf, kp, k) {
            Ok(insns) => Status::Attached {
                verified_insns: insns,
            },
            Err(e) => Status::Failed(format!("{e:#}")),
        },
    }
}

/// Why insertion candidate `k` is not attached: another one already is
/// (one is enough; both would report each insertion twice).
fn insertion_probed(k: &profile::KprobeAttach, probes: &[ProbeReport]) -> Option<String> {
    if k.program != "rl_insert" {
        return None;
    }
    probes
        .iter()
        .find(|p| p.program == "rl_insert" && matches!(p.status, Status::Attached { .. }))
        .map(|p| format!("not needed: the insertion is probed at {}", p.name))
}

/// How the queue order is known once the plan's probes were attached.
fn queue_order(plan: &profile::Plan, probes: &[ProbeReport]) -> String {
    let tried: Vec<&ProbeReport> = probes.iter().filter(|p| p.program == "rl_insert").collect();
    if tried.is_empty() || plan.layout.seq_off != rl_common::NO_FIELD {
        return plan.queue_order();
    }
    if let Some(p) = tried
        .iter()
        .find(|p| matches!(p.status, Status::Attached { .. }))
    {
        return profile::queue_order_from(&p.name);
    }
    let why: Vec<String> = tried
        .iter()
        .map(|p| match &p.status {
            Status::Failed(w) | Status::Unavailable(w) => format!("{}: {w}", p.name),
            Status::Attached { .. } => p.name.clone(),
        })
        .collect();
    profile::queue_order_not_observed(&why.join("; "))
}

/// How `probes` names a range-lock probe.
fn kprobe_name(k: &profile::KprobeAttach, tracefs_kprobes: bool) -> String {
    match (k.ret, tracefs_kprobes) {
        (true, true) => format!("kretprobe:{} (maxactive {})", k.symbol, kprobes::MAXACTIVE),
        (true, false) => format!("kretprobe:{} (default maxactive)", k.symbol),
        (false, _) => format!("kprobe:{}", k.symbol),
    }
}

/// Writes a profile's layout where the range-lock programs read it (the
/// `RL_LAYOUT` map), before its probes attach.
fn write_rl_layout(ebpf: &mut Ebpf, layout: &RangeLockLayout) -> anyhow::Result<()> {
    let mut a: aya::maps::Array<_, RangeLockLayout> =
        aya::maps::Array::try_from(ebpf.map_mut("RL_LAYOUT").context("RL_LAYOUT map")?)?;
    a.set(0, *layout, 0)
        .context("writing the range-lock layout")?;
    Ok(())
}

/// Replaces the stack id of an `ordering_evidence` event by its frames,
/// named from /proc/kallsyms (`sym+0xoff;...`, innermost first).
fn symbolize(
    stacks: &Option<StackTraceMap<MapData>>,
    ksyms: &mut Option<std::collections::BTreeMap<u64, String>>,
    ev: &mut Event,
) {
    let Body::OrderingEvidence { stack, .. } = &mut ev.body else {
        return;
    };
    let Some(id) = stack
        .strip_prefix(crate::events::raw::STACK_ID_PREFIX)
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return;
    };
    let (Some(map), Ok(id)) = (stacks, u32::try_from(id)) else {
        *stack = format!("(no stack: error {id})");
        return;
    };
    let Ok(trace) = map.get(&id, 0) else {
        *stack = format!("(stack {id} no longer in the map)");
        return;
    };
    let syms = ksyms.get_or_insert_with(|| aya::util::kernel_symbols().unwrap_or_default());
    *stack = names::stack_text(trace.frames().iter().map(|f| names::symbol(syms, f.ip)));
}

/// Keeps the verifier's verdict — the last lines before its statistics —
/// and drops the rest of the log (set RLTOP_VERIFIER_LOG=1 for all of it).
fn verifier_error(e: aya::programs::ProgramError) -> anyhow::Error {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            if std::env::var_os("RLTOP_VERIFIER_LOG").is_some() {
                eprintln!("{log}");
            }
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("verification time"))
                .collect();
            let verdict = lines
                .iter()
                .rev()
                .take(2)
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join(" / ");
            anyhow::anyhow!("the verifier rejected it ({io_error}): {verdict}")
        }
        other => other.into(),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones use
/// the memory cgroup. Raising it may fail without CAP_SYS_RESOURCE, which
/// matters only on old kernels.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        log::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels from 5.11");
    }
}

pub use rltop_core::clock::monotonic_ns;

/// This kernel's page size in bytes (`sysconf(_SC_PAGESIZE)`), 4096 if
/// the call fails.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// CLOCK_REALTIME in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Before 6.7, `trace_call_bpf()` skips a kprobe's program without counting
/// it anywhere when another program holds the CPU's `bpf_prog_active`: a
/// formatted tracepoint's program does, and a softirq taken on its
/// interrupt exit may run a range unlock. Every such program rltop can
/// make raw is raw; the syscall entries cannot be (syscalls have no raw
/// tracepoint of their own). A note naming them, where range-lock kprobes
/// run beside them on such a kernel.
fn uncounted_skips_note(release: &str, probes: &[ProbeReport]) -> Option<String> {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next()?, v.next().unwrap_or(0));
    if (major, minor) >= (6, 7) {
        return None;
    }
    let attached = |p: &&ProbeReport| matches!(p.status, Status::Attached { .. });
    // The range-lock programs (rl-ebpf/src/rangelock.rs) are all `rl_*`.
    let range_kprobes = probes
        .iter()
        .filter(attached)
        .any(|p| p.program.starts_with("rl_"));
    let formatted: Vec<&str> = probes
        .iter()
        .filter(attached)
        .map(|p| p.name.as_str())
        .filter(|n| !n.contains(" (raw") && !n.contains(" (tp_btf)"))
        .filter(|n| !n.starts_with("kprobe:") && !n.starts_with("kretprobe:"))
        .filter(|n| !n.starts_with("fentry:") && !n.starts_with("fexit:"))
        .collect();
    if !range_kprobes || formatted.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = formatted;
    names.sort_unstable();
    names.dedup();
    Some(format!(
        "uncounted misses: before 6.7 a range-lock kprobe that fires while a formatted \
         tracepoint's program runs on the same CPU (a softirq unlock on that program's \
         interrupt exit) is skipped and counted nowhere; formatted here: {}",
        names.join(", ")
    ))
}

/// One line per probe that is not attached and whose events nothing else
/// records, for a start-up warning. Not warned about: a file kprobe whose
/// tracepoint attached, a tracepoint program whose kprobe stand-in
/// attached (6.1's `filemap_fault` kprobe for the fault tracepoint it
/// lacks), and one of the two page-cache add programs while the other one
/// is attached.
fn missing_lines(probes: &[ProbeReport]) -> Vec<String> {
    let attached = |program: &str| {
        probes
            .iter()
            .any(|p| p.program == program && matches!(p.status, Status::Attached { .. }))
    };
    let stood_in = |program: &str| {
        kfile::KFILE
            .iter()
            .any(|k| k.instead_of.contains(&program) && attached(k.program))
    };
    let formatted_adds = attached(catalog::PAGE_ADD_FORMATTED);
    probes
        .iter()
        .filter_map(|p| match &p.status {
            Status::Attached { .. } => None,
            _ if p.program == catalog::PAGE_ADD_BTF && formatted_adds => None,
            _ if stood_in(p.program) => None,
            Status::Unavailable(why)
                if why == kfile::TRACEPOINT_USED || why == catalog::PAGE_ADD_BTF_USED =>
            {
                None
            }
            Status::Unavailable(why) | Status::Failed(why) => Some(format!("{}: {why}", p.name)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_before_6_7_name_the_formatted_programs_beside_range_kprobes() {
        let attached = || Status::Attached {
            verified_insns: None,
        };
        let probes = vec![
            probe(
                "kretprobe:range_lock (maxactive 4096)",
                "rl_lock_ret",
                attached(),
            ),
            probe(
                "lock:contention_begin (raw)",
                "contention_begin",
                attached(),
            ),
            probe(
                "syscalls:sys_enter_fallocate",
                "fs_falloc_enter",
                attached(),
            ),
            probe("syscalls:sys_enter_fallocate", "learn_falloc", attached()),
            probe(
                "syscalls:sys_enter_ioctl",
                "fs_ioctl_enter",
                Status::Unavailable("x".into()),
            ),
        ];
        let n = uncounted_skips_note("6.1.0-57-amd64", &probes).unwrap();
        assert!(
            n.ends_with("formatted here: syscalls:sys_enter_fallocate"),
            "{n}"
        );
        assert_eq!(uncounted_skips_note("6.7.0", &probes), None);
        assert_eq!(uncounted_skips_note("6.18.44-fc-v1300", &probes), None);
        // No range-lock kprobes: nothing they could miss.
        assert_eq!(uncounted_skips_note("6.1.0", &probes[1..]), None);
    }

    fn probe(name: &str, program: &'static str, status: Status) -> ProbeReport {
        ProbeReport {
            name: name.into(),
            program,
            status,
            covers: None,
        }
    }

    #[test]
    fn a_tracepoint_whose_kprobe_stands_in_draws_no_warning() {
        let on = || Status::Attached {
            verified_insns: None,
        };
        let lacking = || Status::Unavailable("tracepoint not in this kernel".into());
        // 6.1: no mm_filemap_fault tracepoint, the filemap_fault kprobe
        // attached in its place; no DIO tracepoints and no kprobe either.
        let probes = [
            probe(
                "filemap:mm_filemap_fault (tp_btf)",
                "filemap_fault",
                lacking(),
            ),
            probe("kprobe:filemap_fault", "kfault", on()),
            probe("iomap:iomap_dio_rw_begin (tp_btf)", "dio_begin", lacking()),
            probe(
                "kprobe:iomap_dio_rw",
                "kdio_begin",
                Status::Failed("attach: EINVAL".into()),
            ),
        ];
        assert_eq!(
            missing_lines(&probes),
            [
                "iomap:iomap_dio_rw_begin (tp_btf): tracepoint not in this kernel",
                "kprobe:iomap_dio_rw: attach: EINVAL",
            ]
        );
        // Without its stand-in, the fault tracepoint is warned about.
        assert_eq!(
            missing_lines(&probes[..1]),
            ["filemap:mm_filemap_fault (tp_btf): tracepoint not in this kernel"]
        );
    }

    fn ev(ts: u64, tid: u32) -> Event {
        Event {
            ts,
            tid,
            pid: tid,
            cpu: None,
            body: Body::Exit,
        }
    }

    #[test]
    fn reorder_releases_in_time_order_up_to_the_watermark() {
        let mut r = Reorder::default();
        // CPU 1's batch arrives before CPU 0's older one.
        for (ts, tid) in [(30, 1), (40, 1), (10, 0), (20, 0), (30, 0)] {
            r.push(ev(ts, tid));
        }
        let mut out = Vec::new();
        assert_eq!(r.release(31, &mut |e| out.push((e.ts, e.tid))), 4);
        // Equal timestamps keep arrival order.
        assert_eq!(out, vec![(10, 0), (20, 0), (30, 1), (30, 0)]);
        // The watermark never goes back; what is left leaves at the end.
        assert_eq!(r.release(5, &mut |e| out.push((e.ts, e.tid))), 0);
        r.push(ev(35, 2));
        assert_eq!(r.release(u64::MAX, &mut |e| out.push((e.ts, e.tid))), 2);
        assert_eq!(&out[4..], &[(35, 2), (40, 1)]);
    }

    #[test]
    fn a_probes_misses_are_reordered_without_a_run_per_cpu_number() {
        let mut r = Reorder::default();
        let mut lost = ev(20, 0);
        lost.cpu = Some(u32::MAX);
        r.push(ev(10, 1));
        r.push(lost);
        assert!(r.runs.len() <= 2, "{} runs", r.runs.len());
        let mut out = Vec::new();
        assert_eq!(r.release(u64::MAX, &mut |e| out.push((e.ts, e.cpu))), 2);
        assert_eq!(out, [(10, None), (20, Some(u32::MAX))]);
    }

    proptest::proptest! {
        /// Whatever the arrival order, CPUs and watermarks, the events leave
        /// sorted by (timestamp, arrival), each exactly once, and none at or
        /// past the watermark of its release.
        #[test]
        fn reorder_is_a_stable_sort_by_time(
            evs in proptest::collection::vec((0u64..50, proptest::option::of(0u32..4)), 0..200),
            marks in proptest::collection::vec(0u64..60, 0..6),
        ) {
            let mut r = Reorder::default();
            let mut out = Vec::new();
            let mut all = Vec::new();
            let step = evs.len() / (marks.len() + 1) + 1;
            let mut marks = marks.into_iter();
            for (i, &(ts, cpu)) in evs.iter().enumerate() {
                let mut e = ev(ts, i as u32);
                e.cpu = cpu;
                r.push(e);
                all.push((ts, i as u32));
                if (i + 1) % step == 0 && let Some(w) = marks.next() {
                    let before = out.len();
                    r.release(w, &mut |e| out.push((e.ts, e.tid)));
                    let wm = r.watermark;
                    proptest::prop_assert!(out[before..].iter().all(|o| o.0 < wm));
                }
            }
            r.release(u64::MAX, &mut |e| out.push((e.ts, e.tid)));
            // What left before the end is sorted among itself and overall
            // order only breaks where a late event arrived under the mark.
            let mut want = all.clone();
            want.sort();
            let mut got = out.clone();
            got.sort();
            proptest::prop_assert_eq!(got, want);
            // Without intermediate releases the output is exactly the sort.
            let mut r2 = Reorder::default();
            for (i, &(ts, cpu)) in evs.iter().enumerate() {
                let mut e = ev(ts, i as u32);
                e.cpu = cpu;
                r2.push(e);
            }
            let mut out2 = Vec::new();
            r2.release(u64::MAX, &mut |e| out2.push((e.ts, e.tid)));
            proptest::prop_assert_eq!(out2, all.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
        }
    }
}
