//! Range-lock profiles: how to probe one flavour of kernel range lock.
//!
//! A profile is data (TOML): the flavour's lock / trylock / interruptible /
//! unlock / downgrade symbols with the mode each takes and what its return
//! value means, which arguments hold the tree and the lock, where the range's
//! first and last values lie in the lock struct and in what unit. The four
//! flavours of `docs/kernel.md` ("Range-lock APIs") are built in (`rl-user/profiles/*.toml`);
//! `--profile FILE.toml` loads a developer's own variant in the same format.
//!
//! [`detect`] picks the flavour of the running kernel from `/proc/kallsyms`
//! (and BTF, when it has the lock struct: Kara's and Lustre's symbols are
//! the same); [`Profile::plan`] checks a profile against the kernel and says
//! what is missing.

use std::collections::HashSet;

use rl_common::RangeLockLayout;
use serde::Deserialize;

use super::btf::Btf;

/// The built-in profiles, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("kara2013", include_str!("../../profiles/kara2013.toml")),
    ("bueso2017", include_str!("../../profiles/bueso2017.toml")),
    ("bueso2019", include_str!("../../profiles/bueso2019.toml")),
    ("lustre", include_str!("../../profiles/lustre.toml")),
];

/// Request mode of a lock function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Excl,
    Read,
    Write,
}

/// What a lock function's return value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Returns {
    /// Returns holding the lock.
    Void,
    /// Non-zero when acquired, 0 when it failed.
    Trylock,
    /// 0 when acquired, a negative error when the wait was interrupted.
    Errno,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFn {
    pub symbol: String,
    pub mode: LockMode,
    pub returns: Returns,
    /// Probed only where the kernel has it: a variant that exists in some
    /// builds only (Bueso's `_nested` ones, with CONFIG_DEBUG_LOCK_ALLOC;
    /// without it they are macros for the plain ones). Not used to detect
    /// the flavour.
    #[serde(default)]
    pub optional: bool,
}

/// How a tree leads to its inode: the tree is member `member` of struct
/// `container`, which holds a pointer to the inode (`inode = "pointer"`,
/// e.g. `address_space.host`) or embeds it (`inode = "embedded"`, e.g.
/// Lustre's `ll_inode_info.lli_vfs_inode`) as `inode_member`. Offsets from
/// BTF when it has `container`, else `member_offset` / `inode_offset`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeInode {
    pub container: Option<String>,
    pub member: Option<String>,
    pub member_offset: u32,
    pub inode: InodeLink,
    pub inode_member: Option<String>,
    pub inode_offset: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InodeLink {
    Pointer,
    Embedded,
}

/// The function that puts a request into the tree's queue, called inside
/// the lock call under the tree's lock with the request's queue node as
/// its first argument (Kara's and Bueso's `interval_tree_insert(&lock->node,
/// &tree->root)`). Its probe emits `rl_queued` only for the node of the
/// calling task's pending lock call, so other users of the function cost a
/// map lookup and nothing more.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insert {
    /// Candidates, in order: the first that the kernel lets rltop probe is
    /// used (`interval_tree_insert`, else the `__rb_insert_augmented` it
    /// calls, whose node is the same pointer).
    pub symbols: Vec<String>,
    /// Where the node lies in the lock struct (the lock is the node minus
    /// that offset).
    pub node: Bound,
}

/// Where a range bound lies in the lock struct.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    /// Member path in BTF (`node.start`: member `node`, of struct
    /// `node_struct`, then its member `start`).
    pub member: Option<String>,
    /// Byte offset used when BTF does not have the struct.
    pub offset: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Pages,
    Bytes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// `excl_fifo` or `rw`: the semantics `rltop check` applies.
    pub flavour: String,
    #[serde(default)]
    pub tree_arg: u32,
    #[serde(default = "one")]
    pub lock_arg: u32,
    pub unit: Unit,
    /// The lock struct's name in BTF.
    pub lock_struct: Option<String>,
    pub start: Bound,
    pub last: Bound,
    /// The struct type of the first component of a member path.
    pub node_struct: Option<String>,
    /// A member of `lock_struct` only this flavour has (detection via BTF).
    pub btf_member: Option<String>,
    pub lock: Vec<LockFn>,
    pub unlock: Vec<String>,
    #[serde(default)]
    pub downgrade: Vec<String>,
    /// The tree's init functions (`range_lock_tree_init`), taking the tree
    /// first: a tree initialised while recording has its whole life in the
    /// trace, so a waiter hung on it is a certain stall. Optional, and
    /// probed only where kallsyms has them.
    #[serde(default)]
    pub tree_init: Vec<String>,
    /// Where a request enters the tree's queue (optional): `rl_queued`
    /// events, the queue order a `fifo_violation` is proven by.
    pub insert: Option<Insert>,
    /// The lock's queue sequence number (optional): a u64 member the lock
    /// function sets under the tree's lock as it inserts (Bueso's `seqnum`,
    /// Lustre's `rl_sequence`), read at the call's return (`rl_queue_seq`).
    pub sequence: Option<Bound>,
    /// How a tree leads to its inode, for `tree` events (optional).
    pub tree_inode: Option<TreeInode>,
    /// Symbols that together identify the flavour in kallsyms.
    #[serde(default)]
    pub detect: Vec<String>,
}

fn one() -> u32 {
    1
}

/// One kprobe or kretprobe to attach: eBPF program and kernel symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KprobeAttach {
    pub program: &'static str,
    pub symbol: String,
    pub ret: bool,
}

/// A profile checked against the kernel: what to attach, with the layout.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub flavour: String,
    pub layout: RangeLockLayout,
    pub probes: Vec<KprobeAttach>,
    /// Where the range offsets came from ("BTF struct range_lock" or "profile").
    pub offsets_from: String,
}

impl Plan {
    /// The module whose functions the profile probes (its first lock
    /// function's), if they are in a module.
    pub fn module<'a>(&self, syms: &'a Kallsyms) -> Option<&'a str> {
        self.probes
            .iter()
            .find(|k| k.program.starts_with("rl_lock"))
            .and_then(|k| syms.module_of(&k.symbol))
    }

    /// How the queue order is to be known, for `probes` and `record`
    /// (the session says which insertion probe attached).
    pub fn queue_order(&self) -> String {
        let candidates: Vec<&str> = self
            .probes
            .iter()
            .filter(|k| k.program == "rl_insert")
            .map(|k| k.symbol.as_str())
            .collect();
        if self.layout.seq_off != rl_common::NO_FIELD {
            queue_order_from(&format!(
                "the lock's sequence number (@{})",
                self.layout.seq_off
            ))
        } else if !candidates.is_empty() {
            queue_order_from(&candidates.join(" or "))
        } else {
            queue_order_not_observed("no insertion probe or sequence number")
        }
    }
}

/// The queue order is read from `source`.
pub fn queue_order_from(source: &str) -> String {
    format!("queue order from {source}")
}

/// The queue order is not observed, because of `why`.
pub fn queue_order_not_observed(why: &str) -> String {
    format!("queue order NOT observed ({why}): fifo_violation at most uncertain")
}

/// Largest profile file read: a profile is a few hundred bytes.
const MAX_PROFILE_BYTES: u64 = 64 * 1024;

fn read_limited(path: &str) -> Result<String, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read profile {path}: {e}"))?;
    let mut text = String::new();
    f.take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read profile {path}: {e}"))?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(format!(
            "profile {path} is larger than {} KiB; a profile is a short TOML file",
            MAX_PROFILE_BYTES / 1024
        ));
    }
    Ok(text)
}

impl Profile {
    /// Parses a profile (TOML).
    pub fn parse(text: &str) -> Result<Profile, String> {
        let p: Profile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if p.flavour != "excl_fifo" && p.flavour != "rw" {
            return Err(format!(
                "flavour must be \"excl_fifo\" or \"rw\", not {:?}",
                p.flavour
            ));
        }
        if p.tree_arg > 5 || p.lock_arg > 5 {
            return Err("tree_arg and lock_arg must be 0..=5 (register arguments)".into());
        }
        if p.lock.is_empty() || p.unlock.is_empty() {
            return Err(
                "a profile needs at least one [[lock]] function and one unlock symbol".into(),
            );
        }
        Ok(p)
    }

    /// A built-in profile by name.
    pub fn builtin(name: &str) -> Option<Profile> {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Profile::parse(t).expect("built-in profiles parse"))
    }

    /// A built-in name, or a `.toml` file.
    pub fn load(arg: &str) -> Result<Profile, String> {
        if let Some(p) = Profile::builtin(arg) {
            return Ok(p);
        }
        if arg.ends_with(".toml") {
            let text = read_limited(arg)?;
            return Profile::parse(&text).map_err(|e| format!("profile {arg}: {e}"));
        }
        Err(format!(
            "unknown profile {arg:?}: available profiles are auto, tracepoints, kprobes, {}, or a FILE.toml",
            BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// Every symbol the profile needs (its optional lock functions aside).
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.lock
            .iter()
            .filter(|l| !l.optional)
            .map(|l| l.symbol.as_str())
            .chain(self.unlock.iter().map(String::as_str))
            .chain(self.downgrade.iter().map(String::as_str))
    }

    /// Checks the profile against the kernel's symbols (and BTF, for the
    /// range offsets): the probes to attach, or what is missing.
    pub fn plan(&self, syms: &Kallsyms, btf: Option<&Btf>) -> Result<Plan, String> {
        let missing: Vec<&str> = self.symbols().filter(|s| !syms.has(s)).collect();
        if !missing.is_empty() {
            return Err(format!(
                "profile {}: this kernel has no {} in /proc/kallsyms (is the range-lock code or module loaded?){}",
                self.name,
                missing.join(", "),
                match detect(syms, btf) {
                    Detection::Found(p) if p.name != self.name =>
                        format!("; it looks like profile {}", p.name),
                    Detection::Ambiguous(names) =>
                        format!("; it could be profile {}", names.join(" or ")),
                    _ => String::new(),
                }
            ));
        }
        let mut plan = self.plan_unchecked(btf)?;
        // Optional probes, where the kernel has them.
        let optional: HashSet<&str> = self
            .lock
            .iter()
            .filter(|l| l.optional)
            .map(|l| l.symbol.as_str())
            .collect();
        plan.probes.retain(|k| {
            !(matches!(k.program, "rl_tree_init" | "rl_insert")
                || optional.contains(k.symbol.as_str()))
                || syms.has(&k.symbol)
        });
        Ok(plan)
    }

    /// The plan without checking that the symbols exist (for `rltop probes`,
    /// which lists each probe and why it is not attached).
    pub fn plan_unchecked(&self, btf: Option<&Btf>) -> Result<Plan, String> {
        let (start_off, last_off, offsets_from) = match self.btf_offsets(btf) {
            Some(Ok((s, l))) => (
                s,
                l,
                format!("BTF struct {}", self.lock_struct.as_deref().unwrap_or("")),
            ),
            Some(Err(e)) => {
                return Err(format!(
                    "profile {}: BTF disagrees with the profile: {e}",
                    self.name
                ));
            }
            None => (
                self.start.offset,
                self.last.offset,
                "profile (no BTF for the lock struct)".into(),
            ),
        };
        let layout = RangeLockLayout {
            tree_arg: self.tree_arg,
            lock_arg: self.lock_arg,
            start_off,
            last_off,
            shift: match self.unit {
                Unit::Pages => 0,
                Unit::Bytes => page_shift(),
            },
            order_check: 1,
            ..RangeLockLayout::NONE
        };
        let mut layout = layout;
        if let Some(ti) = &self.tree_inode {
            let btf_off = |m: &Option<String>| -> Option<u32> {
                btf?.member_offset(ti.container.as_deref()?, m.as_deref()?)
                    .ok()
            };
            layout.tree_inode = match ti.inode {
                InodeLink::Pointer => rl_common::TREE_INODE_POINTER,
                InodeLink::Embedded => rl_common::TREE_INODE_EMBEDDED,
            };
            layout.tree_member_off = btf_off(&ti.member).unwrap_or(ti.member_offset);
            layout.inode_off = btf_off(&ti.inode_member).unwrap_or(ti.inode_offset);
        }
        // Members beside the range: from BTF where it has the struct.
        let member = |b: &Bound| match self.btf_offsets(btf) {
            Some(Ok(_)) => self.bound_offset(btf, b),
            _ => Ok(b.offset),
        };
        if let Some(seq) = &self.sequence {
            layout.seq_off = member(seq)?;
        }
        if let Some(ins) = &self.insert {
            layout.insert_node_off = member(&ins.node)?;
        }
        Ok(Plan {
            name: self.name.clone(),
            flavour: self.flavour.clone(),
            layout,
            probes: self.probes(),
            offsets_from,
        })
    }

    /// The probes of the profile, insertion candidates first.
    fn probes(&self) -> Vec<KprobeAttach> {
        let mut probes = Vec::new();
        for symbol in self.insert.iter().flat_map(|i| &i.symbols) {
            probes.push(KprobeAttach {
                program: "rl_insert",
                symbol: symbol.clone(),
                ret: false,
            });
        }
        for l in &self.lock {
            let entry = match l.mode {
                LockMode::Excl => "rl_lock_excl",
                LockMode::Read => "rl_lock_read",
                LockMode::Write => "rl_lock_write",
            };
            let ret = match l.returns {
                Returns::Void => "rl_ret_void",
                Returns::Trylock => "rl_ret_try",
                Returns::Errno => "rl_ret_errno",
            };
            probes.push(KprobeAttach {
                program: entry,
                symbol: l.symbol.clone(),
                ret: false,
            });
            probes.push(KprobeAttach {
                program: ret,
                symbol: l.symbol.clone(),
                ret: true,
            });
        }
        for s in &self.unlock {
            probes.push(KprobeAttach {
                program: "rl_unlock",
                symbol: s.clone(),
                ret: false,
            });
        }
        for s in &self.downgrade {
            probes.push(KprobeAttach {
                program: "rl_downgrade",
                symbol: s.clone(),
                ret: false,
            });
        }
        for s in &self.tree_init {
            probes.push(KprobeAttach {
                program: "rl_tree_init",
                symbol: s.clone(),
                ret: false,
            });
        }
        probes
    }

    /// Range offsets from BTF: None when BTF lacks the lock struct (a module
    /// without BTF), else the offsets or why they do not resolve.
    fn btf_offsets(&self, btf: Option<&Btf>) -> Option<Result<(u32, u32), String>> {
        let btf = btf?;
        let strukt = self.lock_struct.as_deref()?;
        if btf
            .member_offset(strukt, self.btf_member.as_deref().unwrap_or(""))
            .is_err()
        {
            // No such struct, or another flavour's struct of the same name.
            return None;
        }
        let one = |b: &Bound| self.bound_offset(Some(btf), b);
        Some(one(&self.start).and_then(|s| Ok((s, one(&self.last)?))))
    }

    /// The offset of a bound in the lock struct, from BTF by its member
    /// path (the caller checked that BTF has this flavour's struct).
    fn bound_offset(&self, btf: Option<&Btf>, b: &Bound) -> Result<u32, String> {
        let (Some(btf), Some(strukt), Some(path)) = (btf, self.lock_struct.as_deref(), &b.member)
        else {
            return Ok(b.offset);
        };
        match path.split_once('.') {
            None => btf.member_offset(strukt, path).map_err(|e| e.to_string()),
            Some((outer, inner)) => {
                let node = self
                    .node_struct
                    .as_deref()
                    .ok_or("member path needs node_struct")?;
                Ok(btf
                    .member_offset(strukt, outer)
                    .map_err(|e| e.to_string())?
                    + btf.member_offset(node, inner).map_err(|e| e.to_string())?)
            }
        }
    }
}

fn page_shift() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        (size as u64).trailing_zeros()
    } else {
        12
    }
}

/// The kernel's symbol names (`/proc/kallsyms`, module symbols included).
#[derive(Debug, Default)]
pub struct Kallsyms {
    names: HashSet<String>,
    /// The module of each module symbol (`[rltest_bueso2019]`).
    modules: std::collections::HashMap<String, String>,
}

impl Kallsyms {
    pub fn read() -> std::io::Result<Kallsyms> {
        Ok(Kallsyms::parse(&std::fs::read_to_string("/proc/kallsyms")?))
    }

    /// Parses `addr type name [module]` lines.
    pub fn parse(text: &str) -> Kallsyms {
        let mut k = Kallsyms::default();
        for l in text.lines() {
            let mut it = l.split_whitespace();
            let (Some(_addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            // Text symbols only: functions can be probed.
            if !matches!(ty, "t" | "T") {
                continue;
            }
            if let Some(m) = it
                .next()
                .and_then(|m| m.strip_prefix('['))
                .and_then(|m| m.strip_suffix(']'))
            {
                k.modules.insert(name.to_owned(), m.to_owned());
            }
            k.names.insert(name.to_owned());
        }
        k
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The module that defines function `name`, if a module does.
    pub fn module_of(&self, name: &str) -> Option<&str> {
        self.modules.get(name).map(String::as_str)
    }
}

/// What [`detect`] found.
#[derive(Debug)]
pub enum Detection {
    Found(Box<Profile>),
    /// Several flavours match the symbols and BTF cannot tell them apart.
    Ambiguous(Vec<String>),
    None,
}

/// The built-in flavour this kernel's symbols (and BTF) show.
pub fn detect(syms: &Kallsyms, btf: Option<&Btf>) -> Detection {
    let mut found: Vec<Profile> = BUILTIN
        .iter()
        .map(|(_, t)| Profile::parse(t).expect("built-in profiles parse"))
        .filter(|p| {
            p.detect
                .iter()
                .chain(p.symbols().map(|s| s.to_owned()).collect::<Vec<_>>().iter())
                .all(|s| syms.has(s))
        })
        .collect();
    if found.len() > 1 {
        // Same symbols (Kara and Lustre): the struct layout in BTF decides.
        let by_btf: Vec<Profile> = found
            .iter()
            .filter(|p| {
                let (Some(b), Some(s), Some(m)) = (btf, &p.lock_struct, &p.btf_member) else {
                    return false;
                };
                b.member_offset(s, m).is_ok()
            })
            .cloned()
            .collect();
        if by_btf.len() == 1 {
            found = by_btf;
        }
    }
    match found.len() {
        0 => Detection::None,
        1 => Detection::Found(Box::new(found.pop().expect("one"))),
        _ => Detection::Ambiguous(found.into_iter().map(|p| p.name).collect()),
    }
}

/// Whether this kernel can attach kprobes: the kprobe PMU (perf_event_open)
/// or tracefs `kprobe_events` (the legacy interface aya falls back to).
pub fn kprobes_available(tracefs_root: &std::path::Path) -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || tracefs_root.join("kprobe_events").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms(names: &[&str]) -> Kallsyms {
        Kallsyms::parse(
            &names
                .iter()
                .map(|n| format!("ffffffffc0000000 T {n}\t[rltest]\n"))
                .collect::<String>(),
        )
    }

    #[test]
    fn builtins_parse_and_plan_their_own_symbols() {
        for (name, _) in BUILTIN {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(&p.name, name);
            let s = syms(
                &p.symbols()
                    .chain(p.detect.iter().map(String::as_str))
                    .collect::<Vec<_>>(),
            );
            let plan = p.plan(&s, None).unwrap();
            // Every lock function the kernel has has an entry and a return
            // probe (the optional ones are not in these kallsyms).
            assert_eq!(
                plan.probes.iter().filter(|k| k.ret).count(),
                p.lock.iter().filter(|l| !l.optional).count()
            );
            assert!(plan.probes.iter().any(|k| k.program == "rl_unlock"));
            assert_eq!(plan.offsets_from, "profile (no BTF for the lock struct)");
        }
        let lustre = Profile::builtin("lustre")
            .unwrap()
            .plan(&syms(&["range_lock", "range_unlock"]), None)
            .unwrap();
        assert_eq!((lustre.layout.start_off, lustre.layout.last_off), (0, 8));
        assert!(lustre.probes.contains(&KprobeAttach {
            program: "rl_ret_errno",
            symbol: "range_lock".into(),
            ret: true
        }));
        let kara = Profile::builtin("kara2013")
            .unwrap()
            .plan(&syms(&["range_lock", "range_unlock"]), None)
            .unwrap();
        assert_eq!((kara.layout.start_off, kara.layout.last_off), (24, 32));
    }

    #[test]
    fn the_queue_order_comes_from_the_sequence_number_or_an_insertion_probe() {
        // Bueso's and Lustre's locks number their requests as they enter
        // the queue; Kara's do not.
        for (name, want) in [
            (
                "bueso2019",
                "queue order from the lock's sequence number (@64)",
            ),
            (
                "lustre",
                "queue order from the lock's sequence number (@64)",
            ),
        ] {
            let p = Profile::builtin(name).unwrap();
            let names: Vec<&str> = p
                .symbols()
                .chain(p.detect.iter().map(String::as_str))
                .collect();
            let plan = p.plan(&syms(&names), None).unwrap();
            assert_eq!(plan.layout.seq_off, 64);
            assert_eq!(plan.queue_order(), want);
        }
        let kara = Profile::builtin("kara2013").unwrap();
        let plan = kara
            .plan(&syms(&["range_lock", "range_unlock"]), None)
            .unwrap();
        assert_eq!(plan.layout.seq_off, rl_common::NO_FIELD);
        assert!(
            plan.queue_order().contains("NOT observed"),
            "{}",
            plan.queue_order()
        );
        // A profile naming its insertion function: probed where the kernel
        // has a candidate (the session keeps the first that attaches).
        let text = include_str!("../../profiles/kara2013.toml").to_string()
            + "\n[insert]\nsymbols = [\"my_insert\", \"__rb_insert_augmented\"]\nnode = { member = \"node\", offset = 8 }\n";
        let p = Profile::parse(&text).unwrap();
        let base = ["range_lock", "range_unlock"];
        let without = p.plan(&syms(&base), None).unwrap();
        assert!(!without.probes.iter().any(|k| k.program == "rl_insert"));
        let plan = p
            .plan(
                &syms(&[
                    "range_lock",
                    "range_unlock",
                    "my_insert",
                    "__rb_insert_augmented",
                ]),
                None,
            )
            .unwrap();
        let candidates: Vec<&str> = plan
            .probes
            .iter()
            .filter(|k| k.program == "rl_insert")
            .map(|k| k.symbol.as_str())
            .collect();
        assert_eq!(candidates, ["my_insert", "__rb_insert_augmented"]);
        assert_eq!(plan.layout.insert_node_off, 8);
        assert_eq!(
            plan.queue_order(),
            "queue order from my_insert or __rb_insert_augmented"
        );
    }

    #[test]
    fn missing_symbols_are_listed_with_what_the_kernel_looks_like() {
        let bueso17 = syms(&[
            "range_read_lock",
            "range_write_lock",
            "range_rwlock_init",
            "range_read_unlock",
            "range_write_unlock",
            "range_read_lock_interruptible",
            "range_read_lock_killable",
            "range_read_trylock",
            "range_write_lock_interruptible",
            "range_write_lock_killable",
            "range_write_trylock",
            "range_downgrade_write",
        ]);
        let e = Profile::builtin("kara2013")
            .unwrap()
            .plan(&bueso17, None)
            .unwrap_err();
        assert_eq!(
            e,
            "profile kara2013: this kernel has no range_lock, range_unlock in /proc/kallsyms \
             (is the range-lock code or module loaded?); it looks like profile bueso2017"
        );
        assert!(matches!(detect(&bueso17, None), Detection::Found(p) if p.name == "bueso2017"));
        let e = Profile::builtin("bueso2019")
            .unwrap()
            .plan(&syms(&[]), None)
            .unwrap_err();
        assert!(
            e.contains("range_read_lock, range_read_lock_interruptible"),
            "{e}"
        );
    }

    #[test]
    fn a_tree_inode_section_sets_the_tree_to_inode_layout() {
        let p = Profile::parse(include_str!("../../../kmod/rltest/kara2013-tree.toml")).unwrap();
        let plan = p
            .plan(&syms(&["range_lock", "range_unlock"]), None)
            .unwrap();
        assert_eq!(plan.layout.tree_inode, rl_common::TREE_INODE_POINTER);
        assert_eq!((plan.layout.tree_member_off, plan.layout.inode_off), (8, 0));
        // The built-in profiles link no tree: their kernels' containers are not known.
        let kara = Profile::builtin("kara2013")
            .unwrap()
            .plan_unchecked(None)
            .unwrap();
        assert_eq!(kara.layout.tree_inode, rl_common::TREE_INODE_NONE);
    }

    #[test]
    fn kara_and_lustre_share_symbols_and_need_btf_or_a_choice() {
        let s = syms(&[
            "range_lock",
            "range_unlock",
            "range_lock_init",
            "range_lock_tree_init",
        ]);
        match detect(&s, None) {
            Detection::Ambiguous(names) => assert_eq!(names, vec!["kara2013", "lustre"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            detect(&syms(&["vfs_read"]), None),
            Detection::None
        ));
    }

    #[test]
    fn a_users_profile_parses_and_bad_ones_say_why() {
        let text = r#"
            name = "mine"
            flavour = "excl_fifo"
            unit = "bytes"
            start = { offset = 0 }
            last = { offset = 8 }
            unlock = ["my_unlock"]
            [[lock]]
            symbol = "my_lock"
            mode = "excl"
            returns = "void"
        "#;
        let p = Profile::parse(text).unwrap();
        let plan = p.plan(&syms(&["my_lock", "my_unlock"]), None).unwrap();
        assert_eq!(plan.layout.shift, page_shift());
        assert_eq!((plan.layout.tree_arg, plan.layout.lock_arg), (0, 1));
        let e = Profile::parse(&text.replace("excl_fifo", "fifo")).unwrap_err();
        assert!(e.contains("flavour must be"), "{e}");
        let e = Profile::parse(&text.replace("mode = \"excl\"", "mode = \"shared\"")).unwrap_err();
        assert!(e.contains("shared"), "{e}");
        let e = Profile::parse(&text.replace("unit", "units")).unwrap_err();
        assert!(e.contains("unit"), "{e}");
        assert!(
            Profile::load("nosuch")
                .unwrap_err()
                .contains("available profiles are auto, tracepoints, kprobes, kara2013")
        );
    }
}
