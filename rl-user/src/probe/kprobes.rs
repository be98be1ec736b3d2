//! kprobes and kretprobes made through tracefs (`kprobe_events`), with a
//! BPF program attached to each through `perf_event_open(PERF_TYPE_TRACEPOINT)`
//! and `PERF_EVENT_IOC_SET_BPF`, as perf and bcc do it.
//!
//! Why not aya's `KProbe::attach`: it creates the probe through the perf
//! kprobe PMU, which has no `maxactive`, so a return probe keeps at most
//! max(10, 2 x CPUs) calls in flight and silently misses the returns of the
//! others (11 sleeping waiters in a lock are enough). An `r<N>:` event keeps
//! N, and tracefs events report what the kernel still missed
//! (`kprobe_profile`'s nmissed: a return with no free instance, or a probe
//! hit while another kprobe ran on that CPU), per probe, which rltop
//! records as `lost` events. Events are removed again when dropped, and
//! those of an rltop that was killed by a later one.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;

use anyhow::Context as _;

/// `maxactive` of the return probes: how many calls of one function may
/// wait for their return at once. 4096 is the kernel's limit (`r4097:` is
/// refused with "Maxactive is too big"; see toolchain.md).
pub const MAXACTIVE: u32 = 4096;

/// Event names start with this and rltop's pid, so a later rltop can
/// remove those of one that was killed.
const EVENT_PREFIX: &str = "rltop_";

struct Probe {
    /// The tracefs event (`rltop_<pid>_<n>_<symbol>`).
    event: String,
    /// The name `rltop probes` shows (`kretprobe:range_lock`).
    shown: String,
    fd: OwnedFd,
}

/// The tracefs kprobe events of one session.
pub struct Kprobes {
    root: PathBuf,
    probes: Vec<Probe>,
    /// nmissed of each event at the last look.
    seen: HashMap<String, u64>,
}

impl Kprobes {
    /// Kprobes under the tracefs mount `root`; removes the stale events of
    /// rltop processes that no longer exist.
    pub fn new(root: PathBuf) -> Kprobes {
        let k = Kprobes {
            root,
            probes: Vec::new(),
            seen: HashMap::new(),
        };
        k.remove_stale();
        k
    }

    /// Whether this kernel lets rltop create kprobe events here.
    pub fn available(&self) -> bool {
        self.root.join("kprobe_events").exists()
    }

    fn remove_stale(&self) {
        let Ok(text) = fs::read_to_string(self.root.join("kprobe_events")) else {
            return;
        };
        for l in text.lines() {
            // `r4096:kprobes/rltop_123_0_down_read down_read`
            let Some(name) = l
                .split_whitespace()
                .next()
                .and_then(|h| h.split_once(':'))
                .and_then(|(_, n)| n.split('/').nth(1))
            else {
                continue;
            };
            let Some(pid) = name
                .strip_prefix(EVENT_PREFIX)
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = self.write(&format!("-:{name}\n"));
            }
        }
    }

    fn write(&self, cmd: &str) -> std::io::Result<()> {
        fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("kprobe_events"))?
            .write_all(cmd.as_bytes())
    }

    /// Creates a kprobe (or, with `ret`, a kretprobe with [`MAXACTIVE`]) on
    /// `symbol` and runs `prog` (a loaded kprobe program's fd) on it.
    pub fn attach(&mut self, symbol: &str, ret: bool, prog: &OwnedFd) -> anyhow::Result<()> {
        let event = format!(
            "{EVENT_PREFIX}{}_{}_{}",
            std::process::id(),
            self.probes.len(),
            symbol.trim_start_matches('_')
        );
        // Event names are at most 64 bytes (MAX_EVENT_NAME_LEN).
        let event: String = event.chars().take(63).collect();
        let kind = if ret {
            format!("r{MAXACTIVE}")
        } else {
            "p".to_string()
        };
        self.write(&format!("{kind}:{event} {symbol}\n"))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINVAL) => {
                    anyhow::anyhow!("symbol {symbol} is not in this kernel (or not probeable)")
                }
                _ => anyhow::Error::new(e)
                    .context(format!("creating {kind}:{event} in kprobe_events")),
            })?;
        let created = (|| -> anyhow::Result<OwnedFd> {
            let id: u64 = fs::read_to_string(self.root.join(format!("events/kprobes/{event}/id")))?
                .trim()
                .parse()?;
            let fd = perf_tracepoint(id)?;
            // SAFETY: ioctls on a perf event fd we own, with the BPF
            // program fd as the argument of SET_BPF.
            unsafe {
                if libc::ioctl(
                    fd.as_raw_fd(),
                    PERF_EVENT_IOC_SET_BPF as _,
                    prog.as_raw_fd(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error()).context("PERF_EVENT_IOC_SET_BPF");
                }
                if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error()).context("PERF_EVENT_IOC_ENABLE");
                }
            }
            Ok(fd)
        })();
        match created {
            Ok(fd) => {
                let shown = format!("{}:{symbol}", if ret { "kretprobe" } else { "kprobe" });
                self.seen.insert(event.clone(), 0);
                self.probes.push(Probe { event, shown, fd });
                Ok(())
            }
            Err(e) => {
                let _ = self.write(&format!("-:{event}\n"));
                Err(e)
            }
        }
    }

    /// How many probes are attached.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Detaches and removes the probes attached after the first `n`.
    pub fn truncate(&mut self, n: usize) {
        for p in self.probes.drain(n.min(self.probes.len())..) {
            // Detach (close the perf event) before removing the event.
            drop(p.fd);
            let _ = fs::OpenOptions::new()
                .append(true)
                .open(self.root.join("kprobe_events"))
                .and_then(|mut f| f.write_all(format!("-:{}\n", p.event).as_bytes()));
            self.seen.remove(&p.event);
        }
    }

    /// What the kernel missed on each of our probes since the last call
    /// (`kprobe_profile`'s nmissed), as (probe, count) for those that rose.
    pub fn missed(&mut self) -> Vec<(String, u64)> {
        if self.probes.is_empty() {
            return Vec::new();
        }
        let Ok(text) = fs::read_to_string(self.root.join("kprobe_profile")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (event, missed) in parse_profile(&text) {
            let Some(last) = self.seen.get_mut(event) else {
                continue;
            };
            if missed > *last {
                if let Some(p) = self.probes.iter().find(|p| p.event == event) {
                    out.push((p.shown.clone(), missed - *last));
                }
                *last = missed;
            }
        }
        out
    }
}

/// `kprobe_profile` lines: `<event> <hits> <nmissed>`.
fn parse_profile(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let event = it.next()?;
        let _hits = it.next()?;
        Some((event, it.next()?.parse().ok()?))
    })
}

impl Drop for Kprobes {
    fn drop(&mut self) {
        self.truncate(0);
    }
}

/// `_IOW('$', 8, __u32)` and `_IO('$', 0)` (include/uapi/linux/perf_event.h).
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

/// `perf_event_open` of a tracepoint event id, as perf and aya do it:
/// `struct perf_event_attr` (a stable uapi) with type
/// `PERF_TYPE_TRACEPOINT` (2), `config` = the id, one sample per event.
fn perf_tracepoint(id: u64) -> anyhow::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&2u32.to_ne_bytes()); // type
    attr[4..8].copy_from_slice(&112u32.to_ne_bytes()); // size (PERF_ATTR_SIZE_VER5)
    attr[8..16].copy_from_slice(&id.to_ne_bytes()); // config
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes()); // sample_period
    attr[48..52].copy_from_slice(&1u32.to_ne_bytes()); // wakeup_events
    // SAFETY: `attr` is a zero-initialised perf_event_attr of the size
    // given in it; the other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1i32,
            0i32,
            -1i32,
            8u64, // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("perf_event_open of the kprobe event");
    }
    // SAFETY: a new fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nmissed_per_event() {
        let text = "  rltop_12_0_range_lock                             40               0\n\
                    rltop_12_1_range_lock                            29              11\n\
                    other_probe 5 2\n";
        let got: Vec<_> = parse_profile(text).collect();
        assert_eq!(
            got,
            [
                ("rltop_12_0_range_lock", 0),
                ("rltop_12_1_range_lock", 11),
                ("other_probe", 2)
            ]
        );
    }
}
