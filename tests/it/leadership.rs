//! Only the leader acts (issue 28): the run loop in process under a hand-driven [`Leadership`], with the launcher
//! double and tokio's clock paused (the harness is `support::loop_harness`, shared with `controller`). A standby
//! starts and stops nothing (it only lists, read-only) and remembers what it sees; taking over adopts Flink's running
//! jobs and starts the tables that changed meanwhile, with job ids new to the term; losing the lead aborts the calls
//! in flight.

use crate::support::launcher_double::{Call, FakeLauncher};
use crate::support::loop_harness::{self, Harness};

use std::time::Duration;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::controller::{ControlCommand, ControlError};
use cdc_orchestrator::model::{GENERATION_BITS, JobState, job_id_for};
use cdc_orchestrator::policy::TableState;

/// A run loop over `launcher` as replica pod-a, standing by while pod-b leads, with a 60 s idle timeout and `edit`.
fn standby(launcher: &FakeLauncher, edit: impl FnOnce(&mut Config)) -> Harness {
    loop_harness::standby(launcher, &["faculty", "program"], |config| {
        config.policy.idle_timeout = Duration::from_secs(60);
        edit(config);
    })
}

#[tokio::test(start_paused = true)]
async fn a_standby_acts_on_nothing_and_taking_over_adopts_the_running_job_and_starts_what_changed_meanwhile() {
    let launcher = FakeLauncher::new();
    // The leader, pod-b, runs faculty's job.
    let leaders_job = job_id_for("faculty", 5);
    launcher.add_job("faculty", leaders_job.clone(), JobState::Running);
    let h = standby(&launcher, |_| {});

    h.change("program").await;
    h.change("faculty").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(h.acts().is_empty(), "a standby acts on nothing: {:?}", launcher.calls());
    assert!(
        launcher.listings() >= 3,
        "it lists, read-only, for Flink's health: {:?}",
        launcher.calls()
    );
    assert!(
        h.health.dependencies_up().contains(&("flink", true)),
        "{:?}",
        h.health.dependencies_up()
    );
    // It shows what it sees: the activity, no job.
    let program = h.status("program").expect("program was seen");
    assert!(
        program.last_record_at.is_some() && program.job_id.is_none(),
        "{program:?}"
    );
    assert_eq!(program.state, TableState::Idle);
    assert_eq!(
        h.try_command("program", ControlCommand::Trigger).await,
        Err(ControlError::NotLeader {
            leader: Some("pod-b".to_owned())
        })
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(h.acts().is_empty(), "the command did nothing: {:?}", launcher.calls());

    let took_over = cdc_orchestrator::model::now_ms();
    let before = launcher.calls().len();
    h.lead();
    h.wait_until("faculty adopted, program started", |h| {
        h.state("faculty") == Some(TableState::Running) && h.state("program") == Some(TableState::Running)
    })
    .await;
    assert_eq!(h.status("faculty").and_then(|s| s.job_id), Some(leaders_job));
    let calls = launcher.calls();
    assert_eq!(calls.get(before), Some(&Call::List), "the listing first: {calls:?}");
    let starts = launcher.starts();
    assert_eq!(
        starts.len(),
        1,
        "only program starts; faculty's job is adopted: {starts:?}"
    );
    let (table, generation) = &starts[0];
    assert_eq!(table, "program");
    // Pinned from the take-over, not from the process's start 35 s earlier.
    assert!(
        generation >> GENERATION_BITS >= took_over,
        "{generation} vs {took_over}"
    );
    assert_eq!(launcher.live_jobs("faculty").len(), 1);
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn activity_older_than_the_idle_timeout_is_not_replayed_at_take_over() {
    let launcher = FakeLauncher::new();
    let h = standby(&launcher, |_| {});
    h.change("program").await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    h.lead();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(launcher.starts().is_empty(), "{:?}", launcher.calls());
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn losing_the_lead_mid_start_aborts_it_and_leading_again_starts_with_a_fresh_job_id() {
    let launcher = FakeLauncher::new();
    launcher.set_start_delay(Duration::from_secs(30));
    let h = standby(&launcher, |_| {});
    h.lead();
    h.change("faculty").await;
    h.wait_until("the start is in flight", |h| h.launcher.starts().len() == 1)
        .await;
    let first = launcher.starts()[0].1;

    h.lease().stand_by(Some("pod-b".to_owned()));
    let acts = h.acts();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.acts(), acts, "nothing further is started or stopped");
    assert!(
        launcher.jobs().is_empty(),
        "the start was aborted before it created a job"
    );
    assert_eq!(h.state("faculty"), None, "the standby forgot the leader's start");

    // Changes while standing by, then the lead again: a start whose job id no earlier term pinned.
    launcher.set_start_delay(Duration::ZERO);
    h.change("faculty").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.lead();
    h.wait_until("faculty runs", |h| h.state("faculty") == Some(TableState::Running))
        .await;
    let starts = launcher.starts();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let second = starts[1].1;
    assert!(
        second >> GENERATION_BITS > first >> GENERATION_BITS,
        "{first} then {second}"
    );
    assert_ne!(job_id_for("faculty", first), job_id_for("faculty", second));
    assert_eq!(
        h.status("faculty").and_then(|s| s.job_id),
        Some(job_id_for("faculty", second))
    );
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_standby_that_shuts_down_stops_nothing() {
    let launcher = FakeLauncher::new();
    launcher.add_job("faculty", job_id_for("faculty", 5), JobState::Running);
    let h = standby(&launcher, |c| c.flink.stop_jobs_on_shutdown = true);
    h.change("faculty").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = launcher.calls();
    h.shut_down().await;
    assert!(
        launcher.stops().is_empty() && launcher.starts().is_empty(),
        "{:?}",
        launcher.calls()
    );
    assert_eq!(calls.first(), Some(&Call::List), "{calls:?}");
    assert_eq!(launcher.live_jobs("faculty").len(), 1);
}
