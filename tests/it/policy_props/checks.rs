//! The rules checked on a whole history once the simulation settled.

use cdc_orchestrator::policy::{Action, StopReason};
use proptest::prelude::*;

use super::model::{Phase, Sim, SimJob, TABLES, table_index};

pub(crate) fn check(sim: &Sim) -> Result<(), TestCaseError> {
    let h = &sim.history;
    prop_assert!(h.violations.is_empty(), "{:#?}", h.violations);
    let starts: Vec<(u64, usize)> = h
        .actions
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Start { table, .. } => Some((*t, table_index(table))),
            _ => None,
        })
        .collect();

    check_starts(sim, &starts)?;
    check_idle_stops(sim)?;
    check_converged(sim)?;
    check_changes_covered(sim)
}

/// Starts of one table are at least its cooldown apart, and all starts keep to the token bucket.
fn check_starts(sim: &Sim, starts: &[(u64, usize)]) -> Result<(), TestCaseError> {
    let knobs = &sim.knobs;
    let settings = knobs.settings();
    // Starts of one table are at least its cooldown apart.
    for (table, name) in TABLES.iter().enumerate() {
        let cooldown = settings.policy.for_table(name).cooldown.as_millis() as u64;
        let times: Vec<u64> = starts.iter().filter(|(_, t)| *t == table).map(|(at, _)| *at).collect();
        for pair in times.windows(2) {
            prop_assert!(
                pair[1] - pair[0] >= cooldown,
                "{name} started at {} and {} (cooldown {cooldown})",
                pair[0],
                pair[1]
            );
        }
    }

    // The token bucket: any n consecutive starts span at least (n - burst) replenish intervals.
    let interval_ns = 60_000_000_000u128 / u128::from(knobs.per_minute);
    for i in 0..starts.len() {
        for j in i..starts.len() {
            let n = (j - i + 1) as u128;
            let span_ns = u128::from(starts[j].0 - starts[i].0) * 1_000_000;
            prop_assert!(
                n <= u128::from(knobs.burst) + span_ns / interval_ns,
                "{n} starts within {} ms exceed the throttle",
                starts[j].0 - starts[i].0
            );
        }
    }

    Ok(())
}

fn check_idle_stops(sim: &Sim) -> Result<(), TestCaseError> {
    let (knobs, h) = (&sim.knobs, &sim.history);
    // Idle stops only after idle_timeout without records since the job reached RUNNING. A stop asked for again
    // after a failure carries out the first one's decision.
    let mut stopped_before = std::collections::BTreeSet::new();
    for (index, (at, action)) in h.actions.iter().enumerate() {
        if let Action::Stop {
            table,
            job_id,
            reason: StopReason::Idle,
        } = action
            && stopped_before.insert(job_id.clone())
        {
            let t = table_index(table);
            let last_record = h
                .records
                .iter()
                .filter(|(rt, _, before)| *rt == t && *before <= index)
                .map(|(_, r, _)| *r)
                .max();
            let running_at = sim.jobs.iter().find(|j| j.id == *job_id).and_then(|j| j.running_at);
            prop_assert!(running_at.is_some(), "idle stop of {job_id}, which never ran");
            let quiet_since = last_record.max(running_at).unwrap_or(0);
            prop_assert!(
                *at >= quiet_since + knobs.idle_ms,
                "{table} stopped at {at}, quiet only since {quiet_since}"
            );
        }
    }

    Ok(())
}

fn check_converged(sim: &Sim) -> Result<(), TestCaseError> {
    let h = &sim.history;
    // Once Flink behaves and its jobs were listed, the policy's view is Flink's: at most one live job per table,
    // and it is the policy's job, in the state Flink reports.
    for (t, name) in TABLES.iter().enumerate() {
        let live: Vec<&SimJob> = sim
            .jobs
            .iter()
            .filter(|j| j.table == t && j.phase != Phase::Gone)
            .collect();
        let status = sim.policy.status(name);
        prop_assert!(live.len() <= 1, "{name} has live jobs {live:#?}");
        let (job_id, job_state) = status
            .as_ref()
            .map_or((None, None), |s| (s.job_id.clone(), s.job_state.clone()));
        prop_assert_eq!(
            job_id.clone(),
            live.first().map(|j| j.id.clone()),
            "{} job in the policy and in Flink\nactions: {:#?}\njobs: {:#?}\nstatus: {:#?}",
            name,
            h.actions,
            sim.jobs,
            status
        );
        if let Some(job) = live.first() {
            prop_assert_eq!(job_state, Some(job.state.clone()), "{} state as Flink says", name);
        }
    }

    // A stop that failed was asked for again until the job was gone.
    for job in sim.jobs.iter().filter(|j| j.stop_failed) {
        prop_assert!(
            job.phase == Phase::Gone,
            "{:?}'s stop failed and was never retried\nactions: {:#?}\njobs: {:#?}",
            job.id,
            h.actions,
            sim.jobs
        );
    }

    Ok(())
}

fn check_changes_covered(sim: &Sim) -> Result<(), TestCaseError> {
    let h = &sim.history;
    // Every change of a table that is not paused in the end is followed by a job running at or after it,
    // not asked to stop before it, and not lost to a failure.
    for (table, at) in &h.changes {
        if sim.paused[*table] {
            continue;
        }
        let covered = sim.jobs.iter().any(|j| {
            j.table == *table
                && j.running_at.is_some()
                && j.gone_at.is_none_or(|g| g >= *at)
                && j.stop_requested_at.is_none_or(|s| s >= *at)
                && (j.gone_at.is_none() || j.ended_clean)
        });
        prop_assert!(
            covered,
            "change of {} at {at} never got a running job\nactions: {:#?}\njobs: {:#?}\nstatus: {:#?}",
            TABLES[*table],
            h.actions,
            sim.jobs,
            sim.policy.statuses()
        );
    }
    Ok(())
}
