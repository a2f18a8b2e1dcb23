//! Readiness: when Kafka and Flink last answered, for `/readyz` and the `cdc_dependency_up` metric.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::logging::{Escaper, chain};

/// A failed call to a dependency, as readiness tells failures apart. The Flink client's error implements it, so
/// this file needs nothing of the Flink layer.
pub trait CallFailure: std::error::Error + 'static {
    /// Whether the dependency is unreachable or failing (a transport error, a 5xx), rather than refusing or
    /// answering one call with something unusable.
    fn is_transient(&self) -> bool;
}

/// Readiness inputs: when Kafka and Flink last answered, and why they failed if they did.
#[derive(Debug)]
pub struct Health {
    kafka: Mutex<Dependency>,
    flink: Mutex<Dependency>,
    /// Why Kafka is only partly usable although its brokers answer (record samples time out), if it is.
    kafka_degraded: Mutex<Option<String>>,
    /// Why the SASL token cannot be refreshed, while it cannot: the brokers may still answer over connections
    /// opened with the last token, but no new connection will authenticate once it expires.
    kafka_token: Mutex<Option<String>>,
}

/// Partitions named in a sample-timeout reason; the rest are counted.
const NAMED_PARTITIONS: usize = 3;

#[derive(Debug)]
struct Dependency {
    max_age: Duration,
    ok_at: Option<Instant>,
    error: Option<String>,
    /// The last failure since the last answer that did not make the dependency count as down (it answered, but
    /// with a refusal or something unusable): the reason readiness gives while no good answer is recent.
    refused: Option<String>,
}

impl Dependency {
    fn new(max_age: Duration) -> Mutex<Self> {
        Mutex::new(Dependency {
            max_age,
            ok_at: None,
            error: None,
            refused: None,
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
            kafka_degraded: Mutex::new(None),
            kafka_token: Mutex::new(None),
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

    /// The partitions (`topic/partition`) whose record samples time out now; empty when none do. Not ready while
    /// any do: their changes are counted from the watermarks alone, without their operations.
    pub fn kafka_sample_timeouts(&self, partitions: &[String]) {
        let reason = (!partitions.is_empty()).then(|| {
            let named = partitions[..partitions.len().min(NAMED_PARTITIONS)].join(", ");
            let more = partitions.len().saturating_sub(NAMED_PARTITIONS);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!(
                "record samples time out on {} partition(s) ({named}{more}); their changes are counted from the \
                watermarks alone",
                partitions.len()
            )
        });
        *self
            .kafka_degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }

    /// Why the SASL OAUTHBEARER token cannot be had now (one line naming the token endpoint and the cause, secrets
    /// masked), or `None` once it can again. Not ready meanwhile.
    pub fn kafka_token_failure(&self, failure: Option<&str>) {
        let reason = failure.map(|failure| {
            let mut reason = String::new();
            let _ = fmt::Write::write_fmt(&mut Escaper(&mut reason), format_args!("{failure}"));
            reason
        });
        *self.kafka_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }

    /// Flink answered.
    pub fn flink_ok(&self) {
        set(&self.flink, Ok(()));
    }

    /// A Flink call failed. Flink unreachable or failing (a transport error, a 5xx) makes it down at once; any
    /// other failure (a refusal, an answer that does not decode) is one call's problem, which readiness names only
    /// while Flink has not answered well recently (never, or longer ago than its maximum age).
    pub fn flink_failed(&self, error: &impl CallFailure) {
        // Flink's text reaches `/readyz`: escaped like a log line (the Flink client has redacted secrets).
        let mut reason = String::new();
        let _ = fmt::Write::write_fmt(&mut Escaper(&mut reason), format_args!("{}", chain(error)));
        if error.is_transient() {
            set(&self.flink, Err(reason));
        } else {
            let mut dep = self.flink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            dep.refused = Some(reason);
        }
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let now = Instant::now();
        for (name, dep) in [("kafka", &self.kafka), ("flink", &self.flink)] {
            let dep = dep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match (dep.ok_at, &dep.error) {
                (_, Some(error)) => return Err(format!("{name}: {error}")),
                (None, None) => {
                    return Err(match &dep.refused {
                        Some(refused) => format!("{name}: {refused}"),
                        None => format!("{name}: not contacted yet"),
                    });
                }
                (Some(at), None) if now.duration_since(at) > dep.max_age => {
                    let silent = now.duration_since(at).as_secs();
                    return Err(match &dep.refused {
                        Some(refused) => format!("{name}: {refused} (no good answer for {silent}s)"),
                        None => format!("{name}: no answer for {silent}s"),
                    });
                }
                _ => {}
            }
        }
        if let Some(reason) = &*self.kafka_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            return Err(format!("kafka: the SASL token cannot be refreshed: {reason}"));
        }
        if let Some(reason) = &*self
            .kafka_degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            return Err(format!("kafka: {reason}"));
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
            dep.refused = None;
        }
        Err(error) => dep.error = Some(error),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Flink unreachable, as the Flink client says it.
    #[derive(Debug)]
    pub(in crate::telemetry) struct Unreachable;

    impl std::error::Error for Unreachable {}

    impl fmt::Display for Unreachable {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("GET /jobs/overview: connection refused")
        }
    }

    impl CallFailure for Unreachable {
        fn is_transient(&self) -> bool {
            true
        }
    }

    /// Flink refusing a call with a 404 whose body carries terminal escapes, as the Flink client says it.
    #[derive(Debug)]
    struct NotFound;

    impl std::error::Error for NotFound {}

    impl fmt::Display for NotFound {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("GET /jobs/overview: HTTP 404: <html>\n\u{1b}[31mNot Found")
        }
    }

    impl CallFailure for NotFound {
        fn is_transient(&self) -> bool {
            false
        }
    }

    fn refused() -> Unreachable {
        Unreachable
    }

    fn not_found() -> NotFound {
        NotFound
    }

    #[tokio::test(start_paused = true)]
    async fn a_flink_that_answers_only_refusals_is_not_ready_and_readiness_says_why() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        health.kafka_ok();
        health.flink_failed(&not_found());
        let reason = r"flink: GET /jobs/overview: HTTP 404: <html>\n\u{1b}[31mNot Found";
        assert_eq!(
            health.readiness(),
            Err(reason.to_owned()),
            "escaped, not 'not contacted yet'"
        );
        health.flink_ok();
        health.flink_failed(&not_found());
        assert_eq!(
            health.readiness(),
            Ok(()),
            "one refused call while Flink answers is that call's problem"
        );
        tokio::time::advance(Duration::from_secs(91)).await;
        health.kafka_ok();
        assert_eq!(health.readiness(), Err(format!("{reason} (no good answer for 91s)")),);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_needs_both_dependencies_recently() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        assert_eq!(health.readiness(), Err("kafka: not contacted yet".to_owned()));
        health.kafka_ok();
        assert_eq!(health.readiness(), Err("flink: not contacted yet".to_owned()));
        health.flink_ok();
        assert_eq!(health.readiness(), Ok(()));
        health.flink_failed(&refused());
        assert_eq!(
            health.readiness(),
            Err("flink: GET /jobs/overview: connection refused".to_owned())
        );
        health.flink_ok();
        tokio::time::advance(Duration::from_secs(31)).await;
        health.flink_ok();
        assert_eq!(health.readiness(), Err("kafka: no answer for 31s".to_owned()));
    }

    #[tokio::test(start_paused = true)]
    async fn sample_timeouts_make_kafka_not_ready_naming_a_few_partitions() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        health.kafka_ok();
        health.flink_ok();
        let partitions: Vec<String> = (0..5).map(|p| format!("t/{p}")).collect();
        health.kafka_sample_timeouts(&partitions);
        let reason = health.readiness().expect_err("not ready");
        assert!(
            reason.starts_with("kafka: record samples time out on 5 partition(s) (t/0, t/1, t/2 and 2 more)"),
            "{reason}"
        );
        health.kafka_sample_timeouts(&[]);
        assert_eq!(health.readiness(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_that_cannot_be_refreshed_makes_kafka_not_ready_saying_why_on_one_line() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        health.kafka_ok();
        health.flink_ok();
        health.kafka_token_failure(Some(
            "kafka.sasl.oauth.token_endpoint http://idp/token: HTTP 401\nforged",
        ));
        assert_eq!(
            health.readiness(),
            Err(r"kafka: the SASL token cannot be refreshed: kafka.sasl.oauth.token_endpoint http://idp/token: HTTP 401\nforged".to_owned())
        );
        health.kafka_token_failure(None);
        assert_eq!(health.readiness(), Ok(()));
    }
}
