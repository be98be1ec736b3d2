use std::process::ExitCode;

use clap::Parser;
use rltop::cli::{Cli, Command};
use rltop::{UserError, cmd};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Record {
            output,
            duration,
            probe_cost,
            cmd: argv,
        }) => cmd::record::run(&cli.live, &output, duration, probe_cost, &argv, cli.force),
        Some(Command::Dump { file, format }) => cmd::dump::run(&file, format),
        Some(Command::Import { file, output }) => cmd::import::run(&file, &output, cli.force),
        Some(Command::Simulate {
            scenario,
            seed,
            events,
            threads,
            output,
        }) => cmd::simulate::run(
            &rltop::sim::Config {
                scenario,
                seed,
                events,
                threads,
            },
            &output,
            cli.force,
        ),
        Some(Command::Check {
            file,
            format,
            stall_ms,
            flavour,
        }) => cmd::check::run(&file, format, stall_ms, flavour),
        Some(Command::Report {
            file,
            format,
            sort,
            flavour,
        }) => cmd::report::run(&file, format, sort, flavour),
        Some(Command::Replay {
            file,
            speed,
            paused,
            stall_ms,
            flavour,
        }) => cmd::replay::run(&file, speed, paused, stall_ms, flavour),
        Some(Command::Demo {
            scenario,
            seed,
            threads,
            speed,
        }) => cmd::demo::run(&scenario, seed, threads, speed),
        Some(Command::Hist {
            files,
            metric,
            by,
            format,
            svg,
            merge,
            output,
            flavour,
        }) => cmd::hist::run(&cmd::hist::Args {
            files,
            metric,
            by,
            format,
            svg,
            merge,
            output,
            flavour,
            force: cli.force,
        }),
        Some(Command::Export {
            file,
            perfetto,
            chrome,
            stall_ms,
            flavour,
        }) => cmd::export::run(
            &file,
            perfetto.as_deref(),
            chrome.as_deref(),
            stall_ms,
            flavour,
            cli.force,
        ),
        Some(Command::Probes { verbose }) => cmd::probes::run(&cli.live, verbose),
        None => cmd::live::run(&cli.live, cli.text),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: what is wrong and, in the message, what to do.
            match err.downcast_ref::<UserError>() {
                Some(u) => eprintln!("rltop: {u}"),
                None => eprintln!("rltop: error: {}", rltop::one_line(&err)),
            }
            ExitCode::from(2)
        }
    }
}
