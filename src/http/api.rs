//! The JSON the operator API answers with: types of its own, so the policy's types can change without changing
//! the API. Field names and order are the API; `GET /tables` clients (the `status` command, dashboards) parse them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::ser::{SerializeStruct, Serializer};

use crate::model::SchemaDrift;
use crate::policy::{NextStep, TableStatus};
use crate::telemetry::TableSavings;

/// A table's state as the policy reports it: the body of a control command's answer, and the first fields of
/// [`TableView`]. The fields, in this order: `table`, `state` (`idle`, `pending`, `starting`, `running`,
/// `stopping`, `failing`, `paused`), `paused`, `generation`, `job_id`, `job_state` (Flink's, e.g. `RESTARTING`),
/// `job_since`, `last_record_at`, `last_change_at`, `newest_record_ts_ms`, `lag`, `pending_since`,
/// `consecutive_failures`, `last_error`, `last_start_at`, `duplicate_jobs`, `next` (`action`, `at`, `waiting_for`),
/// `schema_drift` (`added`, `missing`, `unnamed_added`, `since`; `null` without drift) and `drift_paused` (starts
/// wait for the drift to be resolved). Times are milliseconds since the Unix epoch; absent values are `null`.
#[derive(Debug, Clone, Copy)]
pub struct TableJson<'a>(pub &'a TableStatus);

impl Serialize for TableJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut out = serializer.serialize_struct("Table", 19)?;
        out.serialize_field("table", &t.table)?;
        out.serialize_field("state", &t.state)?;
        out.serialize_field("paused", &t.paused)?;
        out.serialize_field("generation", &t.generation)?;
        out.serialize_field("job_id", &t.job_id)?;
        out.serialize_field("job_state", &t.job_state)?;
        out.serialize_field("job_since", &t.job_since)?;
        out.serialize_field("last_record_at", &t.last_record_at)?;
        out.serialize_field("last_change_at", &t.last_change_at)?;
        out.serialize_field("newest_record_ts_ms", &t.newest_record_ts_ms)?;
        out.serialize_field("lag", &t.lag)?;
        out.serialize_field("pending_since", &t.pending_since)?;
        out.serialize_field("consecutive_failures", &t.consecutive_failures)?;
        out.serialize_field("last_error", &t.last_error)?;
        out.serialize_field("last_start_at", &t.last_start_at)?;
        out.serialize_field("duplicate_jobs", &t.duplicate_jobs)?;
        out.serialize_field("next", &t.next.as_ref().map(NextJson))?;
        out.serialize_field("schema_drift", &t.schema_drift.as_ref().map(DriftJson))?;
        out.serialize_field("drift_paused", &t.drift_paused)?;
        out.end()
    }
}

/// The next thing the policy plans for a table: `action` (`start` or `stop`), `at` (when, if known) and
/// `waiting_for` (what it waits for, if anything).
#[derive(Debug, Clone, Copy)]
struct NextJson<'a>(&'a NextStep);

impl Serialize for NextJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Next", 3)?;
        out.serialize_field("action", &self.0.action)?;
        out.serialize_field("at", &self.0.at)?;
        out.serialize_field("waiting_for", &self.0.waiting_for)?;
        out.end()
    }
}

/// A table's schema drift: `added` (fields the records carry that the source does not declare), `missing`
/// (declared columns absent from the records' `after`), `unnamed_added` (added fields whose names are too long
/// to keep) and `since` (when this drift was first seen). Field names are JSON-escaped like any string.
#[derive(Debug, Clone, Copy)]
struct DriftJson<'a>(&'a SchemaDrift);

impl Serialize for DriftJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("SchemaDrift", 4)?;
        out.serialize_field("added", &self.0.added)?;
        out.serialize_field("missing", &self.0.missing)?;
        out.serialize_field("unnamed_added", &self.0.unnamed_added)?;
        out.serialize_field("since", &self.0.since)?;
        out.end()
    }
}

/// A table as `GET /tables` and `GET /tables/{table}` show it: its state, what its scale-to-zero saved, and its
/// job's web UI page.
#[derive(Debug, Clone, Serialize)]
pub struct TableView<'a> {
    /// The policy's view.
    #[serde(flatten)]
    pub status: TableJson<'a>,
    /// The savings, once the table was counted.
    #[serde(flatten)]
    pub savings: Option<TableSavings>,
    /// The job's page in Flink's web UI, when `flink.job_link_base` is set and there is a job.
    pub job_url: Option<String>,
    /// This replica's role (`leader` or `standby`): a standby shows what it sees, not the leader's jobs.
    pub role: &'static str,
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

impl ApiError {
    /// The JSON body of this answer.
    pub(super) fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error_code": self.status.as_u16(), "message": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobId, JobState, Millis};
    use crate::policy::{NextAction, TableState, WaitCause};

    #[test]
    fn a_table_serialises_field_by_field_in_the_api_order() {
        let status = TableStatus {
            table: "faculty".to_owned(),
            state: TableState::Running,
            paused: false,
            generation: 3,
            job_id: JobId::parse(&"ab".repeat(16)),
            job_state: Some(JobState::Running),
            job_since: Some(Millis(10)),
            last_record_at: Some(Millis(11)),
            last_change_at: None,
            newest_record_ts_ms: Some(-1),
            lag: Some(0),
            pending_since: None,
            consecutive_failures: 2,
            last_error: Some("SQL Gateway POST /v1/sessions: connection refused".to_owned()),
            last_start_at: Some(Millis(9)),
            duplicate_jobs: JobId::parse(&"cd".repeat(16)).into_iter().collect(),
            next: Some(NextStep {
                action: NextAction::Stop,
                at: Some(Millis(12)),
                waiting_for: Some(WaitCause::Lag),
            }),
            schema_drift: Some(SchemaDrift {
                added: vec!["new\"col".to_owned()],
                missing: vec![],
                unnamed_added: 1,
                since: Millis(13),
            }),
            drift_paused: true,
        };
        let expected = concat!(
            r#"{"table":"faculty","state":"running","paused":false,"generation":3,"job_id":"#,
            r#""abababababababababababababababab","job_state":"RUNNING","job_since":10,"last_record_at":11,"#,
            r#""last_change_at":null,"newest_record_ts_ms":-1,"lag":0,"pending_since":null,"#,
            r#""consecutive_failures":2,"last_error":"SQL Gateway POST /v1/sessions: connection refused","last_start_at":9,"duplicate_jobs":["cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"],"#,
            r#""next":{"action":"stop","at":12,"waiting_for":"lag"},"#,
            r#""schema_drift":{"added":["new\"col"],"missing":[],"unnamed_added":1,"since":13},"drift_paused":true}"#
        );
        assert_eq!(serde_json::to_string(&TableJson(&status)).unwrap(), expected);
        let view = TableView {
            status: TableJson(&status),
            savings: None,
            job_url: Some("http://flink/#/job/x".to_owned()),
            role: "standby",
        };
        let flat = serde_json::to_string(&view).unwrap();
        assert_eq!(
            flat,
            format!(
                r#"{},"job_url":"http://flink/#/job/x","role":"standby"}}"#,
                &expected[..expected.len() - 1]
            )
        );
    }
}
