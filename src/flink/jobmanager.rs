//! Client of the JobManager REST API: list jobs, job detail, job status, a job's latest failure, stop with
//! savepoint, cancel, and the cluster's TaskManagers and slots.

use super::failure::{ExceptionsBody, JobFailure, failure_line};
use super::http::Rest;
use super::{Fault, FlinkError};
use crate::model::{JobId, JobState};
use crate::sql::Credentials;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

/// One row of `GET /jobs/overview` (Flink's name): any job Flink knows, whoever submitted it, named as submitted.
/// The launcher keeps the rows whose name is `cdc-<table>` as [`crate::model::JobSummary`]s (the table read from
/// the name) and looks a start's pinned id up among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOverview {
    /// The job id.
    pub job_id: JobId,
    /// The job name (`pipeline.name`).
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Start, ms since the Unix epoch.
    pub start_time_ms: i64,
    /// End, ms since the Unix epoch; absent while running (Flink sends -1).
    pub end_time_ms: Option<i64>,
}

/// `GET /jobs/{id}` (Flink's name), the parts the launcher uses: one job asked for by an id the launcher already
/// holds (a start it awaits, a stop it checks the name of). Unlike [`JobOverview`] it has no end time, and it may
/// be up to `web.refresh-interval` old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDetail {
    /// The job id.
    pub job_id: JobId,
    /// The job name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// Start, ms since the Unix epoch.
    pub start_time_ms: i64,
}

/// The state of a savepoint (or stop-with-savepoint) trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointStatus {
    /// Still being taken.
    InProgress,
    /// Written to `location`.
    Completed {
        /// The savepoint's path.
        location: String,
    },
    /// Failed; the job keeps running.
    Failed {
        /// The root-cause line of the failure.
        root_cause: String,
    },
}

/// `GET /overview` (Flink's name), the cluster's capacity: what scale-to-zero frees (slots) and what a bill counts
/// (TaskManagers, released only where Flink's resource manager gives idle ones back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ClusterOverview {
    /// TaskManagers registered with the JobManager.
    pub taskmanagers: u32,
    /// Their task slots, together.
    #[serde(rename = "slots-total")]
    pub slots_total: u32,
    /// Slots no job uses.
    #[serde(rename = "slots-available")]
    pub slots_available: u32,
}

#[derive(Deserialize)]
struct Overview {
    #[serde(default)]
    jobs: Vec<OverviewRow>,
}

#[derive(Deserialize)]
struct OverviewRow {
    jid: String,
    name: String,
    state: JobState,
    #[serde(rename = "start-time", default)]
    start_time: i64,
    #[serde(rename = "end-time", default = "minus_one")]
    end_time: i64,
}

fn minus_one() -> i64 {
    -1
}

#[derive(Deserialize)]
struct DetailBody {
    jid: String,
    name: String,
    state: JobState,
    #[serde(rename = "start-time", default)]
    start_time: i64,
}

#[derive(Deserialize)]
struct TriggerResponse {
    #[serde(rename = "request-id")]
    request_id: String,
}

#[derive(Deserialize)]
struct AsyncResult {
    status: QueueStatus,
    #[serde(default)]
    operation: Option<SavepointInfo>,
}

#[derive(Deserialize)]
struct QueueStatus {
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SavepointInfo {
    location: Option<String>,
    #[serde(rename = "failure-cause")]
    failure_cause: Option<FailureCause>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FailureCause {
    class: Option<String>,
    #[serde(rename = "stack-trace")]
    stack_trace: Option<String>,
}

/// A JobManager REST client.
#[derive(Debug, Clone)]
pub struct JobManager {
    rest: Rest,
}

impl JobManager {
    /// A client of the JobManager at `url`.
    pub fn new(http: reqwest::Client, url: &str) -> Result<JobManager, FlinkError> {
        Ok(JobManager {
            rest: Rest::new(http, url)?,
        })
    }

    /// Masks `credentials` in every error this client returns.
    pub fn set_redaction(&mut self, credentials: Credentials) {
        self.rest.set_redaction(credentials);
    }

    /// Asks `guard` immediately before every stop-with-savepoint and cancel.
    pub fn set_guard(&mut self, guard: crate::lease::LeaseGuard) {
        self.rest.set_guard(guard);
    }

    /// Reads at most `bytes` of any answer of the JobManager (`flink.max_response_bytes`).
    pub fn set_max_response_bytes(&mut self, bytes: u32) {
        self.rest.set_max_response_bytes(bytes);
    }

    /// Every job the JobManager knows (running and recently ended).
    pub async fn overview(&self) -> Result<Vec<JobOverview>, FlinkError> {
        let overview: Overview = self.rest.call(Method::GET, "jobs/overview", None).await?;
        let mut jobs = Vec::with_capacity(overview.jobs.len());
        for row in overview.jobs {
            let Some(job_id) = JobId::parse(&row.jid) else {
                let shown: String = row.jid.chars().take(64).collect();
                return Err(self.rest.redact_error(FlinkError::Decode {
                    endpoint: "GET /jobs/overview".to_owned(),
                    reason: format!("bad job id {shown:?}"),
                }));
            };
            jobs.push(JobOverview {
                job_id,
                name: row.name,
                state: row.state,
                start_time_ms: row.start_time,
                end_time_ms: (row.end_time >= 0).then_some(row.end_time),
            });
        }
        Ok(jobs)
    }

    /// The cluster's TaskManagers and slots (`GET /overview`, read-only). The answer is read with the client's
    /// bound; other fields (job counts, version, Flink 1.19's blocked slots) are ignored, and a count that is
    /// missing, negative or beyond `u32` is a decode error.
    pub async fn cluster_overview(&self) -> Result<ClusterOverview, FlinkError> {
        self.rest.call(Method::GET, "overview", None).await
    }

    /// The job's detail, or `None` when the JobManager does not know it (404).
    pub async fn job(&self, job_id: &JobId) -> Result<Option<JobDetail>, FlinkError> {
        match self
            .rest
            .call::<DetailBody>(Method::GET, &format!("jobs/{job_id}"), None)
            .await
        {
            Ok(body) => Ok(Some(JobDetail {
                job_id: JobId::parse(&body.jid).unwrap_or_else(|| job_id.clone()),
                name: body.name,
                state: body.state,
                start_time_ms: body.start_time,
            })),
            Err(FlinkError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The job's state as the dispatcher knows it now (`GET /jobs/{id}/status`, Flink 1.17 and later), or `None`
    /// when Flink does not know the job. Unlike [`JobManager::job`], whose answer comes from the JobManager's
    /// execution-graph cache (refreshed every `web.refresh-interval`, 3 s by default), this is never stale, so a
    /// stop is acknowledged as soon as the job is FINISHED.
    pub async fn job_status(&self, job_id: &JobId) -> Result<Option<JobState>, FlinkError> {
        #[derive(Deserialize)]
        struct StatusBody {
            status: JobState,
        }
        match self
            .rest
            .call::<StatusBody>(Method::GET, &format!("jobs/{job_id}/status"), None)
            .await
        {
            Ok(body) => Ok(Some(body.status)),
            // Flink 2.0 answers an unknown job here with a 500 whose cause is FlinkJobNotFoundException.
            Err(FlinkError::Api { status: 404, .. }) => Ok(None),
            Err(FlinkError::Api {
                fault: Fault::JobNotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The job's latest failure (`GET /jobs/{id}/exceptions?maxExceptions=1`) as one redacted, bounded line, or
    /// `None` when the job has not failed or Flink does not know it. The body is read with the client's bound.
    pub async fn latest_failure(&self, job_id: &JobId) -> Result<Option<JobFailure>, FlinkError> {
        let path = format!("jobs/{job_id}/exceptions?maxExceptions=1");
        match self.rest.call::<ExceptionsBody>(Method::GET, &path, None).await {
            Ok(body) => Ok(body.latest().map(|(line, at_ms)| JobFailure {
                reason: failure_line(&line, |text| self.rest.redact(text)),
                at_ms,
            })),
            Err(FlinkError::Api { status: 404, .. })
            | Err(FlinkError::Api {
                fault: Fault::JobNotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Triggers stop-with-savepoint into `target_directory` (without draining: the job resumes later) and
    /// returns the trigger id to poll with [`JobManager::savepoint_status`].
    pub async fn stop_with_savepoint(&self, job_id: &JobId, target_directory: &str) -> Result<String, FlinkError> {
        self.rest.may_change("POST /jobs/:jobid/stop")?;
        let body = json!({ "targetDirectory": target_directory, "drain": false });
        let trigger: TriggerResponse = self
            .rest
            .call(Method::POST, &format!("jobs/{job_id}/stop"), Some(&body))
            .await?;
        Ok(trigger.request_id)
    }

    /// The state of a savepoint trigger.
    pub async fn savepoint_status(&self, job_id: &JobId, trigger_id: &str) -> Result<SavepointStatus, FlinkError> {
        let path = format!("jobs/{job_id}/savepoints/{trigger_id}");
        let result: AsyncResult = self.rest.call(Method::GET, &path, None).await?;
        if result.status.id != "COMPLETED" {
            return Ok(SavepointStatus::InProgress);
        }
        let operation = result.operation.unwrap_or_default();
        Ok(match (operation.location, operation.failure_cause) {
            (_, Some(cause)) => {
                let lines: Vec<String> = cause.stack_trace.or(cause.class).into_iter().collect();
                SavepointStatus::Failed {
                    root_cause: super::root_cause(&lines),
                }
            }
            (Some(location), None) => SavepointStatus::Completed { location },
            (None, None) => SavepointStatus::Failed {
                root_cause: "savepoint completed without a location".to_owned(),
            },
        })
    }

    /// Cancels the job without a savepoint. Returns false when the JobManager does not know it (404) or it has
    /// already ended (409).
    pub async fn cancel(&self, job_id: &JobId) -> Result<bool, FlinkError> {
        self.rest.may_change("PATCH /jobs/:jobid")?;
        match self
            .rest
            .send(Method::PATCH, &format!("jobs/{job_id}?mode=cancel"), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(FlinkError::Api { status: 404 | 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_overview_is_read_from_flinks_answer_and_refuses_nonsense() {
        // Flink 1.18's answer, and 1.19's with the blocked-slot fields.
        let answer = r#"{"taskmanagers":2,"slots-total":8,"slots-available":5,"jobs-running":3,"jobs-finished":0,
            "jobs-cancelled":1,"jobs-failed":0,"flink-version":"1.18.1","flink-commit":"a8c8b1c"}"#;
        let overview: ClusterOverview = serde_json::from_str(answer).expect("1.18");
        assert_eq!(
            overview,
            ClusterOverview {
                taskmanagers: 2,
                slots_total: 8,
                slots_available: 5
            }
        );
        let answer = r#"{"taskmanagers":0,"taskmanagers-blocked":0,"slots-total":0,"slots-available":0,
            "slots-free-and-blocked":0,"jobs-running":0,"flink-version":"2.0.0"}"#;
        assert!(serde_json::from_str::<ClusterOverview>(answer).is_ok());
        for bad in [
            r#"{"taskmanagers":-1,"slots-total":0,"slots-available":0}"#,
            r#"{"taskmanagers":1,"slots-total":4294967296,"slots-available":0}"#,
            r#"{"taskmanagers":1,"slots-total":"4","slots-available":0}"#,
            r#"{"taskmanagers":1,"slots-total":4}"#,
            r#"[]"#,
        ] {
            assert!(serde_json::from_str::<ClusterOverview>(bad).is_err(), "{bad}");
        }
    }
}
