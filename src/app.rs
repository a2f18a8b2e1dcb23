//! The composition root: builds every part of the sidecar from the configuration and wires them together.
//!
//! `run` reads the SQL templates, builds the Kafka watcher, the Flink launcher, telemetry and the run loop, binds
//! the HTTP server, and connects them with channels: the watcher's events and the server's commands go to the
//! run loop, the run loop's table snapshots go to the server and back to the watcher (which tables' lag to
//! read). It is the one place that knows every layer; no layer imports it, only the `run` command does.
//!
//! Owns the wiring, nothing else. May import every layer but [`crate::cli`], which imports it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LauncherKind};
use crate::controller::{RunLoop, TablesSnapshot};
use crate::flink::jobmanager::JobManager;
use crate::flink::{AnyLauncher, FlinkError, Launcher};
use crate::http::ServerState;
use crate::kafka::watcher::{WatchError, Watcher};
use crate::lease::{Elector, KubeClient, Leadership};
use crate::policy::TableState;
use crate::sql::{Credentials, TemplateError, Templates};
use crate::telemetry::{Health, Metrics};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP port could not be bound.
    #[error("server.listen: cannot listen on {addr}")]
    Listen {
        /// The configured `server.listen`.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The launcher could not be built from the configuration.
    #[error("cannot set up the Flink launcher")]
    Launcher(#[from] FlinkError),
    /// Leader election is on and cannot be set up (no service account, an unusable setting).
    #[error("cannot set up leader election")]
    Leadership(#[from] crate::lease::LeaseError),
    /// The watcher could not be built from the configuration.
    #[error("cannot set up the Kafka watcher")]
    Watcher(#[from] WatchError),
    /// A SQL template cannot be read or is wrong.
    #[error(transparent)]
    Templates(TemplateError),
    /// The launcher submits the statements, and a credential they need is missing or unusable.
    #[error(transparent)]
    Credentials(crate::sql::SqlError),
    /// The Kafka watcher ended (a panic, a bug) before shutdown: without it nothing is seen, so the sidecar stops
    /// rather than stay up looking healthy.
    #[error("the Kafka watcher stopped unexpectedly: {0}")]
    WatcherStopped(String),
}

/// Where reloads come from: the configuration file the process started with (read again at each reload, with
/// the `CDC_*` environment, as at start) and the SIGHUPs that ask for one (`POST /reload` is the HTTP server's).
#[derive(Debug)]
pub struct Reloads {
    file: Option<PathBuf>,
    hangups: mpsc::Receiver<()>,
}

impl Reloads {
    /// Reloads from `file` on each message of `hangups` (see [`crate::shutdown::on_signals_and_hangups`]).
    pub fn new(file: Option<&Path>, hangups: mpsc::Receiver<()>) -> Self {
        Reloads {
            file: file.map(Path::to_owned),
            hangups,
        }
    }
}

/// Runs the whole sidecar until `shutdown`: HTTP server, watcher, and the loop between policy and launcher; the
/// templates and policy settings are reloaded on `reloads`' SIGHUPs and on `POST /reload`.
pub async fn run(config: Config, reloads: Reloads, shutdown: CancellationToken) -> Result<(), RunError> {
    // Built before binding the port, so a bad template, pattern or TLS file fails fast and cleanly.
    let templates = Arc::new(Templates::load(&config).map_err(RunError::Templates)?);
    let watcher = watcher_for(&config, &templates)?;
    if config.flink.launcher != LauncherKind::DryRun {
        templates
            .require_credentials(&Credentials::from_env(&config.kafka))
            .map_err(RunError::Credentials)?;
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.server.listen,
            source,
        })?;
    let metrics = Arc::new(Metrics::new());
    let (leadership, elector) = leadership(&config, &metrics)?;
    let launcher = Arc::new(AnyLauncher::from_config(&config)?.with_guard(leadership.guard()));
    let health = Arc::new(Health::new(
        config.kafka.topic_refresh * 3 + config.kafka.request_timeout,
        config.flink.reconcile_interval * 3 + config.flink.request_timeout,
    ));
    metrics.watch_health(health.clone());
    let mut run_loop = RunLoop::new(
        config.clone(),
        launcher.clone(),
        templates,
        metrics.clone(),
        health.clone(),
    )
    .with_leadership(leadership.clone());
    let reloader = run_loop.reloader(&config, reloads.file);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let (control_tx, control_rx) = mpsc::channel(64);
    let state = ServerState {
        metrics: metrics.clone(),
        health: health.clone(),
        tables: run_loop.subscribe(),
        control: control_tx,
        reload: Some(reload_tx),
        token: config.server.token.clone(),
        allowed_hosts: config.server.allowed_hosts.clone().into(),
        max_body_bytes: usize::try_from(config.server.max_body_bytes).unwrap_or(usize::MAX),
        unseen: Arc::new(run_loop.unseen_statuses()),
        leadership,
    };
    let limits = http_limits(&config);
    tracing::info!(listen = %config.server.listen, launcher = ?config.flink.launcher, "cdc-orchestrator running");
    let server = tokio::spawn(crate::http::serve(listener, state, limits, shutdown.clone()));
    if launcher.simulated() {
        health.flink_ok();
    } else {
        tokio::spawn(watch_cluster(
            cluster_client(&config)?,
            metrics.clone(),
            config.flink.reconcile_interval,
            shutdown.clone(),
        ));
    }
    tokio::spawn(reloader.run(reload_rx, reloads.hangups, shutdown.clone()));
    let (observations_tx, observations_rx) = mpsc::channel(1024);
    let lag_tables = tables_with_jobs(run_loop.subscribe(), shutdown.clone());
    let watcher = watcher.with_metrics(metrics.clone()).with_lag_tables(lag_tables);
    let watcher = tokio::spawn(watcher.run(observations_tx, shutdown.clone()));
    let watcher = tokio::spawn(watch_over(watcher, shutdown.clone()));
    // The lease is held until the run loop has stopped acting (shutdown's job stops included), then released, so
    // the standby takes over at its next retry rather than a lease duration later.
    let done_acting = CancellationToken::new();
    let elector = elector.map(|elector| tokio::spawn(elector.run(done_acting.clone())));
    run_loop.run(observations_rx, control_rx, shutdown.clone()).await;
    done_acting.cancel();
    if let Some(Err(e)) = match elector {
        Some(elector) => Some(elector.await),
        None => None,
    } {
        tracing::warn!(error = %e, "the leader election task failed");
    }
    let watcher = watcher
        .await
        .unwrap_or_else(|e| Err(RunError::WatcherStopped(e.to_string())));
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %crate::logging::chain(&e), "HTTP server ended with an error"),
        Err(e) => tracing::warn!(error = %crate::logging::chain(&e), "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    tracing::info!("cdc-orchestrator stopped");
    watcher
}

/// This replica's leadership: the launcher's guard, the run loop's role and the HTTP server's all come from it.
/// With `leader_election.enabled`, the elector that drives it (to be run); otherwise this replica always leads.
fn leadership(config: &Config, metrics: &Arc<Metrics>) -> Result<(Leadership, Option<Elector<KubeClient>>), RunError> {
    if config.leader_election.enabled {
        let (elector, leadership) = Elector::from_config(&config.leader_election, metrics.clone())?;
        return Ok((leadership, Some(elector)));
    }
    let identity = config
        .leader_election
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty() && h.len() <= 253)
        .unwrap_or_else(|| "cdc-orchestrator".to_owned());
    metrics.leader(true);
    Ok((Leadership::always_leader(&identity), None))
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

/// A JobManager client of its own for [`watch_cluster`], bounded like the launcher's (request timeout, answer
/// size, credentials masked in its errors).
fn cluster_client(config: &Config) -> Result<JobManager, FlinkError> {
    let mut client = JobManager::new(
        crate::flink::http_client(config.flink.request_timeout)?,
        &config.flink.jobmanager_url,
    )?;
    client.set_redaction(Credentials::from_env(&config.kafka));
    client.set_max_response_bytes(config.flink.max_response_bytes);
    Ok(client)
}

/// Reads Flink's TaskManagers and slots (`GET /overview`) every `interval` into `cdc_flink_*` until `shutdown`:
/// they show whether the slots stopped jobs free become TaskManagers given back. A failed read is only logged at
/// debug and leaves the gauges as they were: it decides nothing, and the run loop's own calls already judge
/// whether Flink is reachable (readiness, `cdc_dependency_up`).
async fn watch_cluster(jobmanager: JobManager, metrics: Arc<Metrics>, interval: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = jobmanager.cluster_overview() => read,
        };
        match read {
            Ok(o) => metrics.flink_cluster(o.taskmanagers, o.slots_total, o.slots_available),
            Err(e) => tracing::debug!(error = %crate::logging::chain(&e), "cannot read Flink's overview"),
        }
    }
}

/// The watcher of `config` for the tables of `templates` (see [`Watcher::new`]; `watch` builds the same).
pub(crate) fn watcher_for(config: &Config, templates: &Templates) -> Result<Watcher, WatchError> {
    Watcher::new(config, templates.tables())
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
    mut tables: watch::Receiver<TablesSnapshot>,
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
