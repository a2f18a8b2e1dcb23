//! The rendered Flink SQL of every table of the example database, checked against the Postgres schema
//! (compose/postgres/init.sql) and the Debezium connector config (debezium/university-connector.json):
//! the source reads what the connector writes, from committed offsets (earliest on the first run), and the
//! sink is an Iceberg v2 upsert table keyed like Postgres, fed by an INSERT that drops no operation.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use cdc_orchestrator::config::{Config, SinkKind};
use cdc_orchestrator::sql::{self, Credentials};
use regex::Regex;

const CREDENTIAL_ENV: [(&str, &str); 4] = [
    ("POLARIS_CLIENT_ID", "test-client"),
    ("POLARIS_CLIENT_SECRET", "test-secret"),
    ("AWS_ACCESS_KEY_ID", "test-access-key"),
    ("AWS_SECRET_ACCESS_KEY", "test-secret-key"),
];

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn credentials() -> Credentials {
    Credentials::from_lookup(|name| {
        CREDENTIAL_ENV
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

/// A `CREATE [TEMPORARY] TABLE` statement, parsed: columns in order, primary key, WITH options.
#[derive(Debug)]
struct Table {
    name: String,
    columns: Vec<(String, String)>,
    primary_key: Vec<String>,
    options: BTreeMap<String, String>,
}

fn unquote(identifier: &str) -> String {
    identifier.trim().trim_matches(|c| c == '`' || c == '"').to_owned()
}

/// Index of the parenthesis that closes the one at `open`.
fn closing_paren(text: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {text}");
}

/// Splits at commas outside parentheses.
fn top_level_items(body: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        items.last_mut().unwrap().push(c);
    }
    items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// Parses the column list of a CREATE TABLE, Postgres or Flink dialect: `name TYPE [constraints]`,
/// `PRIMARY KEY (...) [NOT ENFORCED]`; UNIQUE/FOREIGN KEY/CHECK/CONSTRAINT items are skipped.
fn parse_create_table(statement: &str) -> Table {
    let head =
        Regex::new(r"(?is)^\s*CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([^\s(]+)\s*\(").unwrap();
    let captures = head
        .captures(statement)
        .unwrap_or_else(|| panic!("not a CREATE TABLE: {statement}"));
    let name = captures[1].rsplit('.').next().map(unquote).unwrap();
    let open = captures.get(0).unwrap().end() - 1;
    let close = closing_paren(statement, open);
    let mut columns = Vec::new();
    let mut primary_key = Vec::new();
    let constraint = Regex::new(r"(?i)\s+(NOT\s+NULL|NULL|PRIMARY\s+KEY|UNIQUE|DEFAULT|REFERENCES)\b").unwrap();
    let pk_item = Regex::new(r"(?i)^PRIMARY\s+KEY\s*\(([^)]*)\)").unwrap();
    let inline_pk = Regex::new(r"(?i)PRIMARY\s+KEY").unwrap();
    for item in top_level_items(&statement[open + 1..close]) {
        let upper = item.to_uppercase();
        if let Some(pk) = pk_item.captures(&item) {
            primary_key = pk[1].split(',').map(unquote).collect();
            continue;
        }
        if ["UNIQUE", "FOREIGN", "CHECK", "CONSTRAINT"]
            .iter()
            .any(|k| upper.starts_with(k))
        {
            continue;
        }
        let (column, rest) = item
            .split_once(char::is_whitespace)
            .unwrap_or_else(|| panic!("bad column {item}"));
        let type_end = constraint.find(rest).map_or(rest.len(), |m| m.start());
        let column_type = rest[..type_end].trim().to_uppercase().replace(' ', "");
        if inline_pk.is_match(&rest[type_end..]) {
            primary_key = vec![unquote(column)];
        }
        columns.push((unquote(column), column_type));
    }
    let options = Regex::new(r"'([^']*)'\s*=\s*'((?:[^']|'')*)'")
        .unwrap()
        .captures_iter(&statement[close..])
        .map(|c| (c[1].to_owned(), c[2].replace("''", "'")))
        .collect();
    Table {
        name,
        columns,
        primary_key,
        options,
    }
}

/// Every table of init.sql, in file order.
fn postgres_tables() -> Vec<Table> {
    let statements = sql::split_statements(&repo_file("compose/postgres/init.sql")).expect("init.sql splits");
    statements
        .iter()
        .filter(|s| s.trim_start().to_uppercase().starts_with("CREATE TABLE"))
        .map(|s| parse_create_table(s))
        .collect()
}

fn connector() -> BTreeMap<String, serde_json::Value> {
    serde_json::from_str(&repo_file("debezium/university-connector.json")).expect("connector config is JSON")
}

fn connector_setting(key: &str) -> String {
    match connector().get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        other => panic!("connector config {key}: expected a string, got {other:?}"),
    }
}

/// The Flink type the Kafka source must declare for a Postgres type, given how the connector writes it.
fn source_type(postgres: &str, decimal_mode: &str, time_mode: &str) -> String {
    let base = postgres.split('(').next().unwrap();
    match base {
        "SERIAL" | "INTEGER" | "INT" => "INT".into(),
        "VARCHAR" | "TEXT" => "STRING".into(),
        "BOOLEAN" => "BOOLEAN".into(),
        // decimal.handling.mode=string: "123.45" in JSON, which Flink's JSON format parses into DECIMAL(p,s).
        "DECIMAL" | "NUMERIC" => match decimal_mode {
            "string" => postgres.to_owned(),
            other => panic!("no DDL mapping for decimal.handling.mode={other}"),
        },
        // time.precision.mode=connect: Kafka Connect's Timestamp (epoch ms, int64) and Date (epoch days, int32).
        "TIMESTAMP" => match time_mode {
            "connect" => "BIGINT".into(),
            other => panic!("no DDL mapping for time.precision.mode={other}"),
        },
        "DATE" => match time_mode {
            "connect" => "INT".into(),
            other => panic!("no DDL mapping for time.precision.mode={other}"),
        },
        other => panic!("no mapping for Postgres type {other}"),
    }
}

/// The sink table has Postgres's primary key (not enforced, as Flink requires) and its columns in order, each of
/// the Flink type [`sink_type`] gives.
fn assert_keyed_and_typed_like_postgres(sink: &Table, create: &str, postgres: &Table) {
    let table = &postgres.name;
    assert_eq!(sink.primary_key, postgres.primary_key, "{table}: sink primary key");
    assert!(create.contains("NOT ENFORCED"), "{table}");
    let expected: Vec<(String, String)> = postgres
        .columns
        .iter()
        .map(|(c, t)| (c.clone(), sink_type(t)))
        .collect();
    assert_eq!(sink.columns, expected, "{table}: sink columns");
}

/// The Flink type of the Iceberg column for a Postgres type.
fn sink_type(postgres: &str) -> String {
    match postgres.split('(').next().unwrap() {
        "TIMESTAMP" => "TIMESTAMP(3)".into(),
        "DATE" => "DATE".into(),
        _ => source_type(postgres, "string", "connect"),
    }
}

#[test]
fn init_sql_templates_and_connector_cover_the_same_twelve_tables() {
    let mut postgres: Vec<String> = postgres_tables().into_iter().map(|t| t.name).collect();
    postgres.sort();
    assert_eq!(postgres.len(), 12, "{postgres:?}");
    let templates = sql::known_tables(&Config::default()).unwrap();
    assert_eq!(templates, postgres);
    let mut published: Vec<String> = connector_setting("table.include.list")
        .split(',')
        .map(|t| {
            t.strip_prefix("public.")
                .unwrap_or_else(|| panic!("{t} is not in schema public"))
                .to_owned()
        })
        .collect();
    published.sort();
    assert_eq!(published, postgres);
    // Every embedded template is also on disk (and the other way round), so `flink-sql/` is what runs.
    let mut on_disk: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("flink-sql/tables"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, postgres);
}

#[test]
fn connector_writes_the_envelope_the_sql_reads() {
    let config = connector();
    assert!(
        !config.contains_key("transforms"),
        "no SMT: the Debezium envelope must stay intact"
    );
    for key in ["key.converter", "value.converter"] {
        assert_eq!(
            connector_setting(key),
            "org.apache.kafka.connect.json.JsonConverter",
            "{key}"
        );
        // 'debezium-json.schema-include' = 'false' in every source reads schemaless JSON.
        assert_eq!(connector_setting(&format!("{key}.schemas.enable")), "false", "{key}");
    }
    assert_eq!(connector_setting("decimal.handling.mode"), "string");
    assert_eq!(connector_setting("time.precision.mode"), "connect");
    let heartbeat: u64 = connector_setting("heartbeat.interval.ms").parse().unwrap();
    assert!(heartbeat > 0);
    assert_eq!(connector_setting("publication.autocreate.mode"), "filtered");
    assert_eq!(connector_setting("plugin.name"), "pgoutput");
    // The sidecar's default topic template is <topic.prefix>.public.{table}.
    let topic_template = Config::default().kafka.topic_template;
    assert_eq!(
        topic_template,
        format!("{}.public.{{table}}", connector_setting("topic.prefix"))
    );
    // Flink's debezium-json rejects an UPDATE whose `before` is null: every table must log full rows.
    let init = repo_file("compose/postgres/init.sql");
    for table in postgres_tables() {
        let statement = format!("ALTER TABLE {} REPLICA IDENTITY FULL;", table.name);
        assert!(init.contains(&statement), "init.sql lacks `{statement}`");
    }
}

#[test]
fn every_table_renders_a_correct_job() {
    let config = Config::default();
    let decimal_mode = connector_setting("decimal.handling.mode");
    let time_mode = connector_setting("time.precision.mode");
    for postgres in postgres_tables() {
        let table = &postgres.name;
        let statements = sql::render_table_with(&config, table, &credentials()).unwrap();
        let creates: Vec<&String> = statements
            .iter()
            .filter(|s| s.contains("TABLE") && s.starts_with("CREATE"))
            .collect();
        assert_eq!(creates.len(), 2, "{table}: one source and one sink: {creates:?}");
        let source = parse_create_table(creates[0]);
        let sink = parse_create_table(creates[1]);
        assert!(
            creates[0].starts_with("CREATE TEMPORARY TABLE"),
            "{table}: the source is session-scoped"
        );

        // Source: what the connector writes, resuming from the group's offsets, earliest on the first run.
        let expect_source = [
            ("connector", "kafka".to_owned()),
            ("format", "debezium-json".to_owned()),
            ("debezium-json.schema-include", "false".to_owned()),
            ("scan.startup.mode", "group-offsets".to_owned()),
            ("properties.auto.offset.reset", "earliest".to_owned()),
            ("properties.group.id", format!("cdc-{table}")),
            ("topic", format!("university-server.public.{table}")),
            ("properties.bootstrap.servers", "127.0.0.1:9092".to_owned()),
        ];
        for (key, value) in expect_source {
            assert_eq!(source.options.get(key), Some(&value), "{table}: source option {key}");
        }
        let expected: Vec<(String, String)> = postgres
            .columns
            .iter()
            .map(|(c, t)| (c.clone(), source_type(t, &decimal_mode, &time_mode)))
            .collect();
        assert_eq!(source.columns, expected, "{table}: source columns");
        // The same key on both sides tells the planner the changelog is keyed like the sink (no materializer).
        assert_eq!(source.primary_key, postgres.primary_key, "{table}: source primary key");

        // Sink: Iceberg v2 upsert table keyed like Postgres.
        assert_eq!(sink.name, *table);
        assert!(
            creates[1].contains("`iceberg`.`university`."),
            "{table}: {}",
            creates[1]
        );
        assert_eq!(
            sink.options.get("format-version").map(String::as_str),
            Some("2"),
            "{table}"
        );
        assert_eq!(
            sink.options.get("write.upsert.enabled").map(String::as_str),
            Some("true"),
            "{table}"
        );
        assert!(!postgres.primary_key.is_empty(), "{table}: Postgres primary key");
        assert_keyed_and_typed_like_postgres(&sink, creates[1], &postgres);
        for key in &postgres.primary_key {
            let not_null = Regex::new(&format!(r"`{key}`\s+\S+\s+NOT NULL")).unwrap();
            assert!(
                not_null.is_match(creates[1]),
                "{table}: key column {key} must be NOT NULL"
            );
        }

        // The INSERT is last, reads the source, writes the sink, and filters nothing: deletes reach Iceberg.
        let insert = statements.last().unwrap();
        assert!(
            insert.starts_with(&format!("INSERT INTO `iceberg`.`university`.`{table}`")),
            "{insert}"
        );
        assert!(insert.ends_with(&format!(
            "FROM `default_catalog`.`default_database`.`cdc_source_{table}`"
        )));
        let upper = insert.to_uppercase();
        for forbidden in ["WHERE", "HAVING", "__OP", "__DELETED", "QUALIFY", "JOIN"] {
            assert!(
                !upper.contains(forbidden),
                "{table}: the INSERT must not filter ({forbidden}): {insert}"
            );
        }
        // The select list yields every column, in the sink's order.
        let select = insert.split_once("SELECT").unwrap().1.rsplit_once("FROM").unwrap().0;
        let outputs: Vec<String> = top_level_items(select)
            .iter()
            .map(|item| unquote(item.rsplit(char::is_whitespace).next().unwrap()))
            .collect();
        let columns: Vec<String> = postgres.columns.iter().map(|(c, _)| c.clone()).collect();
        assert_eq!(outputs, columns, "{table}: INSERT select list");
        assert_eq!(
            statements.iter().filter(|s| s.starts_with("INSERT")).count(),
            1,
            "{table}: one job"
        );
    }
}

#[test]
fn setup_builds_the_polaris_catalog_on_minio_with_credentials_from_the_environment() {
    let statements = sql::render_table_with(&Config::default(), "faculty", &credentials()).unwrap();
    let catalog = statements
        .iter()
        .find(|s| s.starts_with("CREATE CATALOG"))
        .expect("catalog statement");
    let options: BTreeMap<String, String> = Regex::new(r"'([^']*)'\s*=\s*'([^']*)'")
        .unwrap()
        .captures_iter(catalog)
        .map(|c| (c[1].to_owned(), c[2].to_owned()))
        .collect();
    let expect = [
        ("type", "iceberg"),
        ("catalog-type", "rest"),
        ("uri", "http://127.0.0.1:8181/api/catalog"),
        ("warehouse", "polariscatalog"),
        ("credential", "test-client:test-secret"),
        ("scope", "PRINCIPAL_ROLE:ALL"),
        ("io-impl", "org.apache.iceberg.aws.s3.S3FileIO"),
        ("s3.endpoint", "http://127.0.0.1:9000"),
        ("s3.path-style-access", "true"),
        ("s3.access-key-id", "test-access-key"),
        ("s3.secret-access-key", "test-secret-key"),
    ];
    for (key, value) in expect {
        assert_eq!(
            options.get(key).map(String::as_str),
            Some(value),
            "catalog option {key}"
        );
    }
    assert!(statements.contains(&"CREATE DATABASE IF NOT EXISTS `iceberg`.`university`".to_owned()));
    assert!(statements.contains(&"SET 'table.local-time-zone' = 'UTC'".to_owned()));
    // Checkpointing, the job name and id are the launcher's (it refuses templates that set them).
    assert!(
        !statements
            .iter()
            .any(|s| s.starts_with("SET 'execution.checkpointing.interval'") || s.starts_with("SET 'pipeline."))
    );
    // The files hold placeholders only, never a credential.
    let setup = repo_file("flink-sql/setup.sql");
    for (option, placeholder) in [
        ("credential", "'{{ polaris_client_id }}:{{ polaris_client_secret }}'"),
        ("s3.access-key-id", "'{{ s3_access_key_id }}'"),
        ("s3.secret-access-key", "'{{ s3_secret_access_key }}'"),
    ] {
        assert!(
            setup.contains(&format!("'{option}' = {placeholder}")),
            "setup.sql {option}"
        );
    }
}

fn jdbc_config() -> Config {
    let mut config = Config::default();
    config.sink.kind = SinkKind::Jdbc;
    config.sink.jdbc.url = "jdbc:postgresql://db:5433/lake".to_owned();
    config.sink.jdbc.table_name = "cdc.{table}".to_owned();
    config.sink.jdbc.username = "writer".to_owned();
    config
}

/// With `[sink] kind = "jdbc"` every table writes to a database table through Flink's JDBC connector, keyed
/// like Postgres (so the connector upserts on the key and applies deletes), from the same source and SELECT
/// as the Iceberg job; no Iceberg catalog is set up and no Iceberg credential is needed.
#[test]
fn every_table_renders_a_jdbc_sink_keyed_like_postgres_when_configured() {
    let config = jdbc_config();
    let only_password = Credentials::from_lookup(|name| (name == "SINK_JDBC_PASSWORD").then(|| "pw'1".to_owned()));
    for postgres in postgres_tables() {
        let table = &postgres.name;
        let statements = sql::render_table_with(&config, table, &only_password).unwrap();
        let iceberg = sql::render_table_with(&Config::default(), table, &credentials()).unwrap();
        assert!(
            !statements.iter().any(|s| s.to_lowercase().contains("iceberg")),
            "{table}: {statements:#?}"
        );
        let sink_name = format!("`default_catalog`.`default_database`.`cdc_sink_{table}`");
        let creates: Vec<&String> = statements.iter().filter(|s| s.starts_with("CREATE")).collect();
        assert_eq!(creates.len(), 2, "{table}: one source and one sink: {creates:?}");
        // The source is the Iceberg job's, unchanged.
        assert!(iceberg.contains(creates[0]), "{table}: {}", creates[0]);
        assert!(
            creates[1].starts_with(&format!("CREATE TEMPORARY TABLE {sink_name} (")),
            "{table}: {}",
            creates[1]
        );
        let drop = format!("DROP TEMPORARY TABLE IF EXISTS {sink_name}");
        let position = |s: &String| statements.iter().position(|x| x == s);
        assert!(position(&drop) < position(creates[1]), "{table}: {statements:#?}");

        let sink = parse_create_table(creates[1]);
        let expect: BTreeMap<String, String> = [
            ("connector", "jdbc".to_owned()),
            ("url", "jdbc:postgresql://db:5433/lake".to_owned()),
            ("table-name", format!("cdc.{table}")),
            ("username", "writer".to_owned()),
            ("password", "pw'1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(sink.options, expect, "{table}");
        assert_keyed_and_typed_like_postgres(&sink, creates[1], &postgres);

        // The same SELECT as the Iceberg job, into the JDBC table, as the one INSERT, last.
        let insert = statements.last().unwrap();
        let iceberg_insert = iceberg.last().unwrap();
        assert!(
            insert.starts_with(&format!("INSERT INTO {sink_name}\nSELECT")),
            "{insert}"
        );
        assert_eq!(
            insert.split_once('\n').unwrap().1,
            iceberg_insert.split_once('\n').unwrap().1,
            "{table}"
        );
        assert_eq!(statements.iter().filter(|s| s.starts_with("INSERT")).count(), 1);
    }
}

#[test]
fn each_sink_needs_only_its_own_credentials() {
    let password_only = |name: &str| (name == "SINK_JDBC_PASSWORD").then(|| "pw".to_owned());
    // The JDBC sink needs its password, and no Iceberg credential.
    let error = sql::render_table_with(&jdbc_config(), "room", &Credentials::default()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("environment variable SINK_JDBC_PASSWORD is not set")
            && message.contains("tables/room.sql"),
        "{message}"
    );
    assert!(sql::render_table_with(&jdbc_config(), "room", &Credentials::from_lookup(password_only)).is_ok());
    // The Iceberg sink needs the catalog and S3 credentials, and not the JDBC password.
    assert!(sql::render_table_with(&Config::default(), "room", &credentials()).is_ok());
    let error = sql::render_table_with(&Config::default(), "room", &Credentials::from_lookup(password_only))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("environment variable POLARIS_CLIENT_ID is not set"),
        "{error}"
    );
    // The files hold no password: the sink's options, password included, come from the sidecar, which fills
    // it from the environment.
    for postgres in postgres_tables() {
        let text = repo_file(&format!("flink-sql/tables/{}.sql", postgres.name));
        assert!(text.contains("{{ sink_options }}"), "{}", postgres.name);
        assert!(text.contains("{{ source_options }}"), "{}", postgres.name);
        assert!(!text.contains("password"), "{}", postgres.name);
    }
    let rendered = sql::render_table_with(&jdbc_config(), "room", &Credentials::from_lookup(password_only)).unwrap();
    assert!(
        rendered.iter().any(|s| s.contains("'password' = 'pw'")),
        "{rendered:#?}"
    );
    // Through the binary, configured from the environment.
    let out = run_cli(&["render", "room", "--show-secrets"], &[("CDC_SINK__KIND", "jdbc")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SINK_JDBC_PASSWORD is not set"), "{err}");
    let out = run_cli(
        &["render", "room"],
        &[("CDC_SINK__KIND", "jdbc"), ("SINK_JDBC_PASSWORD", "pw")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("'connector' = 'jdbc'"), "{printed}");
    assert!(printed.contains("'password' = '<redacted>'"), "{printed}");
    assert!(!printed.contains("CREATE CATALOG"), "{printed}");
}

fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = crate::support::sidecar::command(args);
    cmd.envs(env.iter().copied());
    cmd.output().expect("run cdc-orchestrator")
}

#[test]
fn render_prints_exactly_the_statements_of_the_table() {
    let config = Config::default();
    for table in sql::known_tables(&config).unwrap() {
        let out = run_cli(&["render", &table, "--show-secrets"], &CREDENTIAL_ENV);
        assert!(
            out.status.success(),
            "{table}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        let expected = sql::render_table_with(&config, &table, &credentials()).unwrap();
        assert_eq!(printed, cdc_orchestrator::cli::render::to_script(&expected), "{table}");
        // Each statement ends with `;`, and splitting the output gives the statements back.
        assert_eq!(sql::split_statements(&printed).unwrap(), expected, "{table}");
        for block in printed.split("\n\n") {
            assert!(block.trim_end().ends_with(';'), "{table}: {block}");
        }
    }
}

#[test]
fn render_follows_configuration_from_the_environment() {
    let mut env = CREDENTIAL_ENV.to_vec();
    env.push(("CDC_KAFKA__BOOTSTRAP", "kafka:9092"));
    env.push(("CDC_ICEBERG__CATALOG_URI", "http://polaris:8181/api/catalog"));
    let out = run_cli(&["render", "program"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("'properties.bootstrap.servers' = 'kafka:9092'"),
        "{printed}"
    );
    assert!(
        printed.contains("'uri' = 'http://polaris:8181/api/catalog'"),
        "{printed}"
    );
}

#[test]
fn render_of_an_unknown_table_fails_listing_the_known_ones() {
    let out = run_cli(&["render", "no_such_table"], &CREDENTIAL_ENV);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown table `no_such_table`"), "{err}");
    for table in sql::known_tables(&Config::default()).unwrap() {
        assert!(err.contains(&table), "{table} missing from: {err}");
    }
}

#[test]
fn render_without_credentials_names_the_missing_variable() {
    let out = run_cli(&["render", "faculty", "--show-secrets"], &CREDENTIAL_ENV[..1]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("POLARIS_CLIENT_SECRET is not set"), "{err}");
}

/// A JSON value for a column as the connector writes it (see `source_type`), and as Flink prints it back after
/// the INSERT's conversions. `variant` 0 or 1 gives two different rows.
fn sample_value(postgres_type: &str, column: &str, variant: i64) -> (serde_json::Value, String) {
    match postgres_type.split('(').next().unwrap() {
        "SERIAL" | "INTEGER" => (serde_json::json!(7 + variant), (7 + variant).to_string()),
        "VARCHAR" | "TEXT" => {
            let text = format!("{}{variant}'\"é", &column[..column.len().min(3)]);
            (serde_json::json!(text), text)
        }
        // decimal.handling.mode=string
        "DECIMAL" => {
            let text = format!("{}.2{variant}", 1 + variant);
            (serde_json::json!(text), text)
        }
        // time.precision.mode=connect: epoch milliseconds and epoch days, printed back in UTC.
        "TIMESTAMP" => {
            let millis = 1_732_492_800_123 + variant * 86_399_001;
            let shown = chrono::DateTime::from_timestamp_millis(millis).unwrap().naive_utc();
            (
                serde_json::json!(millis),
                shown.format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
            )
        }
        "DATE" => {
            let days = 19_825 + variant * 400;
            let shown = chrono::DateTime::from_timestamp(days * 86_400, 0).unwrap().date_naive();
            (serde_json::json!(days), shown.to_string())
        }
        "BOOLEAN" => (serde_json::json!(variant == 1), (variant == 1).to_string()),
        other => panic!("no sample for {other}"),
    }
}

/// Rewrites the WITH (...) options at the end of a CREATE TABLE statement.
fn with_options(statement: &str, options: &[(&str, String)]) -> String {
    let start = statement.rfind(") WITH (").expect("a WITH clause") + 1;
    let rendered: Vec<String> = options.iter().map(|(k, v)| format!("'{k}' = '{v}'")).collect();
    format!("{} WITH ({})", &statement[..start], rendered.join(", "))
}

/// Runs every table's rendered statements on a real, embedded Flink 1.18.1 with the Debezium records the
/// connector config produces: the Kafka source is swapped for a file with the same format, the Iceberg sink for
/// a blackhole table with the same DDL, and the Iceberg catalog for an in-memory one (no Iceberg jars here).
/// Flink must accept every DDL and plan the INSERT into the sink, and the SELECT of the INSERT must turn a
/// snapshot read, an update and a delete into +I, -U/+U and -D rows with the values Postgres had.
#[test]
fn flink_runs_the_rendered_sql_on_the_connector_records() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/flink-1.18.1/lib");
    assert!(
        lib.join("flink-table-planner-loader-1.18.1.jar").is_file(),
        "{} is missing: run scripts/install-tools.sh (it extracts Flink 1.18.1's jars from PyPI)",
        lib.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    let mut statements: Vec<String> = Vec::new();
    let mut expected = String::new();
    for postgres in postgres_tables() {
        let table = &postgres.name;
        let rows: Vec<Vec<(serde_json::Value, String)>> = (0..2)
            .map(|variant| {
                postgres
                    .columns
                    .iter()
                    .map(|(column, t)| {
                        // The key stays the same across the update.
                        let variant = if postgres.primary_key.contains(column) {
                            0
                        } else {
                            variant
                        };
                        sample_value(t, column, variant)
                    })
                    .collect()
            })
            .collect();
        let record = |values: &[(serde_json::Value, String)]| -> serde_json::Value {
            postgres
                .columns
                .iter()
                .zip(values)
                .map(|((c, _), (v, _))| (c.clone(), v.clone()))
                .collect()
        };
        let shown = |kind: &str, values: &[(serde_json::Value, String)]| {
            format!(
                "{kind}[{}]\n",
                values.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        let source = |op: &str, before: Option<serde_json::Value>, after: Option<serde_json::Value>| {
            serde_json::json!({
                "before": before, "after": after, "op": op, "ts_ms": 1_732_492_800_500_i64,
                "source": {"connector": "postgresql", "db": "sourcedb", "schema": "public", "table": table},
                "transaction": null,
            })
            .to_string()
        };
        let file = dir.path().join(format!("{table}.json"));
        let lines = [
            source("r", None, Some(record(&rows[0]))),
            source("u", Some(record(&rows[0])), Some(record(&rows[1]))),
            source("d", Some(record(&rows[1])), None),
        ];
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        expected.push_str(&format!("== {table}\n"));
        expected.push_str(&shown("+I", &rows[0]));
        expected.push_str(&shown("-U", &rows[0]));
        expected.push_str(&shown("+U", &rows[1]));
        expected.push_str(&shown("-D", &rows[1]));

        let rendered = sql::render_table_with(&config, table, &credentials()).unwrap();
        for statement in rendered {
            if statement.starts_with("CREATE CATALOG `iceberg`") {
                // No Iceberg jars here: an in-memory catalog of the same name takes the database and sink DDL.
                statements.push("CREATE CATALOG `iceberg` WITH ('type' = 'generic_in_memory')".to_owned());
            } else if statement.starts_with("CREATE TEMPORARY TABLE") {
                let options = parse_create_table(&statement).options;
                assert_eq!(options["format"], "debezium-json");
                statements.push(with_options(
                    &statement,
                    &[
                        ("connector", "filesystem".to_owned()),
                        ("path", file.display().to_string()),
                        ("format", options["format"].clone()),
                        (
                            "debezium-json.schema-include",
                            options["debezium-json.schema-include"].clone(),
                        ),
                    ],
                ));
            } else if statement.starts_with("CREATE TABLE") {
                // As rendered, into the in-memory catalog, with a blackhole connector instead of Iceberg's options.
                let options = parse_create_table(&statement).options;
                assert_eq!(options["write.upsert.enabled"], "true");
                statements.push(with_options(&statement, &[("connector", "blackhole".to_owned())]));
            } else if statement.starts_with("INSERT INTO") {
                // Planning the INSERT as rendered proves it fits the sink's DDL; running it would only cost time.
                statements.push(format!("EXPLAIN {statement}"));
                statements.push(format!("ECHO == {table}"));
                let select = statement.split_once('\n').unwrap().1;
                statements.push(select.to_owned());
            } else {
                statements.push(statement);
            }
        }
    }
    let input = dir.path().join("statements.sql");
    std::fs::write(&input, statements.join("\0")).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flink/FlinkSqlCheck.java");
    // The module openings Flink 1.18 needs on Java 17 (its own conf sets the same through env.java.opts.all).
    let opens = [
        "java.lang",
        "java.net",
        "java.io",
        "java.nio",
        "sun.nio.ch",
        "java.lang.reflect",
        "java.text",
        "java.time",
        "java.util",
        "java.util.concurrent",
        "java.util.concurrent.atomic",
        "java.util.concurrent.locks",
    ];
    let out = Command::new("java")
        .args(opens.iter().map(|p| format!("--add-opens=java.base/{p}=ALL-UNNAMED")))
        .arg("-Xmx768m")
        // Not UTC, so the conversions only come out right if the rendered SET 'table.local-time-zone' works.
        .arg("-Duser.timezone=Asia/Jakarta")
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg(&harness)
        .arg(&input)
        .output()
        .expect("java runs (Java 17 is on the machine)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("SLF4J") && !l.starts_with("WARNING"))
        .collect();
    assert!(out.status.success(), "Flink rejected the SQL:\n{}", problems.join("\n"));
    assert_eq!(stdout, expected);
}

#[test]
fn a_bad_template_stops_the_start_up_and_render_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tables")).unwrap();
    let bad = dir.path().join("tables").join("audit_log.sql");
    std::fs::write(&bad, "INSERT INTO t SELECT '{{ no_such_placeholder }}';\n").unwrap();
    let sql_dir = dir.path().to_str().unwrap();
    // `render` of another table loads (and checks) every template too.
    let out = run_cli(&["render", "faculty"], &[("CDC_FLINK__SQL_DIR", sql_dir)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit_log.sql") && err.contains("undefined value"),
        "{err}"
    );
    // `run` refuses to start, before it listens or connects to anything.
    let mut cmd = crate::support::sidecar::command(&["run"]);
    cmd.env("CDC_FLINK__SQL_DIR", sql_dir)
        .env("CDC_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("run started despite a bad template");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).unwrap();
    assert!(stderr.contains("audit_log.sql"), "{stderr}");
}
