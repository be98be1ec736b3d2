//! The page-cache lock probes of issue 14 (`rl-ebpf/src/flock.rs`): file
//! learning, the lock source chosen for this kernel, page faults under a
//! lock ranked below mmap_lock, and the text ranges that name contention
//! callers.
//!
//! Everything the programs read is resolved here at start-up, into the
//! read-only global `FL` ([`FileLockLayout`]): struct member offsets from
//! BTF, tracepoint field offsets from tracefs `format` files, the XFS lock
//! flag bits from the `xfs_ilock` event's print format, and the kernel's
//! lock and sched text from /proc/kallsyms. Whatever is missing disables
//! its part with one line saying what, and the rest goes on.
//!
//! The lock source is chosen per kernel, best first:
//!
//! 1. `fentry`: fentry/fexit on the rwsem entry points (sees requests,
//!    acquisitions and their results, releases); needs BTF trampolines,
//!    which some kernels refuse (EPERM);
//! 2. `kprobe`: kprobes on the same functions and kretprobes on the lock
//!    functions, created through tracefs with a `maxactive` of
//!    [`MAXACTIVE`] so sleeping waiters do not exhaust them; returns the
//!    kernel still misses are counted (`kprobe_profile`'s nmissed) and
//!    recorded as `lost` events;
//! 3. `lockdep`: `lock:lock_acquire`/`lock_release` on kernels with lockdep
//!    (requests and releases; a successful trylock is also an acquisition);
//! 4. `xfs_ilock`: XFS's `xfs:xfs_ilock*`/`xfs_iunlock` tracepoints (XFS's
//!    own IOLOCK and MMAPLOCK calls only; requests, releases, demotions);
//! 5. `none`: no `file_lock_*` events.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd as _;

use anyhow::Context as _;
use aya::Ebpf;
use aya::programs::{FEntry, FExit, KProbe, RawTracePoint, TracePoint};
use rl_common::{FileLockLayout, NO_FIELD, TP_PREFIX};

use super::btf::Btf;
use super::tracefs::Tracefs;
use super::{ProbeReport, Status};

use super::kprobes::Kprobes;
pub use super::kprobes::MAXACTIVE;

/// Which source feeds the `file_lock_*` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Fentry,
    Kprobe,
    Lockdep,
    XfsIlock,
    None,
}

impl Source {
    /// The name in `--lock-source` and the trace header's `lock_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Fentry => "fentry",
            Source::Kprobe => "kprobe",
            Source::Lockdep => "lockdep",
            Source::XfsIlock => "xfs_ilock",
            Source::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        [
            Source::Fentry,
            Source::Kprobe,
            Source::Lockdep,
            Source::XfsIlock,
            Source::None,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether this source sees invalidate_lock holds (for the fault check).
    fn sees_holds(self) -> bool {
        self != Source::None
    }
}

/// What the rwsem function does, and what its return value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A lock function: write?, trylock?, return kind.
    Lock {
        write: bool,
        trylock: bool,
        ret: Ret,
    },
    UpRead,
    UpWrite,
    Downgrade,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    Void,
    Errno,
    Try,
}

struct Rwsem {
    symbol: &'static str,
    role: Role,
    /// A kernel without it cannot be followed (others exist only on some
    /// kernels: killable/interruptible forms, and the `_nested` ones that
    /// are real functions only with CONFIG_DEBUG_LOCK_ALLOC).
    required: bool,
}

const fn lock(symbol: &'static str, write: bool, trylock: bool, ret: Ret, required: bool) -> Rwsem {
    Rwsem {
        symbol,
        role: Role::Lock {
            write,
            trylock,
            ret,
        },
        required,
    }
}

/// The rwsem entry points (kernel/locking/rwsem.c, include/linux/rwsem.h).
const RWSEM: &[Rwsem] = &[
    lock("down_read", false, false, Ret::Void, true),
    lock("down_read_killable", false, false, Ret::Errno, false),
    lock("down_read_interruptible", false, false, Ret::Errno, false),
    lock("down_read_trylock", false, true, Ret::Try, true),
    lock("down_write", true, false, Ret::Void, true),
    lock("down_write_killable", true, false, Ret::Errno, false),
    lock("down_write_trylock", true, true, Ret::Try, true),
    lock("down_read_nested", false, false, Ret::Void, false),
    lock("down_read_killable_nested", false, false, Ret::Errno, false),
    lock("down_write_nested", true, false, Ret::Void, false),
    lock("down_write_killable_nested", true, false, Ret::Errno, false),
    lock("_down_write_nest_lock", true, false, Ret::Void, false),
    Rwsem {
        symbol: "up_read",
        role: Role::UpRead,
        required: true,
    },
    Rwsem {
        symbol: "up_write",
        role: Role::UpWrite,
        required: true,
    },
    Rwsem {
        symbol: "downgrade_write",
        role: Role::Downgrade,
        required: true,
    },
];

/// The fentry and fexit programs of a symbol (rl-ebpf names them after it).
fn fentry_programs(symbol: &str) -> (String, Option<String>, Role) {
    let r = RWSEM
        .iter()
        .find(|r| r.symbol == symbol)
        .expect("a known symbol");
    let name = symbol.trim_start_matches('_');
    let exit = matches!(r.role, Role::Lock { .. }).then(|| format!("fx_{name}"));
    (format!("fe_{name}"), exit, r.role)
}

/// The kprobe (entry) and kretprobe programs of a role.
fn kprobe_programs(role: Role) -> (&'static str, Option<&'static str>) {
    match role {
        Role::Lock {
            write,
            trylock,
            ret,
        } => {
            let entry = match (write, trylock) {
                (false, false) => "kr_read",
                (false, true) => "kr_read_try",
                (true, false) => "kr_write",
                (true, true) => "kr_write_try",
            };
            let exit = match (write, ret) {
                (false, Ret::Void) => "kr_read_ret_void",
                (false, Ret::Errno) => "kr_read_ret_errno",
                (false, Ret::Try) => "kr_read_ret_try",
                (true, Ret::Void) => "kr_write_ret_void",
                (true, Ret::Errno) => "kr_write_ret_errno",
                (true, Ret::Try) => "kr_write_ret_try",
            };
            (entry, Some(exit))
        }
        Role::UpRead => ("kr_up_read", None),
        Role::UpWrite => ("kr_up_write", None),
        Role::Downgrade => ("kr_downgrade", None),
    }
}

/// Raw tracepoints that learn files: program, category, event, the leading
/// C argument types the program reads (checked against BTF). Faults learn
/// in their recording program (`filemap_fault`).
const LEARNERS: &[(&str, &str, &str, &[&str])] = &[
    (
        "learn_page_add",
        "filemap",
        "mm_filemap_add_to_page_cache",
        &["struct folio *"],
    ),
    (
        "learn_dio",
        "iomap",
        "iomap_dio_rw_begin",
        &["struct kiocb *"],
    ),
];

/// Learners of files that a task only punches, zeroes, collapses, inserts
/// into or truncates: the learner program, the operation probe of
/// `fsops` on the same tracepoint (whose arguments and members it reads
/// too, so it is attachable exactly where that probe is), category, event.
/// Raw tracepoints, but for the syscall entries (formatted records), which
/// learn the files of filesystems without operation tracepoints (btrfs).
const FS_LEARNERS: &[(&str, &str, &str, &str)] = &[
    (
        "learn_falloc",
        "fs_falloc_enter",
        "syscalls",
        "sys_enter_fallocate",
    ),
    (
        "learn_ftrunc",
        "fs_ftrunc_enter",
        "syscalls",
        "sys_enter_ftruncate",
    ),
    ("learn_ext4", "ext4_punch", "ext4", "ext4_punch_hole"),
    ("learn_ext4", "ext4_zero", "ext4", "ext4_zero_range"),
    ("learn_ext4", "ext4_collapse", "ext4", "ext4_collapse_range"),
    ("learn_ext4", "ext4_insert", "ext4", "ext4_insert_range"),
    (
        "learn_ext4",
        "ext4_trunc_enter",
        "ext4",
        "ext4_truncate_enter",
    ),
    ("learn_xfs", "xfs_free", "xfs", "xfs_free_file_space"),
    ("learn_xfs", "xfs_zero", "xfs", "xfs_zero_file_space"),
    (
        "learn_xfs",
        "xfs_collapse",
        "xfs",
        "xfs_collapse_file_space",
    ),
    ("learn_xfs", "xfs_insert", "xfs", "xfs_insert_file_space"),
    ("learn_xfs", "xfs_setattr", "xfs", "xfs_setattr"),
];

/// The XFS tracepoints of the `xfs_ilock` source, and their programs.
const XFS: &[(&str, &str)] = &[
    ("xfs_ilock", "xfs_ilock"),
    ("xfs_ilock_nowait", "xfs_ilock_nowait"),
    ("xfs_iunlock", "xfs_iunlock"),
    ("xfs_ilock_demote", "xfs_ilock_demote"),
];

/// What start-up resolved, before the eBPF object is loaded.
pub struct Plan {
    pub layout: FileLockLayout,
    /// Why files are not learned (`None`: they are).
    learn_off: Option<String>,
    /// The source asked for (`None`: choose).
    asked: Option<Source>,
    /// Per source: usable here, or why not (fentry is only known at load).
    kprobe: Result<(), String>,
    lockdep: Result<(), String>,
    xfs: Result<(), String>,
    rwsem_syms: Vec<&'static str>,
    /// Per learner of [`LEARNERS`]: attachable, or why not.
    learners: Vec<Result<(), String>>,
    /// Per entry of [`FS_LEARNERS`]: attachable, or why not (set by
    /// [`Plan::fs_learners_where`]).
    fs_learners: Vec<Result<(), String>>,
    faults: Result<(), String>,
    caller_line: String,
}

/// A tracefs field offset a program reads, checked as the catalog does
/// (inside the first TP_PREFIX bytes, aligned, of an expected size).
fn field(t: &Tracefs, cat: &str, ev: &str, name: &str, sizes: &[u32]) -> Result<u32, String> {
    if !t.has_event(cat, ev) {
        return Err(format!("no tracepoint {cat}:{ev}"));
    }
    let f = t
        .format(cat, ev)
        .ok_or_else(|| format!("cannot read the format of {cat}:{ev}"))?;
    let fl = f
        .field(name)
        .ok_or_else(|| format!("{cat}:{ev} has no field {name}"))?;
    if (fl.offset + fl.size) as usize > TP_PREFIX
        || !fl.offset.is_multiple_of(fl.size.max(1))
        || !sizes.contains(&fl.size)
    {
        return Err(format!(
            "{cat}:{ev} field {name} is at offset {} size {}: unexpected layout",
            fl.offset, fl.size
        ));
    }
    Ok(fl.offset)
}

/// The bit of each flag name in a `__print_flags(..., { (1u << 4), "NAME" }, ...)`
/// table of a tracefs format's print fmt (how `xfs_ilock` prints lock flags).
pub fn print_flags(format: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let Some(fmt) = format.lines().find(|l| l.starts_with("print fmt:")) else {
        return out;
    };
    for entry in fmt.split('{').skip(1) {
        let Some((value, rest)) = entry.split_once(',') else {
            continue;
        };
        let Some(name) = rest.split('"').nth(1) else {
            continue;
        };
        let v = value.trim().trim_start_matches('(').trim_end_matches(')');
        let parsed = if let Some((a, b)) = v.split_once("<<") {
            let a = a.trim().trim_end_matches(['u', 'U', 'l', 'L']);
            match (a.parse::<u32>(), b.trim().parse::<u32>()) {
                (Ok(a), Ok(b)) if b < 32 => Some(a << b),
                _ => None,
            }
        } else if let Some(h) = v.strip_prefix("0x") {
            u32::from_str_radix(h.trim_end_matches(['u', 'U']), 16).ok()
        } else {
            v.trim_end_matches(['u', 'U']).parse().ok()
        };
        if let Some(bit) = parsed {
            out.insert(name.to_string(), bit);
        }
    }
    out
}

/// Addresses of a few kernel symbols, from /proc/kallsyms.
fn kallsyms_addrs(names: &[&str]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(text) = fs::read_to_string("/proc/kallsyms") else {
        return out;
    };
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let (Some(a), Some(_), Some(n)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if names.contains(&n)
            && let Ok(a) = u64::from_str_radix(a, 16)
            && a != 0
        {
            out.insert(n.to_string(), a);
        }
    }
    out
}

impl Plan {
    /// Resolves everything this kernel offers. `asked`: `--lock-source`
    /// (`auto` chooses). `syms`: /proc/kallsyms names, when readable.
    #[allow(clippy::too_many_lines)] // start-up in order: each step needs the ones before it
    pub fn resolve(
        asked: &str,
        t: &Tracefs,
        btf: Option<&Btf>,
        syms: Option<&super::profile::Kallsyms>,
        kprobes: bool,
    ) -> anyhow::Result<Plan> {
        let asked = match asked {
            "auto" => None,
            s => Some(Source::parse(s).ok_or_else(|| {
                crate::user_error(format!(
                    "--lock-source {s:?}: expected auto, fentry, kprobe, lockdep, xfs_ilock or none"
                ))
            })?),
        };
        let mut l = FileLockLayout::NONE;
        let mut missing = Vec::new();
        let learn_off = match btf {
            None => Some("kernel BTF (/sys/kernel/btf/vmlinux) is not available".to_string()),
            Some(b) => {
                let mut get = |s: &str, m: &str, slot: &mut u32| match b.member_path_offset(s, m) {
                    Ok(o) => *slot = o,
                    Err(e) => missing.push(e.to_string()),
                };
                get("inode", "i_rwsem", &mut l.inode_rwsem);
                get("inode", "i_mapping", &mut l.inode_mapping);
                get("inode", "i_ino", &mut l.inode_ino);
                get("inode", "i_sb", &mut l.inode_sb);
                get("inode", "i_dentry", &mut l.inode_dentry);
                get("super_block", "s_dev", &mut l.sb_dev);
                get("super_block", "s_type", &mut l.sb_type);
                get("file_system_type", "name", &mut l.fstype_name);
                get("address_space", "host", &mut l.mapping_host);
                get(
                    "address_space",
                    "invalidate_lock",
                    &mut l.mapping_invalidate_lock,
                );
                get("folio", "mapping", &mut l.folio_mapping);
                get("kiocb", "ki_filp", &mut l.kiocb_filp);
                get("file", "f_inode", &mut l.file_inode);
                get("dentry", "d_u.d_alias", &mut l.dentry_alias);
                get("dentry", "d_parent", &mut l.dentry_parent);
                let mut dname = NO_FIELD;
                let mut qname = NO_FIELD;
                get("dentry", "d_name", &mut dname);
                get("qstr", "name", &mut qname);
                if dname != NO_FIELD && qname != NO_FIELD {
                    l.dentry_name = dname + qname;
                }
                if missing.is_empty() {
                    None
                } else {
                    Some(missing.join("; "))
                }
            }
        };
        l.learn = u32::from(learn_off.is_none());
        // The fault check reads `current->pagefault_disabled`.
        let pfd = btf
            .ok_or_else(|| "kernel BTF is not available".to_string())
            .and_then(|b| {
                b.member_offset("task_struct", "pagefault_disabled")
                    .map_err(|e| e.to_string())
            });
        let mut faults = pfd.map(|o| l.task_pagefault_disabled = o);
        if faults.is_ok() {
            // Raw tracepoints: (unsigned long address, struct pt_regs *,
            // unsigned long error_code), checked against BTF.
            let args = ["long unsigned int", "struct pt_regs *", "long unsigned int"];
            faults = ["page_fault_user", "page_fault_kernel"]
                .into_iter()
                .try_for_each(|ev| {
                    if !t.has_event("exceptions", ev) {
                        return Err(format!("no tracepoint exceptions:{ev}"));
                    }
                    match btf.and_then(|b| b.tracepoint_args(ev)) {
                        Some(have)
                            if have.starts_with(&args.map(String::from)) =>
                        {
                            Ok(())
                        }
                        Some(have) => Err(format!(
                            "exceptions:{ev} arguments are ({}) here, rltop reads ({}): unexpected layout",
                            have.join(", "),
                            args.join(", ")
                        )),
                        None => Err(format!("BTF has no prototype for tracepoint {ev}")),
                    }
                });
        }
        // Lock sources other than fentry (which is tried at load).
        let has = |s: &str| syms.is_some_and(|k| k.has(s));
        let rwsem_syms: Vec<&'static str> =
            RWSEM.iter().map(|r| r.symbol).filter(|s| has(s)).collect();
        let missing_required: Vec<&str> = RWSEM
            .iter()
            .filter(|r| r.required && !has(r.symbol))
            .map(|r| r.symbol)
            .collect();
        let rwsem_ok = if learn_off.is_some() {
            Err("files are not learned, so their locks cannot be recognised".to_string())
        } else if syms.is_none() {
            Err("cannot read /proc/kallsyms".to_string())
        } else if !missing_required.is_empty() {
            Err(format!(
                "no {} in /proc/kallsyms",
                missing_required.join(", ")
            ))
        } else {
            Ok(())
        };
        let kprobe = rwsem_ok.clone().and_then(|()| {
            if !kprobes {
                Err("this kernel has no kprobes".to_string())
            } else if !t.root().join("kprobe_events").exists() {
                Err("no kprobe_events in tracefs (kretprobes need its maxactive)".to_string())
            } else {
                Ok(())
            }
        });
        let lockdep = rwsem_ok.clone().and_then(|()| {
            let dep = btf
                .and_then(|b| b.member_offset("rw_semaphore", "dep_map").ok())
                .ok_or("no lockdep (rw_semaphore has no dep_map in BTF)")?;
            l.rwsem_dep_map = dep;
            l.lockdep_flags = field(t, "lock", "lock_acquire", "flags", &[4])?;
            l.lockdep_addr = field(t, "lock", "lock_acquire", "lockdep_addr", &[8])?;
            l.lockdep_release_addr = field(t, "lock", "lock_release", "lockdep_addr", &[8])?;
            Ok(())
        });
        let xfs = (|| {
            for (ev, _) in XFS {
                let d = field(t, "xfs", ev, "dev", &[4])?;
                let i = field(t, "xfs", ev, "ino", &[8])?;
                let f = field(t, "xfs", ev, "lock_flags", &[4])?;
                if l.xfs_dev != NO_FIELD && (l.xfs_dev, l.xfs_ino, l.xfs_flags) != (d, i, f) {
                    return Err(format!("xfs:{ev} differs in layout from xfs:xfs_ilock"));
                }
                (l.xfs_dev, l.xfs_ino, l.xfs_flags) = (d, i, f);
            }
            let text = fs::read_to_string(t.root().join("events/xfs/xfs_ilock/format"))
                .map_err(|e| format!("xfs:xfs_ilock format: {e}"))?;
            let flags = print_flags(&text);
            let bit = |n: &str| {
                flags
                    .get(n)
                    .copied()
                    .filter(|b| b.is_power_of_two())
                    .ok_or_else(|| format!("xfs:xfs_ilock prints no {n} flag"))
            };
            l.xfs_iolock_excl = bit("IOLOCK_EXCL")?;
            l.xfs_iolock_shared = bit("IOLOCK_SHARED")?;
            l.xfs_mmaplock_excl = bit("MMAPLOCK_EXCL")?;
            l.xfs_mmaplock_shared = bit("MMAPLOCK_SHARED")?;
            Ok(())
        })();
        // Contention callers: the kernel's lock and sched text.
        let a = kallsyms_addrs(&[
            "__lock_text_start",
            "__lock_text_end",
            "__sched_text_start",
            "__sched_text_end",
        ]);
        let caller_line = match (
            a.get("__lock_text_start"),
            a.get("__lock_text_end"),
            a.get("__sched_text_start"),
            a.get("__sched_text_end"),
        ) {
            (Some(&ls), Some(&le), Some(&ss), Some(&se)) if ls < le && ss < se => {
                l.lock_text_start = ls;
                l.lock_text_end = le;
                l.sched_text_start = ss;
                l.sched_text_end = se;
                l.caller = 1;
                "contention callers: named (first frame outside __lock_text/__sched_text, from /proc/kallsyms)".to_string()
            }
            _ => "contention callers: not named (no __lock_text_*/__sched_text_* addresses in /proc/kallsyms; run as root)".to_string(),
        };
        let learners = LEARNERS
            .iter()
            .map(|(_, cat, ev, args)| {
                if let Some(why) = &learn_off {
                    return Err(format!("files are not learned: {why}"));
                }
                if !t.has_event(cat, ev) {
                    return Err("tracepoint not in this kernel".into());
                }
                match btf.and_then(|b| b.tracepoint_args(ev)) {
                    None => Err(format!("BTF has no prototype for tracepoint {ev}")),
                    Some(have)
                        if !have.starts_with(
                            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        ) =>
                    {
                        Err(format!(
                            "its arguments are ({}) here, rltop reads ({}): unexpected layout",
                            have.join(", "),
                            args.join(", ")
                        ))
                    }
                    Some(_) => Ok(()),
                }
            })
            .collect();
        Ok(Plan {
            layout: l,
            learn_off,
            learners,
            fs_learners: FS_LEARNERS
                .iter()
                .map(|_| Err("its operation probe is not resolved".to_string()))
                .collect(),
            asked,
            kprobe,
            lockdep,
            xfs,
            rwsem_syms,
            faults,
            caller_line,
        })
    }
}

/// The attached lock probes, alive as long as the session.
pub struct Live {
    pub source: Source,
    /// "file locks: ..." lines for `rltop probes`.
    pub lines: Vec<String>,
    /// The source asked for with `--lock-source` could not be used: why.
    pub refused: Option<String>,
}

impl Plan {
    /// The page-cache add's own program learns its file (the BTF-typed
    /// one): its learner is not attached, for `why`.
    pub fn page_add_learned_by_its_probe(&mut self, why: &str) {
        for ((program, ..), ready) in LEARNERS.iter().zip(&mut self.learners) {
            if *program == "learn_page_add" && ready.is_ok() {
                *ready = Err(why.into());
            }
        }
    }

    /// Decides which file-operation learners attach: those whose operation
    /// probe (`fsops`) is ready, when files are learned at all.
    pub fn fs_learners_where(&mut self, op_ready: impl Fn(&str) -> bool) {
        self.fs_learners = FS_LEARNERS
            .iter()
            .map(|(_, op, cat, ev)| match &self.learn_off {
                Some(why) => Err(format!("files are not learned: {why}")),
                None if op_ready(op) => Ok(()),
                None => Err(format!(
                    "its operation probe on {cat}:{ev} is not attachable"
                )),
            })
            .collect();
    }
}

/// Loads and attaches the file learners. Called before the other probes
/// attach: programs on one tracepoint run in the order they were attached,
/// so a file's `file` record comes before the first operation on it.
pub fn attach_learners(ebpf: &mut Ebpf, plan: &Plan) -> Vec<ProbeReport> {
    let mut probes = Vec::new();
    for ((program, cat, ev, _), ready) in LEARNERS.iter().zip(&plan.learners) {
        let status = match ready {
            Err(why) => Status::Unavailable(why.clone()),
            Ok(()) => attach_raw(ebpf, program, ev),
        };
        probes.push(ProbeReport {
            name: format!("{cat}:{ev} (raw, files)"),
            covers: None,
            program,
            status,
        });
    }
    for ((program, _, cat, ev), ready) in FS_LEARNERS.iter().zip(&plan.fs_learners) {
        let formatted = *cat == "syscalls";
        let status = match ready {
            Err(why) => Status::Unavailable(why.clone()),
            Ok(()) if formatted => attach_tp_status(ebpf, program, cat, ev),
            Ok(()) => attach_raw(ebpf, program, ev),
        };
        probes.push(ProbeReport {
            name: format!("{cat}:{ev} ({}files)", if formatted { "" } else { "raw, " }),
            covers: None,
            program,
            status,
        });
    }
    probes
}

/// Loads and attaches the lock source and the fault probes; `learners`
/// are the reports of [`attach_learners`], listed first.
/// `range_holds`: a range-lock profile counts held range locks (the fault
/// check then has a source of holds even without a file lock source).
#[allow(clippy::too_many_lines)] // start-up in order: each step needs the ones before it
pub fn attach(
    ebpf: &mut Ebpf,
    plan: &Plan,
    listing: bool,
    range_holds: bool,
    learners: Vec<ProbeReport>,
    probes: &mut Vec<ProbeReport>,
    kprobes: &mut Kprobes,
) -> Live {
    let mut lines = Vec::new();
    probes.extend(learners);
    match &plan.learn_off {
        None => lines.push(
            "files: learned from page-cache and DIO events (path, fs, i_rwsem and invalidate_lock addresses)".to_string(),
        ),
        Some(why) => lines.push(format!("files: not learned: {why}")),
    }
    // The source.
    let mut why_not: Vec<String> = Vec::new();
    let mut chosen = Source::None;
    let want = |s: Source| plan.asked.is_none() || plan.asked == Some(s);
    if want(Source::Fentry) {
        match attach_fentry(ebpf, plan, probes) {
            Ok(()) => chosen = Source::Fentry,
            Err(e) => why_not.push(format!("fentry: {e}")),
        }
    }
    if chosen == Source::None && want(Source::Kprobe) {
        match &plan.kprobe {
            Ok(()) => match attach_kprobes(ebpf, plan, kprobes, probes) {
                Ok(()) => chosen = Source::Kprobe,
                Err(e) => why_not.push(format!("kprobe: {e:#}")),
            },
            Err(e) => {
                why_not.push(format!("kprobe: {e}"));
                if listing && plan.asked == Some(Source::Kprobe) {
                    list_kprobes(ebpf, plan, e, probes);
                }
            }
        }
    }
    if chosen == Source::None && want(Source::Lockdep) {
        match &plan.lockdep {
            Ok(()) => {
                let ok = attach_tp(ebpf, "lockdep_acquire", "lock", "lock_acquire", probes)
                    && attach_tp(ebpf, "lockdep_release", "lock", "lock_release", probes);
                if ok {
                    chosen = Source::Lockdep;
                } else {
                    why_not.push("lockdep: its tracepoints did not attach".into());
                }
            }
            Err(e) => why_not.push(format!("lockdep: {e}")),
        }
    }
    if chosen == Source::None && want(Source::XfsIlock) {
        match &plan.xfs {
            Ok(()) => {
                let mut ok = true;
                for (ev, program) in XFS {
                    ok &= attach_tp(ebpf, program, "xfs", ev, probes);
                }
                if ok {
                    chosen = Source::XfsIlock;
                } else {
                    why_not.push("xfs_ilock: its tracepoints did not attach".into());
                }
            }
            Err(e) => why_not.push(format!("xfs_ilock: {e}")),
        }
    }
    let detail = match chosen {
        Source::Fentry => {
            "fentry/fexit on the rwsem entry points: requests, acquisitions, releases"
        }
        Source::Kprobe => {
            "kprobes/kretprobes on the rwsem entry points: requests, acquisitions, releases"
        }
        Source::Lockdep => {
            "lockdep's lock_acquire/lock_release: requests and releases (acquisitions inferred)"
        }
        Source::XfsIlock => {
            "XFS's xfs_ilock/xfs_iunlock tracepoints: XFS files only, IOLOCK (i_rwsem) and MMAPLOCK (invalidate_lock) taken through xfs_ilock; they fire at its entry, so requests and releases only (acquisitions inferred); i_rwsem taken by the VFS directly (inode_lock in truncate, rename, ...) is not seen"
        }
        Source::None => "none: no file_lock_* events (holds are inferred from operations)",
    };
    let mut line = format!("file locks: source {} ({detail})", chosen.as_str());
    if !why_not.is_empty() {
        line.push_str(&format!("; not used: {}", why_not.join("; ")));
    }
    lines.push(line);
    // Page faults under a lock ranked below mmap_lock.
    let holds = chosen.sees_holds() || range_holds;
    for (program, ev) in [
        ("page_fault_user", "page_fault_user"),
        ("page_fault_kernel", "page_fault_kernel"),
    ] {
        let status = match (&plan.faults, holds) {
            (Err(e), _) => Status::Unavailable(e.clone()),
            (Ok(()), false) => Status::Unavailable(
                "no source of holds of locks ranked below mmap_lock (no range-lock profile, no file lock source)".into(),
            ),
            (Ok(()), true) => attach_raw(ebpf, program, ev),
        };
        probes.push(ProbeReport {
            name: format!("exceptions:{ev} (raw)"),
            covers: None,
            program,
            status,
        });
    }
    lines.push(plan.caller_line.clone());
    let refused = match plan.asked {
        Some(s) if s != chosen => Some(format!(
            "--lock-source {}: {}",
            s.as_str(),
            why_not.join("; ")
        )),
        _ => None,
    };
    Live {
        source: chosen,
        lines,
        refused,
    }
}

fn insns(ebpf: &Ebpf, program: &str) -> Option<u32> {
    ebpf.program(program)
        .and_then(|p| p.info().ok())
        .and_then(|i| i.verified_instruction_count())
}

fn attach_raw(ebpf: &mut Ebpf, program: &'static str, ev: &str) -> Status {
    let r: anyhow::Result<()> = (|| {
        let p: &mut RawTracePoint = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} is not in the eBPF object"))?
            .try_into()?;
        // One program may serve several tracepoints (`FS_LEARNERS`).
        if p.fd().is_err() {
            p.load().map_err(super::verifier_error)?;
        }
        p.attach(ev)?;
        Ok(())
    })();
    match r {
        Ok(()) => Status::Attached {
            verified_insns: insns(ebpf, program),
        },
        Err(e) => Status::Failed(format!("{e:#}")),
    }
}

fn attach_tp_status(ebpf: &mut Ebpf, program: &'static str, cat: &str, ev: &str) -> Status {
    let r: anyhow::Result<()> = (|| {
        let p: &mut TracePoint = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} is not in the eBPF object"))?
            .try_into()?;
        p.load().map_err(super::verifier_error)?;
        p.attach(cat, ev)?;
        Ok(())
    })();
    match r {
        Ok(()) => Status::Attached {
            verified_insns: insns(ebpf, program),
        },
        Err(e) => Status::Failed(format!("{e:#}")),
    }
}

fn attach_tp(
    ebpf: &mut Ebpf,
    program: &'static str,
    cat: &str,
    ev: &str,
    probes: &mut Vec<ProbeReport>,
) -> bool {
    let status = attach_tp_status(ebpf, program, cat, ev);
    let ok = matches!(status, Status::Attached { .. });
    probes.push(ProbeReport {
        name: format!("{cat}:{ev} (file locks)"),
        covers: (cat == "xfs").then_some("XFS files only"),
        program,
        status,
    });
    ok
}

/// Tries fentry/fexit: the first load says whether this kernel allows
/// tracing programs at all (it may refuse them with EPERM).
fn attach_fentry(
    ebpf: &mut Ebpf,
    plan: &Plan,
    probes: &mut Vec<ProbeReport>,
) -> anyhow::Result<()> {
    if plan.learn_off.is_some() || plan.kprobe_symbols_missing() {
        anyhow::bail!("{}", plan.rwsem_unusable());
    }
    let btf = aya::Btf::from_sys_fs().context("kernel BTF")?;
    let mut reports = Vec::new();
    let mut first = true;
    for sym in &plan.rwsem_syms {
        let (entry, exit, _) = fentry_programs(sym);
        for (program, is_exit) in [(Some(entry), false), (exit, true)] {
            let Some(program) = program else { continue };
            let r: anyhow::Result<()> = (|| {
                let prog = ebpf
                    .program_mut(&program)
                    .with_context(|| format!("program {program} is not in the eBPF object"))?;
                if is_exit {
                    let p: &mut FExit = prog.try_into()?;
                    p.load(sym, &btf).map_err(super::verifier_error)?;
                    p.attach()?;
                } else {
                    let p: &mut FEntry = prog.try_into()?;
                    p.load(sym, &btf).map_err(super::verifier_error)?;
                    p.attach()?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                if first {
                    anyhow::bail!("the kernel refused a tracing program on {sym} ({e:#})");
                }
                // Required functions must all attach.
                if RWSEM.iter().any(|r| r.symbol == *sym && r.required) {
                    anyhow::bail!(
                        "{} on {sym} did not attach: {e:#}",
                        if is_exit { "fexit" } else { "fentry" }
                    );
                }
                reports.push(ProbeReport {
                    name: format!("{}:{sym}", if is_exit { "fexit" } else { "fentry" }),
                    covers: None,
                    program: leak(program),
                    status: Status::Failed(format!("{e:#}")),
                });
                continue;
            }
            first = false;
            reports.push(ProbeReport {
                name: format!("{}:{sym}", if is_exit { "fexit" } else { "fentry" }),
                covers: None,
                program: leak(program.clone()),
                status: Status::Attached {
                    verified_insns: insns(ebpf, &program),
                },
            });
        }
    }
    probes.extend(reports);
    Ok(())
}

/// Program names are `&'static str` in reports; the fentry ones are built
/// from symbol names, a bounded set (one per rwsem function).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Plan {
    fn kprobe_symbols_missing(&self) -> bool {
        RWSEM
            .iter()
            .any(|r| r.required && !self.rwsem_syms.contains(&r.symbol))
    }

    fn rwsem_unusable(&self) -> String {
        match &self.learn_off {
            Some(_) => "files are not learned, so their locks cannot be recognised".into(),
            None => format!(
                "no {} in /proc/kallsyms",
                RWSEM
                    .iter()
                    .filter(|r| r.required && !self.rwsem_syms.contains(&r.symbol))
                    .map(|r| r.symbol)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// `rltop probes --lock-source kprobe` on a kernel without kprobes: the
/// programs are loaded (the verifier checks them) and each probe says why
/// it is not attached.
fn list_kprobes(ebpf: &mut Ebpf, plan: &Plan, why: &str, probes: &mut Vec<ProbeReport>) {
    for r in RWSEM {
        let (entry, exit) = kprobe_programs(r.role);
        for (program, ret) in [(Some(entry), false), (exit, true)] {
            let Some(program) = program else { continue };
            let status = match load_kprobe(ebpf, program) {
                Ok(Some(n)) => {
                    Status::Unavailable(format!("{why} (program verified here: {n} instructions)"))
                }
                Ok(None) => Status::Unavailable(why.to_string()),
                Err(e) => Status::Failed(format!("{e:#}")),
            };
            let _ = plan;
            probes.push(ProbeReport {
                name: format!("{}:{}", if ret { "kretprobe" } else { "kprobe" }, r.symbol),
                covers: None,
                program,
                status,
            });
        }
    }
}

fn load_kprobe(ebpf: &mut Ebpf, program: &str) -> anyhow::Result<Option<u32>> {
    let p: &mut KProbe = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} is not in the eBPF object"))?
        .try_into()?;
    if p.fd().is_err() {
        p.load().map_err(super::verifier_error)?;
    }
    Ok(insns(ebpf, program))
}

/// kprobes on every rwsem function of this kernel, kretprobes (with
/// [`MAXACTIVE`]) on the lock functions, all through tracefs so that what
/// the kernel misses is counted. On failure, the probes attached so far
/// are removed again: the next source must not run beside them.
fn attach_kprobes(
    ebpf: &mut Ebpf,
    plan: &Plan,
    kp: &mut Kprobes,
    probes: &mut Vec<ProbeReport>,
) -> anyhow::Result<()> {
    let mark = kp.len();
    let r = attach_kprobes_from(ebpf, plan, kp, probes);
    if r.is_err() {
        kp.truncate(mark);
    }
    r
}

fn attach_kprobes_from(
    ebpf: &mut Ebpf,
    plan: &Plan,
    kp: &mut Kprobes,
    probes: &mut Vec<ProbeReport>,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for sym in &plan.rwsem_syms {
        let r = RWSEM.iter().find(|r| r.symbol == *sym).expect("known");
        let (entry, exit) = kprobe_programs(r.role);
        for (program, ret) in std::iter::once((entry, false)).chain(exit.map(|e| (e, true))) {
            load_kprobe(ebpf, program)?;
            let fd = {
                let p: &mut KProbe = ebpf.program_mut(program).expect("loaded").try_into()?;
                p.fd()?.as_fd().try_clone_to_owned()?
            };
            let st = match kp.attach(sym, ret, &fd) {
                Ok(()) => Status::Attached {
                    verified_insns: insns(ebpf, program),
                },
                Err(e) if r.required => anyhow::bail!("{} on {sym}: {e:#}", kind_name(ret)),
                Err(e) => Status::Failed(format!("{e:#}")),
            };
            reports.push(ProbeReport {
                name: if ret {
                    format!("kretprobe:{sym} (maxactive {MAXACTIVE})")
                } else {
                    format!("kprobe:{sym}")
                },
                covers: None,
                program,
                status: st,
            });
        }
    }
    probes.extend(reports);
    Ok(())
}

fn kind_name(ret: bool) -> &'static str {
    if ret { "kretprobe" } else { "kprobe" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfs_lock_flags_come_from_the_print_format() {
        let fmt = "name: xfs_ilock\nformat:\n\tfield:int lock_flags;\toffset:24;\tsize:4;\tsigned:1;\n\nprint fmt: \"dev %d:%d ino 0x%llx flags %s caller %pS\", ((unsigned int) ((REC->dev) >> 20)), REC->ino, __print_flags(REC->lock_flags, \"|\", { (1u << 0), \"IOLOCK_EXCL\" }, { (1u << 1), \"IOLOCK_SHARED\" }, { (1u << 2), \"ILOCK_EXCL\" }, { (1u << 3), \"ILOCK_SHARED\" }, { (1u << 4), \"MMAPLOCK_EXCL\" }, { (1u << 5), \"MMAPLOCK_SHARED\" }), (void *)REC->caller_ip\n";
        let f = print_flags(fmt);
        assert_eq!(f.get("IOLOCK_EXCL"), Some(&1));
        assert_eq!(f.get("MMAPLOCK_SHARED"), Some(&32));
        assert_eq!(f.len(), 6);
        // Older kernels print plain numbers.
        let f = print_flags(
            "print fmt: \"%s\", __print_flags(REC->f, \"|\", { 0x10, \"MMAPLOCK_EXCL\" }, { 4, \"X\" })",
        );
        assert_eq!(f.get("MMAPLOCK_EXCL"), Some(&16));
        assert_eq!(f.get("X"), Some(&4));
        assert!(print_flags("no print fmt here").is_empty());
    }

    #[test]
    fn every_rwsem_function_has_its_programs() {
        for r in RWSEM {
            let (fe, fx, role) = fentry_programs(r.symbol);
            assert!(fe.starts_with("fe_"));
            assert_eq!(fx.is_some(), matches!(role, Role::Lock { .. }));
            let (k, kr) = kprobe_programs(role);
            assert!(k.starts_with("kr_"));
            assert_eq!(kr.is_some(), fx.is_some());
        }
        assert_eq!(Source::parse("xfs_ilock"), Some(Source::XfsIlock));
        assert_eq!(Source::parse("bogus"), None);
    }
}
