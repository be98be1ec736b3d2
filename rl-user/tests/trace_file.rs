//! The `.rlt` trace format v1: round trips, size, file safety, damage
//! handling (library and `rltop dump`), and the fuzz seed corpus.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use rltop::events::jsonl::JsonlReader;
use rltop::events::{Body, Dev, Event, Mode};
use rltop::trace::{
    CHUNK_HEADER_LEN, Item, MAGIC, Problem, TraceError, TraceHeader, TraceReader, TraceWriter,
    open_events,
};

mod common;
use common::{RLTOP, crate_dir, data, rltop, stderr};

/// A small deterministic PRNG (xorshift64*), so runs are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A synthetic but realistic stream: 8 threads of one process faulting
/// pages in order under mmap_lock, taking range locks, doing direct IO and
/// hitting kernel lock contention, on 4 files.
#[allow(clippy::too_many_lines)] // one scenario and its assertions, in order
fn realistic(n: usize) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n + 8);
    let mut ts = 1_000_000_000u64;
    let pid = 5000;
    let mm = 0xffff_8881_0420_0000u64;
    let dev = Dev { major: 8, minor: 3 };
    let tree = |f: u64| 0xffff_8881_0a00_0000u64 + f * 0x1000;
    let mut cpus = [0u32, 1, 2, 3, 0, 1, 2, 3];
    let mut index = [0u64; 4];
    let mut pos = [0u64; 4];
    let mut push = |out: &mut Vec<Event>, rng: &mut Rng, tid: u32, cpu: u32, body: Body| {
        ts += 200 + rng.below(3000);
        out.push(Event {
            ts,
            tid,
            pid,
            cpu: Some(cpu),
            body,
        });
    };
    for t in 0..8u32 {
        push(
            &mut out,
            &mut rng,
            pid + t,
            t % 4,
            Body::Task {
                comm: format!("fio-{t}"),
                kthread: false,
            },
        );
    }
    for f in 0..4 {
        push(
            &mut out,
            &mut rng,
            pid,
            0,
            Body::Tree {
                tree: tree(f),
                dev,
                ino: 100 + f,
            },
        );
    }
    while out.len() < n {
        let t = rng.below(8) as usize;
        let tid = pid + t as u32;
        if rng.below(50) == 0 {
            cpus[t] = rng.below(4) as u32; // migration
        }
        let cpu = cpus[t];
        let f = (t % 4) as u64;
        match rng.below(10) {
            0..=4 => {
                let i = index[f as usize];
                index[f as usize] += 1;
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::MmapLockRequest { mm, write: false },
                );
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::MmapLockAcquired {
                        mm,
                        write: false,
                        success: true,
                    },
                );
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::Fault {
                        dev,
                        ino: 100 + f,
                        index: i,
                    },
                );
                if rng.below(10) < 7 {
                    push(
                        &mut out,
                        &mut rng,
                        tid,
                        cpu,
                        Body::PageAdd {
                            dev,
                            ino: 100 + f,
                            index: i,
                            order: None,
                        },
                    );
                }
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::MmapLockRelease { mm, write: false },
                );
            }
            5..=7 => {
                let lock = 0xffff_c900_0000_0000u64 + t as u64 * 0x4000 + rng.below(4) * 0x40;
                let start = index[f as usize];
                let mode = if rng.below(4) == 0 {
                    Mode::Excl
                } else {
                    Mode::Read
                };
                let tr = tree(f);
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::RlRequest {
                        tree: tr,
                        lock,
                        start,
                        last: start + 15,
                        mode,
                    },
                );
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::RlAcquired { tree: tr, lock },
                );
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::RlRelease { tree: tr, lock },
                );
            }
            8 => {
                let io = 0xffff_8881_2000_0000u64 + rng.below(64) * 0x100;
                let p = pos[f as usize];
                pos[f as usize] += 4096;
                let write = rng.below(2) == 0;
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::DioBegin {
                        io,
                        dev,
                        ino: 100 + f,
                        pos: p,
                        len: 4096,
                        write,
                    },
                );
                push(&mut out, &mut rng, tid, cpu, Body::DioEnd { io, ret: 4096 });
            }
            _ => {
                let addr = 0xffff_8881_0420_0040u64 + rng.below(4) * 8;
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::ContentionBegin {
                        addr,
                        flags: 2,
                        caller: None,
                    },
                );
                push(
                    &mut out,
                    &mut rng,
                    tid,
                    cpu,
                    Body::ContentionEnd {
                        addr: Some(addr),
                        ret: 0,
                    },
                );
            }
        }
    }
    out.truncate(n);
    out
}

fn write_trace(path: &Path, events: &[Event], flush_every: usize) -> u64 {
    let mut w = TraceWriter::create(path, &TraceHeader::new("test")).unwrap();
    for (i, ev) in events.iter().enumerate() {
        w.push(ev).unwrap();
        if (i + 1) % flush_every == 0 {
            w.flush().unwrap();
        }
    }
    w.finish().unwrap().bytes
}

/// Reads everything, splitting events from problems; panics on hard errors.
fn read_all<R: std::io::Read>(r: TraceReader<R>) -> (Vec<Event>, Vec<Problem>) {
    let mut evs = Vec::new();
    let mut probs = Vec::new();
    for item in r {
        match item.unwrap() {
            Item::Event(e) => evs.push(e),
            Item::Problem(p) => probs.push(p),
        }
    }
    (evs, probs)
}

/// Byte offsets of every chunk in a well-formed trace.
fn chunk_offsets(bytes: &[u8]) -> Vec<usize> {
    let hlen = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut at = 16 + hlen + 4;
    let mut out = Vec::new();
    while at < bytes.len() {
        out.push(at);
        let comp = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += CHUNK_HEADER_LEN + comp;
    }
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn round_trip_and_size_per_event() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    let events = realistic(200_000);
    let mut header = TraceHeader::new("record");
    header.kernel_release = "6.12.0-test".into();
    header.probes = vec!["rl_request".into(), "fault".into()];
    header.flavour = Some("fifo".into());
    header.start_monotonic_ns = Some(events[0].ts);
    let mut w = TraceWriter::create(&path, &header).unwrap();
    for ev in &events {
        w.push(ev).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.events, 200_000);
    assert_eq!(stats.chunks, 4, "65536 events per chunk");
    let size = fs::metadata(&path).unwrap().len();
    assert_eq!(stats.bytes, size);
    let per_event = size as f64 / events.len() as f64;
    println!(
        "{} events, {size} bytes, {per_event:.2} bytes/event",
        events.len()
    );
    assert!(per_event < 16.0, "{per_event:.2} bytes/event");

    let r = TraceReader::open(&path).unwrap();
    assert_eq!(
        r.header(),
        &TraceHeader {
            version: 1,
            ..header
        }
    );
    let (back, problems) = read_all(r);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(back, events);
}

#[test]
fn every_kind_round_trips_through_a_trace() {
    let data = data("all_kinds.jsonl");
    let events: Vec<Event> = JsonlReader::new(&fs::read(&data).unwrap()[..])
        .map(Result::unwrap)
        .collect();
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    write_trace(&path, &events, 5);
    let (back, problems) = read_all(TraceReader::open(&path).unwrap());
    assert!(problems.is_empty());
    assert_eq!(back, events);
    // open_events reads both forms alike.
    let from_jsonl: Vec<_> = open_events(&data).unwrap().map(Result::unwrap).collect();
    let from_trace: Vec<_> = open_events(&path).unwrap().map(Result::unwrap).collect();
    assert_eq!(from_jsonl, from_trace);
    assert_eq!(from_jsonl.len(), events.len());
}

#[test]
fn created_mode_0600_even_over_an_existing_file() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    fs::write(&path, b"old contents that are longer than nothing").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    write_trace(&path, &realistic(10), 100);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (back, problems) = read_all(TraceReader::open(&path).unwrap());
    assert_eq!(
        (back.len(), problems.len()),
        (10, 0),
        "old contents truncated"
    );

    let fresh = dir.path().join("fresh.rlt");
    write_trace(&fresh, &[], 1);
    assert_eq!(
        fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn symlink_refused_and_target_untouched() {
    let dir = tmp();
    let target = dir.path().join("target");
    fs::write(&target, b"precious").unwrap();
    let link = dir.path().join("link.rlt");
    symlink(&target, &link).unwrap();
    let err = TraceWriter::create(&link, &TraceHeader::new("test"))
        .err()
        .unwrap();
    assert!(matches!(err, TraceError::Symlink { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"precious");
}

#[test]
fn truncated_last_chunk_keeps_earlier_events() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    let events = realistic(3000);
    write_trace(&path, &events, 1000);
    let bytes = fs::read(&path).unwrap();
    let chunks = chunk_offsets(&bytes);
    assert_eq!(chunks.len(), 3);
    // Cut in the middle of the last chunk's payload, and inside its header.
    for cut in [(chunks[2] + bytes.len()) / 2, chunks[2] + 10] {
        let (back, problems) = read_all(TraceReader::from_bytes(&bytes[..cut]).unwrap());
        assert_eq!(back, events[..2000]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].offset, chunks[2] as u64);
        assert!(problems[0].message.contains("truncated"), "{}", problems[0]);
        assert!(
            problems[0]
                .message
                .contains(&format!("chunk at byte {}", chunks[2]))
        );
    }
}

#[test]
fn corrupt_middle_chunk_is_skipped_and_later_chunks_read() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    let events = realistic(3000);
    write_trace(&path, &events, 1000);
    let clean = fs::read(&path).unwrap();
    let chunks = chunk_offsets(&clean);
    // A flipped payload byte, a flipped length, a flipped magic byte.
    for at in [(chunks[1] + chunks[2]) / 2, chunks[1] + 5, chunks[1]] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let (back, problems) = read_all(TraceReader::open(&path).unwrap());
        assert_eq!(back.len(), 2000, "corruption at {at}");
        assert_eq!(back[..1000], events[..1000]);
        assert_eq!(back[1000..], events[2000..]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].offset, chunks[1] as u64);
        assert!(problems[0].message.contains("skipped"), "{}", problems[0]);
    }
    // Through the binary: warning on stderr, events on stdout, exit 0.
    let mut bytes = clean.clone();
    bytes[(chunks[1] + chunks[2]) / 2] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let out = rltop(&["dump", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 2000);
    let err = stderr(&out);
    assert_eq!(
        err.trim_end(),
        format!(
            "rltop: warning: {}: chunk at byte {}: crc mismatch, skipped (resumed at byte {})",
            path.display(),
            chunks[1],
            chunks[2]
        )
    );
}

#[test]
fn garbage_between_chunks_is_skipped() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    let events = realistic(2000);
    write_trace(&path, &events, 1000);
    let clean = fs::read(&path).unwrap();
    let chunks = chunk_offsets(&clean);
    let mut bytes = clean[..chunks[1]].to_vec();
    bytes.extend_from_slice(b"RLCK garbage RLC");
    bytes.extend_from_slice(&clean[chunks[1]..]);
    bytes.extend_from_slice(b"trailing");
    let (back, problems) = read_all(TraceReader::from_bytes(&bytes).unwrap());
    assert_eq!(back, events);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].offset, chunks[1] as u64);
    assert!(problems[1].message.contains("trailing"), "{}", problems[1]);
}

fn assert_dump_fails(path: &Path, expect: &str) {
    let out = rltop(&["dump", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rltop: ") && err.contains(expect), "{err}");
}

#[test]
fn random_bytes_are_not_a_trace() {
    let dir = tmp();
    let path = dir.path().join("random.rlt");
    let mut rng = Rng(42);
    let bytes: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    fs::write(&path, &bytes).unwrap();
    let err = TraceReader::open(&path).err().unwrap();
    assert!(matches!(err, TraceError::NotATrace { .. }), "{err}");
    assert_dump_fails(
        &path,
        "is not an rltop trace (bad magic); record one with `rltop record -o FILE`",
    );
}

#[test]
fn unknown_version_is_named() {
    let dir = tmp();
    let path = dir.path().join("v7.rlt");
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&7u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 64]);
    fs::write(&path, &bytes).unwrap();
    let err = TraceReader::open(&path).err().unwrap();
    assert!(
        matches!(err, TraceError::UnsupportedVersion { version: 7, .. }),
        "{err}"
    );
    assert_dump_fails(
        &path,
        "is trace format version 7, but this rltop reads only version 1",
    );
}

#[test]
fn empty_and_missing_files() {
    let dir = tmp();
    let path = dir.path().join("empty.rlt");
    fs::write(&path, b"").unwrap();
    assert!(matches!(
        TraceReader::open(&path),
        Err(TraceError::Empty { .. })
    ));
    assert_dump_fails(&path, "is empty, not an rltop trace");
    assert_dump_fails(&dir.path().join("missing.rlt"), "No such file");
    // A header cut short is a corrupt header, not a panic.
    let full = dir.path().join("full.rlt");
    write_trace(&full, &realistic(10), 100);
    let bytes = fs::read(&full).unwrap();
    for cut in [4, 8, 14, 30] {
        let err = TraceReader::from_bytes(&bytes[..cut]).err().unwrap();
        assert!(
            matches!(err, TraceError::BadHeader { .. }),
            "cut {cut}: {err}"
        );
    }
}

#[test]
fn header_tolerates_unknown_fields() {
    let json = br#"{"version":1,"source":"future","clock":"monotonic","shiny_new_field":[1,2]}"#;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(&crc32fast::hash(json).to_le_bytes());
    let r = TraceReader::from_bytes(&bytes).unwrap();
    assert_eq!(r.header().source, "future");
    assert_eq!(r.header().probes, Vec::<String>::new());
    assert_eq!(read_all(r), (vec![], vec![]));
    // A flipped header byte is caught by its CRC.
    let mut bad = bytes.clone();
    bad[20] ^= 1;
    let err = TraceReader::from_bytes(&bad).err().unwrap();
    assert!(
        err.to_string()
            .contains("corrupt trace header: checksum mismatch"),
        "{err}"
    );
}

#[test]
fn dump_text_names_tasks() {
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    write_trace(&path, &realistic(100), 1000);
    let out = rltop(&["dump", "--format", "text", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with("    0.000000000 cpu0   fio-0/5000[5000] task")
    );
    assert!(text.contains("fio-3/5003[5000] "), "{text}");
}

#[test]
fn dump_to_closed_pipe_is_quiet() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tmp();
    let path = dir.path().join("t.rlt");
    write_trace(&path, &realistic(200_000), 100_000);
    let mut child = Command::new(RLTOP)
        .args(["dump", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then close it
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// Files in `fuzz/seeds/<target>/`.
/// The fuzz seeds of `target`, and its regression corpus (the fuzzers'
/// minimized corpus, `cargo fuzz cmin`, kept so every input they found
/// interesting is replayed by the normal tests).
fn seeds(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["seeds", "regress"] {
        let dir = crate_dir().join("../fuzz").join(kind).join(target);
        if kind == "regress" && !dir.exists() {
            continue;
        }
        files.extend(
            fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path()),
        );
    }
    files.sort();
    files
}

#[test]
fn fuzz_seeds_do_not_panic() {
    let trace_seeds = seeds("trace_reader");
    let jsonl_seeds = seeds("jsonl_import");
    assert!(trace_seeds.len() >= 100 && jsonl_seeds.len() >= 100);
    let mut events = 0;
    for f in trace_seeds.iter().chain(&jsonl_seeds) {
        let bytes = fs::read(f).unwrap();
        if let Ok(r) = TraceReader::from_bytes(&bytes) {
            events += r.filter(|i| matches!(i, Ok(Item::Event(_)))).count();
        }
        events += JsonlReader::new(&bytes[..]).filter(Result::is_ok).count();
    }
    assert!(events > 0, "the seeds hold valid events");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any damage to a valid trace is reported or tolerated, never a panic,
    /// and never more events than were written.
    #[test]
    fn mutated_traces_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut: bool,
    ) {
        let bytes = sample_trace();
        let mut bytes = bytes.clone();
        for (i, b) in &flips {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(r) = TraceReader::from_bytes(&bytes) {
            let n = r.filter(|i| matches!(i, Ok(Item::Event(_)))).count();
            prop_assert!(n <= 600);
        }
    }
}

/// A 600-event trace in 6 chunks, built once.
fn sample_trace() -> &'static Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tmp();
        let path = dir.path().join("s.rlt");
        write_trace(&path, &realistic(600), 100);
        fs::read(&path).unwrap()
    })
}

#[test]
fn output_into_a_directory_others_can_write_is_refused_unless_forced() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = shared.join("t.rlt");
    let sim = |force: bool| {
        let mut c = std::process::Command::new(RLTOP);
        c.args(["simulate", "--events", "100", "-o"]).arg(&out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let refused = sim(false);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("writable by other users") && err.contains("--force"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written when refused");
    // import refuses too, and leaves no temporary file behind.
    let jsonl = dir.path().join("e.jsonl");
    std::fs::write(&jsonl, "{\"ts\":1,\"kind\":\"exit\",\"tid\":1,\"pid\":1}\n").unwrap();
    let imp = std::process::Command::new(RLTOP)
        .args(["import"])
        .arg(&jsonl)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(imp.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
    // --force writes it, 0600 as always.
    let forced = sim(true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
