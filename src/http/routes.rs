//! The routes of the operator API and their handlers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot, watch};

use super::api::{ApiError, TableJson, TableView};
use super::middleware::{limit_body, refuse_cross_site, require_token};
use crate::config::Secret;
use crate::controller::{ControlCommand, ControlError, ControlRequest, ReloadReport, ReloadRequest, TablesSnapshot};
use crate::lease::{Leadership, Role};
use crate::model::TableName;
use crate::policy::TableStatus;
use crate::telemetry::{Health, Metrics};

/// How long a control request waits for the run loop before answering 503.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Reload requests (`POST /reload`) to the reloader; `None` answers 503, as a sidecar that cannot reload.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// Bearer token required for POST, when set.
    pub token: Option<Secret>,
    /// Without a token, the host names besides IP literals and `localhost` a state-changing request may carry in
    /// its `Host` header (`server.allowed_hosts`).
    pub allowed_hosts: Arc<[String]>,
    /// Largest request body accepted, counted as it is read.
    pub max_body_bytes: usize,
    /// Status of each table an operator may address before the run loop has seen it (it has a SQL template and
    /// is managed): what `GET /tables/{table}` answers until the table shows in [`ServerState::tables`].
    pub unseen: Arc<BTreeMap<String, TableStatus>>,
    /// This replica's role: a standby is not ready, answers control commands 503 with the leader's name, and
    /// says so in `GET /tables`.
    pub leadership: Leadership,
}

/// The router with every route; exposed for tests that serve it themselves.
pub fn router(state: ServerState) -> Router {
    let authenticated = Router::new()
        .route("/tables/{table}/{action}", post(control))
        .route("/reload", post(reload))
        .route_layer(from_fn_with_state(state.clone(), require_token))
        // Outside the token check: a page's request is refused as such, whether it carries a token or not.
        .route_layer(from_fn_with_state(state.clone(), refuse_cross_site));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/tables", get(list_tables))
        .route("/tables/{table}", get(get_table))
        .merge(authenticated)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(from_fn_with_state(state.max_body_bytes, limit_body))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The header of `GET /tables` that names the replica's role (`leader`, `standby`), so a client sees it even
/// without a table; `CDC-Leader` names the leader, when a standby knows it.
pub const ROLE_HEADER: &str = "cdc-role";
/// See [`ROLE_HEADER`].
pub const LEADER_HEADER: &str = "cdc-leader";

async fn readyz(State(state): State<ServerState>) -> Response {
    // A standby is never ready: a Service then routes to the leader, the only replica that acts.
    if let Role::Standby { leader } = state.leadership.role() {
        let reason = match &leader {
            Some(leader) => format!("standby: {leader} leads"),
            None => "standby: no leader known yet".to_owned(),
        };
        let body = serde_json::json!({ "ready": false, "role": "standby", "leader": leader, "reason": reason });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    match state.health.readiness() {
        Ok(()) => axum::Json(serde_json::json!({ "ready": true, "role": "leader" })).into_response(),
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

async fn list_tables(State(state): State<ServerState>) -> Response {
    let snapshot = state.tables.borrow().clone();
    let views: Vec<_> = snapshot.values().map(|status| view(&state, status)).collect();
    let role = state.leadership.role();
    let mut response = axum::Json(views).into_response();
    let headers = response.headers_mut();
    headers.insert(ROLE_HEADER, HeaderValue::from_static(role.as_str()));
    // A holder's name that is no header value (the Lease is the API server's text) is left out here; the
    // JSON of /readyz and of a refused command still names it, escaped.
    if let Role::Standby { leader: Some(leader) } = &role
        && let Ok(value) = HeaderValue::from_str(leader)
    {
        headers.insert(LEADER_HEADER, value);
    }
    response
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
    let table = TableName::parse(&table).map_err(|_| unknown_table(&table))?;
    let snapshot = state.tables.borrow().clone();
    snapshot
        .get(table.as_str())
        .or_else(|| state.unseen.get(table.as_str()))
        .map(|status| axum::Json(view(&state, status)).into_response())
        .ok_or_else(|| unknown_table(&table))
}

/// A table this sidecar does not manage, or a path segment that is no table name at all.
fn unknown_table(table: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("unknown table: {table}"))
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
    // Not a table name: no table of this sidecar, so the run loop need not be asked.
    let table = TableName::parse(&table).map_err(|_| unknown_table(&table))?;
    // A standby does nothing: the leader takes commands (the run loop refuses too, should the role change).
    if let Role::Standby { leader } = state.leadership.role() {
        return Ok(not_leader(leader));
    }
    let (reply, answer) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the run loop is not accepting commands",
        )
    };
    state
        .control
        .send(ControlRequest {
            table: table.into_string(),
            command,
            reply,
        })
        .await
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
        Ok(Ok(Ok(status))) => Ok((StatusCode::ACCEPTED, axum::Json(TableJson(&status))).into_response()),
        Ok(Ok(Err(ControlError::UnknownTable(table)))) => Err(unknown_table(&table)),
        Ok(Ok(Err(ControlError::NotLeader { leader }))) => Ok(not_leader(leader)),
        Ok(Err(_)) | Err(_) => Err(unavailable()),
    }
}

/// 503 from a standby, naming the leader so the caller can go there: `{"error_code": 503, "message": "...",
/// "leader": "pod-b"}` (`null` when not known).
fn not_leader(leader: Option<String>) -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let message = match &leader {
        Some(leader) => format!("this replica is a standby; {leader} leads and takes commands"),
        None => "this replica is a standby; no leader is known yet".to_owned(),
    };
    let body = serde_json::json!({ "error_code": status.as_u16(), "message": message, "leader": leader });
    (status, axum::Json(body)).into_response()
}

/// How long `POST /reload` waits for the reload (every template is read and rendered) before answering 503.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /reload`: re-reads the configuration and the templates, as SIGHUP does. 200 with what changed, 422 with
/// start-up's messages when the new set is refused (the old one stays), 503 when no reload can be carried out.
async fn reload(State(state): State<ServerState>) -> Result<Response, ApiError> {
    let unavailable = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the sidecar is not accepting reloads");
    let sender = state.reload.as_ref().ok_or_else(unavailable)?;
    let (reply, answer) = oneshot::channel();
    sender.send(ReloadRequest { reply }).await.map_err(|_| unavailable())?;
    match tokio::time::timeout(RELOAD_TIMEOUT, answer).await {
        Ok(Ok(Ok(report))) => Ok(axum::Json(report_json(&report)).into_response()),
        Ok(Ok(Err(refused))) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let body = serde_json::json!({
                "error_code": status.as_u16(),
                "message": refused.to_string(),
                "messages": refused.messages,
            });
            Ok((status, axum::Json(body)).into_response())
        }
        Ok(Err(_)) | Err(_) => Err(unavailable()),
    }
}

/// What a reload changed, as `POST /reload` answers it.
fn report_json(report: &ReloadReport) -> serde_json::Value {
    let t = &report.templates;
    serde_json::json!({
        "reloaded": true,
        "tables_added": t.added,
        "tables_removed": t.removed,
        "tables_changed": t.changed,
        "setup_changed": t.setup_changed,
        "policy_keys_changed": report.policy_keys,
        "needs_restart": report.needs_restart,
    })
}

/// A table with what its scale-to-zero saved and its job's web UI page.
fn view<'a>(state: &ServerState, status: &'a TableStatus) -> TableView<'a> {
    let savings = state.metrics.savings();
    TableView {
        status: TableJson(status),
        savings: savings.table(&status.table),
        job_url: status.job_id.as_ref().and_then(|id| savings.job_url(id.as_str())),
        role: state.leadership.role().as_str(),
    }
}
