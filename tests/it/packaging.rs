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
