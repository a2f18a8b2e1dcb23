//! Changes start jobs, quiet stops them; cooldown, backoff, throttle, queue and operator commands.

use super::*;

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
        one_stop("faculty", "faculty-1", StopReason::Idle)
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
fn a_sample_without_operations_is_no_change_unlike_unknown_operations() {
    let mut p = default_policy();
    let none_sampled = Input::Activity(Activity {
        table: "faculty".into(),
        records: 4,
        ops: Operations::Sampled(BTreeMap::new()),
        newest_ts_ms: None,
    });
    assert!(starts(&p.handle(Millis(0), none_sampled)).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.last_record_at), Some(Some(Millis(0))));
    assert_eq!(p.status("faculty").map(|s| s.last_change_at), Some(None));
    let unknown = Input::Activity(Activity {
        table: "faculty".into(),
        records: 4,
        ops: Operations::Unknown,
        newest_ts_ms: None,
    });
    assert_eq!(starts(&p.handle(Millis(1), unknown)).len(), 1);
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
    let mut p = running_faculty();
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
    let mut p = running_faculty();
    assert_eq!(stops(&only_actions(&run_until(&mut p, 61 * SEC))).len(), 1);
    assert!(starts(&p.handle(Millis(62 * SEC), activity("faculty", 1))).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Stopping));
    let actions = p.handle(Millis(63 * SEC), stopped("faculty"));
    assert_eq!(starts(&actions), vec![("faculty".into(), 2, StartReason::Changes)]);
}

#[test]
fn a_terminal_state_of_the_stopping_job_completes_the_stop() {
    let mut p = running_faculty();
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
            p.status("faculty").map(|s| (s.state, s.last_error)),
            Some((expected, Some("boom".to_owned()))),
            "failure {failure}: the state, and why the start failed"
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
    assert_eq!(
        (status.state, status.consecutive_failures, status.last_error),
        (TableState::Running, 0, None)
    );
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
    let mut p = running_faculty();
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
    assert!(starts(&p.handle(Millis(0), operator("payment", ControlCommand::Trigger))).is_empty());
    assert!(starts(&only_actions(&run_until(&mut p, 3_600 * SEC))).is_empty());
    assert_eq!(p.status("payment").map(|s| s.state), Some(TableState::Paused));
    let actions = p.handle(Millis(3_601 * SEC), operator("payment", ControlCommand::Resume));
    assert_eq!(starts(&actions), vec![("payment".into(), 1, StartReason::Changes)]);

    p.handle(Millis(3_602 * SEC), operator("faculty", ControlCommand::Pause));
    p.handle(Millis(3_603 * SEC), activity("faculty", 1));
    assert!(starts(&only_actions(&run_until(&mut p, 7_200 * SEC))).is_empty());
    let actions = p.handle(Millis(7_201 * SEC), operator("faculty", ControlCommand::Resume));
    assert_eq!(starts(&actions).len(), 1);
}

#[test]
fn pausing_a_queued_table_takes_it_out_of_the_queue() {
    let mut p = Policy::new(settings_with(|_, flink| flink.max_concurrent_jobs = 1));
    p.handle(Millis(0), activity("a", 1));
    p.handle(Millis(1), activity("b", 1));
    p.handle(Millis(2), activity("c", 1));
    p.handle(Millis(3), operator("b", ControlCommand::Pause));
    let actions = p.handle(Millis(4), start_failed("a"));
    assert_eq!(starts(&actions), vec![("c".into(), 1, StartReason::Changes)]);
}

#[test]
fn trigger_starts_an_idle_table_and_skips_the_backoff_but_not_the_cooldown() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.retry_initial_backoff = Duration::from_secs(100)
    }));
    let actions = p.handle(Millis(0), operator("faculty", ControlCommand::Trigger));
    assert_eq!(starts(&actions), vec![("faculty".into(), 1, StartReason::Trigger)]);
    p.handle(Millis(SEC), start_failed("faculty"));
    assert!(p.next_deadline().is_some_and(|d| d.0 >= 75 * SEC));
    assert!(starts(&p.handle(Millis(2 * SEC), operator("faculty", ControlCommand::Trigger))).is_empty());
    assert_eq!(p.next_deadline(), Some(Millis(30 * SEC)));
    assert_eq!(starts(&only_actions(&run_until(&mut p, 30 * SEC))).len(), 1);
}

#[test]
fn operator_stop_stops_a_running_job_even_with_lag_and_a_starting_one_once_it_runs() {
    let mut p = running_faculty();
    p.handle(Millis(2 * SEC), lag("faculty", 5));
    let actions = p.handle(Millis(3 * SEC), operator("faculty", ControlCommand::Stop));
    assert_eq!(stops(&actions), one_stop("faculty", "faculty-1", StopReason::Operator));

    p.handle(Millis(0), activity("program", 1));
    assert!(stops(&p.handle(Millis(SEC), operator("program", ControlCommand::Stop))).is_empty());
    let actions = p.handle(Millis(2 * SEC), job("program", 1, JobState::Running));
    assert_eq!(stops(&actions), one_stop("program", "program-1", StopReason::Operator));
}

fn drift(table: &str, drifted: bool) -> Input {
    Input::SchemaDrift {
        table: table.into(),
        drift: drifted.then(|| crate::model::SchemaDrift {
            added: vec!["new_col".to_owned()],
            ..crate::model::SchemaDrift::default()
        }),
    }
}

#[test]
fn schema_drift_under_pause_holds_starts_until_resolved_and_lets_a_running_job_stop_when_idle() {
    let mut p = Policy::new(settings_with(|policy, _| {
        policy.tables.insert(
            "faculty".into(),
            TableOverrides {
                on_schema_drift: Some(crate::model::OnSchemaDrift::Pause),
                ..TableOverrides::default()
            },
        );
    }));
    // A running job is not stopped for the drift: it stops when idle, as always.
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    assert!(stops(&p.handle(Millis(2 * SEC), drift("faculty", true))).is_empty());
    let status = p.status("faculty").expect("seen");
    assert!(status.drift_paused && status.schema_drift.is_some());
    assert_eq!(status.state, TableState::Running);
    let actions = only_actions(&run_until(&mut p, 62 * SEC));
    assert_eq!(stops(&actions), one_stop("faculty", "faculty-1", StopReason::Idle));
    p.handle(Millis(63 * SEC), stopped("faculty"));
    // New changes start nothing while drifted; the table shows as paused.
    p.handle(Millis(100 * SEC), activity("faculty", 1));
    assert!(starts(&only_actions(&run_until(&mut p, 3_600 * SEC))).is_empty());
    assert_eq!(p.status("faculty").map(|s| s.state), Some(TableState::Paused));
    // Another table under the default (alert) starts though drifted.
    p.handle(Millis(3_600 * SEC), drift("program", true));
    assert_eq!(starts(&p.handle(Millis(3_600 * SEC), activity("program", 1))).len(), 1);
    // Resolved: the pending changes start it at once.
    let actions = p.handle(Millis(3_601 * SEC), drift("faculty", false));
    assert_eq!(starts(&actions), vec![("faculty".into(), 2, StartReason::Changes)]);
    assert_eq!(
        p.status("faculty").map(|s| (s.drift_paused, s.schema_drift)),
        Some((false, None))
    );
}

#[test]
fn schema_drift_under_pause_takes_a_queued_table_out_of_the_queue() {
    let mut p = Policy::new(settings_with(|policy, flink| {
        flink.max_concurrent_jobs = 1;
        policy.on_schema_drift = crate::model::OnSchemaDrift::Pause;
    }));
    p.handle(Millis(0), activity("a", 1));
    p.handle(Millis(1), activity("b", 1));
    p.handle(Millis(2), activity("c", 1));
    p.handle(Millis(3), drift("b", true));
    let actions = p.handle(Millis(4), start_failed("a"));
    assert_eq!(starts(&actions), vec![("c".into(), 1, StartReason::Changes)]);
}
