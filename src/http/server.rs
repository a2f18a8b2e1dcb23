//! Accepting and serving connections: a cap on connections (the longest-idle one makes room), header and idle
//! timeouts, and a grace period at shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use super::parse_errors::ParseErrorBodies;
use super::routes::{ServerState, router};
use crate::config::ServerConfig;

/// On shutdown, how long requests in progress may take to finish before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The most a request's line and header may take together: generous for any client of this API, and a bound on
/// what a connection makes the server buffer (hyper's default is about 400 KiB).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin; the client waits in
/// the listen backlog meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The HTTP server never holds more than this share of the process's open-file limit, so clients can never
/// take the descriptors the watcher and the Flink client need.
const NOFILE_SHARE_DIVISOR: u64 = 4;

/// How many connections the server holds at once and how long it waits for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (see [`Limits::capped_by_open_files`]).
    pub max_connections: usize,
    /// Time allowed to receive a request's header, from when the server starts waiting for it: it also closes
    /// a connection that sends nothing, or stays idle between requests, for this long.
    pub header_timeout: Duration,
    /// A connection on which no byte arrives for this long while the server waits to read (a body that stops
    /// half-way) is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The `[server]` settings.
    pub fn from_config(server: &ServerConfig) -> Limits {
        Limits {
            max_connections: usize::try_from(server.max_connections).unwrap_or(usize::MAX),
            header_timeout: server.header_timeout,
            idle_timeout: server.idle_timeout,
        }
    }

    /// These limits with the connection cap lowered to a quarter of the open-file limit `nofile` when that is
    /// lower, so HTTP clients can never use up the descriptors the watcher and the Flink client need.
    pub fn capped_by_open_files(self, nofile: u64) -> Limits {
        let share = usize::try_from((nofile / NOFILE_SHARE_DIVISOR).max(1)).unwrap_or(usize::MAX);
        Limits {
            max_connections: self.max_connections.min(share),
            ..self
        }
    }
}

/// Raises the process's soft open-file limit to its hard limit (HTTP clients, broker connections and Flink
/// calls all need descriptors) and returns the soft limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The process's soft open-file limit, if it can be read.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
}

/// The connections being served, so that a new one can take the place of the one that has waited longest for a
/// request when the cap is reached: idle clients cannot lock out a health probe.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Connection>>,
}

#[derive(Debug)]
struct Connection {
    /// Since when it waits for a request; `None` while one is being answered.
    idle_since: Option<Instant>,
    /// Cancelled to close the connection.
    close: CancellationToken,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Connection>> {
        // Every update is a single insert, remove or field write: the map stays consistent after a panic.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers connection `id` if there is room, closing the longest-idle connection to make room when the cap
    /// is reached; `None` when every connection is busy answering a request.
    fn admit(&self, id: u64, cap: usize) -> Option<CancellationToken> {
        let mut open = self.lock();
        if open.len() >= cap {
            let oldest = open
                .iter()
                .filter_map(|(id, c)| c.idle_since.map(|since| (since, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(evicted) = open.remove(&oldest) {
                evicted.close.cancel();
            }
        }
        let close = CancellationToken::new();
        open.insert(
            id,
            Connection {
                idle_since: Some(Instant::now()),
                close: close.clone(),
            },
        );
        Some(close)
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(connection) = self.lock().get_mut(&id) {
            connection.idle_since = idle.then(Instant::now);
        }
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Serves on `listener` until `shutdown` is cancelled, within `limits`; requests in progress then get a few
/// seconds to finish.
///
/// axum's own `serve` has no header or idle timeout and no connection cap, so connections are served with
/// hyper's HTTP/1 builder (header-read timeout) over a socket with a read-inactivity timeout.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    let connections = Arc::new(Connections::default());
    let tasks = TaskTracker::new();
    let mut next_id: u64 = 0;
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if last_accept_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %crate::logging::chain(&e), "cannot accept an HTTP connection; retrying");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        next_id += 1;
        let id = next_id;
        // Every connection is busy: the newcomer is closed at once rather than holding a descriptor unserved.
        let Some(close) = connections.admit(id, limits.max_connections) else {
            continue;
        };
        let (app, connections_of_task, shutdown) = (app.clone(), connections.clone(), shutdown.clone());
        tasks.spawn(async move {
            serve_connection(stream, app, limits, id, &connections_of_task, close, shutdown).await;
            connections_of_task.remove(id);
        });
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
        tracing::warn!("HTTP requests still in progress at shutdown were abandoned");
    }
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    id: u64,
    connections: &Arc<Connections>,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    stream.set_read_timeout(Some(limits.idle_timeout));
    let io = ParseErrorBodies::new(TokioIo::new(Box::pin(stream)));
    let tracked = connections.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let (app, tracked) = (app.clone(), tracked.clone());
        tracked.set_idle(id, false);
        async move {
            let response = app.oneshot(request.map(Body::new)).await;
            tracked.set_idle(id, true);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // The request line and header together; larger is answered 431 (with a JSON body, see `parse_errors`).
        .max_buf_size(MAX_HEADER_BYTES)
        // Otherwise hyper keeps a read pending while a handler runs, to notice a client hanging up, and the idle
        // timeout would cut off a control request that waits for the run loop longer than it.
        .half_close(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        // Client errors and timeouts end the connection; they are the client's problem, not worth a log line.
        _ = connection.as_mut() => {}
        () = close.cancelled() => {}
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = close.cancelled() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_a_quarter_of_the_open_file_limit() {
        let limits = Limits::from_config(&ServerConfig::default());
        assert_eq!(limits.max_connections, 64);
        assert_eq!(limits.capped_by_open_files(1_048_576).max_connections, 64);
        assert_eq!(limits.capped_by_open_files(128).max_connections, 32);
        assert_eq!(limits.capped_by_open_files(0).max_connections, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let connections = Connections::default();
        let first = connections.admit(1, 2).expect("room");
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = connections.admit(2, 2).expect("room");
        let third = connections.admit(3, 2).expect("the oldest idle one makes room");
        assert!(first.is_cancelled() && !second.is_cancelled() && !third.is_cancelled());
        connections.set_idle(2, false);
        connections.set_idle(3, false);
        assert!(
            connections.admit(4, 2).is_none(),
            "busy connections are never closed for a newcomer"
        );
        connections.set_idle(3, true);
        assert!(connections.admit(5, 2).is_some());
        assert!(third.is_cancelled() && !second.is_cancelled());
    }
}
