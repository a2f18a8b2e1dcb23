//! `cdc-orchestrator version`: the name and version, as Cargo built them.

use std::process::ExitCode;

/// Prints `cdc-orchestrator <version>`.
pub fn command() -> ExitCode {
    println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}
