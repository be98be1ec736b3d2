//! File-operation kprobes (`rl-ebpf/src/kfile.rs`): the fault, DIO, punch
//! hole and truncate events on kernels that lack the tracepoints of the
//! tracepoint profile (Debian's 6.1), or instead of them under
//! `--profile kprobes`. Each one stands in for tracepoint programs and is
//! attached only when those are not: an event is never recorded twice.

use rl_common::KernelOffsets;

use super::btf::Btf;
use super::catalog::BtfMember;
use super::profile::Kallsyms;

/// The reason of a stand-in whose tracepoint attaches: nothing is missing.
pub const TRACEPOINT_USED: &str = "its tracepoint is used instead";

/// The reason given on kernels without kprobes.
pub const NO_KPROBES: &str = "this kernel has no kprobes";

pub struct KfileSpec {
    pub program: &'static str,
    pub symbol: &'static str,
    pub ret: bool,
    /// BTF members the program follows.
    pub members: &'static [BtfMember],
    /// The tracepoint programs it stands in for.
    pub instead_of: &'static [&'static str],
}

impl KfileSpec {
    pub fn name(&self) -> String {
        format!(
            "{}:{}",
            if self.ret { "kretprobe" } else { "kprobe" },
            self.symbol
        )
    }
}

macro_rules! m {
    ($s:literal . $m:literal, $slot:ident) => {
        BtfMember {
            strukt: $s,
            member: $m,
            slot: |o| &mut o.$slot,
        }
    };
}

const INODE: [BtfMember; 3] = [
    m!("inode"."i_ino", inode_ino),
    m!("inode"."i_sb", inode_sb),
    m!("super_block"."s_dev", sb_dev),
];

/// The filesystem-operation probes (`fsops.rs`) the punch and truncate
/// kprobes stand in for: any of them attached, and the kprobes step back;
/// under profile kprobes all of them are replaced (the kprobes see punch
/// and truncate only), so that nothing is counted twice.
const FSOPS_BEGINS: &[&str] = &[
    "fs_falloc_enter",
    "fs_ioctl_enter",
    "fs_ftrunc_enter",
    "fs_trunc_enter",
    "ext4_punch",
    "ext4_zero",
    "ext4_collapse",
    "ext4_insert",
    "ext4_trunc_enter",
    "ext4_trunc_exit",
    "ext4_dirty",
    "ext4_rmspace",
    "xfs_free",
    "xfs_zero",
    "xfs_collapse",
    "xfs_insert",
    "xfs_setattr",
    "xfs_iunlock_end",
    "xfs_itrunc_end",
    "iomap_zero_iter",
];
const PUNCH_PROBES: &[&str] = FSOPS_BEGINS;
const TRUNCATE_PROBES: &[&str] = FSOPS_BEGINS;

pub const KFILE: &[KfileSpec] = &[
    KfileSpec {
        program: "kfault",
        symbol: "filemap_fault",
        ret: false,
        members: &[
            m!("vm_fault"."vma", vmf_vma),
            m!("vm_fault"."pgoff", vmf_pgoff),
            m!("vm_area_struct"."vm_file", vma_file),
            m!("file"."f_inode", file_inode),
            INODE[0],
            INODE[1],
            INODE[2],
        ],
        instead_of: &["filemap_fault"],
    },
    KfileSpec {
        program: "kdio_begin",
        symbol: "iomap_dio_rw",
        ret: false,
        members: &[
            m!("kiocb"."ki_filp", kiocb_filp),
            m!("kiocb"."ki_pos", kiocb_pos),
            m!("file"."f_inode", file_inode),
            INODE[0],
            INODE[1],
            INODE[2],
            m!("iov_iter"."count", iter_count),
            m!("iov_iter"."data_source", iter_data_source),
        ],
        instead_of: &["dio_begin", "dio_complete"],
    },
    KfileSpec {
        program: "kdio_complete",
        symbol: "iomap_dio_complete",
        ret: false,
        members: &[m!("iomap_dio"."iocb", dio_iocb)],
        instead_of: &["dio_begin", "dio_complete"],
    },
    KfileSpec {
        program: "kdio_complete_ret",
        symbol: "iomap_dio_complete",
        ret: true,
        members: &[],
        instead_of: &["dio_begin", "dio_complete"],
    },
    KfileSpec {
        program: "kpunch",
        symbol: "vfs_fallocate",
        ret: false,
        members: &[
            m!("file"."f_inode", file_inode),
            INODE[0],
            INODE[1],
            INODE[2],
        ],
        instead_of: PUNCH_PROBES,
    },
    KfileSpec {
        program: "kpunch_ret",
        symbol: "vfs_fallocate",
        ret: true,
        members: &[],
        instead_of: PUNCH_PROBES,
    },
    KfileSpec {
        program: "ktruncate",
        symbol: "truncate_pagecache",
        ret: false,
        members: &[INODE[0], INODE[1], INODE[2]],
        instead_of: TRUNCATE_PROBES,
    },
    KfileSpec {
        program: "ktruncate_ret",
        symbol: "truncate_pagecache",
        ret: true,
        members: &[],
        instead_of: TRUNCATE_PROBES,
    },
];

/// For each kprobe: `Ok(())` to attach, or why not. `tp_ready` says
/// whether a tracepoint program attaches (then its stand-in does not);
/// `prefer` (profile `kprobes`) makes the kprobes win. Fills the BTF
/// offsets of the ready ones into `kernel`.
pub fn resolve(
    kprobes: bool,
    syms: Option<&Kallsyms>,
    btf: Option<&Btf>,
    prefer: bool,
    tp_ready: &dyn Fn(&str) -> bool,
    kernel: &mut KernelOffsets,
) -> Vec<Result<(), String>> {
    let mut out: Vec<Result<(), String>> = KFILE
        .iter()
        .map(|k| {
            if !prefer && k.instead_of.iter().any(|p| tp_ready(p)) {
                return Err(TRACEPOINT_USED.to_string());
            }
            let Some(btf) = btf else {
                return Err("kernel BTF (/sys/kernel/btf/vmlinux) is not available".into());
            };
            let mut missing = Vec::new();
            let mut offs = *kernel;
            for m in k.members {
                match btf.member_offset(m.strukt, m.member) {
                    Ok(off) => *(m.slot)(&mut offs) = off,
                    Err(e) => missing.push(e.to_string()),
                }
            }
            if !missing.is_empty() {
                return Err(missing.join("; "));
            }
            // Offsets first: `rltop probes` still verifies the program on a
            // kernel without kprobes.
            *kernel = offs;
            if !kprobes {
                return Err(NO_KPROBES.into());
            }
            if !syms.is_some_and(|s| s.has(k.symbol)) {
                return Err(format!("no {} in /proc/kallsyms", k.symbol));
            }
            Ok(())
        })
        .collect();
    // An entry and its return go together, as do DIO begin and end.
    let groups: &[&[&str]] = &[
        &["kdio_begin", "kdio_complete", "kdio_complete_ret"],
        &["kpunch", "kpunch_ret"],
        &["ktruncate", "ktruncate_ret"],
    ];
    for g in groups {
        let idx: Vec<usize> = g
            .iter()
            .filter_map(|p| KFILE.iter().position(|k| k.program == *p))
            .collect();
        if let Some((bad, Err(e))) = idx.iter().map(|&i| (i, &out[i])).find(|(_, r)| r.is_err()) {
            let why = format!("needs {} ({e})", KFILE[bad].name());
            for &i in &idx {
                if out[i].is_ok() {
                    out[i] = Err(why.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: &[Result<(), String>], program: &str, ret: bool) -> Result<(), String> {
        let i = KFILE
            .iter()
            .position(|k| k.program == program && k.ret == ret)
            .unwrap();
        r[i].clone()
    }

    #[test]
    fn a_kprobe_stands_in_only_where_its_tracepoint_is_missing() {
        let mut k = KernelOffsets::NONE;
        // Every tracepoint there: no kprobe, whatever else is missing.
        let r = resolve(false, None, None, false, &|_| true, &mut k);
        assert!(r.iter().all(|s| s.as_ref().unwrap_err() == TRACEPOINT_USED));
        // Only the punch tracepoint there: its stand-ins step back, the
        // others say what they lack (here BTF).
        let r = resolve(true, None, None, false, &|p| p == "ext4_punch", &mut k);
        assert_eq!(status(&r, "kpunch", false).unwrap_err(), TRACEPOINT_USED);
        assert_eq!(status(&r, "kpunch_ret", true).unwrap_err(), TRACEPOINT_USED);
        assert!(status(&r, "kfault", false).unwrap_err().contains("BTF"));
        // Profile kprobes: the kprobes are wanted even where tracepoints attach.
        let r = resolve(true, None, None, true, &|_| true, &mut k);
        assert!(status(&r, "kfault", false).unwrap_err().contains("BTF"));
        assert_eq!(k, KernelOffsets::NONE, "nothing resolved, nothing written");
    }

    #[test]
    fn an_entry_without_its_return_is_not_attached() {
        let syms =
            Kallsyms::parse("ffffffff81000000 T iomap_dio_rw\nffffffff81000100 T vfs_fallocate\n");
        // A kernel's BTF, when this machine has one: then only the missing
        // iomap_dio_complete and truncate_pagecache symbols hold things back.
        let Ok(btf) = Btf::from_kernel() else { return };
        let mut k = KernelOffsets::NONE;
        let r = resolve(true, Some(&syms), Some(&btf), true, &|_| false, &mut k);
        assert!(
            status(&r, "kdio_begin", false).unwrap_err().contains(
                "needs kprobe:iomap_dio_complete (no iomap_dio_complete in /proc/kallsyms)"
            ),
            "{r:?}"
        );
        assert_eq!(status(&r, "kpunch", false), Ok(()));
        assert_eq!(status(&r, "kpunch_ret", true), Ok(()));
        assert!(k.file_inode != rl_common::NO_FIELD);
    }
}
