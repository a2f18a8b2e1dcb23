//! `cdc-orchestrator run`: the sidecar itself, until SIGTERM or SIGINT; SIGHUP reloads its templates and policy
//! settings.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_CONFIG, EXIT_FAILURE, block_on, load_config};
use crate::app::{self, RunError};
use crate::auth::TokenError;
use crate::kafka::watcher::WatchError;
use crate::{http, shutdown};

/// After the first SIGTERM or SIGINT, how long past `flink.shutdown_timeout` the process may take to wind down
/// before it is ended regardless: the HTTP server and the watcher finish within it once the run loop is done.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// Runs the sidecar on the configuration in `file`: exit 2 for what the configuration must fix (missing
/// credentials, an address that cannot be bound), 1 for any other failure.
pub fn command(file: Option<&Path>) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match http::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %crate::logging::chain(&e), "cannot raise the open-file limit"),
    }
    // The Flink calls in flight get `shutdown_timeout`; the margin lets the run loop, which gives up on them at
    // that time, and the rest wind down before the process is ended regardless.
    let grace = config.flink.shutdown_timeout.saturating_add(SHUTDOWN_MARGIN);
    // The signal handlers are installed inside the runtime, which they need.
    let work = async {
        let (shutdown, hangups) = shutdown::on_signals_and_hangups(grace);
        app::run(config, app::Reloads::new(file, hangups), shutdown).await
    };
    block_on(work, "error", |e| match e {
        RunError::Credentials(_) | RunError::Templates(_) | RunError::Listen { .. } | RunError::Leadership(_) => {
            EXIT_CONFIG
        }
        // The watcher is built from the configuration alone (a topic pattern, TLS files, the SASL login and its
        // credentials, such as AWS keys that have expired): what fails there, the configuration must fix.
        RunError::Watcher(
            WatchError::Pattern(_)
            | WatchError::Routed(_)
            | WatchError::Tls(_)
            | WatchError::Login(TokenError::Config { .. }),
        ) => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    })
}
