//! Every integration test, in one binary: a module per area, and the harness they share in [`support`].
//!
//! One binary links the crate and its dependencies once (25 test binaries took ~790 MB of `target/` and a CI
//! machine ran out of disk linking them). Run one area with a filter on the module path:
//! `cargo test --test it run::` or `cargo test --test it hostile::kafka_frames::`.
//!
//! Everything in this binary shares one process: a test must not change process-wide state (environment
//! variables, resource limits, the working directory). Tests that need such state set it on the subprocess they
//! start ([`support::sidecar`]). `decoder_allocations` installs the binary's global allocator, which counts per
//! thread, so it sees only the allocations of its own test.

mod support;

mod broker;
mod cli;
mod cli_jobs;
mod controller;
mod decoder_allocations;
mod decoder_cases;
mod decoder_fixtures;
mod decoder_props;
mod flink;
mod flink_local;
mod flink_sql;
mod fuzz_corpus;
mod hardening;
mod hostile;
mod leadership;
mod lease;
mod msk_iam;
mod oauth;
mod operator;
mod packaging;
mod policy_props;
mod real_jobmanager;
mod reload;
mod replay;
mod run;
mod run_loop;
mod scaffold;
mod schema_drift;
mod secured_broker;
mod server;
mod stack;
mod watcher;
mod watcher_cost;
