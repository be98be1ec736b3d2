//! What rltop can attach, and what each probe needs from the kernel.
//!
//! Every probe names its eBPF program, the tracepoint it attaches to, the
//! tracefs fields it reads (with the sizes the program reads them as) and the
//! BTF struct members it follows. [`resolve`] checks all of that against the
//! running kernel and fills the offset globals; a probe with anything missing
//! is not attached, and the reason says exactly what is missing.

use rl_common::{KernelOffsets, NO_FIELD, TP_PREFIX, TpOffsets};

use super::btf::Btf;
use super::tracefs::Tracefs;

/// How a probe attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A formatted tracepoint: the program reads the record at tracefs offsets.
    Tracepoint,
    /// A raw tracepoint: the program gets the tracepoint's C arguments.
    Raw,
    /// A BTF-typed raw tracepoint (`tp_btf`): C arguments whose pointers
    /// the program may follow with plain loads, checked by the verifier.
    Btf,
}

/// A tracefs field a program reads: its name, the sizes the program can read
/// it as, and the slot in [`TpOffsets`] that carries its offset.
pub struct TpField {
    pub name: &'static str,
    pub sizes: &'static [u32],
    pub slot: fn(&mut TpOffsets) -> &mut u32,
    /// An optional field may be absent; the program then reads 0.
    pub optional: bool,
}

/// A BTF member a program follows, and its slot in [`KernelOffsets`].
#[derive(Clone, Copy)]
pub struct BtfMember {
    pub strukt: &'static str,
    pub member: &'static str,
    pub slot: fn(&mut KernelOffsets) -> &mut u32,
}

pub struct ProbeSpec {
    /// eBPF program name (the function in rl-ebpf).
    pub program: &'static str,
    pub category: &'static str,
    pub event: &'static str,
    pub attach: Attach,
    pub fields: &'static [TpField],
    pub members: &'static [BtfMember],
    /// For raw tracepoints: the leading C argument types the program reads,
    /// checked against the tracepoint's prototype in BTF.
    pub args: &'static [&'static str],
    /// Probes that only make sense with another one (an end without its begin).
    pub requires: Option<&'static str>,
    /// Where the program learns how many optional arguments (an `args`
    /// entry ending in `?`) this kernel's prototype has before the ones it
    /// reads: 6.1's `mmap_lock_*(mm, memcg_path, write)` against later
    /// kernels' `(mm, write)`.
    pub arg_shift: Option<fn(&mut KernelOffsets) -> &mut u32>,
}

impl ProbeSpec {
    /// `category:event`, as perf and bpftrace name tracepoints.
    pub fn name(&self) -> String {
        match self.attach {
            Attach::Tracepoint => format!("{}:{}", self.category, self.event),
            Attach::Raw => format!("{}:{} (raw)", self.category, self.event),
            Attach::Btf => format!("{}:{} (tp_btf)", self.category, self.event),
        }
    }
}

macro_rules! f {
    ($name:literal, $sizes:expr, $slot:ident) => {
        TpField {
            name: $name,
            sizes: $sizes,
            slot: |o| &mut o.$slot,
            optional: false,
        }
    };
    ($name:literal, $sizes:expr, $slot:ident, optional) => {
        TpField {
            name: $name,
            sizes: $sizes,
            slot: |o| &mut o.$slot,
            optional: true,
        }
    };
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

/// `mmap_lock_start_locking` and `_released`: (mm, write), with the
/// memcg path between them on 6.1 (`char *memcg_path`; 6.2 and later have
/// no path, include/trace/events/mmap_lock.h).
const MMAP_ARGS: &[&str] = &["struct mm_struct *", "char *?", "bool"];
const INODE_MEMBERS: [BtfMember; 4] = [
    m!("inode"."i_ino", inode_ino),
    m!("inode"."i_sb", inode_sb),
    m!("inode"."i_size", inode_size),
    m!("super_block"."s_dev", sb_dev),
];

/// `task_struct.pid` (the tid), read by the raw task life-cycle programs.
const TASK_PID: BtfMember = m!("task_struct"."pid", task_pid);

/// `task_struct.tgid`: whether a forked task is a process (rltop's
/// command, or a process of its tree), and whether a freed one was.
const TASK_TGID: BtfMember = m!("task_struct"."tgid", task_tgid);

/// The BTF-typed page-cache add: where it attaches, the formatted program
/// of the same tracepoint and the page-add file learner are not attached
/// ([`PAGE_ADD_BTF_USED`]), as it does both jobs in one run.
pub const PAGE_ADD_BTF: &str = "filemap_add_btf";
pub const PAGE_ADD_FORMATTED: &str = "filemap_add";
pub const PAGE_ADD_BTF_USED: &str = "the BTF-typed program of this tracepoint is used instead";

/// The tracepoint profile: every probe rltop has on a mainline kernel.
pub const TRACEPOINTS: &[ProbeSpec] = &[
    ProbeSpec {
        program: "mmap_lock_start_locking",
        category: "mmap_lock",
        event: "mmap_lock_start_locking",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: MMAP_ARGS,
        requires: None,
        arg_shift: Some(|k| &mut k.mmap_arg_shift),
    },
    ProbeSpec {
        program: "mmap_lock_acquire_returned",
        category: "mmap_lock",
        event: "mmap_lock_acquire_returned",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["struct mm_struct *", "char *?", "bool", "bool"],
        requires: None,
        arg_shift: Some(|k| &mut k.mmap_arg_shift),
    },
    ProbeSpec {
        program: "mmap_lock_released",
        category: "mmap_lock",
        event: "mmap_lock_released",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: MMAP_ARGS,
        requires: None,
        arg_shift: Some(|k| &mut k.mmap_arg_shift),
    },
    ProbeSpec {
        program: "filemap_fault",
        category: "filemap",
        event: "mm_filemap_fault",
        attach: Attach::Btf,
        fields: &[],
        members: &[
            m!("address_space"."host", mapping_host),
            INODE_MEMBERS[0],
            INODE_MEMBERS[1],
            INODE_MEMBERS[3],
        ],
        args: &["struct address_space *", "long unsigned int"],
        requires: None,
        arg_shift: None,
    },
    // Before the formatted program of the same event, which attaches only
    // where this one does not (`PAGE_ADD_BTF`).
    ProbeSpec {
        program: PAGE_ADD_BTF,
        category: "filemap",
        event: "mm_filemap_add_to_page_cache",
        attach: Attach::Btf,
        fields: &[],
        members: &[
            m!("folio"."mapping", folio_mapping),
            m!("folio"."index", folio_index),
            m!("folio"."flags", folio_flags),
            m!("folio"."_flags_1", folio_flags1),
            m!("address_space"."host", mapping_host),
            INODE_MEMBERS[0],
            INODE_MEMBERS[1],
            INODE_MEMBERS[3],
        ],
        args: &["struct folio *"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: PAGE_ADD_FORMATTED,
        category: "filemap",
        event: "mm_filemap_add_to_page_cache",
        attach: Attach::Tracepoint,
        fields: &[
            f!("i_ino", &[8], add_ino),
            f!("s_dev", &[4], add_dev),
            f!("index", &[8], add_index),
            f!("order", &[1], add_order, optional),
        ],
        members: &[],
        args: &[],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "dio_begin",
        category: "iomap",
        event: "iomap_dio_rw_begin",
        attach: Attach::Btf,
        fields: &[],
        members: &[
            m!("kiocb"."ki_filp", kiocb_filp),
            m!("kiocb"."ki_pos", kiocb_pos),
            m!("file"."f_inode", file_inode),
            INODE_MEMBERS[0],
            INODE_MEMBERS[1],
            INODE_MEMBERS[2],
            INODE_MEMBERS[3],
            m!("iov_iter"."count", iter_count),
            m!("iov_iter"."data_source", iter_data_source),
        ],
        args: &["struct kiocb *", "struct iov_iter *"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "dio_complete",
        category: "iomap",
        event: "iomap_dio_complete",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["struct kiocb *", "int", "ssize_t"],
        requires: Some("dio_begin"),
        arg_shift: None,
    },
    ProbeSpec {
        program: "contention_begin",
        category: "lock",
        event: "contention_begin",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["void *", "unsigned int"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "contention_end",
        category: "lock",
        event: "contention_end",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["void *", "int"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "console",
        category: "printk",
        event: "console",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["char *", "size_t"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "task_exit",
        category: "sched",
        event: "sched_process_exit",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &[],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        // rltop's own: hands a CPU's staged records to the ring on request.
        program: "flush_kick",
        category: "syscalls",
        event: "sys_enter_getppid",
        attach: Attach::Tracepoint,
        fields: &[],
        members: &[],
        args: &[],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "task_free",
        category: "sched",
        event: "sched_process_free",
        attach: Attach::Raw,
        fields: &[],
        members: &[TASK_PID, TASK_TGID],
        args: &["struct task_struct *"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "task_fork",
        category: "sched",
        event: "sched_process_fork",
        attach: Attach::Raw,
        fields: &[],
        members: &[TASK_PID, TASK_TGID],
        args: &["struct task_struct *", "struct task_struct *"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "task_exec",
        category: "sched",
        event: "sched_process_exec",
        attach: Attach::Raw,
        fields: &[],
        members: &[],
        args: &["struct task_struct *", "pid_t", "struct linux_binprm *"],
        requires: None,
        arg_shift: None,
    },
    ProbeSpec {
        program: "task_rename",
        category: "task",
        event: "task_rename",
        attach: Attach::Raw,
        fields: &[],
        members: &[TASK_PID],
        args: &["struct task_struct *", "char *"],
        requires: None,
        arg_shift: None,
    },
];

/// The offsets every ready probe needs, and for each probe of the profile
/// either `Ok(())` (ready to attach) or what is missing.
pub struct Resolved {
    pub tp: TpOffsets,
    pub kernel: KernelOffsets,
    pub ready: Vec<Result<(), String>>,
}

/// Checks `specs` against the kernel: tracepoints in `tracefs`, their fields
/// and sizes, and struct members in `btf` (None when the kernel has no BTF).
/// Whether a prototype `have` begins with the argument types `want`, where
/// a `want` entry ending in `?` may be there or not; how many of those are.
fn match_args(have: &[String], want: &[&str]) -> Option<u32> {
    let mut shift = 0;
    let mut h = have.iter();
    let mut next = h.next();
    for w in want {
        match w.strip_suffix('?') {
            Some(opt) => {
                if next.is_some_and(|a| a == opt) {
                    shift += 1;
                    next = h.next();
                }
            }
            None if next.is_some_and(|a| a == w) => next = h.next(),
            None => return None,
        }
    }
    Some(shift)
}

pub fn resolve(specs: &[ProbeSpec], tracefs: &Tracefs, btf: Option<&Btf>) -> Resolved {
    let mut tp = TpOffsets::NONE;
    let mut kernel = KernelOffsets::NONE;
    let mut ready: Vec<Result<(), String>> = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut r = resolve_one(spec, tracefs, btf, &mut tp, &mut kernel);
        if spec.program == PAGE_ADD_BTF && r.is_ok() {
            // `folio_test_large()` tests `PG_head`, whose bit number is a
            // kernel's own (enum pageflags).
            // Before 6.6 ("mm: free up a word in the first tail page") a
            // large folio's order was its own byte, `_folio_order`, and the
            // low byte of `_flags_1` was not it (6.1 has both members).
            if let Some(off) = btf.and_then(|b| b.member_offset("folio", "_folio_order").ok()) {
                kernel.folio_order = off;
            }
            match btf.and_then(|b| b.enum_value("pageflags", "PG_head")) {
                Some(bit) if bit < 64 => kernel.folio_head_bit = bit,
                _ => r = Err("BTF has no PG_head in enum pageflags".into()),
            }
        }
        ready.push(r);
    }
    // Every program that names a task tells a kernel thread by
    // `task_struct.flags` where BTF has it; without it, `task` events just
    // do not say.
    if let Some(off) = btf.and_then(|b| b.member_offset("task_struct", "flags").ok()) {
        kernel.task_flags = off;
    }
    // An end probe is useless without its begin.
    for i in 0..specs.len() {
        if let (Ok(()), Some(req)) = (&ready[i], specs[i].requires)
            && let Some(j) = specs.iter().position(|s| s.program == req)
            && ready[j].is_err()
        {
            ready[i] = Err(format!("needs {} which is not available", specs[j].name()));
        }
    }
    Resolved { tp, kernel, ready }
}

fn resolve_one(
    spec: &ProbeSpec,
    tracefs: &Tracefs,
    btf: Option<&Btf>,
    tp: &mut TpOffsets,
    kernel: &mut KernelOffsets,
) -> Result<(), String> {
    if !tracefs.has_event(spec.category, spec.event) {
        return Err("tracepoint not in this kernel".into());
    }
    let mut missing = Vec::new();
    if !spec.fields.is_empty() {
        let format = tracefs
            .format(spec.category, spec.event)
            .ok_or_else(|| "cannot read its tracefs format file".to_string())?;
        for f in spec.fields {
            match format.field(f.name) {
                Some(found) if (found.offset + found.size) as usize > TP_PREFIX => missing.push(format!(
                    "field {} ends at byte {}, beyond the {TP_PREFIX} bytes rltop copies: unexpected layout",
                    f.name,
                    found.offset + found.size
                )),
                Some(found) if found.offset % found.size.max(1) != 0 => missing.push(format!(
                    "field {} at offset {} is not aligned to its size {}: unexpected layout",
                    f.name, found.offset, found.size
                )),
                Some(found) if f.sizes.contains(&found.size) => {
                    let slot = (f.slot)(tp);
                    if *slot != NO_FIELD && *slot != found.offset {
                        missing.push(format!(
                            "field {} is at offset {} here but {} in a sibling event",
                            f.name, found.offset, *slot
                        ));
                    } else {
                        *slot = found.offset;
                    }
                }
                Some(found) => missing.push(format!(
                    "field {} has size {} (expected {:?}): unexpected layout",
                    f.name, found.size, f.sizes
                )),
                None if f.optional => {}
                None => missing.push(format!("no field {}", f.name)),
            }
        }
    }
    if !spec.args.is_empty() {
        match btf.map(|b| b.tracepoint_args(spec.event)) {
            None => missing.push("kernel BTF (/sys/kernel/btf/vmlinux) is not available".into()),
            Some(None) => missing.push(format!(
                "BTF has no prototype for tracepoint {}",
                spec.event
            )),
            Some(Some(have)) => match match_args(&have, spec.args) {
                Some(shift) => {
                    if let Some(slot) = spec.arg_shift {
                        *slot(kernel) = shift;
                    }
                }
                None => missing.push(format!(
                    "its arguments are ({}) here, rltop reads ({}): unexpected layout",
                    have.join(", "),
                    spec.args.join(", ")
                )),
            },
        }
    }
    if !spec.members.is_empty() {
        match btf {
            None => missing.push("kernel BTF (/sys/kernel/btf/vmlinux) is not available".into()),
            Some(btf) => {
                for m in spec.members {
                    match btf.member_offset(m.strukt, m.member) {
                        Ok(off) => *(m.slot)(kernel) = off,
                        Err(e) => missing.push(e.to_string()),
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_tracefs(events: &[(&str, &str, &str)]) -> (tempfile::TempDir, Tracefs) {
        let dir = tempfile::tempdir().unwrap();
        for (cat, name, fields) in events {
            let d = dir.path().join("events").join(cat).join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("format"), format!("format:\n{fields}")).unwrap();
        }
        let t = Tracefs::at(dir.path());
        (dir, t)
    }

    /// The mmap_lock prototypes of 6.1 (with the memcg path) and of later
    /// kernels both match, and say where `write` is; others do not.
    #[test]
    fn optional_arguments_shift_the_ones_read() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let want = MMAP_ARGS;
        assert_eq!(
            match_args(&v(&["struct mm_struct *", "bool"]), want),
            Some(0)
        );
        assert_eq!(
            match_args(&v(&["struct mm_struct *", "char *", "bool"]), want),
            Some(1)
        );
        assert_eq!(match_args(&v(&["struct mm_struct *", "int"]), want), None);
        assert_eq!(match_args(&v(&["struct mm_struct *"]), want), None);
        assert_eq!(
            match_args(
                &v(&["struct mm_struct *", "char *", "bool", "bool"]),
                &["struct mm_struct *", "char *?", "bool", "bool"]
            ),
            Some(1)
        );
    }

    #[test]
    fn missing_tracepoint_and_fields_are_named() {
        let (_d, t) = fake_tracefs(&[
            (
                "filemap",
                "mm_filemap_add_to_page_cache",
                "\tfield:unsigned long i_ino;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:dev_t s_dev;\toffset:16;\tsize:4;\tsigned:0;\n",
            ),
            (
                "lock",
                "contention_begin",
                "\tfield:void * lock_addr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:unsigned long flags;\toffset:16;\tsize:8;\tsigned:0;\n",
            ),
        ]);
        let r = resolve(TRACEPOINTS, &t, None);
        let status = |p: &str| &r.ready[TRACEPOINTS.iter().position(|s| s.program == p).unwrap()];
        assert_eq!(status("filemap_add"), &Err("no field index".to_string()));
        // The BTF-typed page add needs BTF, and then the formatted one is the fallback.
        assert!(status(PAGE_ADD_BTF).as_ref().unwrap_err().contains("BTF"));
        // Raw tracepoints need BTF for their prototype.
        assert!(status("dio_begin").is_err());
        assert!(status("task_rename").is_err());
        assert!(
            status("contention_begin")
                .as_ref()
                .unwrap_err()
                .contains("kernel BTF (/sys/kernel/btf/vmlinux) is not available")
        );
        assert_eq!(
            status("filemap_fault"),
            &Err("tracepoint not in this kernel".to_string())
        );
        assert_eq!(r.tp.add_ino, 8);
        assert_eq!(r.tp.add_dev, 16);
    }

    #[test]
    fn end_probes_need_their_begin() {
        let (_d, t) = fake_tracefs(&[
            ("iomap", "iomap_dio_complete", ""),
            ("iomap", "iomap_dio_rw_begin", ""),
        ]);
        let r = resolve(TRACEPOINTS, &t, None);
        let status = |p: &str| &r.ready[TRACEPOINTS.iter().position(|s| s.program == p).unwrap()];
        assert!(status("dio_begin").as_ref().unwrap_err().contains("BTF"));
        assert!(status("dio_complete").as_ref().unwrap_err().contains("BTF"));
    }

    #[test]
    fn this_kernel_resolves_every_probe() {
        // On the 6.18 machines rltop is developed on, everything must resolve.
        let Ok((t, _)) = Tracefs::open() else { return };
        let Ok(btf) = Btf::from_kernel() else { return };
        let r = resolve(TRACEPOINTS, &t, Some(&btf));
        for (spec, st) in TRACEPOINTS.iter().zip(&r.ready) {
            assert_eq!(st, &Ok(()), "{}", spec.name());
        }
        // 6.8 and later number PG_head 6 (include/linux/page-flags.h).
        assert_eq!(r.kernel.folio_head_bit, 6);
        assert_eq!(r.kernel.folio_flags, 0);
    }
}
