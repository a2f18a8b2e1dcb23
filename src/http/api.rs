//! The JSON the operator API answers with: types of its own, so the policy's types can change without changing
//! the API. Field names and order are the API; `GET /tables` clients (the `status` command, dashboards) parse them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::savings::TableSavings;
use crate::policy::{JobStatus, NextAction, NextStep, TableState, TableStatus, WaitCause};

/// A table's state as the policy reports it: the body of a control command's answer, and the first fields of
/// [`TableView`]. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableJson {
    /// The table.
    pub table: String,
    /// What the policy decided for the table (`idle`, `pending`, `starting`, `running`, ...).
    pub state: TableState,
    /// Starts are suspended (config or operator).
    pub paused: bool,
    /// The generation of the latest start or adopted job.
    pub generation: u64,
    /// The current job, when known.
    pub job_id: Option<String>,
    /// Flink's state of the current job as Flink last reported it.
    pub job_state: Option<JobStatus>,
    /// Since when the current job is in its state.
    pub job_since: Option<u64>,
    /// When the last record was seen.
    pub last_record_at: Option<u64>,
    /// When the last change (configured operation) was seen.
    pub last_change_at: Option<u64>,
    /// Source timestamp of the newest decoded record.
    pub newest_record_ts_ms: Option<i64>,
    /// Last reported consumer lag.
    pub lag: Option<u64>,
    /// Since when changes wait for a job.
    pub pending_since: Option<u64>,
    /// Consecutive failed starts or failed jobs.
    pub consecutive_failures: u32,
    /// When the last start was issued.
    pub last_start_at: Option<u64>,
    /// Second jobs of the table being stopped.
    pub duplicate_jobs: Vec<String>,
    /// What the policy will do next, if anything.
    pub next: Option<NextJson>,
}

/// The next thing the policy plans for a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextJson {
    /// `start` or `stop`.
    pub action: NextAction,
    /// When, if it is known.
    pub at: Option<u64>,
    /// What it waits for, if anything.
    pub waiting_for: Option<WaitCause>,
}

impl From<&TableStatus> for TableJson {
    fn from(status: &TableStatus) -> Self {
        TableJson {
            table: status.table.clone(),
            state: status.state,
            paused: status.paused,
            generation: status.generation,
            job_id: status.job_id.clone(),
            job_state: status.job_state,
            job_since: status.job_since.map(|m| m.0),
            last_record_at: status.last_record_at.map(|m| m.0),
            last_change_at: status.last_change_at.map(|m| m.0),
            newest_record_ts_ms: status.newest_record_ts_ms,
            lag: status.lag,
            pending_since: status.pending_since.map(|m| m.0),
            consecutive_failures: status.consecutive_failures,
            last_start_at: status.last_start_at.map(|m| m.0),
            duplicate_jobs: status.duplicate_jobs.clone(),
            next: status.next.as_ref().map(NextJson::from),
        }
    }
}

impl From<&NextStep> for NextJson {
    fn from(next: &NextStep) -> Self {
        NextJson {
            action: next.action,
            at: next.at.map(|m| m.0),
            waiting_for: next.waiting_for,
        }
    }
}

/// A table as `GET /tables` and `GET /tables/{table}` show it: its state, what its scale-to-zero saved, and its
/// job's web UI page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableView {
    /// The policy's view.
    #[serde(flatten)]
    pub status: TableJson,
    /// The savings, once the table was counted.
    #[serde(flatten)]
    pub savings: Option<TableSavings>,
    /// The job's page in Flink's web UI, when `flink.job_link_base` is set and there is a job.
    pub job_url: Option<String>,
}

/// An error answer, `{"error_code": 404, "message": "..."}` like Kafka Connect's REST API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Millis;

    #[test]
    fn a_table_serialises_as_the_policy_status_always_did() {
        let status = TableStatus {
            table: "faculty".to_owned(),
            state: TableState::Running,
            paused: false,
            generation: 3,
            job_id: Some("ab".repeat(16)),
            job_state: Some(JobStatus::Running),
            job_since: Some(Millis(10)),
            last_record_at: Some(Millis(11)),
            last_change_at: None,
            newest_record_ts_ms: Some(-1),
            lag: Some(0),
            pending_since: None,
            consecutive_failures: 2,
            last_start_at: Some(Millis(9)),
            duplicate_jobs: vec!["cd".repeat(16)],
            next: Some(NextStep {
                action: NextAction::Stop,
                at: Some(Millis(12)),
                waiting_for: Some(WaitCause::Lag),
            }),
        };
        let ours = serde_json::to_string(&TableJson::from(&status)).unwrap();
        assert_eq!(ours, serde_json::to_string(&status).unwrap());
        assert!(
            ours.starts_with(r#"{"table":"faculty","state":"running","paused":false,"generation":3,"#),
            "{ours}"
        );
        assert!(ours.contains(r#""job_state":"RUNNING","job_since":10,"#), "{ours}");
        assert!(
            ours.ends_with(r#""next":{"action":"stop","at":12,"waiting_for":"lag"}}"#),
            "{ours}"
        );
    }
}
