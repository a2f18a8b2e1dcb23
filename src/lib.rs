//! `cdc-orchestrator`: runs a table's Flink CDC job only while that table has changes.
//!
//! The sidecar watches Debezium topics cheaply (partition high watermarks plus a bounded sample of new
//! records), decides with a pure policy when a table's job must start or stop, and drives Flink through its
//! SQL Gateway and JobManager REST APIs. Each concern is a module with a narrow edge; `main.rs` only wires
//! them together.

#![warn(missing_docs)]

pub mod config;
pub mod decoder;
pub mod flink;
pub mod healthcheck;
pub mod lag;
pub mod logging;
pub mod metrics;
pub mod op;
pub mod policy;
pub mod replay;
pub mod routing;
pub mod run;
pub mod savings;
pub mod server;
pub mod shutdown;
pub mod sql;
pub mod status;
pub mod tls;
pub mod watcher;
pub mod watermarks;
pub mod wire;
