//! Builds the eBPF programs (`rl-ebpf`) with aya-build and leaves the object
//! in OUT_DIR, where `probe::loader` embeds it.
//!
//! With `AYA_BUILD_SKIP=1` (fuzzing, quick library work) an empty object is
//! written instead; such a binary says so when asked to trace.

use std::{env, fs, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    version_env();
    if skip {
        fs::write(out_dir.join("rl-ebpf"), b"").context("writing empty eBPF object")?;
        return hash_object(&out_dir);
    }
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?)
        .parent()
        .context("rl-user has no parent directory")?
        .join("rl-ebpf");
    let root = root.to_str().context("workspace path is not UTF-8")?;
    // aya-build watches the eBPF crate; the ABI crate it shares with us too.
    println!("cargo:rerun-if-changed={root}/../rl-common");
    // aya-build forwards the nested cargo's progress lines as build warnings;
    // a quiet nested cargo keeps real warnings visible.
    // SAFETY: build scripts are single-threaded here; nothing reads the
    // environment concurrently.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "rl-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs (run `cargo xtask setup` for nightly, rust-src and bpf-linker)",
    )?;
    hash_object(&out_dir)
}

/// `RLTOP_EBPF_SHA256`: the SHA-256 of the object that the binary embeds.
fn hash_object(out_dir: &std::path::Path) -> anyhow::Result<()> {
    use sha2::Digest as _;
    let object = fs::read(out_dir.join("rl-ebpf")).context("reading the eBPF object")?;
    let hex: String = sha2::Sha256::digest(&object)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=RLTOP_EBPF_SHA256={hex}");
    Ok(())
}

/// `RLTOP_COMMIT`: the commit built (`+dirty` with uncommitted changes),
/// or `unknown` outside a git checkout (a source tarball).
fn version_env() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map_or("unknown".to_string(), |c| {
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        if dirty { format!("{c}+dirty") } else { c }
    });
    println!("cargo:rustc-env=RLTOP_COMMIT={commit}");
    // A new commit or checkout rebuilds the version; so does any change
    // to a tracked file (the index).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
}
