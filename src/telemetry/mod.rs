//! What the sidecar reports about itself: Prometheus metrics, what scale-to-zero saves, and readiness.
//!
//! Owns: [`Metrics`] (every `cdc_*` series, reached through methods that name what happened, such as
//! [`Metrics::job_started`] or [`Metrics::records_seen`]), [`Savings`] (the per-table book of job time) and
//! [`Health`] (when Kafka and Flink last answered). May import: [`crate::model`] and [`crate::logging`] only. The
//! Kafka watcher, the run loop and the HTTP server report here or read from here; nothing here knows them.

mod health;
mod metrics;
mod savings;

pub use health::{CallFailure, Health};
pub use metrics::Metrics;
pub use savings::{Savings, SavingsBook, Seen, TableSavings};
