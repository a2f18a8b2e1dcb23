//! Issue 24: http_surface. The real binary's own surface: its HTTP layer's error answers (item 9), `/readyz`
//! after Flink failed (item 9), requests a browser page could send (item 10), config files and environment values
//! that are not what they seem, and signals during a Flink call that never answers (item 11).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::sidecar::{Sidecar, command};

/// `check` with the dry-run launcher (which needs no credentials) and `env` on top.
fn check(args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = command(&[&["check"], args].concat());
    cmd.env("CDC_FLINK__LAUNCHER", "dry-run");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run cdc-orchestrator check")
}

/// Starts `run` with the dry-run launcher, a broker nobody answers at and quick settings, `env` on top.
fn start_sidecar(env: &[(&str, &str)]) -> Sidecar {
    Sidecar::builder()
        .quick_without_kafka()
        .dry_run()
        .env("CDC_POLICY__COOLDOWN", "1s")
        .envs(env.iter().copied())
        .start()
}

/// One HTTP/1.1 request on a fresh connection, with `Host: localhost` unless `headers` name a host; the status code
/// and the body.
fn request(sidecar: &Sidecar, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw_exchange(sidecar.addr(), request.as_bytes())
}

/// `GET /tables/faculty`'s `paused`.
fn faculty_paused(sidecar: &Sidecar) -> bool {
    let (code, body) = request(sidecar, "GET", "/tables/faculty", &[]);
    assert_eq!(code, 200, "{body}");
    json(&body)["paused"].as_bool().expect("paused is a bool")
}

/// Sends `request` on a new connection and reads the answer until the server closes it: status and body.
fn raw_exchange(addr: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The server may answer and close before a large request is all sent.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    support::parse_http_answer(&answer)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// The documented error body: `{"error_code": <code>, "message": "..."}`.
fn assert_error_body(code: u16, body: &str, expected: u16) {
    assert_eq!(code, expected, "{body}");
    let error = json(body);
    assert_eq!(error["error_code"], expected, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// A fake Flink on loopback: every connection is read up to the end of its request head and answered by
/// `answer`, or held open without an answer when `answer` is `None`. Runs until the test process ends.
fn fake_flink(answer: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            match answer {
                Some(answer) => {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                        head.push(byte[0]);
                    }
                    let _ = stream.write_all(answer);
                }
                None => held.push(stream),
            }
        }
    });
    format!("http://{addr}")
}

/// The environment of a sidecar that starts jobs through the SQL Gateway at `flink`.
fn sql_gateway_env(flink: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = vec![
        ("CDC_FLINK__LAUNCHER", "sql-gateway".to_owned()),
        ("CDC_FLINK__SQL_GATEWAY_URL", flink.to_owned()),
        ("CDC_FLINK__JOBMANAGER_URL", flink.to_owned()),
    ];
    env.extend(support::sql_env().into_iter().map(|(k, v)| (k, v.to_owned())));
    env
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

// Item 9: the HTTP layer's own error answers carry the documented JSON body.

#[test]
fn requests_the_http_layer_cannot_parse_get_the_documented_json_error() {
    let sidecar = start_sidecar(&[]);
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    let cases: [(&str, &[u8], u16); 5] = [
        ("a request line that is not one", b"GARBAGE\r\n\r\n", 400),
        (
            "a header without a colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
            400,
        ),
        (
            "a bad header value",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            400,
        ),
        ("a header of a megabyte", huge_header.as_bytes(), 431),
        ("two hundred headers", many_headers.as_bytes(), 431),
    ];
    for (what, request, expected) in cases {
        let (code, body) = raw_exchange(sidecar.addr(), request);
        assert_eq!(code, expected, "{what}: {body:?}");
        assert_error_body(code, &body, expected);
    }
    // After a good request on the same connection, the good answer is left as it is and the bad one gets its body.
    let mut stream = TcpStream::connect(sidecar.addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGARBAGE\r\n\r\n")
        .expect("send");
    let mut answers = Vec::new();
    let _ = stream.read_to_end(&mut answers);
    let answers = String::from_utf8_lossy(&answers).into_owned();
    let (first, second) = answers
        .split_once("{\"status\":\"ok\"}")
        .expect("the good answer first");
    assert!(
        first.starts_with("HTTP/1.1 200 OK\r\n") && first.contains("content-length: 15\r\n"),
        "{answers}"
    );
    let (head, body) = second.split_once("\r\n\r\n").expect("a second answer");
    assert!(head.starts_with("HTTP/1.1 400 "), "{answers}");
    assert_error_body(400, body, 400);
}

// Item 9: `/readyz` after Flink failed names the failure.

#[test]
fn readyz_names_flinks_failure_instead_of_not_contacted_yet() {
    let broker = support::Broker::start();
    let bootstrap = broker.bootstrap();
    let refusing = format!("http://127.0.0.1:{}", support::free_port());
    let not_found = fake_flink(Some(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 30\r\nConnection: close\r\n\r\n<html>\x1b[31mNot Found</html>\n\r\n",
    ));
    for (flink, expected) in [
        (refusing.as_str(), "Connection refused"),
        (not_found.as_str(), "HTTP 404"),
    ] {
        let mut env = sql_gateway_env(flink);
        env.push(("CDC_KAFKA__BOOTSTRAP", bootstrap.clone()));
        let sidecar = start_sidecar(&borrowed(&env));
        sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
        sidecar.wait_for_log("cannot list Flink jobs", Duration::from_secs(15));
        let (code, body) = request(&sidecar, "GET", "/readyz", &[]);
        assert_eq!(code, 503, "{body}");
        let reason = json(&body)["reason"].as_str().expect("a reason").to_owned();
        assert!(
            reason.starts_with("flink: ") && reason.contains(expected),
            "{flink}: the reason must name the failure: {reason:?}"
        );
        assert!(!reason.contains('\u{1b}'), "escaped: {reason:?}");
    }
}

// Item 10: no web page can change the sidecar's state.

#[test]
fn a_browser_page_cannot_change_state_but_a_json_client_can_and_reads_stay_open() {
    let sidecar = start_sidecar(&[("CDC_SERVER__ALLOWED_HOSTS", "sidecar.internal")]);
    let json_type = ("Content-Type", "application/json");
    type Header<'a> = (&'a str, &'a str);
    let attacks: [(&str, Vec<Header>, u16); 6] = [
        ("a text/plain POST", vec![("Content-Type", "text/plain")], 415),
        (
            "a form POST",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            415,
        ),
        ("a POST without a type", vec![], 415),
        (
            "a foreign Origin",
            vec![json_type, ("Origin", "http://evil.example")],
            403,
        ),
        ("a null Origin", vec![json_type, ("Origin", "null")], 403),
        (
            "a rebound host name",
            vec![json_type, ("Host", "evil.example:8080")],
            403,
        ),
    ];
    for (what, headers, expected) in &attacks {
        let (code, body) = request(&sidecar, "POST", "/tables/faculty/pause", headers);
        assert_error_body(code, &body, *expected);
        assert!(!faculty_paused(&sidecar), "{what} paused the table: {body}");
    }
    // What the docs tell an operator to send, from the host itself or through a listed name.
    let (code, body) = request(&sidecar, "POST", "/tables/faculty/pause", &[json_type]);
    assert_eq!(code, 202, "{body}");
    assert!(faculty_paused(&sidecar));
    let own_origin = format!("http://{}", sidecar.addr());
    let same_origin = [json_type, ("Host", sidecar.addr()), ("Origin", own_origin.as_str())];
    let (code, body) = request(&sidecar, "POST", "/tables/faculty/resume", &same_origin);
    assert_eq!(code, 202, "{body}");
    assert!(!faculty_paused(&sidecar));
    let listed = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Host", "Sidecar.Internal:8080"),
    ];
    let (code, body) = request(&sidecar, "POST", "/tables/faculty/pause", &listed);
    assert_eq!(code, 202, "{body}");
    // Reads are for probes and dashboards, whatever they carry.
    let foreign = [("Host", "evil.example"), ("Origin", "http://evil.example")];
    for path in ["/healthz", "/readyz", "/metrics", "/tables", "/tables/faculty"] {
        let (code, body) = request(&sidecar, "GET", path, &foreign);
        assert!(code == 200 || path == "/readyz" && code == 503, "{path}: {code} {body}");
    }

    // With a token, the token decides the host; the type and the origin are still checked.
    let sidecar = start_sidecar(&[("CDC_SERVER__TOKEN", "s3cret")]);
    let bearer = ("Authorization", "Bearer s3cret");
    let (code, body) = request(
        &sidecar,
        "POST",
        "/tables/faculty/pause",
        &[bearer, ("Content-Type", "text/plain")],
    );
    assert_error_body(code, &body, 415);
    let (code, body) = request(
        &sidecar,
        "POST",
        "/tables/faculty/pause",
        &[bearer, json_type, ("Origin", "http://evil.example")],
    );
    assert_error_body(code, &body, 403);
    let (code, body) = request(
        &sidecar,
        "POST",
        "/tables/faculty/pause",
        &[json_type, ("Host", "cdc.example")],
    );
    assert_error_body(code, &body, 401);
    let (code, body) = request(
        &sidecar,
        "POST",
        "/tables/faculty/pause",
        &[bearer, json_type, ("Host", "cdc.example")],
    );
    assert_eq!(code, 202, "{body}");
    assert!(faculty_paused(&sidecar));
}

// Item 11: config files and environment values.

#[test]
fn config_files_that_are_not_small_regular_utf8_files_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let too_large = path("too-large.toml");
    let at_limit = path("at-limit.toml");
    let latin1 = path("latin1.toml");
    let fifo = path("fifo.toml");
    let limit = usize::try_from(cdc_orchestrator::config::MAX_CONFIG_BYTES).expect("fits");
    // A valid TOML file (one long comment) a byte over the limit, and one exactly at it.
    let comment = |len: usize| format!("#{}\n", "x".repeat(len - 2));
    std::fs::write(&too_large, comment(limit + 1)).expect("write");
    std::fs::write(&at_limit, comment(limit)).expect("write");
    std::fs::write(&latin1, b"[server]\ntoken = \"caf\xe9\"\n").expect("write");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let missing = path("missing.toml");
    let not_a_dir = format!("{too_large}/c.toml");
    let dir_path = path("");
    let cases: [(&str, &str); 7] = [
        ("/dev/zero", "is not a regular file"),
        (&fifo, "is not a regular file"),
        (&dir_path, "is a directory"),
        (&missing, "config file not found"),
        (&not_a_dir, "cannot read config file"),
        (&too_large, "is larger than 1048576 bytes"),
        (&latin1, "is not valid UTF-8 (at byte 21)"),
    ];
    for (file, needle) in cases {
        let begin = Instant::now();
        let out = check(&["--config", file], &[]);
        support::assert_config_error(&out, &[needle, file]);
        assert!(
            begin.elapsed() < Duration::from_secs(10),
            "{file} took {:?}",
            begin.elapsed()
        );
    }
    let out = check(&["--config", &at_limit], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn environment_values_that_are_not_utf8_are_named_not_taken_as_unset() {
    let invalid = OsStr::from_bytes(b"s3cr\xffet");
    // A credential the templates need: not "not set".
    let mut cmd = command(&["check"]);
    cmd.env("CDC_FLINK__LAUNCHER", "sql-gateway");
    cmd.envs(support::sql_env());
    cmd.env("POLARIS_CLIENT_SECRET", invalid);
    let out = cmd.output().expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("POLARIS_CLIENT_SECRET") && err.contains("not valid UTF-8") && !err.contains("not set"),
        "{err}"
    );
    // A configuration key, and the token `status` presents.
    for variable in ["CDC_SERVER__TOKEN", "CDC_KAFKA__SASL__PASSWORD", "cdc_policy__cooldown"] {
        let out = check(&[], &[(variable, invalid)]);
        let expected = format!("environment variable {variable} is not valid UTF-8");
        support::assert_config_error(&out, &[&expected]);
    }
    let out = command(&["status", "--url", "http://127.0.0.1:9"])
        .env("CDC_SERVER__TOKEN", invalid)
        .output()
        .expect("run status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CDC_SERVER__TOKEN is not valid UTF-8"), "{err}");
}

// Item 11: signals while a Flink call hangs.

/// A sidecar whose SQL Gateway accepts and never answers, with a start of faculty in flight (a change on the
/// real broker triggered it); `request_timeout` far longer than `shutdown_timeout`.
async fn sidecar_with_a_start_hanging(broker: &support::Broker, shutdown_timeout: &str) -> Sidecar {
    let topic = "university-server.public.faculty";
    let client = support::client(broker).await;
    support::create_topic(&client, topic, 1).await;
    let mut env = sql_gateway_env(&fake_flink(None));
    env.extend([
        ("CDC_KAFKA__BOOTSTRAP", broker.bootstrap()),
        ("CDC_FLINK__REQUEST_TIMEOUT", "120s".to_owned()),
        ("CDC_FLINK__SHUTDOWN_TIMEOUT", shutdown_timeout.to_owned()),
    ]);
    let sidecar = start_sidecar(&borrowed(&env));
    sidecar.wait_for_log("Kafka brokers answer", Duration::from_secs(15));
    let change = support::envelope("faculty", "c");
    support::produce(&client, topic, 0, Some(b"{\"id\":1}"), &[Some(&change)]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = request(&sidecar, "GET", "/tables/faculty", &[]);
        if json(&body)["state"] == "starting" {
            break;
        }
        assert!(Instant::now() < deadline, "no start: {body}\n{}", sidecar.log.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sidecar
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_shutdown_timeout_while_a_flink_call_hangs() {
    let broker = support::Broker::start();
    let mut sidecar = sidecar_with_a_start_hanging(&broker, "2s").await;
    let signalled = Instant::now();
    sidecar.signal("TERM");
    // Two seconds for the calls in flight, and a little for the rest; far from the 120 s request timeout.
    let status = sidecar.exit_within(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "still running 5 s after SIGTERM:\n{}",
        sidecar.log.text()
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the Flink call got its shutdown_timeout"
    );
    assert!(
        sidecar.log.count("abandoning in-flight Flink calls") > 0,
        "{}",
        sidecar.log.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_exits_at_once() {
    let broker = support::Broker::start();
    let mut sidecar = sidecar_with_a_start_hanging(&broker, "60s").await;
    sidecar.signal("TERM");
    sidecar.wait_for_log("waiting for in-flight Flink calls", Duration::from_secs(5));
    sidecar.signal("TERM");
    let status = sidecar.exit_within(Duration::from_secs(5));
    let log = sidecar.log.text();
    let status = status.unwrap_or_else(|| panic!("a second SIGTERM did not end the process:\n{log}"));
    assert!(!status.success(), "{status:?}");
    assert_eq!(sidecar.log.count("second shutdown signal received"), 1, "{log}");
}
