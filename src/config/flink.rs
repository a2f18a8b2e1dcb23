//! The `[flink]` section: how to reach Flink, where its jobs keep savepoints and templates, how fast to start jobs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{Checks, check_fields};
use super::de::whole_u32;
use super::shown_url::{self, link_url};
use super::{ConfigError, Section};

/// Default of `flink.max_response_bytes`: 8 MiB. The largest answer is `GET /jobs/overview`, about 400 bytes per
/// job Flink lists (id, name, state, times and task counts; a long job name adds its length), so this holds some
/// 20,000 jobs, running and recently ended, with room to spare.
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 8 * 1024 * 1024;

/// How jobs are launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LauncherKind {
    /// Submit through the Flink SQL Gateway and manage through the JobManager REST API.
    SqlGateway,
    /// Log the statements and simulate a running job; for demos without Flink.
    DryRun,
}

/// The `[flink]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlinkConfig {
    /// Which launcher submits jobs.
    pub launcher: LauncherKind,
    /// Base URL of the Flink SQL Gateway REST endpoint.
    #[serde(serialize_with = "shown_url::serialize")]
    pub sql_gateway_url: String,
    /// Base URL of the JobManager REST API.
    #[serde(serialize_with = "shown_url::serialize")]
    pub jobmanager_url: String,
    /// Base URL of the Flink web UI as an operator's browser reaches it, for the job links in `/tables`;
    /// unset means `jobmanager_url` (the UI is served on the REST port).
    #[serde(serialize_with = "shown_url::serialize_option")]
    pub web_ui_url: Option<String>,
    /// Where stop-with-savepoint writes savepoints.
    pub savepoint_dir: String,
    /// Folder whose SQL templates override the built-in ones (and add tables); absent means built-in only.
    pub sql_dir: Option<PathBuf>,
    /// Checkpoint interval of the per-table jobs: Iceberg commits and Kafka offsets land on checkpoints.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Job starts allowed per minute across all tables.
    #[serde(deserialize_with = "whole_u32")]
    pub starts_per_minute: u32,
    /// Starts allowed at once before the per-minute rate applies.
    #[serde(deserialize_with = "whole_u32")]
    pub start_burst: u32,
    /// Jobs that may be starting, running or stopping at once; further starts queue.
    #[serde(deserialize_with = "whole_u32")]
    pub max_concurrent_jobs: u32,
    /// Largest answer body read from Flink, counted as it is read (sized or chunked); a larger answer is an
    /// error naming the endpoint, and is not read further.
    #[serde(deserialize_with = "whole_u32")]
    pub max_response_bytes: u32,
    /// Upper bound on any single HTTP request to Flink.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a start may take until the job is RUNNING.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// How long stop-with-savepoint may take before the job is cancelled.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// How often Flink's job list is compared with what the sidecar believes.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// On SIGTERM/SIGINT, how long in-flight Flink calls may take to finish before they are abandoned.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Stop every running job (with savepoint) on shutdown, instead of leaving them to be adopted next time.
    pub stop_jobs_on_shutdown: bool,
}

impl FlinkConfig {
    /// Where job links in `/tables` point: the web UI without any userinfo (a link is for a browser, and is
    /// served without a token), or nothing for the dry-run launcher (no Flink exists).
    pub fn job_link_base(&self) -> String {
        match self.launcher {
            LauncherKind::DryRun => String::new(),
            _ => link_url(self.web_ui_url.as_deref().unwrap_or(&self.jobmanager_url)),
        }
    }
}

impl Default for FlinkConfig {
    fn default() -> Self {
        Self {
            launcher: LauncherKind::SqlGateway,
            sql_gateway_url: "http://127.0.0.1:8083".to_owned(),
            jobmanager_url: "http://127.0.0.1:8081".to_owned(),
            web_ui_url: None,
            savepoint_dir: "s3://warehouse/savepoints".to_owned(),
            sql_dir: None,
            checkpoint_interval: Duration::from_secs(10),
            starts_per_minute: 10,
            start_burst: 5,
            max_concurrent_jobs: 20,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            request_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(20),
            stop_jobs_on_shutdown: false,
        }
    }
}

impl Section for FlinkConfig {
    const KEY: &'static str = "flink";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_fields!(errors.positive, "flink", self: request_timeout, start_timeout, stop_timeout);
        check_fields!(errors.positive, "flink", self: reconcile_interval, shutdown_timeout, checkpoint_interval);
        check_fields!(errors.at_least_one, "flink", self: starts_per_minute, start_burst, max_concurrent_jobs);
        check_fields!(errors.at_least_one, "flink", self: max_response_bytes);
        check_fields!(errors.http_url, "flink", self: sql_gateway_url, jobmanager_url);
        if let Some(url) = &self.web_ui_url {
            errors.http_url("flink.web_ui_url", url);
        }
        if let Some(dir) = &self.sql_dir
            && !dir.is_dir()
        {
            errors.invalid("flink.sql_dir", &dir.display().to_string(), "not a directory");
        }
        check_fields!(errors.not_blank, "flink", self: savepoint_dir);
    }
}
