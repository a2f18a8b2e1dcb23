//! `cdc-orchestrator run`: the sidecar itself, until SIGTERM or SIGINT.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_FAILURE, block_on, load_config};
use crate::controller::{self, RunError};
use crate::{http, shutdown};

/// Runs the sidecar on the configuration in `file`: exit 2 for what the configuration must fix (missing
/// credentials, an address that cannot be bound), 1 for any other failure.
pub fn command(file: Option<&Path>) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match http::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    // The signal handlers are installed inside the runtime, which they need.
    let work = async { controller::run(config, shutdown::on_signals()).await };
    block_on(work, "error", |e| match e {
        RunError::Credentials(_) | RunError::Templates(_) | RunError::Listen { .. } => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    })
}
