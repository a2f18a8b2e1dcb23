//! Unit tests of the policy rules, one scenario each. The property tests in `tests/policy_props.rs` cover
//! random interleavings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::TableOverrides;
use crate::decoder::Op;

const SEC: u64 = 1_000;

fn settings_with(edit: impl FnOnce(&mut PolicyConfig, &mut FlinkConfig)) -> PolicySettings {
    let mut policy = PolicyConfig::default();
    let mut flink = FlinkConfig::default();
    edit(&mut policy, &mut flink);
    PolicySettings::new(policy, &flink, 7)
}

fn default_policy() -> Policy {
    Policy::new(settings_with(|_, _| {}))
}

fn activity(table: &str, records: u64) -> Input {
    Input::Activity(Activity {
        table: table.into(),
        records,
        ..Activity::default()
    })
}

fn activity_ops(table: &str, ops: &[(Op, u64)]) -> Input {
    Input::Activity(Activity {
        table: table.into(),
        records: ops.iter().fold(0u64, |sum, (_, n)| sum.saturating_add(*n)),
        ops: ops.iter().copied().collect::<BTreeMap<_, _>>(),
        newest_ts_ms: None,
    })
}

/// A job id for a name, as the tests write them: `faculty-1` is faculty's job of generation 1.
fn id(name: &str) -> JobId {
    crate::flink::job_id_for(name, 0)
}

fn job(table: &str, generation: u64, state: JobState) -> Input {
    Input::JobState(JobObservation {
        table: table.into(),
        job_id: id(&format!("{table}-{generation}")),
        generation: Some(generation),
        state,
    })
}

fn lag(table: &str, lag: u64) -> Input {
    Input::Lag {
        table: table.into(),
        lag,
    }
}

fn stopped(table: &str) -> Input {
    Input::Stopped {
        table: table.into(),
        job_id: None,
    }
}

fn start_failed(table: &str) -> Input {
    Input::StartFailed {
        table: table.into(),
        generation: None,
        error: "boom".into(),
    }
}

fn starts(actions: &[Action]) -> Vec<(String, u64, StartReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start {
                table,
                generation,
                reason,
            } => Some((table.clone(), *generation, *reason)),
            _ => None,
        })
        .collect()
}

fn stops(actions: &[Action]) -> Vec<(String, JobId, StopReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { table, job_id, reason } => Some((table.clone(), job_id.clone(), *reason)),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Calls the policy at each deadline up to and including `until`, returning every action with its time.
fn run_until(policy: &mut Policy, until: u64) -> Vec<(u64, Action)> {
    let mut out = Vec::new();
    while let Some(due) = policy.next_deadline().filter(|d| d.0 <= until) {
        for action in policy.handle(due, Input::Tick) {
            out.push((due.0, action));
        }
    }
    out
}

fn only_actions(timed: &[(u64, Action)]) -> Vec<Action> {
    timed.iter().map(|(_, a)| a.clone()).collect()
}

#[test]
fn the_first_change_of_a_table_starts_it_at_once() {
    // The reference system recorded "activity now" before asking "activity in the last 30 s?" and so never
    // started anything. Here the first change starts the job in the same call, at any time.
    for t in [0, 1, 45 * SEC, 10_000_000 * SEC] {
        let mut p = default_policy();
        let actions = p.handle(Millis(t), activity("faculty", 3));
        assert_eq!(
            starts(&actions),
            vec![("faculty".into(), 1, StartReason::Changes)],
            "at {t}"
        );
        assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Starting));
    }
}

#[test]
fn a_burst_of_changes_gives_one_start() {
    let mut p = default_policy();
    let mut all = p.handle(Millis(0), activity("faculty", 1));
    for i in 1..50 {
        all.extend(p.handle(Millis(i * 100), activity("faculty", 2)));
    }
    all.extend(p.handle(Millis(5 * SEC), job("faculty", 1, JobState::Running)));
    for i in 0..20 {
        all.extend(p.handle(Millis(6 * SEC + i * SEC), activity("faculty", 1)));
    }
    assert_eq!(starts(&all).len(), 1);
    assert!(stops(&all).is_empty());
}

#[test]
fn only_the_changed_table_starts() {
    let mut p = default_policy();
    let actions = p.handle(Millis(0), activity("faculty", 1));
    assert_eq!(starts(&actions), vec![("faculty".into(), 1, StartReason::Changes)]);
    assert_eq!(p.statuses().len(), 1);
}

#[test]
fn an_idle_job_is_stopped_after_idle_timeout_since_the_last_record_or_running() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Running));
    p.handle(Millis(10 * SEC), activity("faculty", 1));
    assert_eq!(p.next_deadline(), Some(Millis(70 * SEC)));
    assert!(stops(&only_actions(&run_until(&mut p, 69_999))).is_empty());
    let timed = run_until(&mut p, 70 * SEC);
    assert_eq!(
        stops(&only_actions(&timed)),
        vec![("faculty".into(), id("faculty-1"), StopReason::Idle)]
    );
    assert_eq!(timed[0].0, 70 * SEC);
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Stopping));
}

#[test]
fn records_of_unconfigured_operations_keep_a_job_busy_but_start_nothing() {
    let mut p = Policy::new(settings_with(|policy, _| policy.operations = vec![Op::Create]));
    assert!(starts(&p.handle(Millis(0), activity_ops("faculty", &[(Op::Update, 3)]))).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Idle));
    let actions = p.handle(
        Millis(SEC),
        activity_ops("faculty", &[(Op::Update, 1), (Op::Create, 1)]),
    );
    assert_eq!(starts(&actions).len(), 1);
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Running));
    p.handle(Millis(50 * SEC), activity_ops("faculty", &[(Op::Read, 5)]));
    assert!(stops(&only_actions(&run_until(&mut p, 109 * SEC))).is_empty());
    assert_eq!(stops(&only_actions(&run_until(&mut p, 110 * SEC))).len(), 1);
}

#[test]
fn huge_counts_saturate_instead_of_overflowing() {
    let mut p = default_policy();
    let actions = p.handle(
        Millis(0),
        activity_ops("faculty", &[(Op::Create, u64::MAX), (Op::Update, u64::MAX)]),
    );
    assert_eq!(starts(&actions).len(), 1);
}

#[test]
fn records_without_a_decoded_sample_count_as_changes() {
    let mut p = Policy::new(settings_with(|policy, _| policy.operations = vec![Op::Delete]));
    assert_eq!(starts(&p.handle(Millis(0), activity("faculty", 4))).len(), 1);
}

#[test]
fn per_table_operations_override_the_default() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.tables.insert(
            "payment".into(),
            TableOverrides {
                operations: Some(vec![Op::Delete]),
                ..TableOverrides::default()
            },
        );
    }));
    assert!(starts(&p.handle(Millis(0), activity_ops("payment", &[(Op::Create, 1)]))).is_empty());
    assert_eq!(
        starts(&p.handle(Millis(0), activity_ops("faculty", &[(Op::Create, 1)]))).len(),
        1
    );
    assert_eq!(
        starts(&p.handle(Millis(1), activity_ops("payment", &[(Op::Delete, 1)]))).len(),
        1
    );
}

#[test]
fn lag_above_zero_blocks_the_idle_stop_until_it_is_zero() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    p.handle(Millis(30 * SEC), lag("faculty", 12));
    assert_eq!(p.next_deadline(), None, "no idle deadline while lag > 0");
    assert!(stops(&p.handle(Millis(90 * SEC), Input::Tick)).is_empty());
    let status = p.status("faculty").expect("status");
    assert_eq!(status.next.and_then(|n| n.waiting_for), Some(WaitCause::Lag));
    // Lag drops to zero long after the table went quiet: stop at once.
    let actions = p.handle(Millis(120 * SEC), lag("faculty", 0));
    assert_eq!(stops(&actions).len(), 1);
}

#[test]
fn a_change_during_the_stop_starts_a_new_job_once_the_stop_completes() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    assert_eq!(stops(&only_actions(&run_until(&mut p, 61 * SEC))).len(), 1);
    assert!(starts(&p.handle(Millis(62 * SEC), activity("faculty", 1))).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Stopping));
    let actions = p.handle(Millis(63 * SEC), stopped("faculty"));
    assert_eq!(starts(&actions), vec![("faculty".into(), 2, StartReason::Changes)]);
}

#[test]
fn a_terminal_state_of_the_stopping_job_completes_the_stop() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    assert_eq!(stops(&only_actions(&run_until(&mut p, 61 * SEC))).len(), 1);
    p.handle(Millis(62 * SEC), activity("faculty", 1));
    let actions = p.handle(Millis(63 * SEC), job("faculty", 1, JobState::Finished));
    assert_eq!(starts(&actions), vec![("faculty".into(), 2, StartReason::Changes)]);
}

#[test]
fn a_start_inside_the_cooldown_is_deferred_to_its_end_not_dropped() {
    let mut p = Policy::new(settings_with(|policy, _| policy.idle_timeout = Duration::from_secs(5)));
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    assert_eq!(stops(&only_actions(&run_until(&mut p, 6 * SEC))).len(), 1);
    p.handle(Millis(7 * SEC), stopped("faculty"));
    let actions = p.handle(Millis(10 * SEC), activity("faculty", 1));
    assert!(starts(&actions).is_empty());
    assert_eq!(
        events(&actions),
        vec![Event::Deferred {
            table: "faculty".into(),
            until: Millis(30 * SEC),
            cause: WaitCause::Cooldown
        }]
    );
    // More changes neither start it early nor repeat the event.
    let actions = p.handle(Millis(20 * SEC), activity("faculty", 1));
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(p.next_deadline(), Some(Millis(30 * SEC)));
    let timed = run_until(&mut p, 30 * SEC);
    assert_eq!(
        starts(&only_actions(&timed)),
        vec![("faculty".into(), 2, StartReason::Changes)]
    );
    assert_eq!(timed[0].0, 30 * SEC);
}

#[test]
fn failed_starts_back_off_exponentially_with_bounded_jitter_and_mark_the_table_failing() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.cooldown = Duration::ZERO;
        policy.retry_initial_backoff = Duration::from_secs(1);
        policy.retry_max_backoff = Duration::from_secs(8);
        policy.failing_after = 3;
    }));
    p.handle(Millis(0), activity("faculty", 1));
    let mut now = 0;
    let mut all_events = Vec::new();
    for (failure, nominal) in [
        (1u32, 1_000u64),
        (2, 2_000),
        (3, 4_000),
        (4, 8_000),
        (5, 8_000),
        (6, 8_000),
    ] {
        let actions = p.handle(Millis(now), start_failed("faculty"));
        all_events.extend(events(&actions));
        let retry_at = p.next_deadline().expect("a retry is scheduled").0;
        let delay = retry_at - now;
        assert!(
            delay <= nominal && delay >= nominal - nominal / 4,
            "failure {failure}: delay {delay} not in [3/4, 1] x {nominal}"
        );
        let expected = if failure >= 3 {
            TableState::Failing
        } else {
            TableState::Pending
        };
        assert_eq!(
            p.status("faculty").map(|s| s.state),
            Some(expected),
            "failure {failure}"
        );
        assert!(starts(&p.handle(Millis(retry_at - 1), Input::Tick)).is_empty());
        let actions = p.handle(Millis(retry_at), Input::Tick);
        assert_eq!(
            starts(&actions),
            vec![("faculty".into(), u64::from(failure) + 1, StartReason::Retry)]
        );
        now = retry_at;
    }
    let failing: Vec<_> = all_events
        .iter()
        .filter(|e| matches!(e, Event::Failing { .. }))
        .collect();
    assert_eq!(
        failing,
        vec![&Event::Failing {
            table: "faculty".into(),
            failures: 3
        }]
    );
    let actions = p.handle(Millis(now + 10), job("faculty", 7, JobState::Running));
    assert_eq!(
        events(&actions),
        vec![Event::Recovered {
            table: "faculty".into()
        }]
    );
    let status = p.status("faculty").expect("status");
    assert_eq!((status.state, status.consecutive_failures), (TableState::Running, 0));
}

#[test]
fn a_table_that_keeps_failing_keeps_being_retried_at_the_cap() {
    let mut p = Policy::new(settings_with(|policy, _| policy.cooldown = Duration::ZERO));
    p.handle(Millis(0), activity("faculty", 1));
    for _ in 0..100 {
        let now = p.now;
        p.handle(now, start_failed("faculty"));
        let due = p.next_deadline().expect("a retry is scheduled");
        assert!(due.0 - now.0 <= 300 * SEC);
        assert_eq!(starts(&p.handle(due, Input::Tick)).len(), 1);
    }
    assert_eq!(p.status("faculty").map(|s| s.consecutive_failures), Some(100));
}

#[test]
fn retries_wait_for_the_cooldown_as_well_as_the_backoff() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(500), start_failed("faculty"));
    assert_eq!(p.next_deadline(), Some(Millis(30 * SEC)));
    assert_eq!(starts(&only_actions(&run_until(&mut p, 30 * SEC))).len(), 1);
}

#[test]
fn jitter_is_reproducible_from_the_seed() {
    let retry_at = |seed: u64| {
        let mut settings = settings_with(|policy, _| policy.cooldown = Duration::ZERO);
        settings.seed = seed;
        let mut p = Policy::new(settings);
        let mut at = Vec::new();
        p.handle(Millis(0), activity("faculty", 1));
        for _ in 0..8 {
            let now = p.now;
            p.handle(now, start_failed("faculty"));
            let due = p.next_deadline().expect("retry");
            at.push(due.0);
            p.handle(due, Input::Tick);
        }
        at
    };
    assert_eq!(retry_at(1), retry_at(1));
    assert_ne!(retry_at(1), retry_at(2));
}

#[test]
fn a_failed_job_is_retried_while_changes_are_pending() {
    let mut p = Policy::new(settings_with(|policy, _| policy.cooldown = Duration::ZERO));
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    let actions = p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Failed));
    assert!(events(&actions).iter().any(|e| matches!(
        e,
        Event::JobEnded {
            state: JobState::Failed,
            ..
        }
    )));
    let timed = run_until(&mut p, 4 * SEC);
    assert_eq!(
        starts(&only_actions(&timed)),
        vec![("faculty".into(), 2, StartReason::Retry)]
    );

    // With a known lag of zero nothing waits for the failed job, so nothing restarts it.
    p.handle(Millis(5 * SEC), job("faculty", 2, JobState::Running));
    p.handle(Millis(6 * SEC), lag("faculty", 0));
    p.handle(Millis(7 * SEC), job("faculty", 2, JobState::Failed));
    assert!(starts(&only_actions(&run_until(&mut p, 3_600 * SEC))).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Idle));
}

#[test]
fn restarting_and_failing_jobs_still_occupy_the_table() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    for state in [
        JobState::Failing,
        JobState::Restarting,
        JobState::Suspended,
        JobState::Reconciling,
    ] {
        let actions = p.handle(Millis(2 * SEC), job("faculty", 1, state));
        assert!(starts(&actions).is_empty());
        assert!(starts(&p.handle(Millis(3 * SEC), activity("faculty", 1))).is_empty());
    }
}

#[test]
fn lag_alone_starts_a_table_without_a_job() {
    let mut p = default_policy();
    assert!(starts(&p.handle(Millis(0), lag("faculty", 0))).is_empty());
    let actions = p.handle(Millis(SEC), lag("faculty", 40));
    assert_eq!(starts(&actions), vec![("faculty".into(), 1, StartReason::Lag)]);
}

#[test]
fn the_throttle_lets_a_burst_through_then_one_start_per_interval_in_arrival_order() {
    let mut p = default_policy(); // 10 per minute (one per 6 s), burst 5
    let mut started = Vec::new();
    for (i, table) in ["t1", "t2", "t3", "t4", "t5", "zeta", "alpha"].iter().enumerate() {
        let actions = p.handle(Millis(i as u64), activity(table, 1));
        started.extend(starts(&actions).into_iter().map(|(t, ..)| (i as u64, t)));
        if *table == "zeta" {
            assert_eq!(
                events(&actions),
                vec![Event::Throttled {
                    table: "zeta".into(),
                    until: Millis(6 * SEC)
                }]
            );
        }
    }
    assert_eq!(started.len(), 5);
    let timed = run_until(&mut p, 20 * SEC);
    let later: Vec<_> = timed
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Start { table, .. } => Some((*t, table.clone())),
            _ => None,
        })
        .collect();
    // zeta arrived before alpha, so it goes first although alpha sorts first.
    assert_eq!(later, vec![(6 * SEC, "zeta".into()), (12 * SEC, "alpha".into())]);
    let status = p.status("alpha").expect("status");
    assert_eq!(status.state, TableState::Starting);
}

#[test]
fn max_concurrent_jobs_queues_longest_waiting_first() {
    let mut p = Policy::new(settings_with(|_, flink| flink.max_concurrent_jobs = 2));
    p.handle(Millis(0), activity("a", 1));
    p.handle(Millis(0), activity("b", 1));
    let actions = p.handle(Millis(SEC), activity("d", 1));
    assert_eq!(
        events(&actions),
        vec![Event::Queued {
            table: "d".into(),
            in_flight: 2,
            limit: 2
        }]
    );
    assert!(starts(&p.handle(Millis(2 * SEC), activity("c", 1))).is_empty());
    let status = p.status("c").expect("status").next.expect("next");
    assert_eq!(status.waiting_for, Some(WaitCause::Queue));
    assert_eq!(p.next_deadline(), None, "a slot frees on an input, not at a time");
    let actions = p.handle(Millis(3 * SEC), start_failed("a"));
    assert_eq!(starts(&actions), vec![("d".into(), 1, StartReason::Changes)]);
    let actions = p.handle(Millis(4 * SEC), job("b", 1, JobState::Canceled));
    assert_eq!(starts(&actions), vec![("c".into(), 1, StartReason::Changes)]);
}

#[test]
fn a_paused_table_never_starts_and_resume_starts_pending_changes() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.tables.insert(
            "payment".into(),
            TableOverrides {
                paused: Some(true),
                ..TableOverrides::default()
            },
        );
    }));
    assert!(starts(&p.handle(Millis(0), activity("payment", 1))).is_empty());
    assert!(
        starts(&p.handle(
            Millis(0),
            Input::Trigger {
                table: "payment".into()
            }
        ))
        .is_empty()
    );
    assert!(starts(&only_actions(&run_until(&mut p, 3_600 * SEC))).is_empty());
    assert_eq!(p.status("payment").map(|s| s.state), Some(TableState::Paused));
    let actions = p.handle(
        Millis(3_601 * SEC),
        Input::Resume {
            table: "payment".into(),
        },
    );
    assert_eq!(starts(&actions), vec![("payment".into(), 1, StartReason::Changes)]);

    p.handle(
        Millis(3_602 * SEC),
        Input::Pause {
            table: "faculty".into(),
        },
    );
    p.handle(Millis(3_603 * SEC), activity("faculty", 1));
    assert!(starts(&only_actions(&run_until(&mut p, 7_200 * SEC))).is_empty());
    let actions = p.handle(
        Millis(7_201 * SEC),
        Input::Resume {
            table: "faculty".into(),
        },
    );
    assert_eq!(starts(&actions).len(), 1);
}

#[test]
fn pausing_a_queued_table_takes_it_out_of_the_queue() {
    let mut p = Policy::new(settings_with(|_, flink| flink.max_concurrent_jobs = 1));
    p.handle(Millis(0), activity("a", 1));
    p.handle(Millis(1), activity("b", 1));
    p.handle(Millis(2), activity("c", 1));
    p.handle(Millis(3), Input::Pause { table: "b".into() });
    let actions = p.handle(Millis(4), start_failed("a"));
    assert_eq!(starts(&actions), vec![("c".into(), 1, StartReason::Changes)]);
}

#[test]
fn trigger_starts_an_idle_table_and_skips_the_backoff_but_not_the_cooldown() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.retry_initial_backoff = Duration::from_secs(100)
    }));
    let actions = p.handle(
        Millis(0),
        Input::Trigger {
            table: "faculty".into(),
        },
    );
    assert_eq!(starts(&actions), vec![("faculty".into(), 1, StartReason::Trigger)]);
    p.handle(Millis(SEC), start_failed("faculty"));
    assert!(p.next_deadline().is_some_and(|d| d.0 >= 75 * SEC));
    assert!(
        starts(&p.handle(
            Millis(2 * SEC),
            Input::Trigger {
                table: "faculty".into()
            }
        ))
        .is_empty()
    );
    assert_eq!(p.next_deadline(), Some(Millis(30 * SEC)));
    assert_eq!(starts(&only_actions(&run_until(&mut p, 30 * SEC))).len(), 1);
}

#[test]
fn operator_stop_stops_a_running_job_even_with_lag_and_a_starting_one_once_it_runs() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    p.handle(Millis(2 * SEC), lag("faculty", 5));
    let actions = p.handle(
        Millis(3 * SEC),
        Input::Stop {
            table: "faculty".into(),
        },
    );
    assert_eq!(
        stops(&actions),
        vec![("faculty".into(), id("faculty-1"), StopReason::Operator)]
    );

    p.handle(Millis(0), activity("program", 1));
    assert!(
        stops(&p.handle(
            Millis(SEC),
            Input::Stop {
                table: "program".into()
            }
        ))
        .is_empty()
    );
    let actions = p.handle(Millis(2 * SEC), job("program", 1, JobState::Running));
    assert_eq!(
        stops(&actions),
        vec![("program".into(), id("program-1"), StopReason::Operator)]
    );
}

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
        vec![("faculty".into(), id("faculty-41"), StopReason::Idle)]
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
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    let leftover = Input::JobState(JobObservation {
        table: "faculty".into(),
        job_id: id("leftover"),
        generation: None,
        state: JobState::Running,
    });
    let actions = p.handle(Millis(2 * SEC), leftover.clone());
    assert_eq!(
        stops(&actions),
        vec![("faculty".into(), id("leftover"), StopReason::Duplicate)]
    );
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
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
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
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
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
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
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
    p.handle(
        Millis(62 * SEC),
        Input::Trigger {
            table: "faculty".into(),
        },
    );
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

fn unpinned(table: &str, job_id: &str, state: JobState) -> Input {
    Input::JobState(JobObservation {
        table: table.into(),
        job_id: id(job_id),
        generation: None,
        state,
    })
}

fn started(table: &str, generation: u64, job_id: &str) -> Input {
    Input::JobState(JobObservation {
        table: table.into(),
        job_id: id(job_id),
        generation: Some(generation),
        state: JobState::Running,
    })
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
        vec![("program".into(), id("left-over-2"), StopReason::Duplicate)]
    );
}

#[test]
fn flinks_job_state_is_shown_as_reported_apart_from_the_decision() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    p.handle(Millis(2 * SEC), job("faculty", 1, JobState::Restarting));
    let s = p.status("faculty").expect("status");
    assert_eq!(
        (s.state, s.job_state),
        (TableState::Running, Some(JobState::Restarting))
    );
    // Asked to stop, the job is still what Flink last said.
    p.handle(
        Millis(3 * SEC),
        Input::Stop {
            table: "faculty".into(),
        },
    );
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
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
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

/// faculty with a running job asked to stop by an operator at 2 s.
fn stopping_faculty() -> Policy {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    let actions = p.handle(
        Millis(2 * SEC),
        Input::Stop {
            table: "faculty".into(),
        },
    );
    assert_eq!(
        stops(&actions),
        vec![("faculty".into(), id("faculty-1"), StopReason::Operator)]
    );
    p
}

fn stop_failed(table: &str, job_id: &str, transient: bool) -> Input {
    Input::StopFailed {
        table: table.into(),
        job_id: id(job_id),
        transient,
    }
}

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
        vec![("faculty".into(), id("faculty-1"), StopReason::Operator)]
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
    assert_eq!(
        stops(&actions),
        vec![("faculty".into(), id("faculty-1"), StopReason::Operator)]
    );
    // Only once per failure: the next listing, while that stop is in flight, asks for nothing.
    assert!(stops(&p.handle(Millis(5 * SEC), job("faculty", 1, JobState::Running))).is_empty());
    // A listing showing the job ended settles it.
    p.handle(Millis(6 * SEC), job("faculty", 1, JobState::Finished));
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Idle));
}

#[test]
fn a_failed_stop_of_a_duplicate_is_retried_and_a_stale_failure_changes_nothing() {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    let actions = p.handle(Millis(SEC), unpinned("faculty", "second", JobState::Running));
    assert_eq!(
        stops(&actions),
        vec![("faculty".into(), id("second"), StopReason::Duplicate)]
    );
    p.handle(Millis(2 * SEC), stop_failed("faculty", "second", true));
    assert_eq!(
        stops(&only_actions(&run_until(&mut p, 3 * SEC))),
        vec![("faculty".into(), id("second"), StopReason::Duplicate)]
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
