//! The simulated Flink and launcher the policy runs against.

use std::time::Duration;

use cdc_orchestrator::config::{FlinkConfig, PolicyConfig, TableOverrides};
use cdc_orchestrator::model::{JobId, JobState, Millis, Op, job_id_for};
use cdc_orchestrator::policy::{Action, Input, JobObservation, Policy, PolicySettings, StopReason};

pub(crate) const TABLES: [&str; 4] = ["faculty", "program", "students", "payment"];

#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) cooldown_ms: u64,
    pub(crate) idle_ms: u64,
    pub(crate) per_minute: u32,
    pub(crate) burst: u32,
    pub(crate) max_concurrent: u32,
    pub(crate) failing_after: u32,
    pub(crate) backoff_initial_ms: u64,
    pub(crate) backoff_max_ms: u64,
    pub(crate) operations: Vec<Op>,
    pub(crate) payment_paused: bool,
    pub(crate) payment_cooldown_ms: Option<u64>,
    pub(crate) seed: u64,
}

impl Knobs {
    pub(crate) fn settings(&self) -> PolicySettings {
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
pub(crate) enum Step {
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
pub(crate) enum Phase {
    Submitted,
    Running,
    Stopping,
    Gone,
}

#[derive(Debug, Clone)]
pub(crate) struct SimJob {
    pub(crate) table: usize,
    /// The generation of the start that submitted it (its id is pinned from it); `None` for a job an earlier
    /// sidecar process left behind.
    pub(crate) generation: Option<u64>,
    pub(crate) id: JobId,
    pub(crate) phase: Phase,
    /// What Flink says about it.
    pub(crate) state: JobState,
    /// Every state it was in, so a late report shows one it had.
    pub(crate) states: Vec<JobState>,
    pub(crate) running_at: Option<u64>,
    pub(crate) stop_requested_at: Option<u64>,
    pub(crate) gone_at: Option<u64>,
    /// Ended by our stop, or failed while the table's lag was known to be zero.
    pub(crate) ended_clean: bool,
    /// The policy has seen a report of it (so a stale report about it is possible).
    pub(crate) reported: bool,
    /// A stop of it failed, so the policy owes it another.
    pub(crate) stop_failed: bool,
}

/// A start the launcher carries out: it submitted or adopted `job`, and answers once Flink has decided.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) table: usize,
    pub(crate) generation: u64,
    pub(crate) job: usize,
}

#[derive(Debug, Default)]
pub(crate) struct History {
    /// Every action with its time.
    pub(crate) actions: Vec<(u64, Action)>,
    /// Counted changes: (table, time).
    pub(crate) changes: Vec<(usize, u64)>,
    /// Every record arrival (any operation): (table, time, number of actions before it).
    pub(crate) records: Vec<(usize, u64, usize)>,
    pub(crate) violations: Vec<String>,
}

pub(crate) struct Sim {
    pub(crate) policy: Policy,
    pub(crate) knobs: Knobs,
    pub(crate) now: u64,
    pub(crate) jobs: Vec<SimJob>,
    /// Starts whose answer has not reached the policy yet.
    pub(crate) attempts: Vec<Attempt>,
    /// A job listing taken and not yet delivered: when it was asked for, and every job with its state then.
    pub(crate) listing: Option<(u64, Vec<(usize, JobState)>)>,
    /// Stops of jobs that had already ended, to be answered: (table, job id).
    pub(crate) already_stopped: Vec<(usize, JobId)>,
    pub(crate) lag: [Option<u64>; 4],
    /// When each table's lag was last reported, and when its last change came.
    pub(crate) lag_at: [u64; 4],
    pub(crate) last_change: [Option<u64>; 4],
    pub(crate) paused: [bool; 4],
    pub(crate) history: History,
}

pub(crate) fn table_index(name: &str) -> usize {
    TABLES.iter().position(|t| *t == name).expect("a simulated table")
}

impl Sim {
    pub(crate) fn new(knobs: &Knobs) -> Self {
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

    pub(crate) fn live_jobs(&self, table: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.jobs.len()).filter(move |&i| self.jobs[i].table == table && self.jobs[i].phase != Phase::Gone)
    }

    pub(crate) fn feed(&mut self, input: Input) {
        let actions = self.policy.handle(Millis(self.now), input);
        for action in actions {
            self.react(&action);
            self.history.actions.push((self.now, action));
        }
    }

    pub(crate) fn violation(&mut self, message: String) {
        self.history.violations.push(format!("t={}: {message}", self.now));
    }

    pub(crate) fn react(&mut self, action: &Action) {
        match action {
            Action::Start { table, generation, .. } => self.react_start(table, *generation),
            Action::Stop { table, job_id, reason } => self.react_stop(table, job_id, *reason),
            _ => {}
        }
    }

    /// The launcher carries out a start: it adopts the newest live job of the table, or submits one.
    fn react_start(&mut self, table: &str, generation: u64) {
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
            .any(|j| j.table == t && j.generation.is_some_and(|g| g >= generation))
        {
            self.violation(format!("generation {generation} of {table} not above earlier ones"));
        }
        // The launcher adopts the newest live job of the table instead of submitting a second one.
        let job = match self.live_jobs(t).last() {
            Some(live) => live,
            None => {
                self.jobs.push(SimJob {
                    table: t,
                    generation: Some(generation),
                    id: job_id_for(table, generation),
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
            generation,
            job,
        });
    }

    /// The launcher carries out a stop.
    fn react_stop(&mut self, table: &str, job_id: &JobId, reason: StopReason) {
        let t = table_index(table);
        // A stop asked for again after a failure carries out a decision taken before (lag may have come, or
        // the table's other job ended, since).
        let retried = self.jobs.iter().any(|j| j.id == *job_id && j.stop_failed);
        if reason == StopReason::Idle && self.lag[t].is_some_and(|l| l > 0) && !retried {
            self.violation(format!("idle stop of {table} while lag is {:?}", self.lag[t]));
        }
        let live = self.live_jobs(t).any(|i| self.jobs[i].id == *job_id);
        if reason == StopReason::Duplicate && live && !retried {
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

    pub(crate) fn advance_to(&mut self, target: u64) {
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

    /// A report of one job as Flink lists it: without a generation, which the policy's own pins tell.
    pub(crate) fn report(&mut self, i: usize, state: JobState) {
        self.report_as(i, state, false);
    }

    /// A report of one job, carrying the generation of the start that submitted it when `with_generation` (as the
    /// launcher's answer does), else none.
    pub(crate) fn report_as(&mut self, i: usize, state: JobState, with_generation: bool) {
        self.jobs[i].reported = true;
        let job = &self.jobs[i];
        self.feed(Input::JobState(JobObservation {
            table: TABLES[job.table].to_owned(),
            job_id: job.id.clone(),
            generation: job.generation.filter(|_| with_generation),
            state,
        }));
    }

    pub(crate) fn set_state(&mut self, i: usize, state: JobState) {
        self.jobs[i].state = state.clone();
        self.jobs[i].states.push(state);
    }

    pub(crate) fn end(&mut self, i: usize, clean: bool, state: JobState) {
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
    pub(crate) fn start_results(&mut self, table: Option<usize>, which: Option<u8>) {
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
}

/// A job an earlier sidecar process left behind: running, or ended (FINISHED, FAILED, CANCELED).
pub(crate) fn run(knobs: &Knobs, preexisting: &[(usize, u8)], steps: &[Step]) -> Sim {
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
