//! The operator HTTP endpoint: health, readiness, Prometheus metrics and a Kafka-Connect-style control API.
//!
//! The server owns no table state. It reads the latest snapshot the run loop publishes on a `watch` channel and
//! forwards control commands to the run loop over an `mpsc` channel, waiting for its answer, so every decision
//! still goes through the one policy.
//!
//! - [`routes`]: the router, its handlers and the state they share.
//! - [`api`]: the JSON the API answers with, its own types rather than the policy's.
//! - `middleware`: bearer-token check and body limit, before any handler runs.
//! - [`server`]: accepting and serving connections within [`Limits`].
//! - [`metrics`] and [`savings`]: what `GET /metrics` renders.

pub mod api;
pub mod metrics;
mod middleware;
pub mod routes;
pub mod savings;
pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::policy::TableStatus;

pub use routes::{ServerState, router};
pub use server::{Limits, open_file_limit, raise_open_file_limit, serve};

/// The latest view of every table, published by the run loop.
pub type TablesSnapshot = Arc<BTreeMap<String, TableStatus>>;

/// An operator command for one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlCommand {
    /// Start the job now if it is not running (still honouring the throttle, never a second job).
    Trigger,
    /// Suspend starts of the table.
    Pause,
    /// Allow starts again; starts at once if changes are pending.
    Resume,
    /// Stop the running job with a savepoint.
    Stop,
}

/// Why the run loop refused a control command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The table is not managed by this sidecar.
    #[error("unknown table: {0}")]
    UnknownTable(String),
    /// The command does not apply in the table's current state.
    #[error("{0}")]
    Conflict(String),
}

/// A control command on its way to the run loop, with the channel for the answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// The table.
    pub table: String,
    /// What to do.
    pub command: ControlCommand,
    /// Where the run loop answers with the table's new status.
    pub reply: oneshot::Sender<Result<TableStatus, ControlError>>,
}

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
