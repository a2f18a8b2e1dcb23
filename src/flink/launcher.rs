//! The `sql-gateway` launcher: submits through the SQL Gateway, watches and stops through the JobManager.

use std::time::Duration;

use tokio::time::Instant;

use super::gateway::SqlGateway;
use super::jobmanager::{JobManager, JobOverview, SavepointStatus};
use super::{Backoff, Fault, FlinkError, Launcher, POLL_BACKOFF, Started, Stopped, http_client, sleep_until_next};
use crate::config::{Config, FlinkConfig};
use crate::lease::LeaseGuard;
use crate::model::{JobId, JobState, JobSummary, job_id_for, job_name, table_of_job};
use crate::sql::Credentials;

/// The settings a launcher runs with (from `[flink]`, plus the poll pace, which tests shorten).
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// Target directory of stop-with-savepoint.
    pub savepoint_dir: String,
    /// `execution.checkpointing.interval` of every job; offsets are committed to Kafka on checkpoints.
    pub checkpoint_interval: Duration,
    /// A start not RUNNING by then has failed.
    pub start_timeout: Duration,
    /// Stop-with-savepoint slower than this is followed by a cancel.
    pub stop_timeout: Duration,
    /// Pace of status polls.
    pub poll: Backoff,
}

impl LaunchSettings {
    /// The settings of `[flink]`.
    pub fn from_config(flink: &FlinkConfig) -> LaunchSettings {
        LaunchSettings {
            savepoint_dir: flink.savepoint_dir.clone(),
            checkpoint_interval: flink.checkpoint_interval,
            start_timeout: flink.start_timeout,
            stop_timeout: flink.stop_timeout,
            poll: POLL_BACKOFF,
        }
    }
}

/// Starts jobs through the SQL Gateway and manages them through the JobManager REST API.
#[derive(Debug)]
pub struct SqlGatewayLauncher {
    /// Boxed: it is most of the launcher's size.
    gateway: Box<SqlGateway>,
    jobmanager: JobManager,
    settings: LaunchSettings,
    /// Asked before a start does anything, so a standby does not even read (each request that changes Flink is
    /// guarded again where it is sent).
    guard: LeaseGuard,
}

impl SqlGatewayLauncher {
    /// A launcher for `flink.sql_gateway_url` and `flink.jobmanager_url`, masking the environment's credentials and
    /// the Kafka SASL password in its logs.
    pub fn from_config(config: &Config) -> Result<SqlGatewayLauncher, FlinkError> {
        let flink = &config.flink;
        let launcher = SqlGatewayLauncher::new(
            &flink.sql_gateway_url,
            &flink.jobmanager_url,
            flink.request_timeout,
            LaunchSettings::from_config(flink),
        )?;
        Ok(launcher
            .with_credentials(Credentials::from_env(&config.kafka))
            .with_max_response_bytes(flink.max_response_bytes))
    }

    /// A launcher with explicit endpoints and settings; every HTTP request is bounded by `request_timeout`.
    pub fn new(
        sql_gateway_url: &str,
        jobmanager_url: &str,
        request_timeout: Duration,
        settings: LaunchSettings,
    ) -> Result<SqlGatewayLauncher, FlinkError> {
        let http = http_client(request_timeout)?;
        Ok(SqlGatewayLauncher {
            gateway: Box::new(SqlGateway::new(http.clone(), sql_gateway_url, settings.poll)?),
            jobmanager: JobManager::new(http, jobmanager_url)?,
            settings,
            guard: LeaseGuard::always(),
        })
    }

    /// Masks `credentials` wherever a statement is logged and in every error of either client: Flink's
    /// answers may echo a statement.
    pub fn with_credentials(mut self, credentials: Credentials) -> SqlGatewayLauncher {
        self.jobmanager.set_redaction(credentials.clone());
        self.gateway.set_redaction(credentials);
        self
    }

    /// Asks `guard` immediately before every request that submits, stops or cancels a job (and before opening a
    /// session for a start); a refusal is [`FlinkError::NotLeader`] and nothing is sent. Without it, the guard
    /// always allows ([`LeaseGuard::always`]).
    pub fn with_guard(mut self, guard: LeaseGuard) -> SqlGatewayLauncher {
        self.jobmanager.set_guard(guard.clone());
        self.gateway.set_guard(guard.clone());
        self.guard = guard;
        self
    }

    /// Reads at most `bytes` of any answer of either client (`flink.max_response_bytes`; 8 MiB unless set).
    pub fn with_max_response_bytes(mut self, bytes: u32) -> SqlGatewayLauncher {
        self.jobmanager.set_max_response_bytes(bytes);
        self.gateway.set_max_response_bytes(bytes);
        self
    }

    /// The JobManager client.
    pub fn jobmanager(&self) -> &JobManager {
        &self.jobmanager
    }

    /// The statements of a start: the job's name, checkpointing, the pinned id, then the table's own SQL.
    fn batch(&self, table: &str, job_id: &JobId, statements: &[String]) -> Vec<String> {
        let settings = job_settings(table, job_id, self.settings.checkpoint_interval);
        settings.into_iter().chain(statements.iter().cloned()).collect()
    }

    /// The job a start must adopt instead of submitting: the pinned id if it lives, else the newest live job named
    /// `cdc-<table>`, else the pinned id's ended job (which makes the start fail: that id cannot be reused).
    async fn existing(&self, table: &str, job_id: &JobId) -> Result<Option<JobOverview>, FlinkError> {
        let jobs = self.jobmanager.overview().await?;
        let pinned = jobs.iter().find(|j| &j.job_id == job_id).cloned();
        if pinned.as_ref().is_some_and(|j| j.state.is_alive()) {
            return Ok(pinned);
        }
        let name = job_name(table);
        let live = jobs
            .into_iter()
            .filter(|j| j.name == name && j.state.is_alive())
            .max_by_key(|j| j.start_time_ms);
        Ok(live.or(pinned))
    }

    async fn await_running(
        &self,
        table: &str,
        job_id: JobId,
        adopted: bool,
        begin: Instant,
        deadline: Instant,
    ) -> Result<Started, FlinkError> {
        let mut delays = self.settings.poll.delays();
        let mut last = None;
        // Whether the JobManager has known the job: unknown afterwards means it was lost with its JobManager.
        let mut known = false;
        loop {
            let answer = self.jobmanager.job(&job_id).await;
            if matches!(answer, Ok(None)) && known {
                return Err(FlinkError::JobVanished {
                    table: table.to_owned(),
                    job_id,
                });
            }
            known |= matches!(answer, Ok(Some(_)));
            match answer {
                Ok(Some(detail)) if detail.state == JobState::Running => {
                    tracing::info!(table, job_id = %job_id, adopted, "job RUNNING");
                    return Ok(Started { job_id, adopted });
                }
                Ok(Some(detail)) if detail.state.is_terminal() => {
                    return Err(FlinkError::JobEnded {
                        table: table.to_owned(),
                        job_id,
                        state: detail.state,
                    });
                }
                Ok(detail) => last = detail.map(|d| d.state),
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %crate::logging::chain(&e), "job status poll failed; retrying")
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(self.start_timed_out(table, job_id, last, begin).await);
            }
            sleep_until_next(&mut delays, deadline).await;
        }
    }

    /// A start that timed out leaves nothing behind that the caller does not know of: a job that exists but is
    /// not RUNNING is cancelled. A submission still in flight may still create the job later; it is named
    /// `cdc-<table>`, so the next start or reconcile finds and adopts it.
    async fn start_timed_out(&self, table: &str, job_id: JobId, last: Option<JobState>, begin: Instant) -> FlinkError {
        if last.as_ref().is_some_and(JobState::is_alive) {
            match self.jobmanager.cancel(&job_id).await {
                Ok(_) => tracing::warn!(table, job_id = %job_id, "start timed out; cancelled the job"),
                Err(e) => {
                    tracing::warn!(table, job_id = %job_id, error = %crate::logging::chain(&e), "start timed out; cancel failed")
                }
            }
        }
        FlinkError::StartTimeout {
            table: table.to_owned(),
            job_id,
            state: last.map_or_else(|| "absent".to_owned(), |s| s.to_string()),
            waited: begin.elapsed(),
        }
    }

    async fn cancel_and_wait(&self, table: &str, job_id: &JobId, reason: String) -> Result<Stopped, FlinkError> {
        tracing::warn!(table, job_id = %job_id, reason = %reason, "cancelling job without savepoint");
        let deadline = Instant::now() + self.settings.stop_timeout;
        let mut delays = self.settings.poll.delays();
        let mut requested = false;
        loop {
            if !requested {
                match self.jobmanager.cancel(job_id).await {
                    Ok(true) => requested = true,
                    Ok(false) => {
                        let state = self.jobmanager.job(job_id).await.ok().flatten().map(|d| d.state);
                        return Ok(Stopped::AlreadyStopped { state });
                    }
                    Err(e) if e.is_transient() && Instant::now() < deadline => {
                        tracing::debug!(error = %crate::logging::chain(&e), "cancel failed; retrying")
                    }
                    Err(e) => return Err(e),
                }
            }
            if requested {
                match self.jobmanager.job(job_id).await {
                    Ok(Some(d)) if d.state.is_terminal() => return Ok(Stopped::Cancelled { reason }),
                    Ok(None) => return Ok(Stopped::Cancelled { reason }),
                    Ok(Some(_)) => {}
                    Err(e) if e.is_transient() => {}
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                // Flink accepted the cancel; it finishes on its own. Report what was done.
                return Ok(Stopped::Cancelled {
                    reason: format!("{reason}; cancel still in progress"),
                });
            }
            sleep_until_next(&mut delays, deadline).await;
        }
    }

    async fn wait_terminal(&self, job_id: &JobId, deadline: Instant) {
        let mut delays = self.settings.poll.delays();
        while Instant::now() < deadline {
            let state = match self.jobmanager.job_status(job_id).await {
                Ok(state) => state,
                // A Flink without the uncached status endpoint (before 1.17), or one that answers it with an
                // error for a job it just let go: the cached detail decides, as it always did.
                Err(_) => self.jobmanager.job(job_id).await.ok().flatten().map(|d| d.state),
            };
            if state.is_some_and(|s| !s.is_terminal()) {
                sleep_until_next(&mut delays, deadline).await;
                continue;
            }
            return;
        }
    }
}

/// The statements a launcher puts before a table's own for every job: its name, checkpointing and pinned id
/// (the keys of [`crate::sql::LAUNCHER_KEYS`]).
pub(crate) fn job_settings(table: &str, job_id: &JobId, checkpoint_interval: Duration) -> [String; 3] {
    let interval_ms = checkpoint_interval.as_millis();
    [
        format!("SET 'pipeline.name' = '{}'", job_name(table)),
        format!("SET 'execution.checkpointing.interval' = '{interval_ms}ms'"),
        format!("SET '$internal.pipeline.job-id' = '{job_id}'"),
    ]
}

/// Orders jobs newest first, then by table.
pub(crate) fn newest_first(jobs: &mut [JobSummary]) {
    jobs.sort_by(|a, b| {
        b.start_time_ms
            .cmp(&a.start_time_ms)
            .then_with(|| a.table.cmp(&b.table))
    });
}

impl Launcher for SqlGatewayLauncher {
    async fn start(&self, table: &str, launch_generation: u64, statements: &[String]) -> Result<Started, FlinkError> {
        crate::sql::check_job(statements).map_err(|source| FlinkError::Job {
            table: table.to_owned(),
            source,
        })?;
        self.guard.check().map_err(|source| FlinkError::NotLeader {
            endpoint: format!("start of {table}"),
            source,
        })?;
        let begin = Instant::now();
        let deadline = begin + self.settings.start_timeout;
        let job_id = job_id_for(table, launch_generation);
        let batch = self.batch(table, &job_id, statements);
        let mut delays = self.settings.poll.delays();
        let mut unlisted_duplicates = 0;
        loop {
            // Adopt before submitting: a previous attempt may have created the job although its answer was lost,
            // and a live job of the table, whatever its id, must never get a sibling.
            match self.existing(table, &job_id).await {
                Ok(Some(found)) if found.state.is_alive() => {
                    tracing::info!(table, job_id = %found.job_id, state = %found.state, "adopting existing job");
                    return self.await_running(table, found.job_id, true, begin, deadline).await;
                }
                Ok(Some(found)) => {
                    return Err(FlinkError::JobIdUsed {
                        table: table.to_owned(),
                        job_id: found.job_id,
                        state: found.state,
                    });
                }
                Ok(None) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match self.gateway.execute_in_own_session(&batch, remaining).await {
                        Ok(results) => {
                            let submitted = results.iter().rev().find_map(|r| r.job_id.clone());
                            if let Some(other) = submitted.as_ref().filter(|id| **id != job_id) {
                                // The gateway ignored the pinned id (a Flink without that option); follow its id.
                                tracing::warn!(table, pinned = %job_id, got = %other, "job id was not pinned");
                            }
                            let id = submitted.unwrap_or_else(|| job_id.clone());
                            tracing::info!(table, job_id = %id, "job submitted");
                            return self.await_running(table, id, false, begin, deadline).await;
                        }
                        Err(FlinkError::Statement {
                            fault: Fault::DuplicateJob,
                            ..
                        }) => {
                            // Flink remembers ended jobs longer than its job list shows them: a duplicate that
                            // the JobManager does not list, several times over, is an id that was used up.
                            if self.jobmanager.job(&job_id).await.ok().flatten().is_none() {
                                unlisted_duplicates += 1;
                                if unlisted_duplicates >= 3 {
                                    return Err(FlinkError::JobIdUsed {
                                        table: table.to_owned(),
                                        job_id,
                                        state: JobState::Other("no longer listed".to_owned()),
                                    });
                                }
                            }
                            tracing::info!(table, job_id = %job_id, "job was already submitted; adopting it");
                        }
                        Err(e @ FlinkError::Transport { unreachable: true, .. }) => {
                            // A gateway that takes no connection has no statement of ours in flight (a restart
                            // ends what it ran): the start fails now, GET /tables shows why, and the policy
                            // retries it with its backoff, instead of this loop trying twice a second until
                            // flink.start_timeout. A later start adopts whatever job an earlier attempt created.
                            return Err(e);
                        }
                        Err(e) if e.is_transient() || matches!(e, FlinkError::StatementTimeout { .. }) => {
                            tracing::warn!(table, error = %crate::logging::chain(&e), "start attempt failed; retrying");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(table, error = %crate::logging::chain(&e), "cannot list jobs; retrying")
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                let last = match self.jobmanager.job(&job_id).await {
                    Ok(detail) => detail.map(|d| d.state),
                    Err(_) => None,
                };
                return Err(self.start_timed_out(table, job_id, last, begin).await);
            }
            sleep_until_next(&mut delays, deadline).await;
        }
    }

    async fn stop(&self, table: &str, job_id: &JobId) -> Result<Stopped, FlinkError> {
        let Some(detail) = self.jobmanager.job(job_id).await? else {
            return Ok(Stopped::AlreadyStopped { state: None });
        };
        // The detail may be up to `web.refresh-interval` old (a job stopped a moment ago still shows RUNNING); the
        // dispatcher's own answer decides whether the job has ended.
        let state = match self.jobmanager.job_status(job_id).await {
            Ok(Some(state)) => state,
            Ok(None) | Err(_) => detail.state,
        };
        if state.is_terminal() {
            return Ok(Stopped::AlreadyStopped { state: Some(state) });
        }
        if detail.name != job_name(table) {
            return Err(FlinkError::ForeignJob {
                table: table.to_owned(),
                job_id: job_id.clone(),
                name: detail.name,
            });
        }
        let deadline = Instant::now() + self.settings.stop_timeout;
        let trigger = match self
            .jobmanager
            .stop_with_savepoint(job_id, &self.settings.savepoint_dir)
            .await
        {
            Ok(trigger) => trigger,
            // Not the leader: no cancel either.
            Err(e @ FlinkError::NotLeader { .. }) => return Err(e),
            Err(e) => {
                return self
                    .cancel_and_wait(
                        table,
                        job_id,
                        format!("stop-with-savepoint refused: {}", crate::logging::chain(&e)),
                    )
                    .await;
            }
        };
        tracing::info!(table, job_id = %job_id, trigger = %trigger, "stop-with-savepoint triggered");
        let mut delays = self.settings.poll.delays();
        loop {
            match self.jobmanager.savepoint_status(job_id, &trigger).await {
                Ok(SavepointStatus::Completed { location }) => {
                    self.wait_terminal(job_id, Instant::now() + self.settings.stop_timeout)
                        .await;
                    tracing::info!(table, job_id = %job_id, savepoint = %location, "job stopped with savepoint");
                    return Ok(Stopped::Savepoint { location });
                }
                Ok(SavepointStatus::Failed { root_cause }) => {
                    return self
                        .cancel_and_wait(table, job_id, format!("savepoint failed: {root_cause}"))
                        .await;
                }
                Ok(SavepointStatus::InProgress) => {}
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %crate::logging::chain(&e), "savepoint poll failed; retrying")
                }
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                let reason = format!(
                    "stop-with-savepoint not complete after {}",
                    humantime::format_duration(self.settings.stop_timeout)
                );
                return self.cancel_and_wait(table, job_id, reason).await;
            }
            sleep_until_next(&mut delays, deadline).await;
        }
    }

    async fn job_failure(&self, job_id: &JobId) -> Result<Option<super::JobFailure>, FlinkError> {
        self.jobmanager.latest_failure(job_id).await
    }

    async fn list_jobs(&self) -> Result<Vec<JobSummary>, FlinkError> {
        let mut jobs: Vec<JobSummary> = self
            .jobmanager
            .overview()
            .await?
            .into_iter()
            .filter_map(|j| {
                Some(JobSummary {
                    table: table_of_job(&j.name)?.into(),
                    job_id: j.job_id,
                    state: j.state,
                    start_time_ms: j.start_time_ms,
                    end_time_ms: j.end_time_ms,
                })
            })
            .collect();
        newest_first(&mut jobs);
        Ok(jobs)
    }
}
