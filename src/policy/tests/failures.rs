//! Job failures: Flink's exception of a RESTARTING or FAILED job as `last_error`, counted once per failure, and
//! a job that keeps restarting stopped once its table is failing.

use super::*;

const REASON: &str = "org.apache.flink.runtime.JobException: Recovery is suppressed; caused by: \
    org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed";

fn failure(table: &str, generation: u64, at: u64) -> Input {
    Input::JobFailure {
        table: table.into(),
        job_id: id(&format!("{table}-{generation}")),
        reason: REASON.into(),
        at: Millis(at),
    }
}

fn job_failed_events(actions: &[Action]) -> usize {
    events(actions)
        .iter()
        .filter(|e| matches!(e, Event::JobFailed { .. }))
        .count()
}

/// faculty's running job (generation 1) is RESTARTING since 2 s.
fn restarting_faculty() -> Policy {
    let mut p = running_faculty();
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Restarting));
    p
}

#[test]
fn one_flink_failure_counts_once_however_often_it_is_reported() {
    let mut p = restarting_faculty();
    let first = p.handle(Millis(3 * SEC), failure("faculty", 1, 100));
    assert_eq!(job_failed_events(&first), 1);
    for later in [4, 5, 6] {
        let again = p.handle(Millis(later * SEC), failure("faculty", 1, 100));
        assert!(again.is_empty(), "{again:?}");
        // An older failure reported late is not new either.
        assert!(p.handle(Millis(later * SEC), failure("faculty", 1, 50)).is_empty());
    }
    let status = p.status("faculty").unwrap();
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.last_error.as_deref(), Some(REASON));
    assert_eq!(
        job_failed_events(&p.handle(Millis(7 * SEC), failure("faculty", 1, 101))),
        1
    );
    assert_eq!(p.status("faculty").unwrap().consecutive_failures, 2);
}

#[test]
fn a_restarting_job_is_stopped_when_its_table_is_failing_and_started_anew_after_the_backoff() {
    let mut p = restarting_faculty();
    let failing_after = u64::from(p.settings().policy.failing_after);
    let mut all = Vec::new();
    for n in 1..=failing_after {
        let out = p.handle(Millis((2 + n) * SEC), failure("faculty", 1, n));
        if n < failing_after {
            assert!(stops(&out).is_empty(), "stopped after {n} failures: {out:?}");
        }
        all.extend(out);
    }
    assert_eq!(stops(&all), one_stop("faculty", "faculty-1", StopReason::Failing));
    assert!(events(&all).contains(&Event::Failing {
        table: "faculty".into(),
        failures: p.settings().policy.failing_after,
    }));
    let at = (3 + failing_after) * SEC;
    p.handle(Millis(at), stopped("faculty"));
    let status = p.status("faculty").unwrap();
    assert_eq!(status.state, TableState::Failing);
    assert_eq!(status.last_error.as_deref(), Some(REASON));
    // The changes wait for a new start, after the backoff.
    let retried = run_until(&mut p, at + 3_600 * SEC);
    let started: Vec<_> = retried
        .iter()
        .filter_map(|(_, a)| matches!(a, Action::Start { .. }).then_some(a.clone()))
        .collect();
    assert_eq!(starts(&started), vec![("faculty".to_owned(), 2, StartReason::Retry)]);
}

#[test]
fn a_failing_job_that_runs_is_not_stopped_and_only_a_completed_stop_clears_its_failures() {
    let mut p = restarting_faculty();
    let failing_after = u64::from(p.settings().policy.failing_after);
    // Flink's restart loop shows the job RUNNING between failures: the last failure finds it RUNNING.
    for n in 1..failing_after {
        p.handle(Millis((2 + n) * SEC), failure("faculty", 1, n));
    }
    p.handle(Millis(10 * SEC), job("faculty", 1, JobState::Running));
    let out = p.handle(Millis(11 * SEC), failure("faculty", 1, failing_after));
    assert!(stops(&out).is_empty(), "{out:?}");
    assert_eq!(
        p.status("faculty").unwrap().consecutive_failures,
        p.settings().policy.failing_after
    );
    // An idle stop that completes: the job ran, the failures are over.
    let idle = run_until(&mut p, 3_600 * SEC);
    assert_eq!(
        stops(&idle.into_iter().map(|(_, a)| a).collect::<Vec<_>>()),
        one_stop("faculty", "faculty-1", StopReason::Idle)
    );
    let out = p.handle(Millis(3_601 * SEC), stopped("faculty"));
    assert!(events(&out).contains(&Event::Recovered {
        table: "faculty".into()
    }));
    let status = p.status("faculty").unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.last_error, None);
}

#[test]
fn a_job_failure_survives_the_next_start_reaching_running() {
    let mut p = restarting_faculty();
    for n in 1..=u64::from(p.settings().policy.failing_after) {
        p.handle(Millis((2 + n) * SEC), failure("faculty", 1, n));
    }
    p.handle(Millis(20 * SEC), stopped("faculty"));
    run_until(&mut p, 3_600 * SEC);
    p.handle(Millis(3_600 * SEC), job("faculty", 2, JobState::Running));
    let status = p.status("faculty").unwrap();
    assert_eq!(status.state, TableState::Running);
    assert_eq!(status.consecutive_failures, p.settings().policy.failing_after);
    assert_eq!(status.last_error.as_deref(), Some(REASON));
}

#[test]
fn a_failed_start_is_still_cleared_by_a_running_job() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), start_failed("faculty"));
    assert_eq!(p.status("faculty").unwrap().last_error.as_deref(), Some("boom"));
    run_until(&mut p, 60 * SEC);
    p.handle(Millis(60 * SEC), job("faculty", 2, JobState::Running));
    let status = p.status("faculty").unwrap();
    assert_eq!((status.consecutive_failures, status.last_error), (0, None));
}

#[test]
fn a_failed_job_gets_its_reason_without_counting_twice() {
    let mut p = running_faculty();
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Failed));
    assert_eq!(p.status("faculty").unwrap().consecutive_failures, 1);
    let out = p.handle(Millis(3 * SEC), failure("faculty", 1, 100));
    assert_eq!(job_failed_events(&out), 1);
    let status = p.status("faculty").unwrap();
    assert_eq!(status.consecutive_failures, 1);
    assert_eq!(status.last_error.as_deref(), Some(REASON));
}

#[test]
fn failures_of_other_jobs_change_nothing() {
    let mut p = restarting_faculty();
    assert!(p.handle(Millis(3 * SEC), failure("faculty", 7, 100)).is_empty());
    assert!(p.handle(Millis(3 * SEC), failure("biology", 1, 100)).is_empty());
    let status = p.status("faculty").unwrap();
    assert_eq!((status.consecutive_failures, status.last_error), (0, None));
}
