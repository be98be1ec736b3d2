//! `rltop --generate WHAT`: the man page and the shell completions, made
//! from the command line's own definition (`cargo xtask dist` packs them).

use std::io::Write as _;

use clap::CommandFactory as _;

use crate::cli::{Cli, Generate};

/// Writes what `what` names to stdout.
pub fn run(what: Generate) -> anyhow::Result<std::process::ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    match what {
        Generate::Man => clap_mangen::Man::new(cmd).render(&mut out)?,
        Generate::CompleteBash => complete(clap_complete::Shell::Bash, &mut cmd, &mut out),
        Generate::CompleteZsh => complete(clap_complete::Shell::Zsh, &mut cmd, &mut out),
        Generate::CompleteFish => complete(clap_complete::Shell::Fish, &mut cmd, &mut out),
    }
    std::io::stdout().lock().write_all(&out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn complete(shell: clap_complete::Shell, cmd: &mut clap::Command, out: &mut Vec<u8>) {
    clap_complete::generate(shell, cmd, "rltop", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The man page and every completion script name every subcommand.
    #[test]
    fn generated_files_cover_every_subcommand() {
        let subs: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(subs.iter().any(|s| s == "record"), "{subs:?}");
        let mut man = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut man)
            .unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.starts_with(".ie"), "{}", &man[..40.min(man.len())]);
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            complete(shell, &mut Cli::command(), &mut out);
            let text = String::from_utf8(out).unwrap();
            for s in &subs {
                assert!(text.contains(s.as_str()), "{shell}: no {s}");
            }
        }
        for s in &subs {
            assert!(man.contains(s.as_str()), "man: no {s}");
        }
    }
}
