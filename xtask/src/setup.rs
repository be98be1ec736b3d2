//! Set-up of a fresh machine, idempotent: each step checks first and says
//! in one line what it did or that nothing was needed.
//!
//! 1. Debian packages the tests and benchmarks use.
//! 2. A nightly toolchain with `rust-src` (the eBPF crate builds `core`
//!    for `bpfel-unknown-none`).
//! 3. `bpf-linker`, built against the nightly's own libLLVM with the
//!    matching `llvm-NN` feature: linking fails if the LLVM majors differ,
//!    no prebuilt one can be downloaded here, and distributions ship older
//!    LLVMs. The LLVM major is read from the nightly, never assumed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{is_root, run};

/// Debian packages, installed only when missing. Add new ones here.
const APT_PACKAGES: &[&str] = &[
    "bpftrace",        // the capture benchmark compares with it
    "util-linux",      // setpriv (tests that drop privileges)
    "tmux",            // terminal (TUI) tests
    "qemu-system-x86", // kprobe tests in a VM (the host kernel has no kprobes)
    "busybox-static",  // the VM's initramfs
    "cpio",            // packing the initramfs
    "linux-perf",      // `cargo xtask bench peers` compares with perf record
    "xfsprogs",        // mkfs.xfs, xfs_io: live tests on a loop-mounted XFS image
    "btrfs-progs",     // mkfs.btrfs: live tests on a loop-mounted btrfs image
];

/// Nightly components: `rust-src` for `-Z build-std=core` (the eBPF crate),
/// clippy for `cargo xtask clippy-ebpf`, miri for rl-reference's miri run.
const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy", "miri"];

/// bpf-linker release known to work with the pinned aya set.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn all() -> anyhow::Result<()> {
    apt_packages()?;
    stable_clippy()?;
    nightly()?;
    bpf_linker()?;
    tracefs()
}

fn tracefs() -> anyhow::Result<()> {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.is_dir() {
        println!("setup: tracefs mounted at /sys/kernel/tracing");
    } else if !is_root() {
        println!(
            "setup: tracefs not mounted at /sys/kernel/tracing, and not root to mount it (live tracing needs root)"
        );
    } else {
        match mount_tracefs() {
            Ok(()) => println!("setup: mounted tracefs at /sys/kernel/tracing"),
            Err(e) => {
                println!("setup: could not mount tracefs ({e:#}); live capture will not work")
            }
        }
    }
    Ok(())
}

/// Clippy on the toolchain that builds the workspace (`cargo xtask test`
/// runs it on the user-space crates). rustup's minimal profile lacks it.
fn stable_clippy() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        println!("setup: clippy present");
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "clippy"]))?;
    println!("setup: installed clippy");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        println!(
            "setup: Debian packages present ({})",
            APT_PACKAGES.join(", ")
        );
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: install them as root (apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("setup: installing {}", missing.join(", "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `rustc +nightly -vV`, or None when there is no nightly.
fn nightly_version() -> Option<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "-vV"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly() -> anyhow::Result<()> {
    if nightly_version().is_none() {
        println!(
            "setup: installing the nightly toolchain with {}",
            NIGHTLY_COMPONENTS.join(", ")
        );
        let mut cmd = Command::new("rustup");
        cmd.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        for c in NIGHTLY_COMPONENTS {
            cmd.args(["--component", c]);
        }
        return run(&mut cmd);
    }
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()?;
    let installed = String::from_utf8_lossy(&out.stdout);
    // Names are listed with the host triple (`clippy-x86_64-unknown-linux-gnu`), except rust-src.
    let has = |c: &str| {
        installed
            .lines()
            .any(|l| l == c || l.strip_prefix(c).is_some_and(|r| r.starts_with('-')))
    };
    let missing: Vec<&str> = NIGHTLY_COMPONENTS
        .iter()
        .copied()
        .filter(|c| !has(c))
        .collect();
    if out.status.success() && missing.is_empty() {
        println!(
            "setup: nightly toolchain present with {}",
            NIGHTLY_COMPONENTS.join(", ")
        );
        return Ok(());
    }
    let missing = if out.status.success() {
        missing
    } else {
        NIGHTLY_COMPONENTS.to_vec()
    };
    println!(
        "setup: adding {} to the nightly toolchain",
        missing.join(", ")
    );
    run(Command::new("rustup")
        .args(["component", "add", "--toolchain", "nightly"])
        .args(&missing))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()?;
    if !out.status.success() {
        bail!("no nightly toolchain");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The LLVM major version of the nightly (`LLVM version: 22.1.4` -> 22).
fn llvm_major(vv: &str) -> anyhow::Result<u32> {
    let v = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("the nightly's `rustc -vV` names no LLVM version")?;
    Ok(v.split('.').next().unwrap_or("").parse()?)
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/rltop")
}

fn bpf_linker() -> anyhow::Result<()> {
    let vv = nightly_version().context("no nightly toolchain")?;
    let major = llvm_major(&vv)?;
    let commit = vv
        .lines()
        .find_map(|l| l.strip_prefix("commit-hash: "))
        .unwrap_or("unknown");
    let stamp_text = format!("bpf-linker {BPF_LINKER_VERSION} llvm-{major} nightly {commit}\n");
    let stamp = cache_dir().join("bpf-linker.stamp");
    let binary = cargo_home().join("bin/bpf-linker");
    if binary.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == stamp_text) {
        println!("setup: bpf-linker present (LLVM {major}, matches the nightly)");
        return Ok(());
    }

    let sysroot = nightly_sysroot()?;
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM"))
        })
        .with_context(|| format!("no libLLVM in {}/lib", sysroot.display()))?;
    let prefix = cache_dir().join(format!("llvm-{major}"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (about a minute)"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .env("LLVM_PREFIX", &prefix))
    .or_else(|_| {
        // --locked can fail when the lock file predates a yanked crate.
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix))
    })?;
    std::fs::create_dir_all(cache_dir())?;
    std::fs::write(&stamp, stamp_text)?;
    Ok(())
}

pub fn mount_tracefs() -> anyhow::Result<()> {
    run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_llvm_major() {
        let vv =
            "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(vv).unwrap(), 22);
        assert_eq!(llvm_major("LLVM version: 23.0.0\n").unwrap(), 23);
        assert!(llvm_major("no llvm here").is_err());
    }
}
