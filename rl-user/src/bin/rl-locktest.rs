//! rl-locktest: known workloads on the page-cache locks (issue 14), for
//! rltop's lock tests on this machine and in the VM. Each prints one JSON
//! line saying what it did (pid, tids, files with their dev and ino), which
//! the tests compare with the recorded events. Phases are bracketed by
//! `/dev/kmsg` lines (`rl-locktest <phase> begin|end`), which rltop records
//! as `marker` events in order with the task's own events (needs root).
//!
//! - `files DIR N`: creates `DIR/d1/d2/f0..f{N-1}`, 64 KiB each (buffered
//!   writes: their page-cache events name the files).
//! - `punch FILE N`: writes 1 MiB to FILE, then punches N holes of 64 KiB.
//! - `contend FILE SECS THREADS`: THREADS threads write to FILE for SECS
//!   seconds (contention on its i_rwsem).
//! - `fault-punch FILE ROUNDS`: one thread reads FILE's pages through a
//!   shared mapping (ROUNDS passes, and on until the punches are done)
//!   while another punches them ROUNDS times: page faults with no lock
//!   ranked below mmap_lock held by the faulting task.
//! - `mmap-churn SECS THREADS [RATE]`: THREADS threads map, touch and unmap
//!   anonymous memory for SECS seconds (mmap_lock, all the time); with
//!   RATE, each thread paces itself to RATE rounds a second (`cargo xtask
//!   bench capacity` steps the event rate so).
//! - `kmod CTL FILE PATTERN`: asks the test module (kmod/rltest, in the
//!   VM) through its control file CTL to take FILE's locks: `fault` (its
//!   invalidate_lock, then a copy to a fresh anonymous page: a page fault
//!   under the lock) or `order` (one thread i_rwsem -> invalidate_lock,
//!   another invalidate_lock -> i_rwsem, the documented order broken).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

fn tid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// Writes a marker line to /dev/kmsg (rltop records it as a `marker`).
fn marker(text: &str) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(format!("rl-locktest {text}").as_bytes()))
        .context("writing to /dev/kmsg (needs root)")
}

/// `{"path":..,"dev":"major:minor","ino":..}` of a file, `dev` as the
/// kernel's s_dev from `stat` (`st_dev`).
fn file_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let m = std::fs::metadata(path)?;
    let d = m.dev();
    // glibc's dev_t: major in bits 8..19 (and 32..), minor in 0..7 and 20..31.
    let major = ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff);
    let minor = (d & 0xff) | ((d >> 12) & !0xff);
    Ok(serde_json::json!({
        "path": path.canonicalize()?.to_string_lossy(),
        "dev": format!("{major}:{minor}"),
        "ino": m.ino(),
    }))
}

fn write_file(path: &Path, bytes: usize) -> anyhow::Result<File> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(&vec![0x5a; bytes])?;
    f.sync_all()?;
    Ok(f)
}

fn punch(f: &File, off: u64, len: u64) -> anyhow::Result<()> {
    // SAFETY: fallocate on an open fd with plain integers.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as i64,
            len as i64,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("fallocate(PUNCH_HOLE)");
    }
    Ok(())
}

fn files(dir: &Path, n: usize) -> anyhow::Result<serde_json::Value> {
    let d = dir.join("d1/d2");
    std::fs::create_dir_all(&d)?;
    let mut out = Vec::new();
    for i in 0..n {
        let p = d.join(format!("f{i}"));
        write_file(&p, 64 << 10)?;
        out.push(file_json(&p)?);
    }
    Ok(serde_json::json!({"files": out}))
}

fn punches(path: &Path, n: u64) -> anyhow::Result<serde_json::Value> {
    let f = write_file(path, 1 << 20)?;
    marker("punch begin")?;
    for i in 0..n {
        punch(&f, (i % 16) * (64 << 10), 64 << 10)?;
    }
    marker("punch end")?;
    Ok(serde_json::json!({"tid": tid(), "punches": n, "file": file_json(path)?}))
}

fn contend(path: &Path, secs: f64, threads: usize) -> anyhow::Result<serde_json::Value> {
    write_file(path, 1 << 20)?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let writes: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> anyhow::Result<u64> {
                    let f = OpenOptions::new().write(true).open(path)?;
                    let buf = vec![t as u8; 256 << 10];
                    let mut n = 0;
                    while Instant::now() < until {
                        // SAFETY: pwrite from a live buffer on an open fd.
                        let rc = unsafe {
                            libc::pwrite(f.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0)
                        };
                        if rc < 0 {
                            return Err(std::io::Error::last_os_error().into());
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("writer thread").unwrap_or(0))
            .sum()
    });
    Ok(serde_json::json!({"writes": writes, "file": file_json(path)?}))
}

/// THREADS threads of one process map, touch and unmap anonymous memory
/// for SECS seconds: mmap_lock taken for writing and reading, by several
/// tasks at once, all the time (as a compiler or a JIT does).
fn mmap_churn(secs: f64, threads: usize, rate: f64) -> anyhow::Result<serde_json::Value> {
    const LEN: usize = 64 << 10;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    // Round n starts no earlier than n periods in: a steady rate, catching
    // up after a late round rather than drifting.
    let period = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let rounds: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || -> anyhow::Result<u64> {
                    let mut n = 0u32;
                    loop {
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        if let Some(p) = period {
                            let due = start + p * n;
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        // SAFETY: a fresh private anonymous mapping of LEN
                        // bytes, written within its bounds, then unmapped.
                        unsafe {
                            let p = libc::mmap(
                                std::ptr::null_mut(),
                                LEN,
                                libc::PROT_READ | libc::PROT_WRITE,
                                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                                -1,
                                0,
                            );
                            if p == libc::MAP_FAILED {
                                return Err(std::io::Error::last_os_error().into());
                            }
                            for off in (0..LEN).step_by(4096) {
                                p.cast::<u8>().add(off).write_volatile(1);
                            }
                            libc::munmap(p, LEN);
                        }
                        n += 1;
                    }
                    Ok(u64::from(n))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("churn thread").unwrap_or(0))
            .sum()
    });
    Ok(serde_json::json!({ "rounds": rounds }))
}

fn fault_punch(path: &Path, rounds: usize) -> anyhow::Result<serde_json::Value> {
    const LEN: usize = 1 << 20;
    let f = write_file(path, LEN)?;
    // SAFETY: a fresh shared read mapping of an open file of LEN bytes.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        bail!("mmap: {}", std::io::Error::last_os_error());
    }
    let addr = map as usize;
    // The reader goes on until the punches are done: a pass over cached
    // pages takes microseconds, so a fixed count of passes could end
    // before the puncher has started, and nothing would race.
    let punching = std::sync::atomic::AtomicBool::new(true);
    let faults = std::thread::scope(|s| -> anyhow::Result<u64> {
        let punching = &punching;
        let reader = s.spawn(move || {
            let mut reads = 0u64;
            let mut sum = 0u64;
            let mut pass = 0;
            while pass < rounds || punching.load(std::sync::atomic::Ordering::Relaxed) {
                for page in (0..LEN).step_by(4096) {
                    // SAFETY: inside the live mapping (unmapped after the scope).
                    sum +=
                        u64::from(unsafe { std::ptr::read_volatile((addr + page) as *const u8) });
                }
                reads += (LEN / 4096) as u64;
                pass += 1;
            }
            std::hint::black_box(sum);
            reads
        });
        let punched =
            (0..rounds).try_for_each(|r| punch(&f, ((r % 16) * (64 << 10)) as u64, 64 << 10));
        punching.store(false, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap_or(0);
        punched.map(|()| reads)
    })?;
    // SAFETY: unmapping the mapping made above.
    unsafe { libc::munmap(map, LEN) };
    Ok(serde_json::json!({"reads": faults, "punches": rounds, "file": file_json(path)?}))
}

/// One request to the test module: `<pattern> <fd> <addr>`.
fn kmod_request(ctl: &Path, pattern: &str, fd: i32, addr: usize) -> anyhow::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(ctl)
        .and_then(|mut c| c.write_all(format!("{pattern} {fd} {addr}\n").as_bytes()))
        .with_context(|| format!("asking the module ({}) for {pattern}", ctl.display()))
}

fn kmod(ctl: &Path, path: &Path, pattern: &str) -> anyhow::Result<serde_json::Value> {
    let f = write_file(path, 64 << 10)?;
    // Read it back so its page-cache events name it (learning).
    let _ = std::fs::read(path)?;
    let mut tids = Vec::new();
    match pattern {
        "fault" => {
            // A fresh anonymous page, never a mapping of FILE: faulting on
            // FILE itself under its invalidate_lock would really deadlock.
            // SAFETY: a new private anonymous mapping of one page.
            let buf = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if buf == libc::MAP_FAILED {
                bail!("mmap: {}", std::io::Error::last_os_error());
            }
            marker("kmod fault begin")?;
            kmod_request(ctl, "fault", f.as_raw_fd(), buf as usize)?;
            marker("kmod fault end")?;
            tids.push(tid());
            // SAFETY: the module wrote into the page; read it back.
            let first = unsafe { std::ptr::read_volatile(buf as *const u8) };
            if first != 0xa5 {
                bail!("the module did not write the page (read {first:#x})");
            }
        }
        "order" => {
            marker("kmod order begin")?;
            // Two threads, one after the other (the module serialises
            // them so nothing really deadlocks): the documented order, then
            // the wrong one.
            for p in ["order-good", "order-bad"] {
                let fd = f.as_raw_fd();
                let t = std::thread::scope(|s| {
                    s.spawn(|| kmod_request(ctl, p, fd, 0).map(|()| tid()))
                        .join()
                        .expect("request thread")
                })?;
                tids.push(t);
            }
            marker("kmod order end")?;
        }
        other => bail!("unknown kmod pattern {other:?}"),
    }
    Ok(serde_json::json!({"tids": tids, "file": file_json(path)?}))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize| a(i).parse::<f64>().ok();
    let r = match a(0) {
        "files" => num(2).map(|n| files(Path::new(a(1)), n as usize)),
        "punch" => num(2).map(|n| punches(Path::new(a(1)), n as u64)),
        "contend" => num(2)
            .zip(num(3))
            .map(|(s, t)| contend(Path::new(a(1)), s, t as usize)),
        "fault-punch" => num(2).map(|n| fault_punch(Path::new(a(1)), n as usize)),
        "mmap-churn" => num(1)
            .zip(num(2))
            .map(|(s, t)| mmap_churn(s, t as usize, num(3).unwrap_or(0.0))),
        "kmod" => Some(kmod(&PathBuf::from(a(1)), Path::new(a(2)), a(3))),
        _ => None,
    };
    match r {
        None => {
            eprintln!(
                "usage: rl-locktest files DIR N | punch FILE N | contend FILE SECS THREADS | fault-punch FILE ROUNDS | mmap-churn SECS THREADS [RATE] | kmod CTL FILE fault|order"
            );
            std::process::ExitCode::from(2)
        }
        Some(Ok(mut v)) => {
            v["pid"] = std::process::id().into();
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Some(Err(e)) => {
            eprintln!("rl-locktest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
