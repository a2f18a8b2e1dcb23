//! The policy's vocabulary: time, inputs, actions, events and the status snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{JobId, JobState, JobSummary, Millis, Op, SchemaDrift};

/// Something the policy is told. Inputs for tables outside `policy.include`/`policy.exclude` are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// New records appeared on a table's topic.
    Activity(Activity),
    /// The consumer lag of the table's job group (records not yet committed by a job).
    Lag {
        /// The table.
        table: String,
        /// Records behind, summed over partitions.
        lag: u64,
    },
    /// Flink reported a job of the table in some state: the launcher's answer to a start, or one report of a
    /// trace.
    JobState(JobObservation),
    /// Flink's jobs of the tables the sidecar manages, as one listing shows them; the policy works out what each
    /// means ([`super::Policy`]'s rules: adopted, a duplicate, ended, history) and which of its own jobs are gone.
    /// A listing is all of Flink's jobs: one that could not be taken whole is not fed at all.
    Listing {
        /// Every listed job of a managed table, in any order.
        jobs: Vec<JobSummary>,
        /// When the listing was asked for: a job the policy held before then and the listing lacks is gone.
        requested_at: Millis,
    },
    /// Submitting the table's job failed (or it did not reach RUNNING within the launcher's start timeout and
    /// was cancelled).
    StartFailed {
        /// The table.
        table: String,
        /// The generation of the start that failed, when known. An answer for an earlier start (arriving after
        /// the policy moved on to a newer one) then changes nothing; without it, the starting job fails.
        generation: Option<u64>,
        /// Why, for the log.
        error: String,
    },
    /// A stop the policy asked for has completed: the job is gone (its savepoint taken).
    Stopped {
        /// The table.
        table: String,
        /// The stopped job; `None` means the table's current job.
        job_id: Option<JobId>,
    },
    /// A stop the policy asked for failed: the job may still run. A transient failure (Flink unreachable, a
    /// server error) is retried with backoff; any other is retried when a job listing shows the job alive.
    StopFailed {
        /// The table.
        table: String,
        /// The job that was to stop.
        job_id: JobId,
        /// Whether retrying the same call may succeed, as the launcher judged its failure (Flink unreachable or a
        /// server error).
        transient: bool,
    },
    /// An operator's command for the table.
    Operator {
        /// The table.
        table: String,
        /// What to do.
        command: ControlCommand,
    },
    /// The table's schema drift changed, as the controller judged it from sampled records against the columns
    /// its template declares: `Some` while the records and the declared columns differ, `None` once they agree
    /// (new records, or new templates). Under `policy.on_schema_drift = "pause"` a drifted table starts nothing.
    SchemaDrift {
        /// The table.
        table: String,
        /// The drift, while there is one.
        drift: Option<SchemaDrift>,
    },
    /// Flink's latest failure of one of the table's jobs, as the controller asked for it when a listing showed
    /// the job RESTARTING or FAILED. One failure (one `at`) counts once, however often it is reported.
    JobFailure {
        /// The table.
        table: String,
        /// The job that failed.
        job_id: JobId,
        /// One line: what failed and its deepest cause, credentials masked.
        reason: String,
        /// When Flink recorded the failure (Flink's clock, ms since the Unix epoch): what tells a new failure
        /// from one reported again.
        at: Millis,
    },
    /// Nothing happened; time passed. Fire at [`super::Policy::next_deadline`].
    Tick,
}

impl Input {
    /// The table the input is about, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            Input::Activity(a) => Some(&a.table),
            Input::JobState(j) => Some(&j.table),
            Input::Lag { table, .. }
            | Input::StartFailed { table, .. }
            | Input::Stopped { table, .. }
            | Input::StopFailed { table, .. }
            | Input::Operator { table, .. }
            | Input::SchemaDrift { table, .. }
            | Input::JobFailure { table, .. } => Some(table),
            Input::Listing { .. } | Input::Tick => None,
        }
    }
}

/// An operator's command for one table, from the HTTP API (`POST /tables/{table}/{command}`) or a replayed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlCommand {
    /// Treat the table as changed, skipping any retry backoff: start the job now if it is not running (the
    /// cooldown and the throttle still apply, and there is never a second job).
    Trigger,
    /// Never start this table until resumed (a running job runs on until idle or stopped).
    Pause,
    /// Lift a pause (including `paused = true` from the config); starts at once if changes wait.
    Resume,
    /// Stop the table's job now (with savepoint), whatever its lag. Later changes start it again.
    Stop,
}

/// New records of one table since the last report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// The table.
    pub table: String,
    /// How many records were appended (high-watermark advance).
    pub records: u64,
    /// The operations of the records, as far as the watcher could tell.
    pub ops: Operations,
    /// Source timestamp (`ts_ms`) of the newest decoded record, for the status page.
    pub newest_ts_ms: Option<i64>,
}

/// What the watcher knows of the operations behind an [`Activity`]: which of its records count as changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Operations {
    /// Not known: no record was decoded (the advance was counted from watermarks alone, or its sample failed), or
    /// a sampled record had no operation. Any record may then be a change, so every record counts: the operation
    /// filter never drops a change it could not see.
    #[default]
    Unknown,
    /// The operation of every sampled record, counted per operation: only the configured operations count.
    Sampled(BTreeMap<Op, u64>),
}

/// One report of one job's state: the launcher's answer to a start, or a line of a trace. It carries the
/// generation of the start it answers, by which the policy tells the table's current job from others, and no
/// times; the jobs of a listing come as [`JobSummary`]s in [`Input::Listing`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObservation {
    /// The table the job belongs to (the launcher derives it from the job name).
    pub table: String,
    /// Flink's job id.
    pub job_id: JobId,
    /// The generation the job was started with, when the launcher can tell (it pins job ids from table and
    /// generation). With it the policy tells the table's current job from stale or duplicate ones exactly.
    pub generation: Option<u64>,
    /// The job's state.
    pub state: JobState,
}

/// What the policy wants done, or wants known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Start the table's job. The launcher pins the Flink job id from table and generation, so a repeated
    /// submission of the same start is rejected by Flink instead of creating a second job.
    Start {
        /// The table.
        table: String,
        /// Increases with every start of the table (and never goes below an adopted job's).
        generation: u64,
        /// What the launcher pins the job id from, with the table ([`crate::model::job_id_for`]): `generation`
        /// below the process's start ([`crate::model::launch_generation`]), so no two processes pin one id.
        launch_generation: u64,
        /// Why.
        reason: StartReason,
    },
    /// Stop the job with a savepoint; report `Stopped` (or a terminal job state) when it is gone.
    Stop {
        /// The table.
        table: String,
        /// The Flink job to stop.
        job_id: JobId,
        /// Why.
        reason: StopReason,
    },
    /// Something to log and count; nothing to do.
    Event(Event),
}

/// Why a job is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartReason {
    /// New records with a configured operation.
    Changes,
    /// The job's consumer group is behind (lag > 0) and no job runs.
    Lag,
    /// A previous start failed or the job failed; this is the retry.
    Retry,
    /// An operator asked.
    Trigger,
}

impl StartReason {
    /// The reason as written in logs and replay output.
    pub fn as_str(self) -> &'static str {
        match self {
            StartReason::Changes => "changes",
            StartReason::Lag => "lag",
            StartReason::Retry => "retry",
            StartReason::Trigger => "trigger",
        }
    }
}

/// Why a job is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// No new records for `idle_timeout` and no lag.
    Idle,
    /// An operator asked.
    Operator,
    /// A second job for a table that already has one (left over from before a restart, or started by hand).
    Duplicate,
    /// The job kept failing (`failing_after` failures) and restarts: it holds its slots and fails again, so it is
    /// stopped (cancelled when, restarting, it cannot take a savepoint) and started anew after the backoff.
    Failing,
}

impl StopReason {
    /// The reason as written in logs and replay output.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Idle => "idle",
            StopReason::Operator => "operator",
            StopReason::Duplicate => "duplicate",
            StopReason::Failing => "failing",
        }
    }
}

/// Why a start waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WaitCause {
    /// The table started less than `cooldown` ago.
    Cooldown,
    /// Retry backoff after a failure.
    Backoff,
    /// The global start rate is used up.
    Throttle,
    /// `max_concurrent_jobs` are in flight.
    ConcurrencyLimit,
    /// Waiting behind earlier tables in the start queue.
    Queue,
    /// The job's lag is above zero, so it is not idle.
    Lag,
    /// The job has not reported RUNNING yet.
    NotRunning,
}

/// Things worth a log line or a metric. They never need a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A start is due but waits for the cooldown or a retry backoff to end.
    Deferred {
        /// The table.
        table: String,
        /// When it may start.
        until: Millis,
        /// Cooldown or backoff.
        cause: WaitCause,
    },
    /// The start queue's head waits for a throttle token.
    Throttled {
        /// The table.
        table: String,
        /// When the next token is due.
        until: Millis,
    },
    /// The start queue's head waits for a job slot.
    Queued {
        /// The table.
        table: String,
        /// Jobs in flight.
        in_flight: u32,
        /// `flink.max_concurrent_jobs`.
        limit: u32,
    },
    /// A start failed; it is retried at `retry_at` while changes are pending.
    StartFailed {
        /// The table.
        table: String,
        /// Consecutive failures so far.
        failures: u32,
        /// Earliest retry.
        retry_at: Millis,
        /// The launcher's message.
        error: String,
    },
    /// A stop failed; it is asked for again at `retry_at`, or, without one, when a listing shows the job alive.
    StopFailed {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
        /// Consecutive failed stops of the job.
        failures: u32,
        /// When the stop is retried, for a transient failure.
        retry_at: Option<Millis>,
    },
    /// A job ended without being asked to (FAILED, CANCELED or FINISHED by someone else).
    JobEnded {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
        /// Its final state.
        state: JobState,
    },
    /// A job of the table failed (Flink recorded a new failure of it): logged once per failure.
    JobFailed {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
        /// Consecutive failures of the table so far.
        failures: u32,
        /// What failed, one line, credentials masked.
        reason: String,
    },
    /// The table reached `failing_after` consecutive failures.
    Failing {
        /// The table.
        table: String,
        /// Consecutive failures.
        failures: u32,
    },
    /// A failing table's job reached RUNNING.
    Recovered {
        /// The table.
        table: String,
    },
    /// A job the policy held is missing from a listing asked for after it learned of the job: the job is gone (a
    /// session cluster restarted without HA, an expired job store) and taken as CANCELED.
    JobMissing {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
    },
    /// A listing shows a live job of a table that has a newer one: the policy keeps one job per table and stops
    /// every other as a duplicate.
    SecondLiveJob {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
    },
    /// A job the policy did not start (e.g. before a sidecar restart) is now the table's job.
    Adopted {
        /// The table.
        table: String,
        /// The job.
        job_id: JobId,
        /// Its generation (the next start uses a higher one).
        generation: u64,
    },
}

/// What the policy says about one table, for `GET /tables/{t}` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableStatus {
    /// The table.
    pub table: String,
    /// What the policy decided for the table: e.g. `running` means the table holds its one job and starts no
    /// other, whatever Flink says of that job at the moment (see `job_state`).
    pub state: TableState,
    /// Starts are suspended (config or operator).
    pub paused: bool,
    /// The generation of the latest start or adopted job.
    pub generation: u64,
    /// The current job, when known.
    pub job_id: Option<JobId>,
    /// Flink's state of the current job, as Flink last reported it (the start's answer or a job listing), kept
    /// apart from `state`: e.g. `RESTARTING` while `state` is `running`. `None` until Flink reported the job.
    pub job_state: Option<JobState>,
    /// Since when the current job is in its state: started (starting), RUNNING (running), asked to stop
    /// (stopping).
    pub job_since: Option<Millis>,
    /// When the last record was seen.
    pub last_record_at: Option<Millis>,
    /// When the last change (configured operation) was seen.
    pub last_change_at: Option<Millis>,
    /// Source timestamp of the newest decoded record.
    pub newest_record_ts_ms: Option<i64>,
    /// Last reported consumer lag.
    pub lag: Option<u64>,
    /// Since when changes wait for a job.
    pub pending_since: Option<Millis>,
    /// Consecutive failed starts or failed jobs.
    pub consecutive_failures: u32,
    /// Why the last start or job failed (one line, secrets redacted): a failed start's until a job of the table
    /// runs again; a job's failure (Flink's exception) until a job of the table runs until it is stopped.
    pub last_error: Option<String>,
    /// When the last start was issued.
    pub last_start_at: Option<Millis>,
    /// Second jobs of the table being stopped; the table does not start while there are any.
    pub duplicate_jobs: Vec<JobId>,
    /// What the policy will do next, if anything.
    pub next: Option<NextStep>,
    /// How the table's records differ from its template's source columns; `None` while they agree.
    pub schema_drift: Option<SchemaDrift>,
    /// Starts wait for the schema drift to be resolved (`policy.on_schema_drift = "pause"`).
    pub drift_paused: bool,
}

/// Summary state of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TableState {
    /// No job, nothing pending.
    Idle,
    /// Changes wait for a start (cooldown, throttle, queue).
    Pending,
    /// A start was issued; the job is not RUNNING yet.
    Starting,
    /// The job runs.
    Running,
    /// A stop was issued; the job is not gone yet.
    Stopping,
    /// `failing_after` or more consecutive failures and no running job.
    Failing,
    /// Paused and no job.
    Paused,
}

/// The next thing the policy plans for a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// `start` or `stop`.
    pub action: NextAction,
    /// When, if it is known; `None` when it waits for something other than time.
    pub at: Option<Millis>,
    /// What it waits for, if anything.
    pub waiting_for: Option<WaitCause>,
}

/// The kind of a planned step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NextAction {
    /// A start.
    Start,
    /// An idle stop.
    Stop,
}
