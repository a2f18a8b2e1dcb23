//! The `cdc-orchestrator` binary: parses the command line and hands each subcommand to its file in `cli`.

use std::process::ExitCode;

use cdc_orchestrator::cli::args::{self, Command};
use cdc_orchestrator::cli::replay::ReplayOptions;
use cdc_orchestrator::cli::{self, EXIT_CONFIG};
use cdc_orchestrator::logging;

fn main() -> ExitCode {
    let args = args::parse();
    if let Err(e) = logging::init(args.log_format, &args.log_level) {
        eprintln!("error: {}", logging::chain(&e));
        return ExitCode::from(EXIT_CONFIG);
    }
    let config = args.config.as_deref();
    match args.command {
        Command::Run => cli::run::command(config),
        Command::Check => cli::check::command(config),
        Command::Healthcheck => cli::healthcheck::command(config),
        Command::Jobs { json } => cli::jobs::command(config, json),
        Command::Decode { file, raw, topic } => cli::decode::command(&file, raw, topic.as_deref()),
        Command::Watch { lag, once } => cli::watch::command(config, lag, once),
        Command::Version => cli::version::command(),
        Command::Status { url, watch, interval } => {
            cli::status::command(config, url.as_deref(), watch.then_some(interval))
        }
        Command::Replay { trace, seed, events } => {
            cli::replay::command(config, trace.as_deref(), seed, ReplayOptions { events })
        }
        Command::Reload { url } => cli::reload::command(config, url.as_deref()),
        Command::Render { table, show_secrets } => cli::render::command(config, &table, show_secrets),
        Command::Scaffold(args) => cli::scaffold::command(args),
    }
}
