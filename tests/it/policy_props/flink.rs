//! The simulated Flink's side of the model: jobs reaching RUNNING or failing, stops completing or failing,
//! listings taken and delivered, the trace's steps, and settling.

use std::collections::BTreeMap;

use cdc_orchestrator::model::{JobId, JobState, JobSummary, Millis, Op};
use cdc_orchestrator::policy::{Activity, ControlCommand, Input, Operations};

use super::model::{Phase, Sim, Step, TABLES};

impl Sim {
    pub(crate) fn flink_ok(&mut self, table: usize, report: u8) {
        let answered: Vec<JobId> = self
            .already_stopped
            .iter()
            .filter(|(t, _)| *t == table)
            .map(|(_, id)| id.clone())
            .collect();
        self.already_stopped.retain(|(t, _)| *t != table);
        for job_id in answered {
            self.feed(Input::Stopped {
                table: TABLES[table].to_owned(),
                job_id: Some(job_id),
            });
        }
        let live: Vec<usize> = self.live_jobs(table).collect();
        for i in live {
            match self.jobs[i].phase {
                Phase::Submitted => {
                    if report.is_multiple_of(3) {
                        // A listing sees the job while it initializes.
                        self.report(i, JobState::Initializing);
                    }
                    self.jobs[i].phase = Phase::Running;
                    self.set_state(i, JobState::Running);
                    self.jobs[i].running_at = Some(self.now);
                }
                Phase::Running => {
                    self.set_state(i, JobState::Running);
                    self.report(i, JobState::Running);
                }
                Phase::Stopping => {
                    self.end(i, true, JobState::Finished);
                    if report.is_multiple_of(2) {
                        let job_id = Some(self.jobs[i].id.clone());
                        self.feed(Input::Stopped {
                            table: TABLES[table].to_owned(),
                            job_id,
                        });
                    } else {
                        self.report(i, JobState::Finished);
                    }
                }
                Phase::Gone => {}
            }
        }
        if report.is_multiple_of(2) {
            // The launcher answers at once.
            self.start_results(Some(table), None);
        }
    }

    pub(crate) fn flink_fail(&mut self, table: usize, how: u8) {
        let Some(i) = self.live_jobs(table).next() else {
            return;
        };
        match (self.jobs[i].phase, how % 3) {
            // The start times out; the launcher cancels the job and answers with a failure.
            (Phase::Submitted, 0) => self.end(i, false, JobState::Canceled),
            (Phase::Submitted | Phase::Stopping, _) | (Phase::Running, 0) => {
                self.end(i, false, JobState::Failed);
                self.report(i, JobState::Failed);
            }
            (Phase::Running, 1) => {
                self.set_state(i, JobState::Restarting);
                self.report(i, JobState::Restarting);
            }
            (Phase::Running, _) => {
                self.end(i, false, JobState::Canceled);
                self.report(i, JobState::Canceled);
            }
            (Phase::Gone, _) => {}
        }
        if how.is_multiple_of(2) {
            self.start_results(Some(table), None);
        }
    }

    /// The stop in flight of the table's first stopping job fails; the job runs on.
    pub(crate) fn stop_fails(&mut self, table: usize, transient: bool) {
        let Some(i) = self.live_jobs(table).find(|&i| self.jobs[i].phase == Phase::Stopping) else {
            return;
        };
        let job = &mut self.jobs[i];
        job.phase = Phase::Running;
        job.stop_failed = true;
        let job_id = job.id.clone();
        self.feed(Input::StopFailed {
            table: TABLES[table].to_owned(),
            job_id,
            transient,
        });
    }

    /// Flink's job list at this moment.
    pub(crate) fn list_jobs(&mut self) {
        if self.listing.is_none() {
            let jobs = (0..self.jobs.len()).map(|i| (i, self.jobs[i].state.clone())).collect();
            self.listing = Some((self.now, jobs));
        }
    }

    /// The listing taken by [`Sim::list_jobs`] arrives, and goes to the policy as the run loop hands it over:
    /// every listed job with its state then, Flink's start time giving their age.
    pub(crate) fn reconciled(&mut self) {
        let Some((requested_at, listed)) = self.listing.take() else {
            return;
        };
        let jobs = listed
            .into_iter()
            .map(|(i, state)| {
                self.jobs[i].reported = true;
                let job = &self.jobs[i];
                JobSummary {
                    table: TABLES[job.table].to_owned(),
                    job_id: job.id.clone(),
                    state,
                    start_time_ms: i as i64,
                    end_time_ms: None,
                }
            })
            .collect();
        self.feed(Input::Listing {
            jobs,
            requested_at: Millis(requested_at),
        });
    }

    /// New records on the table's topic: `ops` empty means "no decoded sample".
    fn records(&mut self, table: usize, records: u64, ops: &[Op]) {
        let rules = self.policy.settings().policy.for_table(TABLES[table]);
        let counted = if ops.is_empty() {
            records > 0
        } else {
            ops.iter().any(|op| rules.operations.contains(op))
        };
        let mut counts = BTreeMap::new();
        for op in ops {
            *counts.entry(*op).or_insert(0) += 1;
        }
        if records > 0 || !ops.is_empty() {
            self.history.records.push((table, self.now, self.history.actions.len()));
        }
        if counted {
            self.history.changes.push((table, self.now));
            self.last_change[table] = Some(self.now);
        }
        self.feed(Input::Activity(Activity {
            table: TABLES[table].to_owned(),
            records: records.max(ops.len() as u64),
            // No decoded sample: the watcher cannot tell what the records are.
            ops: if counts.is_empty() {
                Operations::Unknown
            } else {
                Operations::Sampled(counts)
            },
            newest_ts_ms: Some(self.now as i64),
        }));
    }

    /// A late report about the table's last ended job, in a state it had.
    fn stale(&mut self, table: usize, state: &JobState, with_generation: bool) {
        let Some(i) = (0..self.jobs.len())
            .rev()
            .find(|&i| self.jobs[i].table == table && self.jobs[i].phase == Phase::Gone)
        else {
            return;
        };
        // A snapshot one reconcile late shows the most recently ended job, possibly after the policy already
        // started the next one.
        if self.jobs[i].reported {
            let job = &self.jobs[i];
            let state = if job.states.contains(state) {
                state.clone()
            } else {
                job.state.clone()
            };
            self.report_as(i, state, with_generation);
        }
    }

    pub(crate) fn step(&mut self, step: &Step) {
        match step {
            Step::Wait(ms) => self.advance_to(self.now + ms),
            Step::Records { table, records, ops } => self.records(*table, *records, ops),
            Step::Lag { table, lag } => {
                self.lag[*table] = Some(*lag);
                self.lag_at[*table] = self.now;
                self.feed(Input::Lag {
                    table: TABLES[*table].to_owned(),
                    lag: *lag,
                });
            }
            Step::FlinkOk { table, report } => self.flink_ok(*table, *report),
            Step::FlinkFail { table, how } => self.flink_fail(*table, *how),
            Step::StartResult { table, which } => self.start_results(Some(*table), Some(*which)),
            Step::ListJobs => self.list_jobs(),
            Step::Reconciled => self.reconciled(),
            Step::Stale {
                table,
                state,
                with_generation,
            } => self.stale(*table, state, *with_generation),
            Step::StopFails { table, transient } => self.stop_fails(*table, *transient),
            Step::Pause(t) => {
                self.paused[*t] = true;
                self.feed(Input::Operator {
                    table: TABLES[*t].into(),
                    command: ControlCommand::Pause,
                });
            }
            Step::Resume(t) => {
                self.paused[*t] = false;
                self.feed(Input::Operator {
                    table: TABLES[*t].into(),
                    command: ControlCommand::Resume,
                });
            }
            Step::Trigger(t) => {
                let rules_paused = self.paused[*t];
                if !rules_paused {
                    self.history.changes.push((*t, self.now));
                }
                self.feed(Input::Operator {
                    table: TABLES[*t].into(),
                    command: ControlCommand::Trigger,
                });
            }
            Step::Stop(t) => self.feed(Input::Operator {
                table: TABLES[*t].into(),
                command: ControlCommand::Stop,
            }),
            Step::Tick => self.feed(Input::Tick),
        }
    }

    /// Flink now always succeeds, answers arrive, running jobs catch up, the job list is reconciled every
    /// round, and time runs on until the policy wants nothing more.
    pub(crate) fn settle(&mut self) {
        for _ in 0..1_000 {
            for t in 0..TABLES.len() {
                self.flink_ok(t, 0);
                // A running job catches up with its topic.
                let running = self.live_jobs(t).any(|i| self.jobs[i].phase == Phase::Running);
                if running && self.lag[t].is_some_and(|l| l > 0) {
                    self.step(&Step::Lag { table: t, lag: 0 });
                }
            }
            self.start_results(None, None);
            // A listing in flight arrives, then a fresh one.
            self.reconciled();
            self.list_jobs();
            self.reconciled();
            let busy = !self.attempts.is_empty()
                || !self.already_stopped.is_empty()
                || self
                    .jobs
                    .iter()
                    .any(|j| matches!(j.phase, Phase::Submitted | Phase::Stopping));
            if busy {
                continue;
            }
            match self.policy.next_deadline() {
                Some(due) => self.advance_to(due.0),
                None => return,
            }
        }
        self.violation("the policy never settles".into());
    }
}
