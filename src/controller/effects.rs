//! Carrying out the policy's actions: each launcher call runs as a task of its own, so a slow Flink never stalls
//! the loop, and its outcome comes back to the loop as an [`Outcome`], which becomes a policy input.

use std::collections::HashSet;

use super::RunLoop;
use crate::flink::{FlinkError, JobId, JobSummary, Launcher, Started, Stopped};
use crate::policy::{Input, JobObservation, JobState, Millis, StartReason, StopReason};

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
}

impl<L: Launcher + 'static> RunLoop<L> {
    pub(super) fn spawn_start(&mut self, table: String, generation: u64, launch_generation: u64, reason: StartReason) {
        let statements = match self.templates.render(&table, &self.credentials) {
            Ok(statements) => statements,
            Err(e) => {
                tracing::warn!(%table, error = %e, "cannot render the job's SQL");
                self.metrics.record_start(&table, false);
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
        self.tasks.spawn(async move {
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
        if !self.stopping.insert(job_id.clone()) {
            tracing::debug!(%table, %job_id, "stop already in flight");
            return;
        }
        let launcher = self.launcher.clone();
        self.tasks.spawn(async move {
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
        if self.listing {
            return;
        }
        self.listing = true;
        let requested_at = self.clock.now();
        let launcher = self.launcher.clone();
        self.tasks.spawn(async move {
            Outcome::Listing {
                requested_at,
                result: launcher.list_jobs().await,
            }
        });
    }

    pub(super) fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
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
                self.listing = false;
                match result {
                    Ok(jobs) => {
                        self.health.flink_ok();
                        self.on_listing(jobs, requested_at);
                    }
                    Err(e) => {
                        self.note_flink_error(&e);
                        tracing::warn!(error = %e, "cannot list Flink jobs; retrying at the next reconcile");
                    }
                }
            }
        }
    }

    fn on_started(&mut self, table: String, generation: u64, reason: StartReason, result: Result<Started, FlinkError>) {
        let input = match result {
            Ok(started) => {
                self.health.flink_ok();
                self.metrics.record_start(&table, true);
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
                self.metrics.record_start(&table, false);
                // Flink's answer may echo a statement, credentials included.
                let error = self.credentials.redact(&e.to_string());
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
        self.stopping.remove(&job_id);
        let input = match result {
            Ok(stopped) => {
                self.health.flink_ok();
                self.metrics.record_stop(&table, true);
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
                self.metrics.record_stop(&table, false);
                tracing::warn!(%table, %job_id, error = %e, "failed to stop job for: {table}");
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
                if !self.unmanaged_seen.contains(&job.job_id) {
                    tracing::warn!(table = %job.table, job_id = %job.job_id, state = %job.state,
                        "job of a table this sidecar does not manage (no SQL template, or left out by \
                        policy.include/exclude); never adopted or stopped");
                }
                job.job_id
            })
            .collect();
        self.metrics
            .unmanaged_jobs
            .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
        self.unmanaged_seen = live;
    }

    fn note_flink_error(&self, e: &FlinkError) {
        self.health.flink_failed(e);
    }
}
