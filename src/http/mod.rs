//! The operator HTTP endpoint: health, readiness, Prometheus metrics and a Kafka-Connect-style control API.
//!
//! The server owns no table state. It reads the latest snapshot the run loop publishes on a `watch` channel and
//! forwards control commands to the run loop over an `mpsc` channel, waiting for its answer, so every decision
//! still goes through the one policy.
//!
//! - [`routes`]: the router, its handlers and the state they share.
//! - [`api`]: the JSON the API answers with, its own types rather than the policy's.
//! - `middleware`: bearer-token check and body limit, before any handler runs.
//! - [`server`]: accepting and serving connections within [`Limits`]; `parse_errors` gives hyper's own error
//!   answers their JSON body.
//!
//! What `GET /metrics` renders and `/tables` shows of the savings is [`crate::telemetry`]'s.
//!
//! Owns the routes, their JSON and the server's limits. May import the controller's control types only
//! ([`crate::controller::ControlRequest`] and the commands, errors and snapshots it carries), the policy's status
//! types, [`crate::lease`] (the replica's role: a standby is not ready and refuses commands), [`crate::telemetry`],
//! [`crate::config`], [`crate::model`], [`crate::logging`] and [`crate::shutdown`];
//! only the composition root ([`crate::app`]) and the CLI import it.

pub mod api;
mod middleware;
mod parse_errors;
pub mod routes;
pub mod server;

pub use routes::{ServerState, router};
pub use server::{Limits, open_file_limit, raise_open_file_limit, serve};
