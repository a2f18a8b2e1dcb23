//! Property tests of the trigger policy over random interleavings of changes, lag reports, Flink outcomes,
//! operator commands and time, against a simulated Flink that answers starts and stops only when the
//! generated trace says so (and fails on demand). After the trace, Flink behaves and time runs on until the
//! policy wants nothing more; then the whole history is checked, and the policy's view must be Flink's.
//!
//! The simulated Flink and launcher model what issue 16 found on a real cluster: jobs an earlier sidecar
//! process left behind (running or ended) that only job listings reveal; listings taken at one moment and
//! delivered later, while starts wait; start answers that arrive late and in any order, after the job already
//! failed or ended; a start adopting a live job of its table, so two starts can name the same job; stops of
//! jobs that already ended answered as such; stops that fail, transiently or not, and must be asked for again.
//! Listings go to the policy whole, as the run loop hands them over, and the policy works out what each job
//! means and which job ids its own starts pinned.
//!
//! Failures are persisted in `proptest-regressions/policy_props.txt` (committed).

mod checks;
mod flink;
mod model;

use std::collections::BTreeSet;

use cdc_orchestrator::model::{JobState, JobSummary, Millis, OnSchemaDrift, Op, SchemaDrift, job_id_for};
use cdc_orchestrator::policy::{
    Action, Activity, ControlCommand, Input, JobObservation, Operations, Policy, StopReason,
};
use checks::check;
use model::{Knobs, Step, TABLES, run};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn op_strategy() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.to_vec())
}

/// Every state Flink has, and one this version does not know.
fn job_status_strategy() -> impl Strategy<Value = JobState> {
    let names: Vec<&str> = JobState::KNOWN.into_iter().chain(["NEW_STATE"]).collect();
    prop::sample::select(names).prop_map(|name| JobState::from(name.to_owned()))
}

fn command_strategy() -> impl Strategy<Value = ControlCommand> {
    prop::sample::select(vec![
        ControlCommand::Trigger,
        ControlCommand::Pause,
        ControlCommand::Resume,
        ControlCommand::Stop,
    ])
}

fn knobs_strategy() -> impl Strategy<Value = Knobs> {
    (
        (0u64..20_000, 1u64..30_000, 1u32..=30, 1u32..=5, 1u32..=4),
        (1u32..=4, 1u64..2_000, 0u64..20_000),
        prop::sample::subsequence(Op::ALL.to_vec(), 1..=5),
        (any::<bool>(), prop::option::of(0u64..40_000), any::<u64>()),
    )
        .prop_map(
            |(
                (cooldown_ms, idle_ms, per_minute, burst, max_concurrent),
                (failing_after, backoff_initial_ms, extra),
                operations,
                (payment_paused, payment_cooldown_ms, seed),
            )| Knobs {
                cooldown_ms,
                idle_ms,
                per_minute,
                burst,
                max_concurrent,
                failing_after,
                backoff_initial_ms,
                backoff_max_ms: backoff_initial_ms + extra,
                operations,
                payment_paused,
                payment_cooldown_ms,
                seed,
            },
        )
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let table = 0usize..TABLES.len();
    prop_oneof![
        6 => (0u64..15_000).prop_map(Step::Wait),
        2 => (0u64..100).prop_map(Step::Wait),
        6 => (table.clone(), 0u64..4, prop::collection::vec(op_strategy(), 0..3))
            .prop_map(|(table, records, ops)| Step::Records { table, records, ops }),
        2 => (table.clone(), prop_oneof![Just(0u64), 1u64..50]).prop_map(|(table, lag)| Step::Lag { table, lag }),
        6 => (table.clone(), any::<u8>()).prop_map(|(table, report)| Step::FlinkOk { table, report }),
        4 => (table.clone(), any::<u8>()).prop_map(|(table, which)| Step::StartResult { table, which }),
        2 => Just(Step::ListJobs),
        2 => Just(Step::Reconciled),
        2 => (table.clone(), any::<u8>()).prop_map(|(table, how)| Step::FlinkFail { table, how }),
        2 => (table.clone(), job_status_strategy(), any::<bool>())
            .prop_map(|(table, state, with_generation)| Step::Stale { table, state, with_generation }),
        1 => (table.clone(), any::<bool>()).prop_map(|(table, transient)| Step::StopFails { table, transient }),
        1 => table.clone().prop_map(Step::Pause),
        1 => table.clone().prop_map(Step::Resume),
        1 => table.clone().prop_map(Step::Trigger),
        1 => table.clone().prop_map(Step::Stop),
        1 => Just(Step::Tick),
    ]
}

/// Any input at all, consistent or not, at any time.
fn raw_input_strategy() -> impl Strategy<Value = (u64, Input)> {
    let table = prop::sample::select(vec!["faculty", "program", "x"]).prop_map(str::to_owned);
    let input = prop_oneof![
        (
            table.clone(),
            any::<u64>(),
            prop::collection::btree_map(op_strategy(), any::<u64>(), 0..3),
            any::<Option<i64>>()
        )
            .prop_map(|(table, records, ops, newest_ts_ms)| Input::Activity(Activity {
                table,
                records,
                ops: if ops.is_empty() {
                    Operations::Unknown
                } else {
                    Operations::Sampled(ops)
                },
                newest_ts_ms
            })),
        (table.clone(), any::<u64>()).prop_map(|(table, lag)| Input::Lag { table, lag }),
        (
            table.clone(),
            prop::sample::select(vec!["j1", "j2", "faculty-1", "program-2"]),
            any::<Option<u64>>(),
            job_status_strategy()
        )
            .prop_map(|(table, id, generation, state)| Input::JobState(JobObservation {
                table,
                job_id: job_id_for(id, 0),
                generation,
                state
            })),
        (table.clone(), any::<Option<u64>>()).prop_map(|(table, generation)| Input::StartFailed {
            table,
            generation,
            error: String::new()
        }),
        (
            table.clone(),
            prop::option::of(prop::sample::select(vec!["j1", "faculty-1"]))
        )
            .prop_map(|(table, id)| Input::Stopped {
                table,
                job_id: id.map(|id| job_id_for(id, 0))
            }),
        (
            table.clone(),
            prop::sample::select(vec!["j1", "faculty-1"]),
            any::<bool>()
        )
            .prop_map(|(table, id, transient)| Input::StopFailed {
                table,
                job_id: job_id_for(id, 0),
                transient
            }),
        (table.clone(), command_strategy()).prop_map(|(table, command)| Input::Operator { table, command }),
        Just(Input::Tick),
        (
            prop::collection::vec(
                (
                    table,
                    prop::sample::select(vec!["j1", "j2", "faculty-1", "program-2"]),
                    job_status_strategy(),
                    any::<i64>()
                ),
                0..5
            ),
            prop_oneof![0u64..200_000, any::<u64>()]
        )
            .prop_map(|(jobs, requested_at)| Input::Listing {
                jobs: jobs
                    .into_iter()
                    .map(|(table, id, state, start_time_ms)| JobSummary {
                        table,
                        job_id: job_id_for(id, 0),
                        state,
                        start_time_ms,
                        end_time_ms: None,
                    })
                    .collect(),
                requested_at: Millis(requested_at)
            }),
    ];
    let time = prop_oneof![0u64..200_000, any::<u64>()];
    (time, input)
}

/// A schema drift report (or its end) for one of the raw inputs' tables, at any time.
fn drift_input_strategy() -> impl Strategy<Value = (u64, Input)> {
    let table = prop::sample::select(vec!["faculty", "program", "x"]).prop_map(str::to_owned);
    let drift = prop::option::of(Just(SchemaDrift {
        added: vec!["new_col".to_owned()],
        ..SchemaDrift::default()
    }));
    let time = prop_oneof![0u64..200_000, any::<u64>()];
    (time, table, drift).prop_map(|(t, table, drift)| (t, Input::SchemaDrift { table, drift }))
}

/// Raw inputs with schema drift reports among them.
fn inputs_with_drift() -> impl Strategy<Value = Vec<(u64, Input)>> {
    prop::collection::vec(
        prop_oneof![4 => raw_input_strategy(), 1 => drift_input_strategy()],
        1..80,
    )
}

/// Feeds `inputs` to `policy` as the run loop does (firing deadlines up to each input's time first) and returns
/// every action with the tables that were drifted when it was decided.
fn feed(policy: &mut Policy, inputs: &[(u64, Input)]) -> Vec<(Action, BTreeSet<String>)> {
    let mut drifted = BTreeSet::new();
    let mut out = Vec::new();
    let mut now = Millis(0);
    for (t, input) in inputs {
        let target = Millis(*t).min(Millis::MAX);
        for _ in 0..10_000 {
            let Some(due) = policy.next_deadline().filter(|d| *d <= target && *d >= now) else {
                break;
            };
            out.extend(
                policy
                    .handle(due, Input::Tick)
                    .into_iter()
                    .map(|a| (a, drifted.clone())),
            );
        }
        now = now.max(target);
        if let Input::SchemaDrift { table, drift } = input {
            if drift.is_some() {
                drifted.insert(table.clone());
            } else {
                drifted.remove(table);
            }
        }
        out.extend(
            policy
                .handle(Millis(*t), input.clone())
                .into_iter()
                .map(|a| (a, drifted.clone())),
        );
    }
    out
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES=20000 for a longer hunt.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/policy_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_interleavings_keep_every_rule(
        knobs in knobs_strategy(),
        preexisting in prop::collection::vec((0usize..TABLES.len(), any::<u8>()), 0..4),
        steps in prop::collection::vec(step_strategy(), 1..150),
    ) {
        let sim = run(&knobs, &preexisting, &steps);
        check(&sim)?;
    }

    #[test]
    fn the_same_trace_gives_the_same_actions(
        knobs in knobs_strategy(),
        steps in prop::collection::vec(step_strategy(), 1..100),
    ) {
        let first = run(&knobs, &[], &steps);
        let second = run(&knobs, &[], &steps);
        prop_assert_eq!(&first.history.actions, &second.history.actions);
        prop_assert_eq!(first.policy.statuses(), second.policy.statuses());
    }

    #[test]
    fn any_input_at_any_time_is_handled_without_panic_and_deadlines_move(
        knobs in knobs_strategy(),
        inputs in prop::collection::vec(raw_input_strategy(), 1..80),
    ) {
        let mut policy = Policy::new(knobs.settings());
        let mut now = Millis(0);
        for (t, input) in inputs {
            // Fire deadlines up to the input's time, as the sidecar's timer does; each must move on.
            let target = Millis(t).min(Millis::MAX);
            for _ in 0..10_000 {
                let Some(due) = policy.next_deadline().filter(|d| *d <= target && *d >= now) else { break };
                policy.handle(due, Input::Tick);
                prop_assert!(policy.next_deadline() != Some(due), "deadline {due} did not move");
            }
            now = now.max(target);
            policy.handle(Millis(t), input);
            prop_assert!(policy.next_deadline().is_none_or(|d| d > now), "a deadline at or before now remains");
        }
    }

    #[test]
    fn a_drifted_table_under_pause_never_starts(knobs in knobs_strategy(), inputs in inputs_with_drift()) {
        let mut settings = knobs.settings();
        settings.policy.on_schema_drift = OnSchemaDrift::Pause;
        let mut policy = Policy::new(settings);
        for (action, drifted) in feed(&mut policy, &inputs) {
            if let Action::Start { table, .. } = &action {
                prop_assert!(!drifted.contains(table), "{table} started while drifted: {action:?}");
            }
        }
        for status in policy.statuses() {
            if status.schema_drift.is_some() {
                prop_assert!(status.drift_paused);
                prop_assert!(status.next.is_none_or(|n| n.action != cdc_orchestrator::policy::NextAction::Start));
            }
        }
    }

    #[test]
    fn schema_drift_under_alert_changes_no_decision(knobs in knobs_strategy(), inputs in inputs_with_drift()) {
        // The same trace with every drift report replaced by a tick at its time gives the same actions.
        let without: Vec<(u64, Input)> = inputs
            .iter()
            .map(|(t, input)| match input {
                Input::SchemaDrift { .. } => (*t, Input::Tick),
                other => (*t, other.clone()),
            })
            .collect();
        let mut alerted = Policy::new(knobs.settings());
        let mut plain = Policy::new(knobs.settings());
        let with_drift: Vec<Action> = feed(&mut alerted, &inputs).into_iter().map(|(a, _)| a).collect();
        let without_drift: Vec<Action> = feed(&mut plain, &without).into_iter().map(|(a, _)| a).collect();
        prop_assert_eq!(with_drift, without_drift);
        // A drift report makes a table known to the policy; otherwise each table shows the same.
        let plain_tables: BTreeSet<String> = plain.statuses().into_iter().map(|s| s.table).collect();
        let shown: Vec<_> = alerted
            .statuses()
            .into_iter()
            .map(|mut s| {
                assert!(!s.drift_paused);
                s.schema_drift = None;
                s
            })
            .filter(|s| plain_tables.contains(&s.table) || *s != plain.unseen_status(&s.table))
            .collect();
        prop_assert_eq!(shown, plain.statuses());
    }

    #[test]
    fn the_first_change_of_any_table_starts_it_at_once(
        knobs in knobs_strategy(),
        table in 0usize..3,
        at in 0u64..10_000_000,
        records in 1u64..1_000,
    ) {
        // payment (index 3) may be paused by the generated override, so it is left out here.
        let mut policy = Policy::new(knobs.settings());
        let actions = policy.handle(Millis(at), Input::Activity(Activity {
            table: TABLES[table].to_owned(),
            records,
            ..Activity::default()
        }));
        let started = actions.iter().any(|a| matches!(a, Action::Start { table: t, generation: 1, .. } if t == TABLES[table]));
        prop_assert!(started, "{actions:?}");
    }
}

/// The minimal case proptest found on the policy before issue 16 was fixed: after a restart, the listing that
/// lands while faculty's first start waits shows faculty's FINISHED job of the earlier process. The old policy
/// took it for the start's job, restarted, then stopped the start's job as a duplicate.
#[test]
fn issue_16_an_earlier_process_finished_job_is_not_the_starting_one() {
    let knobs = Knobs {
        cooldown_ms: 0,
        idle_ms: 1,
        per_minute: 1,
        burst: 3,
        max_concurrent: 2,
        failing_after: 1,
        backoff_initial_ms: 1,
        backoff_max_ms: 1,
        operations: vec![Op::Update],
        payment_paused: false,
        payment_cooldown_ms: None,
        seed: 0,
    };
    let steps = [
        Step::ListJobs,
        Step::Records {
            table: 0,
            records: 0,
            ops: vec![Op::Update],
        },
        Step::Reconciled,
        Step::Wait(0),
    ];
    let sim = run(&knobs, &[(0, 1)], &steps);
    if let Err(e) = check(&sim) {
        panic!("{e}");
    }
    let stops = sim
        .history
        .actions
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Stop {
                    reason: StopReason::Duplicate,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stops, 0, "{:#?}", sim.history.actions);
}
