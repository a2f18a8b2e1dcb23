//! A fake Flink for tests: the SQL Gateway REST API (v1/v2) and the JobManager REST API on two loopback ports,
//! modelled on Flink's published OpenAPI specs (`docs/static/generated/rest_v1_dispatcher.yml`,
//! `rest_v{1,2}_sql_gateway.yml`) and on the wire format Flink's serializers actually produce where the two
//! differ (e.g. `/jobs/overview` rows are `jid`/`name`/`state`/`start-time`, metrics are a bare array).
//!
//! It is stateful: sessions (with idle expiry), operations, jobs with the id pinned by
//! `SET '$internal.pipeline.job-id'` and the name set by `SET 'pipeline.name'`, stop-with-savepoint triggers. It
//! parses the statements it gets (`SET`/`RESET`, DDL, `INSERT`, `EXECUTE STATEMENT SET`) and rejects a second
//! submission of a known job id with Flink's `DuplicateJobSubmissionException`. Faults are injected on demand
//! per route: HTTP 500 before or after acting, slow answers, expired sessions, jobs that never run or fail
//! after starting, savepoints that hang or fail. Errors use Flink's body `{"errors": [...]}`.

// Handlers short-circuit with a ready HTTP answer as their error; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

/// A request kind faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /v1/sessions`
    OpenSession,
    /// `DELETE /v1/sessions/{sh}`
    CloseSession,
    /// `POST /v1/sessions/{sh}/heartbeat`
    Heartbeat,
    /// `POST /v1/sessions/{sh}/statements` with a statement that submits no job (SET, DDL, ...)
    ExecuteStatement,
    /// `POST /v1/sessions/{sh}/statements` with an INSERT or a statement set
    SubmitJob,
    /// `GET .../operations/{oh}/status`
    OperationStatus,
    /// `GET .../operations/{oh}/result/{token}`
    FetchResult,
    /// `GET /v1/api_versions`
    ApiVersions,
    /// `GET /jobs/overview`
    JobsOverview,
    /// `GET /jobs/{jid}`
    JobDetail,
    /// `GET /jobs/{jid}/status`
    JobStatus,
    /// `POST /jobs/{jid}/stop`
    StopJob,
    /// `GET /jobs/{jid}/savepoints/{tid}`
    SavepointStatus,
    /// `PATCH /jobs/{jid}?mode=cancel`
    CancelJob,
    /// `GET /jobs/{jid}/vertices/{vid}/metrics`
    VertexMetrics,
    /// `GET /overview`
    ClusterOverview,
}

/// What an injected fault does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer HTTP 500 without acting.
    Error500,
    /// Act, then answer HTTP 500: the effect happened but its answer is lost.
    Error500AfterEffect,
    /// Act, then wait this long before answering (a client with a shorter timeout gives up).
    Delay(Duration),
}

/// A job as the fake JobManager holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeJob {
    /// 32 hex digits.
    pub id: String,
    /// `pipeline.name`.
    pub name: String,
    /// Current state.
    pub state: String,
    /// Start, ms since the epoch.
    pub start_time_ms: i64,
    /// Where its stop-with-savepoint wrote, if it completed.
    pub savepoint: Option<String>,
    /// Whether it was cancelled through the REST API.
    pub cancelled: bool,
    /// The SET values of the session when it was submitted.
    pub config: BTreeMap<String, String>,
}

struct Job {
    public: FakeJob,
    running_at: Option<Instant>,
    fail_at: Option<Instant>,
    /// When the job, RUNNING, starts restarting for good, and the stack trace each restart fails with.
    restart_at: Option<(Instant, String)>,
    /// Flink's exception history of the job: (time, stack trace), newest last.
    exceptions: Vec<(i64, String)>,
    end_time_ms: i64,
    metrics: BTreeMap<String, String>,
}

struct Session {
    config: BTreeMap<String, String>,
    /// Session-scoped objects: `TEMPORARY TABLE x`, `TEMPORARY VIEW x`, `CATALOG x`.
    objects: std::collections::BTreeSet<String>,
    last_seen: Instant,
}

enum Outcome {
    Rows {
        columns: Vec<&'static str>,
        rows: Vec<Vec<Value>>,
        job_id: Option<String>,
    },
    Error(String),
}

struct Operation {
    session: String,
    ready_at: Instant,
    outcome: Outcome,
}

struct Trigger {
    job: String,
    complete_at: Option<Instant>,
    target: String,
    failure: Option<String>,
}

struct Inner {
    /// `GET /jobs/{jid}` answers from a copy at most this old, like the JobManager's execution-graph cache
    /// (`web.refresh-interval`, 3 s by default); `GET /jobs/{jid}/status` asks the dispatcher and is never cached.
    detail_cache_ttl: Option<Duration>,
    /// Per job: when its cached detail was taken, and the detail.
    detail_cache: HashMap<String, (Instant, Value)>,
    sessions: HashMap<String, Session>,
    operations: HashMap<String, Operation>,
    jobs: Vec<Job>,
    /// Ids of ended jobs dropped from the job list (`jobstore.expiration-time`) that Flink still refuses to reuse.
    forgotten: Vec<String>,
    triggers: HashMap<String, Trigger>,
    faults: HashMap<Route, VecDeque<Fault>>,
    requests: HashMap<Route, usize>,
    statements: Vec<String>,
    sessions_opened: usize,
    idle_timeout: Duration,
    submit_delay: Duration,
    statement_delay: Duration,
    running_after: Option<Duration>,
    fail_next_job_after: Option<Duration>,
    restart_jobs: Option<(Duration, String)>,
    savepoint_after: Option<Duration>,
    fail_next_savepoint: Option<String>,
    api_versions: Vec<String>,
    /// TaskManagers registered, and the slots each offers (`GET /overview`).
    taskmanagers: u32,
    slots_per_taskmanager: u32,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake Flink; both servers stop when it is dropped.
pub struct FakeFlink {
    inner: Shared,
    /// Base URL of the SQL Gateway, e.g. `http://127.0.0.1:40001`.
    pub gateway_url: String,
    /// Base URL of the JobManager REST API.
    pub jobmanager_url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeFlink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    i64::try_from(cdc_orchestrator::model::now_ms()).unwrap_or(i64::MAX)
}

fn hex32() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn uuid() -> String {
    let h = hex32();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl FakeFlink {
    /// Starts both servers on free loopback ports. Defaults: Flink 1.18's gateway (API V1, V2), sessions idle
    /// out after 10 minutes, statements finish at once, jobs run 30 ms after submission, savepoints take 30 ms.
    pub async fn start() -> FakeFlink {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            detail_cache_ttl: None,
            detail_cache: HashMap::new(),
            sessions: HashMap::new(),
            operations: HashMap::new(),
            jobs: Vec::new(),
            forgotten: Vec::new(),
            triggers: HashMap::new(),
            faults: HashMap::new(),
            requests: HashMap::new(),
            statements: Vec::new(),
            sessions_opened: 0,
            idle_timeout: Duration::from_secs(600),
            submit_delay: Duration::ZERO,
            statement_delay: Duration::ZERO,
            running_after: Some(Duration::from_millis(30)),
            fail_next_job_after: None,
            restart_jobs: None,
            savepoint_after: Some(Duration::from_millis(30)),
            fail_next_savepoint: None,
            api_versions: vec!["V1".into(), "V2".into()],
            taskmanagers: 1,
            slots_per_taskmanager: 4,
        }));
        let gateway = Router::new()
            .route("/api_versions", get(api_versions))
            .route("/{v}/api_versions", get(api_versions))
            .route("/{v}/info", get(info))
            .route("/{v}/sessions", post(open_session))
            .route("/{v}/sessions/{sh}", delete(close_session))
            .route("/{v}/sessions/{sh}/heartbeat", post(heartbeat))
            .route("/{v}/sessions/{sh}/statements", post(execute_statement))
            .route("/{v}/sessions/{sh}/operations/{oh}/status", get(operation_status))
            .route("/{v}/sessions/{sh}/operations/{oh}/result/{token}", get(fetch_result))
            .route("/{v}/sessions/{sh}/operations/{oh}/close", delete(close_operation))
            .route("/{v}/sessions/{sh}/operations/{oh}/cancel", post(cancel_operation))
            .with_state(inner.clone());
        let jobmanager = Router::new()
            .route("/overview", get(cluster_overview))
            .route("/jobs/overview", get(jobs_overview))
            .route("/jobs/{jid}", get(job_detail).patch(cancel_job))
            .route("/jobs/{jid}/status", get(job_status))
            .route("/jobs/{jid}/exceptions", get(job_exceptions))
            .route("/jobs/{jid}/stop", post(stop_job))
            .route("/jobs/{jid}/savepoints/{tid}", get(savepoint_status))
            .route("/jobs/{jid}/vertices/{vid}/metrics", get(vertex_metrics))
            .with_state(inner.clone());
        let mut tasks = Vec::new();
        let mut urls = Vec::new();
        for router in [gateway, jobmanager] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            urls.push(format!("http://{}", listener.local_addr().expect("local addr")));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
        }
        FakeFlink {
            inner,
            jobmanager_url: urls.pop().expect("two servers"),
            gateway_url: urls.pop().expect("two servers"),
            tasks,
        }
    }

    /// Applies `fault` to the next request of `route` (faults of one route queue up in order).
    pub fn inject(&self, route: Route, fault: Fault) {
        lock(&self.inner).faults.entry(route).or_default().push_back(fault);
    }

    /// Applies `fault` to the next `times` requests of `route`.
    pub fn inject_times(&self, route: Route, fault: Fault, times: usize) {
        for _ in 0..times {
            self.inject(route, fault);
        }
    }

    /// Forgets every session, as an idle expiry or a gateway restart does.
    pub fn expire_sessions(&self) {
        lock(&self.inner).sessions.clear();
    }

    /// Sessions not used for this long are forgotten.
    pub fn set_session_idle_timeout(&self, timeout: Duration) {
        lock(&self.inner).idle_timeout = timeout;
    }

    /// Job-submitting statements stay RUNNING for this long before they finish.
    pub fn set_submit_delay(&self, delay: Duration) {
        lock(&self.inner).submit_delay = delay;
    }

    /// Every statement stays RUNNING for this long before it finishes (on top of `set_submit_delay` for a job
    /// submission), as a real gateway takes a while per statement; one session runs its statements one at a time.
    pub fn set_statement_delay(&self, delay: Duration) {
        lock(&self.inner).statement_delay = delay;
    }

    /// Submitted jobs become RUNNING this long after submission; `None`: they stay INITIALIZING.
    pub fn set_running_after(&self, delay: Option<Duration>) {
        lock(&self.inner).running_after = delay;
    }

    /// Every job submitted from now on goes RESTARTING this long after it started running, and stays there as
    /// Flink's restart loop does, failing with `stacktrace` anew every 300 ms (its exception history grows).
    pub fn restart_jobs_after(&self, delay: Duration, stacktrace: &str) {
        lock(&self.inner).restart_jobs = Some((delay, stacktrace.to_owned()));
    }

    /// The next submitted job goes FAILED this long after it started running.
    pub fn fail_next_job_after(&self, delay: Duration) {
        lock(&self.inner).fail_next_job_after = Some(delay);
    }

    /// Serve `GET /jobs/{jid}` from a copy at most `ttl` old, as a JobManager does (`web.refresh-interval`).
    pub fn set_detail_cache(&self, ttl: Option<Duration>) {
        let mut inner = lock(&self.inner);
        inner.detail_cache_ttl = ttl;
        inner.detail_cache.clear();
    }

    /// Savepoints complete this long after the stop request; `None`: they never complete.
    pub fn set_savepoint_after(&self, delay: Option<Duration>) {
        lock(&self.inner).savepoint_after = delay;
    }

    /// The next savepoint fails with this exception line; the job keeps running.
    pub fn fail_next_savepoint(&self, cause: &str) {
        lock(&self.inner).fail_next_savepoint = Some(cause.to_owned());
    }

    /// The API versions the gateway announces, e.g. `["V1"]` for a Flink 1.16 gateway.
    pub fn set_api_versions(&self, versions: &[&str]) {
        lock(&self.inner).api_versions = versions.iter().map(|v| (*v).to_owned()).collect();
    }

    /// The cluster now has `taskmanagers` TaskManagers of `slots_each` slots (1 and 4 at start), as after a
    /// resource manager released idle ones or started new ones.
    pub fn set_cluster(&self, taskmanagers: u32, slots_each: u32) {
        let mut inner = lock(&self.inner);
        inner.taskmanagers = taskmanagers;
        inner.slots_per_taskmanager = slots_each;
    }

    /// Adds a job as if something else had submitted it.
    pub fn add_job(&self, id: &str, name: &str, state: &str, start_time_ms: i64) {
        let mut inner = lock(&self.inner);
        let terminal = matches!(state, "FAILED" | "CANCELED" | "FINISHED");
        inner.jobs.push(Job {
            public: FakeJob {
                id: id.to_owned(),
                name: name.to_owned(),
                state: state.to_owned(),
                start_time_ms,
                savepoint: None,
                cancelled: false,
                config: BTreeMap::new(),
            },
            running_at: (state == "RUNNING").then(Instant::now),
            fail_at: None,
            restart_at: None,
            exceptions: Vec::new(),
            end_time_ms: if terminal { start_time_ms + 1000 } else { -1 },
            metrics: BTreeMap::new(),
        });
    }

    /// Puts a job in `state` as Flink's own machinery would (e.g. `RESTARTING` after a TaskManager loss, then
    /// `RUNNING` again); it stays there until changed again or stopped.
    pub fn set_job_state(&self, job_id: &str, state: &str) {
        let mut inner = lock(&self.inner);
        let Some(job) = inner.jobs.iter_mut().find(|j| j.public.id == job_id) else {
            panic!("no job {job_id}");
        };
        job.public.state = state.to_owned();
        job.running_at = None;
    }

    /// Drops an ended job from the job list, as the JobManager does after `jobstore.expiration-time`; its id
    /// stays used.
    pub fn forget_job(&self, job_id: &str) {
        let mut inner = lock(&self.inner);
        inner.jobs.retain(|j| j.public.id != job_id);
        inner.forgotten.push(job_id.to_owned());
    }

    /// Sets the Kafka source metrics of a job: `pendingRecords` and per partition `(topic, partition, current,
    /// committed)` offsets, as subtask 0 of its source operator reports them (operator-scoped ids, as Flink
    /// lists them: `0.Source__src.pendingRecords`).
    pub fn set_source_metrics(&self, job_id: &str, pending: i64, partitions: &[(&str, i32, i64, i64)]) {
        let mut inner = lock(&self.inner);
        let Some(job) = inner.jobs.iter_mut().find(|j| j.public.id == job_id) else {
            panic!("no job {job_id}");
        };
        job.metrics.clear();
        job.metrics
            .insert("0.Source__src.pendingRecords".into(), pending.to_string());
        job.metrics.insert("0.Source__src.numRecordsIn".into(), "12".into());
        job.metrics.insert("0.numRecordsIn".into(), "0".into());
        for (topic, partition, current, committed) in partitions {
            let prefix = format!("0.Source__src.KafkaSourceReader.topic.{topic}.partition.{partition}");
            job.metrics
                .insert(format!("{prefix}.currentOffset"), current.to_string());
            job.metrics
                .insert(format!("{prefix}.committedOffset"), committed.to_string());
        }
    }

    /// Every job, in submission order, with its current state.
    pub fn jobs(&self) -> Vec<FakeJob> {
        let mut inner = lock(&self.inner);
        inner.advance();
        inner.jobs.iter().map(|j| j.public.clone()).collect()
    }

    /// Jobs named `name` that have not ended.
    pub fn live_jobs_named(&self, name: &str) -> Vec<FakeJob> {
        self.jobs()
            .into_iter()
            .filter(|j| j.name == name && !matches!(j.state.as_str(), "FAILED" | "CANCELED" | "FINISHED"))
            .collect()
    }

    /// Sessions opened so far.
    pub fn sessions_opened(&self) -> usize {
        lock(&self.inner).sessions_opened
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    /// Every statement received, in order.
    pub fn statements(&self) -> Vec<String> {
        lock(&self.inner).statements.clone()
    }

    /// Requests received on `route`.
    pub fn requests(&self, route: Route) -> usize {
        lock(&self.inner).requests.get(&route).copied().unwrap_or(0)
    }
}

impl Inner {
    /// Moves time-driven state forward: jobs start running or fail, savepoints complete, sessions idle out.
    fn advance(&mut self) {
        let now = Instant::now();
        for job in &mut self.jobs {
            let s = job.public.state.as_str();
            if matches!(s, "FAILED" | "CANCELED" | "FINISHED") {
                continue;
            }
            if let Some((at, trace)) = job.restart_at.as_ref().filter(|(at, _)| *at <= now) {
                // One failure per 300 ms of restarting, each with its own time.
                let failures = now.duration_since(*at).as_millis() / 300 + 1;
                while (job.exceptions.len() as u128) < failures {
                    job.exceptions.push((now_ms(), trace.clone()));
                }
                job.public.state = "RESTARTING".into();
                job.running_at = None;
            } else if job.fail_at.is_some_and(|t| t <= now) {
                job.public.state = "FAILED".into();
                job.end_time_ms = now_ms();
            } else if job.running_at.is_some_and(|t| t <= now) {
                job.public.state = "RUNNING".into();
            }
        }
        let idle = self.idle_timeout;
        self.sessions.retain(|_, s| now.duration_since(s.last_seen) < idle);
        let mut finished = Vec::new();
        for trigger in self.triggers.values_mut() {
            if trigger.failure.is_none() && trigger.complete_at.is_some_and(|t| t <= now) {
                let job = self.jobs.iter_mut().find(|j| j.public.id == trigger.job);
                match job {
                    Some(job) if job.public.state == "RUNNING" => {
                        let location = format!(
                            "{}/savepoint-{}-{}",
                            trigger.target.trim_end_matches('/'),
                            &trigger.job[..6],
                            &hex32()[..12]
                        );
                        job.public.savepoint = Some(location);
                        job.public.state = "FINISHED".into();
                        job.end_time_ms = now_ms();
                        finished.push(trigger.job.clone());
                    }
                    Some(job) if job.public.savepoint.is_some() => {}
                    _ => {
                        trigger.failure = Some(format!(
                            "org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint triggering task \
                             of job {} is not being executed at the moment.",
                            trigger.job
                        ))
                    }
                }
            }
        }
    }

    fn touch_session(&mut self, handle: &str) -> Result<&mut Session, Response> {
        self.advance();
        match self.sessions.get_mut(handle) {
            Some(session) => {
                session.last_seen = Instant::now();
                Ok(session)
            }
            None => Err(server_error(&format!(
                "org.apache.flink.table.gateway.api.utils.SqlGatewayException: Session '{handle}' does not exist.\n\
                 \tat org.apache.flink.table.gateway.service.session.SessionManagerImpl.getSession(SessionManagerImpl.java:180)"
            ))),
        }
    }

    fn execute(&mut self, session: &str, statement: &str) -> Result<String, Response> {
        let config = self.touch_session(session)?.config.clone();
        self.statements.push(statement.to_owned());
        let code = strip_comments(statement);
        let upper = code.to_ascii_uppercase();
        let ok = || Outcome::Rows {
            columns: vec!["result"],
            rows: vec![vec![json!("OK")]],
            job_id: None,
        };
        let mut ready_at = Instant::now() + self.statement_delay;
        let outcome = if upper.starts_with("SET") {
            match parse_set(&code) {
                Some((key, value)) => {
                    self.sessions.get_mut(session).map(|s| s.config.insert(key, value));
                    ok()
                }
                None if upper == "SET" => Outcome::Rows {
                    columns: vec!["key", "value"],
                    rows: config.iter().map(|(k, v)| vec![json!(k), json!(v)]).collect(),
                    job_id: None,
                },
                None => Outcome::Error(parse_error(&code)),
            }
        } else if let Some(rest) = upper.strip_prefix("RESET") {
            let key = parse_quoted(code[5..].trim());
            let session = self.sessions.get_mut(session).expect("touched above");
            match (rest.trim().is_empty(), key) {
                (true, _) => session.config.clear(),
                (false, Some(key)) => {
                    session.config.remove(&key);
                }
                (false, None) => {}
            }
            ok()
        } else if let Some((create, kind, if_not_exists, name)) = parse_ddl(&code) {
            let objects = &mut self.sessions.get_mut(session).expect("touched above").objects;
            let key = format!("{kind} {name}");
            let exists = objects.contains(&key);
            match (create, exists) {
                (true, true) if !if_not_exists => Outcome::Error(if kind == "CATALOG" {
                    format!(
                        "org.apache.flink.table.catalog.exceptions.CatalogException: Catalog {name} already exists."
                    )
                } else {
                    format!("org.apache.flink.table.api.ValidationException: {kind} '{name}' already exists")
                }),
                (true, _) => {
                    objects.insert(key);
                    ok()
                }
                (false, false) if !if_not_exists => Outcome::Error(format!(
                    "org.apache.flink.table.api.ValidationException: {kind} '{name}' does not exist"
                )),
                (false, _) => {
                    objects.remove(&key);
                    ok()
                }
            }
        } else if submits_job(&code) {
            ready_at += self.submit_delay;
            self.submit(&config)
        } else if [
            "CREATE ",
            "DROP ",
            "ALTER ",
            "USE ",
            "SHOW ",
            "DESCRIBE ",
            "LOAD ",
            "UNLOAD ",
            "ADD ",
        ]
        .iter()
        .any(|k| upper.starts_with(k) || upper == k.trim())
        {
            ok()
        } else {
            Outcome::Error(parse_error(&code))
        };
        let handle = uuid();
        self.operations.insert(
            handle.clone(),
            Operation {
                session: session.to_owned(),
                ready_at,
                outcome,
            },
        );
        Ok(handle)
    }

    fn submit(&mut self, config: &BTreeMap<String, String>) -> Outcome {
        let id = match config.get("$internal.pipeline.job-id") {
            Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => id.to_ascii_lowercase(),
            Some(bad) => {
                return Outcome::Error(format!(
                    "java.lang.IllegalArgumentException: Cannot parse JobID from \"{bad}\". The expected format is \
                     [0-9a-fA-F]{{32}}, e.g. fd72014d4c864993a2e5a9287b4a9c5d."
                ));
            }
            None => hex32(),
        };
        if self.jobs.iter().any(|j| j.public.id == id) || self.forgotten.contains(&id) {
            return Outcome::Error(
                "org.apache.flink.runtime.client.DuplicateJobSubmissionException: Job has already been submitted."
                    .to_owned(),
            );
        }
        let name = config
            .get("pipeline.name")
            .cloned()
            .unwrap_or_else(|| "insert-into_default_catalog.default_database.sink".to_owned());
        let now = Instant::now();
        let running_at = self
            .running_after
            .map(|d| now + self.statement_delay + self.submit_delay + d);
        let fail_at = match (self.fail_next_job_after.take(), running_at) {
            (Some(after), Some(running)) => Some(running + after),
            _ => None,
        };
        self.jobs.push(Job {
            public: FakeJob {
                id: id.clone(),
                name,
                state: "INITIALIZING".into(),
                start_time_ms: now_ms(),
                savepoint: None,
                cancelled: false,
                config: config.clone(),
            },
            running_at,
            fail_at,
            restart_at: match (&self.restart_jobs, running_at) {
                (Some((after, trace)), Some(running)) => Some((running + *after, trace.clone())),
                _ => None,
            },
            exceptions: Vec::new(),
            end_time_ms: -1,
            metrics: BTreeMap::new(),
        });
        Outcome::Rows {
            columns: vec!["job id"],
            rows: vec![vec![json!(id)]],
            job_id: Some(id),
        }
    }
}

fn submits_job(statement: &str) -> bool {
    let upper = strip_comments(statement).to_ascii_uppercase();
    upper.starts_with("INSERT ")
        || upper.starts_with("EXECUTE STATEMENT SET")
        || upper.starts_with("BEGIN STATEMENT SET")
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(';')
        .trim()
        .to_owned()
}

/// `CREATE|DROP TEMPORARY TABLE|VIEW` and `CREATE|DROP CATALOG`, with `IF [NOT] EXISTS`: (create, kind, if, name).
fn parse_ddl(code: &str) -> Option<(bool, String, bool, String)> {
    let re = regex::Regex::new(
        r"(?is)^(CREATE|DROP)\s+(TEMPORARY\s+TABLE|TEMPORARY\s+VIEW|CATALOG)\s+(IF\s+(?:NOT\s+)?EXISTS\s+)?([\w.`]+)",
    )
    .expect("valid regex");
    let c = re.captures(code)?;
    let create = c[1].eq_ignore_ascii_case("CREATE");
    let kind = c[2]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    Some((create, kind, c.get(3).is_some(), c[4].to_owned()))
}

fn parse_quoted(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?;
    let end = inner.find('\'')?;
    Some(inner[..end].to_owned())
}

/// `SET 'key' = 'value'`.
fn parse_set(code: &str) -> Option<(String, String)> {
    let rest = code.get(3..)?.trim();
    let key = parse_quoted(rest)?;
    let after = rest[key.len() + 2..].trim().strip_prefix('=')?.trim();
    let value = parse_quoted(after)?;
    (after.len() == value.len() + 2).then_some((key, value))
}

fn parse_error(code: &str) -> String {
    let first = code.split_whitespace().next().unwrap_or_default();
    format!(
        "org.apache.flink.table.api.SqlParserException: SQL parse failed. Non-query expression encountered in \
         illegal context: {first}"
    )
}

/// Flink's answer to an unhandled exception: HTTP 500 with the stack trace between markers.
fn server_error(trace: &str) -> Response {
    let body = json!({
        "errors": [
            "Internal server error.",
            format!("<Exception on server side:\n{trace}\n\tat org.apache.flink.runtime.rest.handler.AbstractRestHandler.respondToRequest(AbstractRestHandler.java:83)\n\nEnd of exception on server side>"),
        ]
    });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// Flink's answer to a handled error (`RestHandlerException`): its status, the exception as the one message.
fn handled_error(status: StatusCode, trace: &str) -> Response {
    (status, axum::Json(json!({ "errors": [trace] }))).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

/// Counts the request, applies the route's next fault around `act`.
async fn handle(inner: &Shared, route: Route, act: impl FnOnce(&mut Inner) -> Response) -> Response {
    let fault = {
        let mut guard = lock(inner);
        *guard.requests.entry(route).or_default() += 1;
        guard.faults.get_mut(&route).and_then(VecDeque::pop_front)
    };
    if fault == Some(Fault::Error500) {
        return server_error("java.lang.RuntimeException: injected fault (before acting)");
    }
    let response = {
        let mut guard = lock(inner);
        guard.advance();
        act(&mut guard)
    };
    match fault {
        Some(Fault::Error500AfterEffect) => server_error("java.lang.RuntimeException: injected fault (after acting)"),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        _ => response,
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        handled_error(
            StatusCode::BAD_REQUEST,
            &format!("Request did not match expected format: {e}"),
        )
    })
}

// ---- SQL Gateway handlers ----

async fn api_versions(State(inner): State<Shared>) -> Response {
    handle(&inner, Route::ApiVersions, |s| {
        ok(json!({ "versions": s.api_versions }))
    })
    .await
}

async fn info() -> Response {
    ok(json!({ "productName": "Apache Flink", "version": "1.18.1" }))
}

async fn open_session(State(inner): State<Shared>, Path(_v): Path<String>, body: Bytes) -> Response {
    handle(&inner, Route::OpenSession, |s| {
        let body = match parse_body(&body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let mut config = BTreeMap::new();
        if let Some(props) = body.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                config.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        let handle = uuid();
        s.sessions.insert(
            handle.clone(),
            Session {
                config,
                objects: Default::default(),
                last_seen: Instant::now(),
            },
        );
        s.sessions_opened += 1;
        ok(json!({ "sessionHandle": handle }))
    })
    .await
}

async fn close_session(State(inner): State<Shared>, Path((_v, sh)): Path<(String, String)>) -> Response {
    handle(&inner, Route::CloseSession, |s| match s.touch_session(&sh) {
        Err(r) => r,
        Ok(_) => {
            s.sessions.remove(&sh);
            s.operations.retain(|_, op| op.session != sh);
            ok(json!({ "status": "CLOSED" }))
        }
    })
    .await
}

async fn heartbeat(State(inner): State<Shared>, Path((_v, sh)): Path<(String, String)>) -> Response {
    handle(&inner, Route::Heartbeat, |s| match s.touch_session(&sh) {
        Err(r) => r,
        Ok(_) => ok(json!({})),
    })
    .await
}

async fn execute_statement(
    State(inner): State<Shared>,
    Path((_v, sh)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let route = match parse_body(&body) {
        Ok(b) if b.get("statement").and_then(Value::as_str).is_some_and(submits_job) => Route::SubmitJob,
        _ => Route::ExecuteStatement,
    };
    handle(&inner, route, |s| {
        let body = match parse_body(&body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(statement) = body.get("statement").and_then(Value::as_str) else {
            return handled_error(StatusCode::BAD_REQUEST, "Field 'statement' is required.");
        };
        match s.execute(&sh, statement) {
            Ok(handle) => ok(json!({ "operationHandle": handle })),
            Err(r) => r,
        }
    })
    .await
}

fn find_operation<'a>(s: &'a mut Inner, sh: &str, oh: &str) -> Result<&'a Operation, Response> {
    s.touch_session(sh)?;
    s.operations.get(oh).filter(|op| op.session == sh).ok_or_else(|| {
        server_error(&format!(
            "org.apache.flink.table.gateway.api.utils.SqlGatewayException: Can not find the submitted operation in \
             the OperationManager with the {oh}."
        ))
    })
}

async fn operation_status(State(inner): State<Shared>, Path((_v, sh, oh)): Path<(String, String, String)>) -> Response {
    handle(&inner, Route::OperationStatus, |s| match find_operation(s, &sh, &oh) {
        Err(r) => r,
        Ok(op) => {
            let status = match (&op.outcome, op.ready_at <= Instant::now()) {
                (_, false) => "RUNNING",
                (Outcome::Rows { .. }, true) => "FINISHED",
                (Outcome::Error(_), true) => "ERROR",
            };
            ok(json!({ "status": status }))
        }
    })
    .await
}

async fn fetch_result(
    State(inner): State<Shared>,
    Path((v, sh, oh, token)): Path<(String, String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    handle(&inner, Route::FetchResult, |s| {
        let op = match find_operation(s, &sh, &oh) {
            Ok(op) => op,
            Err(r) => return r,
        };
        let versioned = v != "v1";
        if versioned && !query.contains_key("rowFormat") {
            return handled_error(StatusCode::BAD_REQUEST, "Parameter rowFormat is mandatory.");
        }
        if op.ready_at > Instant::now() {
            return ok(json!({ "resultType": "NOT_READY", "results": { "columns": [], "rowFormat": "JSON", "data": [] },
                              "nextResultUri": format!("/{v}/sessions/{sh}/operations/{oh}/result/{token}?rowFormat=JSON") }));
        }
        match &op.outcome {
            Outcome::Error(root) => server_error(&format!(
                "org.apache.flink.table.gateway.api.utils.SqlGatewayException: org.apache.flink.table.gateway.api.utils.SqlGatewayException: Failed to fetchResults.\n\
                 \tat org.apache.flink.table.gateway.rest.handler.statement.FetchResultsHandler.handleRequest(FetchResultsHandler.java:91)\n\
                 Caused by: org.apache.flink.table.gateway.service.utils.SqlExecutionException: Failed to execute the operation {oh}.\n\
                 \tat org.apache.flink.table.gateway.service.operation.OperationManager$Operation.processThrowable(OperationManager.java:414)\n\
                 Caused by: {root}\n\t... 12 more"
            )),
            Outcome::Rows { columns, rows, job_id } => {
                let first = token == "0";
                let data: Vec<Value> = if first {
                    rows.iter().map(|r| json!({ "kind": "INSERT", "fields": r })).collect()
                } else {
                    Vec::new()
                };
                let columns: Vec<Value> = columns
                    .iter()
                    .map(|c| json!({ "name": c, "logicalType": { "type": "VARCHAR", "nullable": true, "length": 2147483647 }, "comment": null }))
                    .collect();
                let mut body = json!({
                    "results": { "columns": columns, "rowFormat": "JSON", "data": data },
                    "resultType": if first { "PAYLOAD" } else { "EOS" },
                });
                if first {
                    body["nextResultUri"] = json!(format!("/{v}/sessions/{sh}/operations/{oh}/result/1?rowFormat=JSON"));
                }
                if versioned {
                    body["isQueryResult"] = json!(false);
                    body["resultKind"] = json!("SUCCESS_WITH_CONTENT");
                    if let Some(id) = job_id {
                        body["jobID"] = json!(id);
                    }
                }
                ok(body)
            }
        }
    })
    .await
}

async fn close_operation(State(inner): State<Shared>, Path((_v, sh, oh)): Path<(String, String, String)>) -> Response {
    let mut s = lock(&inner);
    if let Err(r) = find_operation(&mut s, &sh, &oh) {
        return r;
    }
    s.operations.remove(&oh);
    ok(json!({ "status": "CLOSED" }))
}

async fn cancel_operation(State(inner): State<Shared>, Path((_v, sh, oh)): Path<(String, String, String)>) -> Response {
    let mut s = lock(&inner);
    if let Err(r) = find_operation(&mut s, &sh, &oh) {
        return r;
    }
    s.operations.remove(&oh);
    ok(json!({ "status": "CANCELED" }))
}

// ---- JobManager handlers ----

fn job_not_found(jid: &str) -> Response {
    handled_error(
        StatusCode::NOT_FOUND,
        &format!(
            "org.apache.flink.runtime.rest.NotFoundException: Job {jid} not found\n\tat \
             org.apache.flink.runtime.rest.handler.job.AbstractExecutionGraphHandler.lambda$handleRequest$1(AbstractExecutionGraphHandler.java:99)\n\
             Caused by: org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job ({jid})\n\t... 40 more"
        ),
    )
}

const SOURCE_VERTEX: &str = "cbc357ccb763df2852fee8c4fc7d55f2";
const SINK_VERTEX: &str = "90bea66de1c231edf33913ecd54406c1";

/// `GET /overview` as Flink 1.18 answers it; every job that has not ended holds one slot (parallelism 1, one
/// slot-sharing group).
async fn cluster_overview(State(inner): State<Shared>) -> Response {
    handle(&inner, Route::ClusterOverview, |s| {
        let ended = |state: &str| matches!(state, "FAILED" | "CANCELED" | "FINISHED");
        let count = |state: &str| s.jobs.iter().filter(|j| j.public.state == state).count();
        let live = s.jobs.iter().filter(|j| !ended(&j.public.state)).count();
        let total = s.taskmanagers * s.slots_per_taskmanager;
        let available = u64::from(total).saturating_sub(live as u64);
        ok(json!({
            "taskmanagers": s.taskmanagers, "slots-total": total, "slots-available": available,
            "jobs-running": live, "jobs-finished": count("FINISHED"), "jobs-cancelled": count("CANCELED"),
            "jobs-failed": count("FAILED"), "flink-version": "1.18.1", "flink-commit": "a8c8b1c"
        }))
    })
    .await
}

async fn jobs_overview(State(inner): State<Shared>) -> Response {
    handle(&inner, Route::JobsOverview, |s| {
        let now = now_ms();
        let jobs: Vec<Value> = s
            .jobs
            .iter()
            .map(|j| {
                let end = j.end_time_ms;
                json!({
                    "jid": j.public.id, "name": j.public.name, "state": j.public.state,
                    "start-time": j.public.start_time_ms, "end-time": end,
                    "duration": if end >= 0 { end - j.public.start_time_ms } else { now - j.public.start_time_ms },
                    "last-modification": now,
                    "tasks": { "total": 2, "created": 0, "scheduled": 0, "deploying": 0, "running": 2, "finished": 0,
                               "canceling": 0, "canceled": 0, "failed": 0, "reconciling": 0, "initializing": 0 }
                })
            })
            .collect();
        ok(json!({ "jobs": jobs }))
    })
    .await
}

/// `GET /jobs/{jid}/exceptions` as Flink 2.0 answers it: the exception history only, newest first, at most
/// `maxExceptions` entries.
async fn job_exceptions(
    State(inner): State<Shared>,
    Path(jid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    handle(&inner, Route::JobDetail, |s| {
        let Some(j) = s.jobs.iter().find(|j| j.public.id == jid) else {
            return job_not_found(&jid);
        };
        let max: usize = query.get("maxExceptions").and_then(|m| m.parse().ok()).unwrap_or(20);
        let entries: Vec<Value> = j
            .exceptions
            .iter()
            .rev()
            .take(max)
            .map(|(at, trace)| {
                let name = trace.split(':').next().unwrap_or_default();
                json!({ "exceptionName": name, "stacktrace": trace, "timestamp": at, "taskName": "Source: src[1]",
                        "endpoint": "127.0.0.1:6121", "taskManagerId": "127.0.0.1:6121-abc", "failureLabels": {},
                        "concurrentExceptions": [] })
            })
            .collect();
        ok(json!({ "exceptionHistory": { "entries": entries, "truncated": j.exceptions.len() > max } }))
    })
    .await
}

async fn job_detail(State(inner): State<Shared>, Path(jid): Path<String>) -> Response {
    handle(&inner, Route::JobDetail, |s| {
        let Some(j) = s.jobs.iter().find(|j| j.public.id == jid) else {
            return job_not_found(&jid);
        };
        let now = now_ms();
        let vertex = |id: &str, name: &str| {
            json!({ "id": id, "name": name, "maxParallelism": 128, "parallelism": 1, "status": j.public.state,
                    "start-time": j.public.start_time_ms, "end-time": -1, "duration": now - j.public.start_time_ms,
                    "tasks": {}, "metrics": {} })
        };
        let detail = json!({
            "jid": j.public.id, "name": j.public.name, "isStoppable": false, "state": j.public.state,
            "start-time": j.public.start_time_ms, "end-time": j.end_time_ms,
            "duration": now - j.public.start_time_ms, "maxParallelism": -1, "now": now,
            "timestamps": { "INITIALIZING": j.public.start_time_ms },
            "vertices": [
                vertex(SOURCE_VERTEX, "Source: src[1] -> Calc[2]"),
                vertex(SINK_VERTEX, "IcebergStreamWriter -> IcebergFilesCommitter"),
            ],
            "status-counts": {}, "plan": { "jid": j.public.id, "name": j.public.name, "type": "STREAMING", "nodes": [] }
        });
        let Some(ttl) = s.detail_cache_ttl else {
            return ok(detail);
        };
        let fresh = Instant::now();
        let (taken, cached) = s.detail_cache.entry(jid.clone()).or_insert((fresh, detail.clone()));
        if fresh.duration_since(*taken) >= ttl {
            (*taken, *cached) = (fresh, detail);
        }
        ok(cached.clone())
    })
    .await
}

async fn job_status(State(inner): State<Shared>, Path(jid): Path<String>) -> Response {
    handle(&inner, Route::JobStatus, |s| {
        match s.jobs.iter().find(|j| j.public.id == jid) {
            Some(j) => ok(json!({ "status": j.public.state })),
            None => job_not_found(&jid),
        }
    })
    .await
}

async fn cancel_job(
    State(inner): State<Shared>,
    Path(jid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    handle(&inner, Route::CancelJob, |s| {
        let mode = query.get("mode").map(|m| m.to_ascii_lowercase());
        if !matches!(mode.as_deref(), None | Some("cancel")) {
            return handled_error(StatusCode::BAD_REQUEST, "Bad request, could not parse parameters: mode");
        }
        let Some(j) = s.jobs.iter_mut().find(|j| j.public.id == jid) else {
            return job_not_found(&jid);
        };
        if matches!(j.public.state.as_str(), "FAILED" | "CANCELED" | "FINISHED") {
            return handled_error(
                StatusCode::CONFLICT,
                &format!(
                    "Job cancellation failed: Job {jid} is in a globally terminal state {}.",
                    j.public.state
                ),
            );
        }
        j.public.state = "CANCELED".into();
        j.public.cancelled = true;
        j.end_time_ms = now_ms();
        accepted(json!({}))
    })
    .await
}

async fn stop_job(State(inner): State<Shared>, Path(jid): Path<String>, body: Bytes) -> Response {
    handle(&inner, Route::StopJob, |s| {
        let body = match parse_body(&body) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if !s.jobs.iter().any(|j| j.public.id == jid) {
            return job_not_found(&jid);
        }
        let Some(target) = body.get("targetDirectory").and_then(Value::as_str) else {
            return handled_error(
                StatusCode::BAD_REQUEST,
                "Config key [state.savepoints.dir] is not set. Property [targetDirectory] must be provided.",
            );
        };
        let trigger = hex32();
        let failure = s.fail_next_savepoint.take();
        s.triggers.insert(
            trigger.clone(),
            Trigger {
                job: jid.clone(),
                complete_at: s.savepoint_after.map(|d| Instant::now() + d),
                target: target.to_owned(),
                failure,
            },
        );
        accepted(json!({ "request-id": trigger }))
    })
    .await
}

async fn savepoint_status(State(inner): State<Shared>, Path((jid, tid)): Path<(String, String)>) -> Response {
    handle(&inner, Route::SavepointStatus, |s| {
        let Some(trigger) = s.triggers.get(&tid).filter(|t| t.job == jid) else {
            return handled_error(
                StatusCode::NOT_FOUND,
                &format!("org.apache.flink.runtime.rest.NotFoundException: Operation not found under key: \
                          org.apache.flink.runtime.rest.handler.job.AsynchronousJobOperationKey@{tid}"),
            );
        };
        if let Some(failure) = &trigger.failure {
            return ok(json!({
                "status": { "id": "COMPLETED" },
                "operation": { "failure-cause": {
                    "class": "java.util.concurrent.CompletionException",
                    "stack-trace": format!("java.util.concurrent.CompletionException: {failure}\n\tat x.y(Z.java:1)\nCaused by: {failure}\n\t... 5 more"),
                    "serialized-throwable": "rO0ABXNy"
                } }
            }));
        }
        let job = s.jobs.iter().find(|j| j.public.id == jid);
        match job.and_then(|j| j.public.savepoint.clone()) {
            Some(location) => ok(json!({ "status": { "id": "COMPLETED" }, "operation": { "location": location } })),
            None => ok(json!({ "status": { "id": "IN_PROGRESS" }, "operation": null })),
        }
    })
    .await
}

async fn vertex_metrics(
    State(inner): State<Shared>,
    Path((jid, vid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    handle(&inner, Route::VertexMetrics, |s| {
        let Some(job) = s.jobs.iter().find(|j| j.public.id == jid) else {
            return job_not_found(&jid);
        };
        let metrics = if vid == SOURCE_VERTEX {
            job.metrics.clone()
        } else {
            BTreeMap::new()
        };
        let body: Vec<Value> = match query.get("get") {
            None => metrics.keys().map(|id| json!({ "id": id })).collect(),
            Some(wanted) => wanted
                .split(',')
                .filter_map(|id| metrics.get(id).map(|v| json!({ "id": id, "value": v })))
                .collect(),
        };
        ok(Value::Array(body))
    })
    .await
}
