//! When starts and stops are due: the start queue with its throttle and concurrency limit, idle stops, stop
//! retries, and the status each table shows.

use super::table::{Announced, Job, Pending, RetryWhen, Table};
use super::{Action, Event, NextAction, NextStep, Policy, StartReason, StopReason, TableState, TableStatus, WaitCause};
use crate::model::{Millis, job_id_for, launch_generation};

impl Policy {
    pub(super) fn unqueue(&mut self, name: &str) {
        if let Some(t) = self.tables.get_mut(name) {
            t.queued = false;
            t.announced = Announced::Nothing;
        }
        self.queue.retain(|queued| queued != name);
    }

    /// Applies everything time or the last input made due: lag-driven pending, idle stops, starts.
    pub(super) fn evaluate(&mut self, now: Millis, out: &mut Vec<Action>) {
        let mut due: Vec<(Millis, String)> = Vec::new();
        for (name, t) in &mut self.tables {
            if t.job == Job::None && t.lag_above_zero() {
                t.pending.get_or_insert(Pending {
                    since: now,
                    reason: StartReason::Lag,
                });
            }
            if t.idle_at().is_some_and(|idle_at| now >= idle_at)
                && !t.lag_above_zero()
                && let Some(job_id) = t.job.stop(now, StopReason::Idle)
            {
                out.push(Action::Stop {
                    table: name.clone(),
                    job_id,
                    reason: StopReason::Idle,
                });
            }
            for (job_id, retry) in &mut t.stop_retries {
                if matches!(retry.next, RetryWhen::At(at) if now >= at) {
                    retry.next = RetryWhen::InFlight;
                    out.push(Action::Stop {
                        table: name.clone(),
                        job_id: job_id.clone(),
                        reason: retry.reason,
                    });
                }
            }
            if t.wants_start() && !t.queued {
                let (ready_at, cause) = t.ready_at();
                if now >= ready_at {
                    t.queued = true;
                    t.announced = Announced::Nothing;
                    let since = t.pending.map_or(now, |p| p.since);
                    due.push((since, name.clone()));
                } else if t.announced != Announced::Deferred(ready_at) {
                    t.announced = Announced::Deferred(ready_at);
                    out.push(Action::Event(Event::Deferred {
                        table: name.clone(),
                        until: ready_at,
                        cause,
                    }));
                }
            }
        }
        // Tables that became due together queue by how long their changes have waited, then by name.
        due.sort();
        self.queue.extend(due.into_iter().map(|(_, name)| name));
        self.drain_queue(now, out);
    }

    fn drain_queue(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.throttled_until = None;
        let limit = self.settings.max_concurrent_jobs.max(1);
        let in_flight: usize = self.tables.values().map(Table::jobs_in_flight).sum();
        let mut in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX);
        while let Some(name) = self.queue.front().cloned() {
            let Some(t) = self.tables.get_mut(&name) else {
                self.queue.pop_front();
                continue;
            };
            if !t.wants_start() {
                t.queued = false;
                self.queue.pop_front();
                continue;
            }
            if in_flight >= limit {
                if t.announced != Announced::Queued {
                    t.announced = Announced::Queued;
                    out.push(Action::Event(Event::Queued {
                        table: name,
                        in_flight,
                        limit,
                    }));
                }
                return;
            }
            if let Err(until) = self.throttle.try_take(now) {
                self.throttled_until = Some(until);
                if t.announced != Announced::Throttled(until) {
                    t.announced = Announced::Throttled(until);
                    out.push(Action::Event(Event::Throttled { table: name, until }));
                }
                return;
            }
            self.queue.pop_front();
            in_flight += 1;
            let pending = t.pending.take();
            let reason = if t.failures > 0 {
                StartReason::Retry
            } else {
                pending.map_or(StartReason::Changes, |p| p.reason)
            };
            t.generation = t.generation.saturating_add(1);
            let launch_generation = launch_generation(self.settings.process_start_ms, t.generation);
            t.pin(t.generation, job_id_for(&name, launch_generation));
            t.queued = false;
            t.announced = Announced::Nothing;
            t.retry_at = None;
            t.last_start = Some(now);
            t.job = Job::Starting {
                generation: t.generation,
                since: now,
                job_id: None,
                state: None,
                pending,
                stop_requested: false,
            };
            out.push(Action::Start {
                table: name,
                generation: t.generation,
                launch_generation,
                reason,
            });
        }
    }

    pub(super) fn status_of(&self, name: &str, t: &Table) -> TableStatus {
        let failing = t.failures >= self.settings.policy.failing_after.max(1);
        let state = match &t.job {
            Job::Starting { .. } if failing => TableState::Failing,
            Job::Starting { .. } => TableState::Starting,
            Job::Running { .. } => TableState::Running,
            Job::Stopping { .. } => TableState::Stopping,
            Job::None if t.paused || t.drift_holds_starts() => TableState::Paused,
            Job::None if failing => TableState::Failing,
            Job::None if t.pending.is_some() => TableState::Pending,
            Job::None => TableState::Idle,
        };
        let next = match &t.job {
            Job::Running { .. } => Some(if t.lag_above_zero() {
                NextStep {
                    action: NextAction::Stop,
                    at: None,
                    waiting_for: Some(WaitCause::Lag),
                }
            } else {
                NextStep {
                    action: NextAction::Stop,
                    at: t.idle_at(),
                    waiting_for: None,
                }
            }),
            Job::Starting {
                stop_requested: true, ..
            } => Some(NextStep {
                action: NextAction::Stop,
                at: None,
                waiting_for: Some(WaitCause::NotRunning),
            }),
            Job::None if t.wants_start() => Some(self.next_start(name, t)),
            _ => None,
        };
        let (job_state, job_since) = match &t.job {
            Job::Starting { state, since, .. } => (state.clone(), Some(*since)),
            Job::Running { state, since, .. } => (Some(state.clone()), Some(*since)),
            Job::Stopping { state, since, .. } => (Some(state.clone()), Some(*since)),
            Job::None => (None, None),
        };
        TableStatus {
            table: name.to_owned(),
            state,
            paused: t.paused,
            generation: t.generation,
            job_id: t.job.job_id().cloned(),
            job_state,
            job_since,
            last_record_at: t.last_record,
            last_change_at: t.last_change,
            newest_record_ts_ms: t.newest_ts_ms,
            lag: t.lag,
            pending_since: t.pending.map(|p| p.since),
            consecutive_failures: t.failures,
            last_error: t.last_error.clone(),
            last_start_at: t.last_start,
            duplicate_jobs: t.duplicates.clone(),
            next,
            schema_drift: t.schema_drift.clone(),
            drift_paused: t.drift_holds_starts(),
        }
    }

    fn next_start(&self, name: &str, t: &Table) -> NextStep {
        let start = |at, waiting_for| NextStep {
            action: NextAction::Start,
            at,
            waiting_for,
        };
        if !t.queued {
            let (at, cause) = t.ready_at();
            return start(Some(at), Some(cause));
        }
        if self.queue.front().map(String::as_str) != Some(name) {
            return start(None, Some(WaitCause::Queue));
        }
        match self.throttled_until {
            Some(until) => start(Some(until), Some(WaitCause::Throttle)),
            None => start(None, Some(WaitCause::ConcurrencyLimit)),
        }
    }
}
