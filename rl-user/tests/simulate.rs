//! `rltop simulate` against `rltop check`: a correct simulated workload has
//! no findings; each defect scenario has exactly its finding, certain.

use std::process::Command;

use serde_json::Value;

const RLTOP: &str = env!("CARGO_BIN_EXE_rltop");

fn simulate_and_check(scenario: &str, seed: u64, threads: usize) -> (Option<i32>, Value) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("sim.rlt");
    let out = Command::new(RLTOP)
        .args([
            "simulate",
            "--scenario",
            scenario,
            "--seed",
            &seed.to_string(),
        ])
        .args(["--events", "20000", "--threads", &threads.to_string(), "-o"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(RLTOP)
        .args(["check", "--format", "json"])
        .arg(&trace)
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn the_mixed_workload_is_clean_over_many_seeds() {
    for seed in 1..=6 {
        let threads = 2 + (seed as usize % 4);
        let (code, v) = simulate_and_check("mixed", seed, threads);
        assert_eq!(v["findings"], serde_json::json!([]), "seed {seed}: {v}");
        assert_eq!(code, Some(0));
        assert!(v["events"].as_u64().unwrap() >= 20_000);
    }
}

#[test]
fn each_defect_scenario_gives_exactly_its_finding() {
    for (scenario, kind) in [
        ("inversion", "ordering_inversion"),
        ("overlap", "conflicting_grant"),
        ("unlocked-page", "page_in_locked_range"),
        ("unlock-unheld", "unlock_unheld"),
        ("unfair", "fifo_violation"),
        ("lost-wakeup", "stall"),
        ("deadlock", "deadlock"),
        ("leak", "leaked_lock"),
    ] {
        for seed in [1, 2] {
            let (code, v) = simulate_and_check(scenario, seed, 3);
            let findings = v["findings"].as_array().unwrap();
            assert_eq!(findings.len(), 1, "{scenario} seed {seed}: {v}");
            assert_eq!(findings[0]["kind"], kind, "{scenario}: {v}");
            assert_eq!(findings[0]["certain"], true, "{scenario}: {v}");
            assert_eq!(code, Some(1), "{scenario}");
        }
    }
}

#[test]
fn an_unknown_scenario_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(RLTOP)
        .args(["simulate", "--scenario", "nope", "-o"])
        .arg(dir.path().join("x.rlt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown scenario \"nope\"") && err.contains("mixed"),
        "{err}"
    );
}
