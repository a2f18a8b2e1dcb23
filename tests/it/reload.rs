//! Reloading without a restart (issue 27, item 3), with the real binary: SIGHUP and `POST /reload` re-read the
//! configuration file and the templates of `flink.sql_dir`; the next start of a table uses the new SQL while a
//! running job is left alone, and a bad set is refused with start-up's messages while the old set keeps working.
//! The dry-run launcher logs every statement a start submits, which is what the tests read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::support;
use crate::support::sidecar::{Sidecar, command};

const TOKEN: &str = "reload-test-token";
const WAIT: Duration = Duration::from_secs(20);

/// A folder of templates whose faculty.sql inserts into `sink`, and a configuration file naming it.
fn write_set(dir: &Path, sink: &str, extra_config: &str) {
    let tables = dir.join("tables");
    std::fs::create_dir_all(&tables).expect("tables dir");
    std::fs::write(tables.join("faculty.sql"), format!("INSERT INTO {sink} SELECT 1;\n")).expect("faculty.sql");
    let config = format!(
        "[flink]\nsql_dir = {:?}\n\n[policy]\ncooldown = \"1s\"\nidle_timeout = \"1h\"\n{extra_config}",
        dir.display().to_string()
    );
    std::fs::write(dir.join("config.toml"), config).expect("config.toml");
}

fn start(dir: &Path) -> Sidecar {
    Sidecar::builder()
        .quick_without_kafka()
        .dry_run()
        .env("CDC_CONFIG", dir.join("config.toml").display().to_string())
        .env("CDC_SERVER__TOKEN", TOKEN)
        .start()
}

/// `POST path`, with the bearer token when `authorized`: the status code and the body.
fn post(sidecar: &Sidecar, path: &str, authorized: bool) -> (u16, String) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\nContent-Type: application/json\r\n"
    );
    if authorized {
        request.push_str(&format!("Authorization: Bearer {TOKEN}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(sidecar.addr()).expect("connect to the sidecar");
    stream.set_read_timeout(Some(Duration::from_secs(40))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    support::parse_http_answer(&answer)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Starts faculty's job by an operator's trigger and waits for its `n`th dry-run job.
fn start_faculty(sidecar: &Sidecar, n: usize) {
    let (code, body) = post(sidecar, "/tables/faculty/trigger", true);
    assert_eq!(code, 202, "{body}");
    sidecar.wait_for("faculty's job to run", WAIT, || {
        sidecar.count("dry-run: job RUNNING") == n
    });
    // The launcher logs before the run loop hears of it.
    sidecar.wait_for("faculty to show as running", WAIT, || {
        faculty(sidecar)["state"] == "running"
    });
}

fn faculty(sidecar: &Sidecar) -> serde_json::Value {
    let (code, body) = sidecar.get("/tables/faculty");
    assert_eq!(code, 200, "{body}");
    json(&body)
}

#[test]
fn sighup_reloads_the_next_start_uses_the_new_sql_and_a_running_job_keeps_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_set(dir.path(), "sink_v1", "");
    let sidecar = start(dir.path());
    start_faculty(&sidecar, 1);
    let running = faculty(&sidecar);
    assert_eq!(running["state"], "running", "{}", sidecar.log_text());
    let submitted = sidecar.count("dry-run: would submit");
    assert_eq!(sidecar.count("INSERT INTO sink_v1"), 1, "{}", sidecar.log_text());

    // New SQL, a policy key that reloads, and one that needs a restart.
    write_set(
        dir.path(),
        "sink_v2",
        "\n[policy.tables.room]\npaused = true\n\n[kafka]\nmax_tables = 5\n",
    );
    sidecar.signal("HUP");
    sidecar.wait_for_log("reloaded:", WAIT);
    let log = sidecar.log_text();
    let reloaded = log.lines().find(|l| l.contains("reloaded:")).unwrap_or_default();
    assert!(
        reloaded.contains(r#"tables_changed=["faculty"]"#) && reloaded.contains("policy.tables.room.paused"),
        "{reloaded}"
    );
    let restart = log.lines().find(|l| l.contains("need a restart")).unwrap_or_default();
    assert!(restart.contains("kafka.max_tables"), "{log}");

    // The running job is untouched: nothing submitted, stopped or restarted, the same job.
    assert_eq!(sidecar.count("dry-run: would submit"), submitted);
    let after = faculty(&sidecar);
    assert_eq!(
        (&after["state"], &after["job_id"]),
        (&running["state"], &running["job_id"])
    );
    assert_eq!(sidecar.count("Stopped job for: faculty"), 0);

    // Its next start renders the new set.
    let (code, body) = post(&sidecar, "/tables/faculty/stop", true);
    assert_eq!(code, 202, "{body}");
    sidecar.wait_for_log("Stopped job for: faculty", WAIT);
    start_faculty(&sidecar, 2);
    assert_eq!(sidecar.count("INSERT INTO sink_v2"), 1, "{}", sidecar.log_text());
    assert_eq!(sidecar.count("INSERT INTO sink_v1"), 1);
    let (_, metrics) = sidecar.get("/metrics");
    assert!(metrics.contains("cdc_reloads_total{result=\"ok\"} 1"), "{metrics}");
}

#[test]
fn post_reload_refuses_a_broken_template_with_start_ups_message_and_the_old_set_keeps_working() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_set(dir.path(), "sink_v1", "");
    let sidecar = start(dir.path());

    // A good reload, then unauthenticated: refused before anything is read.
    let (code, body) = post(&sidecar, "/reload", true);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["tables_changed"], serde_json::json!([]));
    let (code, body) = post(&sidecar, "/reload", false);
    assert_eq!(code, 401, "{body}");
    // The CLI asks the same, with the token from the environment.
    let cli = command(&["reload", "--url", &sidecar.url()])
        .env("CDC_SERVER__TOKEN", TOKEN)
        .output()
        .expect("reload");
    assert!(cli.status.success(), "{cli:?}");
    assert!(
        String::from_utf8_lossy(&cli.stdout).contains(r#""reloaded":true"#),
        "{cli:?}"
    );

    let faculty_sql = dir.path().join("tables").join("faculty.sql");
    std::fs::write(&faculty_sql, "INSERT INTO sink_v2 SELECT 1;\nSELECT '{{ topic ';\n").expect("write");
    let (code, body) = post(&sidecar, "/reload", true);
    assert_eq!(code, 422, "{body}");
    let messages = json(&body)["messages"].clone();
    let message = messages[0].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("faculty.sql") && message.contains("line 2"), "{body}");
    let cli = command(&["reload", "--url", &sidecar.url()])
        .env("CDC_SERVER__TOKEN", TOKEN)
        .output()
        .expect("reload");
    assert_eq!(cli.status.code(), Some(1), "{cli:?}");
    assert!(String::from_utf8_lossy(&cli.stderr).contains("422"), "{cli:?}");

    // The same words start-up stops with.
    let output = command(&["run"])
        .env("CDC_CONFIG", dir.path().join("config.toml"))
        .env("CDC_FLINK__LAUNCHER", "dry-run")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("error: {message}")), "{stderr}\nvs {message}");

    // The old set keeps working.
    start_faculty(&sidecar, 1);
    assert_eq!(sidecar.count("INSERT INTO sink_v1"), 1, "{}", sidecar.log_text());
    assert_eq!(sidecar.count("sink_v2"), 0);
    let (_, metrics) = sidecar.get("/metrics");
    assert!(metrics.contains("cdc_reloads_total{result=\"ok\"} 2"), "{metrics}");
    assert!(metrics.contains("cdc_reloads_total{result=\"refused\"} 2"), "{metrics}");
}
