//! `cargo xtask vm-test`: rltop on another real kernel, in QEMU.
//!
//! Boots Debian's current `linux-image-<abi>-amd64` (looked up at run time)
//! under QEMU TCG — never KVM here: the nested KVM of these machines aborts
//! or hangs — with an initramfs of busybox and a static (musl) rltop, and
//! checks from the serial console that:
//!
//! - `rltop probes` runs on that kernel (6.1 today: other tracepoint
//!   layouts, e.g. `mmap_lock` records carry `memcg_path` instead of
//!   `memcg_id`), attaches what the kernel has and names what it lacks;
//! - `rltop record` records there, and the trace reads back.
//!
//! The kprobe profiles for range-lock kernels will be tested here too.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

const MUSL: &str = "x86_64-unknown-linux-musl";

/// What the VM's init runs; its output goes to the serial console.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
echo RLTOP-VM-BEGIN
rltop probes --verbose 2>&1
echo "RLTOP-VM-PROBES-RC=$?"
mount -t tmpfs -o mode=0755 tmp /work
rltop record -o /work/t.rlt --duration 2 -- sh -c 'cat /proc/version > /dev/null; sleep 1' 2>&1
echo "RLTOP-VM-RECORD-RC=$?"
rltop dump /work/t.rlt --format jsonl > /work/t.jsonl 2>&1
echo "RLTOP-VM-DUMP-RC=$?"
echo "RLTOP-VM-EVENTS=$(wc -l < /work/t.jsonl)"
echo "RLTOP-VM-MMAP-EVENTS=$(grep -c mmap_lock_acquired /work/t.jsonl)"
echo RLTOP-VM-END
poweroff -f
"#;

/// Debian's current kernel image package, e.g. `linux-image-6.1.0-56-amd64`.
fn kernel_package() -> anyhow::Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .filter(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .context("apt-cache names no kernel for linux-image-amd64 (run apt-get update)")
}

/// Downloads the package (once) and extracts its vmlinuz.
fn kernel(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let mut pkg = kernel_package();
    if pkg.is_err() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        pkg = kernel_package();
    }
    let pkg = pkg?;
    let abi = pkg.trim_start_matches("linux-image-").to_string();
    let vmlinuz = dir.join(format!("vmlinuz-{abi}"));
    if vmlinuz.exists() {
        return Ok((abi, vmlinuz));
    }
    let deb = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
        });
    let deb = match deb {
        Some(d) => d,
        None => {
            println!("vm-test: downloading {pkg}");
            run(Command::new("apt-get")
                .current_dir(dir)
                .args(["download", "-qq", &pkg]))?;
            std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
                })
                .context("apt-get download left no .deb")?
        }
    };
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -O ./boot/vmlinuz-{abi} > '{}'",
        deb.display(),
        vmlinuz.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    Ok((abi, vmlinuz))
}

/// Builds static rltop and rl-workload for the initramfs.
fn static_binaries(root: &Path) -> anyhow::Result<PathBuf> {
    run(Command::new("rustup").args(["target", "add", MUSL]))?;
    // zstd-sys builds C: the system cc does for musl too (no musl-tools).
    run(Command::new("cargo")
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            MUSL,
            "-p",
            "rl-user",
            "--bins",
        ])
        .env("CC_x86_64_unknown_linux_musl", "cc"))?;
    Ok(crate::target_dir(root).join(MUSL).join("release"))
}

fn initramfs(dir: &Path, bins: &Path) -> anyhow::Result<PathBuf> {
    let tree = dir.join("root");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "proc", "sys", "dev", "work", "tmp"] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .context("busybox-static is not installed")?;
    for b in ["rltop", "rl-workload"] {
        std::fs::copy(bins.join(b), tree.join("bin").join(b))?;
    }
    std::fs::write(tree.join("init"), INIT)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tree.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let out = dir.join("initramfs.gz");
    let script = format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        tree.display(),
        out.display()
    );
    run(Command::new("sh").args(["-c", &script]))?;
    Ok(out)
}

/// `NAME=value` from the console output.
fn value<'a>(console: &'a str, name: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.split(&format!("{name}=")).nth(1))
        .map(str::trim)
}

pub fn test(root: &Path) -> anyhow::Result<()> {
    let dir = crate::target_dir(root).join("vm");
    std::fs::create_dir_all(&dir)?;
    let (abi, vmlinuz) = kernel(&dir)?;
    let bins = static_binaries(root)?;
    let initrd = initramfs(&dir, &bins)?;
    println!("vm-test: booting Debian {abi} under QEMU TCG");
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "240",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
        ])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
        ])
        .args(["-serial", "stdio", "-monitor", "none"])
        .output()
        .context("running qemu-system-x86_64")?;
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    // Firmware escape codes can precede a marker: match anywhere in a line.
    let Some(begin) = console.find("RLTOP-VM-BEGIN") else {
        bail!("the VM never reached rltop's init; console:\n{console}");
    };
    let body = &console[begin..];
    let body = &body[..body
        .find("RLTOP-VM-END")
        .map_or(body.len(), |e| e + "RLTOP-VM-END".len())];
    println!("{body}");

    let mut failures = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            failures.push(what.to_string());
        }
    };
    expect(
        value(body, "RLTOP-VM-PROBES-RC") == Some("0"),
        "rltop probes exits 0",
    );
    expect(
        value(body, "RLTOP-VM-RECORD-RC") == Some("0"),
        "rltop record exits 0",
    );
    expect(
        value(body, "RLTOP-VM-DUMP-RC") == Some("0"),
        "rltop dump reads the trace back",
    );
    let events: u64 = value(body, "RLTOP-VM-EVENTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    expect(events > 0, "the trace has events");
    let mmap: u64 = value(body, "RLTOP-VM-MMAP-EVENTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    expect(
        mmap > 0,
        "mmap_lock events are recorded at this kernel's layout",
    );
    // Each probe line says attached, or why not.
    let probe_lines: Vec<&str> = body
        .lines()
        .filter(|l| l.contains(':') && (l.contains(" attached") || l.contains("not attached:")))
        .collect();
    expect(
        probe_lines.iter().any(|l| {
            l.starts_with("mmap_lock:mmap_lock_acquire_returned") && l.contains("attached  ")
        }),
        "mmap_lock probes attach",
    );
    expect(
        probe_lines.iter().all(|l| {
            l.contains(" insns ") || l.contains("not attached: ") || l.contains("failed: ")
        }),
        "every probe is attached with its instruction count, or says why not",
    );
    if !failures.is_empty() {
        bail!("vm-test on {abi} failed: {}", failures.join("; "));
    }
    println!("vm-test: rltop on Debian {abi}: probes, record and dump pass ({events} events)");
    Ok(())
}
