use super::*;
use crate::config::{REDACTED, SinkKind};

fn credentials() -> Credentials {
    Credentials::from_lookup(|name| Some(format!("{}-value", name.to_lowercase())))
}

#[test]
fn values_are_escaped_into_their_literal() {
    let mut config = Config::default();
    config.iceberg.warehouse = "it's; DROP TABLE x; --".to_owned();
    let statements = render_table_with(&config, "faculty", &credentials()).unwrap();
    let create = statements.iter().find(|s| s.starts_with("CREATE CATALOG")).unwrap();
    assert!(create.contains("'warehouse' = 'it''s; DROP TABLE x; --'"), "{create}");
    // The hostile value did not add statements.
    let plain = render_table_with(&Config::default(), "faculty", &credentials()).unwrap();
    assert_eq!(statements.len(), plain.len());
}

#[test]
fn config_values_reach_the_statements() {
    let mut config = Config::default();
    config.kafka.bootstrap = vec!["k1:9092".into(), "k2:9092".into()];
    config.kafka.topic_template = "srv.public.{table}".into();
    config.kafka.group_template = "grp-{table}".into();
    config.iceberg.database = "campus".into();
    let statements = render_table_with(&config, "room", &credentials()).unwrap();
    let all = statements.join("\n");
    assert!(all.contains("'topic' = 'srv.public.room'"), "{all}");
    assert!(
        all.contains("'properties.bootstrap.servers' = 'k1:9092,k2:9092'"),
        "{all}"
    );
    assert!(all.contains("'properties.group.id' = 'grp-room'"), "{all}");
    assert!(all.contains("`iceberg`.`campus`.`room`"), "{all}");
    // Checkpointing, the job's name and id are the launcher's to set; a template that set them is refused.
    assert_eq!(reserved_key_set(&statements), None, "{all}");
    assert!(all.contains("'credential' = 'polaris_client_id-value:polaris_client_secret-value'"));
    assert!(statements.last().unwrap().starts_with("INSERT INTO"));
}

#[test]
fn missing_credentials_name_the_variable() {
    let partial = Credentials::from_lookup(|name| (name != "POLARIS_CLIENT_SECRET").then(|| "x".to_owned()));
    let error = render_table_with(&Config::default(), "faculty", &partial).unwrap_err();
    let message = error.to_string();
    assert!(matches!(
        error,
        SqlError::MissingCredential {
            variable: "POLARIS_CLIENT_SECRET",
            ..
        }
    ));
    assert!(
        message.contains("POLARIS_CLIENT_SECRET") && message.contains("setup.sql"),
        "{message}"
    );
    let empty = Credentials::from_lookup(|_| Some(String::new()));
    assert!(matches!(
        render_table_with(&Config::default(), "faculty", &empty),
        Err(SqlError::MissingCredential { .. })
    ));
    let colon = Credentials::from_lookup(|name| Some(if name == "POLARIS_CLIENT_ID" { "a:b" } else { "x" }.into()));
    assert!(matches!(
        render_table_with(&Config::default(), "faculty", &colon),
        Err(SqlError::InvalidCredential { .. })
    ));
    assert!(!format!("{:?}", credentials()).contains("value"));
}

#[test]
fn redacted_rendering_and_redaction_hide_every_credential() {
    let shown = render_table_with(&Config::default(), "faculty", &Credentials::redacted()).unwrap();
    let all = shown.join("\n");
    assert!(all.contains("'credential' = '<redacted>:<redacted>'"), "{all}");
    assert!(all.contains("'s3.secret-access-key' = '<redacted>'"), "{all}");
    let real = Credentials::from_lookup(|name| Some(format!("it's-{name}")));
    let echoed = "Flink: bad option 's3.secret-access-key'='it''s-AWS_SECRET_ACCESS_KEY' (it's-POLARIS_CLIENT_ID)";
    let redacted = real.redact(echoed);
    assert!(!redacted.contains("it's") && !redacted.contains("it''s"), "{redacted}");
    assert_eq!(real.redact("nothing secret"), "nothing secret");
    assert!(require_credentials(&Config::default(), &Credentials::redacted()).is_ok());
    let missing = Credentials::from_lookup(|name| (name != "AWS_ACCESS_KEY_ID").then(|| "x".to_owned()));
    let error = require_credentials(&Config::default(), &missing).unwrap_err();
    assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
}

#[test]
fn the_start_up_check_asks_only_for_the_configured_sinks_credentials() {
    let mut jdbc = Config::default();
    jdbc.sink.kind = SinkKind::Jdbc;
    let password_only = Credentials::from_lookup(|name| (name == "SINK_JDBC_PASSWORD").then(|| "pw".to_owned()));
    assert!(require_credentials(&jdbc, &password_only).is_ok());
    let error = require_credentials(&jdbc, &Credentials::default()).unwrap_err();
    assert!(error.to_string().contains("SINK_JDBC_PASSWORD"), "{error}");
    let error = require_credentials(&Config::default(), &password_only).unwrap_err();
    assert!(error.to_string().contains("POLARIS_CLIENT_ID"), "{error}");
    let iceberg_only = Credentials::from_lookup(|name| (name != "SINK_JDBC_PASSWORD").then(|| "x".to_owned()));
    assert!(require_credentials(&Config::default(), &iceberg_only).is_ok());
}

#[test]
fn unknown_table_lists_the_known_ones() {
    let error = render_table_with(&Config::default(), "nope", &credentials()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("unknown table `nope`; known tables: class, course, faculty"),
        "{message}"
    );
    assert!(message.ends_with("student_fee, students"), "{message}");
}

#[test]
fn a_folder_overrides_and_adds_templates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
    std::fs::write(dir.path().join(SETUP_FILE), "SET 'x' = '{{ warehouse }}';").unwrap();
    std::fs::write(
        dir.path().join(TABLES_DIR).join("audit_log.sql"),
        "INSERT INTO t SELECT * FROM s -- {{ topic }}\n;",
    )
    .unwrap();
    std::fs::write(dir.path().join(TABLES_DIR).join("notes.txt"), "ignored").unwrap();
    let mut config = Config::default();
    config.flink.sql_dir = Some(dir.path().to_owned());
    let tables = known_tables(&config).unwrap();
    assert_eq!(tables.len(), 13);
    assert!(tables.contains(&"audit_log".to_owned()));
    // The override's setup needs no credential, so none is required.
    let statements = render_table_with(&config, "audit_log", &Credentials::default()).unwrap();
    assert_eq!(
        statements,
        vec!["SET 'x' = 'polariscatalog'", "INSERT INTO t SELECT * FROM s"]
    );
    let faculty = render_table_with(&config, "faculty", &Credentials::default()).unwrap();
    assert_eq!(faculty[0], "SET 'x' = 'polariscatalog'");
    assert!(faculty.len() > 2);

    std::fs::write(dir.path().join(TABLES_DIR).join("bad-name.sql"), "SELECT 1;").unwrap();
    assert!(matches!(known_tables(&config), Err(TemplateError::BadFileName { .. })));
}

#[test]
fn template_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
    let mut config = Config::default();
    config.flink.sql_dir = Some(dir.path().to_owned());
    let file = dir.path().join(TABLES_DIR).join("t.sql");
    let cases: [(&str, &str); 6] = [
        ("SELECT '{{ no_such_placeholder }}';", "undefined value"),
        ("SELECT '{{ topic ';", "syntax error"),
        ("SELECT 'open;", "string literal opened on line 1 is never closed"),
        ("-- nothing but a comment;", "renders to no statement"),
        ("CREATE TEMPORARY VIEW v AS SELECT 1;", "submits no job (no INSERT"),
        (
            "SET 'pipeline.name' = 'mine';\nINSERT INTO t SELECT 1;",
            "sets 'pipeline.name', which the launcher sets for every job",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&file, text).unwrap();
        // Found when the templates are loaded, before any table starts, and for every table.
        // As shown: the error and its causes.
        let message = crate::logging::chain(&Templates::load(&config).unwrap_err()).to_string();
        assert_eq!(
            crate::logging::chain(&render_table_with(&config, "faculty", &credentials()).unwrap_err()).to_string(),
            message
        );
        assert!(
            message.contains(needle) && message.contains("t.sql"),
            "{text}: {message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}

#[test]
fn templates_are_read_once_and_rendered_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
    std::fs::write(
        dir.path().join(TABLES_DIR).join("audit_log.sql"),
        "INSERT INTO t SELECT '{{ topic }}';",
    )
    .unwrap();
    let mut config = Config::default();
    config.flink.sql_dir = Some(dir.path().to_owned());
    let templates = Templates::load(&config).unwrap();
    let tables = templates.tables();
    assert!(tables.iter().any(|t| t == "audit_log") && tables.iter().any(|t| t == "faculty"));
    assert!(!tables.iter().any(|t| t == "nope"));
    // The folder may go away (or change) after start-up: starts render what was loaded.
    drop(dir);
    let statements = templates.render("audit_log", &credentials()).unwrap();
    assert_eq!(
        statements.last().map(String::as_str),
        Some("INSERT INTO t SELECT 'university-server.public.audit_log'")
    );
    assert!(templates.require_credentials(&credentials()).is_ok());
}

#[test]
fn every_builtin_table_sinks_where_its_insert_writes() {
    let mut jdbc = Config::default();
    jdbc.sink.kind = SinkKind::Jdbc;
    for config in [Config::default(), jdbc] {
        let templates = Templates::load(&config).unwrap();
        for table in templates.tables() {
            let statements = templates.render(&table, &Credentials::redacted()).unwrap();
            let insert = statements.last().unwrap();
            let target = insert.lines().next().unwrap().trim_start_matches("INSERT INTO ");
            let create = statements
                .iter()
                .find(|s| s.contains(&format!("TABLE {target} (")) || s.contains(&format!("EXISTS {target} (")))
                .unwrap_or_else(|| panic!("{table}: no CREATE of {target}: {statements:#?}"));
            assert!(create.contains(") WITH (\n    '"), "{table}: {create}");
            assert!(!create.contains("{{"), "{table}: {create}");
        }
    }
}

/// The source's options as each of the twelve built-in templates spelled them out before `{{ source_options }}`.
const SOURCE_OPTIONS_AS_WRITTEN: &str = "    'connector' = 'kafka',
    'topic' = '{{ topic }}',
    'properties.bootstrap.servers' = '{{ bootstrap }}',
    'properties.group.id' = '{{ group_id }}',
    -- Resume from the group's committed offsets; the very first run starts at the beginning of the topic.
    'scan.startup.mode' = 'group-offsets',
    'properties.auto.offset.reset' = 'earliest',
    -- The Debezium envelope (before/after/op) as the connector writes it: JSON without schemas.
    'format' = 'debezium-json',
    'debezium-json.schema-include' = 'false'";

#[test]
fn every_builtin_table_renders_as_when_it_wrote_the_source_options_out() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
    for &(table, text) in &BUILTIN_TABLES {
        assert_eq!(text.matches("{{ source_options }}").count(), 1, "{table}");
        let written_out = text.replace("{{ source_options }}", SOURCE_OPTIONS_AS_WRITTEN);
        std::fs::write(dir.path().join(TABLES_DIR).join(format!("{table}.sql")), written_out).unwrap();
    }
    let mut odd = Config::default();
    odd.kafka.bootstrap = vec!["k1:9092".into(), "o'k2:9092".into()];
    odd.kafka.topic_template = "srv'1.public.{table}".into();
    odd.kafka.group_template = "grp-'{table}'".into();
    let mut jdbc = odd.clone();
    jdbc.sink.kind = SinkKind::Jdbc;
    for config in [Config::default(), odd, jdbc] {
        let mut as_written = config.clone();
        as_written.flink.sql_dir = Some(dir.path().to_owned());
        let builtin = Templates::load(&config).unwrap();
        let written = Templates::load(&as_written).unwrap();
        for &(table, _) in &BUILTIN_TABLES {
            assert_eq!(
                builtin.render(table, &credentials()).unwrap(),
                written.render(table, &credentials()).unwrap(),
                "{table} ({:?} sink)",
                config.sink.kind
            );
        }
    }
}

/// A SCRAM cluster's configuration, its password in the config as `CDC_KAFKA__SASL__PASSWORD` puts it.
fn sasl_config(password: &str) -> Config {
    let mut config = Config::default();
    config.kafka.sasl = Some(crate::config::SaslConfig {
        mechanism: crate::config::SaslMechanism::ScramSha512,
        username: "cdc".to_owned(),
        password: crate::config::Secret::new(password),
        aws: None,
        oauth: None,
    });
    config
}

#[test]
fn the_kafka_password_is_submitted_but_never_shown_and_always_masked() {
    let password = "p\"a\\s's";
    let config = sasl_config(password);
    let jaas = r#"password="p\"a\\s''s";"#;
    // The process's credentials take the Kafka password from the configuration.
    assert_eq!(Credentials::from_env(&config.kafka).redact(password), REDACTED);
    // What the launcher submits: the password, escaped for JAAS, then for SQL.
    let real = credentials().with_kafka_password(crate::config::Secret::new(password));
    let submitted = Templates::load(&config)
        .unwrap()
        .render("room", &real)
        .unwrap()
        .join("\n");
    assert!(submitted.contains(jaas), "{submitted}");
    // What `render` prints and the dry-run launcher logs: the placeholder only.
    for table in Templates::load(&config).unwrap().tables() {
        let shown = render_table_with(&config, &table, &Credentials::redacted())
            .unwrap()
            .join("\n");
        assert!(shown.contains(r#"password="<redacted>";"#), "{shown}");
        for form in [password, "p\"a\\s''s", r#"p\"a\\s's"#, r#"p\"a\\s''s"#] {
            assert!(!shown.contains(form), "{table}: {shown}");
        }
    }
    // A Flink error echoing the statement, or the value in any of its forms, is masked.
    let echoed = format!("bad option: {submitted} / {password} / p\"a\\s''s / p\\\"a\\\\s's");
    let masked = real.redact(&echoed);
    assert!(!masked.contains("a\\s") && !masked.contains("a\\\\s"), "{masked}");
    assert!(masked.contains(r#"password="<redacted>";"#), "{masked}");
    let forms = real.redact(&format!("{password} / p\"a\\s''s / p\\\"a\\\\s's / {jaas}"));
    assert_eq!(forms, "<redacted> / <redacted> / <redacted> / password=\"<redacted>\";");
    assert!(!format!("{real:?}").contains("p\"a"), "{real:?}");
}

#[test]
fn a_sasl_cluster_without_the_password_names_its_variable() {
    let config = sasl_config("pw");
    // Credentials made without the configuration (as a caller that forgot it would) lack the Kafka password.
    let without = credentials();
    let error = render_table_with(&config, "room", &without).unwrap_err();
    assert!(
        error.to_string().contains("CDC_KAFKA__SASL__PASSWORD") && error.to_string().contains("source_options"),
        "{error}"
    );
    let error = require_credentials(&config, &without).unwrap_err();
    assert!(error.to_string().contains("CDC_KAFKA__SASL__PASSWORD"), "{error}");
    assert!(require_credentials(&config, &without.with_kafka_password(crate::config::Secret::new("pw"))).is_ok());
}

/// The sidecar on SCRAM, the jobs with their own PLAIN login and an encrypted key for mutual TLS.
fn jobs_config() -> Config {
    let mut config = sasl_config("watcher-pw");
    config.kafka.jobs.sasl = Some(crate::config::SaslConfig {
        mechanism: crate::config::SaslMechanism::Plain,
        username: "reader".to_owned(),
        password: crate::config::Secret::new("reader'pw"),
        aws: None,
        oauth: None,
    });
    config.kafka.jobs.tls.enabled = Some(true);
    config.kafka.jobs.tls.keystore_file = Some("/flink/client.pem".into());
    config.kafka.jobs.tls.key_password = Some(crate::config::Secret::new("key\"pw"));
    config
}

#[test]
fn the_jobs_own_secrets_are_submitted_but_never_shown_and_always_masked() {
    let config = jobs_config();
    // As `Credentials::from_env` makes them: the sink's from the environment, the Kafka ones from the configuration.
    let real = (config.kafka.job_secrets().into_iter()).fold(credentials(), |real, (variable, secret)| {
        real.with_kafka_secret(variable, secret.clone())
    });
    let submitted = render_table_with(&config, "room", &real).unwrap().join("\n");
    assert!(
        submitted.contains(r#"PlainLoginModule required username="reader" password="reader''pw";'"#),
        "{submitted}"
    );
    assert!(
        submitted.contains(r#"'properties.ssl.key.password' = 'key"pw'"#),
        "{submitted}"
    );
    assert!(
        !submitted.contains("watcher"),
        "the sidecar's login stays the sidecar's: {submitted}"
    );
    let shown = render_table_with(&config, "room", &Credentials::redacted())
        .unwrap()
        .join("\n");
    assert!(
        shown.contains(r#"username="reader" password="<redacted>";'"#),
        "{shown}"
    );
    assert!(
        shown.contains("'properties.ssl.key.password' = '<redacted>'"),
        "{shown}"
    );
    assert!(!shown.contains("reader'") && !shown.contains("key\""), "{shown}");
    // Flink echoing the statement, or any secret in any escaped form, is masked; the sidecar's password too.
    let echoed = real.redact(&format!(
        "{submitted} / reader'pw / reader''pw / key\\\"pw / watcher-pw"
    ));
    assert!(
        !echoed.contains("reader'pw") && !echoed.contains("reader''pw"),
        "{echoed}"
    );
    assert!(!echoed.contains("key\"pw") && !echoed.contains("key\\\"pw"), "{echoed}");
    assert!(!echoed.contains("watcher-pw"), "{echoed}");
}

#[test]
fn the_jobs_missing_secrets_name_their_variables() {
    let config = jobs_config();
    // Credentials with the sidecar's password only: the jobs' login needs its own.
    let sidecar_only = credentials().with_kafka_password(crate::config::Secret::new("watcher-pw"));
    let error = require_credentials(&config, &sidecar_only).unwrap_err().to_string();
    assert!(error.contains("CDC_KAFKA__JOBS__SASL__PASSWORD"), "{error}");
    let with_login = sidecar_only.with_kafka_secret(KAFKA_JOBS_SASL_PASSWORD, crate::config::Secret::new("pw"));
    let error = render_table_with(&config, "room", &with_login).unwrap_err().to_string();
    assert!(
        error.contains("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD") && error.contains("source_options"),
        "{error}"
    );
    let all = with_login.with_kafka_secret(KAFKA_JOBS_TLS_KEY_PASSWORD, crate::config::Secret::new("k"));
    assert!(require_credentials(&config, &all).is_ok());
}

/// An OAUTHBEARER cluster's configuration, its client secret in the config as
/// `CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET` puts it.
fn oauthbearer_config(secret: &str) -> Config {
    let mut config = Config::default();
    config.kafka.sasl = Some(crate::config::SaslConfig {
        mechanism: crate::config::SaslMechanism::OAuthBearer,
        username: String::new(),
        password: crate::config::Secret::default(),
        aws: None,
        oauth: Some(crate::config::OauthConfig {
            token_endpoint: "https://idp.example/token".to_owned(),
            client_id: "cdc-jobs".to_owned(),
            client_secret: crate::config::Secret::new(secret),
            ..Default::default()
        }),
    });
    config
}

#[test]
fn the_oauth_client_secret_is_submitted_but_never_shown_and_always_masked() {
    let secret = "c\"l'i\\ent";
    let config = oauthbearer_config(secret);
    let jaas = r#"clientSecret="c\"l''i\\ent";"#;
    // The process's credentials take the client secret from the configuration.
    assert_eq!(Credentials::from_env(&config.kafka).redact(secret), REDACTED);
    // What the launcher submits: the secret, escaped for JAAS, then for SQL.
    let real = credentials().with_kafka_secret(KAFKA_SASL_OAUTH_CLIENT_SECRET, crate::config::Secret::new(secret));
    let submitted = Templates::load(&config)
        .unwrap()
        .render("room", &real)
        .unwrap()
        .join("\n");
    assert!(submitted.contains(jaas), "{submitted}");
    // What `render` prints and the dry-run launcher logs: the placeholder only.
    let shown = render_table_with(&config, "room", &Credentials::redacted())
        .unwrap()
        .join("\n");
    assert!(shown.contains(r#"clientSecret="<redacted>";"#), "{shown}");
    assert!(!shown.contains("l'i") && !shown.contains("l''i"), "{shown}");
    // A Flink error echoing the statement, or the secret in its escaped forms, is masked.
    let masked = real.redact(&format!("bad option: {submitted} / c\\\"l'i\\\\ent / c\"l''i\\ent"));
    assert!(!masked.contains("l'i") && !masked.contains("l''i"), "{masked}");
    assert!(masked.contains(r#"clientSecret="<redacted>";"#), "{masked}");
}

#[test]
fn an_oauthbearer_cluster_without_the_client_secret_names_its_variable() {
    let config = oauthbearer_config("s");
    let error = require_credentials(&config, &credentials()).unwrap_err();
    assert!(
        error.to_string().contains("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET"),
        "{error}"
    );
    // The SASL password is not what OAUTHBEARER needs.
    let with_password = credentials().with_kafka_password(crate::config::Secret::new("pw"));
    assert!(require_credentials(&config, &with_password).is_err());
    let with_secret = credentials().with_kafka_secret(KAFKA_SASL_OAUTH_CLIENT_SECRET, crate::config::Secret::new("s"));
    assert!(require_credentials(&config, &with_secret).is_ok());
}

#[test]
fn changes_name_the_tables_added_removed_and_changed() {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join(TABLES_DIR);
    std::fs::create_dir(&tables).unwrap();
    std::fs::write(tables.join("audit_log.sql"), "INSERT INTO t SELECT 1;").unwrap();
    let mut config = Config::default();
    config.flink.sql_dir = Some(dir.path().to_owned());
    let old = Templates::load(&config).unwrap();
    assert!(old.changes(&Templates::load(&config).unwrap()).is_empty());
    // The built-in faculty's own text in a file is no change.
    std::fs::write(tables.join("faculty.sql"), BUILTIN_TABLES[2].1).unwrap();
    assert!(old.changes(&Templates::load(&config).unwrap()).is_empty());

    std::fs::remove_file(tables.join("audit_log.sql")).unwrap();
    std::fs::write(tables.join("notes.sql"), "INSERT INTO n SELECT 1;").unwrap();
    std::fs::write(tables.join("room.sql"), "INSERT INTO r SELECT 2;").unwrap();
    std::fs::write(dir.path().join(SETUP_FILE), "SET 'a' = 'b';").unwrap();
    let changes = old.changes(&Templates::load(&config).unwrap());
    assert_eq!(
        changes,
        TemplateChanges {
            added: vec!["notes".into()],
            removed: vec!["audit_log".into()],
            changed: vec!["room".into()],
            setup_changed: true,
        }
    );
}
