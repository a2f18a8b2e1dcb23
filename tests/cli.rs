//! The real binary's `check` and `version` commands: exit codes, precedence, one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdc-orchestrator"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    // The developer's own CDC_* variables must not leak into these tests.
    for (key, _) in std::env::vars() {
        if key.starts_with("CDC_") {
            cmd.env_remove(key);
        }
    }
    // `check` with the sql-gateway launcher needs the credentials `run` would submit.
    for &(_, variable) in &cdc_orchestrator::sql::CREDENTIALS {
        cmd.env(variable, "test-credential");
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run cdc-orchestrator")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_shipped_example_config_passes_check() {
    let out = run(&["check", "--config", "config/cdc-orchestrator.toml"], &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("[kafka]") && printed.contains("[policy]") && printed.contains("[flink]"));
}

#[test]
fn env_overrides_show_in_check_output() {
    let out = run(&["check"], &[("CDC_KAFKA__POLL_INTERVAL", "250ms")]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("poll_interval = \"250ms\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn config_file_via_env_var() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[policy]\ncooldown = \"7s\"\n").expect("write config");
    let out = run(&["check"], &[("CDC_CONFIG", file.to_str().expect("utf-8 path"))]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cooldown = \"7s\""));
}

fn assert_config_error(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
}

#[test]
fn unknown_key_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[kafka]\nbootstrapp = \"x:1\"\n").expect("write config");
    let out = run(&["check", "--config", file.to_str().expect("utf-8 path")], &[]);
    assert_config_error(&out, &["kafka.bootstrapp", "unknown key"]);
}

#[test]
fn missing_file_exits_2_naming_the_path() {
    let out = run(&["check", "--config", "/nonexistent/cdc.toml"], &[]);
    assert_config_error(&out, &["config file not found", "/nonexistent/cdc.toml"]);
}

#[test]
fn bad_values_exit_2_naming_key_and_value() {
    let cases: [(&str, &str, &[&str]); 4] = [
        ("CDC_POLICY__COOLDOWN", "thirty", &["policy.cooldown", "thirty"]),
        ("CDC_KAFKA__TOPIC_PATTERN", "[a-", &["kafka.topic_pattern", "[a-"]),
        ("CDC_KAFKA__BOOTSTRAP", "", &["kafka.bootstrap"]),
        ("CDC_POLICY__INCLUDE", "[\"no-dash\"]", &["policy.include", "no-dash"]),
    ];
    for (key, value, needles) in cases {
        let out = run(&["check"], &[(key, value)]);
        assert_config_error(&out, needles);
    }
}

#[test]
fn check_refuses_a_topic_template_the_topic_pattern_does_not_watch() {
    let out = run(&["check"], &[("CDC_KAFKA__TOPIC_TEMPLATE", "srv.public.{table}")]);
    assert_config_error(
        &out,
        &["kafka.topic_template", "kafka.topic_pattern", "srv.public.class"],
    );
    let out = run(&["check"], &[("CDC_KAFKA__ROUTED_TOPICS", "[\"all(\"]")]);
    assert_config_error(&out, &["kafka.routed_topics", "all("]);
    let out = run(
        &["check"],
        &[
            ("CDC_KAFKA__TOPIC_TEMPLATE", "srv.public.{table}"),
            ("CDC_KAFKA__TOPIC_PATTERN", r"^srv\.public\..+$"),
            ("CDC_KAFKA__ROUTED_TOPICS", "[\"srv.all\"]"),
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("routed_topics = [\"srv.all\"]"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_log_level_is_a_usage_error() {
    let out = run(&["check", "--log-level", "cdc_orchestrator=loud"], &[]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
}

#[test]
fn version_prints_name_and_version() {
    let out = run(&["version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("cdc-orchestrator {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_cdc-orchestrator")).is_file());
}
