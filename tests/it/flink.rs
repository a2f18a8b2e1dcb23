//! The `sql-gateway` launcher over real HTTP on loopback, against the fake Flink (tests/it/support/fake_flink.rs):
//! idempotent starts under faults, session expiry, stop with savepoint or cancel, adoption after a restart,
//! typed errors.

use std::time::Duration;

use std::collections::BTreeMap;

use crate::support;
use cdc_orchestrator::config::{FlinkConfig, PolicyConfig};
use cdc_orchestrator::flink::jobmanager::SavepointStatus;
use cdc_orchestrator::flink::{
    Backoff, Fault as FlinkFault, FlinkError, LaunchSettings, Launcher, POLL_BACKOFF, SqlGatewayLauncher, Stopped,
};
use cdc_orchestrator::model::{JobId, JobState, Millis, job_id_for};
use cdc_orchestrator::policy::{Action, Event, Input, Policy, PolicySettings};
use cdc_orchestrator::sql::JobSqlError;
use support::fake_flink::{FakeFlink, Fault, Route};
use support::source_progress::{
    PartitionProgress, SourceMetric, SourceProgress, encode_query, parse_source_metric, source_progress,
};

const SAVEPOINTS: &str = "s3://warehouse/savepoints";

/// What a fresh policy makes of the launcher's listing, as a restarted sidecar's first listing: each table's job
/// (adopted), and every action. `unmanaged` tables are left out of the policy's tables, as the run loop leaves
/// them out of the listing.
async fn first_listing(l: &SqlGatewayLauncher, unmanaged: &[&str]) -> (BTreeMap<String, JobId>, Vec<Action>) {
    let jobs = l.list_jobs().await.expect("list");
    let policy = PolicyConfig {
        exclude: unmanaged.iter().map(|t| (*t).to_owned()).collect(),
        ..PolicyConfig::default()
    };
    let mut p = Policy::new(PolicySettings::new(policy, &FlinkConfig::default(), 0));
    let actions = p.handle(
        Millis(1),
        Input::Listing {
            jobs,
            requested_at: Millis(1),
        },
    );
    let adopted = p
        .statuses()
        .into_iter()
        .filter_map(|s| Some((s.table, s.job_id?)))
        .collect();
    (adopted, actions)
}

/// The table's SQL as the flink-sql templates render it (a stand-in until those land).
fn table_sql(table: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS src_{table} (id INT, name STRING) WITH (\n  'connector' = 'kafka',\n  \
             'topic' = 'university-server.public.{table}',\n  'scan.startup.mode' = 'group-offsets',\n  \
             'properties.group.id' = 'cdc-{table}',\n  'format' = 'debezium-json'\n)"
        ),
        format!("INSERT INTO lake.university.{table}\nSELECT * FROM src_{table}"),
    ]
}

struct Timeouts {
    request: Duration,
    start: Duration,
    stop: Duration,
}

const FAST: Timeouts = Timeouts {
    request: Duration::from_millis(500),
    start: Duration::from_secs(3),
    stop: Duration::from_secs(2),
};

fn launcher_with(fake: &FakeFlink, t: Timeouts) -> SqlGatewayLauncher {
    let settings = LaunchSettings {
        savepoint_dir: SAVEPOINTS.to_owned(),
        checkpoint_interval: Duration::from_secs(10),
        start_timeout: t.start,
        stop_timeout: t.stop,
        poll: Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        },
    };
    SqlGatewayLauncher::new(&fake.gateway_url, &fake.jobmanager_url, t.request, settings).expect("launcher")
}

fn launcher(fake: &FakeFlink) -> SqlGatewayLauncher {
    launcher_with(fake, FAST)
}

#[tokio::test]
async fn one_start_gives_one_running_job_with_pinned_id_name_and_checkpointing() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    assert_eq!(started.job_id, job_id_for("faculty", 1));
    assert!(!started.adopted);
    let jobs = fake.jobs();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].id, started.job_id.as_str());
    assert_eq!(jobs[0].name, "cdc-faculty");
    assert_eq!(jobs[0].state, "RUNNING");
    assert_eq!(jobs[0].config["execution.checkpointing.interval"], "10000ms");
    let statements = fake.statements();
    assert_eq!(statements.len(), 5, "{statements:#?}");
    assert_eq!(statements[0], "SET 'pipeline.name' = 'cdc-faculty'");
    assert_eq!(
        statements[2],
        format!("SET '$internal.pipeline.job-id' = '{}'", started.job_id)
    );
    assert_eq!(
        &statements[3..5],
        &table_sql("faculty")[..],
        "the table's SQL follows, in order"
    );
    assert_eq!(fake.sessions_opened(), 1);
    assert_eq!(
        fake.open_sessions(),
        0,
        "the start's session is closed once the job is submitted"
    );
}

#[tokio::test]
async fn concurrent_starts_run_side_by_side_each_in_a_session_of_its_own() {
    let fake = FakeFlink::start().await;
    let delay = Duration::from_millis(60);
    fake.set_statement_delay(delay);
    let l = launcher(&fake);
    let (faculty, program) = (table_sql("faculty"), table_sql("program"));
    let begin = std::time::Instant::now();
    let (a, b) = tokio::join!(l.start("faculty", 1, &faculty), l.start("program", 1, &program));
    let took = begin.elapsed();
    let (a, b) = (a.expect("faculty"), b.expect("program"));
    assert_ne!(a.job_id, b.job_id);
    assert_eq!(fake.sessions_opened(), 2, "a session per start");
    assert_eq!(fake.open_sessions(), 0, "each closed afterwards");
    for job in fake.jobs() {
        // Each start's SETs stay in its own session.
        let table = job.name.trim_start_matches("cdc-");
        assert_eq!(job.id, job_id_for(table, 1).as_str(), "{job:?}");
    }
    // Five statements each: one after another would take ten statement delays.
    assert!(took < delay * 9, "took {took:?}");
}

#[tokio::test]
async fn a_start_retried_after_a_lost_500_answer_still_gives_one_job() {
    let fake = FakeFlink::start().await;
    fake.inject(Route::SubmitJob, Fault::Error500AfterEffect);
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    assert!(started.adopted, "the job the lost attempt created is adopted");
    assert_eq!(fake.jobs().len(), 1);
    assert_eq!(
        fake.requests(Route::SubmitJob),
        1,
        "no second submission: the job was found first"
    );
}

#[tokio::test]
async fn a_start_retried_after_a_500_before_submission_gives_one_job() {
    let fake = FakeFlink::start().await;
    fake.inject(Route::SubmitJob, Fault::Error500);
    fake.inject(Route::JobsOverview, Fault::Error500);
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    assert!(!started.adopted);
    assert_eq!(fake.jobs().len(), 1);
    assert_eq!(fake.requests(Route::SubmitJob), 2);
}

#[tokio::test]
async fn a_start_retried_after_a_request_timeout_still_gives_one_job() {
    let fake = FakeFlink::start().await;
    // The submission happens, but its answer comes after the client gave up.
    fake.inject(Route::SubmitJob, Fault::Delay(FAST.request * 3));
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    assert!(started.adopted);
    assert_eq!(fake.jobs().len(), 1);

    // The caller retrying the whole start with the same generation adopts as well.
    let again = l.start("faculty", 1, &table_sql("faculty")).await.expect("retry");
    assert_eq!(again.job_id, started.job_id);
    assert!(again.adopted);
    // A new generation while the table's job lives still adopts it: a table never has two jobs.
    let newer = l
        .start("faculty", 2, &table_sql("faculty"))
        .await
        .expect("new generation");
    assert_eq!(newer.job_id, started.job_id);
    assert_eq!(fake.jobs().len(), 1);
}

#[tokio::test]
async fn a_duplicate_submission_is_adopted() {
    let fake = FakeFlink::start().await;
    let racer = launcher(&fake);
    let l = launcher(&fake);
    // The racer's job listing is answered from before the other start, and arrives after it: it submits the same
    // pinned id a second time and Flink rejects it as a duplicate.
    fake.inject(Route::JobsOverview, Fault::Delay(Duration::from_millis(400)));
    let racing = tokio::spawn(async move { racer.start("faculty", 1, &table_sql("faculty")).await });
    while fake.requests(Route::JobsOverview) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = l.start("faculty", 1, &table_sql("faculty")).await.expect("first start");
    let second = racing.await.expect("join").expect("racing start");
    assert_eq!(second.job_id, first.job_id);
    assert!(second.adopted);
    assert_eq!(fake.jobs().len(), 1);
    assert_eq!(
        fake.requests(Route::SubmitJob),
        2,
        "the second submission happened and was rejected"
    );
}

#[tokio::test]
async fn an_expired_session_is_reopened_transparently() {
    let fake = FakeFlink::start().await;
    fake.set_statement_delay(Duration::from_millis(50));
    let l = launcher(&fake);
    // The gateway forgets the start's session half-way (gateway restart): the batch is replayed in a new one.
    let program_sql = table_sql("program");
    let start = l.start("program", 1, &program_sql);
    let expire = async {
        while fake.statements().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fake.expire_sessions();
    };
    let (started, ()) = tokio::join!(start, expire);
    started.expect("start after expiry");
    assert_eq!(fake.sessions_opened(), 2);
    let program = fake
        .jobs()
        .into_iter()
        .find(|j| j.name == "cdc-program")
        .expect("program job");
    assert_eq!(
        program.id,
        job_id_for("program", 1).as_str(),
        "SETs replayed in the new session"
    );
}
#[tokio::test]
async fn stop_completes_with_a_savepoint() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    let stopped = l.stop("faculty", &started.job_id).await.expect("stop");
    let Stopped::Savepoint { location } = stopped else {
        panic!("expected a savepoint, got {stopped:?}");
    };
    assert!(location.starts_with(SAVEPOINTS), "{location}");
    let job = &fake.jobs()[0];
    assert_eq!(job.state, "FINISHED");
    assert_eq!(job.savepoint.as_deref(), Some(location.as_str()));
    assert!(!job.cancelled);
    // Stopping again is a no-op.
    let again = l.stop("faculty", &started.job_id).await.expect("stop again");
    assert_eq!(
        again,
        Stopped::AlreadyStopped {
            state: Some(JobState::Finished)
        }
    );
    // The next start is a new generation: the old id belongs to a finished job.
    let err = l.start("faculty", 1, &table_sql("faculty")).await.expect_err("old id");
    assert!(matches!(err, FlinkError::JobIdUsed { .. }), "{err}");
    l.start("faculty", 2, &table_sql("faculty")).await.expect("restart");
    assert_eq!(fake.live_jobs_named("cdc-faculty").len(), 1);
}

#[tokio::test]
async fn a_live_job_of_the_table_wins_over_an_ended_pinned_id() {
    let fake = FakeFlink::start().await;
    fake.add_job(job_id_for("faculty", 1).as_str(), "cdc-faculty", "FINISHED", 1_000);
    let live = job_id_for("faculty", 2);
    fake.add_job(live.as_str(), "cdc-faculty", "RUNNING", 2_000);
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("adopt");
    assert_eq!(started.job_id, live);
    assert!(started.adopted);
    assert_eq!(fake.requests(Route::SubmitJob), 0);
}

#[tokio::test]
async fn an_id_used_by_a_job_flink_no_longer_lists_fails_the_start() {
    let fake = FakeFlink::start().await;
    let used = job_id_for("faculty", 1);
    fake.add_job(used.as_str(), "cdc-faculty", "FINISHED", 1_000);
    fake.forget_job(used.as_str());
    let l = launcher(&fake);
    let err = l.start("faculty", 1, &table_sql("faculty")).await.expect_err("used id");
    assert!(
        matches!(&err, FlinkError::JobIdUsed { job_id, .. } if *job_id == used),
        "{err}"
    );
    assert_eq!(
        fake.requests(Route::SubmitJob),
        3,
        "gives up after three unlisted duplicates, before the timeout"
    );
    l.start("faculty", 2, &table_sql("faculty"))
        .await
        .expect("a new generation starts");
}

#[tokio::test]
async fn stop_cancels_when_the_savepoint_takes_too_long() {
    let fake = FakeFlink::start().await;
    fake.set_savepoint_after(None);
    let l = launcher_with(
        &fake,
        Timeouts {
            stop: Duration::from_millis(300),
            ..FAST
        },
    );
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    let stopped = l.stop("faculty", &started.job_id).await.expect("stop");
    assert!(
        matches!(&stopped, Stopped::Cancelled { reason } if reason.contains("not complete after 300ms")),
        "{stopped:?}"
    );
    let job = &fake.jobs()[0];
    assert_eq!(job.state, "CANCELED");
    assert!(job.cancelled);
}

#[tokio::test]
async fn stop_cancels_when_the_savepoint_fails() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    fake.fail_next_savepoint("org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint expired.");
    let stopped = l.stop("faculty", &started.job_id).await.expect("stop");
    assert!(
        matches!(&stopped, Stopped::Cancelled { reason }
            if reason == "savepoint failed: org.apache.flink.runtime.checkpoint.CheckpointException: Checkpoint expired."),
        "{stopped:?}"
    );
    assert!(fake.jobs()[0].cancelled);
}

#[tokio::test]
async fn stop_survives_transient_errors_while_polling() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    fake.inject_times(Route::SavepointStatus, Fault::Error500, 2);
    let stopped = l.stop("faculty", &started.job_id).await.expect("stop");
    assert!(matches!(stopped, Stopped::Savepoint { .. }), "{stopped:?}");
    assert!(fake.requests(Route::SavepointStatus) >= 3);
}

#[tokio::test]
async fn a_restarted_launcher_adopts_running_jobs() {
    let fake = FakeFlink::start().await;
    let first = launcher(&fake);
    let started = first.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    drop(first);
    fake.add_job(&job_id_for("program", 4).to_string(), "cdc-program", "FAILED", 1_000);
    fake.add_job(&job_id_for("legacy", 1).to_string(), "cdc-legacy", "RUNNING", 2_000);
    fake.add_job(&"ab".repeat(16), "some other pipeline", "RUNNING", 3_000);

    let restarted = launcher(&fake);
    let listed = restarted.list_jobs().await.expect("list");
    let listed: Vec<(&str, &JobState)> = listed.iter().map(|j| (j.table.as_str(), &j.state)).collect();
    assert_eq!(
        listed,
        [
            ("faculty", &JobState::Running),
            ("legacy", &JobState::Running),
            ("program", &JobState::Failed)
        ],
        "the cdc jobs, newest first, the dead one included"
    );
    let (adopted, actions) = first_listing(&restarted, &["legacy"]).await;
    assert_eq!(
        adopted,
        BTreeMap::from([("faculty".to_owned(), started.job_id.clone())])
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Stop { .. } | Action::Start { .. })),
        "no duplicate, nothing for the unmanaged job: {actions:?}"
    );
    // Not touched: the unknown job still runs.
    assert_eq!(fake.live_jobs_named("cdc-legacy").len(), 1);

    // Whatever generation the restarted sidecar starts with, it adopts instead of starting a second job.
    let adopted = restarted
        .start("faculty", 77, &table_sql("faculty"))
        .await
        .expect("start");
    assert!(adopted.adopted);
    assert_eq!(adopted.job_id, started.job_id);
    assert_eq!(fake.live_jobs_named("cdc-faculty").len(), 1);
}

#[tokio::test]
async fn a_job_that_fails_while_starting_is_a_failed_start() {
    let fake = FakeFlink::start().await;
    fake.fail_next_job_after(Duration::ZERO);
    let l = launcher(&fake);
    let err = l
        .start("faculty", 1, &table_sql("faculty"))
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            &err,
            FlinkError::JobEnded {
                state: JobState::Failed,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_job_that_fails_after_starting_shows_in_the_listing() {
    let fake = FakeFlink::start().await;
    fake.fail_next_job_after(Duration::from_millis(150));
    let l = launcher(&fake);
    l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let listed = l.list_jobs().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, JobState::Failed);
    let (adopted, _) = first_listing(&l, &[]).await;
    assert!(adopted.is_empty(), "{adopted:?}");
}

#[tokio::test]
async fn a_start_that_times_out_leaves_no_job_running() {
    let fake = FakeFlink::start().await;
    fake.set_running_after(None);
    let l = launcher_with(
        &fake,
        Timeouts {
            start: Duration::from_millis(400),
            ..FAST
        },
    );
    let err = l.start("faculty", 1, &table_sql("faculty")).await.expect_err("timeout");
    assert!(
        matches!(&err, FlinkError::StartTimeout { state, .. } if state == "INITIALIZING"),
        "{err}"
    );
    assert!(fake.live_jobs_named("cdc-faculty").is_empty(), "{:?}", fake.jobs());
    assert!(fake.jobs()[0].cancelled);
}

#[tokio::test]
async fn a_job_that_vanishes_while_starting_fails_the_start_at_once_rather_than_at_its_timeout() {
    // A JobManager lost without HA while a job was starting: the new one does not know the job. Waiting the start
    // timeout (2 minutes by default) for it to run would hold the table's restart for nothing.
    let fake = FakeFlink::start().await;
    fake.set_running_after(None);
    let l = launcher_with(
        &fake,
        Timeouts {
            start: Duration::from_secs(60),
            ..FAST
        },
    );
    let sql = table_sql("faculty");
    let began = std::time::Instant::now();
    let start = l.start("faculty", 1, &sql);
    let forget = async {
        while fake.jobs().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Seen INITIALIZING by the start's polls first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = fake.jobs()[0].id.clone();
        fake.forget_job(&id);
    };
    let (result, ()) = tokio::join!(start, forget);
    let err = result.expect_err("the job vanished");
    assert!(matches!(err, FlinkError::JobVanished { .. }), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "failed after {:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn a_submission_slower_than_the_start_timeout_fails_and_a_late_job_is_adopted() {
    let fake = FakeFlink::start().await;
    fake.set_submit_delay(Duration::from_secs(5));
    let l = launcher_with(
        &fake,
        Timeouts {
            start: Duration::from_millis(400),
            ..FAST
        },
    );
    let err = l.start("faculty", 1, &table_sql("faculty")).await.expect_err("timeout");
    assert!(matches!(err, FlinkError::StartTimeout { .. }), "{err}");
    // Whatever got submitted is not left running unknown: it was cancelled...
    assert!(fake.live_jobs_named("cdc-faculty").is_empty(), "{:?}", fake.jobs());
    // ...and a job of the table that shows up later (another submission completing) is adopted.
    let late = job_id_for("faculty", 9);
    fake.add_job(late.as_str(), "cdc-faculty", "RUNNING", 5_000);
    let (adopted, actions) = first_listing(&l, &[]).await;
    assert_eq!(adopted.get("faculty"), Some(&late));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Event(Event::Adopted { job_id, .. }) if *job_id == late)),
        "{actions:?}"
    );
    let adopted = l.start("faculty", 2, &table_sql("faculty")).await.expect("adopt");
    assert_eq!(adopted.job_id, late);
}

#[tokio::test]
async fn error_bodies_become_typed_errors_with_the_root_cause_line() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let bad = vec!["SELEC * FROM nowhere".to_owned(), "INSERT INTO x SELECT 1".to_owned()];
    let err = l.start("faculty", 1, &bad).await.expect_err("syntax error");
    match &err {
        FlinkError::Statement {
            statement,
            root_cause,
            fault,
        } => {
            assert_eq!(statement, "SELEC * FROM nowhere");
            assert_eq!(*fault, FlinkFault::Other);
            assert_eq!(
                root_cause,
                "org.apache.flink.table.api.SqlParserException: SQL parse failed. Non-query expression \
                 encountered in illegal context: SELEC"
            );
        }
        other => panic!("expected a statement error, got {other}"),
    }
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert!(fake.jobs().is_empty(), "a SQL error is not retried");

    fake.inject(Route::JobsOverview, Fault::Error500);
    match l.list_jobs().await.expect_err("500") {
        FlinkError::Api { status, root_cause, .. } => {
            assert_eq!(status, 500);
            assert_eq!(root_cause, "java.lang.RuntimeException: injected fault (before acting)");
        }
        other => panic!("expected an API error, got {other}"),
    }
    let unknown = JobId::parse(&"0".repeat(32)).expect("id");
    assert_eq!(l.jobmanager().job(&unknown).await.expect("404 is not an error"), None);
    assert_eq!(
        l.stop("faculty", &unknown).await.expect("stop unknown"),
        Stopped::AlreadyStopped { state: None }
    );
    let sent = fake.statements().len();
    let owned = vec![
        "SET 'pipeline.name' = 'mine'".to_owned(),
        "INSERT INTO x SELECT 1".to_owned(),
    ];
    let err = l.start("faculty", 1, &owned).await.expect_err("launcher-owned key");
    let shown = cdc_orchestrator::logging::chain(&err).to_string();
    assert!(shown.contains("sets 'pipeline.name'"), "{shown}");
    assert!(
        matches!(&err, FlinkError::Job { source: JobSqlError::ReservedKey { key }, .. } if key == "pipeline.name"),
        "{err}"
    );
    assert_eq!(fake.statements().len(), sent, "refused before sending anything");
    let err = l
        .start("faculty", 1, &["CREATE TABLE t (a INT)".to_owned()])
        .await
        .expect_err("no insert");
    assert!(
        matches!(
            err,
            FlinkError::Job {
                source: JobSqlError::NoJob,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_flink_is_a_transport_error() {
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let settings = LaunchSettings {
        savepoint_dir: SAVEPOINTS.to_owned(),
        checkpoint_interval: Duration::from_secs(10),
        start_timeout: Duration::from_millis(300),
        stop_timeout: Duration::from_millis(300),
        poll: POLL_BACKOFF,
    };
    let l = SqlGatewayLauncher::new(&url, &url, Duration::from_millis(200), settings).expect("launcher");
    let err = l.list_jobs().await.expect_err("nothing listens");
    assert!(
        matches!(err, FlinkError::Transport { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().starts_with("GET /jobs/overview: "), "{err}");
}

#[tokio::test]
async fn a_v1_only_gateway_gives_the_job_id_through_its_column() {
    let fake = FakeFlink::start().await;
    fake.set_api_versions(&["V1"]);
    let l = launcher(&fake);
    let started = l.start("faculty", 3, &table_sql("faculty")).await.expect("start");
    assert_eq!(started.job_id, job_id_for("faculty", 3));
    assert!(!started.adopted);
}

#[tokio::test]
async fn source_metrics_tell_whether_the_job_caught_up() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    let topic = "university-server.public.faculty";
    fake.set_source_metrics(started.job_id.as_str(), 0, &[(topic, 0, 41, 41), (topic, 1, 7, 5)]);
    let progress = source_progress(&fake.jobmanager_url, &started.job_id)
        .await
        .expect("metrics");
    assert_eq!(progress.pending_records, Some(0));
    assert_eq!(progress.partitions.len(), 2);
    let mut high = std::collections::BTreeMap::new();
    high.insert((topic.to_owned(), 0), 41);
    high.insert((topic.to_owned(), 1), 7);
    assert_eq!(progress.caught_up(&high), Some(false), "partition 1 committed 5 of 7");
    fake.set_source_metrics(started.job_id.as_str(), 0, &[(topic, 0, 41, 41), (topic, 1, 7, 7)]);
    let progress = source_progress(&fake.jobmanager_url, &started.job_id)
        .await
        .expect("metrics");
    assert_eq!(progress.caught_up(&high), Some(true));
}

#[tokio::test]
async fn savepoint_triggers_are_polled_by_id() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    let jm = l.jobmanager();
    let trigger = jm
        .stop_with_savepoint(&started.job_id, SAVEPOINTS)
        .await
        .expect("trigger");
    assert_eq!(trigger.len(), 32);
    assert_eq!(
        jm.savepoint_status(&started.job_id, &trigger).await.expect("status"),
        SavepointStatus::InProgress
    );
    let err = jm
        .savepoint_status(&started.job_id, &"f".repeat(32))
        .await
        .expect_err("unknown trigger");
    assert!(matches!(err, FlinkError::Api { status: 404, .. }), "{err}");
}

/// Like a real template: session objects created without IF NOT EXISTS, so a second run in the same session
/// would fail if the first one left them behind.
fn strict_sql(table: &str) -> Vec<String> {
    vec![
        "CREATE CATALOG lake WITH ('type' = 'iceberg', 'catalog-type' = 'rest')".to_owned(),
        format!("CREATE TEMPORARY TABLE src_{table} (id INT) WITH ('connector' = 'kafka')"),
        format!("INSERT INTO lake.university.{table} SELECT * FROM src_{table}"),
    ]
}

#[tokio::test]
async fn no_session_keeps_anything_of_a_start_so_a_table_can_start_again() {
    let fake = FakeFlink::start().await;
    let l = launcher(&fake);
    let first = l.start("faculty", 1, &strict_sql("faculty")).await.expect("start");
    l.stop("faculty", &first.job_id).await.expect("stop");
    let second = l
        .start("faculty", 2, &strict_sql("faculty"))
        .await
        .expect("second start");
    assert_ne!(second.job_id, first.job_id);
    assert_eq!(fake.sessions_opened(), 2);

    // A start that fails half-way is cleaned up too.
    let mut broken = strict_sql("program");
    broken.insert(2, "SELEC oops".to_owned());
    let err = l.start("program", 1, &broken).await.expect_err("syntax error");
    assert!(matches!(err, FlinkError::Statement { .. }), "{err}");
    l.start("program", 1, &strict_sql("program"))
        .await
        .expect("clean retry");
    assert_eq!(fake.sessions_opened(), 4);
    assert_eq!(
        fake.open_sessions(),
        0,
        "every start's session is closed, failed or not"
    );
}

/// Stops a job whose savepoint takes `savepoint`, on a JobManager that serves job details from a cache of
/// `detail_cache`, and returns how long after FINISHED the launcher acknowledged the stop.
async fn stop_acknowledged_after_finished(savepoint: Duration, detail_cache: Option<Duration>) -> Duration {
    let fake = FakeFlink::start().await;
    fake.set_savepoint_after(Some(savepoint));
    fake.set_detail_cache(detail_cache);
    let flink = cdc_orchestrator::config::FlinkConfig {
        stop_timeout: Duration::from_secs(20),
        savepoint_dir: SAVEPOINTS.to_owned(),
        ..Default::default()
    };
    // The settings the sidecar runs with, poll pace included.
    let settings = LaunchSettings::from_config(&flink);
    assert_eq!(settings.poll, POLL_BACKOFF);
    let l = SqlGatewayLauncher::new(
        &fake.gateway_url,
        &fake.jobmanager_url,
        Duration::from_secs(2),
        settings,
    )
    .expect("launcher");
    let started = l.start("faculty", 1, &table_sql("faculty")).await.expect("start");
    let asked = std::time::Instant::now();
    let stopped = l.stop("faculty", &started.job_id).await.expect("stop");
    let acknowledged = asked.elapsed();
    assert!(matches!(stopped, Stopped::Savepoint { .. }), "{stopped:?}");
    assert_eq!(fake.jobs()[0].state, "FINISHED");
    // The fake finishes the job `savepoint` after the stop request, which came after `asked`.
    let after_finished = acknowledged.saturating_sub(savepoint);
    eprintln!(
        "savepoint {savepoint:?}, detail cache {detail_cache:?}: stop acknowledged {after_finished:?} after FINISHED"
    );
    after_finished
}

#[tokio::test]
async fn a_stop_is_acknowledged_within_a_second_of_the_job_finishing() {
    // A slow savepoint: the doubling poll used to answer 3 to 4 s after FINISHED.
    let slow = stop_acknowledged_after_finished(Duration::from_millis(3_300), None).await;
    assert!(slow <= Duration::from_secs(1), "{slow:?} after FINISHED");
    // A quick savepoint on a JobManager whose job details lag by up to 3 s (`web.refresh-interval`), as measured
    // on real Flink 2.0: waiting for the cached detail to say FINISHED used to take ~3 s more.
    let cached = stop_acknowledged_after_finished(Duration::from_millis(500), Some(Duration::from_secs(3))).await;
    assert!(cached <= Duration::from_secs(1), "{cached:?} after FINISHED");
}

#[test]
fn source_metrics_are_recognised() {
    assert!(matches!(
        parse_source_metric("0.pendingRecords"),
        Some(SourceMetric::Pending)
    ));
    match parse_source_metric("1.KafkaSourceReader.topic.university-server.public.faculty.partition.3.committedOffset")
    {
        Some(SourceMetric::Committed(t, p)) => assert_eq!((t.as_str(), p), ("university-server.public.faculty", 3)),
        _ => panic!("not recognised"),
    }
    assert!(parse_source_metric("0.numRecordsIn").is_none());
    assert!(parse_source_metric("x.pendingRecords").is_none());
}

#[test]
fn caught_up_needs_every_partition_committed() {
    let key = ("t".to_owned(), 0);
    let mut high = BTreeMap::new();
    high.insert(key.clone(), 10);
    let mut p = SourceProgress::default();
    assert_eq!(p.caught_up(&high), None, "no metrics, no answer");
    p.partitions.insert(
        key.clone(),
        PartitionProgress {
            current_offset: Some(10),
            committed_offset: Some(9),
        },
    );
    assert_eq!(p.caught_up(&high), Some(false));
    if let Some(x) = p.partitions.get_mut(&key) {
        x.committed_offset = Some(10);
    }
    assert_eq!(p.caught_up(&high), Some(true));
    p.pending_records = Some(3);
    assert_eq!(p.caught_up(&high), Some(false));
}

#[test]
fn query_values_are_encoded() {
    assert_eq!(encode_query("0.a,1.b"), "0.a,1.b");
    assert_eq!(encode_query("a b&c"), "a%20b%26c");
}

#[tokio::test]
async fn a_gateway_that_takes_no_connection_fails_the_start_at_once() {
    // The JobManager answers; the SQL Gateway's port has no listener (the gateway is down). The start fails with
    // the reason at once, for the policy to retry with backoff, instead of retrying until start_timeout.
    let fake = FakeFlink::start().await;
    let gateway = format!("http://127.0.0.1:{}", support::free_port());
    let settings = LaunchSettings {
        savepoint_dir: SAVEPOINTS.to_owned(),
        checkpoint_interval: Duration::from_secs(10),
        start_timeout: Duration::from_secs(15),
        stop_timeout: Duration::from_secs(5),
        poll: POLL_BACKOFF,
    };
    let l =
        SqlGatewayLauncher::new(&gateway, &fake.jobmanager_url, Duration::from_secs(2), settings).expect("launcher");
    let began = std::time::Instant::now();
    let err = l
        .start("faculty", 1, &table_sql("faculty"))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(err, FlinkError::Transport { unreachable: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("POST /v1/sessions: "), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "failed after {:?}, not at once",
        began.elapsed()
    );
    assert!(fake.jobs().is_empty());
}

/// What a refused start or stop must never send: a session, a statement, a submission, a stop or a cancel.
fn changing_requests(fake: &FakeFlink) -> [(Route, usize); 5] {
    [
        Route::OpenSession,
        Route::ExecuteStatement,
        Route::SubmitJob,
        Route::StopJob,
        Route::CancelJob,
    ]
    .map(|route| (route, fake.requests(route)))
}

#[tokio::test]
async fn a_replica_that_does_not_lead_sends_flink_nothing_that_starts_stops_or_cancels() {
    let fake = FakeFlink::start().await;
    let running = job_id_for("faculty", 1);
    fake.add_job(running.as_str(), "cdc-faculty", "RUNNING", 1);
    let (leadership, control) = cdc_orchestrator::lease::Leadership::controlled("pod-a");
    control.stand_by(Some("pod-b".to_owned()));
    let l = launcher(&fake).with_guard(leadership.guard());

    let refused = l
        .start("program", 7, &table_sql("program"))
        .await
        .expect_err("not the leader");
    assert!(matches!(refused, FlinkError::NotLeader { .. }), "{refused:?}");
    assert!(!refused.is_transient());
    let text = cdc_orchestrator::logging::chain(&refused).to_string();
    assert!(text.contains("held by pod-b"), "{text}");
    let refused = l.stop("faculty", &running).await.expect_err("not the leader");
    assert!(matches!(refused, FlinkError::NotLeader { .. }), "{refused:?}");

    assert!(
        changing_requests(&fake).iter().all(|(_, n)| *n == 0),
        "{:?}",
        changing_requests(&fake)
    );
    assert_eq!(fake.live_jobs_named("cdc-faculty").len(), 1, "still running");
    assert!(fake.live_jobs_named("cdc-program").is_empty());
    // Reads still go out: the listing serves a standby's view.
    assert_eq!(l.list_jobs().await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_lease_that_runs_out_mid_start_holds_back_the_statements_still_to_send() {
    let fake = FakeFlink::start().await;
    // Each statement takes 300 ms to finish; the lease runs out 100 ms in, by the replica's own clock, and nobody
    // tells it: the first statement went out, the rest (the INSERT among them) must not.
    fake.set_statement_delay(Duration::from_millis(300));
    let (leadership, control) = cdc_orchestrator::lease::Leadership::controlled("pod-a");
    control.lead_until(tokio::time::Instant::now() + Duration::from_millis(100));
    let l = launcher(&fake).with_guard(leadership.guard());

    let refused = l
        .start("faculty", 1, &table_sql("faculty"))
        .await
        .expect_err("the lease ran out");
    assert!(matches!(refused, FlinkError::NotLeader { .. }), "{refused:?}");
    assert_eq!(fake.requests(Route::ExecuteStatement), 1, "{:?}", fake.statements());
    assert_eq!(fake.requests(Route::SubmitJob), 0);
    assert!(fake.jobs().is_empty());
}
