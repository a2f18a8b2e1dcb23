//! The cdc jobs Flink knows, for `cdc-orchestrator jobs` ([`crate::cli::jobs`] prints them).

use std::sync::Arc;

use super::{AnyLauncher, FlinkError, JobSummary, Launcher};
use crate::config::Config;
use crate::sql::Templates;

/// The cdc jobs Flink knows (through the configured launcher), newest first. Built-in templates suffice: the
/// listing renders no job.
pub async fn list_cdc_jobs(config: &Config) -> Result<Vec<JobSummary>, FlinkError> {
    let templates = Arc::new(Templates::builtin(config));
    AnyLauncher::from_config(config, templates)?.list_jobs().await
}
