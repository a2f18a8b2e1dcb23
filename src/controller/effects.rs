//! Carrying out the policy's actions: each launcher call runs as a task of its own, so a slow Flink never stalls
//! the loop, and its outcome comes back to the loop as an [`Outcome`], which becomes a policy input.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::RunLoop;
use crate::flink::{FlinkError, JobFailure, Launcher, Started, Stopped};
use crate::model::{JobId, JobState, JobSummary, Millis};
use crate::policy::{Input, JobObservation, StartReason, StopReason};
use crate::sql::{Credentials, Templates};

/// What a launcher task reports back.
#[derive(Debug)]
pub(super) enum Outcome {
    Start {
        table: String,
        generation: u64,
        reason: StartReason,
        result: Result<Started, FlinkError>,
    },
    Stop {
        table: String,
        job_id: JobId,
        reason: StopReason,
        result: Result<Stopped, FlinkError>,
    },
    Listing {
        requested_at: Millis,
        result: Result<Vec<JobSummary>, FlinkError>,
    },
    Failure {
        table: String,
        job_id: JobId,
        result: Result<Option<JobFailure>, FlinkError>,
    },
}

/// The launcher calls in flight.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// Each call, as a task.
    pub(super) tasks: JoinSet<Outcome>,
    /// Jobs with a stop in flight, so no job gets two concurrent stops.
    pub(super) stopping: BTreeSet<JobId>,
    /// A job listing is in flight: one at a time.
    pub(super) listing: bool,
    /// Jobs whose latest failure is being asked for, so no job has two such calls at once.
    pub(super) failures: BTreeSet<JobId>,
}

/// What a start submits: the SQL templates, read and checked at start-up (and swapped whole by a reload), and what
/// fills their credential placeholders.
#[derive(Debug)]
pub(super) struct JobSql {
    pub(super) templates: Arc<Templates>,
    /// The environment's values for a launcher that submits the statements, [`Credentials::redacted`] for a
    /// simulated one, which only logs them.
    pub(super) credentials: Credentials,
}

impl<L: Launcher + 'static> RunLoop<L> {
    pub(super) fn spawn_start(&mut self, table: String, generation: u64, launch_generation: u64, reason: StartReason) {
        let statements = match self.sql.templates.render(&table, &self.sql.credentials) {
            Ok(statements) => statements,
            Err(e) => {
                tracing::warn!(%table, error = %crate::logging::chain(&e), "cannot render the job's SQL");
                self.telemetry.metrics.job_start_failed(&table);
                // Fed back through the policy like any failed start, so it backs off, reports the table as
                // failing, and carries out whatever else that decides (e.g. the next queued start).
                self.queue_input(Input::StartFailed {
                    table,
                    generation: Some(generation),
                    error: e.to_string(),
                });
                return;
            }
        };
        let launcher = self.launcher.clone();
        tracing::debug!(%table, generation, launch_generation, reason = reason.as_str(), "starting job");
        self.in_flight.tasks.spawn(async move {
            let result = launcher.start(&table, launch_generation, &statements).await;
            Outcome::Start {
                table,
                generation,
                reason,
                result,
            }
        });
    }

    /// Asks the launcher to stop `job_id`, unless a stop of it is in flight already.
    pub(super) fn spawn_stop(&mut self, table: String, job_id: JobId, reason: StopReason) {
        if !self.in_flight.stopping.insert(job_id.clone()) {
            tracing::debug!(%table, %job_id, "stop already in flight");
            return;
        }
        let launcher = self.launcher.clone();
        self.in_flight.tasks.spawn(async move {
            let result = launcher.stop(&table, &job_id).await;
            Outcome::Stop {
                table,
                job_id,
                reason,
                result,
            }
        });
    }

    /// Asks the launcher for Flink's jobs, unless a listing is in flight already.
    pub(super) fn spawn_listing(&mut self) {
        if self.in_flight.listing {
            return;
        }
        self.in_flight.listing = true;
        let requested_at = self.clock.now();
        let launcher = self.launcher.clone();
        self.in_flight.tasks.spawn(async move {
            Outcome::Listing {
                requested_at,
                result: launcher.list_jobs().await,
            }
        });
    }

    /// Asks the launcher for the latest failure of `table`'s job `job_id`, unless that is in flight already.
    fn spawn_failure(&mut self, table: String, job_id: JobId) {
        if !self.in_flight.failures.insert(job_id.clone()) {
            return;
        }
        let launcher = self.launcher.clone();
        self.in_flight.tasks.spawn(async move {
            let result = launcher.job_failure(&job_id).await;
            Outcome::Failure { table, job_id, result }
        });
    }

    pub(super) fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failure { table, job_id, result } => {
                self.in_flight.failures.remove(&job_id);
                match result {
                    // Flink's clock may say anything: a time before the epoch is taken as the epoch.
                    Ok(Some(failure)) => self.feed(Input::JobFailure {
                        table,
                        job_id,
                        reason: failure.reason,
                        at: Millis(u64::try_from(failure.at_ms).unwrap_or(0)),
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(%table, %job_id, error = %crate::logging::chain(&e),
                            "cannot read the job's failure; asked again at the next listing");
                    }
                }
            }
            Outcome::Start {
                table,
                generation,
                reason,
                result,
            } => self.on_started(table, generation, reason, result),
            Outcome::Stop {
                table,
                job_id,
                reason,
                result,
            } => self.on_stopped(table, job_id, reason, result),
            Outcome::Listing { requested_at, result } => {
                self.in_flight.listing = false;
                match result {
                    Ok(jobs) => {
                        self.telemetry.health.flink_ok();
                        self.on_listing(jobs, requested_at);
                    }
                    Err(e) => {
                        self.note_flink_error(&e);
                        tracing::warn!(error = %e, "cannot list Flink jobs; retrying at the next reconcile");
                    }
                }
                // A take-over's listing is in: what the standby saw comes next.
                self.replay_remembered();
            }
        }
    }

    fn on_started(&mut self, table: String, generation: u64, reason: StartReason, result: Result<Started, FlinkError>) {
        let input = match result {
            Ok(started) => {
                self.telemetry.health.flink_ok();
                self.telemetry.metrics.job_started(&table);
                tracing::info!(
                    %table,
                    job_id = %started.job_id,
                    reason = reason.as_str(),
                    adopted = started.adopted,
                    "Successfully triggered job for: {table}"
                );
                Input::JobState(JobObservation {
                    table,
                    job_id: started.job_id,
                    generation: Some(generation),
                    state: JobState::Running,
                })
            }
            Err(e) => {
                self.note_flink_error(&e);
                self.telemetry.metrics.job_start_failed(&table);
                // Flink's answer may echo a statement, credentials included.
                let error = self.sql.credentials.redact(&crate::logging::chain(&e).to_string());
                tracing::warn!(%table, %error, "failed to start job for: {table}");
                Input::StartFailed {
                    table,
                    generation: Some(generation),
                    error,
                }
            }
        };
        self.feed(input);
    }

    fn on_stopped(&mut self, table: String, job_id: JobId, reason: StopReason, result: Result<Stopped, FlinkError>) {
        self.in_flight.stopping.remove(&job_id);
        let input = match result {
            Ok(stopped) => {
                self.telemetry.health.flink_ok();
                self.telemetry.metrics.job_stopped(&table);
                let how = match &stopped {
                    Stopped::Savepoint { location } => format!("savepoint {location}"),
                    Stopped::Cancelled { reason } => format!("cancelled: {reason}"),
                    Stopped::AlreadyStopped { .. } => "already stopped".to_owned(),
                };
                if reason == StopReason::Idle {
                    tracing::info!(%table, %job_id, stopped = %how, "Stopped idle job for: {table}");
                } else {
                    tracing::info!(%table, %job_id, reason = reason.as_str(), stopped = %how,
                        "Stopped job for: {table}");
                }
                Input::Stopped {
                    table,
                    job_id: Some(job_id),
                }
            }
            Err(e) => {
                // The job may still run: the policy asks for the stop again.
                self.note_flink_error(&e);
                self.telemetry.metrics.job_stop_failed(&table);
                tracing::warn!(%table, %job_id, error = %crate::logging::chain(&e), "failed to stop job for: {table}");
                Input::StopFailed {
                    table,
                    job_id,
                    transient: e.is_transient(),
                }
            }
        };
        self.feed(input);
    }

    /// Feeds the jobs of managed tables in a listing, asked for at `requested_at`, to the policy, which works out
    /// what they mean; the others are reported and go no further.
    fn on_listing(&mut self, jobs: Vec<JobSummary>, requested_at: Millis) {
        let (jobs, unmanaged): (Vec<JobSummary>, Vec<JobSummary>) =
            jobs.into_iter().partition(|job| self.managed.contains(&job.table));
        self.report_unmanaged(unmanaged);
        for job in &jobs {
            if let JobState::Other(state) = &job.state {
                tracing::warn!(table = %job.table, job_id = %job.job_id, %state,
                    "job in a state this version does not know; treated as alive");
            }
        }
        // A table's current job that restarts or failed: what failed is asked for, and becomes the table's
        // `last_error` (and, counted once per failure, its failures). Asked before the listing is fed, which ends
        // a FAILED job.
        for job in &jobs {
            let failed = matches!(job.state, JobState::Restarting | JobState::Failed);
            let current = || {
                self.policy
                    .status(&job.table)
                    .is_some_and(|s| s.job_id.as_ref() == Some(&job.job_id))
            };
            if failed && current() {
                self.spawn_failure(job.table.to_string(), job.job_id.clone());
            }
        }
        self.feed(Input::Listing { jobs, requested_at });
    }

    /// Reports the live jobs of tables the sidecar does not manage: each job once, when a listing first shows it,
    /// and their number as `cdc_unmanaged_jobs`. What is remembered is only the last listing's jobs, so however
    /// many come and go, the memory is that of one listing.
    fn report_unmanaged(&mut self, unknown: Vec<JobSummary>) {
        let live: HashSet<JobId> = unknown
            .into_iter()
            .filter(|job| job.state.is_alive())
            .map(|job| {
                if !self.telemetry.unmanaged_seen.contains(&job.job_id) {
                    tracing::warn!(table = %job.table, job_id = %job.job_id, state = %job.state,
                        "job of a table this sidecar does not manage (no SQL template, or left out by \
                        policy.include/exclude); never adopted or stopped");
                }
                job.job_id
            })
            .collect();
        self.telemetry.metrics.unmanaged_jobs(live.len());
        self.telemetry.unmanaged_seen = live;
    }

    fn note_flink_error(&self, e: &FlinkError) {
        self.telemetry.health.flink_failed(e);
    }
}
