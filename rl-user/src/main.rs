use std::process::ExitCode;

use clap::Parser;
use rltop::cli::{Cli, Command};
use rltop::{UserError, cmd};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let force = cli.force;
    let result = match &cli.command {
        _ if let Some(what) = cli.generate => cmd::generate::run(what),
        Some(Command::Record(a)) => cmd::record::run(&cli.live, a, force),
        Some(Command::Dump(a)) => cmd::dump::run(a),
        Some(Command::Import(a)) => cmd::import::run(a, force),
        Some(Command::Simulate(a)) => cmd::simulate::run(a, force),
        Some(Command::Check(a)) => cmd::check::run(a),
        Some(Command::Report(a)) => cmd::report::run(a),
        Some(Command::Whatif(a)) => cmd::whatif::run(a),
        Some(Command::Replay(a)) => cmd::replay::run(a),
        Some(Command::Demo(a)) => cmd::demo::run(a),
        Some(Command::Hist(a)) => cmd::hist::run(a, force),
        Some(Command::Export(a)) => cmd::export::run(a, force),
        Some(Command::Probes(a)) => cmd::probes::run(&cli.live, a),
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
