//! Starting and stopping one Flink SQL job per table, idempotently.
//!
//! Jobs are submitted through the SQL Gateway ([`gateway`]) and watched, stopped and cancelled through the
//! JobManager REST API ([`jobmanager`]); [`SqlGatewayLauncher`] combines the two behind the [`Launcher`] trait,
//! and [`DryRunLauncher`] simulates them for demos without Flink.
//!
//! Two facts make a start safe to retry: every job is named `cdc-<table>`, and its job id is pinned to a value
//! derived from the table and a *generation* ([`job_id_for`]). Flink rejects a second submission of a known job
//! id, so a start retried after a lost answer adopts the job the first attempt created instead of creating a
//! second one; and a launcher that finds a live job named `cdc-<table>` adopts it rather than starting another.

pub use crate::backoff::Backoff;

pub mod dry_run;
pub mod gateway;
mod http;
mod job;
pub mod jobmanager;
mod launcher;
pub mod listing;
mod reconcile;

use std::sync::Once;
use std::time::Duration;

pub use dry_run::DryRunLauncher;
pub use job::{
    AnyLauncher, GENERATION_BITS, JobId, JobState, JobSummary, Launcher, Started, Stopped, job_id_for, job_name,
    launch_generation, table_of_job,
};
pub use launcher::{LaunchSettings, SqlGatewayLauncher, reserved_key_set};
pub use reconcile::{Reconciliation, reconcile, reconcile_jobs};

/// Prefix of every job name this sidecar submits; the rest of the name is the table.
pub const JOB_NAME_PREFIX: &str = "cdc-";

/// Why talking to Flink failed. Every variant renders as one line; errors reported by Flink carry the root-cause
/// line of the server-side stack trace, not the whole trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlinkError {
    /// The request did not get an answer: connection refused, reset, or the request timeout passed.
    #[error("{endpoint}: {reason}")]
    Transport {
        /// Method and path of the request, e.g. `POST /v1/sessions`.
        endpoint: String,
        /// What went wrong, one line.
        reason: String,
        /// Whether the request timed out (the server may still have acted on it).
        timed_out: bool,
    },
    /// Flink answered with an error status and an `{"errors": [...]}` body.
    #[error("{endpoint}: HTTP {status}: {root_cause}")]
    Api {
        /// Method and path of the request.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The root-cause line of the server's error (last `Caused by:` of its stack trace).
        root_cause: String,
        /// Whether the error says the SQL Gateway session does not exist (expired or gateway restarted).
        session_missing: bool,
    },
    /// Flink answered 2xx with a body that does not have the documented shape.
    #[error("{endpoint}: unexpected answer: {reason}")]
    Decode {
        /// Method and path of the request.
        endpoint: String,
        /// What did not parse.
        reason: String,
    },
    /// A SQL statement failed inside Flink (syntax, validation, submission).
    #[error("statement `{statement}` failed: {root_cause}")]
    Statement {
        /// The statement, shortened to its first line.
        statement: String,
        /// The root-cause line Flink gave.
        root_cause: String,
    },
    /// A statement did not finish within the allowed time.
    #[error("statement `{statement}` still {status} after {}", humantime::format_duration(*.waited))]
    StatementTimeout {
        /// The statement, shortened to its first line.
        statement: String,
        /// The last operation status seen.
        status: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// The job was submitted but did not reach RUNNING within `flink.start_timeout`.
    #[error("job {job_id} of table {table} not RUNNING after {} (last state {state})", humantime::format_duration(*.waited))]
    StartTimeout {
        /// The table.
        table: String,
        /// The pinned job id.
        job_id: JobId,
        /// The last state the JobManager reported, or `absent`.
        state: String,
        /// How long the start waited.
        waited: Duration,
    },
    /// The job ended (FAILED, CANCELED, ...) while starting.
    #[error("job {job_id} of table {table} is {state} instead of RUNNING")]
    JobEnded {
        /// The table.
        table: String,
        /// The job id.
        job_id: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// The pinned job id belongs to a job that already ended; a new start needs a new generation.
    #[error("job id {job_id} of table {table} was already used by a job that is {state}; start with a new generation")]
    JobIdUsed {
        /// The table.
        table: String,
        /// The job id.
        job_id: JobId,
        /// The state of the earlier job.
        state: JobState,
    },
    /// The job to stop is not the table's (its name is not `cdc-<table>`); it is left alone.
    #[error("job {job_id} is named {name:?}, not cdc-{table}; not touching it")]
    ForeignJob {
        /// The table the caller meant.
        table: String,
        /// The job id given.
        job_id: JobId,
        /// The job's actual name.
        name: String,
    },
    /// The statements to submit contain no INSERT, so no job would start.
    #[error("the statements of table {table} submit no job (no INSERT or EXECUTE STATEMENT SET)")]
    NoJobStatement {
        /// The table.
        table: String,
    },
    /// A setting is unusable, e.g. a URL that cannot be joined with an API path.
    #[error("{0}")]
    Setup(String),
}

impl FlinkError {
    /// Whether retrying the same request may succeed (transport problems and server-side 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            FlinkError::Transport { .. } => true,
            FlinkError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// An HTTP client for Flink: rustls with the ring provider, and `timeout` on every request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, FlinkError> {
    static PROVIDER: Once = Once::new();
    // reqwest is built without a default crypto provider; install ring once per process. Another part of the
    // program may have installed one already, which is just as good, so the result is ignored.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FlinkError::Setup(format!("cannot build the HTTP client: {e}")))
}

/// The one line of a Flink error body worth showing: the last `Caused by:` of the server-side stack trace
/// (without that prefix), else the exception line that heads the trace, else the first message.
///
/// Flink answers errors as `{"errors": ["Internal server error.", "<Exception on server side:\n...\nEnd of
/// exception on server side>"]}`, or `{"errors": ["<message or trace>"]}` for handled errors such as 404s.
/// When the last cause is itself a REST client's error carrying another server's trace (the gateway submitting
/// to the JobManager: `RestClientException: [Internal server error., <Exception on server side:` followed by
/// the JobManager's exception, e.g. `DuplicateJobSubmissionException`), that inner exception is the cause.
pub fn root_cause(errors: &[String]) -> String {
    let mut caused_by = None;
    let mut head = None;
    let mut nested_follows = false;
    for message in errors {
        for line in message.lines().map(str::trim) {
            if nested_follows && !line.is_empty() {
                nested_follows = false;
                if !line.starts_with("at ") {
                    caused_by = Some(line);
                    continue;
                }
            }
            if let Some(rest) = line.strip_prefix("Caused by:") {
                caused_by = Some(rest.trim());
                nested_follows = rest.trim_end().ends_with("<Exception on server side:");
            } else if head.is_none()
                && !line.is_empty()
                && !line.starts_with("at ")
                && !line.starts_with("...")
                && line != "Internal server error."
                && !line.starts_with("End of exception on server side")
            {
                let line = line.trim_start_matches("<Exception on server side:").trim();
                if !line.is_empty() {
                    head = Some(line);
                }
            }
        }
    }
    caused_by
        .or(head)
        .or_else(|| errors.first().map(String::as_str))
        .unwrap_or("no error message")
        .to_owned()
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
    fn root_cause_is_the_last_caused_by() {
        let trace = "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: \
                     Failed to fetchResults.\n\tat org.apache.Foo.bar(Foo.java:1)\nCaused by: \
                     org.apache.flink.table.api.TableException: Failed to execute sql\n\tat x\nCaused by: \
                     org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been \
                     submitted.\n\t... 12 more\n\nEnd of exception on server side>";
        let errors = vec!["Internal server error.".to_owned(), trace.to_owned()];
        assert_eq!(
            root_cause(&errors),
            "org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
        );
        let plain = vec!["Job 00000000000000000000000000000000 not found".to_owned()];
        assert_eq!(root_cause(&plain), plain[0]);
        let no_cause = vec![
            "Internal server error.".to_owned(),
            "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: Session \
             'x' does not exist.\n\tat a.b(C.java:1)\nEnd of exception on server side>"
                .to_owned(),
        ];
        assert_eq!(
            root_cause(&no_cause),
            "org.apache.flink.table.gateway.api.utils.SqlGatewayException: Session 'x' does not exist."
        );
        assert_eq!(root_cause(&[]), "no error message");
        // As the SQL Gateway reports a pinned id that the JobManager already has (seen with Flink 2.0): the
        // JobManager's exception is nested in the REST client's message.
        let nested = vec![
            "Internal server error.".to_owned(),
            "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: Failed to \
             fetchResults.\nCaused by: org.apache.flink.table.api.TableException: Failed to execute sql\n\tat a.b(C.java:1)\n\
             Caused by: org.apache.flink.runtime.client.JobSubmissionException: Failed to submit ExecutionPlan.\n\
             Caused by: org.apache.flink.runtime.rest.util.RestClientException: [Internal server error., <Exception \
             on server side:\norg.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been \
             submitted.\n\tat d.e(F.java:2)\n\nEnd of exception on server side>]\n\tat g.h(I.java:3)\n\nEnd of exception on \
             server side>"
                .to_owned(),
        ];
        assert_eq!(
            root_cause(&nested),
            "org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
        );
    }

    #[test]
    fn short_statements_keep_the_first_line() {
        assert_eq!(short_statement("SET 'a' = 'b'"), "SET 'a' = 'b'");
        assert_eq!(short_statement("INSERT INTO x\nSELECT * FROM y"), "INSERT INTO x …");
    }
}
