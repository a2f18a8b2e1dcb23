//! `cdc-orchestrator`: runs a table's Flink CDC job only while that table has changes.
//!
//! # How data flows
//!
//! ```text
//!                  app (composition root: builds every part from config, wires them with channels)
//!
//!  Kafka ──▶ kafka::watcher ──WatchEvent──▶ controller ──Input──▶ policy ──Action──▶ controller ──▶ flink::Launcher
//!            (watermarks, lag, samples        │  ▲                (pure: no I/O,            (SQL Gateway,
//!             decoded by decoder)             │  └── outcomes, ◀── no clock)                 JobManager)
//!                  │                          │      listings
//!                  │                          ▼
//!                  │            http (health, /tables, control API) ──ControlRequest──▶ controller
//!                  ▼                          ▲
//!          telemetry (metrics, savings, health) ◀── reported to by kafka, flink, controller; read by http
//!
//!          model (TableName, JobId, JobState, JobSummary, Op, Millis, naming): the words every layer above speaks
//! ```
//!
//! # Where each concern lives
//!
//! - [`model`]: the shared vocabulary every layer speaks: [`model::TableName`] (the one table-name rule),
//!   [`model::JobId`], [`model::JobState`], [`model::JobSummary`], [`model::Op`], [`model::Millis`] and
//!   [`model::now_ms`], the rules that name a table's topic and job, and how a start's job id is pinned.
//! - [`telemetry`]: what the sidecar reports about itself: Prometheus metrics behind methods that name what
//!   happened, the savings book, readiness; the others report to it.
//! - [`config`]: layered settings (defaults, TOML file, `CDC_*` variables), one file per section, each validating
//!   itself; every mistake reported at once.
//! - [`decoder`]: a Debezium record's table, operation and kind (change, tombstone, heartbeat), never panicking.
//! - [`sql`]: the Flink SQL templates of a table's job, loaded and checked once, rendered per start.
//! - [`policy`]: the pure trigger state machine that decides when each table's job starts and stops and what
//!   Flink's listings mean; time is an input, so it is replayable and property-tested.
//! - [`auth`]: tokens for SASL OAUTHBEARER: an OIDC client-credentials grant, and AWS MSK IAM's presigned token.
//! - [`kafka`]: the Kafka side: one connection layer (ApiVersions, TLS, SASL) and pool, partition watermarks,
//!   consumer lag, bounded record samples, and the watcher that reports table activity.
//! - [`lease`]: leader election through a Kubernetes Lease: which replica may act, and the guard asked before every
//!   Flink call that changes something.
//! - [`flink`]: the `Launcher` trait and its `sql-gateway` and `dry-run` implementations, the SQL Gateway and
//!   JobManager REST clients.
//! - [`scaffold`]: a table's Flink SQL (and the JDBC sink's table) generated from Postgres's catalog, and the
//!   `--check` that compares the templates with it.
//! - [`controller`]: the run loop: feeds the watcher's observations, listings and operator commands to the policy
//!   and carries out its actions through a [`flink::Launcher`], reporting outcomes back; it decides nothing. Its
//!   [`controller::Reloader`] re-reads the templates and reloadable policy keys (SIGHUP, `POST /reload`).
//! - [`http`]: the operator endpoint: health, readiness, `/tables`, `/metrics`, the control API.
//! - [`app`]: the composition root: builds the parts from the configuration and wires them together.
//! - [`cli`]: one file per subcommand; `main.rs` only parses the command line and dispatches.
//! - [`backoff`], [`logging`], [`shutdown`]: the one backoff rule, escaped logs, the shutdown signal every task takes;
//!   [`http_client`]: the one way an outgoing HTTP client is built (no redirect, a timeout, bounded bodies).
//!
//! # Which folder may import which
//!
//! Each layer imports only layers above it in this list, so there is no circle between folders.
//! `scripts/check-layers.py` (run by `scripts/test.sh`) holds the same table and fails on any other arrow:
//!
//! 1. `model`, `backoff`, `logging`, `http_client`: nothing of the crate; `shutdown`: logging.
//! 2. `telemetry` (model, logging), `config` (model, logging), `decoder` (model).
//! 3. `sql` (config, model, logging); `lease` (config, model, logging, backoff, shutdown, http_client, telemetry).
//! 4. `auth` (config, model, logging, backoff, http_client); `policy` (model, backoff, and config for its settings); `kafka`
//!    (auth, config, decoder, model, telemetry, backoff, logging, shutdown); `flink` (config, sql, lease, model, telemetry, backoff,
//!    logging, shutdown, http_client); `scaffold` (config, sql, model, logging).
//! 5. `controller` (any layer above).
//! 6. `http` (lease's role; controller's control types only: `ControlCommand`, `ControlError`, `ControlRequest`, `ReloadRequest`, `ReloadReport`,
//!    `TablesSnapshot`; policy's status types, telemetry, config, model, logging, shutdown).
//! 7. `app`, the composition root (every layer above); then `cli`, which runs it.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod controller;
pub mod decoder;
pub mod flink;
pub mod http;
pub mod http_client;
pub mod kafka;
pub mod lease;
pub mod logging;
pub mod model;
pub mod policy;
pub mod scaffold;
pub mod shutdown;
pub mod sql;
pub mod telemetry;
