//! Everything about the compose stack that can be checked without Docker: compose.yaml against the Compose
//! Specification schema and for start-up order, the sidecar's lock-down and environment configuration (fed to
//! the real binary), yamllint, hadolint on the Flink image, and shellcheck on the scripts.
//!
//! The linters come from `scripts/install-tools.sh` (into `.tools/`); a missing one fails the test with the
//! command that installs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn installed(relative: &str) -> PathBuf {
    let path = repo().join(".tools").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-tools.sh (it installs the linters into .tools/)",
        path.display()
    );
    path
}

/// Runs a command in the repository with a minimal, predictable environment (no CDC_* or credentials leak in).
fn run(mut cmd: Command, extra_env: &[(&str, &Path)]) -> Output {
    cmd.current_dir(repo()).env_clear();
    for key in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Python with the linters' packages (PyYAML, jsonschema, yamllint) importable.
fn python(args: &[&str]) -> Output {
    let lint = installed("lint");
    let mut cmd = Command::new("python3");
    cmd.args(args);
    run(cmd, &[("PYTHONPATH", &lint)])
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// compose.yaml validated against the compose-spec schema, interpolated with its defaults, as JSON.
fn compose() -> Value {
    let schema = installed("compose-spec/compose_spec.json");
    let out = python(&["scripts/check-compose.py", "compose.yaml", schema.to_str().unwrap()]);
    assert_success("compose-spec schema validation of compose.yaml", &out);
    serde_json::from_slice(&out.stdout).expect("check-compose.py prints JSON")
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services")
}

fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v["condition"].as_str().unwrap_or("service_started").to_owned(),
                )
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|v| (v.as_str().unwrap().to_owned(), "service_started".to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[test]
fn compose_file_matches_the_compose_spec() {
    let compose = compose();
    let names: BTreeSet<&str> = services(&compose).keys().map(String::as_str).collect();
    for required in [
        "postgres",
        "kafka",
        "connect",
        "register-connector",
        "jobmanager",
        "taskmanager",
        "sql-gateway",
        "polaris",
        "polaris-setup",
        "minio",
        "minio-setup",
        "trino",
        "cdc-orchestrator",
    ] {
        assert!(names.contains(required), "service {required} missing: {names:?}");
    }
    // The validator is not a rubber stamp: a wrong type is rejected with its path.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("compose.yaml");
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    std::fs::write(&broken, text.replace("read_only: true", "read_only: [yes]")).unwrap();
    let schema = installed("compose-spec/compose_spec.json");
    let out = python(&[
        "scripts/check-compose.py",
        broken.to_str().unwrap(),
        schema.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("services.cdc-orchestrator.read_only"));
}

#[test]
fn compose_starts_in_dependency_order() {
    let compose = compose();
    let services = services(&compose);
    for (name, service) in services {
        for (dependency, condition) in depends_on(service) {
            let target = services
                .get(&dependency)
                .unwrap_or_else(|| panic!("{name} depends on unknown service {dependency}"));
            match condition.as_str() {
                "service_healthy" => assert!(
                    target["healthcheck"]["test"].is_array() && target["healthcheck"]["disable"] != true,
                    "{name} waits for {dependency} to be healthy, which has no healthcheck"
                ),
                "service_completed_successfully" => assert_eq!(
                    target["restart"], "no",
                    "{name} waits for one-shot {dependency}, which must not restart"
                ),
                "service_started" => {}
                other => panic!("{name}: unknown condition {other}"),
            }
            // Waiting on a long-running service only for "started" would race it; one-shots are awaited.
            assert_ne!(
                (condition.as_str(), target["restart"].as_str()),
                ("service_started", Some("no")),
                "{name} must wait for one-shot {dependency} to complete"
            );
        }
    }
    // No cycles: repeatedly remove services whose dependencies are all removed.
    let mut remaining: BTreeMap<&str, BTreeSet<String>> = services
        .iter()
        .map(|(n, s)| (n.as_str(), depends_on(s).into_keys().collect()))
        .collect();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !remaining.contains_key(d.as_str())))
            .map(|(n, _)| *n)
            .collect();
        assert!(!ready.is_empty(), "dependency cycle among {:?}", remaining.keys());
        for name in ready {
            remaining.remove(name);
        }
    }
    // The sidecar starts last: after Kafka, the connector registration, the catalog and Flink are ready.
    let sidecar = depends_on(&services["cdc-orchestrator"]);
    for (dependency, condition) in [
        ("kafka", "service_healthy"),
        ("register-connector", "service_completed_successfully"),
        ("polaris-setup", "service_completed_successfully"),
        ("jobmanager", "service_healthy"),
        ("sql-gateway", "service_healthy"),
    ] {
        assert_eq!(
            sidecar.get(dependency).map(String::as_str),
            Some(condition),
            "sidecar on {dependency}"
        );
    }
    // Every bind-mounted file exists in the repository.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let source = spec.split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    repo().join(source).exists(),
                    "{name}: bind mount {source} does not exist"
                );
            }
        }
    }
}

#[test]
fn compose_services_are_the_corrected_reference_stack() {
    let compose = compose();
    let s = services(&compose);
    let command = |name: &str| -> String {
        match &s[name]["command"] {
            Value::Array(parts) => parts.iter().map(|p| p.as_str().unwrap()).collect::<Vec<_>>().join(" "),
            Value::String(text) => text.clone(),
            _ => String::new(),
        }
    };
    assert!(s["postgres"]["image"].as_str().unwrap().starts_with("postgres:15"));
    assert!(command("postgres").contains("wal_level=logical"));
    assert!(s["kafka"]["image"].as_str().unwrap().starts_with("apache/kafka:"));
    assert!(
        s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
            .as_str()
            .unwrap()
            .contains("controller"),
        "KRaft"
    );
    assert!(!s.keys().any(|n| n.contains("zookeeper")));
    assert!(
        s["connect"]["image"]
            .as_str()
            .unwrap()
            .starts_with("quay.io/debezium/connect:2.7")
    );
    assert!(command("register-connector").contains("connectors/university-connector/config"));
    for flink in ["jobmanager", "taskmanager", "sql-gateway"] {
        assert_eq!(
            s[flink]["image"], "cdc-flink:1.18.1",
            "{flink} runs the one Flink image"
        );
        assert_eq!(s[flink]["build"]["context"], "compose/flink", "{flink}");
    }
    let gateway = command("sql-gateway");
    assert!(gateway.starts_with("bin/sql-gateway.sh start-foreground"), "{gateway}");
    assert!(
        gateway.contains("-Dsql-gateway.endpoint.rest.address=0.0.0.0")
            && gateway.contains("-Drest.address=jobmanager")
    );
    assert!(s["polaris"]["image"].as_str().unwrap().starts_with("apache/polaris:"));
    assert!(command("minio-setup").contains("mc mb --ignore-existing local/warehouse"));
    assert!(s["trino"]["image"].as_str().unwrap().starts_with("trinodb/trino:"));
    for (name, service) in s {
        let image = service["image"].as_str().unwrap_or_default();
        assert!(
            !image.ends_with(":latest") && image.contains(':'),
            "{name}: pin the image ({image:?})"
        );
    }
}

#[test]
fn sidecar_is_locked_down_and_configured_by_environment() {
    let compose = compose();
    let sidecar = &services(&compose)["cdc-orchestrator"];
    assert_eq!(sidecar["build"], ".", "built from the repository's Dockerfile");
    assert_eq!(sidecar["command"], serde_json::json!(["run"]));
    assert_eq!(sidecar["user"], "65532", "non-root");
    assert_eq!(sidecar["read_only"], true);
    assert_eq!(
        sidecar["healthcheck"]["test"],
        serde_json::json!(["CMD", "/cdc-orchestrator", "healthcheck"])
    );
    assert!(sidecar["privileged"] != true);
    assert!(
        sidecar["volumes"].is_null(),
        "the sidecar mounts nothing (no Docker socket)"
    );
    let whole = serde_json::to_string(&compose).unwrap();
    assert!(!whole.contains("docker.sock"), "no service gets the Docker socket");

    // The sidecar's environment is a valid configuration for the real binary, and renders the stack's SQL.
    let environment: Vec<(String, String)> = sidecar["environment"]
        .as_object()
        .expect("environment as a map")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
        .collect();
    // Exactly the container's environment: nothing of the developer's shell, no config file.
    let binary = |args: &[&str]| {
        let mut cmd = crate::support::sidecar::command(args);
        cmd.current_dir(repo()).env_clear();
        cmd.envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.output().expect("run cdc-orchestrator")
    };
    let check = binary(&["check"]);
    assert_success("cdc-orchestrator check with the compose environment", &check);
    let resolved = String::from_utf8_lossy(&check.stdout);
    assert!(resolved.contains("bootstrap = [\"kafka:9092\"]"), "{resolved}");
    assert!(
        resolved.contains("sql_gateway_url = \"http://sql-gateway:8083\""),
        "{resolved}"
    );
    let render = binary(&["render", "faculty"]);
    assert_success("cdc-orchestrator render faculty with the compose environment", &render);
    let rendered = String::from_utf8_lossy(&render.stdout);
    for needle in [
        "'properties.bootstrap.servers' = 'kafka:9092'",
        "'uri' = 'http://polaris:8181/api/catalog'",
        "'s3.endpoint' = 'http://minio:9000'",
        "'topic' = 'university-server.public.faculty'",
    ] {
        assert!(rendered.contains(needle), "{needle} not in:\n{rendered}");
    }
    // The catalog the SQL names is the one Polaris is bootstrapped with and Trino reads.
    let polaris_catalog = services(&compose)["polaris-setup"]["environment"]["POLARIS_CATALOG"]
        .as_str()
        .unwrap();
    assert!(rendered.contains(&format!("'warehouse' = '{polaris_catalog}'")));
    let trino = std::fs::read_to_string(repo().join("compose/trino/catalog/iceberg.properties")).unwrap();
    assert!(trino.contains(&format!("iceberg.rest-catalog.warehouse={polaris_catalog}\n")));
}

#[test]
fn yamllint_passes() {
    installed("lint/yamllint");
    let out = python(&["-m", "yamllint", "--strict", "compose.yaml", ".yamllint.yaml"]);
    assert_success("yamllint --strict compose.yaml", &out);
}

#[test]
fn hadolint_passes_on_the_flink_image_and_its_jars_are_pinned() {
    let mut cmd = Command::new(installed("lint/bin/hadolint"));
    cmd.arg("compose/flink/Dockerfile");
    assert_success("hadolint compose/flink/Dockerfile", &run(cmd, &[]));
    let dockerfile = std::fs::read_to_string(repo().join("compose/flink/Dockerfile")).unwrap();
    for pin in [
        "FROM apache/flink:1.18.1-",
        "ARG KAFKA_CONNECTOR_VERSION=3.1.0-1.18",
        "ARG ICEBERG_VERSION=1.5.2",
        "flink-sql-connector-kafka-${KAFKA_CONNECTOR_VERSION}.jar",
        "iceberg-flink-runtime-1.18-${ICEBERG_VERSION}.jar",
        "iceberg-aws-bundle-${ICEBERG_VERSION}.jar",
        "plugins/s3-fs-presto",
    ] {
        assert!(dockerfile.contains(pin), "compose/flink/Dockerfile lacks {pin}");
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let scripts = [
        "scripts/e2e-compose.sh",
        "compose/polaris/bootstrap.sh",
        "scripts/install-tools.sh",
        "scripts/test.sh",
        "scripts/flink-local.sh",
        "scripts/e2e-local.sh",
        "scripts/install-e2e-tools.sh",
        "scripts/demo.sh",
    ];
    let mut cmd = Command::new(installed("lint/bin/shellcheck"));
    cmd.args(scripts);
    assert_success("shellcheck", &run(cmd, &[]));
    let mut syntax = Command::new("bash");
    syntax.args(["-n", "scripts/e2e-compose.sh"]);
    assert_success("bash -n scripts/e2e-compose.sh", &run(syntax, &[]));
    let mut syntax = Command::new("sh");
    syntax.args(["-n", "compose/polaris/bootstrap.sh"]);
    assert_success("sh -n compose/polaris/bootstrap.sh", &run(syntax, &[]));
}

#[test]
fn e2e_script_waits_for_the_success_indicators() {
    let script = std::fs::read_to_string(repo().join("scripts/e2e-compose.sh")).unwrap();
    for needle in [
        "Detected c/u operation on table: $table",
        "Successfully triggered job for: $table",
        "FROM iceberg.university.faculty",
        "FROM iceberg.university.program",
        "DELETE FROM faculty",
        "DELETE FROM program",
        "local/warehouse/",
        "down --volumes",
    ] {
        assert!(script.contains(needle), "scripts/e2e-compose.sh lacks {needle:?}");
    }
}
