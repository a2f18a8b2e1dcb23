//! The operator HTTP endpoint: health, readiness, Prometheus metrics and a Kafka-Connect-style control API.
//!
//! The server owns no table state. It reads the latest snapshot the run loop publishes on a `watch` channel and
//! forwards control commands to the run loop over an `mpsc` channel, waiting for its answer, so every decision
//! still goes through the one policy.

pub mod metrics;
pub mod savings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::config::{Secret, ServerConfig};
use crate::controller::{ControlCommand, ControlError, ControlRequest, Health, TablesSnapshot};
use crate::http::metrics::Metrics;
use crate::policy::TableStatus;

/// How long a control request waits for the run loop before answering 503.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long requests in progress may take to finish before their connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin; the client waits in
/// the listen backlog meanwhile.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// The HTTP server never holds more than this share of the process's open-file limit, so clients can never
/// take the descriptors the watcher and the Flink client need.
const NOFILE_SHARE_DIVISOR: u64 = 4;

/// Everything the handlers need.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// Readiness inputs.
    pub health: Arc<Health>,
    /// Latest table snapshot.
    pub tables: watch::Receiver<TablesSnapshot>,
    /// Control commands to the run loop.
    pub control: mpsc::Sender<ControlRequest>,
    /// Bearer token required for POST, when set.
    pub token: Option<Secret>,
    /// Largest request body accepted, counted as it is read.
    pub max_body_bytes: usize,
    /// Status of each table an operator may address before the run loop has seen it (it has a SQL template and
    /// is managed): what `GET /tables/{table}` answers until the table shows in [`ServerState::tables`].
    pub unseen: Arc<BTreeMap<String, TableStatus>>,
}

/// An error answer, `{"error_code": 404, "message": "..."}` like Kafka Connect's REST API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.status.as_u16(), "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// The router with every route; exposed for tests that serve it themselves.
pub fn router(state: ServerState) -> Router {
    let authenticated = Router::new()
        .route("/tables/{table}/{action}", post(control))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/tables", get(list_tables))
        .route("/tables/{table}", get(get_table))
        .merge(authenticated)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(middleware::from_fn_with_state(state.max_body_bytes, limit_body))
        .with_state(state)
}

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
                        tracing::warn!(error = %e, "cannot accept an HTTP connection; retrying");
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
    let io = TokioIo::new(Box::pin(stream));
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

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<ServerState>) -> Response {
    match state.health.readiness() {
        Ok(()) => axum::Json(serde_json::json!({ "ready": true })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let content_type = HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// A table as `/tables` shows it: the policy's status, what its scale-to-zero saved, and its job's web UI page.
#[derive(Debug, serde::Serialize)]
struct TableView<'a> {
    #[serde(flatten)]
    status: &'a TableStatus,
    #[serde(flatten)]
    savings: Option<crate::http::savings::TableSavings>,
    job_url: Option<String>,
}

impl<'a> TableView<'a> {
    fn new(state: &ServerState, status: &'a TableStatus) -> Self {
        let savings = &state.metrics.savings;
        TableView {
            status,
            savings: savings.table(&status.table),
            job_url: status.job_id.as_ref().and_then(|id| savings.job_url(id.as_str())),
        }
    }
}

async fn list_tables(State(state): State<ServerState>) -> Response {
    let snapshot = state.tables.borrow().clone();
    let views: Vec<_> = snapshot.values().map(|status| TableView::new(&state, status)).collect();
    axum::Json(views).into_response()
}

/// A path that does not decode (bad percent-encoding, not UTF-8) is answered in JSON like every other error.
fn bad_path(rejection: &PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
}

async fn get_table(
    State(state): State<ServerState>,
    table: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(table) = table.map_err(|r| bad_path(&r))?;
    let snapshot = state.tables.borrow().clone();
    snapshot
        .get(&table)
        .or_else(|| state.unseen.get(&table))
        .map(|status| axum::Json(TableView::new(&state, status)).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown table: {table}")))
}

async fn control(
    State(state): State<ServerState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((table, action)) = path.map_err(|r| bad_path(&r))?;
    let command = match action.as_str() {
        "trigger" => ControlCommand::Trigger,
        "pause" => ControlCommand::Pause,
        "resume" => ControlCommand::Resume,
        "stop" => ControlCommand::Stop,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown action {action:?}: expected trigger, pause, resume or stop"),
            ));
        }
    };
    let (reply, answer) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the run loop is not accepting commands",
        )
    };
    state
        .control
        .send(ControlRequest { table, command, reply })
        .await
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
        Ok(Ok(Ok(status))) => Ok((StatusCode::ACCEPTED, axum::Json(status)).into_response()),
        Ok(Ok(Err(ControlError::UnknownTable(table)))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, format!("unknown table: {table}")))
        }
        Ok(Err(_)) | Err(_) => Err(unavailable()),
    }
}

async fn require_token(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110 section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// Compares without an early exit, so response time does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the whole body, at most `limit` bytes of it, before the handler runs: a request whose body is too big
/// (declared, or chunked and counted as it arrives) is answered 413 and never acts.
async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => too_large(),
        Err(e) => ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}")).into_response(),
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

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer 007"), Some("007"));
        assert_eq!(bearer_token("bearer 007"), Some("007"));
        assert_eq!(bearer_token("BEARER  007"), Some("007"));
        assert_eq!(bearer_token("Basic 007"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
