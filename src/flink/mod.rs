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
mod error;
pub mod gateway;
mod http;
pub mod jobmanager;
mod launcher;
pub mod listing;
mod reconcile;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use dry_run::DryRunLauncher;
pub use error::{Fault, FlinkError, root_cause};
pub use launcher::{LaunchSettings, SqlGatewayLauncher};
pub use reconcile::{Reconciliation, reconcile, reconcile_jobs};

use crate::config::{Config, LauncherKind};
use crate::sql::Templates;

/// Prefix of every job name this sidecar submits; the rest of the name is the table.
pub const JOB_NAME_PREFIX: &str = "cdc-";

/// A Flink job id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Parses a job id, accepting upper-case hex and normalising it to lower case.
    pub fn parse(text: &str) -> Option<JobId> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| JobId(text.to_ascii_lowercase()))
    }

    /// The id as Flink writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        JobId::parse(&value).ok_or_else(|| format!("not a job id (32 hex digits): {value:?}"))
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The job id of `table`'s job of `generation`: the first 16 bytes of SHA-256 over a fixed prefix, the table and
/// the generation, in hex.
///
/// The same inputs always give the same id, across restarts and versions of the sidecar, so a retried start
/// collides with (and adopts) the job of its first attempt. A finished job's id cannot be reused in Flink, so
/// every new start of a table needs a new generation; retries of one start keep theirs.
pub fn job_id_for(table: &str, generation: u64) -> JobId {
    let digest = Sha256::new()
        .chain_update(b"cdc-orchestrator/job-id/v1\0")
        .chain_update(table.as_bytes())
        .chain_update(b"\0")
        .chain_update(generation.to_be_bytes())
        .finalize();
    JobId(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// A generation for a new start decision: the Unix time in milliseconds, so it never repeats one an earlier run
/// of the sidecar used (as long as the clock does not go back by more than the time between two starts).
pub fn generation_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

/// The job name of a table.
pub fn job_name(table: &str) -> String {
    format!("{JOB_NAME_PREFIX}{table}")
}

/// The table a job name belongs to, when the name is `cdc-<table>` with a valid table name.
pub fn table_of_job(name: &str) -> Option<&str> {
    name.strip_prefix(JOB_NAME_PREFIX)
        .filter(|t| crate::config::is_table_name(t))
}

/// A job's status as the JobManager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum JobState {
    /// Being set up by the JobManager.
    Initializing,
    /// Created, not yet scheduled.
    Created,
    /// Running.
    Running,
    /// Failing; will be FAILED or RESTARTING.
    Failing,
    /// Failed for good.
    Failed,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Finished, e.g. after stop-with-savepoint.
    Finished,
    /// Restarting after a failure.
    Restarting,
    /// Suspended (JobManager failover); the job is not terminated.
    Suspended,
    /// Being reconciled after a JobManager failover.
    Reconciling,
    /// A state this version does not know.
    Other(String),
}

impl JobState {
    /// The name Flink uses.
    pub fn as_str(&self) -> &str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
            JobState::Reconciling => "RECONCILING",
            JobState::Other(s) => s,
        }
    }

    /// Whether the job has ended for good (Flink's "globally terminal" states).
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Failed | JobState::Canceled | JobState::Finished)
    }

    /// Whether the job exists and has not ended: it holds (or will hold) the table's consumer group, so a second
    /// job must not start. Unknown states count as alive, which errs on the side of never running two jobs.
    pub fn is_alive(&self) -> bool {
        !self.is_terminal()
    }
}

impl From<String> for JobState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "INITIALIZING" => JobState::Initializing,
            "CREATED" => JobState::Created,
            "RUNNING" => JobState::Running,
            "FAILING" => JobState::Failing,
            "FAILED" => JobState::Failed,
            "CANCELLING" => JobState::Cancelling,
            "CANCELED" => JobState::Canceled,
            "FINISHED" => JobState::Finished,
            "RESTARTING" => JobState::Restarting,
            "SUSPENDED" => JobState::Suspended,
            "RECONCILING" => JobState::Reconciling,
            _ => JobState::Other(s),
        }
    }
}

impl From<JobState> for String {
    fn from(state: JobState) -> String {
        state.as_str().to_owned()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cdc job as Flink knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The table, from the job name `cdc-<table>`.
    pub table: String,
    /// The job id.
    pub job_id: JobId,
    /// The job's state.
    pub state: JobState,
    /// When the job started, milliseconds since the Unix epoch.
    pub start_time_ms: i64,
    /// When the job ended, milliseconds since the Unix epoch; absent while it has not.
    pub end_time_ms: Option<i64>,
}

/// How a start ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The running job.
    pub job_id: JobId,
    /// True when the job already existed (a retried start, or a job found by name) and was adopted.
    pub adopted: bool,
}

/// How a stop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// Stop-with-savepoint completed; the job is FINISHED.
    Savepoint {
        /// Where the savepoint was written.
        location: String,
    },
    /// The job was cancelled without a savepoint because stop-with-savepoint failed or took too long. The next
    /// start resumes from the offsets of the last completed checkpoint.
    Cancelled {
        /// Why the savepoint path was abandoned.
        reason: String,
    },
    /// The job was not running any more (absent or already terminal); nothing was done.
    AlreadyStopped {
        /// Its state, or `None` when Flink does not know the job.
        state: Option<JobState>,
    },
}

/// Starts, stops and lists the per-table jobs. Implementations are cheap to share behind an `Arc`.
pub trait Launcher: Send + Sync {
    /// Starts `table`'s job from `statements` (the table's SQL: DDL, then one INSERT or statement set), or adopts
    /// the job that a previous attempt of the same `generation`, or any live job named `cdc-<table>`, already
    /// runs. Returns once the job is RUNNING; a job not RUNNING within `flink.start_timeout` is a failed start.
    ///
    /// `generation` must be new for every start decision and kept by that decision's retries; [`generation_now`]
    /// gives one that is new across restarts of the sidecar too.
    fn start(
        &self,
        table: &str,
        generation: u64,
        statements: &[String],
    ) -> impl Future<Output = Result<Started, FlinkError>> + Send;

    /// Stops `table`'s job with a savepoint into `flink.savepoint_dir`; cancels it when that fails or takes
    /// longer than `flink.stop_timeout`.
    fn stop(&self, table: &str, job_id: &JobId) -> impl Future<Output = Result<Stopped, FlinkError>> + Send;

    /// The cdc jobs (named `cdc-<table>`) Flink knows, running or ended, newest first.
    fn list_jobs(&self) -> impl Future<Output = Result<Vec<JobSummary>, FlinkError>> + Send;
}

/// The launcher chosen by `flink.launcher`.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyLauncher {
    /// Submits through the SQL Gateway.
    SqlGateway(SqlGatewayLauncher),
    /// Logs and simulates.
    DryRun(DryRunLauncher),
}

impl AnyLauncher {
    /// Builds the launcher the configuration asks for, rendering jobs from `templates`.
    pub fn from_config(config: &Config, templates: Arc<Templates>) -> Result<AnyLauncher, FlinkError> {
        Ok(match config.flink.launcher {
            LauncherKind::SqlGateway => AnyLauncher::SqlGateway(SqlGatewayLauncher::from_config(config, templates)?),
            LauncherKind::DryRun => AnyLauncher::DryRun(DryRunLauncher::new(&config.flink, templates)),
        })
    }

    /// The SQL templates the jobs are rendered from; their tables are the ones that can start.
    pub fn templates(&self) -> &Arc<Templates> {
        match self {
            AnyLauncher::SqlGateway(l) => l.templates(),
            AnyLauncher::DryRun(l) => l.templates(),
        }
    }
}

impl Launcher for AnyLauncher {
    async fn start(&self, table: &str, generation: u64, statements: &[String]) -> Result<Started, FlinkError> {
        match self {
            AnyLauncher::SqlGateway(l) => l.start(table, generation, statements).await,
            AnyLauncher::DryRun(l) => l.start(table, generation, statements).await,
        }
    }

    async fn stop(&self, table: &str, job_id: &JobId) -> Result<Stopped, FlinkError> {
        match self {
            AnyLauncher::SqlGateway(l) => l.stop(table, job_id).await,
            AnyLauncher::DryRun(l) => l.stop(table, job_id).await,
        }
    }

    async fn list_jobs(&self) -> Result<Vec<JobSummary>, FlinkError> {
        match self {
            AnyLauncher::SqlGateway(l) => l.list_jobs().await,
            AnyLauncher::DryRun(l) => l.list_jobs().await,
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
    fn job_ids_are_pinned_per_table_and_generation() {
        let a = job_id_for("faculty", 1);
        assert_eq!(a, job_id_for("faculty", 1), "deterministic");
        assert_ne!(a, job_id_for("faculty", 2));
        assert_ne!(a, job_id_for("facult", 1));
        // A table name cannot bleed into the generation: "ab"+1 and "a"+... differ by construction.
        assert_ne!(job_id_for("a", 0x62), job_id_for("ab", 0));
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(JobId::parse(a.as_str()), Some(a.clone()));
        // Pinned across releases (value from `printf ... | sha256sum`): changing the derivation would make a
        // restarted sidecar start second jobs.
        assert_eq!(job_id_for("faculty", 7).as_str(), PINNED_FACULTY_7);
    }

    const PINNED_FACULTY_7: &str = "fdb80ac853d6be5725703ca085a44c9d";

    #[test]
    fn job_names_map_back_to_tables() {
        assert_eq!(table_of_job(&job_name("faculty")), Some("faculty"));
        assert_eq!(table_of_job("cdc-bad-name"), None);
        assert_eq!(table_of_job("insert-into_default_catalog"), None);
        assert_eq!(table_of_job("cdc-"), None);
    }

    #[test]
    fn job_ids_parse_strictly() {
        assert!(JobId::parse("abc").is_none());
        assert!(JobId::parse(&"g".repeat(32)).is_none());
        assert_eq!(
            JobId::parse(&"AB".repeat(16)).map(|j| j.to_string()),
            Some("ab".repeat(16))
        );
    }

    #[test]
    fn states_round_trip_and_classify() {
        for name in ["RUNNING", "FAILED", "CANCELED", "FINISHED", "RESTARTING", "SUSPENDED"] {
            assert_eq!(JobState::from(name.to_owned()).as_str(), name);
        }
        assert!(JobState::Failed.is_terminal() && !JobState::Failed.is_alive());
        assert!(JobState::Restarting.is_alive());
        assert!(JobState::from("NEW_STATE".to_owned()).is_alive());
    }

    #[test]
    fn short_statements_keep_the_first_line() {
        assert_eq!(short_statement("SET 'a' = 'b'"), "SET 'a' = 'b'");
        assert_eq!(short_statement("INSERT INTO x\nSELECT * FROM y"), "INSERT INTO x …");
    }
}
