//! The real binary's `check` and `version` commands: exit codes, precedence, one-line errors.

use std::path::Path;
use std::process::Output;

use crate::support;
use support::assert_config_error;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = support::sidecar::command(args);
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

/// The leaves of a TOML table as (dotted key, value).
fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => leaves(&path, inner, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// `value` at the dotted `path` of `table`.
fn at<'t>(table: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Equal, or both durations that humantime reads as the same (`check` prints `60s` as `1m`).
fn same_setting(a: &toml::Value, b: &toml::Value) -> bool {
    let duration = |v: &toml::Value| v.as_str().and_then(|s| humantime::parse_duration(s).ok());
    a == b || duration(a).is_some() && duration(a) == duration(b)
}

#[test]
fn the_shipped_example_config_passes_check_and_every_setting_in_it_is_used() {
    let path = "config/cdc-orchestrator.toml";
    let out = run(&["check", "--config", path], &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout)).expect("check prints TOML");
    let shipped: toml::Table =
        toml::from_str(&std::fs::read_to_string(path).expect("read the shipped config")).expect("shipped TOML");
    let mut settings = Vec::new();
    leaves("", &shipped, &mut settings);
    assert!(settings.len() > 50, "{settings:?}");
    for (key, value) in &settings {
        let resolved = at(&printed, key).unwrap_or_else(|| panic!("{key} missing from check's output"));
        assert!(
            same_setting(value, resolved),
            "{key}: file says {value}, check prints {resolved}"
        );
    }
    // Settings only the file makes: were the file ignored, these would be the built-in defaults.
    let defaults = run(&["check"], &[]);
    let defaults: toml::Table = toml::from_str(&text(&defaults.stdout)).expect("check prints TOML");
    for key in [
        "kafka.bootstrap",
        "flink.sql_gateway_url",
        "policy.tables.payment.idle_timeout",
    ] {
        assert_ne!(at(&printed, key), at(&defaults, key), "{key} should come from the file");
    }
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

#[test]
fn render_gives_the_jobs_the_kafka_login_with_the_password_only_when_asked() {
    let password = "kafka-pw\"'\\secret";
    let env = [
        ("CDC_KAFKA__SASL__MECHANISM", "SCRAM-SHA-256"),
        ("CDC_KAFKA__SASL__USERNAME", "cdc"),
        ("CDC_KAFKA__SASL__PASSWORD", password),
    ];
    let shown = run(&["render", "room"], &env);
    assert!(shown.status.success(), "stderr: {}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("'properties.security.protocol' = 'SASL_PLAINTEXT'"),
        "{shown}"
    );
    assert!(
        shown.contains(r#"ScramLoginModule required username="cdc" password="<redacted>";'"#),
        "{shown}"
    );
    assert!(!shown.contains("kafka-pw"), "{shown}");
    let submitted = run(&["render", "room", "--show-secrets"], &env);
    assert!(submitted.status.success(), "stderr: {}", text(&submitted.stderr));
    let submitted = text(&submitted.stdout);
    assert!(
        submitted.contains(r#"password="kafka-pw\"''\\secret";'"#),
        "{submitted}"
    );
}

#[test]
fn render_gives_the_jobs_their_own_kafka_login_and_key_store_with_the_secrets_only_when_asked() {
    let env = [
        ("CDC_KAFKA__SASL__MECHANISM", "SCRAM-SHA-512"),
        ("CDC_KAFKA__SASL__USERNAME", "watcher"),
        ("CDC_KAFKA__SASL__PASSWORD", "watcher-pw-4801"),
        ("CDC_KAFKA__JOBS__BOOTSTRAP", "kafka-0.internal:9094"),
        ("CDC_KAFKA__JOBS__SASL__MECHANISM", "PLAIN"),
        ("CDC_KAFKA__JOBS__SASL__USERNAME", "reader"),
        ("CDC_KAFKA__JOBS__SASL__PASSWORD", "reader-pw-4802"),
        ("CDC_KAFKA__JOBS__TLS__ENABLED", "true"),
        ("CDC_KAFKA__JOBS__TLS__CA_FILE", "/opt/flink/kafka/ca.pem"),
        ("CDC_KAFKA__JOBS__TLS__KEYSTORE_FILE", "/opt/flink/kafka/client.pem"),
        ("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "key-pw-4803"),
    ];
    let shown = run(&["render", "room"], &env);
    assert!(shown.status.success(), "stderr: {}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    for option in [
        "'properties.bootstrap.servers' = 'kafka-0.internal:9094'",
        "'properties.security.protocol' = 'SASL_SSL'",
        "'properties.sasl.mechanism' = 'PLAIN'",
        r#"PlainLoginModule required username="reader" password="<redacted>";'"#,
        "'properties.ssl.truststore.type' = 'PEM'",
        "'properties.ssl.truststore.location' = '/opt/flink/kafka/ca.pem'",
        "'properties.ssl.keystore.type' = 'PEM'",
        "'properties.ssl.keystore.location' = '/opt/flink/kafka/client.pem'",
        "'properties.ssl.key.password' = '<redacted>'",
    ] {
        assert!(shown.contains(option), "{option} missing:\n{shown}");
    }
    for secret in ["pw-4801", "pw-4802", "pw-4803", "watcher"] {
        assert!(!shown.contains(secret), "{secret}:\n{shown}");
    }
    let submitted = run(&["render", "room", "--show-secrets"], &env);
    assert!(submitted.status.success(), "stderr: {}", text(&submitted.stderr));
    let submitted = text(&submitted.stdout);
    assert!(
        submitted.contains(r#"username="reader" password="reader-pw-4802";'"#),
        "{submitted}"
    );
    assert!(
        submitted.contains("'properties.ssl.key.password' = 'key-pw-4803'"),
        "{submitted}"
    );
    assert!(
        !submitted.contains("watcher"),
        "the sidecar's login is its own: {submitted}"
    );
    // The jobs' login without its password: one line naming the variable, exit 2.
    let without: Vec<_> = env
        .iter()
        .copied()
        .filter(|(k, _)| *k != "CDC_KAFKA__JOBS__SASL__PASSWORD")
        .collect();
    let out = run(&["render", "room", "--show-secrets"], &without);
    assert_config_error(&out, &["kafka.jobs.sasl.password", "CDC_KAFKA__JOBS__SASL__PASSWORD"]);
    let out = run(&["render", "room"], &without);
    assert_config_error(&out, &["kafka.jobs.sasl.password", "CDC_KAFKA__JOBS__SASL__PASSWORD"]);
    // A sidecar on mutual TLS whose jobs have no key store is refused at start, naming the key.
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("x.pem");
    std::fs::write(&pem, "").expect("write");
    let pem = pem.to_str().expect("utf-8 path");
    let mtls = [
        ("CDC_KAFKA__TLS__ENABLED", "true"),
        ("CDC_KAFKA__TLS__CERT_FILE", pem),
        ("CDC_KAFKA__TLS__KEY_FILE", pem),
    ];
    let out = run(&["check"], &mtls);
    assert_config_error(
        &out,
        &["kafka.jobs.tls.keystore_file", "kafka.tls.cert_file", "one PEM file"],
    );
}
