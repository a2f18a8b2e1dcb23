//! What an operator gets around the sidecar (issue 18), through the real binary on a real tansu broker with the
//! dry-run launcher: the savings in `/tables` and `/metrics`, `cdc-orchestrator status`, the helm chart's
//! dashboard and alert rules checked against the metrics a running sidecar exports, and the CLI help.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const PREFIX: &str = "university-server.public.";
const BIN: &str = env!("CARGO_BIN_EXE_cdc-orchestrator");

/// A `cdc-orchestrator run` with the dry-run launcher; killed on drop.
struct Sidecar {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    fn start(broker: &support::Broker, extra: &[(&str, &str)]) -> Sidecar {
        let listen = format!("127.0.0.1:{}", support::free_port());
        let mut cmd = Command::new(BIN);
        cmd.arg("run").current_dir(env!("CARGO_MANIFEST_DIR"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CDC_") {
                cmd.env_remove(key);
            }
        }
        let bootstrap = broker.bootstrap();
        let defaults = [
            ("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str()),
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
            ("CDC_SERVER__LISTEN", listen.as_str()),
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            ("CDC_POLICY__COOLDOWN", "0s"),
            ("CDC_POLICY__IDLE_TIMEOUT", "2s"),
        ];
        for (key, value) in defaults.iter().chain(extra) {
            cmd.env(key, value);
        }
        for (key, value) in support::sql_env() {
            cmd.env(key, value);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cdc-orchestrator run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        let sidecar = Sidecar {
            child,
            url: format!("http://{listen}"),
            log,
        };
        sidecar.wait_for("the watcher reaching the broker", Duration::from_secs(20), || {
            sidecar.count("Kafka brokers answer") > 0
        });
        sidecar
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; log:\n{}",
                self.log.lock().expect("log lock").join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("{}{path}", self.url)])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn table(&self, table: &str) -> Value {
        serde_json::from_str(&self.get(&format!("/tables/{table}"))).expect("json")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn change(client: &rskafka::client::Client, table: &str, id: u64) {
    let value = serde_json::json!({
        "before": null,
        "after": {"id": id},
        "source": {"connector": "postgresql", "name": "university-server", "db": "sourcedb",
                   "schema": "public", "table": table, "snapshot": "false", "ts_ms": 1_732_500_000_000_i64},
        "op": "c",
        "ts_ms": 1_732_500_000_037_i64,
        "transaction": null,
    });
    let bytes = serde_json::to_vec(&value).expect("json");
    support::produce(
        client,
        &format!("{PREFIX}{table}"),
        0,
        Some(b"{\"id\":1}"),
        &[Some(&bytes)],
    )
    .await;
}

async fn broker_with(tables: &[&str]) -> (support::Broker, rskafka::client::Client) {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    for table in tables {
        support::create_topic(&client, &format!("{PREFIX}{table}"), 1).await;
    }
    (broker, client)
}

fn status(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("status").args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("CDC_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run status")
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savings_and_status_follow_a_job_through_its_cycle() {
    let (broker, client) = broker_with(&["faculty", "program"]).await;
    let sidecar = Sidecar::start(&broker, &[("CDC_SERVER__TOKEN", "s3cret")]);
    change(&client, "faculty", 1).await;
    sidecar.wait_for("start of faculty", Duration::from_secs(15), || {
        sidecar.count("Successfully triggered job for: faculty") == 1
    });

    // While the job runs: the status table shows it, aligned, with the job id and a running share.
    let shown = status(&["--url", &sidecar.url], &[("CDC_SERVER__TOKEN", "s3cret")]);
    let text = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.status.success(),
        "status: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TABLE") && lines[0].contains("RUNNING SINCE"),
        "{text}"
    );
    let faculty = lines.iter().find(|l| l.starts_with("faculty ")).expect("faculty row");
    let job_id = sidecar.table("faculty")["job_id"].as_str().expect("job id").to_owned();
    assert!(faculty.contains(" running ") && faculty.contains(&job_id), "{text}");
    assert_eq!(
        lines[0].find("STATE"),
        faculty.find("running"),
        "columns aligned:\n{text}"
    );

    // After the idle stop: its job time is charged from start to stop, once.
    sidecar.wait_for("idle stop of faculty", Duration::from_secs(15), || {
        sidecar.count("Stopped idle job for: faculty") == 1
    });
    sidecar.wait_for("faculty idle", Duration::from_secs(5), || {
        sidecar.table("faculty")["state"] == "idle"
    });
    let first = sidecar.table("faculty");
    let job_seconds = first["job_seconds"].as_f64().expect("job_seconds");
    assert!((2.0..8.0).contains(&job_seconds), "idle timeout is 2 s: {first}");
    assert_eq!(first["job_cycles"], 1, "{first}");
    assert_eq!(first["job_url"], Value::Null, "no Flink UI in a dry run: {first}");
    std::thread::sleep(Duration::from_millis(1_500));
    let later = sidecar.table("faculty");
    assert_eq!(later["job_seconds"], first["job_seconds"], "no charge without a job");
    assert!(
        later["tracked_seconds"].as_f64() > first["tracked_seconds"].as_f64(),
        "{first} {later}"
    );
    let share = later["running_share"].as_f64().expect("share");
    assert!(share > 0.0 && share < 1.0, "{later}");

    let metrics = sidecar.get("/metrics");
    let charged = sample(&metrics, "cdc_table_job_seconds_total{table=\"faculty\"}").expect("faculty series");
    assert!(
        (charged - job_seconds).abs() < 0.001,
        "{charged} vs {job_seconds}\n{metrics}"
    );
    assert!(
        !metrics.contains("cdc_table_job_seconds_total{table=\"program\"}"),
        "a quiet table has no series:\n{metrics}"
    );
    let tables = sample(&metrics, "cdc_tables_tracked").expect("tables tracked");
    assert!(
        tables >= 2.0,
        "every templated table counts, quiet ones too:\n{metrics}"
    );
    let overall = sample(&metrics, "cdc_job_running_share").expect("running share");
    assert!(overall > 0.0 && overall < share, "{overall} {share}\n{metrics}");

    // Nothing listening: one clear line and exit 1.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let failed = status(&["--url", &dead], &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr).to_string();
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the sidecar at {dead}/tables: connection refused"
        )),
        "{stderr}"
    );
}

#[test]
fn global_options_are_listed_once_in_the_top_level_help() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().expect("help");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let top = help(&["--help"]);
    assert!(top.contains("--log-format <LOG_FORMAT>"), "{top}");
    for sub in ["version", "run", "status", "jobs"] {
        let text = help(&[sub, "--help"]);
        assert!(
            !text.contains("--log-format <"),
            "{sub} repeats the global options:\n{text}"
        );
        assert!(text.contains("Global options: --config"), "{sub}:\n{text}");
    }
    // Still accepted after the subcommand.
    let out = Command::new(BIN)
        .args(["version", "--log-format", "json"])
        .output()
        .expect("version");
    assert!(out.status.success());
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Metric names in the Prometheus text a running sidecar serves (sample names: `_total`, `_bucket`, ... included).
fn exported_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `cdc_...` names a PromQL expression uses.
fn promql_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("cdc_") {
        let start = i + at;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}
