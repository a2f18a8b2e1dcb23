//! The controller: the run loop between watcher, policy and launcher, and the sidecar's start-up.
//!
//! Watcher observations, job listings and operator commands go into the policy; its actions go to the launcher;
//! outcomes come back as policy inputs. The loop decides nothing itself: what a listing means, which job a start
//! pinned, what unknown operations count as are the policy's. What it owns is carrying actions out (one launcher
//! call per task, so a slow Flink never stalls watching; at most one stop per job and one listing at a time),
//! which tables the sidecar manages ([`managed_tables`]: only their jobs reach the policy, and no call goes out
//! for any other), and publishing. One task owns the policy, so decisions are serial and the policy needs no
//! locks. The loop is generic over the [`Launcher`] trait, so tests drive it with a launcher of their own.
//!
//! - `run_loop`: the loop, its input queue, timers, publishing and shutdown.
//! - `effects`: launcher calls as tasks, and their outcomes fed back to the policy.
//! - `observe`: watcher events as policy inputs.
//! - `control`: the operator commands the HTTP server forwards, and the table snapshots it reads.
//! - `health`: readiness inputs.
//!
//! It may import every layer it wires together (policy, flink, kafka, sql, config, the metrics); none of them
//! imports it, except the HTTP layer, for the control protocol and the health it serves and counts.

mod control;
mod effects;
mod health;
mod observe;
mod run_loop;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use control::{ControlCommand, ControlError, ControlRequest, TablesSnapshot};
pub use health::Health;

use crate::config::{Config, FlinkConfig, LauncherKind, PolicyConfig};
use crate::flink::{AnyLauncher, FlinkError, Launcher};
use crate::http::ServerState;
use crate::http::metrics::Metrics;
use crate::kafka::routing::Routing;
use crate::kafka::watcher::{WatchError, Watcher};
use crate::policy::{Input, Policy, TableState};
use crate::sql::{Credentials, TemplateError, Templates};
use effects::{InFlight, JobSql};
use observe::Observer;
use run_loop::{Clock, Telemetry};

/// The run loop: it feeds the policy and carries out the policy's actions, deciding nothing itself.
pub struct RunLoop<L: Launcher + 'static> {
    /// Every decision.
    policy: Policy,
    /// Inputs waiting for the policy: what an action's outcome feeds back is queued here, so the policy takes one
    /// input at a time and carrying out an action never re-enters it.
    inputs: VecDeque<Input>,
    /// The time every input is given.
    clock: Clock,
    /// What carries out starts, stops and listings.
    launcher: Arc<L>,
    /// What a start submits: the templates and what fills their credential placeholders.
    sql: JobSql,
    /// Launcher calls in flight.
    in_flight: InFlight,
    /// What the loop publishes: metrics, health, the tables' snapshot.
    telemetry: Telemetry,
    /// Watcher events into policy inputs.
    observer: Observer,
    /// The tables this sidecar manages ([`managed_tables`]): the only ones an operator may address, whose listed
    /// jobs reach the policy, and whose jobs are ever started, stopped or cancelled.
    managed: Arc<BTreeSet<String>>,
    /// `flink.reconcile_interval`, `flink.shutdown_timeout` and `flink.stop_jobs_on_shutdown`.
    flink: FlinkConfig,
    /// Shutting down: no new starts, stops still go out (and are retried) until the shutdown timeout.
    shutting_down: bool,
}

impl<L: Launcher + 'static> std::fmt::Debug for RunLoop<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLoop")
            .field("tasks", &self.in_flight.tasks.len())
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

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
    /// A SQL template cannot be read or is wrong.
    #[error("{0}")]
    Templates(#[source] TemplateError),
    /// The launcher submits the statements, and a credential they need is missing or unusable.
    #[error("{0}")]
    Credentials(#[source] crate::sql::SqlError),
    /// The Kafka watcher ended (a panic, a bug) before shutdown: without it nothing is seen, so the sidecar stops
    /// rather than stay up looking healthy.
    #[error("the Kafka watcher stopped unexpectedly: {0}")]
    WatcherStopped(String),
}

/// Runs the whole sidecar until `shutdown`: HTTP server, watcher, and the loop between policy and launcher.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    // Built before binding the port, so a bad template, pattern or TLS file fails fast and cleanly.
    let templates = Arc::new(Templates::load(&config).map_err(RunError::Templates)?);
    let watcher = watcher_for(&config, &templates)?;
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
    let launcher = Arc::new(AnyLauncher::from_config(&config, templates.clone())?);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new(
        config.kafka.topic_refresh * 3 + config.kafka.request_timeout,
        config.flink.reconcile_interval * 3 + config.flink.request_timeout,
    ));
    metrics.health.watch(health.clone());
    let run_loop = RunLoop::new(
        config.clone(),
        launcher.clone(),
        templates,
        metrics.clone(),
        health.clone(),
    );
    let (control_tx, control_rx) = mpsc::channel(64);
    let state = ServerState {
        metrics: metrics.clone(),
        health: health.clone(),
        tables: run_loop.subscribe(),
        control: control_tx,
        token: config.server.token.clone(),
        allowed_hosts: config.server.allowed_hosts.clone().into(),
        max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        unseen: Arc::new(run_loop.unseen_statuses()),
    };
    let limits = http_limits(&config);
    tracing::info!(listen = %config.server.listen, launcher = ?config.flink.launcher, "cdc-orchestrator running");
    let server = tokio::spawn(crate::http::serve(listener, state, limits, shutdown.clone()));
    if launcher.simulated() {
        health.flink_ok();
    }
    let (observations_tx, observations_rx) = mpsc::channel(1024);
    let lag_tables = tables_with_jobs(run_loop.subscribe(), shutdown.clone());
    let watcher = watcher.with_metrics(metrics.clone()).with_lag_tables(lag_tables);
    let watcher = tokio::spawn(watcher.run(observations_tx, shutdown.clone()));
    let watcher = tokio::spawn(watch_over(watcher, shutdown.clone()));
    run_loop.run(observations_rx, control_rx, shutdown.clone()).await;
    let watcher = watcher
        .await
        .unwrap_or_else(|e| Err(RunError::WatcherStopped(e.to_string())));
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("cdc-orchestrator stopped");
    watcher
}

/// Waits for the watcher task; if it ends before `shutdown` (it never returns on its own, so that is a panic or a
/// bug), shuts the whole sidecar down and says why, so that it exits non-zero and its supervisor restarts it: a
/// sidecar without its watcher would keep answering `/healthz` while seeing no change, and no probe would tell.
async fn watch_over(watcher: tokio::task::JoinHandle<()>, shutdown: CancellationToken) -> Result<(), RunError> {
    let ended = watcher.await;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    let why = match ended {
        Err(e) if e.is_panic() => "it panicked".to_owned(),
        Err(e) => e.to_string(),
        Ok(()) => "it returned".to_owned(),
    };
    tracing::error!(%why, "the Kafka watcher stopped unexpectedly; shutting down");
    shutdown.cancel();
    Err(RunError::WatcherStopped(why))
}

/// The tables this sidecar manages: those with a SQL template (`templated`) that `policy.include` and
/// `policy.exclude` admit ([`PolicyConfig::manages`]). The one ownership rule: a job named `cdc-<table>` is the
/// sidecar's only if its table is one of these; any other is reported, never adopted, stopped or cancelled, and
/// makes no table in the policy, `GET /tables` or the metrics. Flink's job list, which anyone who can submit a
/// job writes, never adds to it.
pub fn managed_tables(templated: impl IntoIterator<Item = String>, policy: &PolicyConfig) -> BTreeSet<String> {
    templated.into_iter().filter(|table| policy.manages(table)).collect()
}

/// The watcher for `config`: routing believes record table names only for tables it can start, and a first sample
/// settles on one record of an operation that counts for every table.
fn watcher_for(config: &Config, templates: &Templates) -> Result<Watcher, RunError> {
    let routing = Routing::with_templates(config, templates.tables()).map_err(WatchError::Routed)?;
    let policy = &config.policy;
    let counted_everywhere = policy.operations.iter().copied().filter(|op| {
        policy
            .tables
            .keys()
            .all(|t| policy.for_table(t).operations.contains(op))
    });
    Ok(Watcher::new(config.kafka.clone())?
        .with_routing(routing)
        .with_counted_ops(counted_everywhere.collect::<Vec<_>>()))
}

/// The configured HTTP limits, with connections capped at a quarter of the open-file limit (said once).
fn http_limits(config: &Config) -> crate::http::Limits {
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
    limits
}

/// The tables with a job starting, running or stopping, following `tables` until `shutdown`: the watcher reads lag
/// only for those, since only there does it decide anything.
fn tables_with_jobs(
    mut tables: watch::Receiver<control::TablesSnapshot>,
    shutdown: CancellationToken,
) -> watch::Receiver<BTreeSet<String>> {
    let (tx, rx) = watch::channel(BTreeSet::new());
    tokio::spawn(async move {
        loop {
            let with_jobs: BTreeSet<String> = tables
                .borrow_and_update()
                .values()
                .filter(|s| {
                    s.job_id.is_some()
                        || matches!(
                            s.state,
                            TableState::Starting | TableState::Running | TableState::Stopping
                        )
                })
                .map(|s| s.table.clone())
                .collect();
            tx.send_if_modified(|current| {
                let changed = *current != with_jobs;
                *current = with_jobs;
                changed
            });
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = tables.changed() => if changed.is_err() { return },
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_that_panics_shuts_the_sidecar_down_with_an_error() {
        let shutdown = CancellationToken::new();
        let panicking = tokio::spawn(async { panic!("overflow in the watcher") });
        let result = watch_over(panicking, shutdown.clone()).await;
        assert!(
            matches!(&result, Err(RunError::WatcherStopped(why)) if why == "it panicked"),
            "{result:?}"
        );
        assert!(shutdown.is_cancelled(), "the rest of the sidecar winds down");
        // Ending because of shutdown is no error.
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let result = watch_over(tokio::spawn(async {}), shutdown).await;
        assert!(result.is_ok(), "{result:?}");
    }
}
