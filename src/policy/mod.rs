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
//!   clears them, unless they include a job failure.
//! - A job failure ([`Input::JobFailure`]: Flink's exception of a RESTARTING or FAILED job, e.g. Kafka refusing
//!   the job's login) sets the table's `last_error` and counts as one failure per distinct Flink time. A job that
//!   reached RUNNING says nothing about such a failure (its source fails after it runs), so failures that
//!   include one are cleared only when a job of the table runs until a stop completes. A job still RESTARTING
//!   when its table reaches `failing_after` is stopped (a restart loop holds slots and fixes nothing); its
//!   changes stay pending and the next start, after the backoff, renders its SQL anew.
//! - Starts of all tables share a token bucket (`starts_per_minute`, `start_burst`) and `max_concurrent_jobs`
//!   (starting, running or stopping). A table whose start is due joins a FIFO queue; the head takes the next
//!   token and slot. Nothing is dropped.
//! - A paused table never starts; resuming it starts it if changes are pending.
//! - Schema drift ([`Input::SchemaDrift`]) is shown in the table's status; under `on_schema_drift = "pause"` a
//!   drifted table starts nothing until the drift is resolved (then it starts if changes are pending), and a
//!   running job stops when idle as always. Under `alert` it changes no decision.
//! - A job reported for a table the policy has no job for is adopted (this is how state survives a sidecar
//!   restart, generation included); a second live job of a table that has one is stopped as a duplicate, and the
//!   table starts nothing until it is gone. A report naming the table's current job id is always about that job,
//!   never a duplicate. A job that ended without being the table's current job (e.g. one an earlier sidecar
//!   process stopped) is history: remembered, so late reports about it change nothing, but never taken for a
//!   start's job.
//! - A job listing ([`Input::Listing`], `listing.rs`) is read as a whole: a job the policy held before the
//!   listing was asked for and the listing lacks is gone (taken as CANCELED); of each table's listed jobs, the
//!   newest live one is reported first and the others after it (so they are the duplicates), and a table without
//!   a live job reports its latest ended one; older ended jobs are history, unless one is the table's current job.
//!
//! What the run loop owes the policy: feed every input with the current time and arm one timer at
//! [`Policy::next_deadline`] (re-armed after every call); carry out `Start` and `Stop` actions and report back;
//! list Flink's jobs now and then and feed each listing whole. A start ends in a [`JobObservation`] (RUNNING, or
//! a terminal state) or in [`Input::StartFailed`], which the launcher also sends when a job is not RUNNING within
//! `flink.start_timeout` (after cancelling it). A stop ends in [`Input::Stopped`] or a terminal job state; the
//! launcher cancels a stop slower than `flink.stop_timeout`. A start's job is matched only by its generation: the
//! launcher's answer (`JobState` or `StartFailed`) carries it, and the policy knows the job id each of its starts
//! pins (from the table and the start's `launch_generation`, [`crate::model::job_id_for`]), so a report without a
//! generation naming one of a table's last few pinned ids is that start's. Any other report without a generation
//! matches only by job id. While a start has no job id yet, other live jobs of its table wait for its answer: the
//! launcher adopts a live job of the table rather than submit a second one, so such a job is either the start's
//! own or, once the answer names another, a duplicate.
//!
//! The folder owns every decision about starting and stopping jobs and what Flink's and the watcher's reports
//! mean. It may import only the shared vocabulary ([`crate::model`]: job ids and states, a listed job, operations,
//! the job-id pinning rule), its settings from `config`, and `backoff`; nothing that does I/O, and nothing from
//! `flink`, `controller`, `kafka` or `http`.

mod jobs;
mod listing;
mod schedule;
mod table;
mod throttle;
mod types;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::backoff::Backoff;
use crate::config::{Config, FlinkConfig, PolicyConfig};
use crate::model::Millis;
use table::{Job, Pending, RetryWhen, Table};
use throttle::StartThrottle;
pub use types::{
    Action, Activity, ControlCommand, Event, Input, JobObservation, NextAction, NextStep, Operations, StartReason,
    StopReason, TableState, TableStatus, WaitCause,
};

/// How many ended or duplicate job ids a table remembers, to ignore late reports about them.
const REMEMBERED_JOB_IDS: usize = 8;

/// How many of a table's latest starts the policy remembers the pinned job ids of. A report of a job with an
/// older id and no generation is taken like one of a job this process did not start.
const PINNED_STARTS: usize = 8;

/// Delays before a stop that failed transiently is asked for again: 1 s, doubling per failure up to a minute.
pub const STOP_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

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
    /// The sidecar process's start, milliseconds since the Unix epoch: the high bits of every launch generation
    /// ([`crate::model::launch_generation`]), so that job ids pinned by one process's starts never repeat another's. Zero
    /// unless set ([`PolicySettings::with_process_start`]), as in replays and tests.
    pub process_start_ms: u64,
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
            process_start_ms: 0,
        }
    }

    /// These settings for the process started at `process_start_ms` (milliseconds since the Unix epoch).
    pub fn with_process_start(mut self, process_start_ms: u64) -> Self {
        self.process_start_ms = process_start_ms;
        self
    }

    /// Settings from a whole configuration.
    pub fn from_config(config: &Config, seed: u64) -> Self {
        Self::new(config.policy.clone(), &config.flink, seed)
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
        let stop_retries = self.tables.values().flat_map(|t| {
            t.stop_retries.values().filter_map(|retry| match retry.next {
                RetryWhen::At(at) => Some(at),
                RetryWhen::Listed | RetryWhen::InFlight => None,
            })
        });
        per_table.chain(stop_retries).chain(self.throttled_until).min()
    }

    /// Whether a failed stop waits for its retry time: the stop is asked for again at [`Policy::next_deadline`].
    pub fn retrying_stops(&self) -> bool {
        let waiting = |retry: &table::StopRetry| matches!(retry.next, RetryWhen::At(_));
        self.tables.values().any(|t| t.stop_retries.values().any(waiting))
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

    /// Takes the `[policy]` settings of a reload at time `now` and returns what to do (an unpaused table with
    /// changes pending may start). What a table's decisions read from its rules ([`crate::config::TablePolicy`]:
    /// `cooldown`, `idle_timeout`, `operations`) and the retry settings apply from the next decision on: each is
    /// read when a decision is taken, from the last start, the last record or the failure count, so no timer
    /// needs moving. `paused` is a table's starting state, which operators change at run time: only a table whose
    /// configured value changed takes the new one (as a pause or resume would), so a reload leaves an operator's
    /// pause alone unless the file changed that table's `paused`. `include` and `exclude` are kept as they were:
    /// which tables are managed is fixed for the process (the caller reports their change as needing a restart).
    pub fn reconfigure(&mut self, now: Millis, policy: PolicyConfig) -> Vec<Action> {
        let now = now.min(Millis::MAX).max(self.now);
        self.now = now;
        let kept = PolicyConfig {
            include: self.settings.policy.include.clone(),
            exclude: self.settings.policy.exclude.clone(),
            ..policy
        };
        let old = std::mem::replace(&mut self.settings.policy, kept);
        let mut paused = Vec::new();
        for (name, t) in &mut self.tables {
            let rules = self.settings.policy.for_table(name);
            if rules.paused != old.for_table(name).paused {
                t.paused = rules.paused;
                if rules.paused {
                    paused.push(name.clone());
                }
            }
            t.rules = rules;
        }
        for name in paused {
            self.unqueue(&name);
        }
        let mut out = Vec::new();
        self.evaluate(now, &mut out);
        out
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
            Input::Listing { jobs, requested_at } => self.on_listing(now, jobs, requested_at, out),
            Input::StartFailed {
                table,
                generation,
                error,
            } => self.on_start_failed(now, &table, generation, error, out),
            Input::Stopped { table, job_id } => self.on_stopped(&table, job_id, out),
            Input::StopFailed {
                table,
                job_id,
                transient,
            } => self.on_stop_failed(now, &table, job_id, transient, out),
            Input::Operator { table, command } => self.on_command(now, &table, command, out),
            Input::SchemaDrift { table, drift } => {
                let t = self.table_mut(&table);
                t.schema_drift = drift;
                if t.drift_holds_starts() {
                    // As a pause: a queued start leaves the queue (its changes stay pending for later).
                    self.unqueue(&table);
                }
            }
            Input::JobFailure {
                table,
                job_id,
                reason,
                at,
            } => self.on_job_failure(now, &table, job_id, reason, at, out),
            Input::Tick => {}
        }
    }

    fn on_command(&mut self, now: Millis, table: &str, command: ControlCommand, out: &mut Vec<Action>) {
        match command {
            ControlCommand::Pause => {
                self.table_mut(table).paused = true;
                self.unqueue(table);
            }
            ControlCommand::Resume => self.table_mut(table).paused = false,
            ControlCommand::Trigger => {
                let t = self.table_mut(table);
                t.retry_at = None;
                if !t.job.takes_changes() {
                    t.pending.get_or_insert(Pending {
                        since: now,
                        reason: StartReason::Trigger,
                    });
                }
            }
            ControlCommand::Stop => self.on_operator_stop(now, table, out),
        }
    }

    fn on_activity(&mut self, now: Millis, activity: Activity) {
        let t = self.table_mut(&activity.table);
        let changes = match &activity.ops {
            Operations::Unknown => activity.records,
            Operations::Sampled(ops) => {
                let counted = ops.iter().filter(|(op, _)| t.rules.operations.contains(op));
                counted.fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
            }
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
}

#[cfg(test)]
mod tests;
