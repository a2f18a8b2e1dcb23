//! In process: the run loop (policy, SQL Gateway launcher, reconciliation) against the fake Flink, fed watcher
//! events directly, so what the loop does with Flink, and how fast, is measured without a broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support;
use cdc_orchestrator::config::{Config, LauncherKind};
use cdc_orchestrator::controller::RunLoop;
use cdc_orchestrator::controller::{ControlRequest, TablesSnapshot};
use cdc_orchestrator::flink::AnyLauncher;
use cdc_orchestrator::kafka::watcher::WatchEvent;
use cdc_orchestrator::model::JobState;
use cdc_orchestrator::policy::TableState;
use cdc_orchestrator::telemetry::{Health, Metrics};
use support::fake_flink::{FakeFlink, Route};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Tables with a template in the test's SQL folder: setup (1 statement) + table (2) + the launcher's 3 SETs.
const TABLES: [&str; 5] = ["solo", "alpha", "beta", "gamma", "delta"];

/// A run loop on its own task; shut down on drop.
struct Loop {
    events: mpsc::Sender<WatchEvent>,
    tables: watch::Receiver<TablesSnapshot>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    _control: mpsc::Sender<ControlRequest>,
    _sql: tempfile::TempDir,
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn sql_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("setup.sql"),
        "SET 'table.exec.sink.upsert-materialize' = 'NONE';",
    )
    .expect("setup.sql");
    std::fs::create_dir(dir.path().join("tables")).expect("tables dir");
    for table in TABLES {
        std::fs::write(
            dir.path().join("tables").join(format!("{table}.sql")),
            format!(
                "CREATE TEMPORARY TABLE src_{table} (id INT) WITH ('connector' = 'kafka');\n\
                 INSERT INTO sink_{table} SELECT * FROM src_{table};"
            ),
        )
        .expect("table template");
    }
    dir
}

fn start_loop(flink: &FakeFlink, edit: impl FnOnce(&mut Config)) -> Loop {
    let sql = sql_dir();
    let mut config = Config::default();
    config.flink.launcher = LauncherKind::SqlGateway;
    config.flink.sql_gateway_url = flink.gateway_url.clone();
    config.flink.jobmanager_url = flink.jobmanager_url.clone();
    config.flink.sql_dir = Some(sql.path().to_owned());
    config.flink.reconcile_interval = Duration::from_secs(1);
    config.flink.request_timeout = Duration::from_secs(2);
    config.flink.start_timeout = Duration::from_secs(30);
    config.flink.stop_timeout = Duration::from_secs(10);
    config.flink.starts_per_minute = 600;
    config.flink.start_burst = 20;
    config.flink.max_concurrent_jobs = 8;
    config.policy.cooldown = Duration::from_secs(1);
    config.policy.idle_timeout = Duration::from_secs(600);
    edit(&mut config);
    let templates = Arc::new(cdc_orchestrator::sql::Templates::load(&config).expect("templates"));
    let launcher = Arc::new(AnyLauncher::from_config(&config).expect("launcher"));
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(Duration::from_secs(60), Duration::from_secs(60)));
    let run_loop = RunLoop::new(config, launcher, templates, metrics.clone(), health);
    let tables = run_loop.subscribe();
    let (events, observations) = mpsc::channel(64);
    let (control, control_rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    tokio::spawn(run_loop.run(observations, control_rx, shutdown.clone()));
    Loop {
        events,
        tables,
        metrics,
        shutdown,
        _control: control,
        _sql: sql,
    }
}

impl Loop {
    fn state(&self, table: &str) -> Option<(TableState, Option<JobState>)> {
        self.tables.borrow().get(table).map(|s| (s.state, s.job_state.clone()))
    }

    /// Waits until `done` holds for the published tables, failing after `timeout`.
    async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&TablesSnapshot) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut tables = self.tables.clone();
        while !done(&tables.borrow_and_update()) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what} within {timeout:?}: {:#?}",
                self.tables.borrow()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), tables.changed()).await;
        }
    }

    /// Sends a change to each table at once and returns, per table, the time from the change to its job
    /// RUNNING in the loop's view (the "Successfully triggered" moment).
    async fn burst(&self, tables: &[&str]) -> Vec<Duration> {
        let begin = Instant::now();
        for table in tables {
            self.events.send(support::change_event(table)).await.expect("loop runs");
        }
        let mut took = vec![None; tables.len()];
        let deadline = begin + Duration::from_secs(30);
        let mut watch = self.tables.clone();
        while took.iter().any(Option::is_none) {
            for (i, table) in tables.iter().enumerate() {
                if took[i].is_none() && self.state(table).is_some_and(|(s, _)| s == TableState::Running) {
                    took[i] = Some(begin.elapsed());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "not all of {tables:?} started: {:#?}",
                self.tables.borrow()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(20)), watch.changed()).await;
        }
        took.into_iter().flatten().collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_table_burst_starts_about_as_fast_as_one_table() {
    let flink = FakeFlink::start().await;
    // A real gateway takes a while per statement; six statements per start.
    flink.set_statement_delay(Duration::from_millis(250));
    let run = start_loop(&flink, |_| {});
    let single = run.burst(&["solo"]).await[0];
    let burst = run.burst(&["alpha", "beta", "gamma", "delta"]).await;
    let slowest = burst.iter().copied().max().expect("four");
    eprintln!("change to triggered: single table {single:?}; four-table burst {burst:?}, slowest {slowest:?}");
    assert!(
        slowest.as_secs_f64() <= single.as_secs_f64() * 1.5,
        "slowest of the burst {slowest:?} vs single {single:?}"
    );
    // One after another through one session, the fourth would wait for three whole starts.
    assert!(
        single >= Duration::from_millis(1_500),
        "six statements of 250 ms: {single:?}"
    );
    assert_eq!(flink.sessions_opened(), 5, "a session per start");
    assert_eq!(flink.open_sessions(), 0, "all closed");
    for table in TABLES {
        assert_eq!(flink.live_jobs_named(&format!("cdc-{table}")).len(), 1, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarting_job_shows_as_restarting_while_the_table_keeps_its_job() {
    let flink = FakeFlink::start().await;
    let run = start_loop(&flink, |_| {});
    run.burst(&["solo"]).await;
    let job = flink.live_jobs_named("cdc-solo")[0].id.clone();
    let metrics = run.metrics.render();
    assert!(metrics.contains("cdc_jobs_running 1\n"), "{metrics}");
    assert!(
        metrics.contains("cdc_job_state{table=\"solo\",state=\"RUNNING\"} 1"),
        "{metrics}"
    );

    // A TaskManager is lost: Flink's restart strategy restarts the job, and the next listing says so.
    flink.set_job_state(&job, "RESTARTING");
    run.wait_until("RESTARTING shown", Duration::from_secs(5), |tables| {
        tables
            .get("solo")
            .is_some_and(|s| s.job_state == Some(JobState::Restarting))
    })
    .await;
    let status = serde_json::to_value(&run.tables.borrow()["solo"]).expect("json");
    assert_eq!(
        status["state"], "running",
        "the policy keeps the table's one job: {status}"
    );
    assert_eq!(status["job_state"], "RESTARTING", "{status}");
    let metrics = run.metrics.render();
    assert!(metrics.contains("cdc_jobs_running 0\n"), "{metrics}");
    assert!(
        metrics.contains("cdc_job_state{table=\"solo\",state=\"RESTARTING\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("state=\"RUNNING\""),
        "the old state's series is gone: {metrics}"
    );
    assert_eq!(flink.jobs().len(), 1, "no second job while Flink restarts the first");

    flink.set_job_state(&job, "RUNNING");
    run.wait_until("RUNNING again", Duration::from_secs(5), |tables| {
        tables
            .get("solo")
            .is_some_and(|s| s.job_state == Some(JobState::Running))
    })
    .await;
    assert!(run.metrics.render().contains("cdc_jobs_running 1\n"));
}

/// Flink's live jobs of `table` and the policy's view of it agree: one job, the same id, RUNNING.
fn assert_converged(run: &Loop, flink: &FakeFlink, table: &str) -> String {
    let live = flink.live_jobs_named(&format!("cdc-{table}"));
    assert_eq!(live.len(), 1, "{table}: {live:?}");
    let status = run.tables.borrow().get(table).cloned().expect("status");
    assert_eq!(status.state, TableState::Running, "{table}: {status:?}");
    assert_eq!(
        status.job_id.as_ref().map(|id| id.as_str()),
        Some(live[0].id.as_str()),
        "{table}: {status:?}"
    );
    assert_eq!(status.job_state, Some(JobState::Running), "{table}: {status:?}");
    live[0].id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_old_finished_jobs_are_history_while_starts_wait() {
    // Issue 16: every table's latest job was stopped by the previous sidecar process; listings land while the
    // new process's starts wait for the gateway.
    let flink = FakeFlink::start().await;
    let tables = ["alpha", "beta", "gamma", "delta"];
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 3_600_000;
    for (n, table) in tables.iter().enumerate() {
        let old = format!("{:032x}", 0xdead_0000 + n);
        flink.add_job(&old, &format!("cdc-{table}"), "FINISHED", an_hour_ago);
    }
    flink.set_statement_delay(Duration::from_millis(150));
    let run = start_loop(&flink, |c| c.flink.reconcile_interval = Duration::from_millis(200));
    run.burst(&tables).await;
    // A few more listings: nothing may change.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for table in tables {
        assert_converged(&run, &flink, table);
    }
    assert_eq!(flink.requests(Route::StopJob), 0, "no job stopped as a duplicate");
    assert_eq!(flink.requests(Route::CancelJob), 0);
    assert_eq!(flink.jobs().len(), 8, "one new job per table next to the old ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_gone_from_flinks_list_is_taken_as_ended_within_a_listing() {
    let flink = FakeFlink::start().await;
    let run = start_loop(&flink, |c| c.flink.reconcile_interval = Duration::from_millis(300));
    run.burst(&["solo"]).await;
    let first = assert_converged(&run, &flink, "solo");
    // The session cluster restarted without HA: Flink knows nothing of the job any more.
    flink.forget_job(&first);
    run.wait_until("a new job for the table", Duration::from_secs(10), |tables| {
        tables.get("solo").is_some_and(|s| {
            s.state == TableState::Running && s.job_id.as_ref().map(|id| id.as_str()) != Some(first.as_str())
        })
    })
    .await;
    let second = assert_converged(&run, &flink, "solo");
    assert_ne!(second, first);
}
