//! Unit tests of the policy rules, one scenario each: `changes` (starts, idle stops, throttle, retries, operator
//! commands), `jobs` (what Flink reports: adoption, duplicates, late reports, states) and `stops` (failed
//! stops). The property tests in `tests/it/policy_props/` cover random interleavings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::config::TableOverrides;
use crate::model::{JobId, JobState, JobSummary, Millis, Op};

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

/// faculty changed at 0 and its job (generation 1) runs since 1 s.
fn running_faculty() -> Policy {
    let mut p = default_policy();
    p.handle(Millis(0), activity("faculty", 1));
    p.handle(Millis(SEC), job("faculty", 1, JobState::Running));
    p
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
        ops: Operations::Sampled(ops.iter().copied().collect::<BTreeMap<_, _>>()),
        newest_ts_ms: None,
    })
}

/// A job id for a name, as the tests write them: `faculty-1` is faculty's job of generation 1.
fn id(name: &str) -> JobId {
    crate::model::job_id_for(name, 0)
}

fn job(table: &str, generation: u64, state: JobState) -> Input {
    Input::JobState(JobObservation {
        table: table.into(),
        job_id: id(&format!("{table}-{generation}")),
        generation: Some(generation),
        state,
    })
}

fn operator(table: &str, command: ControlCommand) -> Input {
    Input::Operator {
        table: table.into(),
        command,
    }
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
                ..
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

/// The one stop `stops` should find: of `table`'s job `job` (named as [`id`] takes it), for `reason`.
fn one_stop(table: &str, job: &str, reason: StopReason) -> Vec<(String, JobId, StopReason)> {
    vec![(table.to_owned(), id(job), reason)]
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

/// faculty with a running job asked to stop by an operator at 2 s.
fn stopping_faculty() -> Policy {
    let mut p = running_faculty();
    let actions = p.handle(Millis(2 * SEC), operator("faculty", ControlCommand::Stop));
    assert_eq!(stops(&actions), one_stop("faculty", "faculty-1", StopReason::Operator));
    p
}

fn stop_failed(table: &str, job_id: &str, transient: bool) -> Input {
    Input::StopFailed {
        table: table.into(),
        job_id: id(job_id),
        transient,
    }
}

mod changes;
mod failures;
mod jobs;
mod reconfigure;
mod stops;
