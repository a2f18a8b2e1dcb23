//! What an operator gets around the sidecar (issue 18), through the real binary on a real tansu broker with the
//! dry-run launcher: the savings in `/tables` and `/metrics`, `cdc-orchestrator status`, the helm chart's
//! dashboard and alert rules checked against the metrics a running sidecar exports, and the CLI help.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support;
use serde_json::Value;
use support::sidecar::{Sidecar, command};

const PREFIX: &str = "university-server.public.";

/// Starts `cdc-orchestrator run` with the dry-run launcher against `broker`, `extra` on top.
fn start_sidecar(broker: &support::Broker, extra: &[(&str, &str)]) -> Sidecar {
    Sidecar::builder()
        .bootstrap(&broker.bootstrap())
        .envs([
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
        ])
        .dry_run()
        .envs([("CDC_POLICY__COOLDOWN", "0s"), ("CDC_POLICY__IDLE_TIMEOUT", "2s")])
        .envs(extra.iter().copied())
        .sql_credentials()
        .ready_when_logged("Kafka brokers answer", Duration::from_secs(20))
        .start()
}

/// `GET path` through curl, as an operator would: the body of a successful answer.
fn get(sidecar: &Sidecar, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("{}{path}", sidecar.url())])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `GET /tables/<table>`.
fn table(sidecar: &Sidecar, table: &str) -> Value {
    serde_json::from_str(&get(sidecar, &format!("/tables/{table}"))).expect("json")
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
    let mut cmd = command(&[&["status"], args].concat());
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
    let sidecar = start_sidecar(&broker, &[("CDC_SERVER__TOKEN", "s3cret")]);
    change(&client, "faculty", 1).await;
    sidecar.wait_for("start of faculty", Duration::from_secs(15), || {
        sidecar.count("Successfully triggered job for: faculty") == 1
    });

    // While the job runs: the status table shows it, aligned, with the job id and a running share.
    let shown = status(&["--url", &sidecar.url()], &[("CDC_SERVER__TOKEN", "s3cret")]);
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
    let job_id = table(&sidecar, "faculty")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
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
        table(&sidecar, "faculty")["state"] == "idle"
    });
    let first = table(&sidecar, "faculty");
    let job_seconds = first["job_seconds"].as_f64().expect("job_seconds");
    assert!((2.0..8.0).contains(&job_seconds), "idle timeout is 2 s: {first}");
    assert_eq!(first["job_cycles"], 1, "{first}");
    assert_eq!(first["job_url"], Value::Null, "no Flink UI in a dry run: {first}");
    std::thread::sleep(Duration::from_millis(1_500));
    let later = table(&sidecar, "faculty");
    assert_eq!(later["job_seconds"], first["job_seconds"], "no charge without a job");
    assert!(
        later["tracked_seconds"].as_f64() > first["tracked_seconds"].as_f64(),
        "{first} {later}"
    );
    let share = later["running_share"].as_f64().expect("share");
    assert!(share > 0.0 && share < 1.0, "{later}");

    let metrics = get(&sidecar, "/metrics");
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

    // --watch redraws until interrupted, then exits 0.
    let watching = command(&["status", "--watch", "--interval", "200ms", "--url", &sidecar.url()])
        .env("CDC_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("status --watch");
    std::thread::sleep(Duration::from_millis(1_500));
    let interrupted = Command::new("kill")
        .args(["-INT", &watching.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success());
    let watched = watching.wait_with_output().expect("wait");
    let screen = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(watched.status.code(), Some(0), "{screen}");
    let redraws = screen.matches("\x1b[H\x1b[2JTABLE").count();
    assert!(redraws >= 3, "{redraws} redraws in 1.5 s at 200 ms:\n{screen}");
    assert!(screen.contains("faculty "), "{screen}");

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
        let out = command(args).output().expect("help");
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
    let out = command(&["version", "--log-format", "json"]).output().expect("version");
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

/// Dashboard and rule expressions of the chart rendered with both enabled, parsed by PyYAML and json (the reference
/// parsers; PyYAML comes with yamllint in `.tools/lint`): `{"dashboard": [expr], "alerts": [{name, expr, ...}]}`.
fn rendered_monitoring() -> Value {
    let helm = Command::new(repo(".tools/helm/helm"))
        .args([
            "template",
            "t",
            "helm/cdc-orchestrator",
            "--set",
            "metrics.dashboard.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--show-only",
            "templates/dashboard.yaml",
            "--show-only",
            "templates/prometheusrule.yaml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("helm");
    assert!(
        helm.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&helm.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, &helm.stdout).expect("write");
    let script = r#"
import json, sys, yaml
out = {"dashboard": [], "alerts": [], "labels": {}}
def exprs(panels):
    for p in panels:
        yield from (t["expr"] for t in p.get("targets", []))
        yield from exprs(p.get("panels", []))
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc["kind"] == "ConfigMap":
        out["labels"] = doc["metadata"]["labels"]
        dashboard = json.loads(doc["data"]["cdc-orchestrator.json"])
        out["title"] = dashboard["title"]
        out["dashboard"] = list(exprs(dashboard["panels"]))
    elif doc["kind"] == "PrometheusRule":
        for group in doc["spec"]["groups"]:
            out["alerts"] += [dict(name=r["alert"], expr=r["expr"], **r["annotations"]) for r in group["rules"]]
print(json.dumps(out))
"#;
    let parsed = Command::new("python3")
        .args(["-c", script])
        .arg(&rendered)
        .env("PYTHONPATH", repo(".tools/lint"))
        .output()
        .expect("python3");
    assert!(
        parsed.status.success(),
        "the rendered dashboard or rules do not parse: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&helm.stdout)
    );
    serde_json::from_slice(&parsed.stdout).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_dashboard_and_alerts_parse_and_use_only_exported_metrics() {
    let monitoring = rendered_monitoring();
    assert_eq!(monitoring["labels"]["grafana_dashboard"], "1", "{monitoring}");
    let dashboard: Vec<&str> = monitoring["dashboard"]
        .as_array()
        .expect("dashboard exprs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(dashboard.len() >= 15, "{monitoring}");
    let alerts = monitoring["alerts"].as_array().expect("alerts");
    let names: Vec<&str> = alerts.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "CdcTableFailing",
            "CdcKafkaUnreachable",
            "CdcFlinkUnreachable",
            "CdcLagGrowsWithoutJob",
            "CdcTableSchemaDrift",
            "CdcSidecarDown",
            "CdcNoLeader",
            "CdcLeadershipFlapping"
        ]
    );
    let runbook = std::fs::read_to_string(repo("docs/runbook.md")).expect("runbook");
    for alert in alerts {
        let name = alert["name"].as_str().expect("name");
        assert!(!alert["summary"].as_str().unwrap_or("").is_empty(), "{alert}");
        assert_eq!(
            alert["runbook"].as_str(),
            Some(format!("docs/runbook.md#{}", name.to_lowercase()).as_str())
        );
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "no runbook section for {name}"
        );
    }

    // A sidecar that went through a whole cycle (start, lag, idle stop) exports every family it has.
    let (broker, client) = broker_with(&["faculty"]).await;
    let topic = format!("{PREFIX}faculty");
    let config = cdc_orchestrator::config::KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        ..Default::default()
    };
    let sidecar = start_sidecar(&broker, &[]);
    change(&client, "faculty", 1).await;
    support::kafka_admin::commit_offsets(&config, "cdc-faculty", &[(topic, 0, 0)])
        .await
        .expect("commit offsets");
    sidecar.wait_for("idle stop and lag", Duration::from_secs(20), || {
        let metrics = get(&sidecar, "/metrics");
        metrics.contains("cdc_job_stops_total{") && metrics.contains("cdc_table_lag_records{")
    });
    let exported = exported_names(&get(&sidecar, "/metrics"));
    let exprs = dashboard
        .iter()
        .copied()
        .chain(alerts.iter().filter_map(|a| a["expr"].as_str()));
    for expr in exprs {
        let used = promql_names(expr);
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{expr:?} uses {unknown:?}, which the sidecar does not export:\n{exported:?}"
        );
    }
    let used: BTreeSet<String> = dashboard.iter().flat_map(|e| promql_names(e)).collect();
    for family in [
        "cdc_table_job_seconds_total",
        "cdc_dependency_up",
        "cdc_table_lag_records",
        "cdc_leader",
        "cdc_leadership_changes_total",
        "cdc_flink_taskmanagers",
        "cdc_flink_slots_available",
    ] {
        assert!(used.contains(family), "the dashboard shows {family}");
    }
}

#[test]
fn dashboard_and_rules_are_off_by_default() {
    let out = Command::new(repo(".tools/helm/helm"))
        .args(["template", "t", "helm/cdc-orchestrator"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("helm");
    assert!(out.status.success());
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(
        !all.contains("kind: PrometheusRule") && !all.contains("grafana_dashboard"),
        "{all}"
    );
}

#[test]
fn promql_names_are_found_whole() {
    assert_eq!(
        promql_names("sum by (le) (rate(cdc_poll_duration_seconds_bucket[5m])) / xcdc_no + cdc_up"),
        ["cdc_poll_duration_seconds_bucket", "cdc_up"].map(str::to_owned).into()
    );
}

#[test]
fn bench_charts_are_well_formed_svg_drawn_from_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = serde_json::json!({
        "side_by_side": {"events": 30000, "rows": {
            "sidecar": {"cpu_s_per_million": 12.5, "bytes_in_per_million": 3.2e6, "peak_rss_kb": 20480},
            "baseline": {"cpu_s_per_million": 410.0, "bytes_in_per_million": 9.1e8, "peak_rss_kb": 61440}}},
        "scale": [
            {"partitions": 12, "reads": "batched", "ready_s": 0.5, "cpu_share": 0.002, "rss_kb": 9000},
            {"partitions": 12000, "reads": "batched", "ready_s": 5.0, "cpu_share": 0.05, "rss_kb": 30000},
            {"partitions": 12000, "reads": "per partition", "ready_s": null}]
    });
    let latencies = serde_json::json!({"sidecar": [500, 700, 1200], "baseline": [5, 8, 40]});
    std::fs::write(dir.path().join("result.json"), result.to_string()).expect("write");
    std::fs::write(dir.path().join("lat.json"), latencies.to_string()).expect("write");
    let script = r#"
import json, subprocess, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
paths = subprocess.run([sys.executable, "bench/charts.py", d + "/result.json", d + "/lat.json", d + "/out"],
                       check=True, capture_output=True, text=True).stdout.split()
out = {}
for p in paths:
    root = ET.parse(p).getroot()
    out[p.rsplit("/", 1)[1]] = [el.text for el in root.iter("{http://www.w3.org/2000/svg}text") if el.text]
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts: Value = serde_json::from_slice(&out.stdout).expect("json");
    let has = |chart: &str, text: &str| {
        texts[chart]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t.as_str().is_some_and(|t| t.contains(text))))
    };
    assert!(has("bench-cpu.svg", "12,000"), "{texts}");
    assert!(has("bench-cpu.svg", "watermark reads batched"), "{texts}");
    assert!(has("bench-rss.svg", "RSS, MB"), "{texts}");
    assert!(has("bench-vs-baseline.svg", "410"), "the baseline's CPU value: {texts}");
    assert!(has("bench-latency.svg", "milliseconds"), "{texts}");
}
