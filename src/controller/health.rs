//! Readiness: when Kafka and Flink last answered, for `/readyz` and the `cdc_dependency_up` metric.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Readiness inputs: when Kafka and Flink last answered, and why they failed if they did.
#[derive(Debug)]
pub struct Health {
    kafka: Mutex<Dependency>,
    flink: Mutex<Dependency>,
}

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
}
