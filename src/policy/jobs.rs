//! What the policy does with Flink's answers: job states, failed starts, completed and failed stops.

use rand::RngExt;

use super::table::{Announced, Job, Pending, RetryWhen, StopRetry};
use super::{Action, Event, JobObservation, Policy, STOP_RETRY, StartReason, StopReason};
use crate::model::{JobId, JobState, Millis};

impl Policy {
    pub(super) fn on_job_state(&mut self, now: Millis, obs: JobObservation, out: &mut Vec<Action>) {
        let name = obs.table.clone();
        let t = self.table_mut(&name);
        // A report without a generation (a listing's) about a job one of this process's starts pinned is about
        // that start's job; any other (an earlier process's, one started by hand) keeps none, so it is never
        // taken for a start whose job has not been seen yet.
        let obs = JobObservation {
            generation: obs.generation.or_else(|| t.pinned_generation(&obs.job_id)),
            ..obs
        };
        if let Some(g) = obs.generation {
            t.generation = t.generation.max(g);
        }
        // The current job is the one with the reported id, whatever generation the report names (two starts may
        // end up with one job: a start adopts a live job of its table). A starting job whose id is not known yet
        // is matched only by its generation: the launcher's answer carries it, and the run loop adds it to a
        // listed job whose id is the one that start pinned. Anything else could be an older job of the table.
        let is_current = match t.job.job_id() {
            Some(id) => *id == obs.job_id,
            None => t.job != Job::None && obs.generation.is_some() && obs.generation == t.job.generation(),
        };
        if !is_current {
            self.on_other_job(now, obs, out);
            return;
        }
        // Once ours, never a duplicate nor history (e.g. a job stopped as a duplicate and then adopted).
        t.duplicates.retain(|d| *d != obs.job_id);
        t.retired_jobs.retain(|r| *r != obs.job_id);
        if let Job::Starting { job_id: id @ None, .. } = &mut t.job {
            *id = Some(obs.job_id.clone());
            // The start has its job: the other live jobs seen meanwhile are second jobs of the table.
            for other in std::mem::take(&mut t.unclaimed) {
                if other != obs.job_id {
                    t.duplicates.push(other.clone());
                    out.push(Action::Stop {
                        table: name.clone(),
                        job_id: other,
                        reason: StopReason::Duplicate,
                    });
                }
            }
        }
        if obs.state.is_terminal() {
            self.end_job(now, &name, obs.state, out);
            return;
        }
        let t = self.table_mut(&name);
        if matches!(t.job, Job::Starting { .. }) && obs.state == JobState::Running {
            self.start_runs(now, &name, obs.job_id, out);
            return;
        }
        match &mut t.job {
            Job::Starting { job_id, state, .. } => {
                *job_id = Some(obs.job_id);
                *state = Some(obs.state);
            }
            Job::Running { state, .. } => *state = obs.state,
            Job::Stopping { state, .. } => {
                *state = obs.state;
                Self::retry_stop_when_listed(&name, t, &obs.job_id, out);
            }
            Job::None => {}
        }
    }

    /// The table's starting job reached RUNNING: it runs, or stops at once if an operator asked meanwhile.
    fn start_runs(&mut self, now: Millis, name: &str, job_id: JobId, out: &mut Vec<Action>) {
        let failing_after = self.settings.policy.failing_after.max(1);
        let t = self.table_mut(name);
        let Job::Starting {
            generation,
            stop_requested,
            ..
        } = t.job
        else {
            return;
        };
        // A job that failed after it ran (e.g. Kafka refused its login) would run again now and fail the same
        // way: its failures stand until a job runs until a stop completes.
        if !t.job_failed {
            if t.failures >= failing_after {
                out.push(Action::Event(Event::Recovered { table: name.to_owned() }));
            }
            t.failures = 0;
            t.last_error = None;
        }
        // The idle clock starts when the job runs, so a slow start still gets its full idle time.
        t.job = Job::Running {
            generation,
            since: now,
            job_id,
            state: JobState::Running,
        };
        if stop_requested {
            self.stop_job(now, name, StopReason::Operator, out);
        }
    }

    /// Stops the table's running job, if it has one.
    pub(super) fn stop_job(&mut self, now: Millis, name: &str, reason: StopReason, out: &mut Vec<Action>) {
        if let Some(job_id) = self.table_mut(name).job.stop(now, reason) {
            out.push(Action::Stop {
                table: name.to_owned(),
                job_id,
                reason,
            });
        }
    }

    /// A report about a job that is not the table's current one.
    fn on_other_job(&mut self, now: Millis, obs: JobObservation, out: &mut Vec<Action>) {
        let name = obs.table.clone();
        let t = self.table_mut(&name);
        if t.retired_jobs.contains(&obs.job_id) {
            return;
        }
        if let Some(pos) = t.duplicates.iter().position(|d| *d == obs.job_id) {
            if obs.state.is_terminal() {
                t.duplicates.remove(pos);
                t.retire(obs.job_id);
            } else {
                Self::retry_stop_when_listed(&name, t, &obs.job_id, out);
            }
            return;
        }
        if obs.state.is_terminal() {
            t.unclaimed.retain(|u| *u != obs.job_id);
            // A job that ended without being the table's job (one an earlier sidecar process ran, or an earlier
            // start's): history, not news. Remembered so that a listing taken before it ended cannot bring it
            // back.
            t.retire(obs.job_id);
            return;
        }
        match &t.job {
            Job::None => self.adopt(now, obs, out),
            // A live job of the table while its start has no job id yet: the launcher adopts a live job of the
            // table instead of submitting, so this may well be the start's own. The start's answer tells: if it
            // names another job, this one is stopped as a duplicate then. It counts against
            // `max_concurrent_jobs` meanwhile, since Flink runs it either way.
            Job::Starting { job_id: None, .. } => {
                if !t.unclaimed.contains(&obs.job_id) {
                    t.unclaimed.push(obs.job_id);
                }
            }
            _ => {
                t.duplicates.push(obs.job_id.clone());
                out.push(Action::Stop {
                    table: name,
                    job_id: obs.job_id,
                    reason: StopReason::Duplicate,
                });
            }
        }
    }

    /// A live job of a table without one becomes the table's job.
    fn adopt(&mut self, now: Millis, obs: JobObservation, out: &mut Vec<Action>) {
        let name = obs.table;
        let t = self.table_mut(&name);
        let generation = obs.generation.unwrap_or(t.generation);
        t.job = if obs.state == JobState::Running {
            Job::Running {
                generation,
                since: now,
                job_id: obs.job_id.clone(),
                state: obs.state,
            }
        } else {
            Job::Starting {
                generation,
                since: now,
                job_id: Some(obs.job_id.clone()),
                state: Some(obs.state),
                pending: t.pending,
                stop_requested: false,
            }
        };
        // The adopted job consumes from the table's group, so whatever waited is now its to process.
        t.pending = None;
        t.announced = Announced::Nothing;
        out.push(Action::Event(Event::Adopted {
            table: name.clone(),
            job_id: obs.job_id,
            generation,
        }));
        self.unqueue(&name);
    }

    /// The table's current job is gone, by our stop or otherwise. A job that ends other than by a completed
    /// stop may have left records unprocessed, so its changes wait for a new start unless a fresh zero lag
    /// says otherwise; a FAILED one also counts as a failure (retry with backoff).
    fn end_job(&mut self, now: Millis, name: &str, final_state: JobState, out: &mut Vec<Action>) {
        let t = self.table_mut(name);
        let job = std::mem::replace(&mut t.job, Job::None);
        // Live jobs seen while the start had no id: the next listing adopts or stops them.
        t.unclaimed.clear();
        let Some(job_id) = job.job_id().cloned() else {
            return;
        };
        t.retire(job_id.clone());
        let (was_running, restored) = match &job {
            Job::None => return,
            // A stop that ends in FAILED did not complete its savepoint: treat it like any failed job.
            Job::Stopping { .. } if final_state != JobState::Failed => return,
            Job::Stopping { .. } | Job::Running { .. } => (true, None),
            Job::Starting { pending, .. } => (false, *pending),
        };
        let failed = final_state == JobState::Failed;
        out.push(Action::Event(Event::JobEnded {
            table: name.to_owned(),
            job_id,
            state: final_state,
        }));
        // A job that ended unasked may have left records unprocessed; only a zero lag measured after the
        // last change says it did not.
        let caught_up = t.lag == Some(0) && t.lag_at >= t.last_change;
        let unprocessed = !was_running || !caught_up;
        if unprocessed {
            t.pending.get_or_insert(restored.unwrap_or(Pending {
                since: now,
                reason: StartReason::Changes,
            }));
        }
        if failed {
            self.record_failure(now, name, out);
        }
    }

    /// Counts a failure and schedules the retry; returns when it is due.
    fn record_failure(&mut self, now: Millis, name: &str, out: &mut Vec<Action>) -> Millis {
        let policy = &self.settings.policy;
        let failing_after = policy.failing_after.max(1);
        let backoff = crate::backoff::Backoff::new(policy.retry_initial_backoff, policy.retry_max_backoff);
        let failures = {
            let t = self.table_mut(name);
            t.failures = t.failures.saturating_add(1);
            t.failures
        };
        let nominal_ms = u64::try_from(backoff.delay(failures).as_millis()).unwrap_or(u64::MAX);
        let jitter = self.rng.random_range(0..=nominal_ms / 4);
        let retry_at = Millis(now.0.saturating_add(nominal_ms - jitter));
        let t = self.table_mut(name);
        t.retry_at = Some(retry_at);
        if failures == failing_after {
            out.push(Action::Event(Event::Failing {
                table: name.to_owned(),
                failures,
            }));
        }
        retry_at
    }

    pub(super) fn on_start_failed(
        &mut self,
        now: Millis,
        name: &str,
        failed: Option<u64>,
        error: String,
        out: &mut Vec<Action>,
    ) {
        let t = self.table_mut(name);
        let Job::Starting {
            pending, generation, ..
        } = &t.job
        else {
            return;
        };
        if failed.is_some_and(|g| g != *generation) {
            return;
        }
        let restored = pending.unwrap_or(Pending {
            since: now,
            reason: StartReason::Changes,
        });
        if let Some(id) = t.job.job_id().cloned() {
            t.retire(id);
        }
        t.job = Job::None;
        t.unclaimed.clear();
        t.last_error = Some(error.clone());
        t.pending = Some(
            t.pending
                .map_or(restored, |p| if p.since < restored.since { p } else { restored }),
        );
        let retry_at = self.record_failure(now, name, out);
        let failures = self.table_mut(name).failures;
        out.push(Action::Event(Event::StartFailed {
            table: name.to_owned(),
            failures,
            retry_at,
            error,
        }));
    }

    pub(super) fn on_stopped(&mut self, name: &str, job_id: Option<JobId>, out: &mut Vec<Action>) {
        let t = self.table_mut(name);
        if let Some(id) = &job_id
            && let Some(pos) = t.duplicates.iter().position(|d| d == id)
        {
            t.duplicates.remove(pos);
            t.retire(id.clone());
            return;
        }
        if let Job::Stopping {
            job_id: current,
            reason,
            ..
        } = &t.job
            && job_id.as_ref().is_none_or(|id| id == current)
        {
            let (current, reason) = (current.clone(), *reason);
            t.retire(current);
            t.job = Job::None;
            if reason != StopReason::Failing && t.job_failed {
                self.clear_job_failures(name, out);
            }
        }
    }

    /// A job of the table ran until its stop completed: the job failures counted before are over.
    fn clear_job_failures(&mut self, name: &str, out: &mut Vec<Action>) {
        let failing_after = self.settings.policy.failing_after.max(1);
        let t = self.table_mut(name);
        if t.failures >= failing_after {
            out.push(Action::Event(Event::Recovered { table: name.to_owned() }));
        }
        t.failures = 0;
        t.last_error = None;
        t.job_failed = false;
        t.retry_at = None;
    }

    /// Flink's latest failure of one of the table's jobs. The table's current job's counts once per distinct
    /// time; a job still RESTARTING when the table reaches `failing_after` is stopped. The failure of the job
    /// that just ended (a FAILED one, counted when it ended) only gives `last_error` its reason.
    pub(super) fn on_job_failure(
        &mut self,
        now: Millis,
        name: &str,
        job_id: JobId,
        reason: String,
        at: Millis,
        out: &mut Vec<Action>,
    ) {
        let failing_after = self.settings.policy.failing_after.max(1);
        let t = self.table_mut(name);
        if t.last_failure
            .as_ref()
            .is_some_and(|(seen, seen_at)| *seen == job_id && at <= *seen_at)
        {
            return;
        }
        let current = t.job.job_id() == Some(&job_id);
        let just_ended = t.job == Job::None && t.retired_jobs.back() == Some(&job_id);
        if !current && !just_ended {
            return;
        }
        t.last_failure = Some((job_id.clone(), at));
        t.last_error = Some(reason.clone());
        t.job_failed = true;
        if current {
            self.record_failure(now, name, out);
        }
        let t = self.table_mut(name);
        let failures = t.failures;
        out.push(Action::Event(Event::JobFailed {
            table: name.to_owned(),
            job_id,
            failures,
            reason,
        }));
        let restarting = matches!(&t.job, Job::Running { state, .. } if *state != JobState::Running);
        if current && restarting && failures >= failing_after {
            // Whatever the job did not process waits for the next start, after the backoff.
            t.pending.get_or_insert(Pending {
                since: now,
                reason: StartReason::Retry,
            });
            self.stop_job(now, name, StopReason::Failing, out);
        }
    }

    pub(super) fn on_operator_stop(&mut self, now: Millis, name: &str, out: &mut Vec<Action>) {
        let t = self.table_mut(name);
        match &mut t.job {
            Job::Running { .. } => self.stop_job(now, name, StopReason::Operator, out),
            Job::Starting { stop_requested, .. } => *stop_requested = true,
            Job::Stopping { .. } | Job::None => {}
        }
    }

    /// A stop failed: a transient failure is asked for again after [`STOP_RETRY`]'s backoff, any other when a
    /// listing shows the job alive. A job that is neither the table's stopping job nor a duplicate on its way
    /// out ended meanwhile, and needs nothing.
    pub(super) fn on_stop_failed(
        &mut self,
        now: Millis,
        name: &str,
        job_id: JobId,
        transient: bool,
        out: &mut Vec<Action>,
    ) {
        let t = self.table_mut(name);
        let reason = match &t.job {
            Job::Stopping {
                job_id: current,
                reason,
                ..
            } if *current == job_id => *reason,
            _ if t.duplicates.contains(&job_id) => StopReason::Duplicate,
            _ => return,
        };
        let failures = t.stop_retries.get(&job_id).map_or(0, |r| r.failures).saturating_add(1);
        let retry_at = transient.then(|| now.after(STOP_RETRY.delay(failures)));
        let next = retry_at.map_or(RetryWhen::Listed, RetryWhen::At);
        t.stop_retries
            .insert(job_id.clone(), StopRetry { reason, failures, next });
        out.push(Action::Event(Event::StopFailed {
            table: name.to_owned(),
            job_id,
            failures,
            retry_at,
        }));
    }

    /// Asks again for a stop that failed in a way the same call would repeat, now that a listing shows the job
    /// alive.
    fn retry_stop_when_listed(name: &str, t: &mut super::table::Table, job_id: &JobId, out: &mut Vec<Action>) {
        if let Some(retry) = t.stop_retries.get_mut(job_id)
            && retry.next == RetryWhen::Listed
        {
            retry.next = RetryWhen::InFlight;
            out.push(Action::Stop {
                table: name.to_owned(),
                job_id: job_id.clone(),
                reason: retry.reason,
            });
        }
    }
}
