//! The line each view of a command's recording starts with: which tasks it
//! shows (issue 16). See [`crate::analysis::scope`].

use serde::Serialize;

use crate::analysis::scope::{Scope, Why};

/// Which tasks a view shows, for its header (text) and its `scope` object
/// (JSON, an extension of the contract present only for a recording of a
/// command).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeNote {
    /// The command line, from the trace header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// The command's first process.
    pub pid: u32,
    /// The command's tasks.
    pub tasks: usize,
    /// Other tasks that owned what the command's tasks waited for.
    pub holders: usize,
    /// Kernel threads that worked on the command's files.
    pub kernel_threads: usize,
    /// Tasks outside all that (left out, or marked with `--all-tasks`).
    pub outside: usize,
    /// `--all-tasks`: every task is shown, and those outside are marked.
    pub all_tasks: bool,
    /// `check --by-test`: findings about tasks outside only, left out.
    #[serde(skip_serializing_if = "is_zero")]
    pub findings_left_out: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub use crate::analysis::scope::OUTSIDE;

impl ScopeNote {
    pub fn new(scope: &Scope, command: Option<&[String]>, all_tasks: bool) -> Option<ScopeNote> {
        let (pid, _) = scope.root()?;
        Some(ScopeNote {
            command: command.map(<[String]>::to_vec),
            pid,
            tasks: scope.count(Why::Command),
            holders: scope.count(Why::Holder),
            kernel_threads: scope.count(Why::KernelThread),
            outside: scope.outside(),
            all_tasks,
            findings_left_out: 0,
        })
    }

    /// A few words for the TUI's status line.
    pub fn short(&self) -> String {
        if self.all_tasks {
            format!("all tasks ({} outside pid {})", self.outside, self.pid)
        } else {
            format!(
                "pid {}: {} tasks +{} holders +{} kthreads ({} hidden)",
                self.pid, self.tasks, self.holders, self.kernel_threads, self.outside
            )
        }
    }

    /// One line, without its newline.
    pub fn text(&self) -> String {
        let cmd = match &self.command {
            Some(c) => format!("`{}` (pid {})", c.join(" "), self.pid),
            None => format!("pid {}", self.pid),
        };
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        let them = format!(
            "{}, {} that held what they waited for, {} on their files",
            n(self.tasks, "task", "tasks"),
            n(self.holders, "other task", "other tasks"),
            n(self.kernel_threads, "kernel thread", "kernel threads"),
        );
        if self.all_tasks {
            format!(
                "scope: all tasks (--all-tasks); the command {cmd}: {them}; the {} other tasks are marked {OUTSIDE}",
                self.outside
            )
        } else {
            let findings = match self.findings_left_out {
                0 => String::new(),
                k => format!(" and {}", n(k, "finding of theirs", "findings of theirs")),
            };
            format!(
                "scope: the command {cmd}: {them}; {}{findings} left out (--all-tasks shows them)",
                n(self.outside, "other task", "other tasks")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_is_shown_and_what_is_left_out() {
        let mut n = ScopeNote {
            command: Some(vec!["./check".into(), "-g".into(), "quick".into()]),
            pid: 42,
            tasks: 12,
            holders: 1,
            kernel_threads: 2,
            outside: 30,
            all_tasks: false,
            findings_left_out: 0,
        };
        assert_eq!(
            n.text(),
            "scope: the command `./check -g quick` (pid 42): 12 tasks, 1 other task that held what \
             they waited for, 2 kernel threads on their files; 30 other tasks left out \
             (--all-tasks shows them)"
        );
        n.all_tasks = true;
        assert!(n.text().starts_with("scope: all tasks (--all-tasks)"));
        assert!(
            n.text()
                .ends_with("the 30 other tasks are marked [outside]")
        );
    }
}
