//! `cdc-orchestrator`: runs a table's Flink CDC job only while that table has changes.
//!
//! # How data flows
//!
//! ```text
//!  Kafka ──▶ kafka::watcher ──WatchEvent──▶ controller ──Input──▶ policy ──Action──▶ controller ──▶ flink::Launcher
//!            (watermarks, samples                │  ▲                 (pure: no I/O,           (SQL Gateway,
//!             decoded by decoder)                │  └──── outcomes ◀── no clock)                 JobManager)
//!                                                ▼
//!                                   http (health, /tables, metrics, control API)
//! ```
//!
//! # Where each concern lives
//!
//! - [`model`]: the shared vocabulary every layer speaks: [`model::TableName`] (the one table-name rule),
//!   [`model::JobId`], [`model::JobState`], [`model::Op`], [`model::Millis`] and [`model::now_ms`], and the rules
//!   that name a table's topic and job. It imports nothing of the crate.
//! - [`telemetry`]: what the sidecar reports about itself: Prometheus metrics behind methods that name what
//!   happened, the savings book, readiness. Imports only `model` and `logging`; the others report to it.
//! - [`config`]: layered settings (defaults, TOML file, `CDC_*` variables), one file per section, each validating
//!   itself; every mistake reported at once.
//! - [`kafka`]: the Kafka side: one connection layer (ApiVersions, TLS, SASL), partition watermarks, consumer lag,
//!   bounded record samples.
//! - [`decoder`]: a Debezium record's table, operation and kind (change, tombstone, heartbeat), never panicking.
//! - [`policy`]: the pure trigger state machine that decides when each table's job starts and stops; time is an
//!   input, so it is replayable and property-tested.
//! - [`controller`]: the run loop: feeds the watcher's observations and operator commands to the policy and
//!   carries out its actions through a [`flink::Launcher`], reporting outcomes back.
//! - [`flink`]: the `Launcher` trait and its `sql-gateway` and `dry-run` implementations, the SQL Gateway and
//!   JobManager REST clients.
//! - [`sql`]: the Flink SQL templates of a table's job, loaded and checked once, rendered per start.
//! - [`http`]: the operator endpoint: health, readiness, `/tables`, `/metrics`, the control API.
//! - [`app`]: the composition root: builds the parts from the configuration and wires them together.
//! - [`cli`]: one file per subcommand; `main.rs` only parses the command line and dispatches.
//! - [`backoff`], [`logging`], [`shutdown`]: the one backoff rule, escaped logs, the shutdown signal every task takes.
//!
//! # Which folder may import which
//!
//! Each layer imports only layers above it in this list, so there is no circle between folders:
//!
//! 1. `model`, `backoff`, `logging`, `shutdown`: nothing of the crate.
//! 2. `telemetry` (model, logging), `config` (model), `decoder` (model).
//! 3. `sql` (config, model).
//! 4. `policy` (config, model, backoff), `flink` and `kafka` (config, sql, model, telemetry, backoff; kafka also
//!    decoder).
//! 5. `controller` (the layers above).
//! 6. `http` (controller's control channel and snapshots, telemetry, policy's status types).
//! 7. `app`, the composition root; then `cli`, which runs it.

#![warn(missing_docs)]

pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod controller;
pub mod decoder;
pub mod flink;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod model;
pub mod policy;
pub mod shutdown;
pub mod sql;
pub mod telemetry;
