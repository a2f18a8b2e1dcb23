//! The `run` loop: watcher observations and operator commands go into the policy; its actions go to the
//! launcher; outcomes come back as policy inputs. One task owns the policy, so decisions are serial and the
//! policy needs no locks; launcher calls run as separate tasks so a slow Flink never stalls watching.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LauncherKind, is_table_name};
use crate::decoder::Op;
use crate::flink::{AnyLauncher, FlinkError, JobId, Launcher, Reconciliation, Started, Stopped, job_id_for, reconcile};
use crate::http::metrics::{Metrics, TableJobStateLabels, TableLabels};
use crate::http::{ControlCommand, ControlError, ControlRequest, Health, ServerState, TablesSnapshot};
use crate::kafka::routing::Routing;
use crate::kafka::watcher::{TableActivity, WatchError, WatchEvent, Watcher};
use crate::policy::{
    Action, Activity, Event, Input, JobObservation, JobStatus, Millis, Policy, PolicySettings, StartReason, StopReason,
    TableState,
};
use crate::sql::{Credentials, Templates};

/// How many bits of a launch generation the policy's per-table counter occupies; the rest is the process's
/// start time, so job ids pinned from (table, generation) never repeat across sidecar restarts (Flink refuses
/// to reuse the id of a finished job).
const GENERATION_BITS: u32 = 20;
/// First retry delay of a stop whose Flink call failed (doubling, capped at [`STOP_RETRY_MAX`]).
const STOP_RETRY_INITIAL: Duration = Duration::from_secs(1);
const STOP_RETRY_MAX: Duration = Duration::from_secs(60);
/// How many of a table's latest starts the loop remembers the pinned job ids of. A listed job with an older id
/// is reported without a generation, like any job this process did not start.
const PINNED_PER_TABLE: usize = 8;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The HTTP port could not be bound.
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Listen {
        /// The configured `server.listen`.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The launcher could not be built from the configuration.
    #[error("cannot set up the Flink launcher: {0}")]
    Launcher(#[from] FlinkError),
    /// The watcher could not be built from the configuration.
    #[error("cannot set up the Kafka watcher: {0}")]
    Watcher(#[from] WatchError),
    /// The launcher submits the statements, and a credential they need is missing or unusable.
    #[error("{0}")]
    Credentials(#[source] crate::sql::SqlError),
}

/// Milliseconds since the Unix epoch, read from a monotonic clock anchored once at start-up, so the policy
/// sees real timestamps that never go backwards.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Instant,
    origin_unix_ms: u64,
}

impl Clock {
    fn new() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            origin: Instant::now(),
            origin_unix_ms: unix_ms,
        }
    }

    fn now(&self) -> Millis {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Millis(self.origin_unix_ms.saturating_add(elapsed))
    }

    fn instant_of(&self, at: Millis) -> Instant {
        self.origin + Duration::from_millis(at.0.saturating_sub(self.origin_unix_ms))
    }

    /// The generation handed to the launcher for the policy's per-table `generation`.
    fn launch_generation(&self, generation: u64) -> u64 {
        (self.origin_unix_ms << GENERATION_BITS) | (generation & ((1 << GENERATION_BITS) - 1))
    }
}

/// What a launcher task reports back.
#[derive(Debug)]
enum Outcome {
    Start {
        table: String,
        generation: u64,
        reason: StartReason,
        result: Result<Started, FlinkError>,
    },
    Stop {
        table: String,
        job_id: String,
        reason: StopReason,
        result: Result<Stopped, FlinkError>,
    },
    Reconcile(Result<Reconciliation, FlinkError>),
}

/// The channels and handles the loop works with.
pub struct RunLoop {
    config: Config,
    clock: Clock,
    policy: Policy,
    launcher: Arc<AnyLauncher>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    tables: watch::Sender<TablesSnapshot>,
    tasks: JoinSet<Outcome>,
    /// Tables with a stop in flight, so reconciliation does not issue a second one.
    stopping: BTreeSet<String>,
    /// Tables with a SQL template: the only ones the policy hears of from the watcher, and the ones an operator
    /// may trigger before any change was seen.
    templated: BTreeSet<String>,
    /// Tables without a template whose changes were reported once (the watcher bounds how many tables exist).
    untemplated_warned: BTreeSet<String>,
    /// The operations the last sample of each table found, for activity counted from watermarks alone.
    last_ops: HashMap<String, String>,
    /// The job ids this process pinned for its latest starts, per table: (policy generation, job id).
    pinned: HashMap<String, VecDeque<(u64, JobId)>>,
    /// What the templates' credential placeholders are filled with: the environment's values for a launcher
    /// that submits them, [`Credentials::redacted`] for the dry run, which only logs its statements.
    credentials: Credentials,
    reconciling: bool,
    /// When the listing in flight was asked for.
    reconcile_requested_at: Millis,
    /// The `cdc_job_state` series set for each table, to remove it when the state changes.
    job_state_series: HashMap<String, TableJobStateLabels>,
}

impl std::fmt::Debug for RunLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLoop")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl RunLoop {
    /// Builds the loop; `launcher` is shared with whoever else needs it (the `jobs` listing, tests).
    pub fn new(config: Config, launcher: Arc<AnyLauncher>, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        let clock = Clock::new();
        let policy = Policy::new(PolicySettings::from_config(&config, clock.origin_unix_ms));
        let (tables, _) = watch::channel(TablesSnapshot::default());
        let templated: BTreeSet<String> = launcher.templates().tables().into_iter().collect();
        let credentials = match launcher.as_ref() {
            AnyLauncher::DryRun(_) => Credentials::redacted(),
            _ => Credentials::from_env(),
        };
        let managed = templated.iter().filter(|t| config.policy.manages(t)).cloned();
        metrics
            .savings
            .start(move || clock.now(), managed, &config.flink.job_link_base());
        RunLoop {
            templated,
            untemplated_warned: BTreeSet::new(),
            last_ops: HashMap::new(),
            credentials,
            config,
            clock,
            policy,
            launcher,
            metrics,
            health,
            tables,
            tasks: JoinSet::new(),
            stopping: BTreeSet::new(),
            pinned: HashMap::new(),
            reconciling: false,
            reconcile_requested_at: Millis(0),
            job_state_series: HashMap::new(),
        }
    }

    /// The status of every table an operator may address before this loop has seen it (it has a SQL template and
    /// is managed), for the HTTP server.
    pub fn unseen_statuses(&self) -> BTreeMap<String, crate::policy::TableStatus> {
        let policy = &self.policy.settings().policy;
        self.templated
            .iter()
            .filter(|table| policy.manages(table))
            .map(|table| (table.clone(), self.policy.unseen_status(table)))
            .collect()
    }

    /// A receiver of the table snapshots this loop publishes, for the HTTP server.
    pub fn subscribe(&self) -> watch::Receiver<TablesSnapshot> {
        self.tables.subscribe()
    }

    /// Runs until `shutdown`, then lets in-flight launcher calls finish within `flink.shutdown_timeout`.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<WatchEvent>,
        mut control: mpsc::Receiver<ControlRequest>,
        shutdown: CancellationToken,
    ) {
        let mut reconcile_every = tokio::time::interval(self.config.flink.reconcile_interval);
        reconcile_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.policy.next_deadline().map(|at| self.clock.instant_of(at));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(outcome) => self.on_outcome(outcome),
                    Err(e) => tracing::error!(error = %e, "a launcher task ended abnormally"),
                },
                Some(request) = control.recv() => self.on_control(request),
                Some(observation) = observations.recv() => self.on_observation(observation),
                _ = reconcile_every.tick() => self.spawn_reconcile(),
                () = sleep_until(deadline) => self.step(Input::Tick),
            }
        }
        self.shut_down().await;
    }

    fn on_observation(&mut self, observation: WatchEvent) {
        match observation {
            WatchEvent::Activity(seen) => {
                let TableActivity {
                    table,
                    new_records,
                    ops,
                    unknown_ops,
                    newest_ts_ms,
                    ..
                } = seen;
                self.metrics
                    .new_records
                    .get_or_create(&TableLabels { table: table.clone() })
                    .inc_by(new_records);
                if !self.templated.contains(&table) {
                    // Nothing could start it: it must not queue, spend a start token or show up as failing.
                    if self.untemplated_warned.insert(table.clone()) {
                        tracing::warn!(%table, "changes on a table without a SQL template are ignored: it never \
                            starts (add tables/<table>.sql under flink.sql_dir)");
                    }
                    return;
                }
                let ops_seen = self.operations_seen(&table, &ops, unknown_ops);
                // Records whose operation is unknown may be any change: let them all count, so the operation
                // filter never drops a change it could not see.
                let ops = if unknown_ops > 0 { BTreeMap::new() } else { ops };
                let activity = Activity {
                    table,
                    records: new_records,
                    ops,
                    newest_ts_ms,
                };
                tracing::info!(
                    table = %activity.table,
                    records = activity.records,
                    "Detected {ops_seen} operation on table: {}",
                    activity.table
                );
                self.step(Input::Activity(activity));
            }
            WatchEvent::Lag { table, lag } if !self.templated.contains(&table) => {
                tracing::trace!(%table, lag, "lag of a table without a SQL template ignored");
            }
            WatchEvent::Lag { table, lag } => {
                self.metrics
                    .table_lag
                    .get_or_create(&TableLabels { table: table.clone() })
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
                // Simulated jobs consume nothing, so their group's lag says nothing about them: a dry run treats
                // its jobs as caught up (and must never commit offsets for the real jobs' groups to pretend).
                if !matches!(self.launcher.as_ref(), AnyLauncher::DryRun(_)) {
                    self.step(Input::Lag { table, lag });
                }
            }
            WatchEvent::BrokerUp => self.health.kafka_ok(),
            WatchEvent::BrokerDown { error } => self.health.kafka_failed(error),
        }
    }

    /// The operations of one activity as the start log line names them (`c/u`, `unknown`): those sampled, or
    /// for an advance counted from watermarks alone (within `kafka.sample_interval`) those the table's last
    /// sample found, or `unknown` when there was none since start-up.
    fn operations_seen(&mut self, table: &str, ops: &BTreeMap<Op, u64>, unknown_ops: u64) -> String {
        let mut letters: Vec<&str> = ops.keys().map(|op| op.code()).collect();
        if unknown_ops > 0 {
            letters.push("unknown");
        }
        if letters.is_empty() {
            return self
                .last_ops
                .get(table)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
        }
        let seen = letters.join("/");
        self.last_ops.insert(table.to_owned(), seen.clone());
        seen
    }

    fn on_control(&mut self, request: ControlRequest) {
        let ControlRequest { table, command, reply } = request;
        let known = self.templated.contains(&table) || self.policy.status(&table).is_some();
        let answer = if !is_table_name(&table) || !known || !self.policy.settings().policy.manages(&table) {
            Err(ControlError::UnknownTable(table))
        } else {
            let input = match command {
                ControlCommand::Trigger => Input::Trigger { table: table.clone() },
                ControlCommand::Pause => Input::Pause { table: table.clone() },
                ControlCommand::Resume => Input::Resume { table: table.clone() },
                ControlCommand::Stop => Input::Stop { table: table.clone() },
            };
            tracing::info!(%table, ?command, "operator command");
            self.step(input);
            self.policy
                .status(&table)
                .ok_or_else(|| ControlError::UnknownTable(table.clone()))
        };
        // The requester may have given up (timeout); nothing to do then.
        let _ = reply.send(answer);
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Start {
                table,
                generation,
                reason,
                result,
            } => match result {
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
                    self.step(Input::JobState(JobObservation {
                        table,
                        job_id: started.job_id.to_string(),
                        generation: Some(generation),
                        state: JobStatus::Running,
                    }));
                }
                Err(e) => {
                    self.note_flink_error(&e);
                    self.metrics.record_start(&table, false);
                    // Flink's answer may echo a statement, credentials included.
                    let error = self.credentials.redact(&e.to_string());
                    tracing::warn!(%table, %error, "failed to start job for: {table}");
                    self.step(Input::StartFailed {
                        table,
                        generation: Some(generation),
                        error,
                    });
                }
            },
            Outcome::Stop {
                table,
                job_id,
                reason,
                result,
            } => {
                self.stopping.remove(&table);
                match result {
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
                        self.step(Input::Stopped {
                            table,
                            job_id: Some(job_id),
                        });
                    }
                    Err(e) => {
                        // The job may still run; the next reconciliation sees it and stops it again.
                        self.note_flink_error(&e);
                        self.metrics.record_stop(&table, false);
                        tracing::warn!(%table, %job_id, error = %e, "failed to stop job for: {table}");
                    }
                }
            }
            Outcome::Reconcile(result) => {
                self.reconciling = false;
                match result {
                    Ok(found) => {
                        self.health.flink_ok();
                        self.on_reconciled(found, self.reconcile_requested_at);
                    }
                    Err(e) => {
                        self.note_flink_error(&e);
                        tracing::warn!(error = %e, "cannot list Flink jobs; retrying at the next reconcile");
                    }
                }
            }
        }
    }

    /// Feeds a job listing, requested at `requested_at`, to the policy. First the end of each table's current
    /// job, if the listing shows it ended or no longer shows it at all, so that a live job of the table listed
    /// next is adopted rather than taken for a second one; then each table's live jobs and latest ended one.
    fn on_reconciled(&mut self, found: Reconciliation, requested_at: Millis) {
        let listed: HashSet<(String, String)> = found
            .running
            .values()
            .chain(&found.duplicates)
            .chain(found.ended.values())
            .chain(&found.older_ended)
            .map(|job| (job.table.clone(), job.job_id.to_string()))
            .collect();
        // A job the policy learned of before the listing was asked for existed in Flink then; absent from the
        // listing, it is gone (a session cluster restarted without HA, an expired job store). Left alone, the
        // policy would hold on to it for ever.
        let mut current: HashMap<String, String> = HashMap::new();
        for status in self.policy.statuses() {
            let Some(job_id) = status.job_id else { continue };
            let known_before = status.job_since.is_some_and(|since| since < requested_at);
            if !known_before || listed.contains(&(status.table.clone(), job_id.clone())) {
                current.insert(status.table, job_id);
                continue;
            }
            tracing::warn!(table = %status.table, %job_id, "job missing from Flink's job list; taken as ended");
            self.step(Input::JobState(JobObservation {
                table: status.table,
                job_id,
                generation: None,
                state: JobStatus::Canceled,
            }));
        }
        let current_ended = found
            .older_ended
            .into_iter()
            .filter(|job| current.get(&job.table).is_some_and(|id| *id == job.job_id.as_str()));
        let jobs = current_ended
            .chain(found.running.into_values())
            .chain(found.duplicates)
            .chain(found.ended.into_values());
        for job in jobs {
            let Ok(state) = job.state.as_str().parse::<JobStatus>() else {
                tracing::warn!(table = %job.table, job_id = %job.job_id, state = %job.state,
                    "job in a state this version does not know; treated as alive");
                continue;
            };
            let table = job.table.clone();
            // A job whose id one of this process's starts pinned is that start's job; any other (an earlier
            // process's, one started by hand) is reported without a generation, so the policy never takes it for
            // a start whose job it has not seen yet.
            let generation = self
                .pinned
                .get(&table)
                .and_then(|starts| starts.iter().find(|(_, id)| *id == job.job_id))
                .map(|(generation, _)| *generation);
            let job_id = job.job_id.to_string();
            self.step(Input::JobState(JobObservation {
                table: table.clone(),
                job_id: job_id.clone(),
                generation,
                state,
            }));
            // A stop that failed earlier leaves the policy waiting in `stopping` while Flink still runs the job.
            let status = self.policy.status(&table);
            if state.is_terminal() || self.stopping.contains(&table) {
                continue;
            }
            if let Some(status) = status.filter(|s| s.state == TableState::Stopping)
                && status.job_id.as_deref() == Some(job_id.as_str())
            {
                self.spawn_stop(table, job_id, StopReason::Idle);
            }
        }
    }

    fn note_flink_error(&self, e: &FlinkError) {
        if e.is_transient() {
            self.health.flink_failed(e.to_string());
        }
    }

    /// Feeds one input to the policy, carries out its actions and publishes the new table snapshot.
    fn step(&mut self, input: Input) {
        let actions = self.policy.handle(self.clock.now(), input);
        for action in actions {
            match action {
                Action::Start {
                    table,
                    generation,
                    reason,
                } => self.spawn_start(table, generation, reason),
                Action::Stop { table, job_id, reason } => self.spawn_stop(table, job_id, reason),
                Action::Event(event) => self.on_event(event),
            }
        }
        self.publish();
    }

    fn spawn_start(&mut self, table: String, generation: u64, reason: StartReason) {
        let statements = match self.launcher.templates().render(&table, &self.credentials) {
            Ok(statements) => statements,
            Err(e) => {
                tracing::warn!(%table, error = %e, "cannot render the job's SQL");
                self.metrics.record_start(&table, false);
                // Fed back through the policy like any failed start, so it backs off, reports the table as
                // failing, and carries out whatever else that decides (e.g. the next queued start).
                self.step(Input::StartFailed {
                    table,
                    generation: Some(generation),
                    error: e.to_string(),
                });
                return;
            }
        };
        let launcher = self.launcher.clone();
        let launch_generation = self.clock.launch_generation(generation);
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

    fn spawn_stop(&mut self, table: String, job_id: String, reason: StopReason) {
        let Some(id) = JobId::parse(&job_id) else {
            tracing::error!(%table, %job_id, "policy asked to stop a job with a malformed id");
            return;
        };
        self.stopping.insert(table.clone());
        let launcher = self.launcher.clone();
        self.tasks.spawn(async move {
            let mut delay = STOP_RETRY_INITIAL;
            loop {
                let result = launcher.stop(&table, &id).await;
                match result {
                    Err(e) if e.is_transient() => {
                        tracing::warn!(%table, %job_id, error = %e, retry_in = ?delay, "stop failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(STOP_RETRY_MAX);
                    }
                    result => {
                        return Outcome::Stop {
                            table,
                            job_id,
                            reason,
                            result,
                        };
                    }
                }
            }
        });
    }

    fn spawn_reconcile(&mut self) {
        if self.reconciling {
            return;
        }
        self.reconciling = true;
        self.reconcile_requested_at = self.clock.now();
        let launcher = self.launcher.clone();
        let policy = self.config.policy.clone();
        self.tasks.spawn(async move {
            Outcome::Reconcile(reconcile(launcher.as_ref(), |table| policy.manages(table)).await)
        });
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::Deferred { table, until, cause } => {
                tracing::debug!(%table, until = until.0, ?cause, "start deferred");
            }
            Event::Throttled { table, until } => {
                self.metrics.starts_throttled.inc();
                tracing::info!(%table, until = until.0, "start throttled");
            }
            Event::Queued {
                table,
                in_flight,
                limit,
            } => {
                self.metrics.starts_throttled.inc();
                tracing::info!(%table, in_flight, limit, "start queued: concurrency limit");
            }
            Event::StartFailed {
                table,
                failures,
                retry_at,
                error,
            } => {
                tracing::debug!(%table, failures, retry_at = retry_at.0, %error, "start will be retried");
            }
            Event::JobEnded { table, job_id, state } => {
                tracing::warn!(%table, %job_id, %state, "job ended without being asked to");
            }
            Event::Failing { table, failures } => {
                tracing::error!(%table, failures, "table is failing: repeated failed starts");
            }
            Event::Recovered { table } => tracing::info!(%table, "table recovered"),
            Event::Adopted {
                table,
                job_id,
                generation,
            } => {
                tracing::info!(%table, %job_id, generation, "adopted running job");
            }
        }
    }

    fn publish(&mut self) {
        let statuses: BTreeMap<String, _> = self
            .policy
            .statuses()
            .into_iter()
            .map(|s| (s.table.clone(), s))
            .collect();
        // Flink's view, not the policy's: a job the policy holds as running may be RESTARTING.
        let running = statuses
            .values()
            .filter(|s| s.job_state == Some(JobStatus::Running))
            .count();
        self.metrics
            .jobs_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
        for status in statuses.values() {
            let now = status.job_state.map(|state| TableJobStateLabels {
                table: status.table.clone(),
                state: state.as_str().to_owned(),
            });
            let before = self.job_state_series.get(&status.table);
            if before == now.as_ref() {
                continue;
            }
            if let Some(old) = before {
                self.metrics.job_state.remove(old);
            }
            match now {
                Some(labels) => {
                    self.metrics.job_state.get_or_create(&labels).set(1);
                    self.job_state_series.insert(status.table.clone(), labels);
                }
                None => {
                    self.job_state_series.remove(&status.table);
                }
            }
        }
        self.metrics.savings.observe(self.clock.now(), statuses.values());
        self.tables.send_replace(Arc::new(statuses));
    }

    async fn shut_down(mut self) {
        let timeout = self.config.flink.shutdown_timeout;
        if self.config.flink.stop_jobs_on_shutdown {
            let running: Vec<_> = self
                .policy
                .statuses()
                .into_iter()
                .filter(|s| matches!(s.state, TableState::Running))
                .filter_map(|s| s.job_id.map(|id| (s.table, id)))
                .collect();
            for (table, job_id) in running {
                if !self.stopping.contains(&table) {
                    self.spawn_stop(table, job_id, StopReason::Operator);
                }
            }
        }
        let in_flight = self.tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, timeout = ?timeout, "waiting for in-flight Flink calls");
        }
        let drained = tokio::time::timeout(timeout, async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok(outcome) = done {
                    self.on_outcome(outcome);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = self.tasks.len(),
                "shutdown timeout: abandoning in-flight Flink calls"
            );
            self.tasks.abort_all();
        }
        let running: HashMap<String, String> = self
            .policy
            .statuses()
            .into_iter()
            .filter(|s| s.state == TableState::Running)
            .filter_map(|s| s.job_id.map(|id| (s.table, id)))
            .collect();
        if !running.is_empty() {
            tracing::info!(jobs = ?running, "leaving running jobs to be adopted at the next start");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the whole sidecar until `shutdown`: HTTP server, watcher, and the loop between policy and launcher.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    // Built before binding the port, so a bad template, pattern or TLS file fails fast and cleanly.
    let templates = Arc::new(Templates::load(&config).map_err(|e| RunError::Credentials(e.into()))?);
    let startable = templates
        .tables()
        .into_iter()
        .chain(config.policy.include.iter().cloned());
    let routing = Routing::new(&config.kafka, startable).map_err(WatchError::Routed)?;
    let watcher = Watcher::new(config.kafka.clone())?.with_routing(routing);
    if config.flink.launcher != LauncherKind::DryRun {
        templates
            .require_credentials(&Credentials::from_env())
            .map_err(RunError::Credentials)?;
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.server.listen,
            source,
        })?;
    let launcher = Arc::new(AnyLauncher::from_config(&config, templates)?);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(
        config.kafka.topic_refresh * 3 + config.kafka.request_timeout,
        config.flink.reconcile_interval * 3 + config.flink.request_timeout,
    ));
    metrics.health.watch(health.clone());
    let run_loop = RunLoop::new(config.clone(), launcher.clone(), metrics.clone(), health.clone());
    let (control_tx, control_rx) = mpsc::channel(64);
    let state = ServerState {
        metrics: metrics.clone(),
        health: health.clone(),
        tables: run_loop.subscribe(),
        control: control_tx,
        token: config.server.token.clone(),
        max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        unseen: Arc::new(run_loop.unseen_statuses()),
    };
    let configured = crate::http::Limits::from_config(&config.server);
    let limits = match crate::http::open_file_limit() {
        Some(nofile) => configured.capped_by_open_files(nofile),
        None => configured,
    };
    if limits.max_connections < configured.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            configured = configured.max_connections,
            "HTTP connections capped at a quarter of the open-file limit"
        );
    }
    tracing::info!(listen = %config.server.listen, launcher = ?config.flink.launcher, "cdc-orchestrator running");
    let server = tokio::spawn(crate::http::serve(listener, state, limits, shutdown.clone()));
    if matches!(launcher.as_ref(), AnyLauncher::DryRun(_)) {
        health.flink_ok();
    }
    let (observations_tx, observations_rx) = mpsc::channel(1024);
    let watcher = watcher.with_metrics(metrics.clone());
    let watcher = tokio::spawn(watcher.run(observations_tx, shutdown.clone()));
    run_loop.run(observations_rx, control_rx, shutdown.clone()).await;
    let _ = watcher.await;
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("cdc-orchestrator stopped");
    Ok(())
}
