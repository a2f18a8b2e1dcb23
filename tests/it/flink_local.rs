//! The launcher against a real Flink 2.0 session cluster and the stand-in SQL Gateway (`tests/sql-gateway/`),
//! both started by `scripts/flink-local.sh` on free loopback ports, running the tables' real rendered SQL with
//! `[sink] kind = "jdbc"`: Debezium records on a real Kafka-protocol broker (tansu) reach a real Postgres, with
//! updates upserted and deletes applied. Two tables start at once through two gateway sessions, each job runs
//! with the id the launcher pinned, stop-with-savepoint finishes it, and a new start resumes from the offsets the
//! stopped job committed.
//!
//! Needs Java 17, Flink 2.0 installed by `scripts/flink-local.sh install` (`FLINK_LOCAL_HOME` or
//! `.tools/flink-2.0.0`) and PostgreSQL's server binaries (Debian's `postgresql`). Without them the test says what
//! is missing and passes, unless `REQUIRE_REAL_FLINK=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cdc_orchestrator::config::{Config, SinkKind};
use cdc_orchestrator::flink::gateway::SqlGateway;
use cdc_orchestrator::flink::{
    Backoff, Fault, FlinkError, LaunchSettings, Launcher, SqlGatewayLauncher, Stopped, http_client,
};
use cdc_orchestrator::model::{JobState, job_id_for};
use cdc_orchestrator::sql::{self, Credentials};
use serde_json::json;

use crate::support;
use crate::support::postgres::ScratchPostgres;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn flink_home() -> PathBuf {
    std::env::var_os("FLINK_LOCAL_HOME").map_or_else(|| repo().join(".tools/flink-2.0.0"), PathBuf::from)
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What this machine lacks for the test, each with how to get it.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !on_path("java") || !on_path("javac") {
        missing.push("Java 17 (apt-get install openjdk-17-jdk-headless)".to_owned());
    }
    if !flink_home().join(".installed").is_file() {
        missing.push(format!(
            "Flink 2.0 in {} (scripts/flink-local.sh install)",
            flink_home().display()
        ));
    }
    if support::postgres::postgres_bin().is_none() || Command::new("psql").arg("--version").output().is_err() {
        missing.push("PostgreSQL (apt-get install postgresql)".to_owned());
    }
    missing
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A Flink cluster and gateway from `scripts/flink-local.sh start` in a scratch folder; stopped on drop.
struct FlinkLocal {
    work: tempfile::TempDir,
    rest_url: String,
    gateway_url: String,
}

impl FlinkLocal {
    fn script(work: &Path, command: &str) -> Output {
        Command::new(repo().join("scripts/flink-local.sh"))
            .arg(command)
            .env("FLINK_LOCAL_HOME", flink_home())
            .env("FLINK_LOCAL_WORK", work)
            // Free ports are picked by the script; whatever the caller's environment says is not used here.
            .env_remove("FLINK_REST_PORT")
            .env_remove("FLINK_RPC_PORT")
            .env_remove("SQL_GATEWAY_PORT")
            .output()
            .expect("run scripts/flink-local.sh")
    }

    fn start() -> FlinkLocal {
        let work = tempfile::tempdir().expect("work dir");
        let out = Self::script(work.path(), "start");
        let env = std::fs::read_to_string(work.path().join("flink-local.env")).unwrap_or_default();
        let value = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
        };
        let (Some(rest_url), Some(gateway_url)) = (value("FLINK_REST_URL"), value("FLINK_SQL_GATEWAY_URL")) else {
            let logs = Self::logs(work.path());
            panic!(
                "flink-local.sh start failed: {}{}\n{logs}",
                text(&out.stdout),
                text(&out.stderr)
            );
        };
        FlinkLocal {
            work,
            rest_url,
            gateway_url,
        }
    }

    fn logs(work: &Path) -> String {
        let gateway = std::fs::read_to_string(work.join("log/sql-gateway.log")).unwrap_or_default();
        let tail: Vec<&str> = gateway.lines().rev().take(40).collect();
        format!("sql-gateway.log (last lines, newest first):\n{}", tail.join("\n"))
    }

    fn savepoint_dir(&self) -> String {
        format!("file://{}/savepoints", self.work.path().display())
    }
}

impl Drop for FlinkLocal {
    fn drop(&mut self) {
        let _ = Self::script(self.work.path(), "stop");
    }
}

/// A scratch Postgres (trust authentication, loopback only) with the sink's database `sinkdb`.
fn sink_postgres() -> ScratchPostgres {
    let pg = ScratchPostgres::start(None, false);
    pg.psql("postgres", &["-c", "CREATE DATABASE sinkdb"]);
    pg
}

/// A Debezium change event of the university connector (JSON without schemas, timestamps as epoch ms).
fn event(table: &str, op: &str, before: Option<serde_json::Value>, after: Option<serde_json::Value>) -> Vec<u8> {
    json!({
        "before": before, "after": after, "op": op, "ts_ms": 1_764_000_000_000_i64,
        "source": {"connector": "postgresql", "db": "sourcedb", "schema": "public", "table": table},
        "transaction": null,
    })
    .to_string()
    .into_bytes()
}

fn faculty(id: i64, name: &str) -> serde_json::Value {
    json!({"id": id, "faculty_code": format!("F{id}"), "faculty_name": name, "created_at": 1_764_000_000_000_i64})
}

fn program(id: i64, name: &str) -> serde_json::Value {
    json!({"id": id, "program_code": format!("P{id}"), "program_name": name, "faculty_id": 1, "degree": "S1",
           "created_at": 1_764_000_000_000_i64})
}

async fn produce(client: &rskafka::client::Client, table: &str, events: &[Vec<u8>]) {
    let topic = format!("university-server.public.{table}");
    let values: Vec<Option<&[u8]>> = events.iter().map(|e| Some(e.as_slice())).collect();
    support::produce(client, &topic, 0, None, &values).await;
}

/// Polls until `query` answers `expected`, for up to a minute; returns how long it took.
async fn await_rows(pg: &ScratchPostgres, query: &str, expected: &str) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        last = pg.psql("sinkdb", &["-c", query]);
        if last == expected {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{query}: expected {expected:?}, the sink has {last:?}");
}

fn launcher(flink: &FlinkLocal) -> SqlGatewayLauncher {
    let settings = LaunchSettings {
        savepoint_dir: flink.savepoint_dir(),
        // Offsets are committed on checkpoints; short, so a stop soon after the data still resumes right.
        checkpoint_interval: Duration::from_secs(2),
        start_timeout: Duration::from_secs(120),
        stop_timeout: Duration::from_secs(120),
        poll: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
    };
    SqlGatewayLauncher::new(&flink.gateway_url, &flink.rest_url, Duration::from_secs(30), settings).expect("launcher")
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread")]
async fn real_flink_jobs_started_by_the_launcher_land_changes_in_postgres_and_stop_with_a_savepoint() {
    let missing = missing();
    if !missing.is_empty() {
        let message = format!("real Flink test skipped; missing: {}", missing.join("; "));
        assert!(std::env::var_os("REQUIRE_REAL_FLINK").is_none(), "{message}");
        eprintln!("{message}");
        return;
    }
    let broker = support::Broker::start();
    let pg = sink_postgres();
    let flink = FlinkLocal::start();
    let kafka = support::client(&broker).await;
    for table in ["faculty", "program"] {
        support::create_topic(&kafka, &format!("university-server.public.{table}"), 1).await;
    }
    // The sink tables exist beforehand (the JDBC connector does not create them), keyed like the source.
    pg.psql(
        "sinkdb",
        &[
            "-c",
            "CREATE TABLE faculty (id INT PRIMARY KEY, faculty_code VARCHAR(10), faculty_name VARCHAR(100), \
             created_at TIMESTAMP); \
             CREATE TABLE program (id INT PRIMARY KEY, program_code VARCHAR(10), program_name VARCHAR(100), \
             faculty_id INT, degree VARCHAR(20), created_at TIMESTAMP)",
        ],
    );
    // A snapshot read, an insert, an update and a delete (with its tombstone, which the format skips).
    produce(
        &kafka,
        "faculty",
        &[
            event("faculty", "r", None, Some(faculty(1, "Science"))),
            event("faculty", "c", None, Some(faculty(2, "Arts"))),
            event(
                "faculty",
                "u",
                Some(faculty(1, "Science")),
                Some(faculty(1, "Sciences")),
            ),
            event("faculty", "d", Some(faculty(2, "Arts")), None),
        ],
    )
    .await;
    support::produce(&kafka, "university-server.public.faculty", 0, None, &[None]).await;
    produce(
        &kafka,
        "program",
        &[event("program", "r", None, Some(program(7, "Physics")))],
    )
    .await;

    let mut config = Config::default();
    config.kafka.bootstrap = vec![broker.bootstrap()];
    config.sink.kind = SinkKind::Jdbc;
    config.sink.jdbc.url = format!("jdbc:postgresql://127.0.0.1:{}/sinkdb", pg.port);
    let credentials = Credentials::from_lookup(|name| (name == "SINK_JDBC_PASSWORD").then(|| "unused".to_owned()));
    let render = |table: &str| sql::render_table_with(&config, table, &credentials).expect("render");

    // Each launcher holds its own gateway session: the two starts run at once, in two sessions.
    let first = launcher(&flink);
    let second = launcher(&flink);
    let generation = 1;
    let started = Instant::now();
    let (faculty_start, program_start) = tokio::join!(
        async {
            let r = first.start("faculty", generation, &render("faculty")).await;
            (r, started.elapsed())
        },
        async {
            let r = second.start("program", generation, &render("program")).await;
            (r, started.elapsed())
        },
    );
    let logs = || FlinkLocal::logs(flink.work.path());
    let (faculty_job, faculty_took) = (
        faculty_start.0.unwrap_or_else(|e| panic!("{e}\n{}", logs())),
        faculty_start.1,
    );
    let (program_job, program_took) = (
        program_start.0.unwrap_or_else(|e| panic!("{e}\n{}", logs())),
        program_start.1,
    );
    assert_eq!(faculty_job.job_id, job_id_for("faculty", generation));
    assert_eq!(program_job.job_id, job_id_for("program", generation));
    assert!(!faculty_job.adopted && !program_job.adopted);
    let jobs = first.list_jobs().await.expect("list jobs");
    for (table, id) in [("faculty", &faculty_job.job_id), ("program", &program_job.job_id)] {
        let job = jobs
            .iter()
            .find(|j| &j.job_id == id)
            .unwrap_or_else(|| panic!("{id} in {jobs:?}"));
        assert_eq!(job.state, JobState::Running, "{table}");
        assert_eq!(job.table, table);
    }

    // Updates are upserts and the delete is applied: the sink equals what Postgres would hold.
    let faculty_rows = "SELECT id, faculty_code, faculty_name, created_at FROM faculty ORDER BY id";
    let landed = await_rows(&pg, faculty_rows, "1|F1|Sciences|2025-11-24 16:00:00\n").await;
    await_rows(&pg, "SELECT id, program_name, degree FROM program", "7|Physics|S1\n").await;

    // Offsets reach Kafka when a checkpoint completes after the records were read; the next run starts there.
    let committed_after = await_committed_offset(&flink.rest_url, &faculty_job.job_id, "faculty", 5).await;

    // Stop with a savepoint: the job FINISHES and the savepoint is on disk.
    let stop_started = Instant::now();
    let stopped = first.stop("faculty", &faculty_job.job_id).await.expect("stop");
    let stop_took = stop_started.elapsed();
    let Stopped::Savepoint { location } = stopped else {
        panic!("expected a savepoint, got {stopped:?}");
    };
    assert!(
        Path::new(location.trim_start_matches("file:"))
            .join("_metadata")
            .is_file(),
        "{location}"
    );
    // The dispatcher's own answer: `GET /jobs/<id>` is served from a cache that may still say RUNNING for up to
    // `web.refresh-interval` after the stop was acknowledged.
    let state = first
        .jobmanager()
        .job_status(&faculty_job.job_id)
        .await
        .expect("job status")
        .expect("known");
    assert_eq!(state, JobState::Finished);

    // A change while no job runs; the next start (a new generation, so a new pinned id) resumes from the offsets
    // the stopped job committed, so its source reads that one change only: upserts would hide a re-read of the
    // whole topic in the sink, so the source's record count is checked.
    produce(
        &kafka,
        "faculty",
        &[event("faculty", "c", None, Some(faculty(3, "Law")))],
    )
    .await;
    let restarted = first.start("faculty", 2, &render("faculty")).await.expect("restart");
    assert_eq!(restarted.job_id, job_id_for("faculty", 2));
    await_rows(
        &pg,
        faculty_rows,
        "1|F1|Sciences|2025-11-24 16:00:00\n3|F3|Law|2025-11-24 16:00:00\n",
    )
    .await;
    let records_read = source_records_read(&flink.rest_url, &restarted.job_id).await;
    assert_eq!(
        records_read, 1,
        "the restarted job must read only the change written since the stop"
    );

    // Gateway statement latency: a SET through a fresh session, as the launcher sends it, ten times.
    let gateway = SqlGateway::new(
        http_client(Duration::from_secs(10)).expect("client"),
        &flink.gateway_url,
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
    )
    .expect("gateway");
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        gateway
            .execute_in_own_session(&["SET 'pipeline.name' = 'latency'".to_owned()], Duration::from_secs(30))
            .await
            .expect("SET");
        latencies.push(t.elapsed());
    }

    // Flink's errors come back as the launcher expects them: one root-cause line per failed statement.
    let error = |statements: &[&str]| {
        let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
        let gateway = &gateway;
        async move {
            match gateway
                .execute_in_own_session(&statements, Duration::from_secs(60))
                .await
            {
                Err(FlinkError::Statement { root_cause, fault, .. }) => (root_cause, fault),
                other => panic!("{statements:?}: expected a statement error, got {other:?}"),
            }
        }
    };
    let (syntax, _) = error(&["SELEC 1"]).await;
    assert!(syntax.contains("Non-query expression encountered"), "{syntax}");
    let (unknown, _) = error(&["INSERT INTO no_such_table SELECT 1"]).await;
    assert!(
        unknown.contains("no_such_table") && !unknown.contains('\n'),
        "{unknown}"
    );
    // A second job with a running job's pinned id is refused by Flink, as the launcher's idempotent start relies on.
    let pin = format!("SET '$internal.pipeline.job-id' = '{}'", program_job.job_id);
    let (duplicate, fault) = error(&[
        "CREATE TEMPORARY TABLE IF NOT EXISTS gen (x INT) WITH ('connector' = 'datagen')",
        "CREATE TEMPORARY TABLE IF NOT EXISTS hole (x INT) WITH ('connector' = 'blackhole')",
        &pin,
        "INSERT INTO hole SELECT x FROM gen",
    ])
    .await;
    assert!(duplicate.contains("DuplicateJobSubmissionException"), "{duplicate}");
    assert_eq!(fault, Fault::DuplicateJob, "{duplicate}");

    let stop_again = Instant::now();
    for (l, table, id) in [
        (&first, "faculty", &restarted.job_id),
        (&second, "program", &program_job.job_id),
    ] {
        assert!(matches!(
            l.stop(table, id).await.expect("stop"),
            Stopped::Savepoint { .. }
        ));
    }
    eprintln!(
        "real Flink timings: concurrent starts to RUNNING faculty {faculty_took:.1?}, program {program_took:.1?}; \
         first rows in Postgres {landed:.1?} after RUNNING, offsets seen committed {committed_after:.1?} later; \
         stop-with-savepoint to FINISHED {stop_took:.1?} \
         (two more: {:.1?}); gateway SET round trip median {:.1?} max {:.1?}; INSERT statements in the gateway: {}",
        stop_again.elapsed(),
        median(&mut latencies.clone()),
        latencies.iter().max().copied().unwrap_or_default(),
        insert_times(flink.work.path()),
    );
}

/// Waits until the job's Kafka source reports `offset` committed for its table's partition 0 (the JobManager
/// refreshes metrics every 10 s); returns how long that took.
async fn await_committed_offset(
    jobmanager_url: &str,
    job: &cdc_orchestrator::model::JobId,
    table: &str,
    offset: i64,
) -> Duration {
    let started = Instant::now();
    let suffix = format!(".KafkaSourceReader.topic.university-server_public_{table}.partition.0.committedOffset");
    let mut seen = String::new();
    while started.elapsed() < Duration::from_secs(90) {
        if let Ok(Some(vertices)) = support::source_progress::job_vertices(jobmanager_url, job).await
            && let Some(source) = vertices.first()
            && let Ok(names) = support::source_progress::vertex_metrics(jobmanager_url, job, &source.id, &[]).await
        {
            let wanted: Vec<String> = names.into_keys().filter(|n| n.ends_with(&suffix)).collect();
            if let Ok(values) = support::source_progress::vertex_metrics(jobmanager_url, job, &source.id, &wanted).await
            {
                if values.values().any(|v| v.parse::<i64>().ok() == Some(offset)) {
                    return started.elapsed();
                }
                seen = format!("{values:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{table}: offset {offset} not committed within 90 s: {seen}");
}

/// Records the job's Kafka source has emitted, summed over its subtasks, from the JobManager's metrics.
async fn source_records_read(jobmanager_url: &str, job: &cdc_orchestrator::model::JobId) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(Some(vertices)) = support::source_progress::job_vertices(jobmanager_url, job).await
            && let Some(source) = vertices.first()
            && let Ok(names) = support::source_progress::vertex_metrics(jobmanager_url, job, &source.id, &[]).await
        {
            // Per subtask and operator: `<subtask>.Source__<table>[<n>].numRecordsOut`.
            let wanted: Vec<String> = names
                .into_keys()
                .filter(|n| n.contains(".Source__") && n.ends_with(".numRecordsOut"))
                .collect();
            if let Ok(values) = support::source_progress::vertex_metrics(jobmanager_url, job, &source.id, &wanted).await
            {
                let total: i64 = values.values().filter_map(|v| v.parse::<i64>().ok()).sum();
                if total > 0 {
                    return total;
                }
                seen = format!("{values:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the source of {job} emitted nothing within 60 s: {seen}");
}

/// The INSERT statements' times from the gateway's log ("... FINISHED in N ms job ...: INSERT ...").
fn insert_times(work: &Path) -> String {
    let log = std::fs::read_to_string(work.join("log/sql-gateway.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(" FINISHED in ") && l.contains(": INSERT"))
        .filter_map(|l| l.split(" in ").nth(1)?.split(' ').next().map(|ms| format!("{ms} ms")))
        .collect::<Vec<_>>()
        .join(", ")
}
