//! The test-VM workflow of the README ("On a test VM"), as kernel
//! developers run it: virtme-ng (`vng`, from PyPI) boots a kernel with the
//! host's root shared read-only, and the `dist` tarball's rltop records a
//! command there into a directory shared read-write. Here the kernel is
//! Debian's 6.1 image under QEMU TCG; the trace is checked on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

/// The workload's punches (each is one `punch_begin` and one `punch_end`).
const PUNCHES: u64 = 2000;

/// virtme-ng in a venv under `dir` (pip, once); the directory of `vng`.
fn virtme_ng(dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("vng-venv");
    let bin = venv.join("bin");
    if bin.join("vng").exists() {
        return Ok(bin);
    }
    if !Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("vm-test: installing python3-venv");
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "python3-venv",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(bin.join("pip")).args(["install", "-q", "virtme-ng"]))?;
    Ok(bin)
}

/// Debian's kernel package (downloaded by vm.rs into `dir`) unpacked:
/// the kernel image and its modules, which vng finds beside the image.
fn unpacked_kernel(dir: &Path, abi: &str) -> anyhow::Result<PathBuf> {
    let root = dir.join("debroot");
    let vmlinuz = root.join(format!("boot/vmlinuz-{abi}"));
    if !vmlinuz.exists() {
        let prefix = format!("linux-image-{abi}_");
        let deb = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .with_context(|| format!("no {prefix}*.deb in {}", dir.display()))?;
        let _ = std::fs::remove_dir_all(&root);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    Ok(vmlinuz)
}

/// The README's `vng` command line, with `cmd` run in the guest.
fn vng_command(vng: &Path, vmlinuz: &Path, out: &Path, cmd: &str) -> Command {
    let mut c = Command::new(vng.join("vng"));
    c.arg("--run")
        .arg(vmlinuz)
        .args(["--user", "root", "--disable-microvm"])
        .arg(format!("--rwdir={}", out.display()));
    // TCG, as the rest of vm-test: CI machines can have a /dev/kvm that
    // QEMU cannot use (nested: "failed to set MSR 0x10a"). RLTOP_VM_KVM=1
    // tries KVM.
    if std::env::var_os("RLTOP_VM_KVM").is_none() {
        c.arg("--disable-kvm");
    }
    c.arg("--exec").arg(cmd);
    // vng runs virtme-run from its own bin directory.
    let path = format!(
        "{}:{}",
        vng.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env("PATH", path);
    c
}

/// `vng --run KERNEL ... --exec "rltop record -o OUT/run.rlt -- rl-workload ..."`,
/// then `rltop check` and `dump --format count` of the trace on the host.
pub fn run_workflow(
    dir: &Path,
    abi: &str,
    bins: &Path,
    failures: &mut Vec<String>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let vng = virtme_ng(dir)?;
    let vmlinuz = unpacked_kernel(dir, abi)?;
    let out = dir.join("vng-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let rltop = bins.join("rltop");
    let trace = out.join("run.rlt");
    // The workload's file on the guest's /tmp, a tmpfs (the shared root is
    // read-only there, and tmpfs has no O_DIRECT for rl-workload): one
    // thread faults it in through a mapping while another punches holes.
    let cmd = format!(
        "{} record -o {} -- {} fault-punch /tmp/fp {PUNCHES}",
        rltop.display(),
        trace.display(),
        bins.join("rl-locktest").display()
    );
    let vng_cmd = vng_command(&vng, &vmlinuz, &out, &cmd);
    println!("vm-test: {vng_cmd:?}");
    let o = Command::new("timeout")
        .args(["-k", "5", "300"])
        .arg(vng_cmd.get_program())
        .args(vng_cmd.get_args())
        .envs(vng_cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .context("running vng")?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut expect = |ok: bool, what: String| {
        let verdict = if ok { "ok" } else { "FAIL" };
        println!("vm-test: virtme-ng: {what}: {verdict}");
        if !ok {
            failures.push(format!("virtme-ng: {what}"));
        }
    };
    let summary = stderr
        .lines()
        .find(|l| l.contains("events (") && l.contains("lost)"))
        .unwrap_or("")
        .to_string();
    expect(
        o.status.success(),
        format!(
            "vng exits 0 with the command's status ({}){}",
            o.status,
            if o.status.success() {
                String::new()
            } else {
                format!(
                    ": {}",
                    stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                )
            }
        ),
    );
    expect(
        !summary.is_empty(),
        format!("record's summary came back: {}", summary.trim()),
    );
    let check = Command::new(&rltop)
        .arg("check")
        .arg(&trace)
        .output()
        .context("rltop check")?;
    let verdict = String::from_utf8_lossy(&check.stdout);
    expect(
        check.status.success(),
        format!(
            "rltop check of the trace passes: {}",
            verdict.lines().last().unwrap_or("").trim()
        ),
    );
    let count = Command::new(&rltop)
        .args(["dump", "--format", "count"])
        .arg(&trace)
        .output()
        .context("rltop dump")?;
    let count = String::from_utf8_lossy(&count.stdout);
    let events = |kind: &str| per_kind(&count, kind);
    expect(
        events("punch_begin") == PUNCHES
            && events("punch_end") == PUNCHES
            && events("fault") > 0
            && events("mmap_lock_acquired") > 0,
        format!(
            "{} punches of {PUNCHES} traced, {} faults, {} mmap_lock acquisitions",
            events("punch_begin"),
            events("fault"),
            events("mmap_lock_acquired")
        ),
    );
    if !o.status.success() && summary.is_empty() {
        bail!(
            "virtme-ng did not run the command: {}",
            stderr.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    println!(
        "vm-test: virtme-ng workflow took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The events of `kind` in `dump --format count` output.
fn per_kind(count: &str, kind: &str) -> u64 {
    count
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}
