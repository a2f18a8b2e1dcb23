//! The cdc jobs Flink knows, for `cdc-orchestrator jobs` ([`crate::cli::jobs`] prints them).

use super::{AnyLauncher, FlinkError, Launcher};
use crate::config::Config;
use crate::model::JobSummary;

/// The cdc jobs Flink knows (through the configured launcher), newest first.
pub async fn list_cdc_jobs(config: &Config) -> Result<Vec<JobSummary>, FlinkError> {
    AnyLauncher::from_config(config)?.list_jobs().await
}
