//! The filesystem-operation probes (`rl-ebpf/src/fsops.rs`): punch, zero,
//! collapse, insert and truncate on ext4 and XFS through their own
//! tracepoints, on other filesystems through the syscalls, their
//! invalidation windows, and the ends of DIO early exits.
//!
//! [`resolve`] checks every probe against the kernel (tracepoint, raw
//! tracepoint prototype in BTF, formatted fields, BTF members, flag values
//! from `print fmt`, kallsyms), fills [`FsopsLayout`] and the inode members
//! of [`KernelOffsets`], and decides per filesystem which probes stand for
//! it: a filesystem's own probes attach all together or not at all, and
//! then the syscall stand-in leaves its files alone (by superblock magic),
//! so that no operation is counted twice. Windows are enabled per
//! (filesystem, operation) only where a proven end point attaches; the
//! reasons are in [`Plan::notes`] and in `docs/kernel-fs-ops.md`.

use aya::Ebpf;
use rl_common::{FsOp, FsopsLayout, KernelOffsets, NO_FIELD, OWN_EXT4, OWN_XFS, TP_PREFIX};

use super::btf::Btf;
use super::catalog::{Attach, ProbeSpec};
use super::tracefs::Tracefs;
use super::{ProbeReport, Status};

/// Which filesystems a probe covers, or what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Ext4,
    Xfs,
    /// The syscalls: filesystems without their own probes.
    Syscalls,
    /// Ends operations and early DIOs, whatever the filesystem.
    Ends,
    /// Windows: optional end points.
    Ext4Window,
    XfsWindow,
    /// DIO early exits.
    Dio,
}

/// Where in [`FsopsLayout`] a value goes.
pub type Slot = fn(&mut FsopsLayout) -> &mut u32;

/// A formatted field a program reads, and its slot.
pub struct Field {
    pub name: &'static str,
    pub sizes: &'static [u32],
    pub slot: fn(&mut FsopsLayout) -> &mut u32,
}

/// A BTF member, and its slot in one of the two layouts.
pub enum Member {
    Fs(&'static str, &'static str, fn(&mut FsopsLayout) -> &mut u32),
    Kernel(
        &'static str,
        &'static str,
        fn(&mut KernelOffsets) -> &mut u32,
    ),
}

pub struct FsProbe {
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    pub attach: Attach,
    /// Raw tracepoints: the leading C argument types read.
    pub args: &'static [&'static str],
    pub fields: &'static [Field],
    pub members: &'static [Member],
    /// A flag of the event's `print fmt` the program tests: the flag's
    /// name and its slot.
    pub flag: Option<(&'static str, Slot)>,
    pub group: Group,
    /// What it covers, as `rltop probes` says it.
    pub covers: &'static str,
}

impl FsProbe {
    pub fn name(&self) -> String {
        match self.attach {
            Attach::Tracepoint => format!("{}:{}", self.category, self.event),
            Attach::Raw => format!("{}:{} (raw)", self.category, self.event),
            Attach::Btf => format!("{}:{} (tp_btf)", self.category, self.event),
        }
    }
}

macro_rules! field {
    ($name:literal, $sizes:expr, $slot:ident) => {
        Field {
            name: $name,
            sizes: $sizes,
            slot: |o| &mut o.$slot,
        }
    };
}
macro_rules! fsm {
    ($s:literal . $m:literal, $slot:ident) => {
        Member::Fs($s, $m, |o| &mut o.$slot)
    };
}
macro_rules! km {
    ($s:literal . $m:literal, $slot:ident) => {
        Member::Kernel($s, $m, |o| &mut o.$slot)
    };
}

/// What the operation begins read of an inode: its number and device,
/// size, mapping, and (for windows) the mapping's `invalidate_lock`.
const INODE: &[Member] = &[
    km!("inode"."i_ino", inode_ino),
    km!("inode"."i_sb", inode_sb),
    km!("inode"."i_size", inode_size),
    km!("super_block"."s_dev", sb_dev),
    fsm!("inode"."i_mapping", inode_mapping),
];
/// A syscall's fd to its inode and filesystem.
const FD: &[Member] = &[
    fsm!("task_struct"."files", task_files),
    fsm!("files_struct"."fdt", files_fdt),
    fsm!("fdtable"."fd", fdt_fd),
    fsm!("fdtable"."max_fds", fdt_max_fds),
    km!("file"."f_inode", file_inode),
    km!("inode"."i_ino", inode_ino),
    km!("inode"."i_sb", inode_sb),
    km!("inode"."i_size", inode_size),
    km!("super_block"."s_dev", sb_dev),
    fsm!("super_block"."s_magic", sb_magic),
    fsm!("inode"."i_mapping", inode_mapping),
];
const XFS_INODE: &[Member] = &[
    fsm!("xfs_inode"."i_vnode", xfs_vnode),
    km!("inode"."i_ino", inode_ino),
    km!("inode"."i_sb", inode_sb),
    km!("inode"."i_size", inode_size),
    km!("super_block"."s_dev", sb_dev),
    fsm!("inode"."i_mapping", inode_mapping),
];
/// Dev and ino of the formatted end events (one slot for all of them).
const DEV_INO: &[Field] = &[field!("dev", &[4], ev_dev), field!("ino", &[8], ev_ino)];

const EXT4_OP: &str = "ext4 only";
const XFS_OP: &str = "XFS only";
const SYSCALLS: &str = "filesystems without their own probes here (btrfs, ...); user tasks only";

pub const FSOPS: &[FsProbe] = &[
    FsProbe {
        program: "fs_sys_exit",
        category: "raw_syscalls",
        event: "sys_exit",
        attach: Attach::Raw,
        args: &["struct pt_regs *", "long int"],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Ends,
        covers: "ends operations and early-exit DIOs at the syscall's return, every filesystem",
    },
    FsProbe {
        program: "fs_switch",
        category: "sched",
        event: "sched_switch",
        attach: Attach::Raw,
        args: &[],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Ends,
        covers: "ends kernel threads' operations once they let go of the invalidate_lock",
    },
    FsProbe {
        program: "fs_task_exit",
        category: "sched",
        event: "sched_process_exit",
        attach: Attach::Raw,
        args: &[],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Ends,
        covers: "ends what an exiting task had in flight",
    },
    FsProbe {
        program: "fs_falloc_enter",
        category: "syscalls",
        event: "sys_enter_fallocate",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[
            field!("fd", &[8], falloc_fd),
            field!("mode", &[8], falloc_mode),
            field!("offset", &[8], falloc_offset),
            field!("len", &[8], falloc_len),
        ],
        members: FD,
        flag: None,
        group: Group::Syscalls,
        covers: SYSCALLS,
    },
    FsProbe {
        program: "fs_ioctl_enter",
        category: "syscalls",
        event: "sys_enter_ioctl",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[
            field!("fd", &[8], ioctl_fd),
            field!("cmd", &[8], ioctl_cmd),
            field!("arg", &[8], ioctl_arg),
        ],
        members: FD,
        flag: None,
        group: Group::Syscalls,
        covers: "FS_IOC_UNRESVSP(64) and FS_IOC_ZERO_RANGE: the same",
    },
    FsProbe {
        program: "fs_ftrunc_enter",
        category: "syscalls",
        event: "sys_enter_ftruncate",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[
            field!("fd", &[8], ftrunc_fd),
            field!("length", &[8], ftrunc_len),
        ],
        members: FD,
        flag: None,
        group: Group::Syscalls,
        covers: SYSCALLS,
    },
    FsProbe {
        program: "fs_trunc_enter",
        category: "syscalls",
        event: "sys_enter_truncate",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[field!("length", &[8], trunc_len)],
        members: &[],
        flag: None,
        group: Group::Syscalls,
        covers: "the new size for XFS (truncate(2) by path is not followed to its file)",
    },
    FsProbe {
        program: "ext4_punch",
        category: "ext4",
        event: "ext4_punch_hole",
        attach: Attach::Raw,
        args: &["struct inode *", "loff_t", "loff_t"],
        fields: &[],
        members: INODE,
        flag: None,
        group: Group::Ext4,
        covers: EXT4_OP,
    },
    FsProbe {
        program: "ext4_zero",
        category: "ext4",
        event: "ext4_zero_range",
        attach: Attach::Raw,
        args: &["struct inode *", "loff_t", "loff_t"],
        fields: &[],
        members: INODE,
        flag: None,
        group: Group::Ext4,
        covers: EXT4_OP,
    },
    FsProbe {
        program: "ext4_collapse",
        category: "ext4",
        event: "ext4_collapse_range",
        attach: Attach::Raw,
        args: &["struct inode *", "loff_t", "loff_t"],
        fields: &[],
        members: INODE,
        flag: None,
        group: Group::Ext4,
        covers: EXT4_OP,
    },
    FsProbe {
        program: "ext4_insert",
        category: "ext4",
        event: "ext4_insert_range",
        attach: Attach::Raw,
        args: &["struct inode *", "loff_t", "loff_t"],
        fields: &[],
        members: INODE,
        flag: None,
        group: Group::Ext4,
        covers: EXT4_OP,
    },
    FsProbe {
        program: "ext4_trunc_enter",
        category: "ext4",
        event: "ext4_truncate_enter",
        attach: Attach::Raw,
        args: &["struct inode *"],
        fields: &[],
        members: &[
            km!("inode"."i_ino", inode_ino),
            km!("inode"."i_sb", inode_sb),
            km!("inode"."i_size", inode_size),
            km!("super_block"."s_dev", sb_dev),
            fsm!("inode"."i_mapping", inode_mapping),
            fsm!("inode"."i_nlink", inode_nlink),
        ],
        flag: None,
        group: Group::Ext4,
        covers: "ext4 only: a truncate not begun at setattr's size change",
    },
    FsProbe {
        program: "ext4_trunc_exit",
        category: "ext4",
        event: "ext4_truncate_exit",
        attach: Attach::Raw,
        args: &["struct inode *"],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Ext4,
        covers: "ext4 only: truncate's window end",
    },
    FsProbe {
        program: "ext4_dirty",
        category: "ext4",
        event: "ext4_mark_inode_dirty",
        attach: Attach::Raw,
        args: &["struct inode *", "long unsigned int"],
        fields: &[],
        members: INODE,
        flag: None,
        group: Group::Ext4Window,
        covers: "ext4 only: truncate begins at ext4_setattr's size change",
    },
    FsProbe {
        program: "ext4_rmspace",
        category: "ext4",
        event: "ext4_ext_remove_space_done",
        attach: Attach::Tracepoint,
        args: &[],
        fields: DEV_INO,
        members: &[],
        flag: None,
        group: Group::Ext4Window,
        covers: "ext4 only: punch and collapse windows end (extent-mapped files)",
    },
    FsProbe {
        program: "xfs_free",
        category: "xfs",
        event: "xfs_free_file_space",
        attach: Attach::Raw,
        args: &["struct xfs_inode *"],
        fields: &[],
        members: XFS_INODE,
        flag: None,
        group: Group::Xfs,
        covers: XFS_OP,
    },
    FsProbe {
        program: "xfs_zero",
        category: "xfs",
        event: "xfs_zero_file_space",
        attach: Attach::Raw,
        args: &["struct xfs_inode *"],
        fields: &[],
        members: XFS_INODE,
        flag: None,
        group: Group::Xfs,
        covers: XFS_OP,
    },
    FsProbe {
        program: "xfs_collapse",
        category: "xfs",
        event: "xfs_collapse_file_space",
        attach: Attach::Raw,
        args: &["struct xfs_inode *"],
        fields: &[],
        members: XFS_INODE,
        flag: None,
        group: Group::Xfs,
        covers: XFS_OP,
    },
    FsProbe {
        program: "xfs_insert",
        category: "xfs",
        event: "xfs_insert_file_space",
        attach: Attach::Raw,
        args: &["struct xfs_inode *"],
        fields: &[],
        members: XFS_INODE,
        flag: None,
        group: Group::Xfs,
        covers: XFS_OP,
    },
    FsProbe {
        program: "xfs_setattr",
        category: "xfs",
        event: "xfs_setattr",
        attach: Attach::Raw,
        args: &["struct xfs_inode *"],
        fields: &[],
        members: XFS_INODE,
        flag: None,
        group: Group::Xfs,
        covers: "XFS only: truncate (a setattr holding the MMAPLOCK)",
    },
    FsProbe {
        program: "xfs_iunlock_end",
        category: "xfs",
        event: "xfs_iunlock",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[
            field!("dev", &[4], ev_dev),
            field!("ino", &[8], ev_ino),
            field!("lock_flags", &[4], iunlock_flags),
        ],
        members: &[],
        flag: Some(("MMAPLOCK_EXCL", |o| &mut o.xfs_mmaplock_excl)),
        group: Group::Xfs,
        covers: "XFS only: an operation ends when its MMAPLOCK is released",
    },
    FsProbe {
        program: "xfs_itrunc_end",
        category: "xfs",
        event: "xfs_itruncate_extents_end",
        attach: Attach::Tracepoint,
        args: &[],
        fields: DEV_INO,
        members: &[],
        flag: None,
        group: Group::XfsWindow,
        covers: "XFS only: truncate and collapse windows end",
    },
    FsProbe {
        program: "iomap_zero_iter",
        category: "iomap",
        event: "iomap_iter",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[
            field!("dev", &[4], ev_dev),
            field!("ino", &[8], ev_ino),
            field!("flags", &[4], iter_flags),
        ],
        members: &[],
        flag: Some(("ZERO", |o| &mut o.iomap_zero)),
        group: Group::Dio,
        covers: "XFS punch and zero windows end; a DIO past its early exits is left to its completion",
    },
    FsProbe {
        program: "dio_queued",
        category: "iomap",
        event: "iomap_dio_rw_queued",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Dio,
        covers: "DIOs that will complete later are told from early exits",
    },
    FsProbe {
        program: "dio_inval_fail",
        category: "iomap",
        event: "iomap_dio_invalidate_fail",
        attach: Attach::Tracepoint,
        args: &[],
        fields: &[],
        members: &[],
        flag: None,
        group: Group::Dio,
        covers: "a DIO's -ENOTBLK fallback to buffered IO",
    },
];

/// Members the invalidation windows need: whether the current task holds
/// `mapping->invalidate_lock` for write is read from the rw_semaphore.
const OWNER: &[(&str, &str, Slot)] = &[
    ("address_space", "invalidate_lock", |o| {
        &mut o.mapping_invalidate_lock
    }),
    ("rw_semaphore", "owner", |o| &mut o.rwsem_owner),
    ("rw_semaphore", "count", |o| &mut o.rwsem_count),
];

/// Everything [`resolve`] decided.
pub struct Plan {
    pub layout: FsopsLayout,
    /// Per probe of [`FSOPS`]: ready to attach, or why not.
    pub ready: Vec<Result<(), String>>,
    /// Lines for `rltop probes` and `rltop record`: windows, page size.
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether the program `p` of [`FSOPS`] is ready.
    pub fn is_ready(&self, p: &str) -> bool {
        FSOPS
            .iter()
            .zip(&self.ready)
            .any(|(s, r)| s.program == p && r.is_ok())
    }
}

/// The value of flag `name` in a tracefs `print fmt` (`__print_flags(...,
/// { (1 << 1), "ZERO" }, ...)`, or `{ ( int) (( __kernel_rwf_t)0x8), "NOWAIT" }`).
pub fn print_flag(format_text: &str, name: &str) -> Option<u32> {
    let pat = format!("\"{name}\"");
    let at = format_text.find(&pat)?;
    let open = format_text[..at].rfind('{')?;
    let expr = format_text[open + 1..at]
        .trim()
        .trim_end_matches(',')
        .trim();
    if let Some((a, b)) = expr.split_once("<<") {
        let num = |s: &str| -> Option<u32> {
            let s: String = s
                .chars()
                .filter(|c| c.is_ascii_hexdigit() || *c == 'x')
                .collect();
            let s = s.trim_start_matches(|c: char| !c.is_ascii_digit());
            s.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        };
        let (a, b) = (num(a)?, num(b)?);
        return 1u32.checked_shl(b).map(|v| v.wrapping_mul(a));
    }
    // The last number: hexadecimal or decimal.
    let last = expr
        .rsplit(|c: char| !(c.is_ascii_alphanumeric()))
        .find(|t| !t.is_empty() && t.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    match last.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => last.parse().ok(),
    }
}

/// `ext4_setattr`'s address and the next text symbol's, from kallsyms text.
pub fn symbol_range(kallsyms: &str, name: &str) -> Option<(u64, u64)> {
    let mut addrs: Vec<(u64, bool)> = Vec::new();
    for l in kallsyms.lines() {
        let mut it = l.split_whitespace();
        let (Some(a), Some(ty), Some(n)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if !matches!(ty, "t" | "T") || it.next().is_some() {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(a, 16) {
            addrs.push((a, n == name));
        }
    }
    let start = addrs.iter().find(|(_, is)| *is)?.0;
    if start == 0 {
        return None;
    }
    let end = addrs
        .iter()
        .filter(|(a, _)| *a > start)
        .map(|(a, _)| *a)
        .min()?;
    Some((start, end))
}

/// Checks every probe of [`FSOPS`] (see the module docs).
#[allow(clippy::too_many_lines)] // start-up in order: each step needs the ones before it
pub fn resolve(
    tracefs: &Tracefs,
    btf: Option<&Btf>,
    kallsyms: Option<&str>,
    dio_ready: bool,
    page_size: u64,
    kernel: &mut KernelOffsets,
) -> Plan {
    let mut layout = FsopsLayout::NONE;
    layout.page_shift = page_size.trailing_zeros();
    let mut ready: Vec<Result<(), String>> = FSOPS
        .iter()
        .map(|p| resolve_one(p, tracefs, btf, &mut layout, kernel))
        .collect();
    let mut notes = Vec::new();
    let idx = |p: &str| {
        FSOPS
            .iter()
            .position(|s| s.program == p)
            .expect("known program")
    };
    let ok = |ready: &[Result<(), String>], p: &str| ready[idx(p)].is_ok();

    // ext4's setattr truncate begin needs the function's range.
    match kallsyms.and_then(|k| symbol_range(k, "ext4_setattr")) {
        Some((a, b)) => {
            layout.ext4_setattr = a;
            layout.ext4_setattr_end = b;
        }
        None => {
            let i = idx("ext4_dirty");
            if ready[i].is_ok() {
                ready[i] = Err("no ext4_setattr in /proc/kallsyms (its address bounds the size change's caller)".into());
            }
        }
    }
    // The ends come first: without them, nothing begins.
    let ends = ["fs_sys_exit", "fs_task_exit"];
    if let Some((bad, Err(e))) = ends
        .iter()
        .map(|p| (*p, &ready[idx(p)]))
        .find(|(_, r)| r.is_err())
    {
        let why = format!("needs {} ({e})", FSOPS[idx(bad)].name());
        for (p, r) in FSOPS.iter().zip(ready.iter_mut()) {
            if r.is_ok() && p.group != Group::Ends {
                *r = Err(why.clone());
            }
        }
    }
    if !dio_ready {
        for (p, r) in FSOPS.iter().zip(ready.iter_mut()) {
            if p.group == Group::Dio && r.is_ok() {
                *r = Err("needs iomap:iomap_dio_rw_begin (raw), which is not available".into());
            }
        }
    }
    // A filesystem's own probes go together: a gap would lose operations
    // the syscall stand-in no longer covers.
    for (group, win, label, bit) in [
        (Group::Ext4, Group::Ext4Window, "ext4", OWN_EXT4),
        (Group::Xfs, Group::XfsWindow, "XFS", OWN_XFS),
    ] {
        let missing: Vec<String> = FSOPS
            .iter()
            .zip(&ready)
            .filter(|(p, r)| p.group == group && r.is_err())
            .map(|(p, _)| p.name())
            .collect();
        if missing.is_empty() {
            layout.own |= bit;
        } else {
            let why = format!(
                "{label}'s own probes attach together, and {} cannot; {label} is covered by the syscall probes instead",
                missing.join(", ")
            );
            for (p, r) in FSOPS.iter().zip(ready.iter_mut()) {
                if (p.group == group || p.group == win) && r.is_ok() {
                    *r = Err(why.clone());
                }
            }
        }
    }
    if layout.own & OWN_XFS != 0 && !ok(&ready, "fs_falloc_enter") {
        notes.push("XFS operations: no syscall arguments here, so their ranges are unknown (given as the whole file)".into());
    }

    // Windows: the owner check, and a proven end point per operation.
    let owner = btf.map_or(Err("kernel BTF is not available".to_string()), |b| {
        let mut l = layout;
        let mut missing = Vec::new();
        for (s, m, slot) in OWNER {
            match b.member_offset(s, m) {
                Ok(off) => *slot(&mut l) = off,
                Err(e) => missing.push(e.to_string()),
            }
        }
        if missing.is_empty() {
            layout = l;
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    });
    let mut with: Vec<&str> = Vec::new();
    let mut without: Vec<&str> = Vec::new();
    let ext4 = layout.own & OWN_EXT4 != 0;
    let xfs = layout.own & OWN_XFS != 0;
    let mut window = |on: bool, fs: u32, op: u32, name: &'static str| {
        if on && owner.is_ok() {
            layout.windows |= 1 << (8 * fs + op);
            with.push(name);
        } else {
            without.push(name);
        }
    };
    let truncate = rl_common::WINDOW_TRUNCATE;
    let rm = ext4 && ok(&ready, "ext4_rmspace");
    window(rm, 0, FsOp::Punch as u32, "ext4 punch");
    window(rm, 0, FsOp::Collapse as u32, "ext4 collapse");
    window(
        ext4 && ok(&ready, "ext4_dirty"),
        0,
        truncate,
        "ext4 truncate",
    );
    let zero_iter = xfs && ok(&ready, "iomap_zero_iter");
    window(zero_iter, 1, FsOp::Punch as u32, "XFS punch");
    window(zero_iter, 1, FsOp::Zero as u32, "XFS zero");
    let itrunc = xfs && ok(&ready, "xfs_itrunc_end");
    window(itrunc, 1, FsOp::Collapse as u32, "XFS collapse");
    window(itrunc, 1, truncate, "XFS truncate");
    match &owner {
        Ok(()) => notes.push(format!(
            "invalidation windows: {}; none for ext4 zero and insert, XFS insert (no point after their work under the lock), \
             nor for other filesystems (btrfs locks its own i_mmap_lock, not the mapping's invalidate_lock; the syscall probes \
             are outside any lock){}",
            if with.is_empty() { "none".to_string() } else { with.join(", ") },
            if without.is_empty() {
                String::new()
            } else {
                format!("; not on this kernel (their probes are not attached): {}", without.join(", "))
            }
        )),
        Err(why) => notes.push(format!(
            "no invalidation windows: the owner of the mapping's invalidate_lock cannot be read ({why})"
        )),
    }
    // A DIO in the IO loop (`iomap_iter` with IOMAP_DIRECT) is past its
    // early exits.
    if let Ok(text) = std::fs::read_to_string(tracefs.root().join("events/iomap/iomap_iter/format"))
        && let Some(v) = print_flag(&text, "DIRECT")
    {
        layout.iomap_direct = v;
    }
    // The early-exit return value of a NOWAIT DIO: the flag's value.
    if let (Some(b), Ok(text)) = (
        btf,
        std::fs::read_to_string(
            tracefs
                .root()
                .join("events/iomap/iomap_dio_rw_begin/format"),
        ),
    ) && let (Ok(off), Some(v)) = (
        b.member_offset("kiocb", "ki_flags"),
        print_flag(&text, "NOWAIT"),
    ) {
        layout.kiocb_flags = off;
        layout.iocb_nowait = v;
    }
    notes.push(format!("page size {page_size} bytes"));
    Plan {
        layout,
        ready,
        notes,
    }
}

fn resolve_one(
    p: &FsProbe,
    tracefs: &Tracefs,
    btf: Option<&Btf>,
    layout: &mut FsopsLayout,
    kernel: &mut KernelOffsets,
) -> Result<(), String> {
    if !tracefs.has_event(p.category, p.event) {
        return Err("tracepoint not in this kernel".into());
    }
    let mut missing = Vec::new();
    let mut l = *layout;
    let mut k = *kernel;
    if !p.fields.is_empty() || p.flag.is_some() {
        let path = tracefs
            .root()
            .join("events")
            .join(p.category)
            .join(p.event)
            .join("format");
        let text = std::fs::read_to_string(&path)
            .map_err(|_| "cannot read its tracefs format file".to_string())?;
        let format = super::tracefs::parse_format(&text);
        for f in p.fields {
            match format.field(f.name) {
                Some(found) if (found.offset + found.size) as usize > TP_PREFIX => {
                    missing.push(format!(
                        "field {} ends beyond the {TP_PREFIX} bytes rltop reads",
                        f.name
                    ))
                }
                Some(found) if !f.sizes.contains(&found.size) => missing.push(format!(
                    "field {} has size {} (expected {:?}): unexpected layout",
                    f.name, found.size, f.sizes
                )),
                Some(found) => {
                    let slot = (f.slot)(&mut l);
                    if *slot != NO_FIELD && *slot != found.offset {
                        missing.push(format!(
                            "field {} is at offset {} here but {} in a sibling event",
                            f.name, found.offset, *slot
                        ));
                    } else {
                        *slot = found.offset;
                    }
                }
                None => missing.push(format!("no field {}", f.name)),
            }
        }
        if let Some((name, slot)) = p.flag {
            match print_flag(&text, name) {
                Some(v) if v != 0 => *slot(&mut l) = v,
                _ => missing.push(format!("its print fmt has no flag {name}")),
            }
        }
    }
    if !p.args.is_empty() {
        match btf.map(|b| b.tracepoint_args(p.event)) {
            None => missing.push("kernel BTF (/sys/kernel/btf/vmlinux) is not available".into()),
            Some(None) => missing.push(format!(
                "BTF has no prototype for tracepoint {} (a module's tracepoint: module BTF is not read)",
                p.event
            )),
            Some(Some(have)) if !have.starts_with(&p.args.iter().map(|a| a.to_string()).collect::<Vec<_>>()) => {
                missing.push(format!(
                    "its arguments are ({}) here, rltop reads ({}): unexpected layout",
                    have.join(", "),
                    p.args.join(", ")
                ))
            }
            Some(Some(_)) => {}
        }
    }
    if !p.members.is_empty() {
        match btf {
            None => missing.push("kernel BTF (/sys/kernel/btf/vmlinux) is not available".into()),
            Some(btf) => {
                for m in p.members {
                    let (s, mm) = match m {
                        Member::Fs(s, mm, _) | Member::Kernel(s, mm, _) => (*s, *mm),
                    };
                    match btf.member_offset(s, mm) {
                        Ok(off) => match m {
                            Member::Fs(_, _, slot) => *slot(&mut l) = off,
                            Member::Kernel(_, _, slot) => *slot(&mut k) = off,
                        },
                        Err(e) => missing.push(e.to_string()),
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        *layout = l;
        *kernel = k;
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// Loads and attaches the ready probes; one report per probe, saying what
/// it covers.
pub fn attach(ebpf: &mut Ebpf, plan: &Plan) -> Vec<ProbeReport> {
    FSOPS
        .iter()
        .zip(&plan.ready)
        .map(|(p, r)| {
            let status = match r {
                Err(why) => Status::Unavailable(why.clone()),
                Ok(()) => {
                    let spec = ProbeSpec {
                        program: p.program,
                        category: p.category,
                        event: p.event,
                        attach: p.attach,
                        fields: &[],
                        members: &[],
                        args: &[],
                        requires: None,
                        arg_shift: None,
                    };
                    match super::attach(ebpf, &spec) {
                        Ok(insns) => Status::Attached {
                            verified_insns: insns,
                        },
                        Err(e) => Status::Failed(format!("{e:#}")),
                    }
                }
            };
            ProbeReport {
                name: p.name(),
                program: p.program,
                status,
                covers: Some(p.covers),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_from_print_fmt() {
        let iter = r#"print fmt: "flags %s", __print_flags(REC->flags, "|", { (1 << 0), "WRITE" }, { (1 << 1), "ZERO" }, { (1 << 2), "REPORT" })"#;
        assert_eq!(print_flag(iter, "ZERO"), Some(2));
        assert_eq!(print_flag(iter, "WRITE"), Some(1));
        let xfs = r#"__print_flags(REC->lock_flags, "|", { (1u << 0), "IOLOCK_EXCL" }, { (1u << 4), "MMAPLOCK_EXCL" }, { (1u << 5), "MMAPLOCK_SHARED" })"#;
        assert_eq!(print_flag(xfs, "MMAPLOCK_EXCL"), Some(16));
        let dio = r#"{ ( int) (( __kernel_rwf_t)0x00000008), "NOWAIT" }, { (1 << 16), "EVENTFD"}"#;
        assert_eq!(print_flag(dio, "NOWAIT"), Some(8));
        assert_eq!(print_flag(dio, "EVENTFD"), Some(1 << 16));
        assert_eq!(print_flag(dio, "NOPE"), None);
    }

    #[test]
    fn a_symbols_range_ends_at_the_next_symbol() {
        let k = "ffffffff81000100 T ext4_setattr\nffffffff81000000 T a\nffffffff81000300 t b\nffffffff81000200 r data\nffffffff81000180 t mod_fn\t[ext4]\n";
        assert_eq!(
            symbol_range(k, "ext4_setattr"),
            Some((0xffffffff81000100, 0xffffffff81000300))
        );
        assert_eq!(symbol_range(k, "nope"), None);
        // Without kallsyms addresses (kptr_restrict): none.
        assert_eq!(
            symbol_range("0000000000000000 T ext4_setattr\n", "ext4_setattr"),
            None
        );
    }

    fn fake_tracefs(events: &[(&str, &str, &str)]) -> (tempfile::TempDir, Tracefs) {
        let dir = tempfile::tempdir().unwrap();
        for (cat, name, text) in events {
            let d = dir.path().join("events").join(cat).join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("format"), text).unwrap();
        }
        let t = Tracefs::at(dir.path());
        (dir, t)
    }

    /// Without XFS's tracepoints (a kernel without XFS, or XFS a module),
    /// each XFS probe says why in one line, XFS goes to the syscall probes,
    /// and ext4's probes do not care.
    #[test]
    fn a_filesystem_without_its_tracepoints_goes_to_the_syscall_probes() {
        let (_d, t) = fake_tracefs(&[
            ("raw_syscalls", "sys_exit", ""),
            ("sched", "sched_process_exit", ""),
            ("sched", "sched_switch", ""),
            ("xfs", "xfs_free_file_space", ""),
        ]);
        let mut k = KernelOffsets::NONE;
        let plan = resolve(&t, None, None, false, 4096, &mut k);
        let why = |p: &str| {
            plan.ready[FSOPS.iter().position(|s| s.program == p).unwrap()]
                .clone()
                .unwrap_err()
        };
        assert!(why("fs_sys_exit").contains("BTF"), "{}", why("fs_sys_exit"));
        assert_eq!(why("xfs_zero"), "tracepoint not in this kernel");
        assert_eq!(plan.layout.own, 0);
        assert!(why("dio_queued").contains("tracepoint not in this kernel"));
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("no invalidation windows"))
        );
        assert!(plan.notes.iter().any(|n| n == "page size 4096 bytes"));
    }

    #[test]
    fn this_kernel_resolves_every_probe() {
        // On the 6.18 machines rltop is developed on (ext4 and XFS built in,
        // kallsyms readable), everything resolves.
        let Ok((t, _)) = Tracefs::open() else { return };
        let Ok(btf) = Btf::from_kernel() else { return };
        let Ok(k) = std::fs::read_to_string("/proc/kallsyms") else {
            return;
        };
        if !t.has_event("xfs", "xfs_free_file_space") {
            return;
        }
        let mut ko = KernelOffsets::NONE;
        let plan = resolve(&t, Some(&btf), Some(&k), true, 4096, &mut ko);
        for (p, r) in FSOPS.iter().zip(&plan.ready) {
            if p.program == "ext4_dirty" && symbol_range(&k, "ext4_setattr").is_none() {
                continue; // not root: kallsyms addresses hidden
            }
            assert_eq!(r, &Ok(()), "{}", p.name());
        }
        assert_eq!(plan.layout.own, OWN_EXT4 | OWN_XFS);
        assert_eq!(plan.layout.xfs_mmaplock_excl, 1 << 4);
        assert_eq!(plan.layout.iomap_zero, 1 << 1);
        assert_ne!(plan.layout.rwsem_owner, NO_FIELD);
    }
}
