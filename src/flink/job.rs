//! What identifies a job and what Flink says of it, and the [`Launcher`] trait that starts, stops and lists
//! jobs. Plain data, no I/O: the policy uses [`JobId`] and [`JobState`] as they are.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DryRunLauncher, FlinkError, JOB_NAME_PREFIX, SqlGatewayLauncher};
use crate::config::{Config, LauncherKind};

/// How many low bits of a launch generation hold the policy's per-table generation; the bits above hold the
/// sidecar process's start time. See [`launch_generation`].
pub const GENERATION_BITS: u32 = 20;

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

/// The generation a start hands to the launcher: the sidecar process's start time (`process_start_ms`,
/// milliseconds since the Unix epoch) above the policy's per-table `generation` (its low [`GENERATION_BITS`]
/// bits). The policy counts starts per table from 1 in every process, so the start time is what keeps job ids
/// pinned from (table, generation) from repeating across restarts of the sidecar: Flink refuses to reuse the id
/// of a finished job. This is the only source of the generations given to [`Launcher::start`].
pub fn launch_generation(process_start_ms: u64, generation: u64) -> u64 {
    (process_start_ms << GENERATION_BITS) | (generation & ((1 << GENERATION_BITS) - 1))
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

/// A job's status as the JobManager reports it (`JobStatus` in its REST API): the one job-state type of the
/// sidecar, from the launcher's listings through the policy to the HTTP API, which shows it as Flink spells it.
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
    /// A state this version does not know: Flink's spelling when it is a plausible state name (1 to
    /// [`JobState::MAX_OTHER_LEN`] of `A-Z` and `_`), else [`JobState::UNKNOWN`]. Parsing keeps nothing else, since
    /// the state becomes a metric label and shows in logs and `GET /tables`. It counts as alive
    /// ([`JobState::is_alive`]): the policy keeps such a job as the table's job rather than start a second one.
    Other(String),
}

impl JobState {
    /// Flink's spelling of every state this version knows, in Flink's order.
    pub const KNOWN: [&'static str; 11] = [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "FAILED",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "SUSPENDED",
        "RECONCILING",
    ];

    /// What an unknown state that is not a plausible state name is kept as.
    pub const UNKNOWN: &'static str = "UNKNOWN";

    /// The longest unknown state kept as Flink spelled it; Flink's own names have at most 12 characters.
    pub const MAX_OTHER_LEN: usize = 32;

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
            _ if is_state_name(&s) => JobState::Other(s),
            _ => JobState::Other(JobState::UNKNOWN.to_owned()),
        }
    }
}

/// Whether `text` looks like a Flink job state name: upper-case letters and underscores, bounded in length.
fn is_state_name(text: &str) -> bool {
    (1..=JobState::MAX_OTHER_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
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
    /// `generation` must be new for every start decision and kept by that decision's retries: the run loop
    /// passes [`launch_generation`] of the policy's generation, which is new across restarts of the sidecar too.
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

    /// Whether the jobs are only simulated (the dry run): they consume nothing, so their consumer group's lag
    /// says nothing about them; their statements are only logged, so credentials stay redacted; and no Flink
    /// has to answer for the sidecar to be ready.
    fn simulated(&self) -> bool {
        false
    }
}

/// The launcher chosen by `flink.launcher`.
#[derive(Debug)]
pub enum AnyLauncher {
    /// Submits through the SQL Gateway.
    SqlGateway(SqlGatewayLauncher),
    /// Logs and simulates.
    DryRun(DryRunLauncher),
}

impl AnyLauncher {
    /// Builds the launcher the configuration asks for.
    pub fn from_config(config: &Config) -> Result<AnyLauncher, FlinkError> {
        Ok(match config.flink.launcher {
            LauncherKind::SqlGateway => AnyLauncher::SqlGateway(SqlGatewayLauncher::from_config(config)?),
            LauncherKind::DryRun => AnyLauncher::DryRun(DryRunLauncher::new(&config.flink)),
        })
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

    fn simulated(&self) -> bool {
        match self {
            AnyLauncher::SqlGateway(l) => l.simulated(),
            AnyLauncher::DryRun(l) => l.simulated(),
        }
    }
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
    fn launch_generations_differ_across_processes_and_starts() {
        let (earlier, later) = (1_700_000_000_000, 1_700_000_000_001);
        assert_ne!(launch_generation(earlier, 1), launch_generation(later, 1));
        assert_ne!(launch_generation(earlier, 1), launch_generation(earlier, 2));
        assert_eq!(launch_generation(earlier, 3) & ((1 << GENERATION_BITS) - 1), 3);
    }

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
        assert!(JobState::Canceled.is_terminal() && !JobState::Cancelling.is_terminal());
        assert!(JobState::Restarting.is_alive());
        assert!(JobState::from("NEW_STATE".to_owned()).is_alive());
        assert_eq!(
            JobState::from("running".to_owned()),
            JobState::Other("UNKNOWN".to_owned())
        );
        let json = serde_json::to_value(JobState::Other("NEW_STATE".to_owned())).expect("serializes");
        assert_eq!(json, "NEW_STATE");
    }

    #[test]
    fn unknown_states_keep_only_a_bounded_safe_spelling() {
        let max = "A".repeat(JobState::MAX_OTHER_LEN);
        assert_eq!(JobState::from(max.clone()), JobState::Other(max.clone()));
        for hostile in [
            "RUN\u{1b}[31mNING".to_owned(),
            "RUNNING\n2026-01-01 INFO forged".to_owned(),
            "\u{7}\u{0}".to_owned(),
            format!("{max}A"),
            "running".to_owned(),
            "ÄUSSERST".to_owned(),
            String::new(),
        ] {
            let state = JobState::from(hostile.clone());
            assert_eq!(state.as_str(), JobState::UNKNOWN, "{hostile:?}");
            assert!(state.is_alive(), "an unknown state still errs on the side of alive");
        }
        // Through serde too: that is how Flink's answers are parsed.
        let parsed: JobState = serde_json::from_str("\"FAIL\\u001bING\"").expect("a JSON string");
        assert_eq!(parsed.as_str(), JobState::UNKNOWN);
    }
}
