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
const LEADER_ELECTION: &str = "helm/cdc-orchestrator/ci/leader-election-values.yaml";

#[test]
fn the_chart_lints_strictly_with_default_and_example_values() {
    for extra in [&[][..], &["-f", EXAMPLE][..], &["-f", LEADER_ELECTION][..]] {
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

/// Every object `helm template` renders with `values`, parsed by PyYAML (the reference parser, which comes with
/// yamllint in `.tools/lint`).
fn rendered_objects(values: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["template", "t", CHART];
    args.extend_from_slice(values);
    let out = helm(&args);
    assert!(out.status.success(), "helm {args:?}: {}", text(&out.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("rendered.yaml");
    std::fs::write(&rendered, &out.stdout).expect("write");
    let parsed = run(Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&rendered)
        .env("PYTHONPATH", repo(".tools/lint")));
    assert!(
        parsed.status.success(),
        "{}\n{}",
        text(&parsed.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&parsed.stdout).expect("json")
}

/// The one rendered object of `kind`, if any (panics on two).
fn object<'a>(objects: &'a [serde_json::Value], kind: &str) -> Option<&'a serde_json::Value> {
    let mut of_kind = objects.iter().filter(|o| o["kind"] == kind);
    let first = of_kind.next();
    assert!(of_kind.next().is_none(), "two {kind}s");
    first
}

/// The chart's `leaderElection` keys that become a key of the `[leader_election]` section (as
/// `CDC_LEADER_ELECTION__<KEY>`); `replicas` and `podDisruptionBudget` are the chart's own.
const LEADER_ELECTION_KEYS: [(&str, &str); 5] = [
    ("enabled", "enabled"),
    ("leaseName", "lease_name"),
    ("leaseDuration", "lease_duration"),
    ("renewDeadline", "renew_deadline"),
    ("retryPeriod", "retry_period"),
];
/// `[leader_election]` keys the chart sets from the pod itself (downward API).
const LEADER_ELECTION_FROM_POD: [&str; 2] = ["identity", "namespace"];
/// `[leader_election]` keys the chart leaves to their in-cluster defaults (the service account's files, the
/// `KUBERNETES_SERVICE_*` address); `extraEnv` can still set them.
const LEADER_ELECTION_IN_CLUSTER: [&str; 3] = ["api_server", "token_file", "ca_file"];

#[test]
fn with_leader_election_the_chart_runs_a_leader_and_a_standby_allowed_the_lease_and_nothing_more() {
    let objects = rendered_objects(&["-f", LEADER_ELECTION]);
    let deployment = object(&objects, "Deployment").expect("Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    // Only the leader is ever ready: a maxUnavailable below 100% would stall a rollout on the old leader.
    assert_eq!(
        spec["strategy"],
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["serviceAccountName"], "t-cdc-orchestrator");
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // The leader election environment, exactly: the chart's keys by value, identity and namespace from the pod.
    let env: Vec<&serde_json::Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter(|e| {
            e["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("CDC_LEADER_ELECTION__") || n == "POD_NAME")
        })
        .collect();
    let field = |path: &str| serde_json::json!({"fieldRef": {"fieldPath": path}});
    let mut expected = vec![
        serde_json::json!({"name": "POD_NAME", "valueFrom": field("metadata.name")}),
        serde_json::json!({"name": "CDC_LEADER_ELECTION__ENABLED", "value": "true"}),
        serde_json::json!({"name": "CDC_LEADER_ELECTION__IDENTITY", "valueFrom": field("metadata.name")}),
        serde_json::json!({"name": "CDC_LEADER_ELECTION__NAMESPACE", "valueFrom": field("metadata.namespace")}),
    ];
    for (key, value) in [
        ("LEASE_NAME", "cdc-orchestrator-university"),
        ("LEASE_DURATION", "15s"),
        ("RENEW_DEADLINE", "10s"),
        ("RETRY_PERIOD", "2s"),
    ] {
        expected.push(serde_json::json!({"name": format!("CDC_LEADER_ELECTION__{key}"), "value": value}));
    }
    assert_eq!(env, expected.iter().collect::<Vec<_>>());
    // Each variable is a key of the configuration's section (the schema test holds the section to the chart).
    let names: std::collections::BTreeSet<String> = env
        .iter()
        .filter_map(|e| e["name"].as_str()?.strip_prefix("CDC_LEADER_ELECTION__"))
        .map(str::to_lowercase)
        .collect();
    let keys: std::collections::BTreeSet<String> = LEADER_ELECTION_KEYS
        .iter()
        .map(|&(_, key)| key)
        .chain(LEADER_ELECTION_FROM_POD)
        .map(str::to_owned)
        .collect();
    assert_eq!(names, keys);
    assert_eq!(
        pod["affinity"],
        serde_json::json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {
                    "app.kubernetes.io/name": "cdc-orchestrator", "app.kubernetes.io/instance": "t"}}
            }
        }]}})
    );
    // Leases, get/update by name and create (which RBAC cannot restrict by name), and nothing more.
    let role = object(&objects, "Role").expect("Role");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["cdc-orchestrator-university"], "verbs": ["get", "update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]}
        ])
    );
    let binding = object(&objects, "RoleBinding").expect("RoleBinding");
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]})
    );
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "t-cdc-orchestrator", "namespace": "default"}])
    );
    let account = object(&objects, "ServiceAccount").expect("a service account of its own");
    assert_eq!(account["metadata"]["name"], "t-cdc-orchestrator");
    assert_eq!(account["automountServiceAccountToken"], true);
    let pdb = object(&objects, "PodDisruptionBudget").expect("PodDisruptionBudget");
    assert_eq!(
        pdb["spec"],
        serde_json::json!({
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "cdc-orchestrator", "app.kubernetes.io/instance": "t"}}
        })
    );
    // Overrides: more replicas, an existing account (bound, not created), the release's name as the Lease's,
    // no budget, the user's own affinity.
    let objects = rendered_objects(&[
        "--set",
        "leaderElection.enabled=true",
        "--set",
        "leaderElection.replicas=3",
        "--set",
        "serviceAccount.name=cdc-existing",
        "--set",
        "leaderElection.podDisruptionBudget=false",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
        "--set",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
    ]);
    let pod = &object(&objects, "Deployment").expect("Deployment")["spec"];
    assert_eq!(pod["replicas"], 3);
    assert!(pod["template"]["spec"]["affinity"]["podAntiAffinity"].is_null());
    assert_eq!(pod["template"]["spec"]["serviceAccountName"], "cdc-existing");
    assert!(object(&objects, "ServiceAccount").is_none());
    assert!(object(&objects, "PodDisruptionBudget").is_none());
    assert_eq!(
        object(&objects, "RoleBinding").expect("RoleBinding")["subjects"][0]["name"],
        "cdc-existing"
    );
    assert_eq!(
        object(&objects, "Role").expect("Role")["rules"][0]["resourceNames"],
        serde_json::json!(["t-cdc-orchestrator"])
    );
    // The schema refuses a Lease name Kubernetes would.
    let out = helm(&["template", "t", CHART, "--set", "leaderElection.leaseName=Not_A_Name"]);
    assert!(!out.status.success(), "a bad Lease name was accepted");
    assert!(text(&out.stderr).contains("leaseName"), "{}", text(&out.stderr));
}

#[test]
fn without_leader_election_the_chart_is_the_recreate_singleton() {
    for values in [&[][..], &["-f", EXAMPLE][..]] {
        let objects = rendered_objects(values);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in ["Role", "RoleBinding", "PodDisruptionBudget", "ServiceAccount"] {
            assert!(
                !kinds.contains(&kind),
                "{kind} rendered without leader election: {kinds:?}"
            );
        }
        let spec = &object(&objects, "Deployment").expect("Deployment")["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["strategy"], serde_json::json!({"type": "Recreate"}));
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert!(pod["affinity"].is_null(), "{pod}");
        let env = serde_json::to_string(&pod["containers"][0]["env"]).expect("env");
        assert!(!env.contains("LEADER_ELECTION") && !env.contains("POD_NAME"), "{env}");
        assert_eq!(pod["containers"][0]["readinessProbe"]["periodSeconds"], 10);
    }
    // An account created for IRSA alone keeps its token unmounted.
    let objects = rendered_objects(&["--set", "serviceAccount.create=true"]);
    assert_eq!(
        object(&objects, "ServiceAccount").expect("ServiceAccount")["automountServiceAccountToken"],
        false
    );
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
    // [leader_election] is set through the chart's top-level `leaderElection` (as environment variables, since
    // identity and namespace come from the pod), not through `config`.
    let chart_only = ["replicas", "podDisruptionBudget"];
    for key in schema["properties"]["leaderElection"]["properties"]
        .as_object()
        .expect("leaderElection in the schema")
        .keys()
        .filter(|key| !chart_only.contains(&key.as_str()))
    {
        let (_, config_key) = LEADER_ELECTION_KEYS
            .iter()
            .find(|(chart_key, _)| chart_key == key)
            .unwrap_or_else(|| panic!("leaderElection.{key} maps to no [leader_election] key"));
        allowed.insert(format!("leader_election.{config_key}"));
    }
    for key in LEADER_ELECTION_FROM_POD.iter().chain(&LEADER_ELECTION_IN_CLUSTER) {
        allowed.insert(format!("leader_election.{key}"));
    }
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
