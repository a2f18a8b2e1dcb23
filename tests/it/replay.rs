//! The real binary's `replay` command: the shipped example traces, input from stdin, configuration, bad lines.

use std::io::Write;
use std::process::{Output, Stdio};

use serde_json::Value;

fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = crate::support::sidecar::command(args);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run cdc-orchestrator");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("wait for cdc-orchestrator")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output as `(t_ms, action, table, reason)`, checking that every line has exactly those four fields.
fn actions(out: &Output) -> Vec<(u64, String, String, String)> {
    text(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("every output line is JSON");
            let object = v.as_object().expect("an object");
            assert_eq!(object.len(), 4, "exactly t_ms, action, table, reason: {line}");
            let field = |k: &str| object[k].as_str().expect("a string").to_owned();
            (
                object["t_ms"].as_u64().expect("t_ms"),
                field("action"),
                field("table"),
                field("reason"),
            )
        })
        .collect()
}

fn act(t_ms: u64, action: &str, table: &str, reason: &str) -> (u64, String, String, String) {
    (t_ms, action.into(), table.into(), reason.into())
}

fn replay_ok(args: &[&str], env: &[(&str, &str)]) -> Vec<(u64, String, String, String)> {
    let out = run(args, env, None);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "no errors");
    actions(&out)
}

#[test]
fn a_burst_of_inserts_on_faculty_gives_one_start() {
    let got = replay_ok(&["replay", "examples/traces/faculty-burst.jsonl"], &[]);
    assert_eq!(got, vec![act(0, "start", "faculty", "changes")]);
}

#[test]
fn sixty_quiet_seconds_stop_the_job() {
    let got = replay_ok(&["replay", "examples/traces/faculty-idle-stop.jsonl"], &[]);
    assert_eq!(
        got,
        vec![
            act(0, "start", "faculty", "changes"),
            act(72_000, "stop", "faculty", "idle")
        ]
    );
}

#[test]
fn a_change_during_the_stop_starts_a_new_job_after_it() {
    let got = replay_ok(&["replay", "examples/traces/faculty-change-during-stop.jsonl"], &[]);
    assert_eq!(
        got,
        vec![
            act(0, "start", "faculty", "changes"),
            act(65_000, "stop", "faculty", "idle"),
            act(70_000, "start", "faculty", "changes"),
        ]
    );
}

#[test]
fn a_change_inside_the_cooldown_waits_and_lag_keeps_a_job() {
    let got = replay_ok(&["replay", "examples/traces/cooldown-and-lag.jsonl"], &[]);
    assert_eq!(
        got,
        vec![
            act(0, "start", "faculty", "changes"),
            act(0, "start", "program", "changes"),
            act(4_000, "stop", "faculty", "operator"),
            act(30_000, "start", "faculty", "changes"),
            act(91_000, "stop", "faculty", "idle"),
            act(100_000, "stop", "program", "idle"),
        ]
    );
}

#[test]
fn every_example_trace_is_covered_by_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/traces"))
        .expect("examples/traces")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cooldown-and-lag.jsonl",
            "faculty-burst.jsonl",
            "faculty-change-during-stop.jsonl",
            "faculty-idle-stop.jsonl"
        ]
    );
}

#[test]
fn reads_standard_input_with_dash_or_without_an_argument() {
    let trace = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/traces/faculty-idle-stop.jsonl"
    ))
    .expect("read trace");
    for args in [&["replay", "-"][..], &["replay"][..]] {
        let out = run(args, &[], Some(&trace));
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        assert_eq!(actions(&out).len(), 2);
    }
}

#[test]
fn policy_settings_come_from_the_config_file_and_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    // A cooldown no longer than idle_timeout: a longer one is allowed but warned about on stderr.
    std::fs::write(&file, "[policy]\nidle_timeout = \"20s\"\ncooldown = \"10s\"\n").expect("write config");
    let path = file.to_str().expect("utf-8 path");
    let trace = "examples/traces/faculty-idle-stop.jsonl";
    let got = replay_ok(&["replay", "--config", path, trace], &[]);
    assert_eq!(got[1], act(32_000, "stop", "faculty", "idle"));
    let got = replay_ok(
        &["replay", "--config", path, trace],
        &[("CDC_POLICY__IDLE_TIMEOUT", "30s")],
    );
    assert_eq!(got[1], act(42_000, "stop", "faculty", "idle"));
    let got = replay_ok(&["replay", trace], &[("CDC_POLICY__TABLES__FACULTY__PAUSED", "true")]);
    // Paused, faculty never starts; the job the trace then reports RUNNING is adopted and stopped when idle.
    assert_eq!(got, vec![act(72_000, "stop", "faculty", "idle")]);
}

#[test]
fn bad_lines_name_their_number_the_rest_still_runs_and_the_exit_code_is_1() {
    let trace = "{\"t_ms\":0,\"input\":\"activity\",\"table\":\"faculty\",\"records\":1}\n\
                 {\"t_ms\":10,\"input\":\"activity\",\"table\":\"faculty\"}\n\
                 {broken\n\
                 {\"t_ms\":20,\"input\":\"activity\",\"table\":\"program\",\"records\":1}\n";
    let out = run(&["replay", "-"], &[], Some(trace));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with("error: trace line 2: missing field `records`"),
        "{err}"
    );
    assert!(lines[1].starts_with("error: trace line 3: not JSON"), "{err}");
    assert_eq!(lines[2], "error: 2 of 4 trace lines were bad and skipped");
    assert_eq!(
        actions(&out),
        vec![
            act(0, "start", "faculty", "changes"),
            act(20, "start", "program", "changes")
        ]
    );
}

#[test]
fn a_missing_trace_file_is_a_usage_error() {
    let out = run(&["replay", "/nonexistent/trace.jsonl"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/trace.jsonl"));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_config_is_a_usage_error() {
    let out = run(
        &["replay", "examples/traces/faculty-burst.jsonl"],
        &[("CDC_POLICY__COOLDOWN", "soon")],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("policy.cooldown"));
}

#[test]
fn events_show_why_a_start_waits() {
    let out = run(
        &["replay", "--events", "examples/traces/cooldown-and-lag.jsonl"],
        &[],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let deferred: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .filter(|v| v["event"] == "deferred")
        .collect();
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0]["t_ms"], 10_000);
    assert_eq!(deferred[0]["table"], "faculty");
    assert_eq!(deferred[0]["until"], 30_000);
    assert_eq!(deferred[0]["cause"], "cooldown");
}

#[test]
fn retry_jitter_follows_the_seed() {
    // Failing starts with no cooldown: the retry times come from the backoff and its seeded jitter.
    let mut trace = String::from("{\"t_ms\":0,\"input\":\"activity\",\"table\":\"faculty\",\"records\":1}\n");
    // Backoffs of 10, 20, 40, 80 and 160 s: each retry starts before the next failure arrives.
    for i in 0..5 {
        trace.push_str(&format!(
            "{{\"t_ms\":{},\"input\":\"start_failed\",\"table\":\"faculty\"}}\n",
            i * 200_000 + 1
        ));
    }
    trace.push_str("{\"t_ms\":1000000,\"input\":\"tick\"}\n");
    let env = [
        ("CDC_POLICY__COOLDOWN", "0s"),
        ("CDC_POLICY__RETRY_INITIAL_BACKOFF", "10s"),
    ];
    let once = |seed: &str| {
        let out = run(&["replay", "--seed", seed, "-"], &env, Some(&trace));
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        actions(&out)
    };
    let first = once("1");
    assert_eq!(first.len(), 6, "{first:?}");
    assert!(first[1..].iter().all(|a| a.3 == "retry"));
    assert_eq!(first, once("1"));
    assert_ne!(first, once("2"));
}
