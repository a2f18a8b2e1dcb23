//! The run loop in process, with a launcher test double and tokio's clock paused: starts, stops, adoption,
//! retries, Flink errors and shutdown, without a binary, a broker, a Flink or real waiting. Watcher events go in
//! through the channel the real watcher uses; operator commands through the HTTP server's channel.

use crate::support;
use crate::support::launcher_double;
use crate::support::loop_harness::{self, Harness};

use std::time::Duration;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::controller::ControlCommand;
use cdc_orchestrator::kafka::watcher::WatchEvent;
use cdc_orchestrator::model::{GENERATION_BITS, JobState, job_id_for};
use cdc_orchestrator::policy::TableState;
use launcher_double::{Failure, FakeLauncher};
use tokio::time::Instant;

const TABLES: [&str; 2] = ["faculty", "program"];

/// A run loop over `launcher` for [`TABLES`], always the leader; the default configuration with `edit` applied.
fn start(launcher: &FakeLauncher, edit: impl FnOnce(&mut Config)) -> Harness {
    loop_harness::start(launcher, &TABLES, edit)
}

#[tokio::test(start_paused = true)]
async fn a_change_starts_a_job_pinned_from_a_generation_new_to_this_process() {
    let launcher = FakeLauncher::new();
    let h = start(&launcher, |_| {});
    let status = h.running("faculty").await;
    let starts = launcher.starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    let (table, generation) = &starts[0];
    assert_eq!(table, "faculty");
    // The policy's first generation, above this process's start time.
    assert_eq!(generation & ((1 << GENERATION_BITS) - 1), 1);
    assert!(generation >> GENERATION_BITS > 1_600_000_000_000, "{generation}");
    assert_eq!(status.job_id, Some(job_id_for("faculty", *generation)));
    assert_eq!(status.job_state, Some(JobState::Running));
    assert_eq!(launcher.live_jobs("faculty").len(), 1);
    let metrics = h.metrics.render();
    assert!(
        metrics.contains("cdc_job_starts_total{table=\"faculty\",result=\"ok\"} 1"),
        "{metrics}"
    );
    // More changes are the running job's: no second start.
    h.send(support::change_event("faculty")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(launcher.starts().len(), 1);
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn an_operator_stop_takes_a_savepoint_and_the_table_goes_idle() {
    let launcher = FakeLauncher::new();
    let h = start(&launcher, |_| {});
    let job_id = h.running("faculty").await.job_id.expect("job id");
    let answer = h.command("faculty", ControlCommand::Stop).await;
    assert_eq!(answer.state, TableState::Stopping, "{answer:?}");
    h.wait_until("stopped", |h| h.state("faculty") == Some(TableState::Idle))
        .await;
    assert_eq!(launcher.stops(), vec![("faculty".to_owned(), job_id)]);
    assert!(launcher.live_jobs("faculty").is_empty());
    assert!(
        h.metrics
            .render()
            .contains("cdc_job_stops_total{table=\"faculty\",result=\"ok\"} 1")
    );
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_flink_runs_at_start_up_is_adopted_not_started_again() {
    let launcher = FakeLauncher::new();
    let earlier = job_id_for("faculty", 77);
    launcher.add_job("faculty", earlier.clone(), JobState::Running);
    let h = start(&launcher, |_| {});
    h.wait_until("adopted", |h| h.state("faculty") == Some(TableState::Running))
        .await;
    assert_eq!(h.status("faculty").and_then(|s| s.job_id), Some(earlier));
    h.send(support::change_event("faculty")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(launcher.starts().is_empty(), "{:?}", launcher.calls());
    assert_eq!(launcher.live_jobs("faculty").len(), 1);
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_is_retried_after_backoff_with_a_new_generation() {
    let launcher = FakeLauncher::new();
    launcher.fail_starts(&[Failure::Unreachable]);
    let h = start(&launcher, |c| {
        c.policy.retry_initial_backoff = Duration::from_secs(8);
        c.policy.cooldown = Duration::ZERO;
    });
    h.send(WatchEvent::BrokerUp).await;
    let begin = Instant::now();
    h.send(support::change_event("faculty")).await;
    h.wait_until("the first start failed", |h| {
        h.status("faculty").is_some_and(|s| s.consecutive_failures == 1)
    })
    .await;
    h.wait_until("the retry runs", |h| h.state("faculty") == Some(TableState::Running))
        .await;
    // Retried after the backoff (8 s, less up to a quarter of jitter), not at once.
    assert!(begin.elapsed() >= Duration::from_secs(6), "{:?}", begin.elapsed());
    let generations: Vec<u64> = launcher.starts().into_iter().map(|(_, g)| g).collect();
    assert_eq!(generations.len(), 2, "{generations:?}");
    assert_eq!(generations[1], generations[0] + 1);
    assert_eq!(h.status("faculty").map(|s| s.consecutive_failures), Some(0));
    assert!(
        h.metrics
            .render()
            .contains("cdc_job_starts_total{table=\"faculty\",result=\"failed\"} 1")
    );
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_fails_transiently_is_retried_with_backoff_until_the_job_is_gone() {
    let launcher = FakeLauncher::new();
    let h = start(&launcher, |_| {});
    let job_id = h.running("faculty").await.job_id.expect("job id");
    launcher.fail_stops(&[Failure::Unreachable, Failure::Unreachable]);
    let begin = Instant::now();
    h.command("faculty", ControlCommand::Stop).await;
    h.wait_until("stopped", |h| h.state("faculty") == Some(TableState::Idle))
        .await;
    // 1 s after the first failure, 2 s after the second.
    assert!(begin.elapsed() >= Duration::from_secs(3), "{:?}", begin.elapsed());
    assert_eq!(launcher.stops(), vec![("faculty".to_owned(), job_id); 3]);
    assert!(launcher.live_jobs("faculty").is_empty());
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_flink_refuses_is_asked_for_again_once_a_listing_shows_the_job() {
    let launcher = FakeLauncher::new();
    let h = start(&launcher, |c| c.flink.reconcile_interval = Duration::from_secs(30));
    h.running("faculty").await;
    launcher.fail_stops(&[Failure::Refused]);
    h.command("faculty", ControlCommand::Stop).await;
    h.wait_until("the stop failed", |h| h.launcher.stops().len() == 1).await;
    let listings = launcher.listings();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(launcher.stops().len(), 1, "no retry before a listing");
    assert_eq!(h.state("faculty"), Some(TableState::Stopping));
    h.wait_until("stopped after the next listing", |h| {
        h.state("faculty") == Some(TableState::Idle)
    })
    .await;
    assert!(launcher.listings() > listings);
    assert_eq!(launcher.stops().len(), 2);
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_listing_makes_the_sidecar_unready_until_flink_answers() {
    let launcher = FakeLauncher::new();
    launcher.fail_listings(&[Failure::Unreachable]);
    let h = start(&launcher, |_| {});
    h.send(WatchEvent::BrokerUp).await;
    h.wait_until("the listing failed", |h| h.launcher.listings() == 1).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        h.health.readiness().is_err_and(|e| e.starts_with("flink: ")),
        "{:?}",
        h.health.readiness()
    );
    // Starts go on meanwhile.
    h.running("faculty").await;
    h.wait_until("the next listing", |h| h.launcher.listings() >= 2).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.health.readiness(), Ok(()));
    assert_eq!(h.state("faculty"), Some(TableState::Running));
    h.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_stop_in_flight_and_returns_as_soon_as_it_is_done() {
    let launcher = FakeLauncher::new();
    launcher.set_stop_delay(Duration::from_secs(5));
    let h = start(&launcher, |c| c.flink.shutdown_timeout = Duration::from_secs(20));
    h.running("faculty").await;
    h.command("faculty", ControlCommand::Stop).await;
    let took = h.shut_down().await;
    assert!(took <= Duration::from_secs(6), "{took:?}");
    assert!(launcher.live_jobs("faculty").is_empty(), "the stop completed");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_calls_slower_than_its_timeout() {
    let launcher = FakeLauncher::new();
    launcher.set_stop_delay(Duration::from_secs(3_600));
    let h = start(&launcher, |c| c.flink.shutdown_timeout = Duration::from_secs(2));
    h.running("faculty").await;
    h.command("faculty", ControlCommand::Stop).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = h.shut_down().await;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_running_jobs_when_configured_and_retries_a_failed_stop() {
    let launcher = FakeLauncher::new();
    let h = start(&launcher, |c| {
        c.flink.stop_jobs_on_shutdown = true;
        c.flink.shutdown_timeout = Duration::from_secs(20);
    });
    let job_id = h.running("faculty").await.job_id.expect("job id");
    launcher.fail_stops(&[Failure::Unreachable]);
    let took = h.shut_down().await;
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(launcher.stops(), vec![("faculty".to_owned(), job_id); 2]);
    assert!(launcher.live_jobs("faculty").is_empty());
}

#[tokio::test(start_paused = true)]
async fn shutdown_starts_nothing_new() {
    let launcher = FakeLauncher::new();
    launcher.set_stop_delay(Duration::from_secs(5));
    let h = start(&launcher, |c| {
        c.flink.shutdown_timeout = Duration::from_secs(20);
        c.policy.cooldown = Duration::ZERO;
    });
    h.running("faculty").await;
    h.command("faculty", ControlCommand::Stop).await;
    // A change while the job stops: the policy starts a new job once the stop completes, which is during
    // shutdown here.
    h.send(support::change_event("faculty")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = h.shut_down().await;
    assert!(took <= Duration::from_secs(6), "{took:?}");
    assert_eq!(launcher.starts().len(), 1, "{:?}", launcher.calls());
    assert!(launcher.live_jobs("faculty").is_empty());
}
