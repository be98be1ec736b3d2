//! Per-test views of a trace split by xfstests markers
//! ([`crate::analysis::xfstests`]): `rltop check --by-test` (text, JSON),
//! `rltop check --format junit`, and `rltop report --by-test`.
//! Pure functions of their inputs.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::analysis::xfstests::{Segment, TestVerdict};
use crate::analysis::{Finding, Kind, Severity, Verdict};
use crate::views::findings;
use crate::views::report::{self, Report, ReportRow, fmt_ns};
use crate::views::scope::ScopeNote;

fn verdict_word(v: &Verdict) -> &'static str {
    if v.failed() { "fail" } else { "pass" }
}

fn secs(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

fn counts(v: &Verdict) -> (usize, usize, usize) {
    let errors = v
        .findings
        .iter()
        .filter(|f| f.certain && f.severity == Severity::Error)
        .count();
    let warnings = v
        .findings
        .iter()
        .filter(|f| f.certain && f.severity == Severity::Warning)
        .count();
    let uncertain = v.findings.iter().filter(|f| !f.certain).count();
    (errors, warnings, uncertain)
}

/// `rltop check --by-test` as text: a table of tests and verdicts, then the
/// findings of each test that has any.
pub fn check_text(
    whole: &Verdict,
    tests: &[TestVerdict],
    evidence: &HashMap<u64, String>,
    scope: Option<&ScopeNote>,
) -> String {
    let mut out = String::new();
    let failed = tests.iter().filter(|t| t.verdict.failed()).count();
    let _ = writeln!(
        out,
        "rltop check: {} tests, {failed} failed; {} events, {} lost",
        tests
            .iter()
            .filter(|t| t.segment.test != crate::analysis::xfstests::BEFORE)
            .count(),
        whole.events,
        whole.lost
    );
    if let Some(sc) = scope {
        let _ = writeln!(out, "{}", sc.text());
    }
    let w = tests
        .iter()
        .map(|t| t.segment.test.len())
        .max()
        .unwrap_or(0)
        .max("test".len());
    let _ = writeln!(
        out,
        "\n{:<w$}  {:<7} {:>10} {:>9} {:>6} {:>6} {:>8} {:>9}",
        "test", "verdict", "time (s)", "events", "lost", "errors", "warnings", "uncertain"
    );
    for t in tests {
        let (e, wn, u) = counts(&t.verdict);
        let _ = writeln!(
            out,
            "{:<w$}  {:<7} {:>10} {:>9} {:>6} {:>6} {:>8} {:>9}",
            t.segment.test,
            verdict_word(&t.verdict),
            secs(t.segment.duration_ns()),
            t.segment.events,
            t.segment.lost,
            e,
            wn,
            u
        );
    }
    for t in tests.iter().filter(|t| !t.verdict.findings.is_empty()) {
        let _ = writeln!(
            out,
            "\n== {} ({}) ==\n",
            t.segment.test,
            verdict_word(&t.verdict)
        );
        out.push_str(&findings::text(&t.verdict, evidence));
    }
    if whole.suppressed > 0 {
        let _ = writeln!(
            out,
            "\n{} more findings past the cap were counted but not attributed to a test",
            whole.suppressed
        );
    }
    out
}

#[derive(Serialize)]
struct TestJson<'a> {
    test: &'a str,
    verdict: &'static str,
    start_ts: u64,
    duration_ns: u64,
    events: u64,
    lost: u64,
    findings: &'a [Finding],
}

fn tests_json(tests: &[TestVerdict]) -> Vec<TestJson<'_>> {
    tests
        .iter()
        .map(|t| TestJson {
            test: &t.segment.test,
            verdict: verdict_word(&t.verdict),
            start_ts: t.segment.start_ts,
            duration_ns: t.segment.duration_ns(),
            events: t.segment.events,
            lost: t.segment.lost,
            findings: &t.verdict.findings,
        })
        .collect()
}

/// `rltop check --by-test --format json`: the findings contract of the whole
/// trace, extended with `"tests"`: one object per test with its own
/// verdict, timing and findings.
pub fn check_json(whole: &Verdict, tests: &[TestVerdict], scope: Option<&ScopeNote>) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(&findings::json(whole)).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        if let Some(sc) = scope {
            obj.insert("scope".into(), serde_json::to_value(sc).unwrap_or_default());
        }
        obj.insert(
            "tests".into(),
            serde_json::to_value(tests_json(tests)).unwrap_or_default(),
        );
    }
    doc.to_string()
}

/// XML text escaping (also drops the control characters XML 1.0 forbids).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// `rltop check --format junit`: JUnit XML, one `<testcase>` per xfstests
/// test; the events before the first test get one only when a finding is
/// attributed to them (or the trace has no test marker at all). A test
/// fails when a certain error finding is attributed to it; the
/// `<failure>` carries its findings, as `rltop check` prints them.
/// Warnings and uncertain findings of a passing test go to `<system-out>`.
pub fn junit(
    name: &str,
    whole: &Verdict,
    tests: &[TestVerdict],
    evidence: &HashMap<u64, String>,
) -> String {
    let tests: Vec<&TestVerdict> = tests
        .iter()
        .filter(|t| {
            t.segment.test != crate::analysis::xfstests::BEFORE
                || !t.verdict.findings.is_empty()
                || tests.len() == 1
        })
        .collect();
    let failures = tests.iter().filter(|t| t.verdict.failed()).count();
    let total: u64 = tests.iter().map(|t| t.segment.duration_ns()).sum();
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"rltop check\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        tests.len(),
        secs(total)
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
        xml_escape(name),
        tests.len(),
        secs(total)
    );
    let _ = writeln!(
        x,
        "    <properties>\n      <property name=\"events\" value=\"{}\"/>\n      <property name=\"lost\" value=\"{}\"/>\n      <property name=\"verdict\" value=\"{}\"/>\n    </properties>",
        whole.events,
        whole.lost,
        verdict_word(whole)
    );
    for t in tests {
        let _ = write!(
            x,
            "    <testcase classname=\"rltop.xfstests\" name=\"{}\" time=\"{}\"",
            xml_escape(&t.segment.test),
            secs(t.segment.duration_ns())
        );
        let v = &t.verdict;
        if v.findings.is_empty() {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        let body = xml_escape(&findings::text(v, evidence));
        if v.failed() {
            let errors: Vec<&Finding> = v
                .findings
                .iter()
                .filter(|f| f.certain && f.severity == Severity::Error)
                .collect();
            let mut kinds: Vec<Kind> = errors.iter().map(|f| f.kind).collect();
            kinds.dedup();
            let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
            let _ = writeln!(
                x,
                "      <failure message=\"{}\" type=\"{}\">{body}</failure>",
                xml_escape(&format!(
                    "{} range locking error(s): {}",
                    errors.len(),
                    errors[0].message
                )),
                xml_escape(&kinds.join(","))
            );
        } else {
            let _ = writeln!(x, "      <system-out>{body}</system-out>");
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// One test's part of `rltop report --by-test`.
#[derive(Debug, Serialize)]
pub struct TestReport {
    pub test: String,
    pub start_ts: u64,
    pub duration_ns: u64,
    pub events: u64,
    pub lost: u64,
    pub rows: Vec<ReportRow>,
    pub chains: Vec<report::ReportChain>,
}

impl TestReport {
    pub fn new(seg: &Segment, r: Report) -> TestReport {
        TestReport {
            test: seg.test.clone(),
            start_ts: seg.start_ts,
            duration_ns: seg.duration_ns(),
            events: seg.events,
            lost: seg.lost,
            rows: r.rows,
            chains: r.chains,
        }
    }

    fn sum(&self, class: &str, f: impl Fn(&ReportRow) -> u64) -> u64 {
        self.rows.iter().filter(|r| r.class == class).map(f).sum()
    }

    fn max(&self, class: &str, f: impl Fn(&ReportRow) -> u64) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.class == class)
            .map(f)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Serialize)]
struct ReportJson<'a> {
    events: u64,
    lost: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    flavour: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a ScopeNote>,
    tests: &'a [TestReport],
}

/// `rltop report --by-test --format json`: the report's header, then one
/// report (rows and chains, as `rltop report`) per test.
pub fn report_json(whole: &Report, tests: &[TestReport]) -> String {
    let mut s = serde_json::to_string(&ReportJson {
        events: whole.events,
        lost: whole.lost,
        flavour: whole.flavour,
        scope: whole.scope.as_ref(),
        tests,
    })
    .unwrap_or_default();
    s.push('\n');
    s
}

/// `rltop report --by-test` as text: a summary line per test, then each
/// test's report.
pub fn report_text(whole: &Report, tests: &[TestReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rltop report: {} events, {} lost, {} parts",
        whole.events,
        whole.lost,
        tests.len()
    );
    if let Some(sc) = &whole.scope {
        let _ = writeln!(out, "{}", sc.text());
    }
    let w = tests
        .iter()
        .map(|t| t.test.len())
        .max()
        .unwrap_or(0)
        .max("test".len());
    let _ = writeln!(
        out,
        "\n{:<w$}  {:>10} {:>9} {:>6} {:>12} {:>11} {:>14} {:>14} {:>11} {:>11}",
        "test",
        "time (s)",
        "events",
        "lost",
        "rl-acquired",
        "rl-contend",
        "rl-wait-total",
        "rl-wait-max",
        "mmap-cont",
        "kernel-cont"
    );
    for t in tests {
        let wait_total = t.sum("range_lock", |r| r.wait.map_or(0, |s| s.total));
        let wait_max = t.max("range_lock", |r| r.wait.map_or(0, |s| s.max));
        let _ = writeln!(
            out,
            "{:<w$}  {:>10} {:>9} {:>6} {:>12} {:>11} {:>14} {:>14} {:>11} {:>11}",
            t.test,
            secs(t.duration_ns),
            t.events,
            t.lost,
            t.sum("range_lock", |r| r.acquisitions.unwrap_or(0)),
            t.sum("range_lock", |r| r.contentions),
            fmt_ns(wait_total),
            fmt_ns(wait_max),
            t.sum("mmap_lock", |r| r.contentions),
            t.sum("kernel_lock", |r| r.contentions),
        );
    }
    for t in tests {
        let _ = writeln!(out, "\n== {} ==", t.test);
        let r = Report {
            events: t.events,
            lost: t.lost,
            lost_by_probe: Default::default(),
            flavour: whole.flavour,
            rows: t.rows.clone(),
            chains: t.chains.clone(),
            scope: None,
        };
        out.push_str(&report::text(&r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(
            xml_escape("a<b>&\"c'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&apos;\n"
        );
    }
}
