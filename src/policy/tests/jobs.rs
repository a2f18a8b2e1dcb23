//! What Flink reports: jobs adopted, duplicates stopped, late and stale reports, states shown as Flink says.

use super::*;

#[test]
fn a_running_job_of_an_unknown_table_is_adopted_and_generations_continue_above_it() {
    let mut p = default_policy();
    let actions = p.handle(Millis(0), job("faculty", 41, JobState::Running));
    assert!(starts(&actions).is_empty());
    assert_eq!(
        events(&actions),
        vec![Event::Adopted {
            table: "faculty".into(),
            job_id: id("faculty-41"),
            generation: 41
        }]
    );
    let status = p.status("faculty").expect("status");
    assert_eq!((status.state, status.generation), (TableState::Running, 41));
    let timed = run_until(&mut p, 60 * SEC);
    assert_eq!(
        stops(&only_actions(&timed)),
        one_stop("faculty", "faculty-41", StopReason::Idle)
    );
    p.handle(Millis(61 * SEC), stopped("faculty"));
    let actions = p.handle(Millis(62 * SEC), activity("faculty", 1));
    assert_eq!(starts(&actions), vec![("faculty".into(), 42, StartReason::Changes)]);
}

#[test]
fn a_finished_job_seen_at_startup_raises_the_generation_without_adopting() {
    let mut p = default_policy();
    assert!(p.handle(Millis(0), job("faculty", 9, JobState::Finished)).is_empty());
    let actions = p.handle(Millis(1), activity("faculty", 1));
    assert_eq!(starts(&actions), vec![("faculty".into(), 10, StartReason::Changes)]);
}

#[test]
fn a_second_job_for_a_table_is_stopped_once_as_a_duplicate() {
    let mut p = running_faculty();
    let leftover = Input::JobState(JobObservation {
        table: "faculty".into(),
        job_id: id("leftover"),
        generation: None,
        state: JobState::Running,
    });
    let actions = p.handle(Millis(2 * SEC), leftover.clone());
    assert_eq!(stops(&actions), one_stop("faculty", "leftover", StopReason::Duplicate));
    assert!(p.handle(Millis(3 * SEC), leftover).is_empty());
    assert_eq!(p.status("faculty").and_then(|s| s.job_id), Some(id("faculty-1")));
    // Our job fails while the duplicate is still on its way out: no new start until the duplicate is gone.
    p.handle(Millis(4 * SEC), activity("faculty", 1));
    assert!(starts(&p.handle(Millis(5 * SEC), job("faculty", 1, JobState::Failed))).is_empty());
    assert!(starts(&only_actions(&run_until(&mut p, 600 * SEC))).is_empty());
    assert_eq!(
        p.status("faculty").map(|s| s.duplicate_jobs),
        Some(vec![id("leftover")])
    );
    let gone = Input::Stopped {
        table: "faculty".into(),
        job_id: Some(id("leftover")),
    };
    assert_eq!(starts(&p.handle(Millis(601 * SEC), gone)).len(), 1);
}

#[test]
fn late_reports_about_a_stopped_job_change_nothing() {
    let mut p = running_faculty();
    assert_eq!(stops(&only_actions(&run_until(&mut p, 61 * SEC))).len(), 1);
    p.handle(Millis(62 * SEC), stopped("faculty"));
    // A job list fetched before the stop completed still shows it RUNNING.
    let actions = p.handle(Millis(63 * SEC), job("faculty", 1, JobState::Running));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Idle));
    assert!(p.handle(Millis(64 * SEC), start_failed("faculty")).is_empty());
}

#[test]
fn a_late_report_about_the_previous_job_is_not_taken_for_the_starting_one() {
    let mut p = running_faculty();
    run_until(&mut p, 61 * SEC);
    p.handle(Millis(62 * SEC), stopped("faculty"));
    p.handle(Millis(63 * SEC), activity("faculty", 1));
    // Without a generation, the old job's FINISHED could pass for the new, starting job (id not known yet).
    let old = Input::JobState(JobObservation {
        table: "faculty".into(),
        job_id: id("faculty-1"),
        generation: None,
        state: JobState::Finished,
    });
    assert!(p.handle(Millis(64 * SEC), old).is_empty());
    let status = p.status("faculty").expect("status");
    assert_eq!((status.state, status.generation), (TableState::Starting, 2));
}

#[test]
fn excluded_tables_are_ignored_entirely() {
    let mut p = Policy::new(settings_with(|policy, _| policy.exclude = vec!["audit".into()]));
    assert!(p.handle(Millis(0), activity("audit", 10)).is_empty());
    assert!(p.handle(Millis(0), job("audit", 3, JobState::Running)).is_empty());
    assert!(p.status("audit").is_none());
}

#[test]
fn times_beyond_the_supported_range_are_clamped_not_a_panic() {
    let mut p = default_policy();
    for table in ["a", "b", "c", "d", "e", "f", "g"] {
        p.handle(Millis(u64::MAX), activity(table, 1));
    }
    p.handle(Millis(u64::MAX), Input::Tick);
    assert_eq!(p.status("a").and_then(|s| s.last_start_at), Some(Millis::MAX));
}

#[test]
fn time_never_goes_backwards() {
    let mut p = default_policy();
    p.handle(Millis(100 * SEC), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    assert_eq!(p.next_deadline(), Some(Millis(160 * SEC)));
}

#[test]
fn status_shows_what_comes_next_and_when() {
    let mut p = running_faculty();
    let s = p.status("faculty").expect("status");
    assert_eq!(s.job_id, Some(id("faculty-1")));
    assert_eq!(s.job_state, Some(JobState::Running));
    assert_eq!(s.job_since, Some(Millis(SEC)));
    assert_eq!(s.last_start_at, Some(Millis(0)));
    assert_eq!(
        s.next,
        Some(NextStep {
            action: NextAction::Stop,
            at: Some(Millis(61 * SEC)),
            waiting_for: None
        })
    );
    assert_eq!(stops(&only_actions(&run_until(&mut p, 61 * SEC))).len(), 1);
    p.handle(Millis(61 * SEC), stopped("faculty"));
    p.handle(Millis(62 * SEC), operator("faculty", ControlCommand::Trigger));
    // Cooldown ended at 30 s, so the trigger started it; stop it again to see a pending state.
    p.handle(Millis(63 * SEC), start_failed("faculty"));
    let s = p.status("faculty").expect("status");
    assert_eq!(s.state, TableState::Pending);
    assert_eq!(s.pending_since, Some(Millis(62 * SEC)));
    let next = s.next.clone().expect("next");
    assert_eq!(next.action, NextAction::Start);
    assert_eq!(next.at, Some(Millis(92 * SEC)));
    assert_eq!(next.waiting_for, Some(WaitCause::Cooldown));
    let json = serde_json::to_value(&s).expect("status serializes");
    assert_eq!(json["state"], "pending");
    assert_eq!(json["next"]["at"], 92_000);
}

#[test]
fn a_slow_start_still_gets_its_full_idle_time_once_running() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    assert_eq!(p.next_deadline(), None, "no idle clock while starting");
    assert!(stops(&p.handle(Millis(90 * SEC), job("faculty", 1, JobState::Running))).is_empty());
    assert_eq!(p.next_deadline(), Some(Millis(150 * SEC)));
}

#[test]
fn an_ended_job_of_an_earlier_process_is_history_while_a_start_waits() {
    // Issue 16: after a restart, a listing landing while the first start waits for the gateway shows the
    // table's latest job, stopped by the previous process. It is not the new start's job.
    let mut p = default_policy();
    assert_eq!(starts(&p.handle(Millis(0), activity("faculty", 1))).len(), 1);
    let actions = p.handle(Millis(SEC), unpinned("faculty", "215daab4", JobState::Finished));
    assert!(actions.is_empty(), "{actions:?}");
    let s = p.status("faculty").expect("status");
    assert_eq!((s.state, s.generation, s.job_id), (TableState::Starting, 1, None));
    let actions = p.handle(Millis(2 * SEC), started("faculty", 1, "faculty-1"));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Running));
    // Later listings showing it again change nothing either.
    assert!(
        p.handle(Millis(3 * SEC), unpinned("faculty", "215daab4", JobState::Running))
            .is_empty()
    );
}

#[test]
fn a_report_naming_the_current_jobs_id_is_never_a_duplicate() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Failed));
    // The retry adopted the job the first start created after all (the launcher adopts a live job of the table).
    let retry = only_actions(&run_until(&mut p, 31 * SEC));
    assert_eq!(starts(&retry), vec![("faculty".into(), 2, StartReason::Retry)]);
    assert!(p.handle(Millis(32 * SEC), started("faculty", 2, "adopted")).is_empty());
    // The first start's answer arrives late, naming the same job under the old generation.
    let actions = p.handle(Millis(33 * SEC), started("faculty", 1, "adopted"));
    assert!(stops(&actions).is_empty(), "{actions:?}");
    // And the job's end is news, whatever generation or none the report carries.
    let actions = p.handle(Millis(34 * SEC), unpinned("faculty", "adopted", JobState::Finished));
    assert!(
        events(&actions).contains(&Event::JobEnded {
            table: "faculty".into(),
            job_id: id("adopted"),
            state: JobState::Finished
        }),
        "{actions:?}"
    );
}

#[test]
fn a_late_start_failure_of_an_earlier_generation_changes_nothing() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    // Generation 1's job failed (seen in a listing) before its start's answer came.
    p.handle(Millis(SEC), job("faculty", 1, JobState::Failed));
    run_until(&mut p, 31 * SEC);
    assert_eq!(p.status("faculty").map(|s| s.generation), Some(2));
    let late = Input::StartFailed {
        table: "faculty".into(),
        generation: Some(1),
        error: "job FAILED instead of RUNNING".into(),
    };
    assert!(p.handle(Millis(32 * SEC), late).is_empty());
    let s = p.status("faculty").expect("status");
    assert_eq!((s.state, s.consecutive_failures), (TableState::Starting, 1));
}

#[test]
fn a_live_job_seen_while_a_start_has_no_id_is_its_own_or_a_duplicate_once_it_answers() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(0), activity("program", 1));
    assert!(
        p.handle(Millis(SEC), unpinned("faculty", "left-over", JobState::Running))
            .is_empty()
    );
    assert!(
        p.handle(Millis(SEC), unpinned("program", "left-over-2", JobState::Running))
            .is_empty()
    );
    // faculty's start adopted it: no stop.
    assert!(stops(&p.handle(Millis(2 * SEC), started("faculty", 1, "left-over"))).is_empty());
    // program's start got its own job: the other is a second job of the table.
    let actions = p.handle(Millis(2 * SEC), started("program", 1, "program-1"));
    assert_eq!(
        stops(&actions),
        one_stop("program", "left-over-2", StopReason::Duplicate)
    );
}

#[test]
fn flinks_job_state_is_shown_as_reported_apart_from_the_decision() {
    let mut p = running_faculty();
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Restarting));
    let s = p.status("faculty").expect("status");
    assert_eq!(
        (s.state, s.job_state),
        (TableState::Running, Some(JobState::Restarting))
    );
    // Asked to stop, the job is still what Flink last said.
    p.handle(Millis(3 * SEC), operator("faculty", ControlCommand::Stop));
    let s = p.status("faculty").expect("status");
    assert_eq!(
        (s.state, s.job_state),
        (TableState::Stopping, Some(JobState::Restarting))
    );
    p.handle(Millis(4 * SEC), job("faculty", 1, JobState::Running));
    assert_eq!(p.status("faculty").and_then(|s| s.job_state), Some(JobState::Running));
}

#[test]
fn a_job_in_a_state_this_version_does_not_know_counts_as_alive() {
    let mut p = running_faculty();
    let unknown = JobState::from("NEW_STATE".to_owned());
    assert!(p.handle(Millis(2 * SEC), job("faculty", 1, unknown.clone())).is_empty());
    let s = p.status("faculty").expect("status");
    assert_eq!(
        (s.state, s.job_state.clone()),
        (TableState::Running, Some(unknown.clone()))
    );
    assert_eq!(serde_json::to_value(&s).expect("json")["job_state"], "NEW_STATE");
    // Changes while it is in that state are its to process: no second job.
    assert!(starts(&p.handle(Millis(3 * SEC), activity("faculty", 5))).is_empty());
    // A table without a job adopts a live job in an unknown state rather than start another.
    let mut p = default_policy();
    let actions = p.handle(Millis(0), unpinned("program", "left-over", unknown));
    assert!(
        events(&actions).iter().any(|e| matches!(e, Event::Adopted { .. })),
        "{actions:?}"
    );
    assert!(starts(&p.handle(Millis(SEC), activity("program", 1))).is_empty());
}

/// A job as a listing shows it: `job` named as [`id`] takes it, started at `start_ms` by Flink's clock.
fn listed(table: &str, job: &str, state: JobState, start_ms: i64) -> JobSummary {
    JobSummary {
        table: table.into(),
        job_id: id(job),
        state,
        start_time_ms: start_ms,
        end_time_ms: None,
    }
}

fn listing(jobs: Vec<JobSummary>, requested_at: u64) -> Input {
    Input::Listing {
        jobs,
        requested_at: Millis(requested_at),
    }
}

#[test]
fn a_listing_adopts_a_tables_newest_live_job_and_stops_its_other_live_ones() {
    let mut p = default_policy();
    let jobs = vec![
        listed("faculty", "old", JobState::Running, 10),
        listed("faculty", "ended", JobState::Finished, 30),
        listed("faculty", "new", JobState::Running, 20),
    ];
    let actions = p.handle(Millis(SEC), listing(jobs, SEC));
    assert_eq!(p.status("faculty").and_then(|s| s.job_id), Some(id("new")));
    assert_eq!(stops(&actions), one_stop("faculty", "old", StopReason::Duplicate));
    let second = Event::SecondLiveJob {
        table: "faculty".into(),
        job_id: id("old"),
    };
    assert!(events(&actions).contains(&second), "{actions:?}");
    // The order Flink lists them in changes nothing.
    let mut q = default_policy();
    let jobs = vec![
        listed("faculty", "new", JobState::Running, 20),
        listed("faculty", "old", JobState::Running, 10),
        listed("faculty", "ended", JobState::Finished, 30),
    ];
    assert_eq!(q.handle(Millis(SEC), listing(jobs, SEC)), actions);
}

#[test]
fn a_job_the_policy_held_before_a_listing_was_asked_for_and_absent_from_it_is_gone() {
    let mut p = running_faculty();
    // Asked for before the job was known (it ran from 1 s): its absence says nothing.
    assert!(p.handle(Millis(2 * SEC), listing(Vec::new(), SEC / 2)).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Running));
    let actions = p.handle(Millis(3 * SEC), listing(Vec::new(), 2 * SEC));
    let gone = events(&actions);
    assert!(
        gone.contains(&Event::JobMissing {
            table: "faculty".into(),
            job_id: id("faculty-1"),
        }) && gone.contains(&Event::JobEnded {
            table: "faculty".into(),
            job_id: id("faculty-1"),
            state: JobState::Canceled,
        }),
        "{actions:?}"
    );
    assert_eq!(p.status("faculty").and_then(|s| s.job_id), None);
}

#[test]
fn the_current_jobs_end_counts_even_when_a_later_ended_job_of_the_table_is_listed() {
    let mut p = running_faculty();
    let jobs = vec![
        listed("faculty", "faculty-1", JobState::Failed, 10),
        listed("faculty", "by-hand", JobState::Canceled, 20),
    ];
    let actions = p.handle(Millis(2 * SEC), listing(jobs, 2 * SEC));
    let ended = Event::JobEnded {
        table: "faculty".into(),
        job_id: id("faculty-1"),
        state: JobState::Failed,
    };
    assert!(events(&actions).contains(&ended), "{actions:?}");
    // The other ended job is history: not adopted, not news.
    let s = p.status("faculty").expect("status");
    assert_eq!((s.job_id, s.consecutive_failures), (None, 1));
}

#[test]
fn a_listed_job_whose_id_a_start_pinned_is_that_starts_job_and_no_other_is() {
    let settings = settings_with(|_, _| {}).with_process_start(1_700_000_000_000);
    let mut p = Policy::new(settings);
    let actions = p.handle(Millis(0), activity("faculty", 1));
    let launch = match &actions[..] {
        [
            Action::Start {
                generation: 1,
                launch_generation,
                ..
            },
        ] => *launch_generation,
        other => panic!("{other:?}"),
    };
    assert_eq!(launch, crate::model::launch_generation(1_700_000_000_000, 1));
    let pinned = crate::model::job_id_for("faculty", launch);
    // Another live job of the table waits for the start's answer; the start's own is its job at once.
    let mut jobs = vec![listed("faculty", "by-hand", JobState::Running, 5)];
    jobs.push(JobSummary {
        job_id: pinned.clone(),
        ..listed("faculty", "", JobState::Initializing, 10)
    });
    let actions = p.handle(Millis(SEC), listing(jobs, SEC));
    let s = p.status("faculty").expect("status");
    assert_eq!((s.state, s.job_id.clone()), (TableState::Starting, Some(pinned)));
    assert_eq!(stops(&actions), one_stop("faculty", "by-hand", StopReason::Duplicate));
}

#[test]
fn a_listing_leaves_the_jobs_of_tables_outside_include_and_exclude_alone() {
    let mut p = Policy::new(settings_with(|policy, _| policy.exclude = vec!["legacy".into()]));
    let jobs = vec![
        listed("legacy", "legacy-1", JobState::Running, 10),
        listed("legacy", "legacy-2", JobState::Running, 20),
    ];
    assert!(p.handle(Millis(SEC), listing(jobs, SEC)).is_empty());
    assert!(p.statuses().is_empty());
}
