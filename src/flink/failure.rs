//! A job's latest failure, as the JobManager's exception history gives it (`GET /jobs/{id}/exceptions`), reduced
//! to the one line a table's status and the log show.

use serde::Deserialize;

/// The most characters of a failure's line: the exception and its deepest cause fit; a longer message is cut.
pub const FAILURE_REASON_CHARS: usize = 500;

/// A job's latest failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// One line: the top exception's name and message, and the deepest `Caused by:` (where e.g. Kafka's
    /// `SaslAuthenticationException` appears); credentials masked, control characters replaced, at most
    /// [`FAILURE_REASON_CHARS`] characters.
    pub reason: String,
    /// When Flink recorded the failure, ms since the Unix epoch: the same failure listed twice has the same time.
    pub at_ms: i64,
}

/// `GET /jobs/{id}/exceptions` (`JobExceptionsInfoWithHistory`): Flink 2.0 has only `exceptionHistory`; 1.x also
/// the deprecated `root-exception` and `timestamp` at the top.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ExceptionsBody {
    #[serde(rename = "exceptionHistory")]
    exception_history: Option<ExceptionHistory>,
    #[serde(rename = "root-exception")]
    root_exception: Option<String>,
    timestamp: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExceptionHistory {
    entries: Vec<HistoryEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HistoryEntry {
    #[serde(rename = "exceptionName")]
    exception_name: Option<String>,
    stacktrace: Option<String>,
    timestamp: Option<i64>,
}

impl ExceptionsBody {
    /// The latest failure, unredacted and unbounded (see [`failure_line`]): the history's newest entry, else the
    /// top-level root exception of a 1.x answer; `None` when the job has not failed (or the answer says nothing
    /// usable).
    pub(super) fn latest(&self) -> Option<(String, i64)> {
        let from_history = self.exception_history.as_ref().and_then(|history| {
            // Flink lists the newest first; take the newest by time whatever the order.
            let entry = history
                .entries
                .iter()
                .filter(|e| e.timestamp.is_some())
                .max_by_key(|e| e.timestamp)?;
            let text = entry.stacktrace.as_deref().or(entry.exception_name.as_deref())?;
            Some((summarize(text, entry.exception_name.as_deref()), entry.timestamp?))
        });
        from_history.or_else(|| {
            let text = self.root_exception.as_deref()?;
            Some((summarize(text, None), self.timestamp?))
        })
    }
}

/// The top exception's line (or its name, when the trace has no usable first line) and the deepest `Caused by:`.
fn summarize(stacktrace: &str, name: Option<&str>) -> String {
    let mut lines = stacktrace.lines().map(str::trim).filter(|l| !l.is_empty());
    let top = lines
        .next()
        .filter(|l| !l.starts_with("at ") && !l.starts_with("Caused by:"))
        .or(name)
        .unwrap_or("unknown failure");
    let deepest = stacktrace
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("Caused by:"))
        .map(str::trim)
        .rfind(|l| !l.is_empty());
    match deepest {
        Some(cause) if cause != top => format!("{top}; caused by: {cause}"),
        _ => top.to_owned(),
    }
}

/// `line` made fit to show: `redact` applied first (so that a cut never leaves part of a secret), control
/// characters replaced by spaces, and at most [`FAILURE_REASON_CHARS`] characters (an ellipsis says it was cut).
pub(super) fn failure_line(line: &str, redact: impl Fn(&str) -> String) -> String {
    let redacted = redact(line);
    let clean: String = redacted.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() <= FAILURE_REASON_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(FAILURE_REASON_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const SASL_TRACE: &str = "org.apache.flink.runtime.JobException: Recovery is suppressed by NoRestartBackoffTimeStrategy\n\
        \tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure(ExecutionFailureHandler.java:219)\n\
        \tat org.apache.flink.runtime.scheduler.DefaultScheduler.onTaskFailed(DefaultScheduler.java:270)\n\
        Caused by: org.apache.flink.util.FlinkRuntimeException: Failed to list subscribed topic partitions\n\
        \tat org.apache.flink.connector.kafka.source.enumerator.KafkaSourceEnumerator.checkPartitionChanges(KafkaSourceEnumerator.java:240)\n\
        Caused by: org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512\n";

    fn parse(body: &str) -> Option<(String, i64)> {
        serde_json::from_str::<ExceptionsBody>(body).ok()?.latest()
    }

    #[test]
    fn flink_2_history_gives_the_top_line_and_the_deepest_cause() {
        let body = serde_json::json!({
            "exceptionHistory": {
                "entries": [
                    {"exceptionName": "org.apache.flink.runtime.JobException", "stacktrace": SASL_TRACE,
                     "timestamp": 1_700_000_002_000_i64, "taskName": null, "concurrentExceptions": []},
                    {"exceptionName": "java.lang.RuntimeException", "stacktrace": "java.lang.RuntimeException: older",
                     "timestamp": 1_700_000_001_000_i64}
                ],
                "truncated": false
            }
        });
        let (line, at) = parse(&body.to_string()).unwrap();
        assert_eq!(at, 1_700_000_002_000);
        assert_eq!(
            line,
            "org.apache.flink.runtime.JobException: Recovery is suppressed by NoRestartBackoffTimeStrategy; caused by: \
             org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication \
             due to invalid credentials with SASL mechanism SCRAM-SHA-512"
        );
    }

    #[test]
    fn flink_1_root_exception_is_read_without_a_history() {
        let body = serde_json::json!({
            "root-exception": SASL_TRACE, "timestamp": 42, "all-exceptions": [], "truncated": false
        });
        let (line, at) = parse(&body.to_string()).unwrap();
        assert_eq!(at, 42);
        assert!(
            line.contains("SaslAuthenticationException: Authentication failed"),
            "{line}"
        );
        // An empty history (1.x before the job failed once more) falls back to the top-level fields as well.
        let body = serde_json::json!({
            "root-exception": "java.lang.IllegalStateException: boom", "timestamp": 7,
            "exceptionHistory": {"entries": [], "truncated": false}
        });
        assert_eq!(
            parse(&body.to_string()),
            Some(("java.lang.IllegalStateException: boom".to_owned(), 7))
        );
    }

    #[test]
    fn a_job_that_never_failed_and_garbage_give_nothing() {
        assert_eq!(parse(r#"{"exceptionHistory":{"entries":[],"truncated":false}}"#), None);
        assert_eq!(
            parse(r#"{"root-exception":null,"timestamp":null,"all-exceptions":[]}"#),
            None
        );
        assert_eq!(parse("{}"), None);
        assert_eq!(parse("[1,2,3]"), None);
        assert_eq!(
            parse(r#"{"exceptionHistory":{"entries":[{"timestamp":"soon"}]}}"#),
            None
        );
        assert_eq!(parse("not json"), None);
        // An entry without a time cannot be told from a later listing's: it is not a failure to count.
        assert_eq!(
            parse(r#"{"exceptionHistory":{"entries":[{"exceptionName":"X","stacktrace":"X: y"}]}}"#),
            None
        );
        // Only a name: that is the line.
        assert_eq!(
            parse(r#"{"exceptionHistory":{"entries":[{"exceptionName":"X","timestamp":1}]}}"#),
            Some(("X".to_owned(), 1))
        );
    }

    #[test]
    fn a_huge_trace_gives_one_bounded_line() {
        let mut trace = format!("java.lang.RuntimeException: {}\n", "m".repeat(10_000));
        for i in 0..50_000 {
            trace.push_str(&format!("\tat frame{i}(X.java:1)\n"));
        }
        trace.push_str("Caused by: java.io.IOException: deep\n");
        let (line, _) = summarize_with_time(&trace);
        let shown = failure_line(&line, str::to_owned);
        assert_eq!(shown.chars().count(), FAILURE_REASON_CHARS);
        assert!(shown.ends_with('…'));
        assert!(!shown.contains('\n'));
    }

    fn summarize_with_time(trace: &str) -> (String, i64) {
        (summarize(trace, None), 0)
    }

    #[test]
    fn a_secret_echoed_in_the_trace_is_masked_before_the_cut() {
        let trace = "org.apache.flink.table.api.ValidationException: bad option\n\
            Caused by: java.lang.IllegalArgumentException: sasl.jaas.config = ...password=\"hunter2-secret\";\u{1b}[31m\r\n";
        let line = summarize(trace, None);
        let shown = failure_line(&line, |text| text.replace("hunter2-secret", "<redacted>"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        // A secret across the cut is masked whole first, so no prefix of it is left at the end.
        let long = format!("X: {}hunter2-secret", "a".repeat(FAILURE_REASON_CHARS - 10));
        let shown = failure_line(&long, |text| text.replace("hunter2-secret", "<redacted>"));
        assert!(!shown.contains("hunt"), "{shown}");
    }
}
