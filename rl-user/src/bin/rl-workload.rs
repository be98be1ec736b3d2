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
//! With `--fsops`, each iteration is instead the file-operation sequence of
//! the filesystem tests (see [`fsops_iteration`]): a punch, a zero, a
//! collapse, an insert, a shrinking and a growing truncate, an
//! `FS_IOC_UNRESVSP64` punch, O_DIRECT writes and reads, and three DIOs
//! that leave `iomap_dio_rw` early (a read at EOF, one past it, and a
//! `RWF_NOWAIT` read over dirty pages); it reports each one's return value.
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
    /// The file-operation sequence instead (punch, zero, collapse, insert,
    /// truncates, the UNRESVSP ioctl, O_DIRECT including early exits).
    #[arg(long)]
    fsops: bool,
    /// Leave the work file in place at the end. Tests that record the whole
    /// machine while other tests run use it: a removed file's inode number
    /// may be reused at once by another test's file, whose events would then
    /// look like this file's.
    #[arg(long)]
    keep: bool,
}

/// `FS_IOC_UNRESVSP64`: `_IOW('X', 43, struct space_resv)` (include/uapi/linux/fs.h).
const FS_IOC_UNRESVSP64: libc::Ioctl = 0x4030_582b as libc::Ioctl;

/// `struct space_resv` (include/uapi/linux/fs.h).
#[repr(C)]
struct SpaceResv {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_sysid: i32,
    l_pid: u32,
    l_pad: [i32; 4],
}

/// The return values of one `--fsops` iteration, in order (0 or a byte
/// count on success, `-errno` on failure), by name.
#[derive(Default)]
struct FsopsResults {
    rets: Vec<(&'static str, i64)>,
}

impl FsopsResults {
    fn push(&mut self, name: &'static str, rc: isize) {
        let v = if rc < 0 {
            -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
        } else {
            rc as i64
        };
        self.rets.push((name, v));
    }
}

/// One `--fsops` iteration on a file of `PAGES` pages (restored to that
/// size at the end), with page-aligned ranges (every filesystem here has
/// 4 KiB blocks). Names: `punch` (pages 32..=39), `zero` (40..=43),
/// `collapse` (page 8), `insert` (page 8), `truncate_restore` (to 64 pages),
/// `truncate_shrink` (to 48), `truncate_grow` (back to 64), `unresvsp` (pages 44..=45),
/// `dio_write` (page 16), `dio_read` (page 20), `dio_read_eof` (at EOF),
/// `dio_read_past_eof` (a page past it), `dio_read_nowait` (RWF_NOWAIT
/// over page 2, dirtied just before through the page cache). Failures are
/// reported, not fatal: btrfs has no collapse or insert.
fn fsops_iteration(file: &File, dio: &File, buf: &Aligned, out: &mut FsopsResults) {
    let fd = file.as_raw_fd();
    let dfd = dio.as_raw_fd();
    let p = |n: usize| (n * PAGE) as i64;
    // SAFETY: plain syscalls on valid fds with valid buffers.
    unsafe {
        out.push(
            "punch",
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                p(32),
                p(8),
            ) as isize,
        );
        out.push(
            "zero",
            libc::fallocate(
                fd,
                libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
                p(40),
                p(4),
            ) as isize,
        );
        out.push(
            "collapse",
            libc::fallocate(fd, libc::FALLOC_FL_COLLAPSE_RANGE, p(8), p(1)) as isize,
        );
        out.push(
            "insert",
            libc::fallocate(fd, libc::FALLOC_FL_INSERT_RANGE, p(8), p(1)) as isize,
        );
        // The size back to 64 pages (unchanged where collapse and insert
        // failed, or after both: still a setattr truncate).
        out.push("truncate_restore", libc::ftruncate(fd, p(PAGES)) as isize);
        out.push(
            "truncate_shrink",
            libc::ftruncate(fd, p(TRUNCATE_TO)) as isize,
        );
        out.push("truncate_grow", libc::ftruncate(fd, p(PAGES)) as isize);
        let sr = SpaceResv {
            l_type: 0,
            l_whence: libc::SEEK_SET as i16,
            l_start: p(44),
            l_len: p(2),
            l_sysid: 0,
            l_pid: 0,
            l_pad: [0; 4],
        };
        out.push(
            "unresvsp",
            libc::ioctl(fd, FS_IOC_UNRESVSP64, &sr as *const SpaceResv) as isize,
        );
        out.push(
            "dio_write",
            libc::pwrite(dfd, buf.ptr.cast(), PAGE, p(16) as libc::off_t),
        );
        out.push(
            "dio_read",
            libc::pread(dfd, buf.ptr.cast(), PAGE, p(20) as libc::off_t),
        );
        out.push(
            "dio_read_eof",
            libc::pread(dfd, buf.ptr.cast(), PAGE, p(PAGES) as libc::off_t),
        );
        out.push(
            "dio_read_past_eof",
            libc::pread(dfd, buf.ptr.cast(), PAGE, p(PAGES + 1) as libc::off_t),
        );
        // Dirty page 2 through the page cache; the NOWAIT direct read over
        // it must not wait for its writeback.
        let one = [1u8; 16];
        let w = libc::pwrite(fd, one.as_ptr().cast(), one.len(), p(2) as libc::off_t);
        assert_eq!(w, one.len() as isize, "buffered write");
        let iov = libc::iovec {
            iov_base: buf.ptr.cast(),
            iov_len: PAGE,
        };
        out.push(
            "dio_read_nowait",
            libc::preadv2(dfd, &iov, 1, p(2) as libc::off_t, libc::RWF_NOWAIT),
        );
        libc::fdatasync(fd);
    }
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
        .read(true)
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
    let mut results = FsopsResults::default();
    for _ in 0..args.iterations {
        if args.fsops {
            fsops_iteration(&file, &dio, &buf, &mut results);
        } else if args.heavy {
            heavy_iteration(&file, &dio, &buf)?;
        } else {
            iteration(&file, &dio, &buf)?;
        }
    }
    let elapsed = start.elapsed();
    drop(dio);
    drop(file);
    if !args.keep {
        let _ = std::fs::remove_file(&path);
    }

    if args.fsops {
        // What each call returned, in order, for the tests to compare.
        let rets: Vec<String> = results
            .rets
            .iter()
            .map(|(n, v)| format!("[\"{n}\",{v}]"))
            .collect();
        println!(
            "{{\"pid\":{},\"dev\":\"{}:{}\",\"ino\":{},\"iterations\":{},\"fsops\":[{}]}}",
            std::process::id(),
            libc::major(meta.dev()),
            libc::minor(meta.dev()),
            meta.ino(),
            args.iterations,
            rets.join(",")
        );
        return Ok(());
    }
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
