//! Loading, layering, checks and error texts of the whole configuration.
// figment's Jail closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use super::*;
use std::time::Duration;

use figment::Jail;

use crate::model::Op;

/// Some tables of the built-in SQL templates, which the CLI checks the topic pattern against after loading.
const TEMPLATED: [&str; 3] = ["class", "course", "faculty"];

/// Loads as the CLI does: the configuration, then its topic pattern against the templated tables.
fn load_in(jail: &Jail, toml: Option<&str>) -> Result<Config, ConfigErrors> {
    let config = match toml {
        Some(text) => {
            jail.create_file("c.toml", text).map_err(super::parse_error)?;
            Config::load(Some(Path::new("c.toml")))
        }
        None => Config::load(None),
    }?;
    config.check_templated_topics(&TEMPLATED.map(str::to_owned))?;
    Ok(config)
}

#[test]
fn defaults_match_the_reference_system() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.policy.cooldown, Duration::from_secs(30));
        assert_eq!(c.policy.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.kafka.poll_interval, Duration::from_secs(1));
        let topics = c.kafka.topic_regex().map_err(|e| e.to_string())?;
        assert!(topics.is_match("university-server.public.faculty"));
        assert!(!topics.is_match("__debezium-heartbeat.university-server"));
        assert_eq!(c.server.listen.port(), 8080);
        Ok(())
    });
}

#[test]
fn env_beats_file_beats_defaults() {
    Jail::expect_with(|jail| {
        let file = "[kafka]\npoll_interval = \"2s\"\ntopic_refresh = \"20s\"\n";
        let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.poll_interval, Duration::from_secs(2));
        jail.set_env("CDC_KAFKA__POLL_INTERVAL", "250ms");
        jail.set_env("CDC_KAFKA__BOOTSTRAP", "a:1, b:2");
        jail.set_env("CDC_SERVER__TOKEN", "12345");
        jail.set_env("CDC_CONFIG", "ignored-by-figment.toml");
        let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.poll_interval, Duration::from_millis(250));
        assert_eq!(c.kafka.topic_refresh, Duration::from_secs(20));
        assert_eq!(c.kafka.request_timeout, Duration::from_secs(5));
        assert_eq!(c.kafka.bootstrap, vec!["a:1", "b:2"]);
        assert_eq!(c.server.token.as_ref().map(Secret::expose), Some("12345"));
        Ok(())
    });
}

#[test]
fn per_table_overrides_merge_into_defaults() {
    Jail::expect_with(|jail| {
        let file =
            "[policy]\ncooldown = \"5s\"\n[policy.tables.faculty]\nidle_timeout = \"2m\"\noperations = [\"d\"]\n";
        let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
        let faculty = c.policy.for_table("faculty");
        assert_eq!(faculty.cooldown, Duration::from_secs(5));
        assert_eq!(faculty.idle_timeout, Duration::from_secs(120));
        assert_eq!(faculty.operations, vec![Op::Delete]);
        let program = c.policy.for_table("program");
        assert_eq!(program.idle_timeout, Duration::from_secs(60));
        assert_eq!(program.operations, Op::ALL.to_vec());
        Ok(())
    });
}

#[test]
fn include_and_exclude_decide_what_is_managed() {
    let mut p = PolicyConfig::default();
    assert!(p.manages("anything"));
    p.include = vec!["faculty".into(), "program".into()];
    p.exclude = vec!["program".into()];
    assert!(p.manages("faculty"));
    assert!(!p.manages("program"));
    assert!(!p.manages("students"));
}

fn error_of(toml: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut message = String::new();
    Jail::expect_with(|jail| {
        for (k, v) in env {
            jail.set_env(k, v);
        }
        message = match load_in(jail, toml) {
            Ok(_) => "no error".to_owned(),
            Err(e) => e.to_string(),
        };
        Ok(())
    });
    assert!(!message.contains('\n'), "error must be one line: {message}");
    message
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let m = error_of(Some("[kafka]\npoll_intervall = \"1s\"\n"), &[]);
    assert!(m.contains("kafka.poll_intervall: unknown key"), "{m}");
    let m = error_of(None, &[("CDC_FLINK__NOPE", "1")]);
    assert!(m.contains("flink.nope: unknown key"), "{m}");
    assert!(m.contains("CDC_FLINK__NOPE"), "{m}");
    let m = error_of(Some("[policy.tables.faculty]\ncooldwn = \"1s\"\n"), &[]);
    assert!(m.contains("policy.tables.faculty.cooldwn: unknown key"), "{m}");
}

#[test]
fn bad_values_name_key_and_value() {
    let m = error_of(None, &[("CDC_KAFKA__POLL_INTERVAL", "soon")]);
    assert!(m.contains("kafka.poll_interval"), "{m}");
    assert!(m.contains("soon"), "{m}");
    let m = error_of(Some("[kafka]\ntopic_pattern = \"(\"\n"), &[]);
    assert!(m.starts_with("kafka.topic_pattern:"), "{m}");
    assert!(m.contains("\"(\""), "{m}");
    let m = error_of(Some("[kafka]\nbootstrap = []\n"), &[]);
    assert!(m.starts_with("kafka.bootstrap: needs at least one"), "{m}");
    let m = error_of(None, &[("CDC_KAFKA__BOOTSTRAP", ",")]);
    assert!(m.starts_with("kafka.bootstrap: needs at least one"), "{m}");
    let m = error_of(Some("[kafka]\nbootstrap = [\"nohost\"]\n"), &[]);
    assert!(m.starts_with("kafka.bootstrap: expected host:port"), "{m}");
    let m = error_of(Some("[policy.tables.\"bad-name\"]\npaused = true\n"), &[]);
    assert!(m.starts_with("policy.tables.bad-name: not a valid table name"), "{m}");
    let m = error_of(Some("[policy]\ninclude = [\"1abc\"]\n"), &[]);
    assert!(m.contains("policy.include") && m.contains("1abc"), "{m}");
    let m = error_of(Some("[policy]\noperations = [\"x\"]\n"), &[]);
    assert!(m.contains("policy.operations"), "{m}");
    let m = error_of(Some("[flink]\nsql_gateway_url = \"ftp://x\"\n"), &[]);
    assert!(m.starts_with("flink.sql_gateway_url: expected an http"), "{m}");
    let m = error_of(Some("[flink]\ncheckpoint_interval = \"0s\"\n"), &[]);
    assert!(
        m.starts_with("flink.checkpoint_interval: must be greater than 0"),
        "{m}"
    );
    let m = error_of(Some("[flink]\nstarts_per_minute = 0\n"), &[]);
    assert!(m.starts_with("flink.starts_per_minute: must be at least 1"), "{m}");
    let m = error_of(Some("[kafka.tls]\nca_file = \"/nonexistent/ca.pem\"\n"), &[]);
    assert!(m.contains("kafka.tls.ca_file: file not found"), "{m}");
    let m = error_of(Some("[server]\nlisten = \"nowhere\"\n"), &[]);
    assert!(m.contains("server.listen"), "{m}");
}

#[test]
fn job_template_keys_have_defaults_and_are_validated() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.topic_for("faculty"), "university-server.public.faculty");
        assert_eq!(c.flink.sql_dir, None);
        assert_eq!(c.flink.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.iceberg.database, "university");
        assert!(c.iceberg.s3_path_style_access);
        jail.set_env("CDC_ICEBERG__CATALOG_URI", "http://polaris:8181/api/catalog");
        jail.set_env("CDC_KAFKA__TOPIC_TEMPLATE", "srv.{table}");
        jail.set_env("CDC_KAFKA__TOPIC_PATTERN", r"^srv\..+$");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.iceberg.catalog_uri, "http://polaris:8181/api/catalog");
        assert_eq!(c.kafka.topic_for("room"), "srv.room");
        Ok(())
    });
    let m = error_of(Some("[kafka]\ntopic_template = \"fixed\"\n"), &[]);
    assert!(m.starts_with("kafka.topic_template: must contain {table}"), "{m}");
    let m = error_of(Some("[kafka]\ntopic_template = \"srv.{table}\"\n"), &[]);
    assert!(
        m.starts_with("kafka.topic_template: kafka.topic_pattern ") && m.contains("\"srv.class\""),
        "{m}"
    );
    let m = error_of(
        Some(
            "[kafka]\ntopic_pattern = '^u\\.(faculty|program)$'\ntopic_template = \"u.{table}\"\n[policy]\ninclude = [\"faculty\", \"room\"]\n",
        ),
        &[],
    );
    assert!(
        m.starts_with("kafka.topic_template:") && m.contains("table room"),
        "{m}"
    );
    let m = error_of(Some("[kafka]\ntopic_template = \"{table}.{table}\"\n"), &[]);
    assert!(m.starts_with("kafka.topic_template: must contain {table} once"), "{m}");
    let m = error_of(Some("[kafka]\nrouted_topics = [\"a(\"]\n"), &[]);
    assert!(m.starts_with("kafka.routed_topics:") && m.contains("a("), "{m}");
    let m = error_of(None, &[("CDC_KAFKA__MAX_TABLES", "0")]);
    assert!(m.starts_with("kafka.max_tables: must be at least 1"), "{m}");
    let m = error_of(Some("[flink]\nsql_dir = \"/nonexistent/sql\"\n"), &[]);
    assert!(m.starts_with("flink.sql_dir: not a directory"), "{m}");
    let m = error_of(None, &[("CDC_FLINK__CHECKPOINT_INTERVAL", "0s")]);
    assert!(
        m.starts_with("flink.checkpoint_interval: must be greater than 0"),
        "{m}"
    );
    let m = error_of(None, &[("CDC_ICEBERG__CATALOG_URI", "polaris:8181")]);
    assert!(m.starts_with("iceberg.catalog_uri:"), "{m}");
    let m = error_of(None, &[("CDC_ICEBERG__DATABASE", "uni-versity")]);
    assert!(m.starts_with("iceberg.database: not a valid database name"), "{m}");
    let m = error_of(None, &[("CDC_ICEBERG__WAREHOUSE", " ")]);
    assert!(m.starts_with("iceberg.warehouse: must not be empty"), "{m}");
    let m = error_of(None, &[("CDC_ICEBERG__BUCKET", "x")]);
    assert!(m.contains("iceberg.bucket: unknown key"), "{m}");
}

#[test]
fn sink_is_iceberg_by_default_and_jdbc_keys_are_checked_only_for_jdbc() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.sink.kind, SinkKind::Iceberg);
        assert_eq!(c.sink.jdbc.url, "jdbc:postgresql://127.0.0.1:5432/university");
        assert_eq!(c.sink.jdbc.table_for("room"), "room");
        assert_eq!(c.sink.jdbc.username, "postgres");
        // Unused JDBC keys are not validated while the sink is Iceberg.
        jail.set_env("CDC_SINK__JDBC__URL", "nonsense");
        assert!(load_in(jail, None).is_ok());
        jail.clear_env();
        let c = load_in(
            jail,
            Some(
                "[sink]\nkind = \"jdbc\"\n[sink.jdbc]\nurl = \"jdbc:postgresql://db:5433/lake\"\n\
                 table_name = \"cdc.{table}_copy\"\nusername = \"writer\"\n",
            ),
        )
        .map_err(|e| e.to_string())?;
        assert_eq!(c.sink.kind, SinkKind::Jdbc);
        assert_eq!(c.sink.jdbc.url, "jdbc:postgresql://db:5433/lake");
        assert_eq!(c.sink.jdbc.table_for("room"), "cdc.room_copy");
        assert_eq!(c.sink.jdbc.username, "writer");
        Ok(())
    });
    let jdbc = [("CDC_SINK__KIND", "jdbc")];
    let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__URL", "postgresql://db/x")]);
    assert!(m.starts_with("sink.jdbc.url: expected a jdbc: URL"), "{m}");
    let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__TABLE_NAME", "fixed")]);
    assert!(m.starts_with("sink.jdbc.table_name: must contain {table}"), "{m}");
    let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__USERNAME", " ")]);
    assert!(m.starts_with("sink.jdbc.username: must not be empty"), "{m}");
    let m = error_of(None, &[("CDC_SINK__KIND", "kafka")]);
    assert!(m.contains("sink.kind") && m.contains("kafka"), "{m}");
    let m = error_of(None, &[("CDC_SINK__JDBC__PASSWORD", "x")]);
    assert!(m.contains("sink.jdbc.password: unknown key"), "{m}");
}

#[test]
fn check_output_redacts_secrets_and_loads_back() {
    let mut c = Config::default();
    c.server.token = Some(Secret::new("hunter2"));
    c.kafka.sasl = Some(SaslConfig {
        mechanism: SaslMechanism::ScramSha512,
        username: "u".into(),
        password: Secret::new("s3cret"),
        aws: None,
        oauth: None,
    });
    let text = c.to_toml();
    assert!(!text.contains("hunter2") && !text.contains("s3cret"), "{text}");
    assert!(text.contains("<redacted>"));
    assert!(!format!("{c:?}").contains("s3cret"));
    let back: Config = toml::from_str(&text).expect("check output is valid config");
    assert_eq!(back.kafka.poll_interval, c.kafka.poll_interval);
    assert_eq!(back.policy.operations, c.policy.operations);
}

#[test]
fn whole_floats_are_integers_but_fractions_are_not() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, Some("[flink]\nmax_concurrent_jobs = 8.0\n")).map_err(|e| e.to_string())?;
        assert_eq!(c.flink.max_concurrent_jobs, 8);
        Ok(())
    });
    let m = error_of(Some("[flink]\nmax_concurrent_jobs = 8.5\n"), &[]);
    assert!(m.contains("flink.max_concurrent_jobs") && m.contains("8.5"), "{m}");
    let m = error_of(Some("[kafka]\nsample_records = -1\n"), &[]);
    assert!(m.contains("kafka.sample_records") && m.contains("-1"), "{m}");
}

#[test]
fn a_removed_key_is_a_one_line_error_saying_so() {
    for (toml, env, source) in [
        (Some("[kafka]\nbatch_watermarks = true\n"), &[][..], "file"),
        (
            None,
            &[("CDC_KAFKA__BATCH_WATERMARKS", "false")][..],
            "CDC_KAFKA__BATCH_WATERMARKS",
        ),
    ] {
        let m = error_of(toml, env);
        assert!(
            m.starts_with("kafka.batch_watermarks: removed") && m.contains("delete it") && m.contains(source),
            "{m}"
        );
        assert!(!m.contains("unknown key"), "{m}");
    }
}

#[test]
fn the_topic_template_maps_topics_back_to_tables() {
    let mut k = KafkaConfig::default();
    assert_eq!(k.table_of_topic("university-server.public.faculty"), Some("faculty"));
    for none in [
        "university-server.public.",
        "university-server.public.a.b",
        "university-server.public.bad-name",
        "other.public.faculty",
        "university-server.transaction",
    ] {
        assert_eq!(k.table_of_topic(none), None, "{none}");
    }
    k.topic_template = "cdc.{table}.v1".into();
    assert_eq!(k.table_of_topic("cdc.room.v1"), Some("room"));
    assert_eq!(k.table_of_topic(&k.topic_for("student_fee")), Some("student_fee"));
    for none in ["cdc.room.v2", "cdc..v1", "cdc.a-b.v1", "other.room.v1"] {
        assert_eq!(k.table_of_topic(none), None, "{none}");
    }
    k.topic_template = "no placeholder".into();
    assert_eq!(k.table_of_topic("no placeholder"), None);
}

#[test]
fn every_mistake_is_reported_at_once_each_naming_its_key() {
    let mut errors = Vec::new();
    Jail::expect_with(|jail| {
        jail.set_env("CDC_FLINK__STARTS_PER_MINUTE", "0");
        let file = "[kafka]\npoll_intervall = \"1s\"\n[server]\nidle_timeout = \"0s\"\nmax_connections = 0\n\
                    [policy]\ninclude = [\"ok\", \"not-ok\"]\n[nonsense]\nx = 1\n";
        errors = match load_in(jail, Some(file)) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| crate::logging::chain(e).to_string()).collect(),
        };
        Ok(())
    });
    let expected = [
        "nonsense: unknown key",
        "kafka.poll_intervall: unknown key",
        "policy.include: not a valid table name (letters, digits and _, not starting with a digit, at most 63) \
         (got \"not-ok\")",
        "flink.starts_per_minute: must be at least 1 (got 0)",
        "server.idle_timeout: must be greater than 0 (got \"0s\")",
        "server.max_connections: must be at least 1 (got 0)",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, start) in errors.iter().zip(expected) {
        assert!(error.starts_with(start), "{error:?} should start with {start:?}");
    }
}

#[test]
fn rules_across_sections_wait_until_every_section_is_valid() {
    // Alone, a topic template the pattern does not watch is reported ...
    let m = error_of(None, &[("CDC_KAFKA__TOPIC_TEMPLATE", "srv.{table}")]);
    assert!(m.starts_with("kafka.topic_template: kafka.topic_pattern"), "{m}");
    // ... but beside a broken section it is not, since it may only repeat that section's mistake.
    let m = error_of(
        None,
        &[
            ("CDC_KAFKA__TOPIC_TEMPLATE", "srv.{table}"),
            ("CDC_POLICY__INCLUDE", "a-b"),
        ],
    );
    assert!(
        m.starts_with("policy.include:") && !m.contains("kafka.topic_template"),
        "{m}"
    );
}

#[test]
fn the_jobs_kafka_keys_default_to_the_sidecars_and_override_each_one() {
    Jail::expect_with(|jail| {
        jail.set_env("CDC_KAFKA__BOOTSTRAP", "sidecar:9093");
        jail.set_env("CDC_KAFKA__SASL__MECHANISM", "SCRAM-SHA-512");
        jail.set_env("CDC_KAFKA__SASL__USERNAME", "watcher");
        jail.set_env("CDC_KAFKA__SASL__PASSWORD", "watcher-pw");
        jail.create_file("ca.pem", "")?;
        jail.set_env("CDC_KAFKA__TLS__ENABLED", "true");
        jail.set_env("CDC_KAFKA__TLS__CA_FILE", "ca.pem");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        // Nothing under [kafka.jobs]: the jobs connect as the sidecar does.
        let client = c.kafka.jobs_client();
        assert_eq!(client.bootstrap, ["sidecar:9093"]);
        let (origin, sasl) = client.sasl.expect("the sidecar's login");
        assert_eq!((origin, sasl.username.as_str()), (SaslOrigin::Sidecar, "watcher"));
        let tls = client.tls.expect("the sidecar's TLS");
        assert_eq!(tls.ca_file, Some(Path::new("ca.pem")));
        assert_eq!((tls.keystore_file, tls.key_password), (None, false));
        assert_eq!(c.kafka.job_secrets().len(), 1);
        // Each key of [kafka.jobs] replaces the sidecar's, the password from its own variable.
        jail.set_env(
            "CDC_KAFKA__JOBS__BOOTSTRAP",
            "kafka-0.internal:9094,kafka-1.internal:9094",
        );
        jail.set_env("CDC_KAFKA__JOBS__SASL__MECHANISM", "PLAIN");
        jail.set_env("CDC_KAFKA__JOBS__SASL__USERNAME", "reader");
        jail.set_env("CDC_KAFKA__JOBS__SASL__PASSWORD", "reader-pw");
        jail.set_env("CDC_KAFKA__JOBS__TLS__CA_FILE", "/opt/flink/kafka/ca.pem");
        jail.set_env("CDC_KAFKA__JOBS__TLS__KEYSTORE_FILE", "/opt/flink/kafka/client.pem");
        jail.set_env("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "key-pw");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        let client = c.kafka.jobs_client();
        assert_eq!(client.bootstrap, ["kafka-0.internal:9094", "kafka-1.internal:9094"]);
        let (origin, sasl) = client.sasl.expect("the jobs' login");
        assert_eq!(origin, SaslOrigin::Jobs);
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str()),
            (SaslMechanism::Plain, "reader")
        );
        let tls = client.tls.expect("TLS");
        assert_eq!(tls.ca_file, Some(Path::new("/opt/flink/kafka/ca.pem")));
        assert_eq!(tls.keystore_file, Some(Path::new("/opt/flink/kafka/client.pem")));
        assert!(tls.key_password);
        let secrets: Vec<_> = c
            .kafka
            .job_secrets()
            .into_iter()
            .map(|(v, s)| (v, s.expose()))
            .collect();
        assert_eq!(
            secrets,
            [
                ("CDC_KAFKA__SASL__PASSWORD", "watcher-pw"),
                ("CDC_KAFKA__JOBS__SASL__PASSWORD", "reader-pw"),
                ("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "key-pw"),
            ]
        );
        // The sidecar's own settings are untouched.
        assert_eq!(c.kafka.bootstrap, ["sidecar:9093"]);
        // `enabled` overrides both ways.
        jail.set_env("CDC_KAFKA__JOBS__TLS__ENABLED", "false");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert!(c.kafka.jobs_client().tls.is_none());
        assert!(c.kafka.tls.enabled);
        assert_eq!(c.warnings().len(), 2, "{:?}", c.warnings());
        assert!(c.warnings()[0].starts_with("kafka.jobs.tls.ca_file is set but the jobs do not use TLS"));
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("CDC_KAFKA__JOBS__TLS__ENABLED", "true");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        let tls = c.kafka.jobs_client().tls.expect("TLS for the jobs only");
        assert_eq!(tls.ca_file, None);
        assert!(!c.kafka.tls.enabled);
        Ok(())
    });
}

#[test]
fn the_jobs_kafka_keys_are_checked_naming_the_key() {
    // The jobs' paths live on Flink's side: never opened here, but absolute and not blank.
    let m = error_of(
        Some(
            "[kafka.jobs.tls]\nenabled = true\nca_file = \"/nonexistent/ca.pem\"\nkeystore_file = \"/nonexistent/client.pem\"\n",
        ),
        &[],
    );
    assert_eq!(m, "no error");
    let m = error_of(Some("[kafka.jobs.tls]\nca_file = \"certs/ca.pem\"\n"), &[]);
    assert_eq!(
        m,
        "kafka.jobs.tls.ca_file: must be an absolute path (as Flink's TaskManagers see the file) (got \"certs/ca.pem\")"
    );
    let m = error_of(None, &[("CDC_KAFKA__JOBS__TLS__KEYSTORE_FILE", " ")]);
    assert_eq!(m, "kafka.jobs.tls.keystore_file: must not be empty (got \" \")");
    // The jobs' login is checked as the sidecar's is, and a missing password names its variable.
    let login = [
        ("CDC_KAFKA__JOBS__SASL__MECHANISM", "SCRAM-SHA-256"),
        ("CDC_KAFKA__JOBS__SASL__USERNAME", "reader"),
    ];
    let m = error_of(None, &login);
    assert_eq!(
        m,
        "kafka.jobs.sasl.password: must be set; pass it as CDC_KAFKA__JOBS__SASL__PASSWORD (got \"\")"
    );
    let m = error_of(None, &[login[0], ("CDC_KAFKA__JOBS__SASL__PASSWORD", "pw")]);
    assert!(m.starts_with("kafka.jobs.sasl.username: must not be empty"), "{m}");
    let m = error_of(
        None,
        &[
            ("CDC_KAFKA__SASL__MECHANISM", "PLAIN"),
            ("CDC_KAFKA__SASL__USERNAME", "u"),
        ],
    );
    assert!(
        m.starts_with("kafka.sasl.password: must be set; pass it as CDC_KAFKA__SASL__PASSWORD"),
        "{m}"
    );
    let m = error_of(None, &[("CDC_KAFKA__JOBS__SASL__MECHANISM", "GSSAPI")]);
    assert!(m.starts_with("kafka.jobs.sasl.mechanism"), "{m}");
    let m = error_of(None, &[("CDC_KAFKA__JOBS__BOOTSTRAP", "nohost")]);
    assert!(m.starts_with("kafka.jobs.bootstrap: expected host:port"), "{m}");
    let m = error_of(Some("[kafka.jobs]\nbootstrap = []\n"), &[]);
    assert!(
        m.starts_with("kafka.jobs.bootstrap: needs at least one host:port"),
        "{m}"
    );
    let m = error_of(None, &[("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "pw")]);
    assert!(
        m.starts_with("kafka.jobs.tls.key_password: is the password of kafka.jobs.tls.keystore_file's key"),
        "{m}"
    );
    assert!(!m.contains("pw\""), "{m}");
    let m = error_of(None, &[("CDC_KAFKA__JOBS__TLSS__ENABLED", "true")]);
    assert!(m.contains("kafka.jobs.tlss: unknown key"), "{m}");
}

#[test]
fn a_sidecar_with_mutual_tls_needs_a_keystore_for_the_jobs() {
    Jail::expect_with(|jail| {
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            jail.create_file(file, "")?;
        }
        let mtls =
            "[kafka.tls]\nenabled = true\nca_file = \"ca.pem\"\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n";
        let m = load_in(jail, Some(mtls)).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            m,
            "kafka.jobs.tls.keystore_file: must be set when kafka.tls.cert_file is: the jobs need their client key \
             (PKCS#8) and certificate chain in one PEM file, as Flink sees it (or set kafka.jobs.tls.enabled = \
             false) (got None)"
        );
        let with_keystore = format!("{mtls}\n[kafka.jobs.tls]\nkeystore_file = \"/flink/client.pem\"\n");
        let c = load_in(jail, Some(&with_keystore)).map_err(|e| e.to_string())?;
        let tls = c.kafka.jobs_client().tls.expect("TLS");
        assert_eq!(tls.keystore_file, Some(Path::new("/flink/client.pem")));
        let without_tls = format!("{mtls}\n[kafka.jobs.tls]\nenabled = false\n");
        load_in(jail, Some(&without_tls)).map_err(|e| e.to_string())?;
        Ok(())
    });
}

#[test]
fn the_jobs_secrets_never_show_in_check() {
    let mut c = Config::default();
    c.kafka.jobs.sasl = Some(SaslConfig {
        mechanism: SaslMechanism::Plain,
        username: "reader".into(),
        password: Secret::new("reader-s3cret"),
        aws: None,
        oauth: None,
    });
    c.kafka.jobs.tls.keystore_file = Some("/flink/client.pem".into());
    c.kafka.jobs.tls.key_password = Some(Secret::new("key-s3cret"));
    let text = c.to_toml();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(
        text.contains("[kafka.jobs.sasl]") && text.contains("key_password = \"<redacted>\""),
        "{text}"
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let back: Config = toml::from_str(&text).expect("check output is valid config");
    assert_eq!(back.kafka.jobs.tls.keystore_file, c.kafka.jobs.tls.keystore_file);
}

#[test]
fn the_secret_variables_are_the_ones_the_environment_layer_reads() {
    for (variable, key) in [
        (KAFKA_SASL_PASSWORD, "kafka.sasl.password"),
        (KAFKA_JOBS_SASL_PASSWORD, "kafka.jobs.sasl.password"),
        (KAFKA_JOBS_TLS_KEY_PASSWORD, "kafka.jobs.tls.key_password"),
    ] {
        assert_eq!(
            variable,
            format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
        );
    }
    assert_eq!(SaslOrigin::Jobs.password_variable(), KAFKA_JOBS_SASL_PASSWORD);
    assert_eq!(SaslOrigin::Sidecar.password_variable(), KAFKA_SASL_PASSWORD);
}

#[test]
fn aws_msk_iam_needs_tls_takes_no_password_and_checks_its_section() {
    let iam = "[kafka.tls]\nenabled = true\n[kafka.sasl]\nmechanism = \"AWS_MSK_IAM\"\n";
    Jail::expect_with(|jail| {
        let c = load_in(jail, Some(iam)).map_err(|e| e.to_string())?;
        let sasl = c.kafka.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::AwsMskIam);
        assert!(sasl.aws.is_none() && sasl.username.is_empty());
        jail.set_env("CDC_KAFKA__SASL__AWS__REGION", "eu-west-1");
        jail.set_env(
            "CDC_KAFKA__SASL__AWS__STS_ENDPOINT",
            "https://sts.eu-west-1.amazonaws.com",
        );
        let c = load_in(jail, Some(iam)).map_err(|e| e.to_string())?;
        let aws = c.kafka.sasl.and_then(|s| s.aws).expect("aws");
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
        assert_eq!(aws.profile, "");
        Ok(())
    });
    let plaintext = "[kafka.sasl]\nmechanism = \"AWS_MSK_IAM\"\n";
    let m = error_of(Some(plaintext), &[]);
    assert!(
        m.contains("kafka.tls.enabled") && m.contains("must be true with kafka.sasl.mechanism = AWS_MSK_IAM"),
        "{m}"
    );
    let m = error_of(Some(iam), &[("CDC_KAFKA__SASL__PASSWORD", "hunter2")]);
    assert!(
        m.contains("kafka.sasl.password") && m.contains("only for PLAIN and SCRAM, not AWS_MSK_IAM"),
        "{m}"
    );
    assert!(!m.contains("hunter2"), "{m}");
    let m = error_of(Some(iam), &[("CDC_KAFKA__SASL__USERNAME", "cdc")]);
    assert!(
        m.contains("kafka.sasl.username") && m.contains("only for PLAIN and SCRAM, not AWS_MSK_IAM"),
        "{m}"
    );
    let m = error_of(Some(iam), &[("CDC_KAFKA__SASL__AWS__REGION", "us-east-1.evil.com/")]);
    assert!(
        m.contains("kafka.sasl.aws.region") && m.contains("expected an AWS region"),
        "{m}"
    );
    let m = error_of(
        Some(iam),
        &[("CDC_KAFKA__SASL__AWS__STS_ENDPOINT", "http://sts.example.com/")],
    );
    assert!(
        m.contains("kafka.sasl.aws.sts_endpoint") && m.contains("expected an https:// URL"),
        "{m}"
    );
    assert_eq!(
        error_of(
            Some(iam),
            &[("CDC_KAFKA__SASL__AWS__STS_ENDPOINT", "http://127.0.0.1:4566/")]
        ),
        "no error"
    );
    assert_eq!(
        error_of(Some(iam), &[("CDC_KAFKA__SASL__AWS__CREDENTIALS", "web_identity")]),
        "no error"
    );
    let m = error_of(Some(iam), &[("CDC_KAFKA__SASL__AWS__CREDENTIALS", "irsa")]);
    assert!(
        m.contains("kafka.sasl.aws.credentials") && m.contains("web_identity"),
        "{m}"
    );
    let m = error_of(
        Some(iam),
        &[
            ("CDC_KAFKA__SASL__AWS__CREDENTIALS", "environment"),
            ("CDC_KAFKA__SASL__AWS__PROFILE", "dev"),
        ],
    );
    assert!(
        m.contains("kafka.sasl.aws.profile")
            && m.contains("the shared credentials file only, and kafka.sasl.aws.credentials is \"environment\""),
        "{m}"
    );
    let m = error_of(
        Some(iam),
        &[
            ("CDC_KAFKA__SASL__AWS__CREDENTIALS", "profile"),
            ("CDC_KAFKA__SASL__AWS__STS_ENDPOINT", "https://sts.example.com/"),
        ],
    );
    assert!(
        m.contains("kafka.sasl.aws.sts_endpoint") && m.contains("web identity only"),
        "{m}"
    );
    let m = error_of(Some(iam), &[("CDC_KAFKA__SASL__AWS__REGIN", "x")]);
    assert!(m.contains("kafka.sasl.aws.regin: unknown key"), "{m}");
    let scram =
        "[kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\n[kafka.sasl.aws]\nregion = \"us-east-1\"\n";
    let m = error_of(Some(scram), &[("CDC_KAFKA__SASL__PASSWORD", "pw")]);
    assert!(
        m.contains("kafka.sasl.aws") && m.contains("only for AWS_MSK_IAM"),
        "{m}"
    );
    let m = error_of(Some("[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\n"), &[]);
    assert!(m.contains("kafka.sasl.password: must be set"), "{m}");
}

/// `[kafka.sasl]` for OAUTHBEARER, with `extra` lines in `[kafka.sasl.oauth]`.
fn oauthbearer_toml(extra: &str) -> String {
    format!(
        "[kafka.sasl]\nmechanism = \"OAUTHBEARER\"\n[kafka.sasl.oauth]\ntoken_endpoint = \"https://idp.example/oauth2/token\"\n\
         client_id = \"cdc\"\n{extra}"
    )
}

#[test]
fn oauthbearer_reads_its_section_and_the_client_secret_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET", "s3cret");
        let toml = oauthbearer_toml(
            "scope = \"kafka\"\naudience = \"api://kafka\"\n[kafka.sasl.oauth.extensions]\nlogicalCluster = \"lkc-1\"\n",
        );
        let c = load_in(jail, Some(&toml)).map_err(|e| e.to_string())?;
        let sasl = c.kafka.sasl.as_ref().expect("sasl");
        assert_eq!(sasl.mechanism, SaslMechanism::OAuthBearer);
        let oauth = sasl.oauth.as_ref().expect("oauth");
        assert_eq!(oauth.client_secret.expose(), "s3cret");
        assert_eq!(
            (oauth.scope.as_str(), oauth.audience.as_str()),
            ("kafka", "api://kafka")
        );
        assert_eq!(
            oauth.extensions.get("logicalCluster").map(String::as_str),
            Some("lkc-1")
        );
        let shown = c.to_toml();
        assert!(
            !shown.contains("s3cret") && shown.contains("client_secret = \"<redacted>\""),
            "{shown}"
        );
        assert!(
            shown.contains("[kafka.sasl]\nmechanism = \"OAUTHBEARER\"\n\n[kafka.sasl.oauth]"),
            "{shown}"
        );
        Ok(())
    });
}

#[test]
fn each_mechanism_needs_its_own_credentials_and_no_others() {
    // OAUTHBEARER without the secret, without its section, with a password; PLAIN without one, with a section.
    let m = error_of(Some(&oauthbearer_toml("")), &[]);
    assert_eq!(
        m,
        "kafka.sasl.oauth.client_secret: must be set for OAUTHBEARER (CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET) (got \"\")"
    );
    let m = error_of(Some("[kafka.sasl]\nmechanism = \"OAUTHBEARER\"\n"), &[]);
    assert!(
        m.starts_with("kafka.sasl.oauth.token_endpoint: must be set for OAUTHBEARER"),
        "{m}"
    );
    let m = error_of(
        Some(&oauthbearer_toml("")),
        &[
            ("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET", "x"),
            ("CDC_KAFKA__SASL__PASSWORD", "pw"),
        ],
    );
    assert!(
        m.starts_with("kafka.sasl.password: only for PLAIN and SCRAM, not OAUTHBEARER"),
        "{m}"
    );
    assert!(!m.contains("pw\""), "{m}");
    let m = error_of(Some("[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\n"), &[]);
    assert!(
        m.starts_with("kafka.sasl.password: must be set; pass it as CDC_KAFKA__SASL__PASSWORD"),
        "{m}"
    );
    let m = error_of(
        Some("[kafka.sasl]\nmechanism = \"SCRAM-SHA-256\"\n"),
        &[("CDC_KAFKA__SASL__PASSWORD", "pw")],
    );
    assert!(m.starts_with("kafka.sasl.username: must not be empty"), "{m}");
    let plain_with_oauth =
        "[kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\n[kafka.sasl.oauth]\nclient_id = \"c\"\n";
    let m = error_of(Some(plain_with_oauth), &[("CDC_KAFKA__SASL__PASSWORD", "pw")]);
    assert_eq!(m, "kafka.sasl.oauth: only for OAUTHBEARER (got \"PLAIN\")");
}

#[test]
fn a_bad_token_endpoint_or_extension_is_one_line_naming_its_key() {
    let secret = [("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET", "s3cret")];
    let bad = |extra: &str| {
        error_of(
            Some(&format!(
                "[kafka.sasl]\nmechanism = \"OAUTHBEARER\"\n[kafka.sasl.oauth]\nclient_id = \"cdc\"\n{extra}"
            )),
            &secret,
        )
    };
    let m = bad("token_endpoint = \"ftp://idp/token\"\n");
    assert!(
        m.starts_with("kafka.sasl.oauth.token_endpoint: expected an http:// or https:// URL"),
        "{m}"
    );
    let m = bad("token_endpoint = \"https://u:hunter2@idp/token\"\n");
    assert!(
        m.starts_with("kafka.sasl.oauth.token_endpoint: must not carry user or password"),
        "{m}"
    );
    assert!(!m.contains("hunter2") && m.contains("u:<redacted>@idp"), "{m}");
    let m = bad("token_endpoint = \"https://idp/t\"\nextensions = { \"logical-cluster\" = \"x\" }\n");
    assert!(
        m.starts_with("kafka.sasl.oauth.extensions.logical-cluster: an extension's name is letters only"),
        "{m}"
    );
    let m = bad("token_endpoint = \"https://idp/t\"\nextensions = { auth = \"x\" }\n");
    assert!(
        m.starts_with("kafka.sasl.oauth.extensions.auth: \"auth\" is reserved"),
        "{m}"
    );
    let m = bad("token_endpoint = \"https://idp/t\"\nextensions = { pool = \"a\\u0001b\" }\n");
    assert!(
        m.starts_with("kafka.sasl.oauth.extensions.pool: an extension's value is printable ASCII"),
        "{m}"
    );
    let m = bad("token_endpoint = \"https://idp/t\"\nclient_secret = \"\"\nunknown = 1\n");
    assert!(m.contains("kafka.sasl.oauth.unknown: unknown key"), "{m}");
}

#[test]
fn the_jobs_client_class_prefix_is_read_and_a_bad_one_is_refused_naming_the_key() {
    Jail::expect_with(|jail| {
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.jobs_client().class_prefix, "");
        jail.set_env("CDC_KAFKA__JOBS__CLIENT_CLASS_PREFIX", "org.apache.flink.kafka.shaded.");
        let c = load_in(jail, None).map_err(|e| e.to_string())?;
        assert_eq!(c.kafka.jobs_client().class_prefix, "org.apache.flink.kafka.shaded.");
        Ok(())
    });
    let m = error_of(
        None,
        &[("CDC_KAFKA__JOBS__CLIENT_CLASS_PREFIX", "org.apache.flink.kafka.shaded")],
    );
    assert!(
        m.contains("kafka.jobs.client_class_prefix") && m.contains("a Java package prefix ending in '.'"),
        "{m}"
    );
}

#[test]
fn on_schema_drift_defaults_to_alert_is_overridden_per_table_and_a_bad_value_is_named() {
    use crate::model::OnSchemaDrift;
    Jail::expect_with(|jail| {
        let toml = "[policy]\non_schema_drift = \"pause\"\n[policy.tables.course]\non_schema_drift = \"alert\"\n";
        let config = load_in(jail, Some(toml)).expect("valid");
        assert_eq!(config.policy.for_table("faculty").on_schema_drift, OnSchemaDrift::Pause);
        assert_eq!(config.policy.for_table("course").on_schema_drift, OnSchemaDrift::Alert);
        let config = load_in(jail, None).expect("defaults");
        assert_eq!(config.policy.for_table("faculty").on_schema_drift, OnSchemaDrift::Alert);
        Ok(())
    });
    let m = error_of(None, &[("CDC_POLICY__ON_SCHEMA_DRIFT", "stop")]);
    assert!(m.contains("policy.on_schema_drift") && m.contains("stop"), "{m}");
}
