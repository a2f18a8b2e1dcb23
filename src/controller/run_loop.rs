//! The loop itself: one task owns the policy and feeds it, one input at a time, from the watcher, the control
//! channel, the launcher's answers and its own timers; what the policy decides becomes launcher calls.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::effects::{InFlight, JobSql, Outcome};
use super::observe::Observer;
use super::{ControlRequest, RunLoop, TablesSnapshot};
use crate::config::Config;
use crate::flink::Launcher;
use crate::kafka::watcher::WatchEvent;
use crate::model::{JobId, JobState, Millis};
use crate::policy::{Action, ControlCommand, Event, Input, Policy, PolicySettings, TableState};
use crate::sql::Credentials;
use crate::sql::Templates;
use crate::telemetry::{Health, Metrics};

/// Milliseconds since the Unix epoch, read from a monotonic clock anchored once at start-up, so the policy
/// sees real timestamps that never go backwards.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    origin: Instant,
    /// The process's start, milliseconds since the Unix epoch: the high bits of every launch generation.
    pub(super) origin_unix_ms: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            origin_unix_ms: crate::model::now_ms(),
        }
    }

    pub(super) fn now(&self) -> Millis {
        let elapsed = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Millis(self.origin_unix_ms.saturating_add(elapsed))
    }

    fn instant_of(&self, at: Millis) -> Instant {
        self.origin + Duration::from_millis(at.0.saturating_sub(self.origin_unix_ms))
    }
}

/// What the loop publishes, and what it remembers to publish it.
#[derive(Debug)]
pub(super) struct Telemetry {
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    /// Every table's status, for the HTTP server and the watcher's lag reads.
    pub(super) tables: watch::Sender<TablesSnapshot>,
    /// The live jobs of unmanaged tables in the last listing, each reported once when first seen.
    pub(super) unmanaged_seen: HashSet<JobId>,
}

impl<L: Launcher + 'static> RunLoop<L> {
    /// Builds the loop; `launcher` is shared with whoever else needs it (the `jobs` listing, tests).
    /// `templates` are the SQL templates, read and checked at start-up; each start renders from them (a reload,
    /// [`RunLoop::reloader`], swaps them whole).
    pub fn new(
        config: Config,
        launcher: Arc<L>,
        templates: Arc<Templates>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let clock = Clock::new();
        let settings =
            PolicySettings::from_config(&config, clock.origin_unix_ms).with_process_start(clock.origin_unix_ms);
        let policy = Policy::new(settings);
        let (tables, _) = watch::channel(TablesSnapshot::default());
        let templated: BTreeSet<String> = templates.tables().into_iter().collect();
        let drift = super::drift::DriftBook::new(templates.declared_columns().clone());
        let managed = Arc::new(super::managed_tables(templated.iter().cloned(), &config.policy));
        let credentials = if launcher.simulated() {
            Credentials::redacted()
        } else {
            Credentials::from_env(&config.kafka)
        };
        metrics.savings().start(
            move || clock.now(),
            managed.iter().cloned(),
            &config.flink.job_link_base(),
        );
        RunLoop {
            policy,
            inputs: VecDeque::new(),
            clock,
            launcher,
            sql: JobSql { templates, credentials },
            in_flight: InFlight::default(),
            telemetry: Telemetry {
                metrics,
                health,
                tables,
                unmanaged_seen: HashSet::new(),
            },
            observer: Observer::new(templated),
            drift,
            managed,
            flink: config.flink,
            shutting_down: false,
            reloads: None,
            term: super::term::Term::always(clock.origin_unix_ms),
        }
    }

    /// The status of every table an operator may address before this loop has seen it (it has a SQL template and
    /// is managed), for the HTTP server.
    pub fn unseen_statuses(&self) -> BTreeMap<String, crate::policy::TableStatus> {
        self.managed
            .iter()
            .map(|table| (table.clone(), self.policy.unseen_status(table)))
            .collect()
    }

    /// A receiver of the table snapshots this loop publishes, for the HTTP server.
    pub fn subscribe(&self) -> watch::Receiver<TablesSnapshot> {
        self.telemetry.tables.subscribe()
    }

    /// Runs until `shutdown`, then lets in-flight launcher calls finish within `flink.shutdown_timeout`.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<WatchEvent>,
        mut control: mpsc::Receiver<ControlRequest>,
        shutdown: CancellationToken,
    ) {
        let mut reconcile_every = tokio::time::interval(self.flink.reconcile_interval);
        reconcile_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reloads = self.reloads.take();
        loop {
            let deadline = self.deadline();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                // Before any outcome: a lost lead stops acting at once.
                true = self.term.changed() => self.on_role_change(),
                Some(done) = self.in_flight.tasks.join_next(), if !self.in_flight.tasks.is_empty() => self.on_joined(done),
                Some(request) = control.recv() => self.on_control(request),
                Some(reload) = next_reload(&mut reloads) => self.apply_reload(reload),
                Some(observation) = observations.recv() => self.on_observation(observation),
                // A standby lists too, read-only: its Flink health (readiness, cdc_dependency_up) stays true.
                _ = reconcile_every.tick() => self.spawn_listing(),
                () = sleep_until(deadline) => self.feed(Input::Tick),
            }
        }
        self.shut_down().await;
    }

    /// When the policy wants to be called again.
    fn deadline(&self) -> Option<Instant> {
        self.policy.next_deadline().map(|at| self.clock.instant_of(at))
    }

    pub(super) fn on_joined(&mut self, done: Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok(outcome) => self.on_outcome(outcome),
            Err(e) => tracing::error!(error = %e, "a launcher task ended abnormally"),
        }
    }

    /// Feeds `input` to the policy, then whatever carrying out its actions fed back, and publishes the tables.
    pub(super) fn feed(&mut self, input: Input) {
        self.feed_all([input]);
    }

    /// Feeds `inputs` in order, as [`RunLoop::feed`] does one.
    pub(super) fn feed_all(&mut self, inputs: impl IntoIterator<Item = Input>) {
        if !self.term.leading {
            // A standby's policy is given nothing, so it decides nothing; what it sees is remembered.
            self.inputs.clear();
            for input in inputs {
                self.remember(input);
            }
            self.publish();
            return;
        }
        self.inputs.extend(inputs);
        while let Some(input) = self.inputs.pop_front() {
            for action in self.policy.handle(self.clock.now(), input) {
                self.execute(action);
            }
        }
        self.publish();
    }

    /// Queues an input for the policy; [`RunLoop::feed_all`] takes it after the one in hand.
    pub(super) fn queue_input(&mut self, input: Input) {
        self.inputs.push_back(input);
    }

    pub(super) fn execute(&mut self, action: Action) {
        match action {
            // Never reached (a standby's policy is given nothing); should that fail, a standby calls nothing.
            Action::Start { table, .. } | Action::Stop { table, .. } if !self.term.leading => {
                tracing::error!(%table, "action refused: not the leader");
            }
            // The policy only ever hears of managed tables; should that fail, no Flink call goes out for a job
            // the sidecar does not own.
            Action::Start { table, generation, .. } if !self.managed.contains(&table) => {
                tracing::error!(%table, "start refused: the table is not managed");
                self.queue_input(Input::StartFailed {
                    table,
                    generation: Some(generation),
                    error: "the table is not managed".to_owned(),
                });
            }
            Action::Stop { table, job_id, .. } if !self.managed.contains(&table) => {
                tracing::error!(%table, %job_id, "stop refused: the table is not managed");
                self.queue_input(Input::StopFailed {
                    table,
                    job_id,
                    transient: false,
                });
            }
            Action::Start { table, .. } if self.shutting_down => {
                tracing::debug!(%table, "start not carried out: shutting down");
            }
            Action::Start {
                table,
                generation,
                launch_generation,
                reason,
            } => self.spawn_start(table, generation, launch_generation, reason),
            Action::Stop { table, job_id, reason } => self.spawn_stop(table, job_id, reason),
            Action::Event(event) => self.on_event(event),
        }
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::Deferred { table, until, cause } => {
                tracing::debug!(%table, until = until.0, ?cause, "start deferred");
            }
            Event::Throttled { table, until } => {
                self.telemetry.metrics.start_throttled();
                tracing::info!(%table, until = until.0, "start throttled");
            }
            Event::Queued {
                table,
                in_flight,
                limit,
            } => {
                self.telemetry.metrics.start_throttled();
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
            Event::StopFailed {
                table,
                job_id,
                failures,
                retry_at,
            } => match retry_at {
                Some(at) => {
                    let retry_in = at.since(self.clock.now());
                    tracing::warn!(%table, %job_id, failures, ?retry_in, "stop failed; retrying");
                }
                None => tracing::warn!(%table, %job_id, failures, "stop failed; retried when Flink lists the job"),
            },
            Event::JobMissing { table, job_id } => {
                tracing::warn!(%table, %job_id, "job missing from Flink's job list; taken as ended");
            }
            Event::SecondLiveJob { table, job_id } => {
                tracing::warn!(%table, %job_id,
                    "second live job for one table; the policy keeps one and stops the other as a duplicate");
            }
            Event::JobEnded { table, job_id, state } => {
                tracing::warn!(%table, %job_id, %state, "job ended without being asked to");
            }
            Event::JobFailed {
                table,
                job_id,
                failures,
                reason,
            } => {
                tracing::warn!(%table, %job_id, failures, %reason, "job failed: {reason}");
            }
            Event::Failing { table, failures } => {
                tracing::error!(%table, failures, "table is failing: repeated failed starts or job failures");
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

    pub(super) fn publish(&mut self) {
        let statuses: BTreeMap<String, _> = if self.term.leading {
            self.policy
                .statuses()
                .into_iter()
                .map(|s| (s.table.clone(), s))
                .collect()
        } else {
            self.standby_statuses()
        };
        // Flink's view, not the policy's: a job the policy holds as running may be RESTARTING.
        let running = statuses
            .values()
            .filter(|s| s.job_state == Some(JobState::Running))
            .count();
        self.telemetry.metrics.jobs_running(running);
        for status in statuses.values() {
            self.telemetry
                .metrics
                .job_state(&status.table, status.job_state.as_ref());
        }
        // The savings are the leader's jobs': a standby knows of none, and saves nothing.
        if self.term.leading {
            let seen = statuses.values().map(super::savings_seen);
            self.telemetry.metrics.savings().observe(self.clock.now(), seen);
        }
        self.telemetry.tables.send_replace(Arc::new(statuses));
    }

    /// Stops the running jobs if configured to, then waits up to `flink.shutdown_timeout` for launcher calls in
    /// flight, and for stops the policy retries, before abandoning them.
    async fn shut_down(mut self) {
        self.shutting_down = true;
        let timeout = self.flink.shutdown_timeout;
        // A standby stops nothing: the jobs are the leader's.
        if self.flink.stop_jobs_on_shutdown && self.term.leading {
            // Through the policy, like an operator's stop, so a failed stop is retried until the timeout.
            let stops: Vec<Input> = self
                .running_jobs()
                .into_keys()
                .map(|table| Input::Operator {
                    table,
                    command: ControlCommand::Stop,
                })
                .collect();
            self.feed_all(stops);
        }
        let in_flight = self.in_flight.tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, timeout = ?timeout, "waiting for in-flight Flink calls");
        }
        let give_up = Instant::now() + timeout;
        while !self.in_flight.tasks.is_empty() || self.policy.retrying_stops() {
            let deadline = self.deadline();
            tokio::select! {
                () = tokio::time::sleep_until(give_up) => {
                    tracing::warn!(
                        abandoned = self.in_flight.tasks.len(),
                        "shutdown timeout: abandoning in-flight Flink calls"
                    );
                    self.in_flight.tasks.abort_all();
                    break;
                }
                Some(done) = self.in_flight.tasks.join_next(), if !self.in_flight.tasks.is_empty() => self.on_joined(done),
                () = sleep_until(deadline) => self.feed(Input::Tick),
            }
        }
        let running = self.running_jobs();
        if !running.is_empty() {
            tracing::info!(jobs = ?running, "leaving running jobs to be adopted at the next start");
        }
    }

    /// The tables the policy holds as running, with their jobs.
    fn running_jobs(&self) -> BTreeMap<String, JobId> {
        self.policy
            .statuses()
            .into_iter()
            .filter(|s| s.state == TableState::Running)
            .filter_map(|s| s.job_id.map(|id| (s.table, id)))
            .collect()
    }
}

/// The next prepared reload; never, without a reloader.
async fn next_reload(reloads: &mut Option<mpsc::Receiver<super::reload::Reload>>) -> Option<super::reload::Reload> {
    match reloads {
        Some(reloads) => reloads.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::flink::{FlinkError, Started, Stopped};
    use crate::model::{JobSummary, job_id_for};
    use crate::policy::{StartReason, StopReason};

    /// A launcher whose job list is set by the test and which records every start and stop asked of it.
    #[derive(Default)]
    struct Listing {
        jobs: Mutex<Vec<JobSummary>>,
        calls: Mutex<Vec<String>>,
    }

    impl Launcher for Listing {
        async fn start(&self, table: &str, _: u64, _: &[String]) -> Result<Started, FlinkError> {
            self.calls.lock().expect("lock").push(format!("start {table}"));
            Ok(Started {
                job_id: job_id_for(table, 1),
                adopted: false,
            })
        }

        async fn stop(&self, table: &str, job_id: &JobId) -> Result<Stopped, FlinkError> {
            self.calls.lock().expect("lock").push(format!("stop {table} {job_id}"));
            Ok(Stopped::AlreadyStopped { state: None })
        }

        async fn list_jobs(&self) -> Result<Vec<JobSummary>, FlinkError> {
            Ok(self.jobs.lock().expect("lock").clone())
        }
    }

    fn running(table: &str) -> JobSummary {
        JobSummary {
            table: table.to_owned(),
            job_id: job_id_for(table, 1),
            state: JobState::Running,
            start_time_ms: 1,
            end_time_ms: None,
        }
    }

    fn run_loop(launcher: &Arc<Listing>) -> (RunLoop<Listing>, Arc<Metrics>) {
        let mut config = Config::default();
        config.policy.exclude = vec!["program".to_owned()];
        let templates = Arc::new(Templates::load(&config).expect("built-in templates"));
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::new(Duration::from_secs(30), Duration::from_secs(30)));
        let run_loop = RunLoop::new(config, launcher.clone(), templates, metrics.clone(), health);
        (run_loop, metrics)
    }

    async fn reconcile_once(run_loop: &mut RunLoop<Listing>) {
        run_loop.spawn_listing();
        let done = run_loop.in_flight.tasks.join_next().await.expect("the listing task");
        run_loop.on_joined(done);
    }

    /// The tables the policy holds; the first few of them when that is not only faculty.
    fn assert_only_faculty(run_loop: &RunLoop<Listing>) {
        let tables: Vec<String> = run_loop.policy.statuses().into_iter().map(|s| s.table).collect();
        assert!(
            tables == ["faculty"],
            "{} tables, e.g. {:?}",
            tables.len(),
            &tables[..tables.len().min(5)]
        );
    }

    #[tokio::test]
    async fn only_jobs_of_templated_admitted_tables_are_adopted_and_the_rest_are_counted() {
        let launcher = Arc::new(Listing::default());
        // faculty is managed; program has a template but is excluded; orphan and t<N> have no template.
        let mut jobs: Vec<JobSummary> = ["faculty", "program", "orphan"].into_iter().map(running).collect();
        jobs.extend((0..2_000).map(|n| running(&format!("t{n}"))));
        jobs.push(JobSummary {
            state: JobState::Finished,
            ..running("ended_orphan")
        });
        *launcher.jobs.lock().expect("lock") = jobs;
        let (mut run_loop, metrics) = run_loop(&launcher);
        assert!(run_loop.managed.contains("faculty") && !run_loop.managed.contains("program"));

        reconcile_once(&mut run_loop).await;
        assert_only_faculty(&run_loop);
        assert!(
            metrics.render().contains("\ncdc_unmanaged_jobs 2002\n"),
            "live ones only"
        );
        let snapshot = run_loop.subscribe().borrow().clone();
        assert_eq!(snapshot.keys().collect::<Vec<_>>(), ["faculty"]);
        let page = metrics.render();
        assert_eq!(page.matches("cdc_job_state{").count(), 1, "{page}");

        // The orphan goes away: the count follows the listing, and only its jobs are remembered.
        launcher.jobs.lock().expect("lock").retain(|j| j.table != "orphan");
        reconcile_once(&mut run_loop).await;
        assert!(metrics.render().contains("\ncdc_unmanaged_jobs 2001\n"));
        assert_eq!(run_loop.telemetry.unmanaged_seen.len(), 2_001);
        assert!(!run_loop.telemetry.unmanaged_seen.contains(&job_id_for("orphan", 1)));
        assert_only_faculty(&run_loop);
        assert!(
            launcher.calls.lock().expect("lock").is_empty(),
            "nothing started or stopped"
        );
    }

    #[tokio::test]
    async fn no_start_or_stop_goes_out_for_a_table_the_sidecar_does_not_manage() {
        let launcher = Arc::new(Listing::default());
        let (mut run_loop, _) = run_loop(&launcher);
        for table in ["orphan", "program"] {
            let job_id = job_id_for(table, 1);
            run_loop.execute(Action::Stop {
                table: table.to_owned(),
                job_id: job_id.clone(),
                reason: StopReason::Idle,
            });
            run_loop.execute(Action::Start {
                table: table.to_owned(),
                generation: 1,
                launch_generation: 1,
                reason: StartReason::Changes,
            });
            assert!(!run_loop.in_flight.stopping.contains(&job_id));
        }
        assert!(run_loop.in_flight.tasks.is_empty(), "no launcher call was spawned");
        // Its own table's job is still stopped.
        run_loop.execute(Action::Stop {
            table: "faculty".to_owned(),
            job_id: job_id_for("faculty", 1),
            reason: StopReason::Idle,
        });
        let done = run_loop.in_flight.tasks.join_next().await.expect("the stop task");
        run_loop.on_joined(done);
        let calls = launcher.calls.lock().expect("lock").clone();
        assert_eq!(calls, [format!("stop faculty {}", job_id_for("faculty", 1))]);
    }

    /// An activity of faculty whose sampled row holds `after`.
    fn sampled_activity(after: &str) -> WatchEvent {
        use crate::decoder::{SeenFields, decode_row};
        use crate::kafka::watcher::TableActivity;
        let record = format!(r#"{{"op":"c","source":{{"table":"faculty"}},"after":{after}}}"#);
        let mut fields = SeenFields::default();
        let (_, row) = decode_row("university-server.public.faculty", None, Some(record.as_bytes()));
        fields.add(&row.expect("a row"));
        WatchEvent::Activity(TableActivity {
            table: "faculty".to_owned(),
            topic: "university-server.public.faculty".to_owned(),
            partition: 0,
            records: 1,
            ops: BTreeMap::from([(crate::model::Op::Create, 1)]),
            unknown_ops: 0,
            newest_ts_ms: None,
            observed_at_ms: 0,
            fields: Some(fields),
        })
    }

    #[tokio::test]
    async fn new_declared_columns_clear_a_drift_they_resolve() {
        let launcher = Arc::new(Listing::default());
        let (mut run_loop, metrics) = run_loop(&launcher);
        let drift_of = |run_loop: &RunLoop<Listing>| run_loop.policy.status("faculty").and_then(|s| s.schema_drift);
        run_loop.on_observation(sampled_activity(
            r#"{"id":1,"faculty_code":"F","faculty_name":"N","created_at":0,"dean":"D"}"#,
        ));
        assert_eq!(drift_of(&run_loop).map(|d| d.added), Some(vec!["dean".to_owned()]));
        assert!(metrics.render().contains("cdc_table_schema_drift{table=\"faculty\"} 1"));
        // The reload's templates declare dean: the drift clears itself, without a new record.
        let mut declared = run_loop.sql.templates.declared_columns().clone();
        declared.get_mut("faculty").expect("faculty").insert("dean".to_owned());
        run_loop.replace_declared_columns(declared);
        assert_eq!(drift_of(&run_loop), None);
        assert!(metrics.render().contains("cdc_table_schema_drift{table=\"faculty\"} 0"));
        assert_eq!(run_loop.subscribe().borrow()["faculty"].schema_drift, None, "published");
    }
}
