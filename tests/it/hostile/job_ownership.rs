//! Issue 24, items 7 and 9 (job states): Flink's job list never decides what the sidecar manages, and a job state
//! Flink reports reaches no metric label, answer or log line with its control bytes.
//!
//! A small JobManager of its own (axum on loopback) serves whatever job list a test gives it, answers the stop and
//! cancel calls like Flink, and records every request, so a test can say what the sidecar asked of which job. The
//! real binary runs against it with the `sql-gateway` launcher.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use crate::support::sidecar::Sidecar;

/// The log line that reports a job of an unmanaged table.
const UNMANAGED: &str = "job of a table this sidecar does not manage";

/// A job as the fake JobManager lists it.
#[derive(Debug, Clone)]
struct Job {
    id: String,
    name: String,
    state: String,
}

/// A JobManager that lists `jobs`, records every request (method and path with query), refuses
/// stop-with-savepoint (so a stop goes on to cancel) and cancels a job when asked.
#[derive(Clone)]
struct FakeJobManager {
    jobs: Arc<Mutex<Vec<Job>>>,
    requests: Arc<Mutex<Vec<(Method, String)>>>,
    url: String,
}

impl FakeJobManager {
    async fn start(jobs: Vec<Job>) -> FakeJobManager {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let jm = FakeJobManager {
            jobs: Arc::new(Mutex::new(jobs)),
            requests: Arc::default(),
            url,
        };
        let router = Router::new()
            .route("/jobs/overview", get(overview))
            .route("/jobs/{jid}", get(detail))
            .route("/jobs/{jid}", patch(cancel))
            .route("/jobs/{jid}/status", get(status))
            .route("/jobs/{jid}/stop", post(refuse))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(jm.clone(), record))
            .with_state(jm.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        jm
    }

    fn requests(&self) -> Vec<(Method, String)> {
        self.requests.lock().expect("lock").clone()
    }

    fn listings(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(_, path)| path == "/jobs/overview")
            .count()
    }

    fn job(&self, jid: &str) -> Option<Job> {
        self.jobs.lock().expect("lock").iter().find(|j| j.id == jid).cloned()
    }

    /// Waits until `done` holds of the requests so far.
    fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&[(Method, String)]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.requests()) {
            assert!(
                Instant::now() < deadline,
                "{what} within {timeout:?}; requests: {:?}",
                {
                    let r = self.requests();
                    r[r.len().saturating_sub(20)..].to_vec()
                }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn record(
    State(jm): State<FakeJobManager>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    jm.requests.lock().expect("lock").push((request.method().clone(), path));
    next.run(request).await
}

async fn overview(State(jm): State<FakeJobManager>) -> Response {
    let jobs = jm.jobs.lock().expect("lock").clone();
    let rows: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(n, j)| json!({"jid": j.id, "name": j.name, "state": j.state, "start-time": n, "end-time": -1}))
        .collect();
    axum::Json(json!({ "jobs": rows })).into_response()
}

fn flink_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "errors": [message] }))).into_response()
}

async fn detail(State(jm): State<FakeJobManager>, Path(jid): Path<String>) -> Response {
    match jm.job(&jid) {
        Some(j) => axum::Json(json!({"jid": j.id, "name": j.name, "state": j.state, "start-time": 1, "vertices": []}))
            .into_response(),
        None => flink_error(StatusCode::NOT_FOUND, "Job could not be found."),
    }
}

async fn status(State(jm): State<FakeJobManager>, Path(jid): Path<String>) -> Response {
    match jm.job(&jid) {
        Some(j) => axum::Json(json!({ "status": j.state })).into_response(),
        None => flink_error(StatusCode::NOT_FOUND, "Job could not be found."),
    }
}

async fn refuse() -> Response {
    flink_error(StatusCode::INTERNAL_SERVER_ERROR, "savepoints are not configured")
}

async fn cancel(State(jm): State<FakeJobManager>, Path(jid): Path<String>) -> Response {
    let mut jobs = jm.jobs.lock().expect("lock");
    match jobs.iter_mut().find(|j| j.id == jid) {
        Some(j) => {
            j.state = "CANCELED".to_owned();
            (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
        }
        None => flink_error(StatusCode::NOT_FOUND, "Job could not be found."),
    }
}

async fn not_found(uri: Uri) -> Response {
    flink_error(StatusCode::NOT_FOUND, &format!("Not found: {uri}"))
}

fn job_id(n: u64) -> String {
    format!("{n:032x}")
}

/// Starts `cdc-orchestrator run` with the `sql-gateway` launcher pointed at `jm`, `env` on top.
fn start_sidecar(jm: &FakeJobManager, env: &[(&str, &str)]) -> Sidecar {
    Sidecar::builder()
        .env("CDC_LOG_LEVEL", "info")
        // Nothing answers there: no change is ever seen, so a job the sidecar holds is idle from the start.
        .dead_broker()
        .env("CDC_KAFKA__REQUEST_TIMEOUT", "2s")
        .flink(&jm.url, &jm.url)
        .envs([
            ("CDC_FLINK__REQUEST_TIMEOUT", "5s"),
            ("CDC_FLINK__STOP_TIMEOUT", "2s"),
            ("CDC_FLINK__RECONCILE_INTERVAL", "300ms"),
            ("CDC_POLICY__COOLDOWN", "500ms"),
        ])
        .envs(env.iter().copied())
        .sql_credentials()
        .start()
}

/// `GET path`: the status code and the body's bytes, as sent.
fn get_page(sidecar: &Sidecar, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(sidecar.addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..head_end]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "answers here are sized: {head}"
    );
    (code, answer[head_end + 4..].to_vec())
}

fn tables(sidecar: &Sidecar) -> Vec<Value> {
    let (code, body) = get_page(sidecar, "/tables");
    assert_eq!(code, 200);
    serde_json::from_slice::<Vec<Value>>(&body).expect("a JSON array")
}

/// Waits until `GET /tables` shows `table` with a job.
fn wait_for_job_of(sidecar: &Sidecar, table: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let tables = tables(sidecar);
        if let Some(t) = tables.iter().find(|t| t["table"] == table && !t["job_id"].is_null()) {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{table} has no job within {timeout:?}; log:\n{}",
            sidecar.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tables with a built-in SQL template: all this sidecar manages in these tests.
fn templated() -> BTreeSet<String> {
    let config = cdc_orchestrator::config::Config::default();
    cdc_orchestrator::sql::known_tables(&config)
        .expect("built-in templates")
        .into_iter()
        .collect()
}

/// The page's samples, through the reference parser (prometheus_client's OpenMetrics parser, installed by
/// scripts/install-tools.sh), as `name{labels as sorted JSON}` to value.
fn parse_metrics(page: &[u8]) -> serde_json::Map<String, Value> {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), page).expect("write metrics");
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#;
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/py");
    let parsed = Command::new("python3")
        .args(["-c", script, file.path().to_str().expect("utf-8 path")])
        .env("PYTHONPATH", python)
        .output()
        .expect("python3");
    assert!(
        parsed.status.success(),
        "the reference parser rejects /metrics: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(page)
    );
    serde_json::from_slice(&parsed.stdout).expect("the parser's JSON")
}

/// The raw control bytes in `bytes`, line feeds aside.
fn control_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_listed_jobs_make_no_table_and_a_foreign_cdc_job_is_never_stopped() {
    // 10,000 jobs: 5,000 `cdc-t<N>`, 4,998 of other programs, `cdc-orphan` (a valid table name with no SQL
    // template) and `cdc-faculty` (a managed table) for contrast, all running.
    let mut jobs: Vec<Job> = (0..5_000)
        .map(|n| Job {
            id: job_id(n + 1),
            name: format!("cdc-t{n}"),
            state: "RUNNING".to_owned(),
        })
        .collect();
    jobs.extend((0..4_998).map(|n| Job {
        id: job_id(100_000 + n),
        name: format!("insert-into_default_catalog.default_database.sink_{n}"),
        state: "RUNNING".to_owned(),
    }));
    let (orphan, faculty) = (job_id(0xdead_0000_0000), job_id(0xfac_0000_0000));
    for (id, name) in [(&orphan, "cdc-orphan"), (&faculty, "cdc-faculty")] {
        jobs.push(Job {
            id: id.clone(),
            name: name.to_owned(),
            state: "RUNNING".to_owned(),
        });
    }
    assert_eq!(jobs.len(), 10_000);
    let managed = templated();
    assert!(managed.contains("faculty") && !managed.contains("orphan") && !managed.contains("t0"));
    let jm = FakeJobManager::start(jobs).await;
    let sidecar = start_sidecar(&jm, &[("CDC_POLICY__IDLE_TIMEOUT", "1s")]);

    // The managed job is adopted and, idle, stopped: stop-with-savepoint refused, then cancelled.
    let cancel = format!("/jobs/{faculty}?mode=cancel");
    jm.wait_for("the idle faculty job cancelled", Duration::from_secs(30), |r| {
        r.iter().any(|(m, p)| *m == Method::PATCH && *p == cancel)
    });
    // Two listings later the orphan, listed (and idle) as long as faculty, would have been stopped too; any request
    // about a job other than faculty's settles it sooner. The cluster's `/overview` (TaskManagers and slots) is
    // about no job.
    let foreign = |(_, path): &(Method, String)| {
        !matches!(path.as_str(), "/jobs/overview" | "/overview") && !path.contains(&faculty)
    };
    let seen = jm.listings();
    jm.wait_for("two more listings", Duration::from_secs(10), |r| {
        r.iter().filter(|(_, p)| p == "/jobs/overview").count() >= seen + 2 || r.iter().any(foreign)
    });
    let requests = jm.requests();
    let foreign: Vec<_> = requests.iter().filter(|r| foreign(r)).take(10).collect();
    assert!(
        foreign.is_empty(),
        "the sidecar asked about, stopped or cancelled jobs it does not own: {foreign:?}"
    );
    assert_eq!(
        jm.job(&orphan).map(|j| j.state).as_deref(),
        Some("RUNNING"),
        "the orphan still runs"
    );

    let tables = tables(&sidecar);
    let listed: BTreeSet<String> = tables
        .iter()
        .map(|t| t["table"].as_str().expect("a table name").to_owned())
        .collect();
    assert!(
        listed.is_subset(&managed),
        "GET /tables lists only managed tables, got {} of them: {:?}",
        listed.len(),
        listed.difference(&managed).take(5).collect::<Vec<_>>()
    );
    assert!(listed.contains("faculty"), "{listed:?}");

    let (code, page) = get_page(&sidecar, "/metrics");
    assert_eq!(code, 200);
    let samples = parse_metrics(&page);
    let job_state_tables: BTreeSet<String> = samples
        .keys()
        .filter_map(|k| k.strip_prefix("cdc_job_state{"))
        .map(|labels| {
            let labels: Value = serde_json::from_str(&format!("{{{labels}")).expect("labels");
            labels["table"].as_str().expect("a table label").to_owned()
        })
        .collect();
    assert!(
        job_state_tables.is_subset(&managed),
        "cdc_job_state series for {} tables, some unmanaged: {:?}",
        job_state_tables.len(),
        job_state_tables.difference(&managed).take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        samples.get("cdc_unmanaged_jobs{}").and_then(Value::as_f64),
        Some(5_001.0),
        "5,000 cdc-t<N> and the orphan are reported in one series"
    );

    // Reported once, in a listing after listing.
    let log = sidecar.log.lines();
    let reported: Vec<&String> = log
        .iter()
        .filter(|l| l.contains(UNMANAGED) && l.contains("table=orphan"))
        .collect();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(reported[0].contains(&orphan), "{}", reported[0]);
    assert_eq!(
        log.iter().filter(|l| l.contains(UNMANAGED)).count(),
        5_001,
        "one line per unmanaged live job"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("adopted running job") && !l.contains("table=faculty")),
        "only faculty's job is adopted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_state_with_control_bytes_reaches_no_label_answer_or_log() {
    let (faculty, orphan) = (job_id(0xfac_0000_0000), job_id(0xdead_0000_0000));
    let jm = FakeJobManager::start(vec![
        Job {
            id: faculty.clone(),
            name: "cdc-faculty".to_owned(),
            state: "RUN\u{1b}[31mNING\u{7}\u{0}\r\n\u{9b}2J".to_owned(),
        },
        Job {
            id: orphan.clone(),
            name: "cdc-orphan".to_owned(),
            state: "\u{1b}]0;owned\u{7}".to_owned(),
        },
    ])
    .await;
    let sidecar = start_sidecar(&jm, &[("CDC_POLICY__IDLE_TIMEOUT", "10m")]);
    let table = wait_for_job_of(&sidecar, "faculty", Duration::from_secs(20));
    let (code, page) = get_page(&sidecar, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(control_bytes(&page), b"", "{}", String::from_utf8_lossy(&page));
    let samples = parse_metrics(&page);
    assert_eq!(
        samples
            .get(r#"cdc_job_state{"state": "UNKNOWN", "table": "faculty"}"#)
            .and_then(Value::as_f64),
        Some(1.0),
        "{samples:?}"
    );

    assert_eq!(table["job_state"], "UNKNOWN", "{table}");
    for path in ["/tables", "/tables/faculty"] {
        let (code, body) = get_page(&sidecar, path);
        assert_eq!(code, 200);
        assert_eq!(control_bytes(&body), b"", "{path}: {}", String::from_utf8_lossy(&body));
        let text = String::from_utf8(body).expect("UTF-8");
        assert!(
            !text.contains('\u{9b}') && !text.contains("\\u001b") && !text.contains("\\u0007"),
            "{path}: {text}"
        );
    }
    // The orphan's state is in the log line that reports it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sidecar.log.count(UNMANAGED) == 0 {
        assert!(
            Instant::now() < deadline,
            "orphan never reported: {}",
            sidecar.log.text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }

    for line in sidecar.log.lines() {
        assert_eq!(control_bytes(line.as_bytes()), b"", "{line:?}");
        assert!(!line.contains('\u{9b}'), "{line:?}");
    }
}
