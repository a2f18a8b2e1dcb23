//! The operator HTTP API over real HTTP on loopback, with a stand-in run loop answering control commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cdc_orchestrator::config::{Config, Secret};
use cdc_orchestrator::http::metrics::Metrics;
use cdc_orchestrator::http::{self, ControlCommand, ControlError, Health, ServerState};
use cdc_orchestrator::policy::{Activity, Input, Millis, Policy, PolicySettings, TableStatus};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A real policy's view of a table that saw one change (so: starting) or only a lag report (so: idle).
fn status(table: &str, changed: bool) -> TableStatus {
    let mut policy = Policy::new(PolicySettings::from_config(&Config::default(), 7));
    let input = if changed {
        Input::Activity(Activity {
            table: table.to_owned(),
            records: 1,
            ..Activity::default()
        })
    } else {
        Input::Lag {
            table: table.to_owned(),
            lag: 0,
        }
    };
    policy.handle(Millis(1_000), input);
    policy.status(table).expect("the policy knows the table")
}

struct Harness {
    base: String,
    http: reqwest::Client,
    health: Arc<Health>,
    commands: mpsc::UnboundedReceiver<(String, ControlCommand)>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(token: Option<&str>) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    metrics.record_start("faculty", true);
    let health = Arc::new(Health::new(Duration::from_secs(30), Duration::from_secs(90)));
    let mut tables = BTreeMap::new();
    tables.insert("faculty".to_owned(), status("faculty", true));
    tables.insert("program".to_owned(), status("program", false));
    let (_publish, snapshot) = watch::channel(Arc::new(tables));
    let (control, mut requests) = mpsc::channel::<http::ControlRequest>(8);
    let (seen_tx, commands) = mpsc::unbounded_channel();
    // Stand-in for the run loop: knows two tables, reports each command it accepts.
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let answer = match request.table.as_str() {
                "faculty" | "program" => {
                    let _ = seen_tx.send((request.table.clone(), request.command));
                    if request.command == ControlCommand::Stop && request.table == "program" {
                        Err(ControlError::Conflict("program has no running job".to_owned()))
                    } else {
                        Ok(status(&request.table, true))
                    }
                }
                other => Err(ControlError::UnknownTable(other.to_owned())),
            };
            let _ = request.reply.send(answer);
        }
    });
    let state = ServerState {
        metrics,
        health: health.clone(),
        tables: snapshot,
        control,
        token: token.map(Secret::new),
        max_body_bytes: 4096,
        unseen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
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
        commands,
        shutdown,
        server,
    }
}

impl Harness {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base));
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
    let mut h = start(None).await;
    for (action, command) in [
        ("trigger", ControlCommand::Trigger),
        ("pause", ControlCommand::Pause),
        ("resume", ControlCommand::Resume),
        ("stop", ControlCommand::Stop),
    ] {
        let (code, body) = h.post(&format!("/tables/faculty/{action}"), None).await;
        assert_eq!(code, 202, "{action}: {body}");
        assert_eq!(body["table"], "faculty");
        assert_eq!(h.commands.recv().await, Some(("faculty".to_owned(), command)));
    }
    let (code, body) = h.post("/tables/program/stop", None).await;
    assert_eq!((code, body["error_code"].clone()), (409, Value::from(409)));
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
    let mut h = start(Some("s3cret")).await;
    let (code, body) = h.post("/tables/faculty/trigger", None).await;
    assert_eq!(code, 401);
    assert_eq!(body["error_code"], 401);
    let (code, _) = h.post("/tables/faculty/trigger", Some("wrong")).await;
    assert_eq!(code, 401);
    assert!(
        h.commands.try_recv().is_err(),
        "rejected requests never reach the run loop"
    );
    let (code, _) = h.post("/tables/faculty/trigger", Some("s3cret")).await;
    assert_eq!(code, 202);
    assert_eq!(
        h.commands.recv().await,
        Some(("faculty".to_owned(), ControlCommand::Trigger))
    );
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
