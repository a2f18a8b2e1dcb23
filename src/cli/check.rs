//! `cdc-orchestrator check`: validates the configuration and prints it resolved, as TOML, secrets redacted.

use std::path::Path;
use std::process::ExitCode;

use super::{load_config, render};
use crate::config::LauncherKind;
use crate::sql::{self, Credentials};

/// Prints the resolved configuration in `file`, or every mistake in it (exit 2); like `run`, it also refuses a
/// launcher whose credentials are missing from the environment.
pub fn command(file: Option<&Path>) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // `run` would refuse to start without them; `check` says so first.
    if config.flink.launcher != LauncherKind::DryRun
        && let Err(e) = sql::require_credentials(&config, &Credentials::from_env(&config.kafka))
    {
        eprintln!("error: {}", crate::logging::chain(&e));
        return ExitCode::from(render::exit_code(&e));
    }
    print!("{}", config.to_toml());
    ExitCode::SUCCESS
}
