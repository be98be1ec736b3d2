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
    if skip {
        fs::write(out_dir.join("rl-ebpf"), b"").context("writing empty eBPF object")?;
        return Ok(());
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
    )
}
