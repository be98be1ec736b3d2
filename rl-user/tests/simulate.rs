//! `rltop simulate` against `rltop check`: a correct simulated workload has
//! no findings; each defect scenario has exactly its finding, certain.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

mod common;
use common::RLTOP;

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

mod lost {
    //! Property: dropping random events from a correct simulated trace, and
    //! recording each drop as a `lost` event the way the recorder does
    //! (possibly some events later, with the window's start in `since`),
    //! never gives a certain finding.

    use std::sync::OnceLock;

    use proptest::prelude::*;
    use rltop::analysis::{Checker, Config};
    use rltop::events::{Body, Event};
    use rltop::model::Model;
    use rltop::sim;

    fn traces() -> &'static [Vec<Event>] {
        static T: OnceLock<Vec<Vec<Event>>> = OnceLock::new();
        T.get_or_init(|| {
            (1..=3)
                .map(|seed| {
                    sim::simulate(&sim::Config {
                        scenario: "mixed".into(),
                        seed,
                        events: 6_000,
                        threads: 2 + seed as usize,
                    })
                    .unwrap()
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn drops_never_give_a_certain_finding(
            which in 0usize..3,
            drops in prop::collection::vec((any::<prop::sample::Index>(), 1usize..40, 0usize..30), 1..12),
        ) {
            let mut evs = traces()[which].clone();
            // The correct trace is clean to begin with.
            for (d, run, delay) in &drops {
                let i = d.index(evs.len());
                let end = (i + run).min(evs.len());
                // The recorder never loses its own lost records.
                if evs[i..end].iter().any(|e| matches!(e.body, Body::Lost { .. })) {
                    continue;
                }
                // A run of consecutive events vanishes (a full ring drops
                // bursts), reported `delay` events later.
                let gone: Vec<Event> = evs.drain(i..end).collect();
                let first = &gone[0];
                let at = (i + delay).min(evs.len());
                let ts = evs.get(at).map_or(first.ts, |e| e.ts.max(first.ts));
                evs.insert(at, Event {
                    ts,
                    tid: 0,
                    pid: 0,
                    cpu: Some(0),
                    body: Body::Lost { count: gone.len() as u64, cpu: 0, since: Some(first.ts.saturating_sub(1)), probe: None },
                });
            }
            let mut c = Checker::over(Model::new(None), Config::default());
            for (i, e) in evs.iter().enumerate() {
                c.event(i as u64, e);
            }
            let v = c.finish();
            let certain: Vec<_> = v.findings.iter().filter(|f| f.certain).collect();
            prop_assert!(certain.is_empty(), "{:#?}", certain);
            prop_assert!(!v.failed());
        }
    }

    #[test]
    fn the_traces_are_clean_before_drops() {
        for evs in traces() {
            let mut c = Checker::over(Model::new(None), Config::default());
            for (i, e) in evs.iter().enumerate() {
                c.event(i as u64, e);
            }
            assert_eq!(c.finish().findings, vec![]);
        }
    }
}
