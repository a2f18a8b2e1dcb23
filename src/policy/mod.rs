//! The trigger policy: a pure, deterministic state machine that decides when a table's Flink job starts and
//! stops.
//!
//! It does no I/O and reads no clock. The caller hands it the current time with every input
//! ([`Policy::handle`]) and calls it again, with [`Input::Tick`], at [`Policy::next_deadline`]. The same
//! settings, seed and sequence of `(time, input)` always give the same actions, which is what `replay` and the
//! property tests rely on.
//!
//! The rules, per table (settings from `[policy]`, overridable per table, and `[flink]`):
//! - Changes are records whose operation is in `operations`, or any lag above zero while no job runs. A table
//!   with changes and no job gets one start. A table never has two jobs starting, running or stopping: changes
//!   that arrive while its job starts or runs are that job's; changes that arrive while it stops start a new
//!   job once the stop completes.
//! - Two starts of one table are at least `cooldown` apart; a start inside the cooldown waits for its end.
//!   The cooldown is measured from the last start, so the very first change of a table starts it at once
//!   (the reference system recorded the change before asking whether there had been a recent one, so its
//!   rate limit blocked every start).
//! - A running job is stopped with a savepoint once `idle_timeout` has passed since both the job reached
//!   RUNNING and the table's last record, unless its lag is known to be above zero.
//! - A failed start or a FAILED job is retried while changes are pending, after a backoff that starts at
//!   `retry_initial_backoff`, doubles per consecutive failure up to `retry_max_backoff`, and is drawn
//!   uniformly from the upper quarter below that value by a seeded RNG (so tables that failed together do
//!   not retry together). `failing_after` consecutive failures mark the table `failing`; a RUNNING job
//!   clears them.
//! - Starts of all tables share a token bucket (`starts_per_minute`, `start_burst`) and `max_concurrent_jobs`
//!   (starting, running or stopping). A table whose start is due joins a FIFO queue; the head takes the next
//!   token and slot. Nothing is dropped.
//! - A paused table never starts; resuming it starts it if changes are pending.
//! - A job reported for a table the policy has no job for is adopted (this is how state survives a sidecar
//!   restart, generation included); a second job for a table that has one is stopped as a duplicate. A report
//!   naming the table's current job id is always about that job, never a duplicate. A job that ended without
//!   being the table's current job (e.g. one an earlier sidecar process stopped) is history: remembered, so late
//!   reports about it change nothing, but never taken for a start's job.
//!
//! What the run loop owes the policy: feed every input with the current time and arm one timer at
//! [`Policy::next_deadline`] (re-armed after every call); carry out `Start` and `Stop` actions and report back.
//! A start ends in a [`JobObservation`] (RUNNING, or a terminal state) or in [`Input::StartFailed`], which the
//! launcher also sends when a job is not RUNNING within `flink.start_timeout` (after cancelling it). A stop ends
//! in [`Input::Stopped`] or a terminal job state; the launcher cancels a stop slower than `flink.stop_timeout`.
//! A start's job is matched only by its generation: the launcher's answer (`JobState` or `StartFailed`) carries
//! it, and a listed job must carry it when its id is the one that start pinned (the launcher pins job ids from
//! table and generation). A report without a generation matches only by job id. While a start has no job id
//! yet, other live jobs of its table wait for its answer: the launcher adopts a live job of the table rather
//! than submit a second one, so such a job is either the start's own or, once the answer names another, a
//! duplicate.

mod throttle;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, FlinkConfig, PolicyConfig, TablePolicy};
use throttle::StartThrottle;
pub use types::{
    Action, Activity, Event, Input, JobObservation, JobStatus, Millis, NextAction, NextStep, StartReason, StopReason,
    TableState, TableStatus, UnknownJobStatus, WaitCause,
};

/// How many ended or duplicate job ids a table remembers, to ignore late reports about them.
const REMEMBERED_JOB_IDS: usize = 8;

/// Everything the policy is configured with.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The `[policy]` section (defaults, per-table overrides, include/exclude).
    pub policy: PolicyConfig,
    /// `flink.starts_per_minute`.
    pub starts_per_minute: u32,
    /// `flink.start_burst`.
    pub start_burst: u32,
    /// `flink.max_concurrent_jobs`.
    pub max_concurrent_jobs: u32,
    /// Seed of the retry-jitter RNG.
    pub seed: u64,
}

impl PolicySettings {
    /// Settings from the policy and flink sections.
    pub fn new(policy: PolicyConfig, flink: &FlinkConfig, seed: u64) -> Self {
        Self {
            policy,
            starts_per_minute: flink.starts_per_minute,
            start_burst: flink.start_burst,
            max_concurrent_jobs: flink.max_concurrent_jobs,
            seed,
        }
    }

    /// Settings from a whole configuration.
    pub fn from_config(config: &Config, seed: u64) -> Self {
        Self::new(config.policy.clone(), &config.flink, seed)
    }
}

/// Changes waiting for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    since: Millis,
    reason: StartReason,
}

/// The job a table has, as far as the policy knows. At most one per table, by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    None,
    Starting {
        generation: u64,
        since: Millis,
        job_id: Option<String>,
        state: Option<JobStatus>,
        /// What the start consumed; restored when the start fails.
        pending: Option<Pending>,
        /// An operator asked to stop it; done as soon as it is RUNNING.
        stop_requested: bool,
    },
    Running {
        generation: u64,
        since: Millis,
        job_id: String,
        state: JobStatus,
    },
    Stopping {
        generation: u64,
        since: Millis,
        job_id: String,
        /// Flink's last reported state of the job (RUNNING until it is gone, or RESTARTING, ...).
        state: JobStatus,
    },
}

impl Job {
    fn generation(&self) -> Option<u64> {
        match self {
            Job::None => None,
            Job::Starting { generation, .. } | Job::Running { generation, .. } | Job::Stopping { generation, .. } => {
                Some(*generation)
            }
        }
    }

    fn job_id(&self) -> Option<&str> {
        match self {
            Job::None => None,
            Job::Starting { job_id, .. } => job_id.as_deref(),
            Job::Running { job_id, .. } | Job::Stopping { job_id, .. } => Some(job_id),
        }
    }

    /// Changes arriving now are this job's to process (it starts or runs and will not be stopped on purpose).
    fn takes_changes(&self) -> bool {
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
enum Announced {
    Nothing,
    Deferred(Millis),
    Throttled(Millis),
    Queued,
}

#[derive(Debug, Clone)]
struct Table {
    rules: TablePolicy,
    paused: bool,
    generation: u64,
    job: Job,
    pending: Option<Pending>,
    last_record: Option<Millis>,
    last_change: Option<Millis>,
    newest_ts_ms: Option<i64>,
    lag: Option<u64>,
    lag_at: Option<Millis>,
    last_start: Option<Millis>,
    failures: u32,
    retry_at: Option<Millis>,
    queued: bool,
    announced: Announced,
    /// Jobs that ended: late reports about them change nothing.
    retired_jobs: VecDeque<String>,
    /// Second jobs of this table asked to stop and not gone yet; no start while there are any.
    duplicates: Vec<String>,
    /// Live jobs reported while the table's start had no job id yet: the start's own (it adopts a live job of
    /// its table), or duplicates once its answer names another job.
    unclaimed: Vec<String>,
}

impl Table {
    fn new(rules: TablePolicy) -> Self {
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
            retry_at: None,
            queued: false,
            announced: Announced::Nothing,
            retired_jobs: VecDeque::new(),
            duplicates: Vec::new(),
            unclaimed: Vec::new(),
        }
    }

    fn lag_above_zero(&self) -> bool {
        self.lag.is_some_and(|lag| lag > 0)
    }

    /// When a start may happen, as far as this table is concerned (cooldown and backoff).
    fn ready_at(&self) -> (Millis, WaitCause) {
        let cooldown_end = self.last_start.map_or(Millis(0), |t| t.after(self.rules.cooldown));
        match self.retry_at {
            Some(retry) if retry > cooldown_end => (retry, WaitCause::Backoff),
            _ => (cooldown_end, WaitCause::Cooldown),
        }
    }

    /// When the running job counts as idle, unless lag says otherwise.
    fn idle_at(&self) -> Option<Millis> {
        match &self.job {
            Job::Running { since, .. } => {
                let quiet_since = self.last_record.map_or(*since, |r| r.max(*since));
                Some(quiet_since.after(self.rules.idle_timeout))
            }
            _ => None,
        }
    }

    /// Waits for a start: no job (not even a duplicate on its way out), changes pending, not paused.
    fn wants_start(&self) -> bool {
        self.job == Job::None && self.duplicates.is_empty() && self.pending.is_some() && !self.paused
    }

    /// Jobs of this table Flink still has, as far as the policy knows.
    fn jobs_in_flight(&self) -> usize {
        usize::from(self.job != Job::None) + self.duplicates.len() + self.unclaimed.len()
    }

    fn retire(&mut self, job_id: String) {
        if !self.retired_jobs.contains(&job_id) {
            if self.retired_jobs.len() == REMEMBERED_JOB_IDS {
                self.retired_jobs.pop_front();
            }
            self.retired_jobs.push_back(job_id);
        }
    }
}

/// The trigger policy. See the module documentation for the rules.
#[derive(Debug)]
pub struct Policy {
    settings: PolicySettings,
    tables: BTreeMap<String, Table>,
    /// Tables whose start is due, in the order they became due.
    queue: VecDeque<String>,
    throttle: StartThrottle,
    /// When the queue's head gets its next token, while it waits for one.
    throttled_until: Option<Millis>,
    rng: ChaCha8Rng,
    now: Millis,
}

impl Policy {
    /// A policy that knows no table yet; its throttle bucket is full at time zero.
    pub fn new(settings: PolicySettings) -> Self {
        Self {
            throttle: StartThrottle::new(settings.starts_per_minute, settings.start_burst),
            rng: ChaCha8Rng::seed_from_u64(settings.seed),
            settings,
            tables: BTreeMap::new(),
            queue: VecDeque::new(),
            throttled_until: None,
            now: Millis(0),
        }
    }

    /// Takes one input at time `now` and returns what to do, in order. Time never goes backwards: a `now`
    /// earlier than a previous one is taken as that previous one (and one after [`Millis::MAX`] as that).
    pub fn handle(&mut self, now: Millis, input: Input) -> Vec<Action> {
        let now = now.min(Millis::MAX).max(self.now);
        self.now = now;
        let mut out = Vec::new();
        if input.table().is_none_or(|table| self.settings.policy.manages(table)) {
            self.apply(now, input, &mut out);
        }
        self.evaluate(now, &mut out);
        out
    }

    /// The earliest time the policy wants to be called again (with [`Input::Tick`] if nothing else
    /// happens), or `None` when only an input can change anything.
    pub fn next_deadline(&self) -> Option<Millis> {
        let per_table = self.tables.values().filter_map(|t| {
            if matches!(t.job, Job::Running { .. }) && !t.lag_above_zero() {
                t.idle_at()
            } else if t.wants_start() && !t.queued {
                Some(t.ready_at().0)
            } else {
                None
            }
        });
        per_table.chain(self.throttled_until).min()
    }

    /// The status of one table, if the policy has seen it.
    pub fn status(&self, table: &str) -> Option<TableStatus> {
        self.tables.get(table).map(|t| self.status_of(table, t))
    }

    /// The status `table` has before the policy sees it: idle, or paused when its configuration pauses it.
    pub fn unseen_status(&self, table: &str) -> TableStatus {
        self.status_of(table, &Table::new(self.settings.policy.for_table(table)))
    }

    /// The status of every table seen, by name.
    pub fn statuses(&self) -> Vec<TableStatus> {
        self.tables.iter().map(|(name, t)| self.status_of(name, t)).collect()
    }

    /// The settings the policy runs with.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    fn table_mut(&mut self, name: &str) -> &mut Table {
        let policy = &self.settings.policy;
        self.tables
            .entry(name.to_owned())
            .or_insert_with(|| Table::new(policy.for_table(name)))
    }

    fn apply(&mut self, now: Millis, input: Input, out: &mut Vec<Action>) {
        match input {
            Input::Activity(activity) => self.on_activity(now, activity),
            Input::Lag { table, lag } => {
                let t = self.table_mut(&table);
                t.lag = Some(lag);
                t.lag_at = Some(now);
            }
            Input::JobState(observation) => self.on_job_state(now, observation, out),
            Input::StartFailed {
                table,
                generation,
                error,
            } => self.on_start_failed(now, &table, generation, error, out),
            Input::Stopped { table, job_id } => self.on_stopped(&table, job_id),
            Input::Pause { table } => {
                self.table_mut(&table).paused = true;
                self.unqueue(&table);
            }
            Input::Resume { table } => self.table_mut(&table).paused = false,
            Input::Trigger { table } => {
                let t = self.table_mut(&table);
                t.retry_at = None;
                if !t.job.takes_changes() {
                    t.pending.get_or_insert(Pending {
                        since: now,
                        reason: StartReason::Trigger,
                    });
                }
            }
            Input::Stop { table } => self.on_operator_stop(now, &table, out),
            Input::Tick => {}
        }
    }

    fn on_activity(&mut self, now: Millis, activity: Activity) {
        let t = self.table_mut(&activity.table);
        let changes = if activity.ops.is_empty() {
            activity.records
        } else {
            let counted = activity.ops.iter().filter(|(op, _)| t.rules.operations.contains(op));
            counted.fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
        };
        if activity.records > 0 || changes > 0 {
            t.last_record = Some(now);
        }
        if let Some(ts) = activity.newest_ts_ms {
            t.newest_ts_ms = Some(t.newest_ts_ms.map_or(ts, |old| old.max(ts)));
        }
        if changes > 0 {
            t.last_change = Some(now);
            if !t.job.takes_changes() {
                t.pending.get_or_insert(Pending {
                    since: now,
                    reason: StartReason::Changes,
                });
            }
        }
    }

    fn on_job_state(&mut self, now: Millis, obs: JobObservation, out: &mut Vec<Action>) {
        let name = obs.table.clone();
        let t = self.table_mut(&name);
        if let Some(g) = obs.generation {
            t.generation = t.generation.max(g);
        }
        // The current job is the one with the reported id, whatever generation the report names (two starts may
        // end up with one job: a start adopts a live job of its table). A starting job whose id is not known yet
        // is matched only by its generation: the launcher's answer carries it, and the run loop adds it to a
        // listed job whose id is the one that start pinned. Anything else could be an older job of the table.
        let is_current = match t.job.job_id() {
            Some(id) => id == obs.job_id,
            None => t.job != Job::None && obs.generation.is_some() && obs.generation == t.job.generation(),
        };
        if is_current {
            // Once ours, never a duplicate nor history (e.g. a job stopped as a duplicate and then adopted).
            t.duplicates.retain(|d| *d != obs.job_id);
            t.retired_jobs.retain(|r| *r != obs.job_id);
        } else {
            self.on_other_job(now, obs, out);
            return;
        }
        let t = self.table_mut(&name);
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
        let failing_after = self.settings.policy.failing_after.max(1);
        let t = self.table_mut(&name);
        match &mut t.job {
            Job::Starting {
                generation,
                job_id,
                state,
                stop_requested,
                ..
            } => {
                if obs.state != JobStatus::Running {
                    *job_id = Some(obs.job_id);
                    *state = Some(obs.state);
                    return;
                }
                let (generation, stop_requested) = (*generation, *stop_requested);
                if t.failures >= failing_after {
                    out.push(Action::Event(Event::Recovered { table: name.clone() }));
                }
                t.failures = 0;
                if stop_requested {
                    t.job = Job::Stopping {
                        generation,
                        since: now,
                        job_id: obs.job_id.clone(),
                        state: obs.state,
                    };
                    out.push(Action::Stop {
                        table: name,
                        job_id: obs.job_id,
                        reason: StopReason::Operator,
                    });
                } else {
                    // The idle clock starts when the job runs, so a slow start still gets its full idle time.
                    t.job = Job::Running {
                        generation,
                        since: now,
                        job_id: obs.job_id,
                        state: obs.state,
                    };
                }
            }
            Job::Running { state, .. } | Job::Stopping { state, .. } => *state = obs.state,
            Job::None => {}
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
            Job::None => {
                let generation = obs.generation.unwrap_or(t.generation);
                t.job = if obs.state == JobStatus::Running {
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

    /// The table's current job is gone, by our stop or otherwise. A job that ends other than by a completed
    /// stop may have left records unprocessed, so its changes wait for a new start unless a fresh zero lag
    /// says otherwise; a FAILED one also counts as a failure (retry with backoff).
    fn end_job(&mut self, now: Millis, name: &str, final_state: JobStatus, out: &mut Vec<Action>) {
        let t = self.table_mut(name);
        let job = std::mem::replace(&mut t.job, Job::None);
        // Live jobs seen while the start had no id: the next listing adopts or stops them.
        t.unclaimed.clear();
        if let Some(id) = job.job_id() {
            t.retire(id.to_owned());
        }
        let (was_running, restored) = match &job {
            Job::None => return,
            // A stop that ends in FAILED did not complete its savepoint: treat it like any failed job.
            Job::Stopping { .. } if final_state != JobStatus::Failed => return,
            Job::Stopping { .. } | Job::Running { .. } => (true, None),
            Job::Starting { pending, .. } => (false, *pending),
        };
        out.push(Action::Event(Event::JobEnded {
            table: name.to_owned(),
            job_id: job.job_id().unwrap_or_default().to_owned(),
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
        if final_state == JobStatus::Failed {
            self.record_failure(now, name, out);
        }
    }

    /// Counts a failure and schedules the retry; returns when it is due.
    fn record_failure(&mut self, now: Millis, name: &str, out: &mut Vec<Action>) -> Millis {
        let policy = &self.settings.policy;
        let failing_after = policy.failing_after.max(1);
        let (initial, cap) = (policy.retry_initial_backoff, policy.retry_max_backoff);
        let failures = {
            let t = self.table_mut(name);
            t.failures = t.failures.saturating_add(1);
            t.failures
        };
        let nominal = backoff(initial, cap, failures);
        let nominal_ms = u64::try_from(nominal.as_millis()).unwrap_or(u64::MAX);
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

    fn on_start_failed(&mut self, now: Millis, name: &str, failed: Option<u64>, error: String, out: &mut Vec<Action>) {
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
        if let Some(id) = t.job.job_id() {
            let id = id.to_owned();
            t.retire(id);
        }
        t.job = Job::None;
        t.unclaimed.clear();
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

    fn on_stopped(&mut self, name: &str, job_id: Option<String>) {
        let t = self.table_mut(name);
        if let Some(id) = &job_id
            && let Some(pos) = t.duplicates.iter().position(|d| d == id)
        {
            t.duplicates.remove(pos);
            t.retire(id.clone());
            return;
        }
        if let Job::Stopping { job_id: current, .. } = &t.job
            && job_id.as_ref().is_none_or(|id| id == current)
        {
            let current = current.clone();
            t.retire(current);
            t.job = Job::None;
        }
    }

    fn on_operator_stop(&mut self, now: Millis, name: &str, out: &mut Vec<Action>) {
        let t = self.table_mut(name);
        match &mut t.job {
            Job::Running {
                generation,
                job_id,
                state,
                ..
            } => {
                let job_id = job_id.clone();
                t.job = Job::Stopping {
                    generation: *generation,
                    since: now,
                    job_id: job_id.clone(),
                    state: *state,
                };
                out.push(Action::Stop {
                    table: name.to_owned(),
                    job_id,
                    reason: StopReason::Operator,
                });
            }
            Job::Starting { stop_requested, .. } => *stop_requested = true,
            Job::Stopping { .. } | Job::None => {}
        }
    }

    fn unqueue(&mut self, name: &str) {
        if let Some(t) = self.tables.get_mut(name) {
            t.queued = false;
            t.announced = Announced::Nothing;
        }
        self.queue.retain(|queued| queued != name);
    }

    /// Applies everything time or the last input made due: lag-driven pending, idle stops, starts.
    fn evaluate(&mut self, now: Millis, out: &mut Vec<Action>) {
        let mut due: Vec<(Millis, String)> = Vec::new();
        for (name, t) in &mut self.tables {
            if t.job == Job::None && t.lag_above_zero() {
                t.pending.get_or_insert(Pending {
                    since: now,
                    reason: StartReason::Lag,
                });
            }
            if let (
                Job::Running {
                    generation,
                    job_id,
                    state,
                    ..
                },
                Some(idle_at),
            ) = (&t.job, t.idle_at())
                && now >= idle_at
                && !t.lag_above_zero()
            {
                let job_id = job_id.clone();
                t.job = Job::Stopping {
                    generation: *generation,
                    since: now,
                    job_id: job_id.clone(),
                    state: *state,
                };
                out.push(Action::Stop {
                    table: name.clone(),
                    job_id,
                    reason: StopReason::Idle,
                });
            }
            if t.wants_start() && !t.queued {
                let (ready_at, cause) = t.ready_at();
                if now >= ready_at {
                    t.queued = true;
                    t.announced = Announced::Nothing;
                    let since = t.pending.map_or(now, |p| p.since);
                    due.push((since, name.clone()));
                } else if t.announced != Announced::Deferred(ready_at) {
                    t.announced = Announced::Deferred(ready_at);
                    out.push(Action::Event(Event::Deferred {
                        table: name.clone(),
                        until: ready_at,
                        cause,
                    }));
                }
            }
        }
        // Tables that became due together queue by how long their changes have waited, then by name.
        due.sort();
        self.queue.extend(due.into_iter().map(|(_, name)| name));
        self.drain_queue(now, out);
    }

    fn drain_queue(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.throttled_until = None;
        let limit = self.settings.max_concurrent_jobs.max(1);
        let in_flight: usize = self.tables.values().map(Table::jobs_in_flight).sum();
        let mut in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX);
        while let Some(name) = self.queue.front().cloned() {
            let Some(t) = self.tables.get_mut(&name) else {
                self.queue.pop_front();
                continue;
            };
            if !t.wants_start() {
                t.queued = false;
                self.queue.pop_front();
                continue;
            }
            if in_flight >= limit {
                if t.announced != Announced::Queued {
                    t.announced = Announced::Queued;
                    out.push(Action::Event(Event::Queued {
                        table: name,
                        in_flight,
                        limit,
                    }));
                }
                return;
            }
            if let Err(until) = self.throttle.try_take(now) {
                self.throttled_until = Some(until);
                if t.announced != Announced::Throttled(until) {
                    t.announced = Announced::Throttled(until);
                    out.push(Action::Event(Event::Throttled { table: name, until }));
                }
                return;
            }
            self.queue.pop_front();
            in_flight += 1;
            let pending = t.pending.take();
            let reason = if t.failures > 0 {
                StartReason::Retry
            } else {
                pending.map_or(StartReason::Changes, |p| p.reason)
            };
            t.generation = t.generation.saturating_add(1);
            t.queued = false;
            t.announced = Announced::Nothing;
            t.retry_at = None;
            t.last_start = Some(now);
            t.job = Job::Starting {
                generation: t.generation,
                since: now,
                job_id: None,
                state: None,
                pending,
                stop_requested: false,
            };
            out.push(Action::Start {
                table: name,
                generation: t.generation,
                reason,
            });
        }
    }

    fn status_of(&self, name: &str, t: &Table) -> TableStatus {
        let failing = t.failures >= self.settings.policy.failing_after.max(1);
        let state = match &t.job {
            Job::Starting { .. } if failing => TableState::Failing,
            Job::Starting { .. } => TableState::Starting,
            Job::Running { .. } => TableState::Running,
            Job::Stopping { .. } => TableState::Stopping,
            Job::None if t.paused => TableState::Paused,
            Job::None if failing => TableState::Failing,
            Job::None if t.pending.is_some() => TableState::Pending,
            Job::None => TableState::Idle,
        };
        let next = match &t.job {
            Job::Running { .. } => Some(if t.lag_above_zero() {
                NextStep {
                    action: NextAction::Stop,
                    at: None,
                    waiting_for: Some(WaitCause::Lag),
                }
            } else {
                NextStep {
                    action: NextAction::Stop,
                    at: t.idle_at(),
                    waiting_for: None,
                }
            }),
            Job::Starting {
                stop_requested: true, ..
            } => Some(NextStep {
                action: NextAction::Stop,
                at: None,
                waiting_for: Some(WaitCause::NotRunning),
            }),
            Job::None if t.wants_start() => Some(self.next_start(name, t)),
            _ => None,
        };
        let (job_state, job_since) = match &t.job {
            Job::Starting { state, since, .. } => (*state, Some(*since)),
            Job::Running { state, since, .. } => (Some(*state), Some(*since)),
            Job::Stopping { state, since, .. } => (Some(*state), Some(*since)),
            Job::None => (None, None),
        };
        TableStatus {
            table: name.to_owned(),
            state,
            paused: t.paused,
            generation: t.generation,
            job_id: t.job.job_id().map(str::to_owned),
            job_state,
            job_since,
            last_record_at: t.last_record,
            last_change_at: t.last_change,
            newest_record_ts_ms: t.newest_ts_ms,
            lag: t.lag,
            pending_since: t.pending.map(|p| p.since),
            consecutive_failures: t.failures,
            last_start_at: t.last_start,
            duplicate_jobs: t.duplicates.clone(),
            next,
        }
    }

    fn next_start(&self, name: &str, t: &Table) -> NextStep {
        let start = |at, waiting_for| NextStep {
            action: NextAction::Start,
            at,
            waiting_for,
        };
        if !t.queued {
            let (at, cause) = t.ready_at();
            return start(Some(at), Some(cause));
        }
        if self.queue.front().map(String::as_str) != Some(name) {
            return start(None, Some(WaitCause::Queue));
        }
        match self.throttled_until {
            Some(until) => start(Some(until), Some(WaitCause::Throttle)),
            None => start(None, Some(WaitCause::ConcurrencyLimit)),
        }
    }
}

/// `initial * 2^(failures - 1)`, capped.
fn backoff(initial: Duration, cap: Duration, failures: u32) -> Duration {
    crate::backoff::Backoff::new(initial, cap).delay(failures)
}

#[cfg(test)]
mod tests;
