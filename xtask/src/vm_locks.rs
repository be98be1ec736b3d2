//! vm-test's part for mainline's page-cache locks (issue 14): in the VM,
//! whose Debian kernel has kprobes and allows fentry, the test module
//! `rltest_locks` takes a real file's `invalidate_lock` and faults on an
//! anonymous user page under it, and takes `i_rwsem` and `invalidate_lock`
//! in both orders from two threads. Each pattern is recorded with the
//! `fentry` and with the `kprobe` lock source; here the raw events must show
//! the holds, the wrong-order request made while holding the other lock, and
//! the `page_fault` with the lock held, in the kernel's order, with nothing
//! lost (kretprobe misses included).
//!
//! With RLTOP_VM_FIXTURES=1 the checked traces (the workload's own events)
//! are written to `rl-user/tests/data/mainline/` as JSONL, the fixtures of
//! `rl-user/tests/mainline.rs`.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;
use serde_json::Value;

/// RLTOP_VM_ONLY=locks: the VM runs only this part (a quicker loop while
/// working on it; `cargo xtask vm-test` without it runs everything).
pub fn only() -> bool {
    std::env::var("RLTOP_VM_ONLY").is_ok_and(|v| v == "locks")
}

/// ext4 punches under each rwsem source (no module needed): exact counts.
/// Shared with the newer kernel's boot.
macro_rules! punch_init {
    () => {
        r#"for src in fentry kprobe; do
  rltop record --lock-source $src -o /work/pu.rlt -- rl-locktest punch /mnt/punch-$src 20 > /work/pu.log 2>&1
  echo "RLTOP-VM-LOCKS-RUN $src punch rc=$?"
  grep -E '^\{' /work/pu.log | sed 's/^/RLTOP-VM-LOCKS-REPORT /'
  grep -E 'error|rl-locktest:' /work/pu.log
  echo "RLTOP-VM-TRACE-BEGIN locks-$src punch"
  base64 /work/pu.rlt
  echo "RLTOP-VM-TRACE-END"
done
echo "RLTOP-VM-LOCKS-VMA-SYMBOLS=$(grep -w -e lock_vma_under_rcu -e __vma_start_write -e vma_start_write /proc/kallsyms | while read a t n m; do echo -n "$n "; done)"
"#
    };
}

/// The VM init's lock part (runs once ext4 is mounted on /mnt).
pub const INIT: &str = concat!(
    r#"echo RLTOP-VM-LOCKS-BEGIN
insmod /lib/rltest_locks.ko || echo "RLTOP-VM-INSMOD-FAILED locks"
echo RLTOP-VM-LOCKS-PROBES-BEGIN
rltop probes --verbose 2>&1 | grep -E 'files:|file locks:|contention callers|fentry:|fexit:|exceptions:|raw, files'
rltop probes --verbose --lock-source kprobe 2>&1 | grep -E 'file locks:|kprobe:(down|up_|_down)|kretprobe:(down|_down)'
echo RLTOP-VM-LOCKS-PROBES-END
for src in fentry kprobe; do
  for p in fault order; do
    rltop record --probe-cost --lock-source $src -o /work/lk.rlt -- rl-locktest kmod /sys/module/rltest_locks/parameters/run /mnt/lk-$src-$p $p > /work/lk.log 2>&1
    echo "RLTOP-VM-LOCKS-RUN $src $p rc=$? $(cat /sys/module/rltest_locks/parameters/ops)"
    grep -E '^\{' /work/lk.log | sed 's/^/RLTOP-VM-LOCKS-REPORT /'
    grep -E "error|rl-locktest:|kretprobe|probe cost: (exceptions|fentry:down_write|kprobe:down_write)" /work/lk.log
    echo "RLTOP-VM-TRACE-BEGIN locks-$src $p"
    base64 /work/lk.rlt
    echo "RLTOP-VM-TRACE-END"
  done
done
rmmod rltest_locks
"#,
    punch_init!(),
    r#"echo RLTOP-VM-LOCKS-END
"#
);

/// One lock event of a task, reduced to what the patterns check:
/// `request|acquired|release|fault class mode`.
fn step(e: &Value) -> Option<String> {
    let k = e["kind"].as_str()?;
    let mode = |e: &Value| if e["write"] == true { "write" } else { "read" };
    Some(match k {
        "file_lock_request" => format!("request {} {}", e["class"].as_str()?, mode(e)),
        "file_lock_acquired" if e["success"] == true => {
            format!("acquired {} {}", e["class"].as_str()?, mode(e))
        }
        "file_lock_acquired" => format!("failed {} {}", e["class"].as_str()?, mode(e)),
        "file_lock_release" => format!("release {} {}", e["class"].as_str()?, mode(e)),
        "page_fault" => format!("fault held={}", e["held"]),
        _ => return None,
    })
}

/// The steps of `tid` between its `rl-locktest <phase> begin` and `end`
/// markers (the markers come from the workload's main thread, `main`).
pub fn steps(events: &[Value], main: u64, tid: u64, phase: &str) -> Vec<String> {
    let mut inside = false;
    let mut out = Vec::new();
    for e in events {
        if e["kind"] == "marker" && e["tid"] == main {
            let t = e["text"].as_str().unwrap_or("");
            if t == format!("rl-locktest {phase} begin") {
                inside = true;
            } else if t == format!("rl-locktest {phase} end") {
                inside = false;
            }
        } else if inside
            && e["tid"] == tid
            && let Some(s) = step(e)
        {
            out.push(s);
        }
    }
    out
}

/// What each pattern must show, per thread.
pub fn expected(pattern: &str) -> Vec<Vec<&'static str>> {
    match pattern {
        // The module's thread: invalidate_lock held across a page fault.
        "fault" => vec![vec![
            "request invalidate_lock write",
            "acquired invalidate_lock write",
            "fault held=1",
            "release invalidate_lock write",
        ]],
        // Two threads: the documented order, then the wrong one (the
        // i_rwsem request made while invalidate_lock is held).
        "order" => vec![
            vec![
                "request i_rwsem write",
                "acquired i_rwsem write",
                "request invalidate_lock write",
                "acquired invalidate_lock write",
                "release invalidate_lock write",
                "release i_rwsem write",
            ],
            vec![
                "request invalidate_lock write",
                "acquired invalidate_lock write",
                "request i_rwsem write",
                "acquired i_rwsem write",
                "release i_rwsem write",
                "release invalidate_lock write",
            ],
        ],
        _ => Vec::new(),
    }
}

/// Checks the lock runs of the console `body`; the traces were decoded
/// into `dir/locks-<source>-<pattern>.rlt` by `vm::check_runs`.
#[allow(clippy::too_many_lines)] // one scenario, step after step, as the test or benchmark runs it
pub fn check(
    body: &str,
    dir: &Path,
    rltop: &Path,
    root: &Path,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut expect = |ok: bool, what: String| {
        println!(
            "vm-test: page-cache locks: {what}: {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failures.push(format!("page-cache locks: {what}"));
        }
    };
    let section = body
        .split("RLTOP-VM-LOCKS-BEGIN")
        .nth(1)
        .and_then(|s| s.split("RLTOP-VM-LOCKS-END").next())
        .unwrap_or("");
    expect(
        !section.is_empty() && !section.contains("RLTOP-VM-INSMOD-FAILED"),
        "the rltest_locks module loads".into(),
    );
    let probes = section
        .split("RLTOP-VM-LOCKS-PROBES-BEGIN")
        .nth(1)
        .and_then(|s| s.split("RLTOP-VM-LOCKS-PROBES-END").next())
        .unwrap_or("");
    expect(
        probes
            .lines()
            .any(|l| l.starts_with("file locks: source fentry")),
        "fentry is this kernel's lock source (auto)".into(),
    );
    for p in ["fentry:down_write", "fexit:down_write", "fentry:up_write"] {
        expect(
            probes
                .lines()
                .any(|l| l.starts_with(p) && l.contains(" attached ")),
            format!("{p} attaches"),
        );
    }
    for p in ["kprobe:down_write", "kretprobe:down_write (maxactive 4096)"] {
        expect(
            probes
                .lines()
                .any(|l| l.starts_with(p) && l.contains(" attached ")),
            format!("{p} attaches with --lock-source kprobe"),
        );
    }
    check_punches(section, dir, rltop, &mut expect)?;
    let vma = section
        .lines()
        .find_map(|l| l.split("RLTOP-VM-LOCKS-VMA-SYMBOLS=").nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    println!(
        "vm-test: page-cache locks: per-VMA lock functions in this kernel's kallsyms: [{vma}]"
    );
    let fixtures = std::env::var("RLTOP_VM_FIXTURES").is_ok_and(|v| v == "1");
    for src in ["fentry", "kprobe"] {
        for pattern in ["fault", "order"] {
            let what = format!("{pattern} pattern, {src} source");
            let run = section
                .lines()
                .find(|l| l.contains(&format!("RLTOP-VM-LOCKS-RUN {src} {pattern} ")))
                .unwrap_or("");
            let report: Option<Value> = section
                .lines()
                .filter_map(|l| l.split("RLTOP-VM-LOCKS-REPORT ").nth(1))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| {
                    v["file"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(&format!("lk-{src}-{pattern}")))
                });
            let Some(report) = report.filter(|_| run.contains("rc=0")) else {
                expect(false, format!("{what}: rltop record runs ({run:?})"));
                continue;
            };
            let trace = dir.join(format!("locks-{src}-{pattern}.rlt"));
            let out = Command::new(rltop).arg("dump").arg(&trace).output()?;
            let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let header = header(rltop, &trace)?;
            expect(
                header == src,
                format!("{what}: the trace says lock_source {header:?}"),
            );
            let lost: u64 = events
                .iter()
                .filter(|e| e["kind"] == "lost")
                .filter_map(|e| e["count"].as_u64())
                .sum();
            expect(lost == 0, format!("{what}: {lost} events lost"));
            let (dev, ino) = (
                report["file"]["dev"].as_str().unwrap_or(""),
                report["file"]["ino"].as_u64().unwrap_or(0),
            );
            let path = report["file"]["path"].as_str().unwrap_or("");
            let named = events.iter().any(|e| {
                e["kind"] == "file"
                    && e["dev"] == dev
                    && e["ino"] == ino
                    && e["path"] == path
                    && e["fs"] == "ext4"
                    && e["i_rwsem"].as_u64().is_some()
                    && e["invalidate_lock"].as_u64().is_some()
            });
            expect(
                named,
                format!("{what}: {path} named, with its lock addresses"),
            );
            let main = report["pid"].as_u64().unwrap_or(0);
            let tids: Vec<u64> = report["tids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let phase = format!("kmod {pattern}");
            let want = expected(pattern);
            let got: Vec<Vec<String>> = tids
                .iter()
                .map(|&t| steps(&events, main, t, &phase))
                .collect();
            let same = got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| g == w);
            expect(
                same,
                format!("{what}: raw events per thread {got:?} (expected {want:?})"),
            );
            if pattern == "fault" {
                let stack = events
                    .iter()
                    .find(|e| {
                        e["kind"] == "page_fault" && tids.contains(&e["tid"].as_u64().unwrap_or(0))
                    })
                    .and_then(|e| e["stack"].as_str())
                    .unwrap_or("");
                expect(
                    stack.contains("rltest_fault"),
                    format!("{what}: the fault's stack shows the module ({stack})"),
                );
                // Where the held lock was taken: the write request's stack.
                let taken = events
                    .iter()
                    .find(|e| {
                        e["kind"] == "file_lock_request"
                            && e["class"] == "invalidate_lock"
                            && e["write"] == true
                            && tids.contains(&e["tid"].as_u64().unwrap_or(0))
                    })
                    .and_then(|e| e["stack"].as_str())
                    .unwrap_or("");
                expect(
                    taken.contains("rltest_fault"),
                    format!(
                        "{what}: the invalidate_lock request's stack shows the module ({taken})"
                    ),
                );
            }
            if fixtures {
                write_fixture(root, src, pattern, main, &out.stdout)?;
            }
        }
    }
    Ok(())
}

/// ext4 punches with each rwsem source: per punch exactly one write
/// request, acquisition and release of each of the file's two locks
/// (ext4_fallocate/ext4_punch_hole: inode_lock, filemap_invalidate_lock).
pub fn check_punches(
    section: &str,
    dir: &Path,
    rltop: &Path,
    expect: &mut impl FnMut(bool, String),
) -> anyhow::Result<()> {
    for src in ["fentry", "kprobe"] {
        let what = format!("20 ext4 punches, {src} source");
        let run = section
            .lines()
            .find(|l| l.contains(&format!("RLTOP-VM-LOCKS-RUN {src} punch ")))
            .unwrap_or("");
        let report = section
            .lines()
            .filter_map(|l| l.split("RLTOP-VM-LOCKS-REPORT ").nth(1))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["file"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!("punch-{src}")))
            });
        let Some(report) = report.filter(|_| run.contains("rc=0")) else {
            expect(false, format!("{what}: rltop record runs ({run:?})"));
            continue;
        };
        let trace = dir.join(format!("locks-{src}-punch.rlt"));
        let out = Command::new(rltop).arg("dump").arg(&trace).output()?;
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let tid = report["tid"].as_u64().unwrap_or(0);
        let n = report["punches"].as_u64().unwrap_or(0) as usize;
        let got = steps(&events, tid, tid, "punch");
        let mut counts = std::collections::BTreeMap::new();
        for s in &got {
            *counts.entry(s.as_str()).or_insert(0usize) += 1;
        }
        // invalidate_lock once per punch (ext4_punch_hole). i_rwsem k times
        // per punch, the same k for every step: 6.1's ext4_fallocate()
        // also takes it around ext4_convert_inline_data() before calling
        // ext4_punch_hole(), which takes it again (k = 2).
        let k = counts.get("request i_rwsem write").copied().unwrap_or(0) / n.max(1);
        let want: std::collections::BTreeMap<&str, usize> = [
            ("request i_rwsem write", k * n),
            ("acquired i_rwsem write", k * n),
            ("release i_rwsem write", k * n),
            ("request invalidate_lock write", n),
            ("acquired invalidate_lock write", n),
            ("release invalidate_lock write", n),
        ]
        .into_iter()
        .collect();
        let lost: u64 = events
            .iter()
            .filter(|e| e["kind"] == "lost")
            .filter_map(|e| e["count"].as_u64())
            .sum();
        expect(
            n == 20 && (1..=2).contains(&k) && counts == want && lost == 0,
            format!("{what}: {counts:?} (i_rwsem {k} per punch), {lost} lost"),
        );
    }
    Ok(())
}

/// The trace header's `lock_source`.
fn header(rltop: &Path, trace: &Path) -> anyhow::Result<String> {
    // `rltop dump` has no header output; read the JSON header directly:
    // magic (8), version (4), length (4), JSON (see docs/trace-format.md).
    let _ = rltop;
    let b = std::fs::read(trace).with_context(|| trace.display().to_string())?;
    let len = u32::from_le_bytes(b.get(12..16).context("short trace")?.try_into()?) as usize;
    let h: Value = serde_json::from_slice(b.get(16..16 + len).context("short trace")?)?;
    Ok(h["lock_source"].as_str().unwrap_or("").to_string())
}

/// Keeps the workload's own events (its pid: markers, lock events, faults,
/// names of its files) as the fixture of one pattern.
fn write_fixture(
    root: &Path,
    src: &str,
    pattern: &str,
    pid: u64,
    dump: &[u8],
) -> anyhow::Result<()> {
    let dir = root.join("rl-user/tests/data/mainline");
    std::fs::create_dir_all(&dir)?;
    let mut out = String::new();
    for l in String::from_utf8_lossy(dump).lines() {
        let Ok(e) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if e["pid"] == pid || e["kind"] == "lost" {
            out.push_str(l);
            out.push('\n');
        }
    }
    let file = dir.join(format!("kmod-{pattern}-{src}.jsonl"));
    std::fs::write(&file, out)?;
    println!("vm-test: wrote {}", file.display());
    Ok(())
}

/// Debian's newer kernel for bookworm (a meta package; 6.12 today), whose
/// per-VMA locks the 6.1 kernel lacks.
const NEWER_META: &str = "linux-image-6.12-amd64";

/// Modules for an ext4 image on a loop device (with their dependencies;
/// ext4's crc32c provider is only a soft dependency, so named here).
const NEWER_MODULES: &[&str] = &["crc32c_generic", "ext4", "loop"];

/// Boots Debian's newer kernel (when bookworm has one) with rltop and the
/// workload only (the module would need that kernel's headers, which
/// Debian installs only together with its image: not on this host), and
/// checks the fentry source there with the ext4 punches, and whether the
/// per-VMA lock functions exist. Without the package: says so.
#[allow(clippy::too_many_lines)] // one scenario, step after step, as the test or benchmark runs it
pub fn newer(dir: &Path, bins: &Path, failures: &mut Vec<String>) -> anyhow::Result<()> {
    let out = Command::new("apt-cache")
        .args(["depends", NEWER_META])
        .output()?;
    let Some(pkg) = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
    else {
        println!("vm-test: newer kernel: apt has no {NEWER_META} here: not booted");
        return Ok(());
    };
    let abi = pkg.trim_start_matches("linux-image-").to_string();
    let dir = dir.join("newer");
    std::fs::create_dir_all(&dir)?;
    let find_deb = |dir: &Path| -> Option<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
            })
    };
    let deb = match find_deb(&dir) {
        Some(d) => d,
        None => {
            println!("vm-test: downloading {pkg}");
            crate::run(
                Command::new("apt-get")
                    .current_dir(&dir)
                    .args(["download", "-qq", &pkg]),
            )?;
            find_deb(&dir).context("apt-get download left no .deb")?
        }
    };
    // The kernel, and the modules an ext4 loop mount needs with their
    // dependencies (the package has no modules.dep: depmod makes it at
    // install; each module's `.modinfo` names what it depends on).
    let x = dir.join("x");
    if !x.join(format!("boot/vmlinuz-{abi}")).exists() {
        let _ = std::fs::remove_dir_all(&x);
        std::fs::create_dir_all(&x)?;
        crate::run(Command::new("sh").arg("-c").arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' ./boot/vmlinuz-{abi} ./lib/modules/{abi}/kernel",
            deb.display(),
            x.display()
        )))?;
    }
    let mdir = x.join(format!("lib/modules/{abi}/kernel"));
    let mut index = std::collections::HashMap::new();
    let mut stack = vec![mdir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str())
                && let Some((m, _)) = n.split_once(".ko")
            {
                index.insert(m.replace('-', "_"), p.clone());
            }
        }
    }
    let tree = dir.join("root");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "proc", "sys", "dev", "work", "tmp", "lib/fs", "mnt"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    // Depth first: dependencies before the module (unpacked: busybox
    // insmod hands the file to init_module as it is).
    let mut names: Vec<String> = Vec::new();
    fn add(
        m: &str,
        index: &std::collections::HashMap<String, std::path::PathBuf>,
        tree: &Path,
        names: &mut Vec<String>,
        depth: u32,
    ) -> anyhow::Result<()> {
        let m = m.replace('-', "_");
        if names.contains(&m) || depth > 16 {
            return Ok(());
        }
        let Some(src) = index.get(&m) else {
            return Ok(()); // built in
        };
        let dst = tree.join(format!("lib/fs/{m}.ko"));
        let unpack = match src.extension().and_then(|e| e.to_str()) {
            Some("xz") => format!("xz -dc '{}' > '{}'", src.display(), dst.display()),
            Some("zst") => format!("zstd -qdc '{}' > '{}'", src.display(), dst.display()),
            _ => format!("cp '{}' '{}'", src.display(), dst.display()),
        };
        crate::run(Command::new("sh").arg("-c").arg(unpack))?;
        let bytes = std::fs::read(&dst)?;
        let deps = bytes
            .windows(8)
            .position(|w| w == b"depends=")
            .map(|at| {
                let rest = &bytes[at + 8..];
                let end = rest.iter().position(|&c| c == 0).unwrap_or(0);
                String::from_utf8_lossy(&rest[..end]).into_owned()
            })
            .unwrap_or_default();
        for d in deps.split(',').filter(|d| !d.is_empty()) {
            add(d, index, tree, names, depth + 1)?;
        }
        names.push(m);
        Ok(())
    }
    for m in NEWER_MODULES {
        add(m, &index, &tree, &mut names, 0)?;
    }
    std::fs::write(tree.join("lib/fs/order"), names.join("\n") + "\n")?;
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))?;
    for b in ["rltop", "rl-locktest"] {
        std::fs::copy(bins.join(b), tree.join("bin").join(b))?;
    }
    let img = tree.join("fs.img");
    crate::run(Command::new("truncate").arg("-s").arg("64M").arg(&img))?;
    crate::run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img))?;
    let init = format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
echo RLTOP-VM-BEGIN
echo "RLTOP-VM-NEWER-UNAME=$(uname -r)"
mount -t tmpfs -o mode=0755 tmp /work
for m in $(cat /lib/fs/order); do insmod /lib/fs/$m.ko || echo "RLTOP-VM-FS-INSMOD-FAILED $m"; done
losetup /dev/loop0 /fs.img && mount -t ext4 /dev/loop0 /mnt && echo RLTOP-VM-FS-MOUNTED
echo RLTOP-VM-LOCKS-BEGIN
rltop probes --verbose 2>&1 | grep -E 'files:|file locks:|contention callers|fentry:down_write|fexit:down_write|exceptions:|raw, files|\(tp_btf\)|^mmap_lock:'
{}echo RLTOP-VM-LOCKS-END
echo RLTOP-VM-END
poweroff -f
"#,
        punch_init!()
    );
    std::fs::write(tree.join("init"), init)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tree.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let initrd = dir.join("initramfs.gz");
    crate::run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        tree.display(),
        initrd.display()
    )))?;
    println!("vm-test: booting Debian {abi} under QEMU TCG");
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "600",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
        ])
        .args(["-smp", "1", "-m", "1024", "-kernel"])
        .arg(x.join(format!("boot/vmlinuz-{abi}")))
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet preempt=voluntary",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
            "-monitor",
            "none",
        ])
        .output()
        .context("running qemu-system-x86_64")?;
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let Some(begin) = console.find("RLTOP-VM-BEGIN") else {
        failures.push(format!(
            "newer kernel {abi}: the VM never reached rltop's init"
        ));
        println!("vm-test: newer kernel {abi}: no init; console:\n{console}");
        return Ok(());
    };
    let body = &console[begin..];
    std::fs::write(dir.join("console.txt"), body)?;
    for l in body
        .lines()
        .filter(|l| !l.contains("TRACE") && l.len() < 300)
    {
        if !l
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        {
            println!("{l}");
        }
    }
    decode_traces(body, &dir)?;
    let mut expect = |ok: bool, what: String| {
        println!(
            "vm-test: newer kernel {abi}: {what}: {}",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            failures.push(format!("newer kernel {abi}: {what}"));
        }
    };
    let uname = body
        .lines()
        .find_map(|l| l.split("RLTOP-VM-NEWER-UNAME=").nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    expect(uname == abi, format!("boots ({uname})"));
    expect(
        body.contains("RLTOP-VM-FS-MOUNTED"),
        "an ext4 image is mounted".into(),
    );
    let section = body
        .split("RLTOP-VM-LOCKS-BEGIN")
        .nth(1)
        .and_then(|s| s.split("RLTOP-VM-LOCKS-END").next())
        .unwrap_or("");
    expect(
        section
            .lines()
            .any(|l| l.starts_with("file locks: source fentry")),
        "fentry is its lock source (auto)".into(),
    );
    // The BTF-typed and raw probes of the hot paths load and attach on
    // this verifier too (6.1 has neither tracepoint).
    for probe in [
        "filemap:mm_filemap_fault (tp_btf)",
        "iomap:iomap_dio_rw_begin (tp_btf)",
        "filemap:mm_filemap_add_to_page_cache (tp_btf)",
        "mmap_lock:mmap_lock_start_locking (raw)",
        "mmap_lock:mmap_lock_acquire_returned (raw)",
    ] {
        let line = section.lines().find(|l| l.starts_with(probe));
        expect(
            line.is_some_and(|l| l.contains(" attached ") && l.contains(" insns ")),
            format!(
                "{probe}: {}",
                line.map_or("no line", |l| l[probe.len()..].trim())
            ),
        );
    }
    check_punches(section, &dir, &bins.join("rltop"), &mut expect)?;
    let vma = section
        .lines()
        .find_map(|l| l.split("RLTOP-VM-LOCKS-VMA-SYMBOLS=").nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    // The read side is the fault path's; the write side may be inlined.
    expect(
        vma.split_whitespace().any(|n| n == "lock_vma_under_rcu"),
        format!("per-VMA locks: kallsyms has [{vma}]"),
    );
    Ok(())
}

/// Writes each `RLTOP-VM-TRACE-BEGIN <a> <b>` base64 block of the console
/// to `dir/<a>-<b>.rlt`.
fn decode_traces(body: &str, dir: &Path) -> anyhow::Result<()> {
    let mut lines = body.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.split("RLTOP-VM-TRACE-BEGIN ").nth(1) else {
            continue;
        };
        let name = rest.split_whitespace().collect::<Vec<_>>().join("-");
        let mut b64 = String::new();
        for l in lines.by_ref() {
            if l.contains("RLTOP-VM-TRACE-END") {
                break;
            }
            b64.push_str(l.trim());
        }
        let b64_file = dir.join(format!("{name}.b64"));
        std::fs::write(&b64_file, &b64)?;
        crate::run(Command::new("sh").arg("-c").arg(format!(
            "base64 -d '{}' > '{}'",
            b64_file.display(),
            dir.join(format!("{name}.rlt")).display()
        )))?;
    }
    Ok(())
}
