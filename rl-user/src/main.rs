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
        }) => cmd::record::run(&cli.live, &output, duration, probe_cost, &argv),
        Some(Command::Dump { file, format }) => cmd::dump::run(&file, format),
        Some(Command::Import { file, output }) => cmd::import::run(&file, &output),
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
        Some(Command::Probes { verbose }) => cmd::probes::run(&cli.live, verbose),
        None => cmd::live::run(&cli.live),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line: what is wrong and, in the message, what to do.
            match err.downcast_ref::<UserError>() {
                Some(u) => eprintln!("rltop: {u}"),
                None => eprintln!("rltop: error: {err:#}"),
            }
            ExitCode::from(2)
        }
    }
}
