//! The [`Launcher`] trait that starts, stops and lists jobs, what it answers, and how a job id is pinned. The
//! job id and state types themselves are the shared vocabulary's ([`crate::model`]).

use std::future::Future;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DryRunLauncher, FlinkError, SqlGatewayLauncher};
use crate::config::{Config, LauncherKind};
use crate::model::{JobId, JobState};

/// How many low bits of a launch generation hold the policy's per-table generation; the bits above hold the
/// sidecar process's start time. See [`launch_generation`].
pub const GENERATION_BITS: u32 = 20;

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
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    JobId::from_bytes(&id)
}

/// The generation a start hands to the launcher: the sidecar process's start time (`process_start_ms`,
/// milliseconds since the Unix epoch) above the policy's per-table `generation` (its low [`GENERATION_BITS`]
/// bits). The policy counts starts per table from 1 in every process, so the start time is what keeps job ids
/// pinned from (table, generation) from repeating across restarts of the sidecar: Flink refuses to reuse the id
/// of a finished job. This is the only source of the generations given to [`Launcher::start`].
pub fn launch_generation(process_start_ms: u64, generation: u64) -> u64 {
    (process_start_ms << GENERATION_BITS) | (generation & ((1 << GENERATION_BITS) - 1))
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
}
