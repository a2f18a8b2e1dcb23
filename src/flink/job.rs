//! The [`Launcher`] trait that starts, stops and lists jobs, and what it answers. The job id, its state, how the
//! id is pinned and a listed job are the shared vocabulary's ([`crate::model`]).

use std::future::Future;

use super::{DryRunLauncher, FlinkError, JobFailure, SqlGatewayLauncher};
use crate::config::{Config, LauncherKind};
use crate::model::{JobId, JobState, JobSummary};

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
    /// the job that a previous attempt of the same `launch_generation`, or any live job named `cdc-<table>`, already
    /// runs. Returns once the job is RUNNING; a job not RUNNING within `flink.start_timeout` is a failed start.
    ///
    /// `launch_generation` must be new for every start decision and kept by that decision's retries: the run loop
    /// passes the policy's [`crate::model::launch_generation`], which is new across restarts of the sidecar too.
    fn start(
        &self,
        table: &str,
        launch_generation: u64,
        statements: &[String],
    ) -> impl Future<Output = Result<Started, FlinkError>> + Send;

    /// Stops `table`'s job with a savepoint into `flink.savepoint_dir`; cancels it when that fails or takes
    /// longer than `flink.stop_timeout`.
    fn stop(&self, table: &str, job_id: &JobId) -> impl Future<Output = Result<Stopped, FlinkError>> + Send;

    /// The cdc jobs (named `cdc-<table>`) Flink knows, running or ended, newest first.
    fn list_jobs(&self) -> impl Future<Output = Result<Vec<JobSummary>, FlinkError>> + Send;

    /// The latest failure of `job_id` (one redacted, bounded line and Flink's time of it), or `None` when the job
    /// has not failed, Flink does not know it, or the launcher cannot tell (the default: a simulated job never
    /// fails).
    fn job_failure(&self, job_id: &JobId) -> impl Future<Output = Result<Option<JobFailure>, FlinkError>> + Send {
        let _ = job_id;
        async { Ok(None) }
    }

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

impl AnyLauncher {
    /// This launcher asking `guard` before every call that changes Flink ([`SqlGatewayLauncher::with_guard`],
    /// [`DryRunLauncher::with_guard`]).
    pub fn with_guard(self, guard: crate::lease::LeaseGuard) -> AnyLauncher {
        match self {
            AnyLauncher::SqlGateway(l) => AnyLauncher::SqlGateway(l.with_guard(guard)),
            AnyLauncher::DryRun(l) => AnyLauncher::DryRun(l.with_guard(guard)),
        }
    }
}

impl Launcher for AnyLauncher {
    async fn start(&self, table: &str, launch_generation: u64, statements: &[String]) -> Result<Started, FlinkError> {
        match self {
            AnyLauncher::SqlGateway(l) => l.start(table, launch_generation, statements).await,
            AnyLauncher::DryRun(l) => l.start(table, launch_generation, statements).await,
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

    async fn job_failure(&self, job_id: &JobId) -> Result<Option<JobFailure>, FlinkError> {
        match self {
            AnyLauncher::SqlGateway(l) => l.job_failure(job_id).await,
            AnyLauncher::DryRun(l) => l.job_failure(job_id).await,
        }
    }

    fn simulated(&self) -> bool {
        match self {
            AnyLauncher::SqlGateway(l) => l.simulated(),
            AnyLauncher::DryRun(l) => l.simulated(),
        }
    }
}
