//! Names, not numbers (issue 14): what the recorder puts in place of the
//! kernel side's raw values before events leave the session.
//!
//! - A `file` path comes from the eBPF side relative to its filesystem's
//!   root (`fs:/dir/f`, see `events::raw`); the mount point comes from
//!   `/proc/self/mountinfo` (the mount of that device whose root, the part
//!   of the filesystem it shows, contains the path): `/mnt/x/dir/f`. A
//!   filesystem rltop cannot see mounted keeps the path within it, after
//!   its device: `(8:3)/dir/f`.
//! - A block device's page cache (filesystem `bdev`, no path) is named
//!   after its device: `/dev/loop0 (bdev 7:0)`.
//! - A `contention_begin` caller comes as a code address (`ip:ffff...`):
//!   it becomes `symbol+0xoff` (`[module]` for module code) from
//!   /proc/kallsyms, as `perf lock contention` names callers.
//! - A `page_fault` stack comes as a stack id: its frames, innermost first,
//!   as `ordering_evidence` stacks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aya::maps::{MapData, StackTraceMap};

use crate::events::raw::{CALLER_IP_PREFIX, FS_PATH_PREFIX, STACK_ID_PREFIX};
use crate::events::{Body, Dev, Event};

/// One line of mountinfo: the device, the part of its filesystem shown
/// there, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: Dev,
    pub root: String,
    pub point: String,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/mountinfo` (proc(5)): `id parent major:minor root
/// mount-point options ...`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dev = f.get(2)?.parse::<Dev>().ok()?;
            Some(Mount {
                dev,
                root: unescape(f.get(3)?),
                point: unescape(f.get(4)?),
            })
        })
        .collect()
}

/// The path of `fs_path` (absolute within the filesystem on `dev`) in the
/// mount namespace, through the mount of `dev` whose root holds it (the
/// deepest such root; among equals the first listed).
pub fn join(mounts: &[Mount], dev: Dev, fs_path: &str) -> Option<String> {
    let m = mounts
        .iter()
        .filter(|m| m.dev == dev)
        .filter(|m| {
            m.root == "/"
                || fs_path == m.root
                || fs_path
                    .strip_prefix(&m.root)
                    .is_some_and(|r| r.starts_with('/'))
        })
        .fold(None::<&Mount>, |best, m| match best {
            Some(b) if b.root.len() >= m.root.len() => Some(b),
            _ => Some(m),
        })?;
    let rest = if m.root == "/" {
        fs_path
    } else {
        &fs_path[m.root.len()..]
    };
    Some(if m.point == "/" {
        if rest.is_empty() {
            "/".into()
        } else {
            rest.into()
        }
    } else {
        format!("{}{rest}", m.point)
    })
}

/// `symbol+0xoff` (with ` [module]` for module code) of a kernel address.
pub fn symbol(syms: &BTreeMap<u64, String>, ip: u64) -> String {
    match syms.range(..=ip).next_back() {
        Some((addr, name)) => match name.split_once('\t') {
            Some((n, module)) => format!("{n}+{:#x} {}", ip - addr, module.trim()),
            None => format!("{name}+{:#x}", ip - addr),
        },
        None => format!("{ip:#x}"),
    }
}

/// A kernel stack as rltop prints it: frames, innermost first, joined by
/// `;`, without the tracing glue the stack was taken from (the eBPF
/// program, its trampoline, `bpf_trace_run*`): as lockdep's backtraces,
/// it starts at the kernel's own code.
pub fn stack_text(frames: impl IntoIterator<Item = String>) -> String {
    frames
        .into_iter()
        .skip_while(|f| {
            f.ends_with(" [bpf]")
                || f.starts_with("bpf_trace_run")
                || f.starts_with("bpf_trampoline")
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A block device's page cache (the `bdev` pseudo-filesystem's inode,
/// whose `i_ino` is the device's `dev_t`, set by `bdev_add()` in
/// block/bdev.c: major in the bits from 20 up, minor below) by the device's
/// name: `/dev/loop0 (bdev 7:0)`, from sysfs's `DEVNAME`.
pub fn bdev_name(ino: u64) -> String {
    let (major, minor) = (ino >> 20, ino & 0xf_ffff);
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok();
    bdev_label(ino, uevent.as_deref())
}

/// [`bdev_name`] given the device's sysfs `uevent` text, if any.
fn bdev_label(ino: u64, uevent: Option<&str>) -> String {
    let (major, minor) = (ino >> 20, ino & 0xf_ffff);
    match uevent.and_then(|u| u.lines().find_map(|l| l.strip_prefix("DEVNAME="))) {
        Some(n) => format!("/dev/{n} (bdev {major}:{minor})"),
        None => format!("(bdev {major}:{minor})"),
    }
}

/// The session's namer: the mount table (re-read when a device is not in
/// it, at most once a second: filesystems are mounted while recording).
#[derive(Default)]
pub struct Names {
    mounts: Vec<Mount>,
    read_at: Option<Instant>,
}

impl Names {
    pub fn new() -> Names {
        let mut n = Names::default();
        n.refresh();
        n
    }

    fn refresh(&mut self) {
        self.mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| parse_mountinfo(&t))
            .unwrap_or_default();
        self.read_at = Some(Instant::now());
    }

    fn path(&mut self, dev: Dev, fs_path: &str) -> String {
        if let Some(p) = join(&self.mounts, dev, fs_path) {
            return p;
        }
        if self
            .read_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.refresh();
            if let Some(p) = join(&self.mounts, dev, fs_path) {
                return p;
            }
        }
        format!("({dev}){fs_path}")
    }

    /// Puts names in place of the kernel side's raw values in `ev`.
    pub fn fix(
        &mut self,
        ev: &mut Event,
        stacks: &Option<StackTraceMap<MapData>>,
        ksyms: &mut Option<BTreeMap<u64, String>>,
    ) {
        let syms = |k: &mut Option<BTreeMap<u64, String>>| -> BTreeMap<u64, String> {
            k.take()
                .unwrap_or_else(|| aya::util::kernel_symbols().unwrap_or_default())
        };
        match &mut ev.body {
            Body::File {
                dev, path: Some(p), ..
            } => {
                if let Some(rest) = p.strip_prefix(FS_PATH_PREFIX) {
                    *p = self.path(*dev, rest);
                }
            }
            Body::File {
                ino,
                path: path @ None,
                fs: Some(fs),
                ..
            } if fs == "bdev" => *path = Some(bdev_name(*ino)),
            Body::ContentionBegin {
                caller: Some(c), ..
            } => {
                if let Some(ip) = c
                    .strip_prefix(CALLER_IP_PREFIX)
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                {
                    let s = syms(ksyms);
                    *c = symbol(&s, ip);
                    *ksyms = Some(s);
                }
            }
            Body::PageFault {
                stack: Some(st), ..
            }
            | Body::FileLockRequest {
                stack: Some(st), ..
            } => {
                let Some(id) = st
                    .strip_prefix(STACK_ID_PREFIX)
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    return;
                };
                let Some(Ok(trace)) = stacks.as_ref().map(|m| m.get(&id, 0)) else {
                    *st = format!("(stack {id} no longer in the map)");
                    return;
                };
                let s = syms(ksyms);
                *st = stack_text(trace.frames().iter().map(|f| symbol(&s, f.ip)));
                *ksyms = Some(s);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 22 7:0 / /mnt/xfs\\040test rw,relatime shared:20 - xfs /dev/loop0 rw
41 22 7:0 /sub /srv/bind rw,relatime shared:20 - xfs /dev/loop0 rw
42 22 0:50 / /mnt/btrfs rw,relatime - btrfs /dev/loop1 rw
";

    #[test]
    fn stacks_start_at_the_kernels_own_code() {
        let f = |v: &[&str]| stack_text(v.iter().map(|s| s.to_string()));
        assert_eq!(
            f(&[
                "bpf_prog_d6d1d3460fcdf23e_fe_down_write+0x108 [bpf]",
                "bpf_trampoline_6442503922+0x4f [bpf]",
                "down_write+0x5",
                "rltest_fault.isra.0+0x4e [rltest_locks]",
            ]),
            "down_write+0x5;rltest_fault.isra.0+0x4e [rltest_locks]"
        );
        assert_eq!(
            f(&[
                "bpf_prog_1_x+0x1 [bpf]",
                "bpf_trace_run3+0x8e",
                "exc_page_fault+0x162"
            ]),
            "exc_page_fault+0x162"
        );
        // Only leading glue goes.
        assert_eq!(
            f(&["a+0x1", "bpf_trace_run1+0x2"]),
            "a+0x1;bpf_trace_run1+0x2"
        );
    }

    #[test]
    fn paths_get_their_mount_point() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].point, "/mnt/xfs test");
        let d = |s: &str| s.parse::<Dev>().unwrap();
        assert_eq!(join(&m, d("259:2"), "/etc/f").as_deref(), Some("/etc/f"));
        assert_eq!(
            join(&m, d("7:0"), "/a/f").as_deref(),
            Some("/mnt/xfs test/a/f")
        );
        // The bind mount shows /sub: its files are named through it.
        assert_eq!(join(&m, d("7:0"), "/sub/f").as_deref(), Some("/srv/bind/f"));
        assert_eq!(
            join(&m, d("7:0"), "/subx/f").as_deref(),
            Some("/mnt/xfs test/subx/f")
        );
        assert_eq!(join(&m, d("0:50"), "/f").as_deref(), Some("/mnt/btrfs/f"));
        assert_eq!(join(&m, d("8:1"), "/f"), None);
    }

    #[test]
    fn block_devices_by_their_device_name() {
        let uevent = "MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n";
        assert_eq!(bdev_label(7 << 20, Some(uevent)), "/dev/loop0 (bdev 7:0)");
        assert_eq!(bdev_label((259 << 20) | 3, None), "(bdev 259:3)");
    }

    #[test]
    fn symbols_with_offsets_and_modules() {
        let mut s = BTreeMap::new();
        s.insert(0x1000, "down_write".to_string());
        s.insert(0x2000, "rltest_fault\t[rltest_locks]".to_string());
        assert_eq!(symbol(&s, 0x1010), "down_write+0x10");
        assert_eq!(symbol(&s, 0x2004), "rltest_fault+0x4 [rltest_locks]");
        assert_eq!(symbol(&s, 0x10), "0x10");
    }
}
