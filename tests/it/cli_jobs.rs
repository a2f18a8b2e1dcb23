//! The real binary's `jobs` command against the fake Flink.

use std::process::Output;

use crate::support;
use cdc_orchestrator::model::job_id_for;
use support::fake_flink::FakeFlink;

async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::from(support::sidecar::command(args));
    cmd.envs(env.iter().copied());
    cmd.output().await.expect("run cdc-orchestrator")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn fake_with_jobs() -> FakeFlink {
    let fake = FakeFlink::start().await;
    fake.add_job(
        job_id_for("faculty", 2).as_str(),
        "cdc-faculty",
        "RUNNING",
        1_764_000_000_000,
    );
    fake.add_job(
        job_id_for("program", 1).as_str(),
        "cdc-program",
        "FAILED",
        1_763_990_000_000,
    );
    fake.add_job(
        &"ab".repeat(16),
        "insert-into_default_catalog.default_database.x",
        "RUNNING",
        1_764_000_000_000,
    );
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_prints_the_cdc_jobs_as_a_table() {
    let fake = fake_with_jobs().await;
    let out = run(&["jobs"], &[("CDC_FLINK__JOBMANAGER_URL", &fake.jobmanager_url)]).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and the two cdc jobs only: {stdout}");
    assert!(lines[0].starts_with("TABLE") && lines[0].contains("JOB ID") && lines[0].ends_with("SINCE"));
    assert!(lines[1].starts_with("faculty "), "newest first: {stdout}");
    assert!(lines[1].contains(job_id_for("faculty", 2).as_str()) && lines[1].contains("RUNNING"));
    assert!(lines[1].ends_with("2025-11-24T16:00:00Z"), "{stdout}");
    assert!(
        lines[2].starts_with("program ") && lines[2].contains("FAILED"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_json_is_machine_readable() {
    let fake = fake_with_jobs().await;
    let out = run(
        &["jobs", "--json"],
        &[("CDC_FLINK__JOBMANAGER_URL", &fake.jobmanager_url)],
    )
    .await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON array");
    let jobs = jobs.as_array().expect("array");
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["table"], "faculty");
    assert_eq!(jobs[0]["job_id"], job_id_for("faculty", 2).as_str());
    assert_eq!(jobs[0]["state"], "RUNNING");
    assert_eq!(jobs[0]["since"], "2025-11-24T16:00:00Z");
    assert_eq!(jobs[0]["start_time_ms"], 1_764_000_000_000_i64);
    assert_eq!(jobs[1]["table"], "program");
    assert_eq!(jobs[1]["state"], "FAILED");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_without_flink_fails_with_one_line() {
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let out = run(
        &["jobs"],
        &[
            ("CDC_FLINK__JOBMANAGER_URL", &url),
            ("CDC_FLINK__REQUEST_TIMEOUT", "500ms"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("error: cannot list Flink jobs: GET /jobs/overview: "),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_with_a_bad_config_exits_2() {
    let out = run(&["jobs"], &[("CDC_FLINK__JOBMANAGER_URL", "ftp://nope")]).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
}
