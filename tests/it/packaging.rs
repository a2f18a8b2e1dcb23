//! Packaging without a Docker engine: the Dockerfile is linted and checked against the static build script, and
//! the helm chart is linted and rendered with the real helm binary; the rendered config passes the real binary's
//! `check`, and bad values are rejected by the chart's schema.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tool(path: &str) -> PathBuf {
    let bin = repo(path);
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-tools.sh",
        bin.display()
    );
    bin
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    let out = run(Command::new(tool(".tools/lint/bin/hadolint")).arg(repo("Dockerfile")));
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_image_is_the_static_build_in_scratch_as_non_root() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("Dockerfile");
    let build_run = dockerfile
        .lines()
        .find(|l| l.starts_with("RUN "))
        .expect("a RUN line in the builder stage");
    assert!(build_run.starts_with("RUN scripts/build-static.sh"), "{build_run}");
    let final_stage = dockerfile.rsplit("\nFROM ").next().expect("stages");
    assert!(final_stage.starts_with("scratch"), "{final_stage}");
    for line in [
        "USER 65532:65532",
        "EXPOSE 8080",
        r#"CMD ["/cdc-orchestrator", "healthcheck"]"#,
        r#"ENTRYPOINT ["/cdc-orchestrator"]"#,
        r#"CMD ["run"]"#,
        "COPY --from=build /etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(
            final_stage.contains(line),
            "{line:?} missing from the final stage:\n{final_stage}"
        );
    }
    // The script builds exactly the musl release binary the image copies.
    let script = std::fs::read_to_string(repo("scripts/build-static.sh")).expect("script");
    assert!(script.contains("cargo build --release --locked --target \"$target\" --bin cdc-orchestrator"));
    assert!(script.contains("target=x86_64-unknown-linux-musl"));
}

fn helm(args: &[&str]) -> Output {
    run(Command::new(tool(".tools/helm/helm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR")))
}

const CHART: &str = "helm/cdc-orchestrator";
const EXAMPLE: &str = "helm/cdc-orchestrator/ci/example-values.yaml";

#[test]
fn the_chart_lints_strictly_with_default_and_example_values() {
    for extra in [&[][..], &["-f", EXAMPLE][..]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = helm(&args);
        assert!(
            out.status.success(),
            "helm {args:?}:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// The `config.toml` block of the rendered ConfigMap.
fn rendered_config(values: &[&str]) -> String {
    let mut args = vec!["template", "t", CHART, "--show-only", "templates/configmap.yaml"];
    args.extend_from_slice(values);
    let out = helm(&args);
    assert!(out.status.success(), "helm template: {}", text(&out.stderr));
    let yaml = text(&out.stdout);
    let start = yaml.find("config.toml: |").expect("config.toml key") + "config.toml: |".len();
    yaml[start..]
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_rendered_config_passes_the_binarys_check() {
    for values in [&[][..], &["-f", EXAMPLE][..]] {
        let toml = rendered_config(values);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("config.toml");
        std::fs::write(&file, &toml).expect("write");
        let mut cmd = crate::support::sidecar::command(&["check", "--config"]);
        cmd.arg(&file);
        // The chart's launcher is sql-gateway, whose credentials `check` requires (they come from Secrets).
        for &(_, variable) in &cdc_orchestrator::sql::CREDENTIALS {
            cmd.env(variable, "test-credential");
        }
        let out = run(&mut cmd);
        assert!(
            out.status.success(),
            "check rejected the chart's config ({values:?}):\n{toml}\n{}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains("[kafka]"));
    }
    assert!(rendered_config(&["-f", EXAMPLE]).contains("SCRAM-SHA-512"));
}

#[test]
fn the_deployment_is_one_locked_down_replica_with_probes() {
    let out = helm(&["template", "t", CHART, "-f", EXAMPLE]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout);
    for needle in [
        "replicas: 1",
        "type: Recreate",
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
        "path: /healthz",
        "path: /readyz",
        "prometheus.io/scrape: \"true\"",
        "kind: ServiceMonitor",
        "name: CDC_KAFKA__SASL__PASSWORD",
        "name: CDC_SERVER__TOKEN",
        "name: cdc-lake-credentials",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from the rendered chart");
    }
    assert!(
        !text(&helm(&["template", "t", CHART]).stdout).contains("kind: ServiceMonitor"),
        "off by default"
    );
}

#[test]
fn bad_values_are_rejected_by_the_schema() {
    for (args, why) in [
        (vec!["--set", "replicaCount=2"], "replicaCount"),
        (vec!["--set", "service.port=abc"], "/service/port"),
        (vec!["--set", "config.kafka.poll_intervall=1s"], "poll_intervall"),
        (vec!["--set", "config.policy.operations={x}"], "operations"),
        (vec!["--set", "config.kafka.sample_records=many"], "sample_records"),
    ] {
        let mut full = vec!["template", "t", CHART];
        full.extend(args.iter().copied());
        let out = helm(&full);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(text(&out.stderr).contains(why), "{args:?}: {}", text(&out.stderr));
    }
}

/// The dotted key paths of the leaves of `value`; maps a section keys by name (`policy.tables`) are one leaf.
fn leaf_keys(value: &serde_json::Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() && path != "policy.tables" => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaf_keys(value, &path, out);
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

/// The dotted key paths the schema's `config` object allows.
fn schema_keys(node: &serde_json::Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
    match node.get("properties").and_then(|p| p.as_object()) {
        Some(properties) if path != "policy.tables" => {
            for (key, node) in properties {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                schema_keys(node, &path, out);
            }
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

#[test]
fn the_charts_schema_allows_exactly_the_configurations_keys() {
    // The schema refuses unknown keys, so a key missing from it cannot be set through the chart, and a key left in
    // it after a removal would be accepted by helm and refused by the sidecar.
    let config = serde_json::to_value(cdc_orchestrator::config::Config::default()).expect("config as JSON");
    let mut config_keys = std::collections::BTreeSet::new();
    leaf_keys(&config, "", &mut config_keys);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(&format!("{CHART}/values.schema.json"))).expect("schema"))
            .expect("schema JSON");
    let mut allowed = std::collections::BTreeSet::new();
    schema_keys(&schema["properties"]["config"], "", &mut allowed);
    // A section with no default (`kafka.sasl`) is one null leaf of the configuration: its keys count as it.
    let allowed: std::collections::BTreeSet<String> = allowed
        .into_iter()
        .map(|key| {
            config_keys
                .iter()
                .find(|section| key.starts_with(&format!("{section}.")))
                .cloned()
                .unwrap_or(key)
        })
        .collect();
    let missing: Vec<_> = config_keys.difference(&allowed).collect();
    let stale: Vec<_> = allowed.difference(&config_keys).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "keys the chart cannot set: {missing:?}; keys the sidecar does not have: {stale:?}"
    );
}

const SECURED: &str = "helm/cdc-orchestrator/ci/secured-values.yaml";

#[test]
fn a_secured_values_file_renders_every_kafka_secret_by_reference_and_passes_check() {
    let out = helm(&["lint", "--strict", CHART, "-f", SECURED]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = helm(&[
        "template",
        "t",
        CHART,
        "-f",
        SECURED,
        "--set",
        "secrets.oauthClientSecret.name=cdc-idp",
        "--set",
        "secrets.jobsOauthClientSecret.name=cdc-idp-jobs",
        "--set",
        "serviceAccount.create=true",
        "--set-string",
        r"serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::123456789012:role/cdc",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = text(&out.stdout);
    for (variable, secret, key) in [
        ("CDC_KAFKA__SASL__PASSWORD", "cdc-kafka", "password"),
        ("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET", "cdc-idp", "client-secret"),
        ("CDC_KAFKA__JOBS__SASL__PASSWORD", "cdc-kafka-jobs", "password"),
        (
            "CDC_KAFKA__JOBS__SASL__OAUTH__CLIENT_SECRET",
            "cdc-idp-jobs",
            "client-secret",
        ),
        ("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "cdc-kafka-jobs", "key-password"),
    ] {
        let entry = format!(
            "- name: {variable}\n              valueFrom:\n                secretKeyRef:\n                  \
             name: {secret}\n                  key: {key}\n"
        );
        assert!(all.contains(&entry), "{entry} missing from:\n{all}");
    }
    for needle in [
        "kind: ServiceAccount",
        "eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/cdc",
        "serviceAccountName: t-cdc-orchestrator",
        "secretName: cdc-kafka-tls",
        "mountPath: /etc/kafka-tls",
    ] {
        assert!(all.contains(needle), "{needle:?} missing from the rendered chart");
    }
    // No secret value in the values: the ConfigMap names no password.
    let toml = rendered_config(&["-f", SECURED]);
    assert!(!toml.contains("password"), "{toml}");
    // The rendered configuration is one the binary takes, with the secrets and the sidecar's files where the
    // Secret and the volume would put them (the jobs' files are Flink's and never opened here).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &toml).expect("write");
    let pem = dir.path().join("any.pem");
    std::fs::write(&pem, "").expect("write");
    let mut cmd = crate::support::sidecar::command(&["check", "--config"]);
    cmd.arg(&file);
    for &(_, variable) in &cdc_orchestrator::sql::CREDENTIALS {
        cmd.env(variable, "test-credential");
    }
    for variable in [
        "CDC_KAFKA__TLS__CA_FILE",
        "CDC_KAFKA__TLS__CERT_FILE",
        "CDC_KAFKA__TLS__KEY_FILE",
    ] {
        cmd.env(variable, &pem);
    }
    cmd.env("CDC_KAFKA__SASL__PASSWORD", "p1")
        .env("CDC_KAFKA__JOBS__SASL__PASSWORD", "p2")
        .env("CDC_KAFKA__JOBS__TLS__KEY_PASSWORD", "p3");
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "check rejected the secured config:\n{toml}\n{}",
        text(&out.stderr)
    );
    let printed = text(&out.stdout);
    assert!(
        printed.contains("keystore_file = \"/opt/flink/kafka-tls/client.pem\""),
        "{printed}"
    );
    assert!(
        !printed.contains("p1\"") && !printed.contains("p2\"") && !printed.contains("p3\""),
        "{printed}"
    );
    // The schema refuses a Flink-side path that is not absolute, as the sidecar does.
    let out = helm(&[
        "template",
        "t",
        CHART,
        "-f",
        SECURED,
        "--set",
        "config.kafka.jobs.tls.ca_file=certs/ca.pem",
    ]);
    assert!(!out.status.success(), "a relative Flink-side path was accepted");
    assert!(text(&out.stderr).contains("ca_file"), "{}", text(&out.stderr));
}
