//! rl-workload: a small, known IO workload for rltop's capture tests and
//! benchmarks. Every iteration, on one file of 64 pages:
//!
//! 1. drops the file's page cache (`POSIX_FADV_DONTNEED`), so faults reach
//!    `filemap_fault` and add pages;
//! 2. mmaps it with `MADV_RANDOM` (no readahead) and reads pages 3, 7, 11;
//! 3. writes with O_DIRECT at pages 16..=17 and 24;
//! 4. punches a hole over pages 32..=39;
//! 5. truncates to 48 pages and extends back to 64.
//!
//! With `--wait-file`, it first prints a JSON line `{"ready":true,...}` with
//! its pid and the file's dev and ino, and waits for that file to exist.
//! At the end it prints one JSON line saying what it did (pid, dev, ino,
//! pages, byte ranges, elapsed time), which tests compare with the trace.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;

const PAGE: usize = 4096;
const PAGES: usize = 64;
const FAULT_PAGES: [usize; 3] = [3, 7, 11];
const DIO: [(usize, usize); 2] = [(16, 2), (24, 1)];
const PUNCH: (usize, usize) = (32, 8);
const TRUNCATE_TO: usize = 48;

#[derive(Parser)]
#[command(about = "A known fault/DIO/punch/truncate workload for rltop tests and benchmarks")]
struct Args {
    /// Directory for the work file (must be on a filesystem with O_DIRECT and punch hole, e.g. ext4).
    #[arg(long)]
    dir: PathBuf,
    /// How many times to run the sequence.
    #[arg(long, default_value_t = 1)]
    iterations: u64,
    /// Wait until this file exists before the first iteration (lets a tracer attach first).
    #[arg(long)]
    wait_file: Option<PathBuf>,
    /// Benchmark mix instead of the known sequence: per iteration, copy-on-write
    /// faults on every page of a private mapping (each one a `filemap_fault`
    /// without IO), four O_DIRECT writes, a punch and a truncate. Event-dense.
    #[arg(long)]
    heavy: bool,
}

fn check(rc: libc::c_int, what: &str) -> anyhow::Result<()> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| what.to_string());
    }
    Ok(())
}

/// A page-aligned buffer for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, PAGE).expect("valid layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Aligned { ptr, len }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe {
            std::alloc::dealloc(
                self.ptr,
                std::alloc::Layout::from_size_align(self.len, PAGE).expect("layout"),
            )
        };
    }
}

fn iteration(file: &File, dio: &File, buf: &Aligned) -> anyhow::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain syscalls on a valid fd; the mapping is used only inside
    // this function and unmapped before it returns.
    unsafe {
        check(libc::fdatasync(fd), "fdatasync")?;
        let rc = libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
        if rc != 0 {
            bail!("posix_fadvise: {}", std::io::Error::from_raw_os_error(rc));
        }
        let len = PAGES * PAGE;
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap");
        }
        check(libc::madvise(map, len, libc::MADV_RANDOM), "madvise")?;
        let mut sum = 0u8;
        for p in FAULT_PAGES {
            sum = sum.wrapping_add(std::ptr::read_volatile((map as *const u8).add(p * PAGE)));
        }
        std::hint::black_box(sum);
        check(libc::munmap(map, len), "munmap")?;

        for (page, n) in DIO {
            let rc = libc::pwrite(
                dio.as_raw_fd(),
                buf.ptr.cast(),
                n * PAGE,
                (page * PAGE) as i64,
            );
            if rc != (n * PAGE) as isize {
                return Err(std::io::Error::last_os_error()).context("O_DIRECT pwrite");
            }
        }
        check(
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (PUNCH.0 * PAGE) as i64,
                (PUNCH.1 * PAGE) as i64,
            ),
            "fallocate(PUNCH_HOLE)",
        )?;
        check(
            libc::ftruncate(fd, (TRUNCATE_TO * PAGE) as i64),
            "ftruncate",
        )?;
        check(
            libc::ftruncate(fd, (PAGES * PAGE) as i64),
            "ftruncate (extend)",
        )?;
    }
    Ok(())
}

/// The benchmark iteration (`--heavy`): the page cache stays warm, so the
/// cost is the kernel's fault, DIO and punch paths, and tracing shows.
fn heavy_iteration(file: &File, dio: &File, buf: &Aligned) -> anyhow::Result<()> {
    let fd = file.as_raw_fd();
    let len = PAGES * PAGE;
    // SAFETY: plain syscalls on valid fds; the private mapping is written
    // only inside its bounds and unmapped before returning.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
            fd,
            0,
        );
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mmap");
        }
        // Write faults on a private file mapping do not fault around: each
        // page is one filemap_fault, served from the page cache.
        for p in 0..PAGES {
            std::ptr::write_volatile((map as *mut u8).add(p * PAGE), 1);
        }
        check(libc::munmap(map, len), "munmap")?;
        for page in [16, 20, 24, 28] {
            if libc::pwrite(dio.as_raw_fd(), buf.ptr.cast(), PAGE, (page * PAGE) as i64)
                != PAGE as isize
            {
                return Err(std::io::Error::last_os_error()).context("O_DIRECT pwrite");
            }
        }
        check(
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                (PUNCH.0 * PAGE) as i64,
                (PUNCH.1 * PAGE) as i64,
            ),
            "fallocate(PUNCH_HOLE)",
        )?;
        check(
            libc::ftruncate(fd, (TRUNCATE_TO * PAGE) as i64),
            "ftruncate",
        )?;
        check(
            libc::ftruncate(fd, (PAGES * PAGE) as i64),
            "ftruncate (extend)",
        )?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let path = args.dir.join(format!("rl-workload.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&vec![0x5a; PAGES * PAGE])
        .context("filling the work file")?;
    file.sync_all()?;
    let dio = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let buf = Aligned::new(2 * PAGE);
    let meta = file.metadata()?;

    if let Some(w) = &args.wait_file {
        // Tell the tracer which file to watch, then wait for it to attach.
        println!(
            "{{\"ready\":true,\"pid\":{},\"dev\":\"{}:{}\",\"ino\":{}}}",
            std::process::id(),
            libc::major(meta.dev()),
            libc::minor(meta.dev()),
            meta.ino()
        );
        std::io::stdout().flush()?;
        while !w.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let start = Instant::now();
    for _ in 0..args.iterations {
        if args.heavy {
            heavy_iteration(&file, &dio, &buf)?;
        } else {
            iteration(&file, &dio, &buf)?;
        }
    }
    let elapsed = start.elapsed();
    drop(dio);
    drop(file);
    let _ = std::fs::remove_file(&path);

    let pages = |v: &[(usize, usize)]| -> String {
        v.iter()
            .map(|(p, n)| format!("[{},{}]", p * PAGE, n * PAGE))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "{{\"pid\":{},\"path\":{},\"dev\":\"{}:{}\",\"ino\":{},\"iterations\":{},\"elapsed_ns\":{},\
         \"fault_pages\":{:?},\"dio\":[{}],\"punch\":[{},{}],\"truncate\":[{},{}]}}",
        std::process::id(),
        serde_json::to_string(&path.display().to_string())?,
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino(),
        args.iterations,
        elapsed.as_nanos(),
        FAULT_PAGES,
        pages(&DIO),
        PUNCH.0 * PAGE,
        PUNCH.1 * PAGE,
        TRUNCATE_TO * PAGE,
        PAGES * PAGE,
    );
    Ok(())
}
