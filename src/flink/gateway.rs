//! Client of the Flink SQL Gateway REST endpoint: statements run in order in a session.
//!
//! A session carries state (`SET` values, temporary tables) and the gateway runs one session's statements one
//! at a time. Every batch runs in a session of its own ([`SqlGateway::execute_in_own_session`]), closed
//! afterwards: starts of different tables run side by side without mixing their `SET`s, and nothing of a start
//! is left in the gateway, so no batch needs to undo what it did. When the gateway forgets the session half-way
//! (gateway restart), the client opens a new one and replays the batch from its first statement, which is safe
//! because a batch is a table's `SET`s, DDL and one pinned-id INSERT.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::http::Rest;
use super::{Backoff, Fault, FlinkError, short_statement, sleep_until_next};
use crate::lease::LeaseGuard;
use crate::model::JobId;
use crate::sql::Credentials;

/// Name the sessions are opened with, visible in the gateway's logs.
const SESSION_NAME: &str = "cdc-orchestrator";

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

/// A SQL Gateway client; every batch opens a session of its own.
#[derive(Debug)]
pub struct SqlGateway {
    rest: Rest,
    /// `v2` when the gateway speaks it (results carry `jobID`), else `v1`.
    result_version: OnceCell<&'static str>,
    poll: Backoff,
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
            result_version: OnceCell::new(),
            poll,
        })
    }

    /// Masks `credentials` wherever this client logs a statement and in every error it returns.
    pub fn set_redaction(&mut self, credentials: Credentials) {
        self.rest.set_redaction(credentials);
    }

    /// Asks `guard` immediately before opening a session for a batch and before each statement.
    pub fn set_guard(&mut self, guard: LeaseGuard) {
        self.rest.set_guard(guard);
    }

    /// Reads at most `bytes` of any answer of the gateway (`flink.max_response_bytes`).
    pub fn set_max_response_bytes(&mut self, bytes: u32) {
        self.rest.set_max_response_bytes(bytes);
    }

    /// Runs `statements` in order in a session opened for them and closed afterwards (best effort), and returns
    /// their results. Stops at the first failing statement; the whole batch must finish within `limit`. A
    /// session the gateway forgets half-way (gateway restart) is replaced once and the batch replayed.
    ///
    /// An error that names a statement has its credentials masked (errors of the requests themselves are masked
    /// where they are read).
    pub async fn execute_in_own_session(
        &self,
        statements: &[String],
        limit: Duration,
    ) -> Result<Vec<StatementResult>, FlinkError> {
        self.execute(statements, limit)
            .await
            .map_err(|e| self.rest.redact_error(e))
    }

    async fn execute(&self, statements: &[String], limit: Duration) -> Result<Vec<StatementResult>, FlinkError> {
        let deadline = Instant::now() + limit;
        let mut reopened = false;
        loop {
            // Before the session too: a replica that may not act leaves no session behind in the gateway.
            self.rest.may_change("POST /v1/sessions")?;
            let handle = self.open_session().await?;
            let outcome = self.run_all(&handle, statements, deadline).await;
            match outcome {
                Err(e) if e.fault() == Fault::SessionMissing => {
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

    /// Closes one session. Best effort: an expired session is already gone, and the gateway drops a forgotten
    /// one at its idle timeout.
    async fn close_session(&self, handle: &str) {
        let path = format!("v1/sessions/{handle}");
        if let Err(e) = self.rest.send(Method::DELETE, &path, None).await {
            tracing::debug!(session = %handle, error = %crate::logging::chain(&e), "closing the SQL Gateway session failed");
        }
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
        tracing::debug!(statement = %self.rest.redact(&short_statement(statement)), "executing");
        let body = json!({ "statement": statement });
        let path = format!("v1/sessions/{session}/statements");
        // Every statement, not only the INSERT: the check costs nothing, and no statement of a batch then goes
        // out after the lease ran out.
        self.rest.may_change("POST /v1/sessions/:session/statements")?;
        let op: ExecuteResponse = self.rest.call(Method::POST, &path, Some(&body)).await?;
        let op_path = format!("v1/sessions/{session}/operations/{}", op.operation_handle);
        let outcome = self.finish(&op_path, statement, deadline).await;
        if !is_session_missing(&outcome) {
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
                Err(e) if e.is_transient() && e.fault() != Fault::SessionMissing && Instant::now() < deadline => {
                    tracing::debug!(error = %crate::logging::chain(&e), "operation status poll failed; retrying");
                }
                Err(e) => return Err(e),
            }
            if DONE_STATES.contains(&status.as_str()) {
                break;
            }
            if Instant::now() >= deadline {
                // Cancelling the operation may cancel the job it submits: only the leader does.
                if self
                    .rest
                    .may_change("POST /v1/sessions/:session/operations/:operation/cancel")
                    .is_ok()
                {
                    let _ = self.rest.send(Method::POST, &format!("{op_path}/cancel"), None).await;
                }
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
                fault: Fault::Other,
            }),
        }
    }

    /// The error of a failed operation: fetching its result makes the gateway answer with the exception.
    async fn error_of(&self, op_path: &str, statement: &str) -> FlinkError {
        let version = self.result_version().await.unwrap_or("v1");
        let path = format!("{}/result/0?rowFormat=JSON", versioned(op_path, version));
        match self.rest.send(Method::GET, &path, None).await {
            Err(FlinkError::Api { root_cause, fault, .. }) if fault != Fault::SessionMissing => FlinkError::Statement {
                statement: short_statement(statement),
                root_cause,
                fault,
            },
            Err(e) => e,
            Ok(_) => FlinkError::Statement {
                statement: short_statement(statement),
                root_cause: "operation ended ERROR without an error message".to_owned(),
                fault: Fault::Other,
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
                Err(e) if e.is_transient() && e.fault() != Fault::SessionMissing && Instant::now() < deadline => {
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

fn is_session_missing<T>(outcome: &Result<T, FlinkError>) -> bool {
    matches!(outcome, Err(e) if e.fault() == Fault::SessionMissing)
}

/// `v1/sessions/...` as `v2/sessions/...`.
fn versioned(path: &str, version: &str) -> String {
    match path.strip_prefix("v1/") {
        Some(rest) => format!("{version}/{rest}"),
        None => path.to_owned(),
    }
}
