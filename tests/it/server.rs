//! The operator HTTP API over real HTTP on loopback, in front of the real run loop (with a launcher test double
//! whose starts never finish, so tables keep the state the test gives them).

use crate::support::launcher_double;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cdc_orchestrator::config::{Config, Secret};
use cdc_orchestrator::http::{self, ServerState};
use cdc_orchestrator::kafka::watcher::{TableActivity, WatchEvent};
use cdc_orchestrator::lease::Leadership;
use cdc_orchestrator::telemetry::{Health, Metrics};
use launcher_double::FakeLauncher;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Harness {
    base: String,
    http: reqwest::Client,
    health: Arc<Health>,
    launcher: FakeLauncher,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _events: mpsc::Sender<WatchEvent>,
    _sql: tempfile::TempDir,
}

/// The server in front of a run loop that saw a change of faculty (so: starting) and only a lag report of
/// program (so: idle).
async fn start(token: Option<&str>) -> Harness {
    start_as(token, Leadership::always_leader("pod-a")).await
}

/// [`start`], as the replica `leadership` says.
async fn start_as(token: Option<&str>, leadership: Leadership) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sql = launcher_double::sql_dir(&["faculty", "program"]);
    let mut config = Config::default();
    config.flink.sql_dir = Some(sql.path().to_owned());
    config.flink.shutdown_timeout = Duration::from_millis(100);
    config.policy.cooldown = Duration::ZERO;
    let launcher = FakeLauncher::new();
    launcher.set_start_delay(Duration::from_secs(3_600));
    let metrics = Arc::new(Metrics::new());
    metrics.job_started("faculty");
    let health = Arc::new(Health::new(Duration::from_secs(30), Duration::from_secs(90)));
    let run_loop = launcher_double::run_loop_over(&launcher, config, metrics.clone(), health.clone())
        .with_leadership(leadership.clone());
    let mut tables = run_loop.subscribe();
    let (control, control_rx) = mpsc::channel(8);
    let state = ServerState {
        metrics,
        health: health.clone(),
        tables: run_loop.subscribe(),
        control,
        reload: None,
        token: token.map(Secret::new),
        allowed_hosts: Arc::from([]),
        max_body_bytes: 4096,
        unseen: Arc::new(run_loop.unseen_statuses()),
        leadership,
    };
    let (events, observations) = mpsc::channel(8);
    let shutdown = CancellationToken::new();
    tokio::spawn(run_loop.run(observations, control_rx, shutdown.clone()));
    events
        .send(WatchEvent::Activity(TableActivity {
            table: "faculty".to_owned(),
            topic: "university-server.public.faculty".to_owned(),
            partition: 0,
            records: 1,
            ops: BTreeMap::new(),
            unknown_ops: 0,
            newest_ts_ms: None,
            observed_at_ms: 0,
            fields: None,
        }))
        .await
        .expect("the loop runs");
    events
        .send(WatchEvent::Lag {
            table: "program".to_owned(),
            lag: 0,
        })
        .await
        .expect("the loop runs");
    tokio::time::timeout(
        Duration::from_secs(5),
        tables.wait_for(|t| t.contains_key("faculty") && t.contains_key("program")),
    )
    .await
    .expect("the loop saw both tables")
    .expect("the loop runs");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let limits = http::Limits::from_config(&Config::default().server);
    let server = tokio::spawn(http::serve(listener, state, limits, shutdown.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    Harness {
        base,
        http,
        health,
        launcher,
        shutdown,
        server,
        _events: events,
        _sql: sql,
    }
}

impl Harness {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("POST");
        let code = r.status().as_u16();
        (code, r.json().await.expect("JSON body"))
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let h = start(None).await;
    assert_eq!(h.get("/healthz").await.0, 200);
    let (code, body) = h.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(json(&body)["reason"], "kafka: not contacted yet");
    h.health.kafka_ok();
    h.health.flink_ok();
    let (code, body) = h.get("/readyz").await;
    assert_eq!((code, json(&body)["ready"].clone()), (200, Value::Bool(true)));
    h.health.kafka_failed("broker 127.0.0.1:9 unreachable");
    let (code, body) = h.get("/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(json(&body)["reason"], "kafka: broker 127.0.0.1:9 unreachable");

    let r = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let content_type = r.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = r.text().await.expect("body");
    assert!(
        text.contains("cdc_job_starts_total{table=\"faculty\",result=\"ok\"} 1"),
        "{text}"
    );
    h.shutdown.cancel();
    h.server.await.expect("join").expect("clean shutdown");
}

#[tokio::test]
async fn tables_are_listed_and_unknown_ones_are_404() {
    let h = start(None).await;
    let (code, body) = h.get("/tables").await;
    assert_eq!(code, 200);
    let names: Vec<String> = json(&body)
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["table"].as_str().expect("table").to_owned())
        .collect();
    assert_eq!(names, ["faculty", "program"]);
    let (code, body) = h.get("/tables/faculty").await;
    assert_eq!(code, 200);
    assert_eq!(json(&body)["state"], "starting");
    assert_eq!(json(&body)["generation"], 1);
    let (code, body) = h.get("/tables/nope").await;
    assert_eq!(code, 404);
    assert_eq!(
        json(&body),
        serde_json::json!({"error_code": 404, "message": "unknown table: nope"})
    );
}

#[tokio::test]
async fn control_commands_reach_the_run_loop() {
    let h = start(None).await;
    let (code, body) = h.post("/tables/faculty/trigger", None).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        (body["table"].clone(), body["state"].clone()),
        ("faculty".into(), "starting".into())
    );
    let (code, body) = h.post("/tables/faculty/pause", None).await;
    assert_eq!((code, body["paused"].clone()), (202, Value::Bool(true)), "{body}");
    let (code, body) = h.post("/tables/faculty/resume", None).await;
    assert_eq!((code, body["paused"].clone()), (202, Value::Bool(false)), "{body}");
    // The job is still starting: the stop is carried out once it runs.
    let (code, body) = h.post("/tables/faculty/stop", None).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["next"]["action"], "stop", "{body}");
    assert_eq!(body["next"]["waiting_for"], "not_running", "{body}");
    // A stop of a table without a job is accepted and changes nothing.
    let (code, body) = h.post("/tables/program/stop", None).await;
    assert_eq!((code, body["state"].clone()), (202, Value::from("idle")), "{body}");
    assert!(h.launcher.stops().is_empty());
    let (code, body) = h.post("/tables/nope/trigger", None).await;
    assert_eq!(
        (code, body["message"].clone()),
        (404, Value::from("unknown table: nope"))
    );
    let (code, body) = h.post("/tables/faculty/explode", None).await;
    assert_eq!(code, 404);
    assert!(body["message"].as_str().expect("message").contains("unknown action"));
}

#[tokio::test]
async fn post_needs_the_bearer_token_when_one_is_set() {
    let h = start(Some("s3cret")).await;
    let (code, body) = h.post("/tables/program/trigger", None).await;
    assert_eq!(code, 401);
    assert_eq!(body["error_code"], 401);
    let (code, _) = h.post("/tables/program/trigger", Some("wrong")).await;
    assert_eq!(code, 401);
    let (_, program) = h.get("/tables/program").await;
    assert_eq!(
        json(&program)["state"],
        "idle",
        "rejected requests never reach the run loop"
    );
    let (code, body) = h.post("/tables/program/trigger", Some("s3cret")).await;
    assert_eq!((code, body["state"].clone()), (202, Value::from("starting")), "{body}");
    let started = || h.launcher.starts().iter().any(|(table, _)| table == "program");
    for _ in 0..500 {
        if started() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started(), "{:?}", h.launcher.calls());
    // Reads stay open: probes and dashboards carry no token.
    assert_eq!(h.get("/tables").await.0, 200);
}

#[tokio::test]
async fn bad_paths_methods_and_bodies_get_clean_4xx() {
    let h = start(None).await;
    let (code, body) = h.get("/nope").await;
    assert_eq!((code, json(&body)["error_code"].clone()), (404, Value::from(404)));
    let r = h
        .http
        .delete(format!("{}/tables", h.base))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.expect("JSON")["error_code"], 405);
    let r = h
        .http
        .get(format!("{}/tables/faculty/trigger", h.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 405);
    let r = h
        .http
        .post(format!("{}/tables/faculty/trigger", h.base))
        .body(vec![b'x'; 100_000])
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.json::<Value>().await.expect("JSON")["error_code"], 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_not_ready_names_the_leader_refuses_commands_and_says_its_role() {
    let (leadership, lease) = Leadership::controlled("pod-a");
    lease.stand_by(Some("pod-b".to_owned()));
    let h = start_as(Some("s3cret"), leadership).await;
    h.health.kafka_ok();
    h.health.flink_ok();

    let (code, body) = h.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    let body = json(&body);
    assert_eq!(
        (&body["role"], &body["leader"]),
        (&Value::from("standby"), &Value::from("pod-b"))
    );
    assert_eq!(body["reason"], "standby: pod-b leads");

    let r = h
        .http
        .get(format!("{}/tables", h.base))
        .send()
        .await
        .expect("GET /tables");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["cdc-role"], "standby");
    assert_eq!(r.headers()["cdc-leader"], "pod-b");
    let tables = json(&r.text().await.expect("body"));
    let tables = tables.as_array().expect("still an array");
    // What the standby sees: faculty's change, program's lag; no job, and its role on every table.
    assert_eq!(tables.len(), 2, "{tables:?}");
    assert!(
        tables.iter().all(|t| t["role"] == "standby" && t["job_id"].is_null()),
        "{tables:?}"
    );
    assert!(tables[0]["last_record_at"].is_u64(), "{tables:?}");

    for action in ["trigger", "pause", "resume", "stop"] {
        let (code, body) = h.post(&format!("/tables/faculty/{action}"), Some("s3cret")).await;
        assert_eq!(code, 503, "{action}: {body}");
        assert_eq!(body["leader"], "pod-b", "{body}");
        assert_eq!(body["error_code"], 503, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("standby")),
            "{body}"
        );
    }
    // The token is still checked first: a standby tells nothing to a caller without it.
    assert_eq!(h.post("/tables/faculty/trigger", None).await.0, 401);

    let shown = tokio::process::Command::from(crate::support::sidecar::command(&["status", "--url", &h.base]))
        .env("CDC_SERVER__TOKEN", "s3cret")
        .output()
        .await
        .expect("run status");
    let text = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(text.starts_with("TABLE"), "{text}");
    assert!(text.lines().any(|l| l == "role: standby (leader pod-b)"), "{text}");

    lease.lead_until(tokio::time::Instant::now() + Duration::from_secs(3_600));
    let (code, body) = h.get("/readyz").await;
    assert_eq!(
        (code, json(&body)["role"].clone()),
        (200, Value::from("leader")),
        "{body}"
    );
    let (code, body) = h.get("/tables").await;
    assert_eq!(code, 200);
    assert!(
        json(&body)
            .as_array()
            .expect("array")
            .iter()
            .all(|t| t["role"] == "leader"),
        "{body}"
    );
    assert_eq!(
        h.launcher.calls().first(),
        Some(&launcher_double::Call::List),
        "the take-over lists first"
    );
    let (code, body) = h.post("/tables/program/pause", Some("s3cret")).await;
    assert_eq!(code, 202, "{body}");
    h.shutdown.cancel();
}
