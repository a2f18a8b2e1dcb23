//! What the policy remembers per table: its one job, pending changes, failures and failed stops.

use std::collections::{BTreeMap, VecDeque};

use super::{PINNED_STARTS, REMEMBERED_JOB_IDS, StartReason, StopReason, WaitCause};
use crate::config::TablePolicy;
use crate::model::{JobId, JobState, Millis, OnSchemaDrift, SchemaDrift};

/// A stop of one job that failed, and when it is asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StopRetry {
    /// Why the job is stopped.
    pub(super) reason: StopReason,
    /// Consecutive failed stops of the job.
    pub(super) failures: u32,
    /// When the stop is asked for again.
    pub(super) next: RetryWhen,
}

/// When a failed stop is asked for again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetryWhen {
    /// At this time (a transient failure, after backoff).
    At(Millis),
    /// When a listing shows the job alive (a failure that the same call would repeat).
    Listed,
    /// Asked for again; its answer is awaited.
    InFlight,
}

/// Changes waiting for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub(super) since: Millis,
    pub(super) reason: StartReason,
}

/// The job a table has, as far as the policy knows. At most one per table, by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
    None,
    Starting {
        generation: u64,
        since: Millis,
        job_id: Option<JobId>,
        state: Option<JobState>,
        /// What the start consumed; restored when the start fails.
        pending: Option<Pending>,
        /// An operator asked to stop it; done as soon as it is RUNNING.
        stop_requested: bool,
    },
    Running {
        generation: u64,
        since: Millis,
        job_id: JobId,
        state: JobState,
    },
    Stopping {
        generation: u64,
        since: Millis,
        job_id: JobId,
        /// Flink's last reported state of the job (RUNNING until it is gone, or RESTARTING, ...).
        state: JobState,
        /// Why it is stopped, for the stop's retries.
        reason: StopReason,
    },
}

impl Job {
    pub(super) fn generation(&self) -> Option<u64> {
        match self {
            Job::None => None,
            Job::Starting { generation, .. } | Job::Running { generation, .. } | Job::Stopping { generation, .. } => {
                Some(*generation)
            }
        }
    }

    /// Since when the job is in its state: started (starting), RUNNING (running), asked to stop (stopping).
    pub(super) fn since(&self) -> Option<Millis> {
        match self {
            Job::None => None,
            Job::Starting { since, .. } | Job::Running { since, .. } | Job::Stopping { since, .. } => Some(*since),
        }
    }

    pub(super) fn job_id(&self) -> Option<&JobId> {
        match self {
            Job::None => None,
            Job::Starting { job_id, .. } => job_id.as_ref(),
            Job::Running { job_id, .. } | Job::Stopping { job_id, .. } => Some(job_id),
        }
    }

    /// Turns a running job into a stopping one, asked at `now` for `reason`; the id of the job to stop, or `None`
    /// when the job does not run.
    pub(super) fn stop(&mut self, now: Millis, reason: StopReason) -> Option<JobId> {
        let (generation, job_id, state) = match self {
            Job::Running {
                generation,
                job_id,
                state,
                ..
            } => (*generation, job_id.clone(), state.clone()),
            Job::Starting { .. } | Job::Stopping { .. } | Job::None => return None,
        };
        *self = Job::Stopping {
            generation,
            since: now,
            job_id: job_id.clone(),
            state,
            reason,
        };
        Some(job_id)
    }

    /// Changes arriving now are this job's to process (it starts or runs and will not be stopped on purpose).
    pub(super) fn takes_changes(&self) -> bool {
        matches!(
            self,
            Job::Running { .. }
                | Job::Starting {
                    stop_requested: false,
                    ..
                }
        )
    }
}

/// The wait last announced for a table, so each wait is reported once, not at every tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Announced {
    Nothing,
    Deferred(Millis),
    Throttled(Millis),
    Queued,
}

#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) rules: TablePolicy,
    pub(super) paused: bool,
    pub(super) generation: u64,
    pub(super) job: Job,
    pub(super) pending: Option<Pending>,
    pub(super) last_record: Option<Millis>,
    pub(super) last_change: Option<Millis>,
    pub(super) newest_ts_ms: Option<i64>,
    pub(super) lag: Option<u64>,
    pub(super) lag_at: Option<Millis>,
    pub(super) last_start: Option<Millis>,
    pub(super) failures: u32,
    /// Why the last start or job failed; cleared when a job runs (see `job_failed`).
    pub(super) last_error: Option<String>,
    /// The failures counted include a failure of a running job (Flink's exception): a job reaching RUNNING then
    /// says nothing (a job refused by Kafka runs before its source fails), so they are cleared only when a job
    /// of the table runs until a stop completes.
    pub(super) job_failed: bool,
    /// The last job failure counted, by job and Flink's time of it: the same failure reported again is not new.
    pub(super) last_failure: Option<(JobId, Millis)>,
    pub(super) retry_at: Option<Millis>,
    pub(super) queued: bool,
    pub(super) announced: Announced,
    /// Jobs that ended: late reports about them change nothing.
    pub(super) retired_jobs: VecDeque<JobId>,
    /// Second jobs of this table asked to stop and not gone yet; no start while there are any.
    pub(super) duplicates: Vec<JobId>,
    /// Live jobs reported while the table's start had no job id yet: the start's own (it adopts a live job of
    /// its table), or duplicates once its answer names another job.
    pub(super) unclaimed: Vec<JobId>,
    /// Jobs of this table (current or duplicate) whose stop failed, and when it is asked for again.
    pub(super) stop_retries: BTreeMap<JobId, StopRetry>,
    /// The job ids this process's latest starts pinned, with their generations, oldest first.
    pub(super) pinned: VecDeque<(u64, JobId)>,
    /// The table's schema drift, while there is one.
    pub(super) schema_drift: Option<SchemaDrift>,
}

impl Table {
    pub(super) fn new(rules: TablePolicy) -> Self {
        Self {
            paused: rules.paused,
            rules,
            generation: 0,
            job: Job::None,
            pending: None,
            last_record: None,
            last_change: None,
            newest_ts_ms: None,
            lag: None,
            lag_at: None,
            last_start: None,
            failures: 0,
            last_error: None,
            job_failed: false,
            last_failure: None,
            retry_at: None,
            queued: false,
            announced: Announced::Nothing,
            retired_jobs: VecDeque::new(),
            duplicates: Vec::new(),
            unclaimed: Vec::new(),
            stop_retries: BTreeMap::new(),
            pinned: VecDeque::new(),
            schema_drift: None,
        }
    }

    /// Remembers that the start of `generation` pinned `job_id`.
    pub(super) fn pin(&mut self, generation: u64, job_id: JobId) {
        if self.pinned.len() == PINNED_STARTS {
            self.pinned.pop_front();
        }
        self.pinned.push_back((generation, job_id));
    }

    /// The generation of the start that pinned `job_id`, if one of the latest did.
    pub(super) fn pinned_generation(&self, job_id: &JobId) -> Option<u64> {
        self.pinned
            .iter()
            .find(|(_, id)| id == job_id)
            .map(|(generation, _)| *generation)
    }

    pub(super) fn lag_above_zero(&self) -> bool {
        self.lag.is_some_and(|lag| lag > 0)
    }

    /// When a start may happen, as far as this table is concerned (cooldown and backoff).
    pub(super) fn ready_at(&self) -> (Millis, WaitCause) {
        let cooldown_end = self.last_start.map_or(Millis(0), |t| t.after(self.rules.cooldown));
        match self.retry_at {
            Some(retry) if retry > cooldown_end => (retry, WaitCause::Backoff),
            _ => (cooldown_end, WaitCause::Cooldown),
        }
    }

    /// When the running job counts as idle, unless lag says otherwise.
    pub(super) fn idle_at(&self) -> Option<Millis> {
        match &self.job {
            Job::Running { since, .. } => {
                let quiet_since = self.last_record.map_or(*since, |r| r.max(*since));
                Some(quiet_since.after(self.rules.idle_timeout))
            }
            _ => None,
        }
    }

    /// Waits for a start: no job (not even a duplicate on its way out), changes pending, not paused, and no
    /// schema drift that holds starts.
    pub(super) fn wants_start(&self) -> bool {
        self.job == Job::None
            && self.duplicates.is_empty()
            && self.pending.is_some()
            && !self.paused
            && !self.drift_holds_starts()
    }

    /// Whether schema drift holds the table's starts: it has drift and `on_schema_drift` is `pause`. A running
    /// job is left alone: it stops when idle, with its savepoint, as any job does.
    pub(super) fn drift_holds_starts(&self) -> bool {
        self.schema_drift.is_some() && self.rules.on_schema_drift == OnSchemaDrift::Pause
    }

    /// Jobs of this table Flink still has, as far as the policy knows.
    pub(super) fn jobs_in_flight(&self) -> usize {
        usize::from(self.job != Job::None) + self.duplicates.len() + self.unclaimed.len()
    }

    pub(super) fn retire(&mut self, job_id: JobId) {
        self.stop_retries.remove(&job_id);
        if !self.retired_jobs.contains(&job_id) {
            if self.retired_jobs.len() == REMEMBERED_JOB_IDS {
                self.retired_jobs.pop_front();
            }
            self.retired_jobs.push_back(job_id);
        }
    }
}
