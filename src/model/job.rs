//! What identifies a Flink job and what Flink says of its state, parsed once from Flink's text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Flink job id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

impl JobId {
    /// Parses a job id, accepting upper-case hex and normalising it to lower case.
    pub fn parse(text: &str) -> Option<JobId> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| JobId(text.to_ascii_lowercase()))
    }

    /// The id as Flink writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        JobId::parse(&value).ok_or_else(|| format!("not a job id (32 hex digits): {value:?}"))
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> String {
        id.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JobId {
    /// The id of 16 bytes (a 128-bit id, as Flink's `JobID`), in lower-case hex.
    pub fn from_bytes(bytes: &[u8; 16]) -> JobId {
        JobId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A job's status as the JobManager reports it (`JobStatus` in its REST API): the one job-state type of the
/// sidecar, from the launcher's listings through the policy to the HTTP API, which shows it as Flink spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum JobState {
    /// Being set up by the JobManager.
    Initializing,
    /// Created, not yet scheduled.
    Created,
    /// Running.
    Running,
    /// Failing; will be FAILED or RESTARTING.
    Failing,
    /// Failed for good.
    Failed,
    /// Being cancelled.
    Cancelling,
    /// Cancelled.
    Canceled,
    /// Finished, e.g. after stop-with-savepoint.
    Finished,
    /// Restarting after a failure.
    Restarting,
    /// Suspended (JobManager failover); the job is not terminated.
    Suspended,
    /// Being reconciled after a JobManager failover.
    Reconciling,
    /// A state this version does not know: Flink's spelling when it is a plausible state name (1 to
    /// [`JobState::MAX_OTHER_LEN`] of `A-Z` and `_`), else [`JobState::UNKNOWN`]. Parsing keeps nothing else, since
    /// the state becomes a metric label and shows in logs and `GET /tables`. It counts as alive
    /// ([`JobState::is_alive`]): the policy keeps such a job as the table's job rather than start a second one.
    Other(String),
}

impl JobState {
    /// Flink's spelling of every state this version knows, in Flink's order.
    pub const KNOWN: [&'static str; 11] = [
        "INITIALIZING",
        "CREATED",
        "RUNNING",
        "FAILING",
        "FAILED",
        "CANCELLING",
        "CANCELED",
        "FINISHED",
        "RESTARTING",
        "SUSPENDED",
        "RECONCILING",
    ];

    /// What an unknown state that is not a plausible state name is kept as.
    pub const UNKNOWN: &'static str = "UNKNOWN";

    /// The longest unknown state kept as Flink spelled it; Flink's own names have at most 12 characters.
    pub const MAX_OTHER_LEN: usize = 32;

    /// The name Flink uses.
    pub fn as_str(&self) -> &str {
        match self {
            JobState::Initializing => "INITIALIZING",
            JobState::Created => "CREATED",
            JobState::Running => "RUNNING",
            JobState::Failing => "FAILING",
            JobState::Failed => "FAILED",
            JobState::Cancelling => "CANCELLING",
            JobState::Canceled => "CANCELED",
            JobState::Finished => "FINISHED",
            JobState::Restarting => "RESTARTING",
            JobState::Suspended => "SUSPENDED",
            JobState::Reconciling => "RECONCILING",
            JobState::Other(s) => s,
        }
    }

    /// Whether the job has ended for good (Flink's "globally terminal" states).
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobState::Failed | JobState::Canceled | JobState::Finished)
    }

    /// Whether the job exists and has not ended: it holds (or will hold) the table's consumer group, so a second
    /// job must not start. Unknown states count as alive, which errs on the side of never running two jobs.
    pub fn is_alive(&self) -> bool {
        !self.is_terminal()
    }
}

impl From<String> for JobState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "INITIALIZING" => JobState::Initializing,
            "CREATED" => JobState::Created,
            "RUNNING" => JobState::Running,
            "FAILING" => JobState::Failing,
            "FAILED" => JobState::Failed,
            "CANCELLING" => JobState::Cancelling,
            "CANCELED" => JobState::Canceled,
            "FINISHED" => JobState::Finished,
            "RESTARTING" => JobState::Restarting,
            "SUSPENDED" => JobState::Suspended,
            "RECONCILING" => JobState::Reconciling,
            _ if is_state_name(&s) => JobState::Other(s),
            _ => JobState::Other(JobState::UNKNOWN.to_owned()),
        }
    }
}

/// Whether `text` looks like a Flink job state name: upper-case letters and underscores, bounded in length.
fn is_state_name(text: &str) -> bool {
    (1..=JobState::MAX_OTHER_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

impl From<JobState> for String {
    fn from(state: JobState) -> String {
        state.as_str().to_owned()
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cdc job as a listing shows it: a job named `cdc-<table>`, its table read from the name, with the times by
/// which the policy orders a table's jobs. A listing is all of them at once, and the policy reads it as a whole;
/// a report about one job, with the generation of the start it answers, is a `JobObservation` of the policy
/// instead. Built by the launcher from Flink's own rows (`JobOverview`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The table, from the job name `cdc-<table>`.
    pub table: String,
    /// The job id.
    pub job_id: JobId,
    /// The job's state.
    pub state: JobState,
    /// When the job started, milliseconds since the Unix epoch.
    pub start_time_ms: i64,
    /// When the job ended, milliseconds since the Unix epoch; absent while it has not.
    pub end_time_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_parse_strictly() {
        assert!(JobId::parse("abc").is_none());
        assert!(JobId::parse(&"g".repeat(32)).is_none());
        assert_eq!(
            JobId::parse(&"AB".repeat(16)).map(|j| j.to_string()),
            Some("ab".repeat(16))
        );
    }

    #[test]
    fn states_round_trip_and_classify() {
        for name in ["RUNNING", "FAILED", "CANCELED", "FINISHED", "RESTARTING", "SUSPENDED"] {
            assert_eq!(JobState::from(name.to_owned()).as_str(), name);
        }
        assert!(JobState::Failed.is_terminal() && !JobState::Failed.is_alive());
        assert!(JobState::Canceled.is_terminal() && !JobState::Cancelling.is_terminal());
        assert!(JobState::Restarting.is_alive());
        assert!(JobState::from("NEW_STATE".to_owned()).is_alive());
        assert_eq!(
            JobState::from("running".to_owned()),
            JobState::Other("UNKNOWN".to_owned())
        );
        let json = serde_json::to_value(JobState::Other("NEW_STATE".to_owned())).expect("serializes");
        assert_eq!(json, "NEW_STATE");
    }

    #[test]
    fn unknown_states_keep_only_a_bounded_safe_spelling() {
        let max = "A".repeat(JobState::MAX_OTHER_LEN);
        assert_eq!(JobState::from(max.clone()), JobState::Other(max.clone()));
        for hostile in [
            "RUN\u{1b}[31mNING".to_owned(),
            "RUNNING\n2026-01-01 INFO forged".to_owned(),
            "\u{7}\u{0}".to_owned(),
            format!("{max}A"),
            "running".to_owned(),
            "ÄUSSERST".to_owned(),
            String::new(),
        ] {
            let state = JobState::from(hostile.clone());
            assert_eq!(state.as_str(), JobState::UNKNOWN, "{hostile:?}");
            assert!(state.is_alive(), "an unknown state still errs on the side of alive");
        }
        // Through serde too: that is how Flink's answers are parsed.
        let parsed: JobState = serde_json::from_str("\"FAIL\\u001bING\"").expect("a JSON string");
        assert_eq!(parsed.as_str(), JobState::UNKNOWN);
    }
}
