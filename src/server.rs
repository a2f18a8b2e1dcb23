//! The operator HTTP endpoint: health, readiness, Prometheus metrics and a Kafka-Connect-style control API.
//!
//! The server owns no table state. It reads the latest snapshot the run loop publishes on a `watch` channel and
//! forwards control commands to the run loop over an `mpsc` channel, waiting for its answer, so every decision
//! still goes through the one policy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::policy::TableStatus;

/// Largest request body accepted; the API takes no bodies, so anything bigger is a mistake or an attack.
const MAX_BODY_BYTES: u64 = 4096;
/// How long a control request waits for the run loop before answering 503.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest view of every table, published by the run loop.
pub type TablesSnapshot = Arc<BTreeMap<String, TableStatus>>;

/// An operator command for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlCommand {
    /// Start the job now if it is not running (still honouring the throttle, never a second job).
    Trigger,
    /// Suspend starts of the table.
    Pause,
    /// Allow starts again; starts at once if changes are pending.
    Resume,
    /// Stop the running job with a savepoint.
    Stop,
}

/// Why the run loop refused a control command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The table is not managed by this sidecar.
    #[error("unknown table: {0}")]
    UnknownTable(String),
    /// The command does not apply in the table's current state.
    #[error("{0}")]
    Conflict(String),
}

/// A control command on its way to the run loop, with the channel for the answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// The table.
    pub table: String,
    /// What to do.
    pub command: ControlCommand,
    /// Where the run loop answers with the table's new status.
    pub reply: oneshot::Sender<Result<TableStatus, ControlError>>,
}

/// Readiness inputs: when Kafka and Flink last answered, and why they failed if they did.
#[derive(Debug)]
pub struct Health {
    kafka: Mutex<Dependency>,
    flink: Mutex<Dependency>,
}

#[derive(Debug)]
struct Dependency {
    max_age: Duration,
    ok_at: Option<Instant>,
    error: Option<String>,
}

impl Dependency {
    fn new(max_age: Duration) -> Mutex<Self> {
        Mutex::new(Dependency {
            max_age,
            ok_at: None,
            error: None,
        })
    }
}

impl Health {
    /// Readiness requires Kafka to have answered within `kafka_max_age` and Flink within `flink_max_age`
    /// (each a few of its polling periods, so one slow answer does not flap readiness).
    pub fn new(kafka_max_age: Duration, flink_max_age: Duration) -> Self {
        Health {
            kafka: Dependency::new(kafka_max_age),
            flink: Dependency::new(flink_max_age),
        }
    }

    /// Kafka metadata was read successfully.
    pub fn kafka_ok(&self) {
        set(&self.kafka, Ok(()));
    }

    /// A Kafka call failed.
    pub fn kafka_failed(&self, error: impl Into<String>) {
        set(&self.kafka, Err(error.into()));
    }

    /// Flink answered.
    pub fn flink_ok(&self) {
        set(&self.flink, Ok(()));
    }

    /// A Flink call failed.
    pub fn flink_failed(&self, error: impl Into<String>) {
        set(&self.flink, Err(error.into()));
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let now = Instant::now();
        for (name, dep) in [("kafka", &self.kafka), ("flink", &self.flink)] {
            let dep = dep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match (dep.ok_at, &dep.error) {
                (_, Some(error)) => return Err(format!("{name}: {error}")),
                (None, None) => return Err(format!("{name}: not contacted yet")),
                (Some(at), None) if now.duration_since(at) > dep.max_age => {
                    return Err(format!("{name}: no answer for {}s", now.duration_since(at).as_secs()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Health {
    /// Each dependency and whether it counts as up for readiness (answered recently, last call did not fail), for
    /// the `cdc_dependency_up` metric.
    pub fn dependencies_up(&self) -> [(&'static str, bool); 2] {
        let now = Instant::now();
        let up = |dep: &Mutex<Dependency>| {
            let dep = dep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            dep.error.is_none() && dep.ok_at.is_some_and(|at| now.duration_since(at) <= dep.max_age)
        };
        [("kafka", up(&self.kafka)), ("flink", up(&self.flink))]
    }
}

fn set(dep: &Mutex<Dependency>, result: Result<(), String>) {
    let mut dep = dep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match result {
        Ok(()) => {
            dep.ok_at = Some(Instant::now());
            dep.error = None;
        }
        Err(error) => dep.error = Some(error),
    }
}

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
        .layer(middleware::from_fn(limit_body))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ServerState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
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
    savings: Option<crate::savings::TableSavings>,
    job_url: Option<String>,
}

impl<'a> TableView<'a> {
    fn new(state: &ServerState, status: &'a TableStatus) -> Self {
        let savings = &state.metrics.savings;
        TableView {
            status,
            savings: savings.table(&status.table),
            job_url: status.job_id.as_deref().and_then(|id| savings.job_url(id)),
        }
    }
}

async fn list_tables(State(state): State<ServerState>) -> Response {
    let snapshot = state.tables.borrow().clone();
    let views: Vec<_> = snapshot.values().map(|status| TableView::new(&state, status)).collect();
    axum::Json(views).into_response()
}

async fn get_table(State(state): State<ServerState>, Path(table): Path<String>) -> Result<Response, ApiError> {
    let snapshot = state.tables.borrow().clone();
    snapshot
        .get(&table)
        .map(|status| axum::Json(TableView::new(&state, status)).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("unknown table: {table}")))
}

async fn control(
    State(state): State<ServerState>,
    Path((table, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
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
        Ok(Ok(Err(e))) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
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
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares without an early exit, so response time does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn limit_body(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_needs_both_dependencies_recently() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        assert_eq!(health.readiness(), Err("kafka: not contacted yet".to_owned()));
        health.kafka_ok();
        assert_eq!(health.readiness(), Err("flink: not contacted yet".to_owned()));
        health.flink_ok();
        assert_eq!(health.readiness(), Ok(()));
        health.flink_failed("connection refused");
        assert_eq!(health.readiness(), Err("flink: connection refused".to_owned()));
        health.flink_ok();
        tokio::time::advance(Duration::from_secs(31)).await;
        health.flink_ok();
        assert_eq!(health.readiness(), Err("kafka: no answer for 31s".to_owned()));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
