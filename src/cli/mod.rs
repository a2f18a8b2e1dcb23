//! The command-line subcommands other than `run`: each prints for an operator or a test.

pub mod healthcheck;
pub mod replay;
pub mod status;
