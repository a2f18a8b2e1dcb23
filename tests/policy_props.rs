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
//! Listings are fed as the run loop does: a job carries its
//! generation only when its id is one this process pinned.
//!
//! Failures are persisted in `proptest-regressions/policy_props.txt` (committed).

use std::collections::BTreeMap;
use std::time::Duration;

use cdc_orchestrator::config::{FlinkConfig, PolicyConfig, TableOverrides};
use cdc_orchestrator::decoder::Op;
use cdc_orchestrator::flink::job_id_for;
use cdc_orchestrator::policy::{
    Action, Activity, ControlCommand, Input, JobId, JobObservation, JobState, Millis, Policy, PolicySettings,
    StopReason,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const TABLES: [&str; 4] = ["faculty", "program", "students", "payment"];

#[derive(Debug, Clone)]
struct Knobs {
    cooldown_ms: u64,
    idle_ms: u64,
    per_minute: u32,
    burst: u32,
    max_concurrent: u32,
    failing_after: u32,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    operations: Vec<Op>,
    payment_paused: bool,
    payment_cooldown_ms: Option<u64>,
    seed: u64,
}

impl Knobs {
    fn settings(&self) -> PolicySettings {
        let mut policy = PolicyConfig {
            cooldown: Duration::from_millis(self.cooldown_ms),
            idle_timeout: Duration::from_millis(self.idle_ms),
            operations: self.operations.clone(),
            retry_initial_backoff: Duration::from_millis(self.backoff_initial_ms),
            retry_max_backoff: Duration::from_millis(self.backoff_max_ms),
            failing_after: self.failing_after,
            ..PolicyConfig::default()
        };
        policy.tables.insert(
            "payment".into(),
            TableOverrides {
                paused: Some(self.payment_paused),
                cooldown: self.payment_cooldown_ms.map(Duration::from_millis),
                ..TableOverrides::default()
            },
        );
        let flink = FlinkConfig {
            starts_per_minute: self.per_minute,
            start_burst: self.burst,
            max_concurrent_jobs: self.max_concurrent,
            ..FlinkConfig::default()
        };
        PolicySettings::new(policy, &flink, self.seed)
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Let time pass, calling the policy at each deadline on the way.
    Wait(u64),
    /// New records; `ops` empty means "no decoded sample".
    Records {
        table: usize,
        records: u64,
        ops: Vec<Op>,
    },
    Lag {
        table: usize,
        lag: u64,
    },
    /// Flink completes whatever it is doing for the table: a start reaches RUNNING, a stop completes.
    FlinkOk {
        table: usize,
        report: u8,
    },
    /// Flink fails the table's start or job in one of several ways.
    FlinkFail {
        table: usize,
        how: u8,
    },
    /// The launcher's answer to the table's start (of generation `which`-th pending, any order), when Flink
    /// has decided it: RUNNING (success) or the job gone (failure).
    StartResult {
        table: usize,
        which: u8,
    },
    /// The run loop lists Flink's jobs (a snapshot; at most one listing in flight).
    ListJobs,
    /// The listing taken by `ListJobs` arrives and is fed to the policy as the run loop does.
    Reconciled,
    /// A late report about the table's last ended job, with or without its generation.
    Stale {
        table: usize,
        state: JobState,
        with_generation: bool,
    },
    /// The stop in flight of one of the table's jobs fails (Flink unreachable when `transient`, else an error
    /// the same call would repeat); the job runs on.
    StopFails {
        table: usize,
        transient: bool,
    },
    Pause(usize),
    Resume(usize),
    Trigger(usize),
    Stop(usize),
    Tick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Submitted,
    Running,
    Stopping,
    Gone,
}

#[derive(Debug, Clone)]
struct SimJob {
    table: usize,
    /// The generation of the start that submitted it (its id is pinned from it); `None` for a job an earlier
    /// sidecar process left behind.
    generation: Option<u64>,
    id: JobId,
    phase: Phase,
    /// What Flink says about it.
    state: JobState,
    /// Every state it was in, so a late report shows one it had.
    states: Vec<JobState>,
    running_at: Option<u64>,
    stop_requested_at: Option<u64>,
    gone_at: Option<u64>,
    /// Ended by our stop, or failed while the table's lag was known to be zero.
    ended_clean: bool,
    /// The policy has seen a report of it (so a stale report about it is possible).
    reported: bool,
    /// A stop of it failed, so the policy owes it another.
    stop_failed: bool,
}

/// A start the launcher carries out: it submitted or adopted `job`, and answers once Flink has decided.
#[derive(Debug, Clone)]
struct Attempt {
    table: usize,
    generation: u64,
    job: usize,
}

#[derive(Debug, Default)]
struct History {
    /// Every action with its time.
    actions: Vec<(u64, Action)>,
    /// Counted changes: (table, time).
    changes: Vec<(usize, u64)>,
    /// Every record arrival (any operation): (table, time, number of actions before it).
    records: Vec<(usize, u64, usize)>,
    violations: Vec<String>,
}

struct Sim {
    policy: Policy,
    knobs: Knobs,
    now: u64,
    jobs: Vec<SimJob>,
    /// Starts whose answer has not reached the policy yet.
    attempts: Vec<Attempt>,
    /// A job listing taken and not yet delivered: when it was asked for, and every job with its state then.
    listing: Option<(u64, Vec<(usize, JobState)>)>,
    /// Stops of jobs that had already ended, to be answered: (table, job id).
    already_stopped: Vec<(usize, JobId)>,
    lag: [Option<u64>; 4],
    /// When each table's lag was last reported, and when its last change came.
    lag_at: [u64; 4],
    last_change: [Option<u64>; 4],
    paused: [bool; 4],
    history: History,
}

fn table_index(name: &str) -> usize {
    TABLES.iter().position(|t| *t == name).expect("a simulated table")
}

impl Sim {
    fn new(knobs: &Knobs) -> Self {
        let settings = knobs.settings();
        let paused = TABLES.map(|t| settings.policy.for_table(t).paused);
        Self {
            policy: Policy::new(settings),
            knobs: knobs.clone(),
            now: 0,
            jobs: Vec::new(),
            attempts: Vec::new(),
            listing: None,
            already_stopped: Vec::new(),
            lag: [None; 4],
            lag_at: [0; 4],
            last_change: [None; 4],
            paused,
            history: History::default(),
        }
    }

    fn live_jobs(&self, table: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.jobs.len()).filter(move |&i| self.jobs[i].table == table && self.jobs[i].phase != Phase::Gone)
    }

    fn feed(&mut self, input: Input) {
        let actions = self.policy.handle(Millis(self.now), input);
        for action in actions {
            self.react(&action);
            self.history.actions.push((self.now, action));
        }
    }

    fn violation(&mut self, message: String) {
        self.history.violations.push(format!("t={}: {message}", self.now));
    }

    fn react(&mut self, action: &Action) {
        match action {
            Action::Start { table, generation, .. } => {
                let t = table_index(table);
                let told: Vec<JobId> = self
                    .live_jobs(t)
                    .filter(|&i| self.jobs[i].reported)
                    .map(|i| self.jobs[i].id.clone())
                    .collect();
                if !told.is_empty() {
                    self.violation(format!(
                        "start of {table} while the policy was told of its live jobs {told:?}"
                    ));
                }
                if self.paused[t] {
                    self.violation(format!("start of paused table {table}"));
                }
                // Jobs the policy can know of: its own and those reported to it.
                let in_flight = self
                    .jobs
                    .iter()
                    .filter(|j| j.phase != Phase::Gone && (j.generation.is_some() || j.reported))
                    .count();
                if in_flight >= self.knobs.max_concurrent as usize {
                    self.violation(format!("start of {table} with {in_flight} jobs in flight"));
                }
                if self
                    .jobs
                    .iter()
                    .any(|j| j.table == t && j.generation.is_some_and(|g| g >= *generation))
                {
                    self.violation(format!("generation {generation} of {table} not above earlier ones"));
                }
                // The launcher adopts the newest live job of the table instead of submitting a second one.
                let job = match self.live_jobs(t).last() {
                    Some(live) => live,
                    None => {
                        self.jobs.push(SimJob {
                            table: t,
                            generation: Some(*generation),
                            id: job_id_for(table, *generation),
                            phase: Phase::Submitted,
                            state: JobState::Initializing,
                            states: vec![JobState::Initializing],
                            running_at: None,
                            stop_requested_at: None,
                            gone_at: None,
                            ended_clean: false,
                            reported: false,
                            stop_failed: false,
                        });
                        self.jobs.len() - 1
                    }
                };
                self.attempts.push(Attempt {
                    table: t,
                    generation: *generation,
                    job,
                });
            }
            Action::Stop { table, job_id, reason } => {
                let t = table_index(table);
                // A stop asked for again after a failure carries out a decision taken before (lag may have come, or
                // the table's other job ended, since).
                let retried = self.jobs.iter().any(|j| j.id == *job_id && j.stop_failed);
                if *reason == StopReason::Idle && self.lag[t].is_some_and(|l| l > 0) && !retried {
                    self.violation(format!("idle stop of {table} while lag is {:?}", self.lag[t]));
                }
                let live = self.live_jobs(t).any(|i| self.jobs[i].id == *job_id);
                if *reason == StopReason::Duplicate && live && !retried {
                    let others = self.live_jobs(t).filter(|&i| self.jobs[i].id != *job_id).count();
                    if others == 0 {
                        self.violation(format!(
                            "{job_id}, the only live job of {table}, stopped as a duplicate"
                        ));
                    }
                }
                let now = self.now;
                let known = self.jobs.iter().any(|j| j.id == *job_id);
                match self.jobs.iter_mut().find(|j| j.id == *job_id && j.phase != Phase::Gone) {
                    Some(job) if job.phase == Phase::Running => {
                        job.phase = Phase::Stopping;
                        job.stop_requested_at = Some(now);
                    }
                    // A listing taken before the job ended showed it live; the launcher finds it ended and says so.
                    None if known => {
                        self.already_stopped.push((t, job_id.clone()));
                    }
                    _ => self.violation(format!("stop of {job_id}, which is not running")),
                }
            }
            _ => {}
        }
    }

    fn advance_to(&mut self, target: u64) {
        while let Some(due) = self.policy.next_deadline().filter(|d| d.0 <= target) {
            let before = self.history.actions.len();
            self.now = self.now.max(due.0);
            self.feed(Input::Tick);
            if self.policy.next_deadline() == Some(due) && self.history.actions.len() == before {
                self.violation(format!("deadline {due} fired but is still due"));
                return;
            }
        }
        self.now = self.now.max(target);
    }

    fn report(&mut self, i: usize, state: JobState) {
        self.report_as(i, state, true);
    }

    /// A report as the run loop's reconciliation gives it: with the generation when the id is one this process
    /// pinned (and `with_generation`).
    fn report_as(&mut self, i: usize, state: JobState, with_generation: bool) {
        self.jobs[i].reported = true;
        let job = &self.jobs[i];
        self.feed(Input::JobState(JobObservation {
            table: TABLES[job.table].to_owned(),
            job_id: job.id.clone(),
            generation: job.generation.filter(|_| with_generation),
            state,
        }));
    }

    fn set_state(&mut self, i: usize, state: JobState) {
        self.jobs[i].state = state.clone();
        self.jobs[i].states.push(state);
    }

    fn end(&mut self, i: usize, clean: bool, state: JobState) {
        let now = self.now;
        let job = &mut self.jobs[i];
        job.phase = Phase::Gone;
        job.state = state.clone();
        job.states.push(state);
        job.gone_at = Some(now);
        let t = job.table;
        // A job still owed a stop that ends other than FAILED is stopped as the policy decided (the launcher
        // cancels a job whose savepoint does not come).
        let stopped = job.stop_failed && job.state != JobState::Failed;
        job.ended_clean =
            clean || stopped || self.lag[t] == Some(0) && self.last_change[t].is_none_or(|c| c <= self.lag_at[t]);
    }

    /// Delivers the `which`-th start answer of `table` that Flink has decided (any order), or all with `None`.
    fn start_results(&mut self, table: Option<usize>, which: Option<u8>) {
        loop {
            let ready: Vec<usize> = (0..self.attempts.len())
                .filter(|&a| {
                    let attempt = &self.attempts[a];
                    table.is_none_or(|t| attempt.table == t) && self.jobs[attempt.job].phase != Phase::Submitted
                })
                .collect();
            if ready.is_empty() {
                return;
            }
            let pick = ready[which.map_or(0, |w| usize::from(w) % ready.len())];
            let attempt = self.attempts.remove(pick);
            let job = &self.jobs[attempt.job];
            let table_name = TABLES[attempt.table].to_owned();
            if job.phase == Phase::Gone {
                self.feed(Input::StartFailed {
                    table: table_name,
                    generation: Some(attempt.generation),
                    error: "simulated".into(),
                });
            } else {
                let job_id = job.id.clone();
                self.jobs[attempt.job].reported = true;
                self.feed(Input::JobState(JobObservation {
                    table: table_name,
                    job_id,
                    generation: Some(attempt.generation),
                    state: JobState::Running,
                }));
            }
            if which.is_some() {
                return;
            }
        }
    }

    fn flink_ok(&mut self, table: usize, report: u8) {
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

    fn flink_fail(&mut self, table: usize, how: u8) {
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
    fn stop_fails(&mut self, table: usize, transient: bool) {
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
    fn list_jobs(&mut self) {
        if self.listing.is_none() {
            let jobs = (0..self.jobs.len()).map(|i| (i, self.jobs[i].state.clone())).collect();
            self.listing = Some((self.now, jobs));
        }
    }

    /// What the run loop feeds the policy from a listing (`reconcile_jobs`, then `RunLoop::on_reconciled`):
    /// first the end of each table's current job when the listing lacks it although the policy knew it before
    /// the listing was asked for, or shows it ended; then per table its live jobs, newest first, or else its
    /// latest ended one.
    fn reconciled(&mut self) {
        let Some((requested_at, listed)) = self.listing.take() else {
            return;
        };
        let mut reports = Vec::new();
        for (t, name) in TABLES.iter().enumerate() {
            let of_table: Vec<(usize, JobState)> = listed
                .iter()
                .rev()
                .filter(|(i, _)| self.jobs[*i].table == t)
                .cloned()
                .collect();
            let (live, ended): (Vec<_>, Vec<_>) = of_table.into_iter().partition(|(_, state)| !state.is_terminal());
            let latest_ended = if live.is_empty() { ended.first().cloned() } else { None };
            if let Some(status) = self.policy.status(name)
                && let Some(job_id) = status.job_id
            {
                match listed.iter().find(|(i, _)| self.jobs[*i].id == job_id) {
                    None if status.job_since.is_some_and(|since| since.0 < requested_at) => {
                        self.feed(Input::JobState(JobObservation {
                            table: (*name).to_owned(),
                            job_id,
                            generation: None,
                            state: JobState::Canceled,
                        }));
                    }
                    Some((i, state)) if state.is_terminal() && Some(*i) != latest_ended.as_ref().map(|(l, _)| *l) => {
                        self.report(*i, state.clone());
                    }
                    _ => {}
                }
            }
            reports.extend(live);
            reports.extend(latest_ended);
        }
        for (i, state) in reports {
            self.report(i, state);
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Wait(ms) => self.advance_to(self.now + ms),
            Step::Records { table, records, ops } => {
                let rules = self.policy.settings().policy.for_table(TABLES[*table]);
                let counted = if ops.is_empty() {
                    *records > 0
                } else {
                    ops.iter().any(|op| rules.operations.contains(op))
                };
                let mut counts = BTreeMap::new();
                for op in ops {
                    *counts.entry(*op).or_insert(0) += 1;
                }
                if *records > 0 || !ops.is_empty() {
                    self.history
                        .records
                        .push((*table, self.now, self.history.actions.len()));
                }
                if counted {
                    self.history.changes.push((*table, self.now));
                    self.last_change[*table] = Some(self.now);
                }
                self.feed(Input::Activity(Activity {
                    table: TABLES[*table].to_owned(),
                    records: (*records).max(ops.len() as u64),
                    ops: counts,
                    newest_ts_ms: Some(self.now as i64),
                }));
            }
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
            } => {
                if let Some(i) = (0..self.jobs.len())
                    .rev()
                    .find(|&i| self.jobs[i].table == *table && self.jobs[i].phase == Phase::Gone)
                {
                    // A snapshot one reconcile late shows the most recently ended job, possibly after the
                    // policy already started the next one.
                    if self.jobs[i].reported {
                        let job = &self.jobs[i];
                        let state = if job.states.contains(state) {
                            state.clone()
                        } else {
                            job.state.clone()
                        };
                        self.report_as(i, state, *with_generation);
                    }
                }
            }
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
    fn settle(&mut self) {
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

/// A job an earlier sidecar process left behind: running, or ended (FINISHED, FAILED, CANCELED).
fn run(knobs: &Knobs, preexisting: &[(usize, u8)], steps: &[Step]) -> Sim {
    let mut sim = Sim::new(knobs);
    for (n, (table, kind)) in preexisting.iter().enumerate() {
        let state = [
            JobState::Running,
            JobState::Finished,
            JobState::Failed,
            JobState::Canceled,
        ][usize::from(*kind % 4)]
        .clone();
        let live = state == JobState::Running;
        sim.jobs.push(SimJob {
            table: *table,
            generation: None,
            id: job_id_for("old", n as u64),
            phase: if live { Phase::Running } else { Phase::Gone },
            state: state.clone(),
            states: vec![JobState::Running, state],
            running_at: Some(0),
            stop_requested_at: None,
            gone_at: (!live).then_some(0),
            ended_clean: true,
            reported: false,
            stop_failed: false,
        });
    }
    for step in steps {
        sim.step(step);
    }
    sim.settle();
    sim
}

fn check(sim: &Sim) -> Result<(), TestCaseError> {
    let knobs = &sim.knobs;
    let h = &sim.history;
    prop_assert!(h.violations.is_empty(), "{:#?}", h.violations);
    let settings = knobs.settings();
    let starts: Vec<(u64, usize)> = h
        .actions
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Start { table, .. } => Some((*t, table_index(table))),
            _ => None,
        })
        .collect();

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
                ops,
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
        (table, command_strategy()).prop_map(|(table, command)| Input::Operator { table, command }),
        Just(Input::Tick),
    ];
    let time = prop_oneof![0u64..200_000, any::<u64>()];
    (time, input)
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
