//! Starting and stopping one Flink SQL job per table, idempotently.
//!
//! Jobs are submitted through the SQL Gateway ([`gateway`]) and watched, stopped and cancelled through the
//! JobManager REST API ([`jobmanager`]); [`SqlGatewayLauncher`] combines the two behind the [`Launcher`] trait,
//! and [`DryRunLauncher`] simulates them for demos without Flink.
//!
//! Two facts make a start safe to retry: every job is named `cdc-<table>`, and its job id is pinned to a value
//! derived from the table and a *generation* ([`crate::model::job_id_for`]). Flink rejects a second submission of a known job
//! id, so a start retried after a lost answer adopts the job the first attempt created instead of creating a
//! second one; and a launcher that finds a live job named `cdc-<table>` adopts it rather than starting another.
//!
//! Owns the launchers, the REST clients and their bounds. May import [`crate::config`], [`crate::sql`] (the
//! statements a start submits), [`crate::model`] (job ids, states, the pinning rule), [`crate::telemetry`],
//! [`crate::backoff`], [`crate::logging`], [`crate::shutdown`], [`crate::http_client`] and [`crate::lease`] (the
//! guard asked immediately before every request that submits, stops or cancels a job); never the policy, the
//! controller, Kafka or HTTP, which sit above it.

pub use crate::backoff::Backoff;

pub mod dry_run;
mod error;
pub mod failure;
pub mod gateway;
mod http;
#[cfg(test)]
pub(crate) use http::refused;
mod job;
pub mod jobmanager;
mod launcher;
pub mod listing;

use std::time::Duration;

pub use dry_run::DryRunLauncher;
pub use error::{Fault, FlinkError, root_cause};
pub use failure::JobFailure;
pub(crate) use http::{BodyError, read_body};
pub use job::{AnyLauncher, Launcher, Started, Stopped};
pub use launcher::{LaunchSettings, SqlGatewayLauncher};

/// Readiness tells Flink unreachable (down) from Flink refusing one call by the same rule as the retries.
impl crate::telemetry::CallFailure for FlinkError {
    fn is_transient(&self) -> bool {
        FlinkError::is_transient(self)
    }
}

/// An HTTP client for Flink (and the sidecar's own CLI probes), as [`crate::http_client::client`] makes every
/// outgoing client: `timeout` on every request, and no redirect followed. A redirect would re-send a request, and
/// the catalog and S3 credentials in a session's statements, to an address nobody configured (or turn a POST into
/// a GET); the answer is an error naming the redirect instead.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, FlinkError> {
    crate::http_client::client(timeout)
        .map_err(|e| FlinkError::Setup(format!("cannot build the HTTP client: {}", crate::logging::chain(&e))))
}

/// A statement shortened to its first line and 120 characters, for errors and logs.
pub(crate) fn short_statement(statement: &str) -> String {
    let first = statement.trim().lines().next().unwrap_or_default();
    let mut short: String = first.chars().take(120).collect();
    if short.len() < statement.trim().len() {
        short.push_str(" …");
    }
    short
}

/// The largest pause between two polls of the same thing: a stop is acknowledged, and a start or statement
/// seen done, at most this long after Flink says so (doubling up to 2 s acknowledged stops 3 to 4 s after the
/// job was FINISHED). Two requests a second per start or stop in flight are nothing to the REST endpoints.
pub const POLL_MAX: Duration = Duration::from_millis(500);

/// How Flink is polled while a statement, start or stop is in flight: 100 ms, doubling up to [`POLL_MAX`].
pub const POLL_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), POLL_MAX);

/// Sleeps for the next backoff delay, but not past `deadline`.
pub(crate) async fn sleep_until_next(delays: &mut impl Iterator<Item = Duration>, deadline: tokio::time::Instant) {
    let delay = delays.next().unwrap_or(Duration::from_secs(1));
    tokio::time::sleep_until((tokio::time::Instant::now() + delay).min(deadline)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_statements_keep_the_first_line() {
        assert_eq!(short_statement("SET 'a' = 'b'"), "SET 'a' = 'b'");
        assert_eq!(short_statement("INSERT INTO x\nSELECT * FROM y"), "INSERT INTO x …");
    }
}
