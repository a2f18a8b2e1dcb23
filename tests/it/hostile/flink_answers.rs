//! Issue 24, items 1, 2, 3 and 6: a Flink that redirects, echoes secrets in its errors, or answers too much, and
//! passwords in the configured URLs. A hostile Flink here is a real HTTP/1.1 server on loopback ([`Hostile`]),
//! written by hand so that it can lie about sizes, stream 200 MB without holding it, and record every request;
//! it is thrown at the real client code ([`SqlGatewayLauncher`]) and at the real binary.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_orchestrator::config::Config;
use cdc_orchestrator::flink::{Backoff, FlinkError, LaunchSettings, Launcher, SqlGatewayLauncher};
use cdc_orchestrator::sql::{Credentials, Templates};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream as AsyncTcpStream};

use crate::support;
use crate::support::sidecar::Sidecar;

/// The credentials the statements carry in these tests; none may appear anywhere but in a statement sent to the
/// configured gateway.
const SECRETS: [(&str, &str); 5] = [
    ("POLARIS_CLIENT_ID", "hostile-client-id-8841"),
    ("POLARIS_CLIENT_SECRET", "hostile-client-secret-8842"),
    ("AWS_ACCESS_KEY_ID", "hostile-access-key-8843"),
    ("AWS_SECRET_ACCESS_KEY", "hostile-secret-key-8844"),
    ("SINK_JDBC_PASSWORD", "hostile-jdbc-password-8845"),
];

/// The size of the job list a hostile JobManager answers: 200 MB.
const HUGE: u64 = 200 * 1000 * 1000;

fn assert_no_secret(what: &str, text: &str) {
    for (variable, secret) in SECRETS {
        assert!(!text.contains(secret), "{variable} leaked into {what}:\n{text}");
    }
}

fn credentials() -> Credentials {
    Credentials::from_lookup(|name| SECRETS.iter().find(|(v, _)| *v == name).map(|(_, s)| (*s).to_owned()))
}

// The hostile server.

/// One request as the server read it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// What the server answers to one request.
enum Reply {
    /// A JSON body with this status.
    Json(u16, String),
    /// A redirect with this status to this `Location`.
    Redirect(u16, String),
    /// A job list of [`HUGE`] bytes, generated as it is written: with a `Content-Length`, or chunked.
    HugeJobList { chunked: bool },
}

type Answer = dyn Fn(&Request) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on loopback, one request per connection, on a thread and runtime of its own (so that
/// tests can block while it serves). It records every request and counts the body bytes it wrote.
struct Hostile {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    /// Body bytes written so far, over all answers (a write the client refused is not counted).
    written: Arc<AtomicU64>,
    /// Answers finished, written whole or cut off by the client.
    answered: Arc<AtomicUsize>,
}

impl Hostile {
    fn start(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Hostile {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let server = Hostile {
            addr,
            requests: Arc::default(),
            written: Arc::default(),
            answered: Arc::default(),
        };
        let (requests, written, answered) = (server.requests.clone(), server.written.clone(), server.answered.clone());
        let answer: Arc<Answer> = Arc::new(answer);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("listener");
                while let Ok((stream, _)) = listener.accept().await {
                    let (answer, requests, written, answered) =
                        (answer.clone(), requests.clone(), written.clone(), answered.clone());
                    tokio::spawn(async move {
                        if let Some(request) = read_request(&stream).await {
                            requests.lock().expect("lock").push(request.clone());
                            let reply = answer(&request);
                            let _ = write_reply(stream, reply, &written).await;
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                    });
                }
            });
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Reads a request head (at most 64 KiB) and its `Content-Length` body.
async fn read_request(stream: &AsyncTcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        stream.readable().await.ok()?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut line = head.lines().next()?.split(' ');
    let (method, path) = (line.next()?.to_owned(), line.next()?.to_owned());
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        stream.readable().await.ok()?;
        let mut chunk = [0u8; 4096];
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
    Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn write_reply(mut stream: AsyncTcpStream, reply: Reply, written: &AtomicU64) -> std::io::Result<()> {
    let reason = |status: u16| match status {
        200 => "OK",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    match reply {
        Reply::Json(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reason(status),
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            written.fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Reply::Redirect(status, location) => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                reason(status)
            );
            stream.write_all(head.as_bytes()).await?;
        }
        Reply::HugeJobList { chunked } => {
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_owned()
            } else {
                format!("Content-Length: {HUGE}")
            };
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let mut rows = HugeJobList::new();
            while let Some(piece) = rows.next_piece() {
                if chunked {
                    stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
                    stream.write_all(&piece).await?;
                    stream.write_all(b"\r\n").await?;
                } else {
                    stream.write_all(&piece).await?;
                }
                written.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
            if chunked {
                stream.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
    stream.shutdown().await
}

/// `{"jobs":[...]}` of exactly [`HUGE`] bytes, valid JSON that decodes (so a client that reads it whole gets a
/// job list, not an error), made 64 KiB at a time as it is written.
struct HugeJobList {
    left: u64,
    next_job: u64,
    started: bool,
}

impl HugeJobList {
    const HEAD: &'static [u8] = b"{\"jobs\":[";
    const TAIL: &'static [u8] = b"]}";

    fn new() -> HugeJobList {
        HugeJobList {
            left: HUGE,
            next_job: 0,
            started: false,
        }
    }

    /// One job row, always the same length; each but the first is preceded by a comma.
    fn row(n: u64) -> String {
        format!(
            "{{\"jid\":\"{n:032x}\",\"name\":\"cdc-t{n:010}\",\"state\":\"FINISHED\",\"start-time\":1733500000000,\
             \"end-time\":1733500001000,\"duration\":1000,\"last-modification\":1733500001000,\"tasks\":{{\
             \"running\":0,\"canceling\":0,\"canceled\":0,\"total\":2,\"created\":0,\"scheduled\":0,\"deploying\":0,\
             \"reconciling\":0,\"finished\":2,\"initializing\":0,\"failed\":0}},\"pending-operators\":0}}"
        )
    }

    fn next_piece(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let mut piece = Vec::with_capacity(70 * 1024);
        if !self.started {
            piece.extend_from_slice(Self::HEAD);
            self.started = true;
        }
        let tail = Self::TAIL.len() as u64;
        while piece.len() < 64 * 1024 {
            let left = self.left - piece.len() as u64;
            let separator = if self.next_job == 0 { "" } else { "," };
            let row = format!("{separator}{}", Self::row(self.next_job));
            if left >= row.len() as u64 + tail + 1 + row.len() as u64 {
                piece.extend_from_slice(row.as_bytes());
                self.next_job += 1;
            } else {
                // The last row, padded with white space to the exact size.
                piece.extend_from_slice(row.as_bytes());
                let pad = left - row.len() as u64 - tail;
                piece.extend(std::iter::repeat_n(b' ', pad as usize));
                piece.extend_from_slice(Self::TAIL);
                break;
            }
        }
        self.left -= piece.len() as u64;
        Some(piece)
    }
}

/// The answers of a gateway and JobManager that work, on one server: sessions open, statements finish with no
/// rows, the job list is empty and no job exists. `statement` decides the answer to a statement.
fn flink_api(request: &Request, statement: impl Fn(&str) -> Option<Reply>) -> Reply {
    let path = request.path.split('?').next().unwrap_or_default();
    let json = |s: &str| Reply::Json(200, s.to_owned());
    match (request.method.as_str(), path) {
        ("GET", "/jobs/overview") => json(r#"{"jobs":[]}"#),
        ("GET", p) if p.starts_with("/jobs/") => Reply::Json(404, r#"{"errors":["Job not found."]}"#.to_owned()),
        ("GET", "/v1/api_versions") => json(r#"{"versions":["V1","V2"]}"#),
        ("POST", "/v1/sessions") => json(r#"{"sessionHandle":"s1"}"#),
        ("POST", "/v1/sessions/s1/statements") => {
            let text = serde_json::from_str::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|v| v["statement"].as_str().map(str::to_owned))
                .unwrap_or_default();
            statement(&text).unwrap_or_else(|| json(r#"{"operationHandle":"op1"}"#))
        }
        ("GET", p) if p.ends_with("/status") => json(r#"{"status":"FINISHED"}"#),
        ("GET", p) if p.contains("/result/") => {
            json(r#"{"resultType":"EOS","results":{"columns":[],"data":[]},"jobID":null}"#)
        }
        _ => json("{}"),
    }
}

/// The rendered statements of table `faculty`, credentials and all.
fn faculty_statements() -> Vec<String> {
    let templates = Templates::load(&Config::default()).expect("built-in templates");
    let statements = templates.render("faculty", &credentials()).expect("render faculty");
    assert!(
        statements.iter().any(|s| s.contains("hostile-secret-key-8844")),
        "the statements carry the S3 secret: {statements:#?}"
    );
    statements
}

fn launcher(gateway: &str, jobmanager: &str) -> SqlGatewayLauncher {
    let settings = LaunchSettings {
        savepoint_dir: "s3://warehouse/savepoints".to_owned(),
        checkpoint_interval: Duration::from_secs(10),
        start_timeout: Duration::from_secs(5),
        stop_timeout: Duration::from_secs(5),
        poll: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    };
    SqlGatewayLauncher::new(gateway, jobmanager, Duration::from_secs(30), settings)
        .expect("launcher")
        .with_credentials(credentials())
}

// Item 1: no redirect is followed.

#[tokio::test]
async fn a_redirect_is_refused_by_both_clients_and_its_target_hears_nothing() {
    let target = Hostile::start(|_| Reply::Json(200, "{}".to_owned()));
    let location = format!(
        "http://thief:stolen-pw@{}/v1/sessions/s1/statements?token=stolen-token",
        target.addr
    );
    for status in [307, 308, 302] {
        // The gateway redirects the statements, the first of which carries no secret, so every statement would
        // have been sent to the target one by one.
        let redirected = location.clone();
        let gateway = Hostile::start(move |r| flink_api(r, |_| Some(Reply::Redirect(status, redirected.clone()))));
        let l = launcher(&gateway.url(), &gateway.url());
        let err = l
            .start("faculty", 1, &faculty_statements())
            .await
            .expect_err("a redirected statement must fail the start");
        let text = err.to_string();
        assert!(matches!(err, FlinkError::Redirect { .. }), "{status}: {err:?}");
        let expected = format!(
            "POST /v1/sessions/s1/statements: Flink answered {status} (a redirect to http://{}/v1/sessions/s1/statements); redirects are not followed",
            target.addr
        );
        assert_eq!(text, expected, "{status}");
        assert_no_secret("the error", &text);

        // A JobManager's redirect is refused the same way.
        let redirected = format!("http://thief:stolen-pw@{}/jobs/overview", target.addr);
        let jobmanager = Hostile::start(move |r| match r.path.as_str() {
            "/jobs/overview" => Reply::Redirect(status, redirected.clone()),
            _ => flink_api(r, |_| None),
        });
        let l = launcher(&gateway.url(), &jobmanager.url());
        let err = l.list_jobs().await.expect_err("a redirected job list must fail");
        assert!(
            err.to_string()
                .contains(&format!("GET /jobs/overview: Flink answered {status}")),
            "{err}"
        );
    }
    assert!(
        target.requests().is_empty(),
        "the redirect target got {:#?}",
        target.requests()
    );
    let everything = format!("{:?}", target.requests());
    assert!(!everything.contains("stolen"), "{everything}");
}

// Item 6: every answer is read with a bound.

#[tokio::test]
async fn a_huge_job_list_is_refused_at_the_limit_sized_or_chunked() {
    for chunked in [false, true] {
        let jobmanager = Hostile::start(move |r| match r.path.as_str() {
            "/jobs/overview" => Reply::HugeJobList { chunked },
            _ => flink_api(r, |_| None),
        });
        let l = launcher(&jobmanager.url(), &jobmanager.url()).with_max_response_bytes(4 * 1024 * 1024);
        let err = l
            .jobmanager()
            .overview()
            .await
            .expect_err("a 200 MB job list must be refused");
        assert_eq!(
            err.to_string(),
            "GET /jobs/overview: answer larger than 4194304 bytes (flink.max_response_bytes); not read",
            "chunked: {chunked}"
        );
        // The client stopped reading: the server could write little more than the limit and the sockets' buffers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while jobmanager.answered() == 0 {
            assert!(Instant::now() < deadline, "the server is still writing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            jobmanager.written() < 64 * 1024 * 1024,
            "chunked: {chunked}: the server wrote {} bytes",
            jobmanager.written()
        );
    }
}

#[tokio::test]
async fn error_answers_are_read_only_in_part() {
    // A 500 whose body is a 200 MB job list (any large body will do): the status is what matters.
    let jobmanager = Hostile::start(|r| match r.path.as_str() {
        "/jobs/overview" => Reply::Json(500, format!("{{\"errors\":[\"{}\"]}}", "x".repeat(1024 * 1024))),
        _ => flink_api(r, |_| None),
    });
    let l = launcher(&jobmanager.url(), &jobmanager.url());
    let err = l.jobmanager().overview().await.expect_err("a 500");
    let text = err.to_string();
    assert!(
        text.starts_with("GET /jobs/overview: HTTP 500: "),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(text.len() < 1000, "the error holds {} bytes of the body", text.len());
}

// The real binary.

/// A command of the real binary with none of the developer's `CDC_*` or credential variables.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = support::sidecar::command(args);
    cmd.envs(env.iter().copied());
    cmd
}

/// Starts `cdc-orchestrator run` with the sql-gateway launcher, its credentials and `env` on top.
fn start_sidecar(env: &[(&str, &str)]) -> Sidecar {
    Sidecar::builder()
        .quick_without_kafka()
        .envs([
            ("CDC_FLINK__LAUNCHER", "sql-gateway"),
            ("CDC_FLINK__REQUEST_TIMEOUT", "10s"),
            ("CDC_POLICY__COOLDOWN", "1s"),
        ])
        .envs(SECRETS)
        .envs(env.iter().copied())
        .start()
}

/// Everything the sidecar shows: its log, `/readyz`, `/tables` and `/metrics`.
fn everything(sidecar: &Sidecar) -> String {
    let mut all = sidecar.log_text();
    for path in ["/readyz", "/tables", "/metrics"] {
        let (_, body) = sidecar.get(path);
        all.push_str(&format!("\n--- {path}\n{body}"));
    }
    all
}

#[test]
fn the_sidecar_follows_no_redirect_of_the_jobmanager() {
    let target = Hostile::start(|_| Reply::Json(200, r#"{"jobs":[]}"#.to_owned()));
    let location = format!("http://thief:stolen-pw@{}/jobs/overview", target.addr);
    let flink = Hostile::start(move |r| match r.path.as_str() {
        "/jobs/overview" => Reply::Redirect(307, location.clone()),
        _ => flink_api(r, |_| None),
    });
    let url = flink.url();
    let sidecar = start_sidecar(&[
        ("CDC_FLINK__SQL_GATEWAY_URL", url.as_str()),
        ("CDC_FLINK__JOBMANAGER_URL", url.as_str()),
        ("CDC_FLINK__RECONCILE_INTERVAL", "200ms"),
    ]);
    sidecar.wait_for_log("redirects are not followed", Duration::from_secs(20));
    assert!(target.requests().is_empty(), "{:#?}", target.requests());
    let everything = everything(&sidecar);
    assert!(!everything.contains("stolen-pw"), "{everything}");
}

// Item 2: a Flink error that echoes a statement.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_error_echoing_the_secrets_reaches_no_log_and_no_answer() {
    // As Flink's REST handlers answer an exception: the whole statement is in the trace.
    let flink = Hostile::start(|r| {
        flink_api(r, |statement| {
            statement.contains("hostile-").then(|| {
                let trace = format!(
                    "<Exception on server side:\norg.apache.flink.table.api.SqlParserException: SQL parse failed. \
                     Encountered \"{statement}\"\n\tat org.apache.flink.Foo.bar(Foo.java:1)\nCaused by: \
                     java.lang.IllegalStateException: cannot run {}\n\nEnd of exception on server side>",
                    statement.replace('\n', " ")
                );
                Reply::Json(
                    500,
                    serde_json::json!({ "errors": ["Internal server error.", trace] }).to_string(),
                )
            })
        })
    });
    let broker = support::Broker::start();
    let (url, bootstrap) = (flink.url(), broker.bootstrap());
    let sidecar = start_sidecar(&[
        ("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str()),
        ("CDC_FLINK__SQL_GATEWAY_URL", url.as_str()),
        ("CDC_FLINK__JOBMANAGER_URL", url.as_str()),
        ("CDC_FLINK__START_TIMEOUT", "3s"),
        ("CDC_LOG_LEVEL", "debug"),
    ]);
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    support::produce_change(&broker, "faculty").await;
    sidecar.wait_for_log("failed to start job for: faculty", Duration::from_secs(30));
    assert!(
        flink.requests().iter().any(|r| r.body.contains("hostile-")),
        "the secrets did reach the configured gateway"
    );
    assert!(
        sidecar.log.count("start attempt failed; retrying") > 0,
        "{}",
        sidecar.log.text()
    );
    let everything = everything(&sidecar);
    assert_no_secret("the log, /readyz, /tables or /metrics", &everything);
    assert!(everything.contains("<redacted>"), "{everything}");
}

// Item 3: passwords in URLs.

const URL_KEYS: [&str; 5] = [
    "CDC_FLINK__SQL_GATEWAY_URL",
    "CDC_FLINK__JOBMANAGER_URL",
    "CDC_FLINK__WEB_UI_URL",
    "CDC_ICEBERG__CATALOG_URI",
    "CDC_ICEBERG__S3_ENDPOINT",
];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn check_shows_no_password_of_any_url() {
    let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
    env.push(("CDC_FLINK__LAUNCHER", "sql-gateway"));
    let urls: Vec<String> = (0..URL_KEYS.len())
        .map(|i| format!("http://user{i}:url-password-{i}@host{i}:8081/path"))
        .collect();
    env.extend(URL_KEYS.iter().copied().zip(urls.iter().map(String::as_str)));
    let out = command(&["check"], &env).output().expect("check");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(!shown.contains("url-password"), "{shown}");
    for i in 0..URL_KEYS.len() {
        assert!(
            shown.contains(&format!("\"http://user{i}:<redacted>@host{i}:8081/path\"")),
            "{shown}"
        );
    }
    // An invalid URL (port out of range, a '/' in the password) is named in the error, its password is not.
    for key in URL_KEYS {
        let env = [
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            (key, "http://user:url-pass/word@host:99999"),
        ];
        let out = command(&["check"], &env).output().expect("check");
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(shown.contains("user:<redacted>@host:99999"), "{shown}");
        assert!(!shown.contains("url-pass"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_links_and_logs_show_no_password_of_the_jobmanager_url() {
    let flink = support::fake_flink::FakeFlink::start().await;
    let job = "0123456789abcdef0123456789abcdef";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    flink.add_job(job, "cdc-faculty", "RUNNING", now);
    let with_password = |url: &str| url.replacen("http://", "http://admin:jm-password-77@", 1);
    let (gateway, jobmanager) = (with_password(&flink.gateway_url), with_password(&flink.jobmanager_url));
    let sidecar = start_sidecar(&[
        ("CDC_FLINK__SQL_GATEWAY_URL", gateway.as_str()),
        ("CDC_FLINK__JOBMANAGER_URL", jobmanager.as_str()),
        ("CDC_FLINK__RECONCILE_INTERVAL", "200ms"),
    ]);
    let page = format!("/#/job/running/{job}/overview");
    sidecar.wait_for("a job link in GET /tables", Duration::from_secs(20), || {
        sidecar.get("/tables").1.contains(&page)
    });
    let (_, tables) = sidecar.get("/tables");
    let link = format!("\"job_url\":\"{}{page}\"", flink.jobmanager_url);
    assert!(tables.contains(&link), "{link} not in {tables}");
    let everything = everything(&sidecar);
    assert!(!everything.contains("jm-password-77"), "{everything}");
    assert!(
        !everything.contains("admin:"),
        "a link carries no userinfo: {everything}"
    );
}

// Item 6 through the binary.

#[test]
fn a_huge_job_list_at_every_reconcile_keeps_the_sidecar_small() {
    let turn = Arc::new(AtomicUsize::new(0));
    let flink = Hostile::start(move |r| match r.path.as_str() {
        // Sized and chunked in turn.
        "/jobs/overview" => Reply::HugeJobList {
            chunked: turn.fetch_add(1, Ordering::SeqCst) % 2 == 1,
        },
        _ => flink_api(r, |_| None),
    });
    let url = flink.url();
    let sidecar = start_sidecar(&[
        ("CDC_FLINK__SQL_GATEWAY_URL", url.as_str()),
        ("CDC_FLINK__JOBMANAGER_URL", url.as_str()),
        ("CDC_FLINK__RECONCILE_INTERVAL", "200ms"),
    ]);
    // The peak is checked all along: a sidecar that reads the lists whole is caught at the first one.
    let small = || {
        let peak = sidecar.peak_rss();
        assert!(
            peak < 100 * 1024 * 1024,
            "peak RSS {} MB after {} job lists of {} MB",
            peak / (1024 * 1024),
            flink.answered(),
            HUGE / 1_000_000
        );
    };
    sidecar.wait_for("four job lists answered", Duration::from_secs(120), || {
        small();
        flink.answered() >= 4
    });
    small();
    sidecar.wait_for_log("flink.max_response_bytes", Duration::from_secs(10));
}
