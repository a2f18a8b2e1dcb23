//! End to end: the real `cdc-orchestrator run` binary as a subprocess, against a real tansu broker and the fake
//! Flink (SQL Gateway + JobManager over loopback HTTP).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;
use serde_json::Value;
use support::fake_flink::{FakeFlink, Fault, Route};

const PREFIX: &str = "university-server.public.";

/// A running sidecar with the `sql-gateway` launcher against the fake Flink, read over HTTP from async tests (the
/// fake Flink runs on the test's runtime, so waiting must not block it).
struct Sidecar {
    process: support::sidecar::Sidecar,
    client: reqwest::Client,
}

impl Sidecar {
    fn start(broker: &support::Broker, flink: &FakeFlink, extra: &[(&str, &str)]) -> Sidecar {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let process = support::sidecar::Sidecar::builder()
            .env("CDC_LOG_LEVEL", "info,cdc_orchestrator=debug")
            .bootstrap(&broker.bootstrap())
            .envs([
                ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
                ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
                ("CDC_KAFKA__REQUEST_TIMEOUT", "2s"),
            ])
            .flink(&flink.gateway_url, &flink.jobmanager_url)
            .envs([
                ("CDC_FLINK__RECONCILE_INTERVAL", "1s"),
                ("CDC_FLINK__START_TIMEOUT", "10s"),
                ("CDC_FLINK__STOP_TIMEOUT", "5s"),
                ("CDC_FLINK__REQUEST_TIMEOUT", "2s"),
                ("CDC_FLINK__SHUTDOWN_TIMEOUT", "5s"),
                ("CDC_FLINK__STARTS_PER_MINUTE", "600"),
                ("CDC_FLINK__START_BURST", "20"),
                ("CDC_POLICY__COOLDOWN", "1s"),
                ("CDC_POLICY__IDLE_TIMEOUT", "30s"),
                ("CDC_POLICY__RETRY_INITIAL_BACKOFF", "200ms"),
                ("CDC_POLICY__RETRY_MAX_BACKOFF", "1s"),
            ])
            .envs(extra.iter().copied())
            .sql_credentials()
            // Changes produced before the watcher's first poll are the job's (lag), not new activity: wait for it.
            .ready_when_logged("Kafka brokers answer", Duration::from_secs(15))
            .start();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        Sidecar { process, client }
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    fn count(&self, needle: &str) -> usize {
        self.process.count(needle)
    }

    /// Polls `done` until it holds, failing the test with `what` and the sidecar's log after `timeout`.
    async fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        self.wait_until(&format!("no log line {needle:?}"), timeout, || self.count(needle) > 0)
            .await;
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.process.url()))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.process.url()))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Sends SIGTERM and waits for the exit: its code and how long it took.
    fn terminate(&mut self) -> (Option<i32>, Duration) {
        let (took, status) = self.process.terminate(Duration::from_secs(60));
        (status.code(), took)
    }
}

async fn change(client: &rskafka::client::Client, table: &str, op: &str, id: u64) {
    change_on(client, &format!("{PREFIX}{table}"), table, op, id).await;
}

/// A Debezium change whose `source.table` is `table`, produced into `topic` (whatever table that topic carries).
async fn change_on(client: &rskafka::client::Client, topic: &str, table: &str, op: &str, id: u64) {
    let value = serde_json::json!({
        "before": null,
        "after": {"id": id},
        "source": {"connector": "postgresql", "name": "university-server", "db": "sourcedb",
                   "schema": "public", "table": table, "snapshot": "false", "ts_ms": 1_732_500_000_000_i64},
        "op": op,
        "ts_ms": 1_732_500_000_037_i64,
        "transaction": null,
    });
    let bytes = serde_json::to_vec(&value).expect("json");
    support::produce(client, topic, 0, Some(b"{\"id\":1}"), &[Some(&bytes)]).await;
}

/// What a running Flink job does on each checkpoint: commit its group's offsets up to the end of the topic.
async fn job_commits_offsets(broker: &support::Broker, client: &rskafka::client::Client, table: &str) {
    use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
    let topic = format!("{PREFIX}{table}");
    let pc = client
        .partition_client(topic.clone(), 0, UnknownTopicHandling::Error)
        .await
        .expect("partition");
    let end = pc.get_offset(OffsetAt::Latest).await.expect("high watermark");
    let config = cdc_orchestrator::config::KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        ..Default::default()
    };
    support::kafka_admin::commit_offsets(&config, &format!("cdc-{table}"), &[(topic, 0, end)])
        .await
        .expect("commit offsets");
}

fn live_jobs(flink: &FakeFlink, table: &str) -> usize {
    flink.live_jobs_named(&format!("cdc-{table}")).len()
}

async fn topics(broker: &support::Broker, tables: &[&str]) -> rskafka::client::Client {
    let client = support::client(broker).await;
    for table in tables {
        support::create_topic(&client, &format!("{PREFIX}{table}"), 1).await;
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_gives_exactly_one_start_and_the_success_log_lines() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty", "program"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    assert!(
        sidecar.count("Detected c operation on table: faculty") >= 1,
        "{}",
        sidecar.log_text()
    );
    // Let polls and reconciliations run a few more rounds: nothing may start again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(live_jobs(&flink, "faculty"), 1);
    assert_eq!(flink.jobs().len(), 1, "program saw no change, so no job");
    assert_eq!(sidecar.count("Successfully triggered job for: faculty"), 1);
    let (code, body) = sidecar.get("/tables/faculty").await;
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(status["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_five_tables_gives_one_start_per_table() {
    let tables = ["faculty", "program", "students", "course", "payment"];
    let broker = support::Broker::start();
    let client = topics(&broker, &tables).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    let mut produced = 0;
    for id in 0..200u64 {
        for table in tables {
            change(&client, table, if id % 3 == 0 { "u" } else { "c" }, id).await;
            produced += 1;
        }
    }
    assert_eq!(produced, 1_000);
    for table in tables {
        sidecar
            .wait_for_log(
                &format!("Successfully triggered job for: {table}"),
                Duration::from_secs(20),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for table in tables {
        assert_eq!(live_jobs(&flink, table), 1, "{table}");
        assert_eq!(
            sidecar.count(&format!("Successfully triggered job for: {table}")),
            1,
            "{table}"
        );
    }
    assert_eq!(flink.jobs().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_table_is_stopped_and_a_change_during_the_stop_restarts_it() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    flink.set_savepoint_after(Some(Duration::from_secs(2)));
    let sidecar = Sidecar::start(&broker, &flink, &[("CDC_POLICY__IDLE_TIMEOUT", "2s")]);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    // The job catches up (lag 0), then is idle for 2s -> stop with savepoint, which takes 2s; a change lands
    // while it is under way.
    job_commits_offsets(&broker, &client, "faculty").await;
    sidecar
        .wait_until("no stop issued", Duration::from_secs(15), || {
            flink.requests(Route::StopJob) > 0
        })
        .await;
    change(&client, "faculty", "u", 1).await;
    sidecar
        .wait_for_log("Stopped idle job for: faculty", Duration::from_secs(15))
        .await;
    sidecar
        .wait_until("no restart", Duration::from_secs(15), || {
            sidecar.count("Successfully triggered job for: faculty") >= 2
        })
        .await;
    let jobs = flink.jobs();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(live_jobs(&flink, "faculty"), 1, "never two jobs at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flink_down_for_a_while_retries_the_start_until_it_is_back() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    flink.inject_times(Route::OpenSession, Fault::Error500, 6);
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(30))
        .await;
    assert!(
        flink.requests(Route::OpenSession) > 6,
        "the failing calls were made and retried"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_jobs(&flink, "faculty"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_is_survived() {
    let mut broker = support::Broker::start();
    let port = broker.port();
    let client = topics(&broker, &["faculty", "program"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    broker.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, _) = sidecar.get("/healthz").await;
    assert_eq!(code, 200, "the sidecar keeps serving while the broker is down");
    let broker = support::Broker::start_on(port);
    let client = topics(&broker, &["faculty", "program"]).await;
    change(&client, "program", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: program", Duration::from_secs(30))
        .await;
    assert_eq!(live_jobs(&flink, "program"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_the_shutdown_timeout_and_leaves_jobs_running() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    let mut sidecar = Sidecar::start(&broker, &flink, &[]);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    let (code, took) = sidecar.terminate();
    assert_eq!(code, Some(0), "log:\n{}", sidecar.log_text());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        live_jobs(&flink, "faculty"),
        1,
        "jobs are left running for the next start to adopt"
    );

    // A restarted sidecar adopts the job instead of starting a second one: either the first listing finds it, or
    // (when the uncommitted change's lag starts the table before that listing lands) the launcher finds it
    // before submitting.
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    sidecar
        .wait_until("no adoption of the running job", Duration::from_secs(10), || {
            sidecar.count("adopted running job") + sidecar.count("adopting existing job") > 0
        })
        .await;
    change(&client, "faculty", "u", 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live_jobs(&flink, "faculty"), 1);
    assert_eq!(flink.jobs().len(), 1);
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_happened() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    change(&client, "faculty", "c", 1).await;
    change(&client, "faculty", "d", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    let (code, text) = sidecar.get("/metrics").await;
    assert_eq!(code, 200);
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), &text).expect("write metrics");
    // The reference parser: prometheus_client's OpenMetrics text parser (installed by scripts/install-tools.sh).
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        key = s.name + json.dumps(s.labels, sort_keys=True)
        out[key] = s.value
print(json.dumps(out))
"#;
    let parsed = Command::new("python3")
        .args(["-c", script, file.path().to_str().expect("utf-8")])
        .env("PYTHONPATH", python())
        .output()
        .expect("python3");
    assert!(
        parsed.status.success(),
        "parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let samples: Value = serde_json::from_slice(&parsed.stdout).expect("json");
    assert_eq!(
        samples[r#"cdc_job_starts_total{"result": "ok", "table": "faculty"}"#], 1.0,
        "{samples}"
    );
    assert_eq!(samples["cdc_jobs_running{}"], 1.0, "{samples}");
    assert!(
        samples["cdc_polls_total{}"].as_f64().expect("polls") >= 1.0,
        "{samples}"
    );
    // Sampled records per operation: when both changes land in one poll, a first sample may hold only the newest.
    let sampled = |op: &str| {
        samples[format!(r#"cdc_activity_records_total{{"op": "{op}", "table": "faculty"}}"#)]
            .as_f64()
            .unwrap_or(0.0)
    };
    assert!(sampled("c") + sampled("d") >= 1.0, "{samples}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_controls_tables_and_guards_posts() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[("CDC_SERVER__TOKEN", "s3cret")]);
    let (code, _) = sidecar.post("/tables/faculty/trigger", None).await;
    assert_eq!(code, 401);
    let (code, body) = sidecar.post("/tables/no-such-table/trigger", Some("s3cret")).await;
    assert_eq!((code, body["error_code"].clone()), (404, Value::from(404)));
    let (code, body) = sidecar.post("/tables/faculty/pause", Some("s3cret")).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["paused"], true);
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Detected c operation on table: faculty", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(flink.jobs().len(), 0, "a paused table never starts");
    let (code, _) = sidecar.post("/tables/faculty/resume", Some("s3cret")).await;
    assert_eq!(code, 202);
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    let (code, body) = sidecar.post("/tables/faculty/stop", Some("s3cret")).await;
    assert_eq!(code, 202, "{body}");
    sidecar
        .wait_for_log("Stopped job for: faculty", Duration::from_secs(15))
        .await;
    assert_eq!(live_jobs(&flink, "faculty"), 0);
    let (code, body) = sidecar.get("/tables").await;
    assert_eq!(code, 200);
    let tables: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(tables[0]["table"], "faculty");
    let (code, _) = sidecar.get("/tables/nope").await;
    assert_eq!(code, 404);
    let (code, _) = sidecar.get("/readyz").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_sql_never_queues_or_spends_a_token_and_others_still_start() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["audit_log", "faculty"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    for id in 0..3 {
        change(&client, "audit_log", "c", id).await;
    }
    sidecar
        .wait_for_log(
            "changes on a table without a SQL template are ignored",
            Duration::from_secs(10),
        )
        .await;
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: faculty", Duration::from_secs(15))
        .await;
    assert_eq!(flink.jobs().len(), 1, "nothing was submitted for the table without SQL");
    let (code, _) = sidecar.get("/tables/audit_log").await;
    assert_eq!(code, 404, "never in the policy, so never queued or failing");
    let (_, metrics) = sidecar.get("/metrics").await;
    assert!(
        !metrics.contains("cdc_job_starts_total{table=\"audit_log\""),
        "{metrics}"
    );
    assert_eq!(
        sidecar.count("changes on a table without a SQL template are ignored"),
        1,
        "warned once"
    );
    assert_eq!(sidecar.count("cannot render the job's SQL"), 0);
}

/// Distinct values of the `table` label on `/metrics`.
fn metric_tables(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.split_once("table=\"").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once('"').map(|(table, _)| table.to_owned()))
        .collect()
}

fn tables_of(body: &str) -> Vec<String> {
    let tables: Value = serde_json::from_str(body).expect("GET /tables is JSON");
    tables
        .as_array()
        .expect("an array")
        .iter()
        .map(|t| t["table"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_table_names_cannot_create_tables_or_starve_a_real_start() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["course", "program"]).await;
    let flink = FakeFlink::start().await;
    // The default throttle (10 starts a minute, bursts of 5), which junk tables used to use up.
    let sidecar = Sidecar::start(
        &broker,
        &flink,
        &[
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            ("CDC_FLINK__STARTS_PER_MINUTE", "10"),
            ("CDC_FLINK__START_BURST", "5"),
        ],
    );
    let course = format!("{PREFIX}course");
    for id in 0..640u64 {
        change_on(&client, &course, &format!("junk_{id}"), "c", id).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, metrics) = sidecar.get("/metrics").await;
        if metrics.contains("cdc_new_records_total{table=\"course\"} 640") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "course never counted 640 records:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let asked = Instant::now();
    change(&client, "program", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: program", Duration::from_secs(5))
        .await;
    let took = asked.elapsed();
    let (_, body) = sidecar.get("/tables").await;
    assert_eq!(tables_of(&body), ["course", "program"], "{body}");
    let (_, metrics) = sidecar.get("/metrics").await;
    let labelled = metric_tables(&metrics);
    assert_eq!(
        labelled.into_iter().collect::<Vec<_>>(),
        ["course", "program"],
        "{metrics}"
    );
    let series = metrics.lines().filter(|l| l.contains("table=\"")).count();
    eprintln!(
        "640 junk source.table values: tables {:?}, {series} per-table metric series, program started after {took:?}",
        tables_of(&body)
    );
    // The junk never labels a series (the table set above); what is left is a handful of series per real table.
    assert!(series <= 2 * 8, "{series} per-table series:\n{metrics}");
    assert_eq!(
        sidecar.count("Successfully triggered job for:"),
        2,
        "course and program only"
    );
    assert!(took < Duration::from_secs(5), "program started after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_beyond_max_tables_are_ignored_with_one_warning() {
    let junk = ["audit_a", "audit_b", "audit_c", "audit_d", "audit_e", "audit_f"];
    let broker = support::Broker::start();
    let client = topics(&broker, &junk).await;
    support::create_topic(&client, &format!("{PREFIX}program"), 1).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(
        &broker,
        &flink,
        &[("CDC_FLINK__LAUNCHER", "dry-run"), ("CDC_KAFKA__MAX_TABLES", "3")],
    );
    for table in junk {
        change(&client, table, "c", 1).await;
    }
    sidecar
        .wait_for_log("more tables than kafka.max_tables", Duration::from_secs(10))
        .await;
    change(&client, "program", "c", 1).await;
    sidecar
        .wait_for_log("Successfully triggered job for: program", Duration::from_secs(10))
        .await;
    // A few more polls and lag reads: still one warning, still at most three tables besides program.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sidecar.count("more tables than kafka.max_tables"), 1);
    let (_, metrics) = sidecar.get("/metrics").await;
    let labelled = metric_tables(&metrics);
    assert!(labelled.contains("program"), "{metrics}");
    assert!(labelled.len() <= 4, "{labelled:?}");
}

const FORGED: &str = "faculty\n2026-01-01T00:00:00.000000Z  INFO cdc_orchestrator::controller: Successfully triggered job for: \
                      payment job_id=FORGED";

/// A forged `source.table` on a routed topic and on a table topic: no log line may be forged, in `format`.
async fn forged_table_names_stay_inside_their_line(format: &str) {
    let broker = support::Broker::start();
    let client = topics(&broker, &["course", "program"]).await;
    let routed = "university-server.all";
    support::create_topic(&client, routed, 1).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(
        &broker,
        &flink,
        &[
            ("CDC_LOG_FORMAT", format),
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            ("CDC_KAFKA__TOPIC_PATTERN", r"^university-server\.(public\..+|all)$"),
            ("CDC_KAFKA__ROUTED_TOPICS", r#"["university-server.all"]"#),
        ],
    );
    change_on(&client, routed, FORGED, "c", 1).await;
    change_on(&client, &format!("{PREFIX}course"), FORGED, "c", 2).await;
    // A trusted name on the routed topic still routes.
    change_on(&client, routed, "program", "u", 3).await;
    sidecar
        .wait_for_log("Successfully triggered job for: program", Duration::from_secs(15))
        .await;
    sidecar
        .wait_for_log("Successfully triggered job for: course", Duration::from_secs(15))
        .await;
    sidecar
        .wait_for_log(
            "record on a routed topic names no table the sidecar can start",
            Duration::from_secs(10),
        )
        .await;
    let log = sidecar.process.log.lines();
    let mut carried = 0;
    for line in &log {
        match format {
            "json" => {
                let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                let message = event["fields"]["message"].as_str().unwrap_or_default();
                assert!(
                    !message.starts_with("Successfully triggered job for: payment"),
                    "{line}"
                );
                if event["fields"]["named"]
                    .as_str()
                    .is_some_and(|n| n.contains("\n2026-01-01"))
                {
                    carried += 1;
                }
            }
            _ => {
                assert!(!line.starts_with("2026-01-01T00:00:00.000000Z"), "forged line: {line}");
                if line.contains("job_id=FORGED") {
                    assert!(line.contains(r"faculty\n2026-01-01T00:00:00"), "unescaped: {line}");
                    carried += 1;
                }
            }
        }
    }
    assert!(
        carried >= 1,
        "the hostile name reached the log escaped:\n{}",
        log.join("\n")
    );
    let (_, body) = sidecar.get("/tables").await;
    assert_eq!(tables_of(&body), ["course", "program"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_table_names_cannot_forge_text_log_lines() {
    forged_table_names_stay_inside_their_line("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_table_names_cannot_forge_json_log_lines() {
    forged_table_names_stay_inside_their_line("json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_line_always_names_operations() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty", "program"]).await;
    let flink = FakeFlink::start().await;
    let sidecar = Sidecar::start(
        &broker,
        &flink,
        &[
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            ("CDC_KAFKA__SAMPLE_INTERVAL", "60s"),
            ("CDC_KAFKA__SAMPLE_RECORDS", "1"),
            ("CDC_KAFKA__POLL_INTERVAL", "1s"),
        ],
    );
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_for_log("Detected c operation on table: faculty", Duration::from_secs(10))
        .await;
    // Within the sample interval the next advances are counted from the watermark alone: nothing is sampled, and
    // the line names what the table's last sample found.
    change(&client, "faculty", "u", 1).await;
    change(&client, "faculty", "u", 2).await;
    sidecar
        .wait_until("no second Detected line for faculty", Duration::from_secs(10), || {
            sidecar.count("Detected c operation on table: faculty") >= 2
        })
        .await;
    let (_, metrics) = sidecar.get("/metrics").await;
    assert!(
        metrics.contains("cdc_new_records_total{table=\"faculty\"} 3"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("op=\"u\""),
        "the updates were not sampled, so this is the watermark path: {metrics}"
    );
    // A delete and its tombstone in one poll, one record sampled: the sample is the tombstone, so the delete is
    // counted without an operation, for a table never sampled before.
    change(&client, "program", "d", 1).await;
    support::produce(&client, &format!("{PREFIX}program"), 0, Some(b"{\"id\":1}"), &[None]).await;
    sidecar
        .wait_until("no Detected line for program", Duration::from_secs(10), || {
            sidecar.count("operation on table: program") >= 1
        })
        .await;
    assert_eq!(
        sidecar.count("Detected unknown operation on table: program")
            + sidecar.count("Detected d operation on table: program"),
        sidecar.count("operation on table: program"),
        "{}",
        sidecar.log_text()
    );
    assert_eq!(sidecar.count("Detected  operation"), 0, "{}", sidecar.log_text());
}

/// The value of the sample `series` (name and labels, as rendered) on a `/metrics` page.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Flink's TaskManagers and slots (`GET /overview`) are read every reconcile interval into `cdc_flink_*`; failed
/// reads leave the gauges as they were, are logged at debug only, and do not make Flink unready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flinks_taskmanagers_and_free_slots_are_exported_and_a_failed_read_changes_nothing() {
    let broker = support::Broker::start();
    let client = topics(&broker, &["faculty"]).await;
    let flink = FakeFlink::start().await;
    flink.set_cluster(2, 4);
    let sidecar = Sidecar::start(&broker, &flink, &[]);
    let cluster = |page: &str| {
        [
            "cdc_flink_taskmanagers",
            "cdc_flink_slots_total",
            "cdc_flink_slots_available",
        ]
        .map(|s| sample(page, s))
    };
    let shows = |expected: [f64; 3]| {
        let (_, page) = sidecar.process.get("/metrics");
        cluster(&page) == expected.map(Some)
    };
    sidecar
        .wait_until("2 TaskManagers, 8 free slots", Duration::from_secs(10), || {
            shows([2.0, 8.0, 8.0])
        })
        .await;
    // A job takes a slot.
    change(&client, "faculty", "c", 1).await;
    sidecar
        .wait_until("a slot taken", Duration::from_secs(15), || shows([2.0, 8.0, 7.0]))
        .await;
    // The resource manager releases a TaskManager, but the next three reads fail: nothing changes meanwhile.
    flink.inject_times(Route::ClusterOverview, Fault::Error500, 3);
    let before = flink.requests(Route::ClusterOverview);
    flink.set_cluster(1, 4);
    sidecar
        .wait_until("three failed reads", Duration::from_secs(10), || {
            flink.requests(Route::ClusterOverview) >= before + 3
        })
        .await;
    let (_, page) = sidecar.get("/metrics").await;
    assert_eq!(cluster(&page), [Some(2.0), Some(8.0), Some(7.0)], "{page}");
    assert_eq!(
        sample(&page, r#"cdc_dependency_up{dependency="flink"}"#),
        Some(1.0),
        "{page}"
    );
    let (code, body) = sidecar.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    sidecar
        .wait_until("1 TaskManager, 3 free slots", Duration::from_secs(10), || {
            shows([1.0, 4.0, 3.0])
        })
        .await;
    let failures: Vec<String> = sidecar
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot read Flink"))
        .map(str::to_owned)
        .collect();
    assert!(
        failures.len() >= 3 && failures.iter().all(|l| l.contains("DEBUG")),
        "{failures:#?}"
    );
}
