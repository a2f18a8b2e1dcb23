//! The `dry-run` launcher: logs the statements it would submit and simulates a running job per table.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::launcher::{job_settings, newest_first};
use super::{FlinkError, Launcher, Started, Stopped};
use crate::config::FlinkConfig;
use crate::lease::LeaseGuard;
use crate::model::{JobId, JobState, JobSummary, job_id_for, job_name};

/// Simulates Flink in memory; for demos and for running the sidecar without a cluster.
#[derive(Debug)]
pub struct DryRunLauncher {
    savepoint_dir: String,
    checkpoint_interval: Duration,
    jobs: Mutex<BTreeMap<JobId, JobSummary>>,
    /// Asked before a simulated job is started or stopped, as the real launcher asks before each request.
    guard: LeaseGuard,
}

impl DryRunLauncher {
    /// A launcher with no jobs.
    pub fn new(flink: &FlinkConfig) -> DryRunLauncher {
        DryRunLauncher {
            savepoint_dir: flink.savepoint_dir.clone(),
            checkpoint_interval: flink.checkpoint_interval,
            jobs: Mutex::new(BTreeMap::new()),
            guard: LeaseGuard::always(),
        }
    }

    /// Asks `guard` before every simulated start and stop; a refusal is [`FlinkError::NotLeader`].
    pub fn with_guard(mut self, guard: LeaseGuard) -> DryRunLauncher {
        self.guard = guard;
        self
    }

    fn may_change(&self, endpoint: &str) -> Result<(), FlinkError> {
        self.guard.check().map_err(|source| FlinkError::NotLeader {
            endpoint: endpoint.to_owned(),
            source,
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, JobSummary>> {
        // The map stays consistent even if a holder panicked: every update is a single insert.
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Now, in the unit of Flink's job timestamps.
fn now_ms() -> i64 {
    i64::try_from(crate::model::now_ms()).unwrap_or(i64::MAX)
}

impl Launcher for DryRunLauncher {
    async fn start(&self, table: &str, launch_generation: u64, statements: &[String]) -> Result<Started, FlinkError> {
        let job_id = job_id_for(table, launch_generation);
        let mut jobs = self.jobs();
        if let Some(live) = jobs.values().find(|j| j.table == table && j.state.is_alive()) {
            return Ok(Started {
                job_id: live.job_id.clone(),
                adopted: true,
            });
        }
        if let Some(used) = jobs.get(&job_id) {
            return Err(FlinkError::JobIdUsed {
                table: table.to_owned(),
                job_id,
                state: used.state.clone(),
            });
        }
        self.may_change("dry-run submit")?;
        let prelude = job_settings(table, &job_id, self.checkpoint_interval);
        for statement in prelude.iter().chain(statements) {
            tracing::info!(table, %statement, "dry-run: would submit");
        }
        jobs.insert(
            job_id.clone(),
            JobSummary {
                table: table.to_owned(),
                job_id: job_id.clone(),
                state: JobState::Running,
                start_time_ms: now_ms(),
                end_time_ms: None,
            },
        );
        tracing::info!(table, job_id = %job_id, "dry-run: job RUNNING");
        Ok(Started { job_id, adopted: false })
    }

    async fn stop(&self, table: &str, job_id: &JobId) -> Result<Stopped, FlinkError> {
        let mut jobs = self.jobs();
        let Some(job) = jobs.get_mut(job_id) else {
            return Ok(Stopped::AlreadyStopped { state: None });
        };
        if job.state.is_terminal() {
            return Ok(Stopped::AlreadyStopped {
                state: Some(job.state.clone()),
            });
        }
        if job.table != table {
            return Err(FlinkError::ForeignJob {
                table: table.to_owned(),
                job_id: job_id.clone(),
                name: job_name(&job.table),
            });
        }
        self.may_change("dry-run stop")?;
        job.state = JobState::Finished;
        job.end_time_ms = Some(now_ms());
        let location = format!(
            "{}/savepoint-dry-run-{job_id}",
            self.savepoint_dir.trim_end_matches('/')
        );
        tracing::info!(table, job_id = %job_id, savepoint = %location, "dry-run: job stopped with savepoint");
        Ok(Stopped::Savepoint { location })
    }

    async fn list_jobs(&self) -> Result<Vec<JobSummary>, FlinkError> {
        let mut jobs: Vec<JobSummary> = self.jobs().values().cloned().collect();
        newest_first(&mut jobs);
        Ok(jobs)
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn simulates_one_job_per_table() {
        let launcher = DryRunLauncher::new(&FlinkConfig::default());
        let sql = vec!["INSERT INTO s SELECT 1".to_owned()];
        let first = launcher.start("faculty", 1, &sql).await.unwrap();
        assert!(!first.adopted);
        let again = launcher.start("faculty", 2, &sql).await.unwrap();
        assert!(again.adopted, "a live job is adopted, not doubled");
        assert_eq!(again.job_id, first.job_id);
        assert!(matches!(
            launcher.stop("program", &first.job_id).await,
            Err(FlinkError::ForeignJob { .. })
        ));
        let stopped = launcher.stop("faculty", &first.job_id).await.unwrap();
        assert!(matches!(stopped, Stopped::Savepoint { ref location } if location.contains(first.job_id.as_str())));
        assert!(matches!(
            launcher.start("faculty", 1, &sql).await,
            Err(FlinkError::JobIdUsed { .. })
        ));
        let next = launcher.start("faculty", 3, &sql).await.unwrap();
        assert_ne!(next.job_id, first.job_id);
        let jobs = launcher.list_jobs().await.unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs.iter().filter(|j| j.state == JobState::Running).count(), 1);
    }

    #[tokio::test]
    async fn a_standby_simulates_no_start_and_no_stop() {
        let (leadership, control) = crate::lease::Leadership::controlled("pod-a");
        let launcher = DryRunLauncher::new(&FlinkConfig::default());
        let sql = vec!["INSERT INTO s SELECT 1".to_owned()];
        let running = launcher.start("faculty", 1, &sql).await.unwrap().job_id;
        let launcher = launcher.with_guard(leadership.guard());
        control.stand_by(Some("pod-b".to_owned()));
        assert!(matches!(
            launcher.start("program", 1, &sql).await,
            Err(FlinkError::NotLeader { .. })
        ));
        assert!(matches!(
            launcher.stop("faculty", &running).await,
            Err(FlinkError::NotLeader { .. })
        ));
        let jobs = launcher.list_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].state, JobState::Running);
    }
}
