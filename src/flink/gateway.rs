//! Client of the Flink SQL Gateway REST endpoint: statements run in order in a session.
//!
//! A session carries state (`SET` values, temporary tables) and the gateway runs one session's statements one
//! at a time. The launcher runs each start in a session of its own ([`SqlGateway::execute_in_own_session`]),
//! closed afterwards: starts of different tables run side by side without mixing their `SET`s, and nothing of
//! a start is left in the gateway. [`SqlGateway::execute_batch`] keeps one long-lived session instead (heartbeats
//! keep it alive), for callers that want one. When the gateway no longer knows a session (idle expiry, gateway
//! restart), the client opens a new one and replays the batch from its first statement, which is safe because a
//! batch is a table's `SET`s, DDL and one pinned-id INSERT.

use std::sync::{Arc, Weak};
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use super::http::Rest;
use super::{Backoff, FlinkError, JobId, short_statement, sleep_until_next};
use crate::sql::Credentials;

/// How often the session is kept alive; well below the gateway's default idle timeout of 10 minutes.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);

/// Name the sessions are opened with, visible in the gateway's logs.
const SESSION_NAME: &str = "cdc-orchestrator";

/// Time allowed for the cleanup statements after a batch (DROP TEMPORARY TABLE, RESET: quick by nature).
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

/// Statement operation states after which polling stops.
const DONE_STATES: [&str; 5] = ["FINISHED", "ERROR", "CANCELED", "CLOSED", "TIMEOUT"];

/// What one statement produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementResult {
    /// The job the statement submitted (INSERT, EXECUTE STATEMENT SET), if any.
    pub job_id: Option<JobId>,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each the list of field values.
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A SQL Gateway client holding one session.
#[derive(Debug)]
pub struct SqlGateway {
    rest: Rest,
    /// The open session, if any. Locked for a whole batch: the session is the unit of statement ordering.
    session: Mutex<Option<String>>,
    /// `v2` when the gateway speaks it (results carry `jobID`), else `v1`.
    result_version: OnceCell<&'static str>,
    poll: Backoff,
    /// The credentials the statements carry, masked wherever a statement is logged.
    redact: Credentials,
}

#[derive(Deserialize)]
struct OpenSessionResponse {
    #[serde(rename = "sessionHandle")]
    session_handle: String,
}

#[derive(Deserialize)]
struct ExecuteResponse {
    #[serde(rename = "operationHandle")]
    operation_handle: String,
}

#[derive(Deserialize)]
struct StatusResponse {
    status: String,
}

#[derive(Deserialize)]
struct ApiVersions {
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FetchResponse {
    results: ResultInfo,
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(rename = "nextResultUri")]
    next_result_uri: Option<String>,
    #[serde(rename = "jobID")]
    job_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultInfo {
    columns: Vec<ColumnInfo>,
    data: Vec<RowData>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ColumnInfo {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RowData {
    fields: Vec<serde_json::Value>,
}

impl SqlGateway {
    /// A client of the gateway at `url`; no request is made until the first statement.
    pub fn new(http: reqwest::Client, url: &str, poll: Backoff) -> Result<SqlGateway, FlinkError> {
        Ok(SqlGateway {
            rest: Rest::new(http, url)?,
            session: Mutex::new(None),
            result_version: OnceCell::new(),
            poll,
            redact: Credentials::default(),
        })
    }

    /// Masks `credentials` wherever this client logs a statement.
    pub fn set_redaction(&mut self, credentials: Credentials) {
        self.redact = credentials;
    }

    /// Runs `statements` in order in the session, each to completion, and returns their results. Stops at the
    /// first failing statement. The whole batch must finish within `limit`. Then, whatever the outcome, runs
    /// `cleanup` (best effort) so the long-lived session keeps no state of the batch, e.g. temporary tables
    /// that the next batch creates again.
    pub async fn execute_batch(
        &self,
        statements: &[String],
        cleanup: &[String],
        limit: Duration,
    ) -> Result<Vec<StatementResult>, FlinkError> {
        let deadline = Instant::now() + limit;
        let mut session = self.session.lock().await;
        let mut reopened = false;
        loop {
            let handle = match session.as_ref() {
                Some(h) => h.clone(),
                None => session.insert(self.open_session().await?).clone(),
            };
            let outcome = self.run_all(&handle, statements, deadline).await;
            match outcome {
                Err(e) if is_session_missing(&e) => {
                    // The session and all its state are gone: nothing to clean up.
                    *session = None;
                    if reopened {
                        return Err(e);
                    }
                    tracing::info!(session = %handle, "SQL Gateway session expired; opening a new one");
                    reopened = true;
                }
                outcome => {
                    let cleanup_deadline = Instant::now() + CLEANUP_LIMIT;
                    for statement in cleanup {
                        if let Err(e) = self.run_one(&handle, statement, cleanup_deadline).await {
                            tracing::warn!(error = %e, "session cleanup failed");
                            if is_session_missing(&e) {
                                *session = None;
                                break;
                            }
                        }
                    }
                    return outcome;
                }
            }
        }
    }

    /// Runs `statements` in order in a session opened for them and closed afterwards (best effort), and returns
    /// their results. Stops at the first failing statement; the whole batch must finish within `limit`. A
    /// session the gateway forgets half-way (gateway restart) is replaced once and the batch replayed.
    pub async fn execute_in_own_session(
        &self,
        statements: &[String],
        limit: Duration,
    ) -> Result<Vec<StatementResult>, FlinkError> {
        let deadline = Instant::now() + limit;
        let mut reopened = false;
        loop {
            let handle = self.open_session().await?;
            let outcome = self.run_all(&handle, statements, deadline).await;
            match outcome {
                Err(e) if is_session_missing(&e) => {
                    if reopened {
                        return Err(e);
                    }
                    tracing::info!(session = %handle, "SQL Gateway session lost mid-batch; opening a new one");
                    reopened = true;
                }
                outcome => {
                    self.close_session(&handle).await;
                    return outcome;
                }
            }
        }
    }

    /// Keeps the session alive; reopens it when the gateway no longer knows it. Skips when a batch is running,
    /// since running statements keep the session alive themselves.
    pub async fn heartbeat(&self) -> Result<(), FlinkError> {
        let Ok(mut session) = self.session.try_lock() else {
            return Ok(());
        };
        let Some(handle) = session.clone() else {
            return Ok(());
        };
        let path = format!("v1/sessions/{handle}/heartbeat");
        match self.rest.send(Method::POST, &path, Some(&json!({}))).await {
            Err(FlinkError::Api {
                session_missing: true, ..
            }) => {
                tracing::info!(session = %handle, "SQL Gateway session expired; opening a new one");
                *session = None;
                *session = Some(self.open_session().await?);
                Ok(())
            }
            Err(e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// Sends a heartbeat every `every` until the gateway client is dropped.
    pub fn spawn_heartbeats(gateway: &Arc<SqlGateway>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<SqlGateway> = Arc::downgrade(gateway);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(gateway) = weak.upgrade() else { return };
                if let Err(e) = gateway.heartbeat().await {
                    tracing::warn!(error = %e, "SQL Gateway heartbeat failed");
                }
            }
        })
    }

    /// Closes the session, if one is open. Best effort: an expired session is already gone.
    pub async fn close(&self) {
        if let Some(handle) = self.session.lock().await.take() {
            self.close_session(&handle).await;
        }
    }

    /// Closes one session. Best effort: an expired session is already gone, and the gateway drops a forgotten
    /// one at its idle timeout.
    async fn close_session(&self, handle: &str) {
        let path = format!("v1/sessions/{handle}");
        if let Err(e) = self.rest.send(Method::DELETE, &path, None).await {
            tracing::debug!(session = %handle, error = %e, "closing the SQL Gateway session failed");
        }
    }

    /// The handle of the open session, if any (for diagnostics and tests).
    pub async fn session_handle(&self) -> Option<String> {
        self.session.lock().await.clone()
    }

    async fn open_session(&self) -> Result<String, FlinkError> {
        let body = json!({ "sessionName": SESSION_NAME, "properties": {} });
        let opened: OpenSessionResponse = self.rest.call(Method::POST, "v1/sessions", Some(&body)).await?;
        tracing::debug!(session = %opened.session_handle, "opened SQL Gateway session");
        Ok(opened.session_handle)
    }

    async fn run_all(
        &self,
        session: &str,
        statements: &[String],
        deadline: Instant,
    ) -> Result<Vec<StatementResult>, FlinkError> {
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(self.run_one(session, statement, deadline).await?);
        }
        Ok(results)
    }

    async fn run_one(&self, session: &str, statement: &str, deadline: Instant) -> Result<StatementResult, FlinkError> {
        tracing::debug!(statement = %self.redact.redact(&short_statement(statement)), "executing");
        let body = json!({ "statement": statement });
        let path = format!("v1/sessions/{session}/statements");
        let op: ExecuteResponse = self.rest.call(Method::POST, &path, Some(&body)).await?;
        let op_path = format!("v1/sessions/{session}/operations/{}", op.operation_handle);
        let outcome = self.finish(&op_path, statement, deadline).await;
        if !matches!(
            outcome,
            Err(FlinkError::Api {
                session_missing: true,
                ..
            })
        ) {
            // Frees the operation's resources in the gateway; it would be dropped with the session anyway.
            let _ = self.rest.send(Method::DELETE, &format!("{op_path}/close"), None).await;
        }
        outcome
    }

    async fn finish(&self, op_path: &str, statement: &str, deadline: Instant) -> Result<StatementResult, FlinkError> {
        let started = Instant::now();
        let mut delays = self.poll.delays();
        let mut status = String::from("unknown");
        loop {
            match self
                .rest
                .call::<StatusResponse>(Method::GET, &format!("{op_path}/status"), None)
                .await
            {
                Ok(s) => status = s.status,
                Err(e) if e.is_transient() && !is_session_missing(&e) && Instant::now() < deadline => {
                    tracing::debug!(error = %e, "operation status poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            if DONE_STATES.contains(&status.as_str()) {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.rest.send(Method::POST, &format!("{op_path}/cancel"), None).await;
                return Err(FlinkError::StatementTimeout {
                    statement: short_statement(statement),
                    status,
                    waited: started.elapsed(),
                });
            }
            sleep_until_next(&mut delays, deadline).await;
        }
        match status.as_str() {
            "FINISHED" => self.fetch(op_path, statement, deadline).await,
            "ERROR" => Err(self.error_of(op_path, statement).await),
            other => Err(FlinkError::Statement {
                statement: short_statement(statement),
                root_cause: format!("operation ended {other}"),
            }),
        }
    }

    /// The error of a failed operation: fetching its result makes the gateway answer with the exception.
    async fn error_of(&self, op_path: &str, statement: &str) -> FlinkError {
        let version = self.result_version().await.unwrap_or("v1");
        let path = format!("{}/result/0?rowFormat=JSON", versioned(op_path, version));
        match self.rest.send(Method::GET, &path, None).await {
            Err(FlinkError::Api {
                root_cause,
                session_missing: false,
                ..
            }) => FlinkError::Statement {
                statement: short_statement(statement),
                root_cause,
            },
            Err(e) => e,
            Ok(_) => FlinkError::Statement {
                statement: short_statement(statement),
                root_cause: "operation ended ERROR without an error message".to_owned(),
            },
        }
    }

    async fn fetch(&self, op_path: &str, statement: &str, deadline: Instant) -> Result<StatementResult, FlinkError> {
        let version = self.result_version().await?;
        let mut next = Some(format!("{}/result/0?rowFormat=JSON", versioned(op_path, version)));
        let mut result = StatementResult::default();
        let mut delays = self.poll.delays();
        while let Some(path) = next.take() {
            let page: FetchResponse = match self.rest.call(Method::GET, &path, None).await {
                Ok(page) => page,
                Err(e) if e.is_transient() && !is_session_missing(&e) && Instant::now() < deadline => {
                    sleep_until_next(&mut delays, deadline).await;
                    next = Some(path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if result.columns.is_empty() {
                result.columns = page.results.columns.into_iter().map(|c| c.name).collect();
            }
            result.rows.extend(page.results.data.into_iter().map(|r| r.fields));
            if let Some(id) = page.job_id.as_deref().and_then(JobId::parse) {
                result.job_id = Some(id);
            }
            match page.result_type.as_str() {
                "EOS" => break,
                "NOT_READY" => {
                    if Instant::now() >= deadline {
                        return Err(FlinkError::StatementTimeout {
                            statement: short_statement(statement),
                            status: "NOT_READY".to_owned(),
                            waited: Duration::ZERO,
                        });
                    }
                    sleep_until_next(&mut delays, deadline).await;
                    next = Some(path);
                }
                _ => {
                    // An INSERT's result is the job id and nothing more; do not page through a query's rows.
                    if result.job_id.is_some() || Instant::now() >= deadline {
                        break;
                    }
                    next = page.next_result_uri.map(|uri| uri.trim_start_matches('/').to_owned());
                }
            }
        }
        if result.job_id.is_none() {
            // v1 answers have no `jobID`; an INSERT's only column is `job id`.
            let column = result.columns.iter().position(|c| c.eq_ignore_ascii_case("job id"));
            result.job_id = column
                .and_then(|i| result.rows.first().and_then(|row| row.get(i)))
                .and_then(|v| v.as_str())
                .and_then(JobId::parse);
        }
        Ok(result)
    }

    async fn result_version(&self) -> Result<&'static str, FlinkError> {
        self.result_version
            .get_or_try_init(|| async {
                let versions: ApiVersions = self.rest.call(Method::GET, "v1/api_versions", None).await?;
                let v2 = versions
                    .versions
                    .iter()
                    .any(|v| matches!(v.to_ascii_uppercase().as_str(), "V2" | "V3" | "V4"));
                Ok(if v2 { "v2" } else { "v1" })
            })
            .await
            .copied()
    }
}

fn is_session_missing(e: &FlinkError) -> bool {
    matches!(
        e,
        FlinkError::Api {
            session_missing: true,
            ..
        }
    )
}

/// `v1/sessions/...` as `v2/sessions/...`.
fn versioned(path: &str, version: &str) -> String {
    match path.strip_prefix("v1/") {
        Some(rest) => format!("{version}/{rest}"),
        None => path.to_owned(),
    }
}
