//! Carrying out the policy's actions: each launcher call runs as a task of its own, so a slow Flink never stalls
//! the loop, and its outcome comes back to the loop as an [`Outcome`], which becomes a policy input.

use std::collections::{HashMap, HashSet};

use super::RunLoop;
use crate::flink::{
    FlinkError, JobId, JobSummary, Launcher, Reconciliation, Started, Stopped, job_id_for, launch_generation, reconcile,
};
use crate::policy::{Input, JobObservation, JobState, Millis, StartReason, StopReason};

/// How many of a table's latest starts the loop remembers the pinned job ids of. A listed job with an older id
/// is reported without a generation, like any job this process did not start.
const PINNED_PER_TABLE: usize = 8;

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
    Reconcile(Result<Reconciliation, FlinkError>),
}

impl<L: Launcher + 'static> RunLoop<L> {
    pub(super) fn spawn_start(&mut self, table: String, generation: u64, reason: StartReason) {
        let statements = match self.templates.render(&table, &self.credentials) {
            Ok(statements) => statements,
            Err(e) => {
                tracing::warn!(%table, error = %crate::logging::chain(&e), "cannot render the job's SQL");
                self.metrics.job_start_failed(&table);
                // Fed back through the policy like any failed start, so it backs off, reports the table as
                // failing, and carries out whatever else that decides (e.g. the next queued start).
                self.queue_input(Input::StartFailed {
                    table,
                    generation: Some(generation),
                    error: crate::logging::chain(&e).to_string(),
                });
                return;
            }
        };
        let launcher = self.launcher.clone();
        let launch_generation = launch_generation(self.clock.origin_unix_ms, generation);
        let starts = self.pinned.entry(table.clone()).or_default();
        if starts.len() == PINNED_PER_TABLE {
            starts.pop_front();
        }
        starts.push_back((generation, job_id_for(&table, launch_generation)));
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

    pub(super) fn spawn_reconcile(&mut self) {
        if self.reconciling {
            return;
        }
        self.reconciling = true;
        self.reconcile_requested_at = self.clock.now();
        let launcher = self.launcher.clone();
        let managed = self.managed.clone();
        self.tasks.spawn(async move {
            Outcome::Reconcile(reconcile(launcher.as_ref(), |table| managed.contains(table)).await)
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
            Outcome::Reconcile(result) => {
                self.reconciling = false;
                match result {
                    Ok(found) => {
                        self.health.flink_ok();
                        self.on_reconciled(found, self.reconcile_requested_at);
                    }
                    Err(e) => {
                        self.note_flink_error(&e);
                        tracing::warn!(error = %crate::logging::chain(&e), "cannot list Flink jobs; retrying at the next reconcile");
                    }
                }
            }
        }
    }

    fn on_started(&mut self, table: String, generation: u64, reason: StartReason, result: Result<Started, FlinkError>) {
        let input = match result {
            Ok(started) => {
                self.health.flink_ok();
                self.metrics.job_started(&table);
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
                self.metrics.job_start_failed(&table);
                // Flink's answer may echo a statement, credentials included.
                let error = self.credentials.redact(&crate::logging::chain(&e).to_string());
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
                self.metrics.job_stopped(&table);
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
                self.metrics.job_stop_failed(&table);
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

    /// Feeds a job listing, requested at `requested_at`, to the policy. First the end of each table's current
    /// job, if the listing shows it ended or no longer shows it at all, so that a live job of the table listed
    /// next is adopted rather than taken for a second one; then each table's live jobs and latest ended one.
    fn on_reconciled(&mut self, mut found: Reconciliation, requested_at: Millis) {
        self.report_unmanaged(std::mem::take(&mut found.unknown));
        let listed: HashSet<(&str, &JobId)> = found
            .running
            .values()
            .chain(&found.duplicates)
            .chain(found.ended.values())
            .chain(&found.older_ended)
            .map(|job| (job.table.as_str(), &job.job_id))
            .collect();
        // A job the policy learned of before the listing was asked for existed in Flink then; absent from the
        // listing, it is gone (a session cluster restarted without HA, an expired job store). Left alone, the
        // policy would hold on to it for ever.
        let mut current: HashMap<String, JobId> = HashMap::new();
        let mut inputs = Vec::new();
        for status in self.policy.statuses() {
            let Some(job_id) = status.job_id else { continue };
            let known_before = status.job_since.is_some_and(|since| since < requested_at);
            if !known_before || listed.contains(&(status.table.as_str(), &job_id)) {
                current.insert(status.table, job_id);
                continue;
            }
            tracing::warn!(table = %status.table, %job_id, "job missing from Flink's job list; taken as ended");
            inputs.push(Input::JobState(JobObservation {
                table: status.table,
                job_id,
                generation: None,
                state: JobState::Canceled,
            }));
        }
        let current_ended = found
            .older_ended
            .into_iter()
            .filter(|job| current.get(&job.table) == Some(&job.job_id));
        let jobs = current_ended
            .chain(found.running.into_values())
            .chain(found.duplicates)
            .chain(found.ended.into_values());
        for job in jobs {
            if let JobState::Other(state) = &job.state {
                tracing::warn!(table = %job.table, job_id = %job.job_id, %state,
                    "job in a state this version does not know; treated as alive");
            }
            // A job whose id one of this process's starts pinned is that start's job; any other (an earlier
            // process's, one started by hand) is reported without a generation, so the policy never takes it for
            // a start whose job it has not seen yet.
            let generation = self
                .pinned
                .get(&job.table)
                .and_then(|starts| starts.iter().find(|(_, id)| *id == job.job_id))
                .map(|(generation, _)| *generation);
            inputs.push(Input::JobState(JobObservation {
                table: job.table,
                job_id: job.job_id,
                generation,
                state: job.state,
            }));
        }
        self.feed_all(inputs);
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
        self.metrics.unmanaged_jobs(live.len());
        self.unmanaged_seen = live;
    }

    fn note_flink_error(&self, e: &FlinkError) {
        self.health.flink_failed(e);
    }
}
