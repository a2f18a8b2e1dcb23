//! The command line: [`args`] is what clap reads, and each subcommand has a file of its own that loads what it
//! needs, does its work, prints for an operator or a test, and returns the process's exit code.
//!
//! | subcommand    | file             | what it does                                                        |
//! |---------------|------------------|---------------------------------------------------------------------|
//! | `run`         | [`run`]          | the sidecar itself ([`crate::app::run`])                     |
//! | `check`       | [`check`]        | the resolved configuration as TOML, or every mistake in it          |
//! | `healthcheck` | [`healthcheck`]  | the container's probe of a running sidecar's `/healthz`             |
//! | `jobs`        | [`jobs`]         | the cdc jobs Flink knows, as a table or JSON                        |
//! | `decode`      | [`decode`]       | Debezium records in, one JSON answer per record out                 |
//! | `watch`       | [`watch`]        | table activity (and lag) as JSON lines                              |
//! | `version`     | [`version`]      | the name and version                                                |
//! | `status`      | [`status`]       | a running sidecar's tables, from its HTTP API                       |
//! | `replay`      | [`replay`]       | a trace of inputs through the policy, its actions as JSON lines     |
//! | `render`      | [`render`]       | the Flink SQL statements of one table                               |
//! | `reload`      | [`reload`]       | a running sidecar reloads its templates and policy settings         |
//! | `scaffold`    | [`scaffold`]     | the tables' SQL generated from Postgres's catalog, or `--check`ed   |
//!
//! Exit codes: 0 success, 1 a failure at run time, 2 a configuration or usage error (as clap's own).
//!
//! Owns the command line and what each command prints. May import every layer (it is the top one, `run` through
//! [`crate::app`]); nothing imports it but `main.rs`.

pub mod args;
pub mod check;
pub mod decode;
pub mod healthcheck;
pub mod jobs;
pub mod reload;
pub mod render;
pub mod replay;
pub mod run;
pub mod scaffold;
pub mod status;
pub mod version;
pub mod watch;

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::logging::chain;

/// Exit code for a configuration or usage error (clap uses the same for bad arguments).
pub const EXIT_CONFIG: u8 = 2;

/// Exit code for a failure at run time (an unreadable file, an unreachable service).
pub const EXIT_FAILURE: u8 = 1;

/// Loads the configuration, or prints one line per mistake and returns the exit code to use.
fn load_config(file: Option<&Path>) -> Result<Config, ExitCode> {
    let config = Config::load(file).and_then(|config| {
        // Templates that cannot be read are reported by `render` and `run`; there is nothing to compare then.
        let templated = crate::sql::known_tables(&config).unwrap_or_default();
        config.check_templated_topics(&templated).map(|()| config)
    });
    let config = config.map_err(|errors| {
        for e in errors.iter() {
            eprintln!("error: invalid configuration: {}", chain(e));
        }
        ExitCode::from(EXIT_CONFIG)
    })?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// Runs `work` to its end on a multi-threaded runtime. An error is printed as `<label>: <error and its causes>`
/// and exits with the code `exit` picks for it.
fn block_on<E: std::error::Error + 'static>(
    work: impl Future<Output = Result<(), E>>,
    label: &str,
    exit: impl FnOnce(&E) -> u8,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(work);
    // Dropping the runtime would wait for every blocking task still running (a DNS lookup of an unanswered
    // call, a file read) however long it takes; the work is done, so the process exits now.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{label}: {}", chain(&e));
            ExitCode::from(exit(&e))
        }
    }
}
