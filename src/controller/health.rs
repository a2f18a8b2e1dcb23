//! Readiness: when Kafka and Flink last answered, for `/readyz` and the `cdc_dependency_up` metric.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Readiness inputs: when Kafka and Flink last answered, and why they failed if they did.
#[derive(Debug)]
pub struct Health {
    kafka: Mutex<Dependency>,
    flink: Mutex<Dependency>,
    /// Why Kafka is only partly usable although its brokers answer (record samples time out), if it is.
    kafka_degraded: Mutex<Option<String>>,
}

/// Partitions named in a sample-timeout reason; the rest are counted.
const NAMED_PARTITIONS: usize = 3;

#[derive(Debug)]
struct Dependency {
    max_age: Duration,
    ok_at: Option<Instant>,
    error: Option<String>,
}

impl Dependency {
    fn new(max_age: Duration) -> Mutex<Self> {
        Mutex::new(Dependency {
            max_age,
            ok_at: None,
            error: None,
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

    /// Flink answered.
    pub fn flink_ok(&self) {
        set(&self.flink, Ok(()));
    }

    /// A Flink call failed.
    pub fn flink_failed(&self, error: impl Into<String>) {
        set(&self.flink, Err(error.into()));
    }

    /// `Ok` when ready, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        let now = Instant::now();
        for (name, dep) in [("kafka", &self.kafka), ("flink", &self.flink)] {
            let dep = dep.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match (dep.ok_at, &dep.error) {
                (_, Some(error)) => return Err(format!("{name}: {error}")),
                (None, None) => return Err(format!("{name}: not contacted yet")),
                (Some(at), None) if now.duration_since(at) > dep.max_age => {
                    return Err(format!("{name}: no answer for {}s", now.duration_since(at).as_secs()));
                }
                _ => {}
            }
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
        }
        Err(error) => dep.error = Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_needs_both_dependencies_recently() {
        let health = Health::new(Duration::from_secs(30), Duration::from_secs(90));
        assert_eq!(health.readiness(), Err("kafka: not contacted yet".to_owned()));
        health.kafka_ok();
        assert_eq!(health.readiness(), Err("flink: not contacted yet".to_owned()));
        health.flink_ok();
        assert_eq!(health.readiness(), Ok(()));
        health.flink_failed("connection refused");
        assert_eq!(health.readiness(), Err("flink: connection refused".to_owned()));
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
}
