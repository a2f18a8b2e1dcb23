//! Stops that fail are the policy's to retry.

use super::*;

#[test]
fn a_transiently_failed_stop_is_asked_for_again_with_backoff() {
    let mut p = stopping_faculty();
    let actions = p.handle(Millis(3 * SEC), stop_failed("faculty", "faculty-1", true));
    assert!(stops(&actions).is_empty(), "{actions:?}");
    assert!(events(&actions).contains(&Event::StopFailed {
        table: "faculty".into(),
        job_id: id("faculty-1"),
        failures: 1,
        retry_at: Some(Millis(4 * SEC)),
    }));
    assert!(p.retrying_stops());
    assert_eq!(p.next_deadline(), Some(Millis(4 * SEC)));
    let retry = run_until(&mut p, 4 * SEC);
    assert_eq!(
        stops(&only_actions(&retry)),
        one_stop("faculty", "faculty-1", StopReason::Operator)
    );
    assert!(!p.retrying_stops());
    // The second failure waits twice as long; a third stop comes only then.
    p.handle(Millis(5 * SEC), stop_failed("faculty", "faculty-1", true));
    assert!(stops(&only_actions(&run_until(&mut p, 6 * SEC + 999))).is_empty());
    assert_eq!(stops(&only_actions(&run_until(&mut p, 7 * SEC))).len(), 1);
    // Once the stop completes the table is idle, with no retry left.
    p.handle(Millis(8 * SEC), stopped("faculty"));
    let s = p.status("faculty").expect("status");
    assert_eq!(s.state, TableState::Idle);
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn a_stop_that_failed_for_good_is_asked_for_again_when_a_listing_shows_the_job() {
    let mut p = stopping_faculty();
    let actions = p.handle(Millis(3 * SEC), stop_failed("faculty", "faculty-1", false));
    assert!(stops(&actions).is_empty(), "{actions:?}");
    assert_eq!(p.next_deadline(), None, "no timer: the next listing tells");
    let actions = p.handle(Millis(4 * SEC), job("faculty", 1, JobState::Running));
    assert_eq!(stops(&actions), one_stop("faculty", "faculty-1", StopReason::Operator));
    // Only once per failure: the next listing, while that stop is in flight, asks for nothing.
    assert!(stops(&p.handle(Millis(5 * SEC), job("faculty", 1, JobState::Running))).is_empty());
    // A listing showing the job ended settles it.
    p.handle(Millis(6 * SEC), job("faculty", 1, JobState::Finished));
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Idle));
}

#[test]
fn a_failed_stop_of_a_duplicate_is_retried_and_a_stale_failure_changes_nothing() {
    let mut p = running_faculty();
    let actions = p.handle(Millis(SEC), unpinned("faculty", "second", JobState::Running));
    assert_eq!(stops(&actions), one_stop("faculty", "second", StopReason::Duplicate));
    p.handle(Millis(2 * SEC), stop_failed("faculty", "second", true));
    assert_eq!(
        stops(&only_actions(&run_until(&mut p, 3 * SEC))),
        one_stop("faculty", "second", StopReason::Duplicate)
    );
    p.handle(Millis(4 * SEC), unpinned("faculty", "second", JobState::Canceled));
    // A failure reported for a job that is gone by now is late news.
    assert!(
        p.handle(Millis(5 * SEC), stop_failed("faculty", "second", true))
            .is_empty()
    );
    assert!(
        p.handle(Millis(5 * SEC), stop_failed("faculty", "never-seen", true))
            .is_empty()
    );
    assert!(!p.retrying_stops());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Running));
}
