//! The command-line contract (`docs/cli.md`) names every sub-command and
//! every flag that `rltop <command> -h` lists: a flag added to clap without
//! its line in the contract fails here.

// A test stops at the first thing that is not as it must be.
#![allow(clippy::unwrap_used)]

mod common;
use common::rltop;

const COMMANDS: [&str; 13] = [
    "record", "dump", "import", "check", "report", "simulate", "whatif", "replay", "demo", "hist",
    "export", "probes", "help",
];

/// The long flags of a help text: the `--name` of each option line
/// (`-k, --sort <SORT>`, `--force`).
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let name = &l[l.find("--")? + 2..];
            let end = name.find([' ', '=', '<']).unwrap_or(name.len());
            Some(format!("--{}", &name[..end]))
        })
        .collect()
}

#[test]
fn cli_md_names_every_command_and_flag() {
    let doc = std::fs::read_to_string(common::crate_dir().join("../docs/cli.md")).unwrap();
    let top = String::from_utf8(rltop(&["-h"]).stdout).unwrap();
    for cmd in COMMANDS {
        assert!(
            top.contains(&format!("  {cmd} ")),
            "rltop -h does not list {cmd}"
        );
        assert!(
            doc.contains(&format!("| `{cmd}` |")),
            "docs/cli.md: no row for {cmd}"
        );
    }
    let mut checked = 0;
    for cmd in COMMANDS.iter().filter(|c| **c != "help") {
        let help = String::from_utf8(rltop(&[cmd, "-h"]).stdout).unwrap();
        for flag in flags(&help) {
            assert!(
                doc.contains(&flag),
                "docs/cli.md does not name `rltop {cmd} {flag}`"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} flags found in the help texts");
}
