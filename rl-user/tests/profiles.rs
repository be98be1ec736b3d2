//! Range-lock profiles on the host kernel: it has no kprobes (`docs/kernel.md`,
//! "What a kernel must have"), so a profile is one clear error for `record`, while the
//! tracepoint probes still run without one; `rltop probes` still loads the
//! profile's kprobe programs, so the verifier checks them here too. The
//! probes themselves run in `cargo xtask vm-test`.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::process::Command;

mod common;
use common::{RLTOP, crate_dir, need_root};

fn has_kprobes() -> bool {
    std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
        || std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists()
}

/// stderr of a failed run: exactly one line, exit code 2.
fn one_line_error(args: &[&str]) -> String {
    let out = Command::new(RLTOP).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    err
}

#[test]
fn a_profile_without_kprobes_is_one_clear_error_and_tracepoints_still_run() {
    if !need_root("a_profile_without_kprobes_is_one_clear_error_and_tracepoints_still_run") {
        return;
    }
    if has_kprobes() {
        eprintln!("skipping: this kernel has kprobes");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.rlt");
    let t = trace.to_str().unwrap();
    for p in ["kara2013", "bueso2017", "bueso2019", "lustre", "kprobes"] {
        let err = one_line_error(&["record", "--profile", p, "-o", t, "--duration", "1"]);
        assert!(
            err.contains(&format!(
                "profile {p} needs kprobes, which this kernel does not have"
            )),
            "{err}"
        );
        assert!(!trace.exists(), "no partial trace is written");
    }
    // Without a profile, the tracepoints record.
    let out = Command::new(RLTOP)
        .args([
            "record",
            "-o",
            t,
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do cat /proc/version > /dev/null; done",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("range locks: no range-lock functions in /proc/kallsyms"),
        "{err}"
    );
    let dump = Command::new(RLTOP).args(["dump", t]).output().unwrap();
    assert!(dump.status.success());
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("\"kind\":\"mmap_lock_"),
        "tracepoint events recorded"
    );
}

#[test]
fn wrong_or_unknown_profiles_are_one_clear_error() {
    // Checked before privileges: no root needed.
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.rlt");
    let t = t.to_str().unwrap();
    let err = one_line_error(&["record", "--profile", "kara", "-o", t]);
    assert!(err.contains("unknown profile \"kara\": available profiles are auto, tracepoints, kprobes, kara2013, bueso2017, bueso2019, lustre"), "{err}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nflavour = \"fifo\"\n").unwrap();
    let err = one_line_error(&["record", "--profile", bad.to_str().unwrap(), "-o", t]);
    assert!(
        err.starts_with(&format!("rltop: profile {}: ", bad.display())),
        "{err}"
    );
    let err = one_line_error(&["probes", "--profile", "/nonexistent/p.toml"]);
    assert!(
        err.contains("cannot read profile /nonexistent/p.toml"),
        "{err}"
    );
}

#[test]
fn probes_lists_a_profile_it_cannot_attach_and_verifies_its_programs() {
    if !need_root("probes_lists_a_profile_it_cannot_attach_and_verifies_its_programs") {
        return;
    }
    for p in ["kara2013", "bueso2017", "bueso2019", "lustre", "kprobes"] {
        let out = Command::new(RLTOP)
            .args(["probes", "--verbose", "--profile", p])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kprobe:") || l.starts_with("kretprobe:"))
            .collect();
        assert!(lines.len() >= 3, "{text}");
        for l in lines
            .iter()
            .filter(|l| !l.contains("its tracepoint is used instead"))
        {
            // Here: no kprobes, or (elsewhere) no such symbol; either way the
            // program was loaded and its verified size is within the budget.
            assert!(
                l.contains("not attached: ") || l.contains(" attached "),
                "{l}"
            );
            if let Some(n) = l.split("program verified here: ").nth(1) {
                let n: u32 = n.split_whitespace().next().unwrap().parse().unwrap();
                assert!(n > 0 && n <= rltop::cmd::probes::INSN_BUDGET, "{l}");
            } else {
                assert!(has_kprobes(), "{l}");
            }
        }
        // The tracepoint probes and the ordering check still attach beside them.
        assert!(
            text.lines()
                .any(|l| l.starts_with("mmap_lock:mmap_lock_start_locking")
                    && l.contains(" attached ")),
            "{text}"
        );
        let n: u32 = text
            .lines()
            .find(|l| l.starts_with("mmap_lock:mmap_lock_start_locking"))
            .and_then(|l| l.split_whitespace().rev().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(
            n <= rltop::cmd::probes::INSN_BUDGET,
            "mmap_lock_start_locking with the ordering check: {n}"
        );
    }
}

/// The profile fuzzer's seeds and minimized corpus (`fuzz/`), replayed:
/// any text is a profile or one clear error, never a panic; the shipped
/// profiles parse.
#[test]
fn fuzz_corpus_of_profiles_never_panics() {
    use rltop::probe::profile::Profile;
    let root = crate_dir().join("../fuzz");
    let mut parsed = 0;
    let mut files = 0;
    for kind in ["seeds", "regress"] {
        let dir = root.join(kind).join("profile_toml");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert_eq!(kind, "regress", "{} is missing", dir.display());
            continue;
        };
        for e in entries {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            files += 1;
            if let Ok(text) = std::str::from_utf8(&bytes)
                && let Ok(p) = Profile::parse(text)
            {
                let _ = p.plan_unchecked(None);
                parsed += 1;
            }
        }
    }
    assert!(files >= 5 && parsed >= 5, "{files} files, {parsed} parsed");
}

#[test]
fn an_oversized_profile_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(1 << 20)).unwrap();
    let err = rltop::probe::profile::Profile::load(big.to_str().unwrap()).unwrap_err();
    assert!(err.contains("larger than"), "{err}");
}
