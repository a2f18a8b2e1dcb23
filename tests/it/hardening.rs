//! Hostile environment values, configs, HTTP clients and signals, each thrown at the real binary (issue 14,
//! items 3 to 8): `check`/`render` as subprocesses, `run` as a subprocess with the dry-run launcher, real HTTP on
//! loopback, and a real tansu broker where the watcher matters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;
use support::assert_config_error;
use support::sidecar::Sidecar;

/// A command of the real binary with none of the developer's `CDC_*` or credential variables.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = support::sidecar::command(args);
    cmd.envs(env.iter().copied());
    cmd
}

fn output(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("run cdc-orchestrator")
}

/// `check` of `env` on top of the dry-run launcher, which needs no credentials.
fn check(env: &[(&str, &str)]) -> Output {
    let mut all = vec![("CDC_FLINK__LAUNCHER", "dry-run")];
    all.extend(env);
    output(&["check"], &all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback address nothing listens on (a port that was just free).
fn dead_bootstrap() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

/// Starts `run` with the dry-run launcher and `env` on top of quick test settings; `nofile` runs it under that
/// (soft, hard) open-file limit.
fn start_sidecar(env: &[(&str, &str)], nofile: Option<(u32, u32)>) -> Sidecar {
    let mut sidecar = Sidecar::builder()
        .quick_without_kafka()
        .dry_run()
        .envs([
            ("CDC_FLINK__STARTS_PER_MINUTE", "600"),
            ("CDC_FLINK__START_BURST", "20"),
            ("CDC_POLICY__COOLDOWN", "1s"),
            ("CDC_POLICY__IDLE_TIMEOUT", "30s"),
        ])
        .envs(env.iter().copied());
    if let Some((soft, hard)) = nofile {
        sidecar = sidecar.nofile(soft, hard);
    }
    sidecar.start()
}

/// One HTTP/1.1 request on a fresh connection; the status code and the body.
fn request(sidecar: &Sidecar, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        request.push_str("Content-Length: 0\r\nContent-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    raw_exchange(sidecar.addr(), request.as_bytes(), Duration::from_secs(5))
}

/// Sends `request` on a new connection and reads the answer until the server closes it.
fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> (u16, String) {
    let mut stream = connect_within(addr, timeout).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    stream.set_write_timeout(Some(timeout)).expect("timeout");
    stream.write_all(request).expect("send request");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    support::parse_http_answer(&answer)
}

/// A connection, or the error when none is made within `timeout` (a full accept backlog makes `connect` hang).
fn connect_within(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, timeout)
}

// Item 5: environment values keep their text where the key is a string; the Bearer scheme is case-insensitive.

#[test]
fn env_values_keep_their_text_for_string_keys_and_still_parse_typed_keys() {
    for value in ["007", "0123456789", "+5", "1.50", "[x", "true"] {
        let out = check(&[
            ("CDC_KAFKA__SASL__MECHANISM", "PLAIN"),
            ("CDC_KAFKA__SASL__USERNAME", value),
            ("CDC_KAFKA__SASL__PASSWORD", value),
        ]);
        assert!(out.status.success(), "{value}: {}", text(&out.stderr));
        let printed = text(&out.stdout);
        assert!(printed.contains(&format!("username = {value:?}")), "{value}: {printed}");
    }
    let out = check(&[
        ("CDC_FLINK__MAX_CONCURRENT_JOBS", "8.0"),
        ("CDC_KAFKA__SAMPLE_RECORDS", "007"),
        ("CDC_FLINK__STOP_JOBS_ON_SHUTDOWN", "true"),
        ("CDC_POLICY__COOLDOWN", "5s"),
        ("CDC_POLICY__INCLUDE", "[\"faculty\", \"program\"]"),
        ("CDC_POLICY__EXCLUDE", "room, class"),
        ("CDC_POLICY__TABLES__FACULTY__PAUSED", "true"),
        ("CDC_POLICY__TABLES__FACULTY__OPERATIONS", "d"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for expected in [
        "max_concurrent_jobs = 8\n",
        "sample_records = 7\n",
        "stop_jobs_on_shutdown = true\n",
        "cooldown = \"5s\"\n",
        "\"faculty\",\n    \"program\",",
        "\"room\",\n    \"class\",",
        "operations = [\"d\"]\npaused = true",
    ] {
        assert!(printed.contains(expected), "{expected:?} not in:\n{printed}");
    }
    let out = check(&[("CDC_FLINK__MAX_CONCURRENT_JOBS", "8.5")]);
    assert_config_error(&out, &["flink.max_concurrent_jobs", "8.5"]);
    let out = check(&[("CDC_FLINK__STOP_JOBS_ON_SHUTDOWN", "maybe")]);
    assert_config_error(
        &out,
        &["flink.stop_jobs_on_shutdown", "CDC_FLINK__STOP_JOBS_ON_SHUTDOWN"],
    );
}

#[test]
fn a_token_with_leading_zeros_works_over_http_with_any_case_of_bearer() {
    for token in ["007", "+5", "[x"] {
        let sidecar = start_sidecar(&[("CDC_SERVER__TOKEN", token)], None);
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let (code, body) = request(
                &sidecar,
                "POST",
                "/tables/faculty/pause",
                &[("Authorization", &format!("{scheme} {token}"))],
            );
            assert_eq!(code, 202, "{scheme} {token}: {body}");
        }
        let mangled = token.trim_start_matches(['0', '+', '[']);
        let (code, _) = request(
            &sidecar,
            "POST",
            "/tables/faculty/resume",
            &[("Authorization", &format!("Bearer {mangled}"))],
        );
        assert_eq!(code, 401, "the token is {token:?}, not {mangled:?}");
    }
}

// Item 7: configs that make no sense are refused with one line naming the key.

#[test]
fn nonsense_configs_exit_2_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    let path = file.to_str().expect("utf-8 path");
    let cases: [(&str, &[&str]); 9] = [
        (
            "[policy]\nidle_timeout = \"0s\"\n",
            &["policy.idle_timeout", "greater than 0"],
        ),
        ("[policy]\nfailing_after = 0\n", &["policy.failing_after", "at least 1"]),
        (
            "[policy.tables.faculty]\nidle_timeout = \"0s\"\n",
            &["policy.tables.faculty.idle_timeout", "greater than 0"],
        ),
        (
            "[server]\nmax_connections = 0\n",
            &["server.max_connections", "at least 1"],
        ),
        ("[server]\nheader_timeout = \"0s\"\n", &["server.header_timeout"]),
        ("[server]\nidle_timeout = \"0s\"\n", &["server.idle_timeout"]),
        (
            "[server]\nlisten = \"localhost:8080\"\n",
            &["server.listen", "localhost:8080", "ip:port"],
        ),
        (
            "[kafka\npoll_interval = \"1s\"\n",
            &["TOML syntax error at line 1, column 7", path],
        ),
        ("[kafka]\npoll_interval = \n", &["TOML syntax error at line 2", path]),
    ];
    for (toml, needles) in cases {
        std::fs::write(&file, toml).expect("write config");
        let out = output(&["check", "--config", path], &[]);
        assert_config_error(&out, needles);
        let out = output(&["run", "--config", path], &[]);
        assert_config_error(&out, needles);
    }
    let out = check(&[("CDC_SERVER__LISTEN", "8080")]);
    assert_config_error(&out, &["server.listen", "\"8080\"", "CDC_SERVER__LISTEN"]);
    let out = check(&[("CDC_SERVER__TOKEN", "")]);
    assert_config_error(&out, &["server.token", "must not be empty"]);
    let out = check(&[
        ("CDC_KAFKA__SASL__MECHANISM", "PLAIN"),
        ("CDC_KAFKA__SASL__USERNAME", "u"),
        ("CDC_KAFKA__SASL__PASSWORD", ""),
    ]);
    assert_config_error(
        &out,
        &["kafka.sasl.password", "must be set", "CDC_KAFKA__SASL__PASSWORD"],
    );
    // An address that parses but cannot be bound (taken, or not this host's) is refused by `run`, naming the key.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    for listen in [taken_addr.as_str(), "192.0.2.1:8080"] {
        let out = output(
            &["run"],
            &[
                ("CDC_FLINK__LAUNCHER", "dry-run"),
                ("CDC_SERVER__LISTEN", listen),
                ("CDC_KAFKA__BOOTSTRAP", dead_bootstrap().as_str()),
            ],
        );
        assert_config_error(&out, &["server.listen", listen]);
    }
    let folder = dir.path().to_str().expect("utf-8 path");
    let out = output(&["check", "--config", folder], &[]);
    assert_config_error(&out, &["is a directory", folder]);
    assert!(!text(&out.stderr).contains("not found"));
}

#[test]
fn three_independent_mistakes_are_reported_at_once_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    let path = file.to_str().expect("utf-8 path");
    // A key that does not parse, a value that parses but is refused, and a bad value from the environment.
    let toml = "[kafka]\npoll_intervall = \"1s\"\n[server]\nmax_connections = 0\n";
    std::fs::write(&file, toml).expect("write config");
    for command in ["check", "run"] {
        let out = output(&[command, "--config", path], &[("CDC_POLICY__IDLE_TIMEOUT", "0s")]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(out.stdout.is_empty(), "{command}: nothing on stdout on error");
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert_eq!(lines.len(), 3, "{command}: one line per mistake: {err}");
        for (line, key) in lines
            .iter()
            .zip(["kafka.poll_intervall", "policy.idle_timeout", "server.max_connections"])
        {
            assert!(
                line.starts_with(&format!("error: invalid configuration: {key}: ")),
                "{command}: {err}"
            );
        }
    }
}

#[test]
fn a_cooldown_longer_than_idle_timeout_is_accepted_with_a_warning_saying_what_it_means() {
    let out = check(&[("CDC_POLICY__COOLDOWN", "5m"), ("CDC_POLICY__IDLE_TIMEOUT", "1m")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("WARN"), "{err}");
    assert!(
        err.contains("policy: cooldown (5m) is longer than idle_timeout (1m)"),
        "{err}"
    );
    assert!(err.contains("wait up to 4m"), "{err}");
    let out = check(&[("CDC_POLICY__COOLDOWN", "30s")]);
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

// Items 3 and 4: secrets never reach a log line or an HTTP answer; credentials are needed exactly when they are
// sent, and a missing one is reported at start-up.

/// Distinctive credential values, so any leak is found by searching for them.
const SECRETS: [(&str, &str); 4] = [
    ("POLARIS_CLIENT_ID", "leak-client-id-4711"),
    ("POLARIS_CLIENT_SECRET", "leak-client-secret-4712"),
    ("AWS_ACCESS_KEY_ID", "leak-access-key-4713"),
    ("AWS_SECRET_ACCESS_KEY", "leak-secret-key-4714"),
];

fn assert_no_secret(what: &str, text: &str) {
    for (variable, secret) in SECRETS {
        assert!(!text.contains(secret), "{variable} leaked into {what}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_logs_its_statements_with_credentials_redacted() {
    let broker = support::Broker::start();
    let bootstrap = broker.bootstrap();
    let mut env = vec![("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str()), ("CDC_LOG_LEVEL", "debug")];
    env.extend(SECRETS);
    let sidecar = start_sidecar(&env, None);
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    support::produce_change(&broker, "faculty").await;
    sidecar.wait_for_log("dry-run: job RUNNING", Duration::from_secs(20));
    let log = sidecar.log_text();
    assert!(log.contains("'credential' = '<redacted>:<redacted>'"), "{log}");
    assert!(log.contains("'s3.secret-access-key' = '<redacted>'"), "{log}");
    assert_no_secret("the log", &log);
    for path in ["/tables", "/tables/faculty", "/metrics", "/readyz"] {
        let (code, body) = request(&sidecar, "GET", path, &[]);
        assert!(code < 500, "{path}: {code} {body}");
        assert_no_secret(path, &body);
    }
}

/// The jobs' own Kafka login and an encrypted key for mutual TLS (issue 26): settings only the jobs use, so a
/// plaintext broker serves the sidecar while the dry run logs what the jobs would get.
const JOBS_KAFKA: [(&str, &str); 6] = [
    ("CDC_KAFKA__JOBS__SASL__MECHANISM", "SCRAM-SHA-512"),
    ("CDC_KAFKA__JOBS__SASL__USERNAME", "reader"),
    ("CDC_KAFKA__JOBS__SASL__PASSWORD", "leak-jobs-password-4715"),
    ("CDC_KAFKA__JOBS__TLS__ENABLED", "true"),
    ("CDC_KAFKA__JOBS__TLS__KEYSTORE_FILE", "/opt/flink/kafka/client.pem"),
    ("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "leak-key-password-4716"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_logs_the_jobs_kafka_login_and_key_password_redacted() {
    let broker = support::Broker::start();
    let bootstrap = broker.bootstrap();
    let mut env = vec![("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str()), ("CDC_LOG_LEVEL", "debug")];
    env.extend(JOBS_KAFKA);
    let sidecar = start_sidecar(&env, None);
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    support::produce_change(&broker, "faculty").await;
    sidecar.wait_for_log("dry-run: job RUNNING", Duration::from_secs(20));
    let log = sidecar.log_text();
    for option in [
        "'properties.security.protocol' = 'SASL_SSL'",
        r#"ScramLoginModule required username="reader" password="<redacted>";'"#,
        "'properties.ssl.keystore.location' = '/opt/flink/kafka/client.pem'",
        "'properties.ssl.key.password' = '<redacted>'",
    ] {
        assert!(log.contains(option), "{option} missing from the log:\n{log}");
    }
    for secret in ["leak-jobs-password-4715", "leak-key-password-4716"] {
        assert!(!log.contains(secret), "{secret} leaked into the log:\n{log}");
        for path in ["/tables", "/tables/faculty"] {
            let (_, body) = request(&sidecar, "GET", path, &[]);
            assert!(!body.contains(secret), "{secret} leaked into {path}: {body}");
        }
    }
}

#[test]
fn render_redacts_credentials_unless_asked_to_show_them() {
    let out = output(&["render", "faculty"], &SECRETS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("'credential' = '<redacted>:<redacted>'"), "{printed}");
    assert_no_secret("render", &printed);
    // Redacted output needs no credentials at all.
    let out = output(&["render", "faculty"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = output(&["render", "faculty", "--show-secrets"], &SECRETS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(
        printed.contains("'credential' = 'leak-client-id-4711:leak-client-secret-4712'"),
        "{printed}"
    );
    assert!(
        printed.contains("'s3.secret-access-key' = 'leak-secret-key-4714'"),
        "{printed}"
    );
}

/// A SQL folder holding one table's template, `tables/<table>.sql`.
fn sql_dir_with(table: &str, template: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tables")).expect("mkdir");
    std::fs::write(dir.path().join("tables").join(format!("{table}.sql")), template).expect("write template");
    dir
}

/// The settings of a sidecar that starts jobs through `flink`'s SQL Gateway with the templates in `sql_dir`.
fn through_gateway<'a>(flink: &'a support::fake_flink::FakeFlink, sql_dir: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CDC_FLINK__LAUNCHER", "sql-gateway"),
        ("CDC_FLINK__SQL_GATEWAY_URL", flink.gateway_url.as_str()),
        ("CDC_FLINK__JOBMANAGER_URL", flink.jobmanager_url.as_str()),
        ("CDC_FLINK__SQL_DIR", sql_dir),
        ("CDC_FLINK__REQUEST_TIMEOUT", "2s"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flink_error_echoing_a_secret_is_redacted_in_the_log_and_the_api() {
    let flink = support::fake_flink::FakeFlink::start().await;
    // The gateway refuses the first statement, and its error names the statement, secret and all.
    let dir = sql_dir_with(
        "leaky",
        "BOGUS 'key={{ s3_secret_access_key }}';\nINSERT INTO t SELECT 1;\n",
    );
    let sql_dir = dir.path().to_str().expect("utf-8 path");
    let mut env = through_gateway(&flink, sql_dir);
    env.push(("CDC_LOG_LEVEL", "debug"));
    env.extend(SECRETS);
    let sidecar = start_sidecar(&env, None);
    let (code, body) = request(&sidecar, "POST", "/tables/leaky/trigger", &[]);
    assert_eq!(code, 202, "{body}");
    sidecar.wait_for_log("failed to start job for: leaky", Duration::from_secs(20));
    assert!(
        flink.statements().iter().any(|s| s.contains("leak-secret-key-4714")),
        "the secret itself did reach Flink: {:?}",
        flink.statements()
    );
    let log = sidecar.log_text();
    assert_no_secret("the log", &log);
    assert!(log.contains("BOGUS 'key=<redacted>'"), "{log}");
    let (_, body) = request(&sidecar, "GET", "/tables/leaky", &[]);
    assert_no_secret("GET /tables/leaky", &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_starts_jobs_without_any_credential() {
    let broker = support::Broker::start();
    let bootstrap = broker.bootstrap();
    let sidecar = start_sidecar(&[("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str())], None);
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    support::produce_change(&broker, "program").await;
    sidecar.wait_for_log("dry-run: job RUNNING", Duration::from_secs(20));
    // The launcher logs RUNNING before the run loop has taken its answer and published the table.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (code, body) = loop {
        let (code, body) = request(&sidecar, "GET", "/tables/program", &[]);
        if body.contains("\"state\":\"running\"") || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"state\":\"running\""), "{body}");
    assert_eq!(sidecar.count("is not set"), 0, "{}", sidecar.log_text());
}

#[test]
fn the_sql_gateway_launcher_needs_its_credentials_at_start_up_and_check_says_so() {
    let partial: Vec<(&str, &str)> = SECRETS[..3].to_vec();
    let gateway = [("CDC_FLINK__LAUNCHER", "sql-gateway")];
    let env: Vec<(&str, &str)> = partial.iter().chain(&gateway).copied().collect();
    let out = output(&["check"], &env);
    assert_config_error(&out, &["AWS_SECRET_ACCESS_KEY is not set"]);
    let listen = format!("127.0.0.1:{}", support::free_port());
    let mut run_env = env.clone();
    run_env.push(("CDC_SERVER__LISTEN", listen.as_str()));
    let begin = Instant::now();
    let out = command(&["run"], &run_env)
        .stdin(Stdio::null())
        .output()
        .expect("run cdc-orchestrator");
    assert!(begin.elapsed() < Duration::from_secs(10), "run must fail at once");
    assert_config_error(&out, &["AWS_SECRET_ACCESS_KEY is not set"]);
    // With every variable set, both are fine; the dry run needs none.
    let all: Vec<(&str, &str)> = SECRETS.iter().chain(&gateway).copied().collect();
    assert!(output(&["check"], &all).status.success());
    let out = output(&["check"], &[("CDC_FLINK__LAUNCHER", "dry-run")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

// Item 6: HTTP limits. Bodies are limited as they are read, slow and idle clients are cut off, and idle clients
// can neither lock out the health probe nor take the watcher's descriptors.

/// Sends a POST with a `size`-byte chunked body (1 MiB chunks) while reading the answer on the side, since the
/// server may answer, and close, before the body is sent.
fn chunked_post(addr: &str, path: &str, size: usize) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut reader = stream.try_clone().expect("clone stream");
    reader.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let answer = std::thread::spawn(move || {
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    });
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = stream.write_all(head.as_bytes()).is_ok();
    let mut left = size;
    while sent && left > 0 {
        let n = left.min(chunk.len());
        sent = stream.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
            && stream.write_all(&chunk[..n]).is_ok()
            && stream.write_all(b"\r\n").is_ok();
        left -= n;
    }
    if sent {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    support::parse_http_answer(&answer.join().expect("reader thread"))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn an_oversized_body_gets_413_chunked_or_sized_and_never_acts() {
    let sidecar = start_sidecar(&[], None);
    // A table with a template is there before any change, as the control API already treats it.
    let (code, body) = request(&sidecar, "GET", "/tables/faculty", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["state"], "idle");
    assert_eq!(json(&body)["paused"], false);

    let (code, body) = chunked_post(sidecar.addr(), "/tables/faculty/pause", 50 << 20);
    assert_eq!(code, 413, "{body}");
    assert_eq!(json(&body)["error_code"], 413);
    let sized = "POST /tables/faculty/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n";
    let (code, body) = raw_exchange(sidecar.addr(), sized.as_bytes(), Duration::from_secs(5));
    assert_eq!((code, json(&body)["error_code"].clone()), (413, 413.into()));
    let (_, body) = request(&sidecar, "GET", "/tables/faculty", &[]);
    assert_eq!(
        json(&body)["paused"],
        false,
        "an oversized request must not act: {body}"
    );

    // A small body is fine (the API ignores it), so the 413s above are about size.
    let small = "POST /tables/faculty/pause HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (code, body) = raw_exchange(sidecar.addr(), small.as_bytes(), Duration::from_secs(5));
    assert_eq!(code, 202, "{body}");
    assert_eq!(json(&body)["paused"], true);

    for (method, path) in [
        ("GET", "/tables/%FF"),
        ("POST", "/tables/%E2%82/pause"),
        ("GET", "/tables/%C0%AF"),
    ] {
        let (code, body) = request(&sidecar, method, path, &[]);
        assert_eq!(code, 400, "{method} {path}: {body}");
        assert_eq!(json(&body)["error_code"], 400, "{body}");
    }
    let (code, body) = request(&sidecar, "GET", "/tables/no_such_table", &[]);
    assert_eq!((code, json(&body)["error_code"].clone()), (404, 404.into()));
}

/// How long until the server closes `stream` (read gives end-of-file or an error), at most `limit`.
fn time_to_close(mut stream: TcpStream, limit: Duration) -> Duration {
    let begin = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return begin.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the server kept the connection open for {limit:?}")
            }
            Err(_) => return begin.elapsed(),
        }
    }
}

#[test]
fn silent_half_sent_and_idle_connections_are_closed_by_the_timeouts() {
    let sidecar = start_sidecar(
        &[("CDC_SERVER__HEADER_TIMEOUT", "1s"), ("CDC_SERVER__IDLE_TIMEOUT", "2s")],
        None,
    );
    let connect = || TcpStream::connect(sidecar.addr()).expect("connect");
    let window = |what: &str, took: Duration, at_least: f64| {
        assert!(
            took >= Duration::from_secs_f64(at_least) && took < Duration::from_secs_f64(at_least + 2.0),
            "{what}: closed after {took:?}"
        );
    };
    // Connects and sends nothing.
    window("silent", time_to_close(connect(), Duration::from_secs(10)), 0.8);
    // Sends half a header, then nothing.
    let mut half = connect();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo").expect("send");
    window("half a header", time_to_close(half, Duration::from_secs(10)), 0.8);
    // Sends half a header a byte at a time, each well within the idle timeout: the header timeout still ends it.
    let mut trickle = connect();
    let begin = Instant::now();
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
        if trickle.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = begin.elapsed() + time_to_close(trickle, Duration::from_secs(10));
    assert!(took < Duration::from_secs(4), "a trickled header was read for {took:?}");
    // A whole request on a keep-alive connection, then nothing: the wait for the next header is timed too.
    let mut keep = connect();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    window("idle keep-alive", time_to_close(keep, Duration::from_secs(10)), 0.8);
    // A complete header and a body that stops half-way: the idle timeout ends it, and the action never runs.
    let mut stalled = connect();
    stalled
        .write_all(b"POST /tables/faculty/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .expect("send");
    window("stalled body", time_to_close(stalled, Duration::from_secs(10)), 1.8);
    let (_, body) = request(&sidecar, "GET", "/tables/faculty", &[]);
    assert_eq!(json(&body)["paused"], false, "{body}");
}

fn open_files(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_under_a_low_open_file_limit_starve_neither_healthz_nor_the_watcher() {
    let broker = support::Broker::start();
    let bootstrap = broker.bootstrap();
    // Soft limit 64 under a hard limit of 256: the sidecar raises the soft limit to 256 at start.
    let sidecar = start_sidecar(&[("CDC_KAFKA__BOOTSTRAP", bootstrap.as_str())], Some((64, 256)));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sidecar.pid())).expect("limits");
    let open_files_line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("limit line");
    assert_eq!(
        open_files_line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["256", "256"],
        "{open_files_line}"
    );
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    let mut idle = Vec::new();
    for _ in 0..372 {
        if let Ok(stream) = connect_within(sidecar.addr(), Duration::from_secs(1)) {
            idle.push(stream);
        }
    }
    // Each connection over the cap evicts the longest-waiting one, whose task closes it shortly after (later on a
    // loaded machine): the count must settle well under the limit, not grow with the clients.
    let settle = Instant::now() + Duration::from_secs(5);
    let mut held = open_files(&sidecar.pid());
    while held >= 128 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        held = open_files(&sidecar.pid());
    }
    assert!(held < 128, "the sidecar holds {held} descriptors");
    for round in 0..5 {
        let begin = Instant::now();
        let (code, body) = raw_exchange(
            sidecar.addr(),
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        );
        assert_eq!(code, 200, "round {round}: {body}");
        assert!(begin.elapsed() < Duration::from_secs(2));
        // More idle clients keep arriving.
        for _ in 0..50 {
            if let Ok(stream) = connect_within(sidecar.addr(), Duration::from_secs(1)) {
                idle.push(stream);
            }
        }
    }
    support::produce_change(&broker, "faculty").await;
    sidecar.wait_for_log("dry-run: job RUNNING", Duration::from_secs(20));
    assert_eq!(sidecar.count("Too many open files"), 0, "{}", sidecar.log_text());
    drop(idle);
}

// Item 8: signals and `watch --once`.

#[test]
fn sighup_reloads_rather_than_ends_the_sidecar_and_sigterm_still_stops() {
    let mut sidecar = start_sidecar(&[], None);
    sidecar.signal("HUP");
    sidecar.wait_for_log("reloaded:", Duration::from_secs(5));
    sidecar.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sidecar.count("reloaded:") < 2 {
        assert!(Instant::now() < deadline, "{}", sidecar.log_text());
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(sidecar.exited(), None, "SIGHUP ended the sidecar");
    let (code, _) = request(&sidecar, "GET", "/healthz", &[]);
    assert_eq!(code, 200);
    sidecar.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sidecar.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_once_fails_when_no_broker_answers_and_succeeds_when_one_does() {
    let dead = dead_bootstrap();
    let env = [
        ("CDC_KAFKA__BOOTSTRAP", dead.as_str()),
        ("CDC_KAFKA__REQUEST_TIMEOUT", "1s"),
        ("CDC_KAFKA__POLL_INTERVAL", "100ms"),
    ];
    let out = output(&["watch", "--once"], &env);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("Kafka brokers unreachable") && err.contains(&dead),
        "{err}"
    );

    let broker = support::Broker::start();
    let live = broker.bootstrap();
    let out = output(
        &["watch", "--once"],
        &[
            ("CDC_KAFKA__BOOTSTRAP", live.as_str()),
            ("CDC_KAFKA__POLL_INTERVAL", "100ms"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Issue 26, item 4: a job whose Kafka login is refused runs, then restarts forever. The table becomes `failing`
/// with a `last_error` naming the authentication failure (a secret the trace echoes redacted), the log says so
/// once per failure, and the job is stopped instead of spinning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_refused_by_kafka_leaves_its_table_failing_with_the_reason_and_is_stopped() {
    let flink = support::fake_flink::FakeFlink::start().await;
    flink.restart_jobs_after(
        Duration::from_millis(100),
        "org.apache.flink.runtime.JobException: Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy\n\
         \tat org.apache.flink.runtime.scheduler.DefaultScheduler.onTaskFailed(DefaultScheduler.java:270)\n\
         Caused by: org.apache.flink.util.FlinkRuntimeException: s3 key leak-secret-key-4714 rejected\n\
         Caused by: org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during \
         authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512\n",
    );
    let dir = sql_dir_with("refused", "INSERT INTO t SELECT '{{ s3_secret_access_key }}';\n");
    let sql_dir = dir.path().to_str().expect("utf-8 path");
    let mut env = through_gateway(&flink, sql_dir);
    env.extend([
        ("CDC_FLINK__RECONCILE_INTERVAL", "300ms"),
        // The stopped job's retry waits long enough for the test to see the table failing.
        ("CDC_POLICY__RETRY_INITIAL_BACKOFF", "1h"),
        ("CDC_POLICY__RETRY_MAX_BACKOFF", "1h"),
    ]);
    env.extend(SECRETS);
    let sidecar = start_sidecar(&env, None);
    let (code, body) = request(&sidecar, "POST", "/tables/refused/trigger", &[]);
    assert_eq!(code, 202, "{body}");
    let table = || json(&request(&sidecar, "GET", "/tables/refused", &[]).1);
    sidecar.wait_for("the table failing", Duration::from_secs(30), || {
        let t = table();
        t["state"] == "failing" && flink.live_jobs_named("cdc-refused").is_empty()
    });
    let t = table();
    let last_error = t["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        last_error.contains("SaslAuthenticationException: Authentication failed"),
        "{t}"
    );
    let log = sidecar.log_text();
    assert!(
        log.contains("job failed: ") && log.contains("SaslAuthenticationException"),
        "{log}"
    );
    assert!(sidecar.count("job failed: ") >= 3, "{log}");
    assert_no_secret("the log", &log);
    assert_no_secret("GET /tables/refused", &t.to_string());
    let jobs = flink.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert!(jobs[0].cancelled, "the restarting job was not stopped: {jobs:?}");
}
