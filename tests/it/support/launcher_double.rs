//! A [`Launcher`] test double for driving the run loop in process: it records every call, keeps the jobs it
//! "runs" in memory, fails calls on demand, and takes as long as it is told to (on tokio's clock, so a test
//! with `tokio::time::pause()` never really waits).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::controller::RunLoop;
use cdc_orchestrator::flink::{FlinkError, Launcher, Started, Stopped};
use cdc_orchestrator::model::{JobId, JobState, JobSummary, job_id_for, job_name};
use cdc_orchestrator::telemetry::{Health, Metrics};

/// One call the run loop made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `start(table, launch_generation, ..)`.
    Start { table: String, launch_generation: u64 },
    /// `stop(table, job_id)`.
    Stop { table: String, job_id: JobId },
    /// `list_jobs()`.
    List,
}

/// How a call the test asked to fail fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Flink did not answer (retrying may help).
    Unreachable,
    /// Flink refused (the same call fails again).
    Refused,
}

impl Failure {
    fn error(self, endpoint: &str) -> FlinkError {
        match self {
            Failure::Unreachable => FlinkError::Transport {
                endpoint: endpoint.to_owned(),
                source: refused_connection(),
                timed_out: false,
                unreachable: true,
            },
            Failure::Refused => FlinkError::Api {
                endpoint: endpoint.to_owned(),
                status: 400,
                root_cause: "refused (test double)".to_owned(),
                fault: cdc_orchestrator::flink::Fault::Other,
            },
        }
    }
}

/// reqwest's error for a refused connection, made on a thread of its own (the caller's runtime may run on a
/// paused clock).
fn refused_connection() -> reqwest::Error {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            // A port just freed: nothing listens there.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let client = cdc_orchestrator::flink::http_client(Duration::from_secs(5)).expect("client");
            let answer = client.get(format!("http://127.0.0.1:{port}/")).send().await;
            answer.expect_err("nothing listens").without_url()
        })
    })
    .join()
    .expect("the connecting thread")
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    jobs: Vec<JobSummary>,
    clock_ms: i64,
    start_failures: VecDeque<Failure>,
    stop_failures: VecDeque<Failure>,
    list_failures: VecDeque<Failure>,
    start_delay: Duration,
    stop_delay: Duration,
}

/// The launcher test double; clones share their state.
#[derive(Debug, Clone, Default)]
pub struct FakeLauncher(Arc<Mutex<State>>);

impl FakeLauncher {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The start calls so far: (table, launch generation).
    pub fn starts(&self) -> Vec<(String, u64)> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Start {
                    table,
                    launch_generation,
                } => Some((table, launch_generation)),
                _ => None,
            })
            .collect()
    }

    /// The stop calls so far: (table, job id).
    pub fn stops(&self) -> Vec<(String, JobId)> {
        self.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Stop { table, job_id } => Some((table, job_id)),
                _ => None,
            })
            .collect()
    }

    /// How many listings were asked for.
    pub fn listings(&self) -> usize {
        self.calls().iter().filter(|c| **c == Call::List).count()
    }

    /// The jobs Flink has, newest last.
    pub fn jobs(&self) -> Vec<JobSummary> {
        self.state().jobs.clone()
    }

    /// The live jobs of `table`.
    pub fn live_jobs(&self, table: &str) -> Vec<JobSummary> {
        self.jobs()
            .into_iter()
            .filter(|j| j.table == table && j.state.is_alive())
            .collect()
    }

    /// A job Flink already runs, e.g. one an earlier sidecar process started.
    pub fn add_job(&self, table: &str, job_id: JobId, state: JobState) {
        let mut s = self.state();
        s.clock_ms += 1;
        let start_time_ms = s.clock_ms;
        s.jobs.push(JobSummary {
            table: table.to_owned(),
            job_id,
            state,
            start_time_ms,
            end_time_ms: None,
        });
    }

    /// The next start calls fail, one per entry.
    pub fn fail_starts(&self, failures: &[Failure]) {
        self.state().start_failures.extend(failures);
    }

    /// The next stop calls fail, one per entry.
    pub fn fail_stops(&self, failures: &[Failure]) {
        self.state().stop_failures.extend(failures);
    }

    /// The next listings fail, one per entry.
    pub fn fail_listings(&self, failures: &[Failure]) {
        self.state().list_failures.extend(failures);
    }

    /// How long each start takes.
    pub fn set_start_delay(&self, delay: Duration) {
        self.state().start_delay = delay;
    }

    /// How long each stop takes.
    pub fn set_stop_delay(&self, delay: Duration) {
        self.state().stop_delay = delay;
    }
}

impl Launcher for FakeLauncher {
    async fn start(&self, table: &str, launch_generation: u64, statements: &[String]) -> Result<Started, FlinkError> {
        assert!(!statements.is_empty(), "a start always has statements");
        let delay = {
            let mut s = self.state();
            s.calls.push(Call::Start {
                table: table.to_owned(),
                launch_generation,
            });
            s.start_delay
        };
        tokio::time::sleep(delay).await;
        let mut s = self.state();
        if let Some(failure) = s.start_failures.pop_front() {
            return Err(failure.error("POST /v1/sessions"));
        }
        // Like the real launcher: a live job of the table is adopted rather than a second one started.
        if let Some(live) = s.jobs.iter().find(|j| j.table == table && j.state.is_alive()) {
            return Ok(Started {
                job_id: live.job_id.clone(),
                adopted: true,
            });
        }
        let job_id = job_id_for(table, launch_generation);
        s.clock_ms += 1;
        let start_time_ms = s.clock_ms;
        s.jobs.push(JobSummary {
            table: table.to_owned(),
            job_id: job_id.clone(),
            state: JobState::Running,
            start_time_ms,
            end_time_ms: None,
        });
        Ok(Started { job_id, adopted: false })
    }

    async fn stop(&self, table: &str, job_id: &JobId) -> Result<Stopped, FlinkError> {
        let delay = {
            let mut s = self.state();
            s.calls.push(Call::Stop {
                table: table.to_owned(),
                job_id: job_id.clone(),
            });
            s.stop_delay
        };
        tokio::time::sleep(delay).await;
        let mut s = self.state();
        if let Some(failure) = s.stop_failures.pop_front() {
            return Err(failure.error("POST /jobs/:jobid/stop"));
        }
        s.clock_ms += 1;
        let now = s.clock_ms;
        let Some(job) = s.jobs.iter_mut().find(|j| j.job_id == *job_id && j.state.is_alive()) else {
            return Ok(Stopped::AlreadyStopped { state: None });
        };
        job.state = JobState::Finished;
        job.end_time_ms = Some(now);
        Ok(Stopped::Savepoint {
            location: format!("file:///savepoints/{}", job_name(table)),
        })
    }

    async fn list_jobs(&self) -> Result<Vec<JobSummary>, FlinkError> {
        let mut s = self.state();
        s.calls.push(Call::List);
        if let Some(failure) = s.list_failures.pop_front() {
            return Err(failure.error("GET /jobs/overview"));
        }
        let mut jobs = s.jobs.clone();
        jobs.reverse();
        Ok(jobs)
    }
}

/// A `flink.sql_dir` with a harmless setup file and a one-INSERT template for each of `tables`.
pub fn sql_dir(tables: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("setup.sql"), "SET 'table.local-time-zone' = 'UTC';").expect("setup.sql");
    std::fs::create_dir(dir.path().join("tables")).expect("tables dir");
    for table in tables {
        std::fs::write(
            dir.path().join("tables").join(format!("{table}.sql")),
            format!("INSERT INTO sink_{table} SELECT * FROM src_{table};"),
        )
        .expect("table template");
    }
    dir
}

/// A run loop over `launcher` with the templates of `config`, as `app::run` builds it.
pub fn run_loop_over(
    launcher: &FakeLauncher,
    config: Config,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> RunLoop<FakeLauncher> {
    let templates = Arc::new(cdc_orchestrator::sql::Templates::load(&config).expect("templates"));
    RunLoop::new(config, Arc::new(launcher.clone()), templates, metrics, health)
}
