//! The JSONL contract through `rltop import` and `rltop dump`.

// A test (or benchmark) stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;

use rltop::events::jsonl::JsonlReader;

mod common;
use common::{data, rltop, stderr};

const ALL_KINDS: [&str; 28] = [
    "task",
    "tree",
    "rl_request",
    "rl_acquired",
    "rl_trylock_failed",
    "rl_cancel",
    "rl_release",
    "mmap_lock_request",
    "mmap_lock_acquired",
    "mmap_lock_release",
    "fault",
    "page_add",
    "dio_begin",
    "dio_end",
    "punch_begin",
    "punch_end",
    "truncate_begin",
    "truncate_end",
    "contention_begin",
    "contention_end",
    "marker",
    "lost",
    "exit",
    "file",
    "file_lock_request",
    "file_lock_acquired",
    "file_lock_release",
    "page_fault",
];

#[test]
fn test_data_parses_and_covers_every_kind() {
    let bytes = fs::read(data("all_kinds.jsonl")).unwrap();
    let kinds: BTreeSet<&str> = JsonlReader::new(&bytes[..])
        .map(|e| e.unwrap().body.kind())
        .collect();
    assert_eq!(kinds, ALL_KINDS.into_iter().collect());
}

#[test]
fn import_then_dump_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("all_kinds.jsonl");
    let trace = dir.path().join("t.rlt");
    let out = rltop(&[
        "import",
        input.to_str().unwrap(),
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = rltop(&["dump", "--format", "jsonl", trace.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        fs::read_to_string(&input).unwrap()
    );
    // Only the trace is left in the directory: no temporary files.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["t.rlt"]);
}

#[test]
fn dump_reads_jsonl_too() {
    let input = data("all_kinds.jsonl");
    let out = rltop(&["dump", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, fs::read(&input).unwrap());
}

/// Imports `text`; expects exit 2, one stderr line containing `expect`, and
/// no output file or temporary left behind.
fn import_fails(text: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    fs::write(&input, text).unwrap();
    let trace = dir.path().join("out.rlt");
    let out = rltop(&[
        "import",
        input.to_str().unwrap(),
        "-o",
        trace.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rltop: ") && err.contains(expect), "{err}");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["in.jsonl"], "nothing written");
}

const GOOD: &str = "{\"ts\":1,\"kind\":\"exit\",\"tid\":1,\"pid\":1}\n";

#[test]
fn import_names_the_line_of_an_unknown_kind() {
    // Many good lines first, so a chunk would already have been flushed.
    let mut text = GOOD.repeat(70_000);
    text.push_str("\n{\"ts\":1,\"kind\":\"foo\",\"tid\":1,\"pid\":1}\n");
    text.push_str(GOOD);
    import_fails(
        &text,
        "in.jsonl: line 70002: unknown kind \"foo\" (no trace written)",
    );
}

#[test]
fn import_names_the_line_of_an_unknown_field() {
    let text = format!(
        "{GOOD}{GOOD}{{\"ts\":2,\"kind\":\"fault\",\"tid\":1,\"pid\":1,\"dev\":\"8:1\",\"ino\":3,\"index\":4,\"bar\":1}}\n"
    );
    import_fails(&text, "line 3: unknown field \"bar\" for kind \"fault\"");
}

#[test]
fn import_reports_missing_fields_and_bad_json() {
    import_fails(
        &format!(
            "{GOOD}{GOOD}{GOOD}{{\"ts\":2,\"kind\":\"fault\",\"tid\":1,\"pid\":1,\"dev\":\"8:1\",\"index\":4}}\n"
        ),
        "line 4: missing field \"ino\"",
    );
    import_fails(&format!("{GOOD}{{\"ts\":2,"), "line 2: not a JSON object");
    import_fails(
        "{\"ts\":1,\"kind\":\"task\",\"tid\":1,\"pid\":1,\"comm\":5}",
        "line 1: field \"comm\" must be a string",
    );
}

#[test]
fn import_of_missing_file_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = rltop(&[
        "import",
        dir.path().join("nope.jsonl").to_str().unwrap(),
        "-o",
        dir.path().join("o.rlt").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
