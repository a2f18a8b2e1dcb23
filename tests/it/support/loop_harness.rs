//! The run loop in process over the launcher double, for tests with tokio's clock paused: watcher events go in
//! through the channel the real watcher uses, operator commands through the HTTP server's channel, and the
//! published table snapshots come out. A loop built by [`standby`] runs under a hand-driven leadership.

use std::sync::Arc;
use std::time::Duration;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::controller::{ControlCommand, ControlError, ControlRequest, TablesSnapshot};
use cdc_orchestrator::kafka::watcher::WatchEvent;
use cdc_orchestrator::lease::{Leadership, LeadershipControl};
use cdc_orchestrator::policy::{TableState, TableStatus};
use cdc_orchestrator::telemetry::{Health, Metrics};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::launcher_double::{self, Call, FakeLauncher};

/// Longest a test waits for anything, on the paused clock.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// How long a lease is held for at each [`Harness::lead`].
const LEASE: Duration = Duration::from_secs(3_600);

/// A run loop on its own task, and the ends of its channels.
pub struct Harness {
    pub launcher: FakeLauncher,
    pub events: mpsc::Sender<WatchEvent>,
    pub control: mpsc::Sender<ControlRequest>,
    pub tables: watch::Receiver<TablesSnapshot>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The leadership's other end, for a loop built by [`standby`].
    pub lease: Option<LeadershipControl>,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
    _sql: tempfile::TempDir,
}

/// A run loop over `launcher` for `tables`, always the leader; the configuration is the default one (a 10 s
/// reconcile interval), with `edit` applied.
pub fn start(launcher: &FakeLauncher, tables: &[&str], edit: impl FnOnce(&mut Config)) -> Harness {
    start_as(launcher, tables, edit, None)
}

/// A run loop over `launcher` for `tables` as replica pod-a, standing by while pod-b leads; [`Harness::lead`]
/// makes it take over.
pub fn standby(launcher: &FakeLauncher, tables: &[&str], edit: impl FnOnce(&mut Config)) -> Harness {
    let (leadership, lease) = Leadership::controlled("pod-a");
    lease.stand_by(Some("pod-b".to_owned()));
    start_as(launcher, tables, edit, Some((leadership, lease)))
}

fn start_as(
    launcher: &FakeLauncher,
    tables: &[&str],
    edit: impl FnOnce(&mut Config),
    leadership: Option<(Leadership, LeadershipControl)>,
) -> Harness {
    let sql = launcher_double::sql_dir(tables);
    let mut config = Config::default();
    config.flink.sql_dir = Some(sql.path().to_owned());
    config.flink.reconcile_interval = Duration::from_secs(10);
    edit(&mut config);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(Duration::from_secs(60), Duration::from_secs(60)));
    let run_loop = launcher_double::run_loop_over(launcher, config, metrics.clone(), health.clone());
    let (run_loop, lease) = match leadership {
        Some((leadership, lease)) => (run_loop.with_leadership(leadership), Some(lease)),
        None => (run_loop, None),
    };
    let snapshots = run_loop.subscribe();
    let (events, observations) = mpsc::channel(64);
    let (control, control_rx) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_loop.run(observations, control_rx, shutdown.clone()));
    Harness {
        launcher: launcher.clone(),
        events,
        control,
        tables: snapshots,
        metrics,
        health,
        lease,
        shutdown,
        run,
        _sql: sql,
    }
}

impl Harness {
    pub fn status(&self, table: &str) -> Option<TableStatus> {
        self.tables.borrow().get(table).cloned()
    }

    pub fn state(&self, table: &str) -> Option<TableState> {
        self.status(table).map(|s| s.state)
    }

    /// Waits, on the paused clock, until `done` holds.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Harness) -> bool) {
        let give_up = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < give_up,
                "{what}: {:#?}\ncalls: {:#?}",
                self.tables.borrow(),
                self.launcher.calls()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn send(&self, event: WatchEvent) {
        self.events.send(event).await.expect("the loop runs");
    }

    /// A change of `table`, as the watcher reports one.
    pub async fn change(&self, table: &str) {
        self.send(super::change_event(table)).await;
    }

    /// An operator command, and the loop's answer.
    pub async fn try_command(&self, table: &str, command: ControlCommand) -> Result<TableStatus, ControlError> {
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest {
            table: table.to_owned(),
            command,
            reply,
        };
        self.control.send(request).await.expect("the loop runs");
        answer.await.expect("answered")
    }

    /// An operator command for a known table, answered by the loop.
    pub async fn command(&self, table: &str, command: ControlCommand) -> TableStatus {
        self.try_command(table, command).await.expect("a known table")
    }

    /// Starts `table`'s job through a change and waits until it runs.
    pub async fn running(&self, table: &str) -> TableStatus {
        self.change(table).await;
        self.wait_until("the job runs", |h| h.state(table) == Some(TableState::Running))
            .await;
        self.status(table).expect("status")
    }

    /// A loop built by [`standby`] takes the lead (for an hour).
    pub fn lead(&self) {
        self.lease().lead_until(Instant::now() + LEASE);
    }

    /// The leadership's other end of a loop built by [`standby`].
    pub fn lease(&self) -> &LeadershipControl {
        self.lease.as_ref().expect("a loop built by standby()")
    }

    /// The calls that change Flink: starts and stops.
    pub fn acts(&self) -> Vec<Call> {
        let calls = self.launcher.calls();
        calls.into_iter().filter(|c| *c != Call::List).collect()
    }

    /// Shuts the loop down and returns how long `run` took to return, on the paused clock.
    pub async fn shut_down(self) -> Duration {
        let begin = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(PATIENCE, self.run)
            .await
            .expect("the loop returns")
            .expect("the loop does not panic");
        begin.elapsed()
    }
}
