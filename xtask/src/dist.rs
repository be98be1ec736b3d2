//! `cargo xtask dist`: rltop for a test VM. A static x86_64 musl binary
//! with the eBPF object inside, its man page and shell completions (made
//! by the binary itself: `rltop --generate`), the docs, in a tarball with
//! its SHA-256 beside it:
//!
//! ```text
//! target/dist/rltop-<version>-x86_64-unknown-linux-musl.tar.gz
//! target/dist/rltop-<version>-x86_64-unknown-linux-musl.tar.gz.sha256
//! ```
//!
//! The tarball is reproducible for one build (sorted names, time 0, owner
//! root), so that its hash names its contents.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

/// What `dist` made.
pub struct Dist {
    pub tarball: PathBuf,
    /// The top directory inside the tarball.
    pub name: String,
    pub sha256: String,
    /// `rltop --version` of the binary inside.
    pub version: String,
    /// Where the static binaries were built (the test helpers too).
    pub bins: PathBuf,
}

/// Builds the static binary and packs it; returns the tarball.
pub fn build(root: &Path) -> anyhow::Result<Dist> {
    let bins = crate::vm::static_binaries(root)?;
    let rltop = bins.join("rltop");
    let out = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let o = Command::new(&rltop)
            .args(args)
            .output()
            .with_context(|| format!("running {} {args:?}", rltop.display()))?;
        if !o.status.success() {
            bail!(
                "{} {args:?}: {}",
                rltop.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Ok(o.stdout)
    };
    let version = String::from_utf8(out(&["--version"])?)?.trim().to_string();
    let number = version
        .split_whitespace()
        .nth(1)
        .context("rltop --version printed no version")?;
    let name = format!("rltop-{number}-{}", crate::vm::MUSL);
    let dist = crate::target_dir(root).join("dist");
    let stage = dist.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("completions"))?;
    std::fs::create_dir_all(stage.join("doc"))?;
    std::fs::copy(&rltop, stage.join("rltop"))?;
    std::fs::write(stage.join("rltop.1"), out(&["--generate", "man"])?)?;
    for (what, file) in [
        ("complete-bash", "rltop.bash"),
        ("complete-zsh", "_rltop"),
        ("complete-fish", "rltop.fish"),
    ] {
        std::fs::write(
            stage.join("completions").join(file),
            out(&["--generate", what])?,
        )?;
    }
    std::fs::copy(root.join("README.md"), stage.join("README.md"))?;
    std::fs::copy(root.join("CHANGELOG.md"), stage.join("CHANGELOG.md"))?;
    for doc in std::fs::read_dir(root.join("docs"))? {
        let doc = doc?.path();
        if let Some(file) = doc.file_name()
            && doc.extension().is_some_and(|e| e == "md")
        {
            std::fs::copy(&doc, stage.join("doc").join(file))?;
        }
    }
    std::fs::write(stage.join("VERSION"), format!("{version}\n"))?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .current_dir(&dist)
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-czf",
        ])
        .arg(&tarball)
        .arg(&name))?;
    let sha = Command::new("sha256sum")
        .arg(&tarball)
        .output()
        .context("running sha256sum")?;
    let sha256 = String::from_utf8(sha.stdout)?
        .split_whitespace()
        .next()
        .context("sha256sum printed nothing")?
        .to_string();
    std::fs::write(
        dist.join(format!("{name}.tar.gz.sha256")),
        format!("{sha256}  {name}.tar.gz\n"),
    )?;
    Ok(Dist {
        tarball,
        name,
        sha256,
        version,
        bins,
    })
}

/// `cargo xtask dist`: builds, then says what it made.
pub fn main(root: &Path) -> anyhow::Result<()> {
    let d = build(root)?;
    let size = std::fs::metadata(&d.tarball)?.len();
    println!(
        "dist: {} ({:.1} MiB)\n  sha256 {}\n  {}",
        d.tarball.display(),
        size as f64 / (1 << 20) as f64,
        d.sha256,
        d.version
    );
    Ok(())
}
