//! How talking to Flink fails, and what Flink's error answers say: parsed here, once, into a root-cause line
//! and a [`Fault`] the launcher acts on, rather than matched as text where it is used.

use std::time::Duration;

use crate::model::{JobId, JobState};
use crate::sql::{Credentials, JobSqlError};

/// Why talking to Flink failed. Every variant renders as one line; errors reported by Flink carry the root-cause
/// line of the server-side stack trace, not the whole trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlinkError {
    /// The request did not get an answer: connection refused, reset, or the request timeout passed.
    #[error("{endpoint}: {}", transport_failure(*.timed_out, *.unreachable))]
    Transport {
        /// Method and path of the request, e.g. `POST /v1/sessions`.
        endpoint: String,
        /// reqwest's error, without its URL (which may carry userinfo); it holds no text of Flink's.
        #[source]
        source: reqwest::Error,
        /// Whether the request timed out (the server may still have acted on it).
        timed_out: bool,
        /// Whether no connection could be made (refused, no route): nothing reached the server.
        unreachable: bool,
    },
    /// Flink answered with an error status and an `{"errors": [...]}` body.
    #[error("{endpoint}: HTTP {status}: {root_cause}")]
    Api {
        /// Method and path of the request.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The root-cause line of the server's error (last `Caused by:` of its stack trace).
        root_cause: String,
        /// What the error says, where the sidecar acts on it.
        fault: Fault,
    },
    /// Flink answered with a redirect, which is never followed: the request, and the credentials a statement
    /// carries, go to the configured address or nowhere.
    #[error("{endpoint}: Flink answered {status} (a redirect to {location}); redirects are not followed")]
    Redirect {
        /// Method and path of the request.
        endpoint: String,
        /// HTTP status code (3xx).
        status: u16,
        /// Where the redirect pointed, without userinfo or query.
        location: String,
    },
    /// Flink's answer is larger than `flink.max_response_bytes`; it was not read further.
    #[error("{endpoint}: answer larger than {limit} bytes (flink.max_response_bytes); not read")]
    TooLarge {
        /// Method and path of the request.
        endpoint: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// Flink answered 2xx with a body that does not have the documented shape.
    #[error("{endpoint}: unexpected answer: {reason}")]
    Decode {
        /// Method and path of the request.
        endpoint: String,
        /// What did not parse.
        reason: String,
    },
    /// A SQL statement failed inside Flink (syntax, validation, submission).
    #[error("statement `{statement}` failed: {root_cause}")]
    Statement {
        /// The statement, shortened to its first line.
        statement: String,
        /// The root-cause line Flink gave.
        root_cause: String,
        /// What the error says, where the sidecar acts on it.
        fault: Fault,
    },
    /// A statement did not finish within the allowed time.
    #[error("statement `{statement}` still {status} after {}", humantime::format_duration(*.waited))]
    StatementTimeout {
        /// The statement, shortened to its first line.
        statement: String,
        /// The last operation status seen.
        status: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// The job was submitted but did not reach RUNNING within `flink.start_timeout`.
    #[error("job {job_id} of table {table} not RUNNING after {} (last state {state})", humantime::format_duration(*.waited))]
    StartTimeout {
        /// The table.
        table: String,
        /// The pinned job id.
        job_id: JobId,
        /// The last state the JobManager reported, or `absent`.
        state: String,
        /// How long the start waited.
        waited: Duration,
    },
    /// The job ended (FAILED, CANCELED, ...) while starting.
    #[error("job {job_id} of table {table} is {state} instead of RUNNING")]
    JobEnded {
        /// The table.
        table: String,
        /// The job id.
        job_id: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// The JobManager knew the job while it started, then no longer did: it was lost (a JobManager restarted
    /// without high availability recovers no job), so waiting longer for RUNNING cannot succeed.
    #[error("job {job_id} of table {table} vanished while starting: the JobManager no longer knows it")]
    JobVanished {
        /// The table.
        table: String,
        /// The job id.
        job_id: JobId,
    },
    /// The pinned job id belongs to a job that already ended; a new start needs a new generation.
    #[error("job id {job_id} of table {table} was already used by a job that is {state}; start with a new generation")]
    JobIdUsed {
        /// The table.
        table: String,
        /// The job id.
        job_id: JobId,
        /// The state of the earlier job.
        state: JobState,
    },
    /// The job to stop is not the table's (its name is not `cdc-<table>`); it is left alone.
    #[error("job {job_id} is named {name:?}, not cdc-{table}; not touching it")]
    ForeignJob {
        /// The table the caller meant.
        table: String,
        /// The job id given.
        job_id: JobId,
        /// The job's actual name.
        name: String,
    },
    /// The statements to submit cannot run as the table's job (no INSERT, or a key the launcher sets).
    #[error("the SQL of table {table}")]
    Job {
        /// The table.
        table: String,
        /// What is wrong with the statements.
        #[source]
        source: JobSqlError,
    },
    /// A request that would change Flink (submit, stop, cancel) was not sent: this replica does not hold an
    /// unexpired lease by its own clock ([`crate::lease::LeaseGuard`]). Not transient: retrying cannot help until
    /// this replica leads again, and then its run loop starts over.
    #[error("{endpoint} not sent: {source}")]
    NotLeader {
        /// Method and path of the request that was held back.
        endpoint: String,
        /// Who holds the lease, when known.
        #[source]
        source: crate::lease::NotLeader,
    },
    /// A setting is unusable, e.g. a URL that cannot be joined with an API path.
    #[error("{0}")]
    Setup(String),
}

impl FlinkError {
    /// What Flink's error answer says: [`Fault::Other`] for errors that are not Flink's answers.
    pub fn fault(&self) -> Fault {
        match self {
            FlinkError::Api { fault, .. } | FlinkError::Statement { fault, .. } => *fault,
            _ => Fault::Other,
        }
    }

    /// This error with every credential in `credentials` masked in each text it carries (Flink's messages may
    /// echo a statement, and statements carry the catalog and S3 credentials).
    pub(crate) fn redacted(self, credentials: &Credentials) -> FlinkError {
        let r = |text: String| credentials.redact(&text);
        match self {
            // reqwest's error says what failed on the connection; it carries no text of Flink's answers.
            FlinkError::Transport {
                endpoint,
                source,
                timed_out,
                unreachable,
            } => FlinkError::Transport {
                endpoint: r(endpoint),
                source,
                timed_out,
                unreachable,
            },
            FlinkError::Api {
                endpoint,
                status,
                root_cause,
                fault,
            } => FlinkError::Api {
                endpoint: r(endpoint),
                status,
                root_cause: r(root_cause),
                fault,
            },
            FlinkError::Redirect {
                endpoint,
                status,
                location,
            } => FlinkError::Redirect {
                endpoint: r(endpoint),
                status,
                location: r(location),
            },
            FlinkError::TooLarge { endpoint, limit } => FlinkError::TooLarge {
                endpoint: r(endpoint),
                limit,
            },
            FlinkError::Decode { endpoint, reason } => FlinkError::Decode {
                endpoint: r(endpoint),
                reason: r(reason),
            },
            FlinkError::Statement {
                statement,
                root_cause,
                fault,
            } => FlinkError::Statement {
                statement: r(statement),
                root_cause: r(root_cause),
                fault,
            },
            FlinkError::StatementTimeout {
                statement,
                status,
                waited,
            } => FlinkError::StatementTimeout {
                statement: r(statement),
                status: r(status),
                waited,
            },
            FlinkError::StartTimeout {
                table,
                job_id,
                state,
                waited,
            } => FlinkError::StartTimeout {
                table,
                job_id,
                state: r(state),
                waited,
            },
            FlinkError::ForeignJob { table, job_id, name } => FlinkError::ForeignJob {
                table,
                job_id,
                name: r(name),
            },
            FlinkError::Setup(text) => FlinkError::Setup(r(text)),
            FlinkError::JobEnded { table, job_id, state } => FlinkError::JobEnded {
                table,
                job_id,
                state: redacted_state(state, credentials),
            },
            FlinkError::JobIdUsed { table, job_id, state } => FlinkError::JobIdUsed {
                table,
                job_id,
                state: redacted_state(state, credentials),
            },
            // The sidecar's own checks of its templates, which hold placeholders, not credentials; the guard's
            // refusal, which names a replica; and ids the sidecar pinned itself.
            e @ (FlinkError::Job { .. } | FlinkError::NotLeader { .. } | FlinkError::JobVanished { .. }) => e,
        }
    }

    /// Whether retrying the same request may succeed (transport problems and server-side 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            FlinkError::Transport { .. } => true,
            FlinkError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// What kind of transport failure it was; reqwest's error, the source, says how.
fn transport_failure(timed_out: bool, unreachable: bool) -> &'static str {
    match (timed_out, unreachable) {
        (true, _) => "no answer in time",
        (false, true) => "cannot connect",
        (false, false) => "request failed",
    }
}

/// A state Flink named that the sidecar does not know is Flink's text, redacted like any other.
fn redacted_state(state: JobState, credentials: &Credentials) -> JobState {
    match state {
        JobState::Other(text) => JobState::Other(credentials.redact(&text)),
        known => known,
    }
}

/// What a Flink error answer says, where the sidecar acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The SQL Gateway session does not exist (idle expiry, or the gateway restarted).
    SessionMissing,
    /// The pinned job id was submitted before (`DuplicateJobSubmissionException`).
    DuplicateJob,
    /// The JobManager does not know the job (`FlinkJobNotFoundException`).
    JobNotFound,
    /// Anything else.
    Other,
}

impl Fault {
    /// The fault of an error answer: its messages (`errors`) and their root-cause line (see [`root_cause`]).
    pub fn of(errors: &[String], root_cause: &str) -> Fault {
        if errors
            .iter()
            .any(|e| e.contains("Session '") && e.contains("does not exist"))
        {
            Fault::SessionMissing
        } else if root_cause.contains("DuplicateJobSubmissionException") {
            Fault::DuplicateJob
        } else if root_cause.contains("FlinkJobNotFoundException") {
            Fault::JobNotFound
        } else {
            Fault::Other
        }
    }
}

/// The one line of a Flink error body worth showing: the last `Caused by:` of the server-side stack trace
/// (without that prefix), else the exception line that heads the trace, else the first message.
///
/// Flink answers errors as `{"errors": ["Internal server error.", "<Exception on server side:\n...\nEnd of
/// exception on server side>"]}`, or `{"errors": ["<message or trace>"]}` for handled errors such as 404s.
/// When the last cause is itself a REST client's error carrying another server's trace (the gateway submitting
/// to the JobManager: `RestClientException: [Internal server error., <Exception on server side:` followed by
/// the JobManager's exception, e.g. `DuplicateJobSubmissionException`), that inner exception is the cause.
pub fn root_cause(errors: &[String]) -> String {
    let mut caused_by = None;
    let mut head = None;
    let mut nested_follows = false;
    for message in errors {
        for line in message.lines().map(str::trim) {
            if nested_follows && !line.is_empty() {
                nested_follows = false;
                if !line.starts_with("at ") {
                    caused_by = Some(line);
                    continue;
                }
            }
            if let Some(rest) = line.strip_prefix("Caused by:") {
                caused_by = Some(rest.trim());
                nested_follows = rest.trim_end().ends_with("<Exception on server side:");
            } else if head.is_none()
                && !line.is_empty()
                && !line.starts_with("at ")
                && !line.starts_with("...")
                && line != "Internal server error."
                && !line.starts_with("End of exception on server side")
            {
                let line = line.trim_start_matches("<Exception on server side:").trim();
                if !line.is_empty() {
                    head = Some(line);
                }
            }
        }
    }
    caused_by
        .or(head)
        .or_else(|| errors.first().map(String::as_str))
        .unwrap_or("no error message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_cause_is_the_last_caused_by() {
        let trace = "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: \
                     Failed to fetchResults.\n\tat org.apache.Foo.bar(Foo.java:1)\nCaused by: \
                     org.apache.flink.table.api.TableException: Failed to execute sql\n\tat x\nCaused by: \
                     org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been \
                     submitted.\n\t... 12 more\n\nEnd of exception on server side>";
        let errors = vec!["Internal server error.".to_owned(), trace.to_owned()];
        assert_eq!(
            root_cause(&errors),
            "org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
        );
        let plain = vec!["Job 00000000000000000000000000000000 not found".to_owned()];
        assert_eq!(root_cause(&plain), plain[0]);
        let no_cause = vec![
            "Internal server error.".to_owned(),
            "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: Session \
             'x' does not exist.\n\tat a.b(C.java:1)\nEnd of exception on server side>"
                .to_owned(),
        ];
        assert_eq!(
            root_cause(&no_cause),
            "org.apache.flink.table.gateway.api.utils.SqlGatewayException: Session 'x' does not exist."
        );
        assert_eq!(root_cause(&[]), "no error message");
        // As the SQL Gateway reports a pinned id that the JobManager already has (seen with Flink 2.0): the
        // JobManager's exception is nested in the REST client's message.
        let nested = vec![
            "Internal server error.".to_owned(),
            "<Exception on server side:\norg.apache.flink.table.gateway.api.utils.SqlGatewayException: Failed to \
             fetchResults.\nCaused by: org.apache.flink.table.api.TableException: Failed to execute sql\n\tat a.b(C.java:1)\n\
             Caused by: org.apache.flink.runtime.client.JobSubmissionException: Failed to submit ExecutionPlan.\n\
             Caused by: org.apache.flink.runtime.rest.util.RestClientException: [Internal server error., <Exception \
             on server side:\norg.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been \
             submitted.\n\tat d.e(F.java:2)\n\nEnd of exception on server side>]\n\tat g.h(I.java:3)\n\nEnd of exception on \
             server side>"
                .to_owned(),
        ];
        assert_eq!(
            root_cause(&nested),
            "org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
        );
    }

    #[test]
    fn a_transport_error_keeps_reqwests_error_as_its_source_and_each_cause_shows_once() {
        let error = crate::flink::refused("GET /jobs/overview");
        assert_eq!(error.to_string(), "GET /jobs/overview: cannot connect");
        let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<reqwest::Error>());
        assert!(source.is_some_and(reqwest::Error::is_connect), "{error:?}");
        let shown = crate::logging::chain(&error).to_string();
        assert!(
            shown.starts_with("GET /jobs/overview: cannot connect: error sending request") && shown.contains("refused"),
            "{shown}"
        );
        assert_eq!(shown.matches("error sending request").count(), 1, "{shown}");
        let job = FlinkError::Job {
            table: "room".to_owned(),
            source: JobSqlError::NoJob,
        };
        assert_eq!(job.to_string(), "the SQL of table room");
        assert_eq!(
            crate::logging::chain(&job).to_string(),
            "the SQL of table room: submits no job (no INSERT or EXECUTE STATEMENT SET)"
        );
    }

    #[test]
    fn error_answers_are_classified_once() {
        let of = |message: &str| {
            let errors = vec![message.to_owned()];
            Fault::of(&errors, &root_cause(&errors))
        };
        assert_eq!(
            of("org.apache.flink.table.gateway.api.utils.SqlGatewayException: Session 'x' does not exist."),
            Fault::SessionMissing
        );
        assert_eq!(
            of(
                "Caused by: org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
            ),
            Fault::DuplicateJob
        );
        assert_eq!(
            of("Caused by: org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job"),
            Fault::JobNotFound
        );
        assert_eq!(of("java.lang.RuntimeException: injected fault"), Fault::Other);
        let transport = FlinkError::Setup("x".to_owned());
        assert_eq!(transport.fault(), Fault::Other);
    }
}
