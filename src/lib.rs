//! `cdc-orchestrator`: runs a table's Flink CDC job only while that table has changes.

#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod config;
pub mod controller;
pub mod decoder;
pub mod flink;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod policy;
pub mod shutdown;
pub mod sql;
