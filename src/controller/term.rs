//! Only the leader acts. A standby keeps watching (the watcher runs outside the loop), reads lag and health as a
//! leader does, and remembers each table's latest activity and lag, but its policy is given nothing: it starts,
//! stops and cancels nothing. It lists Flink's jobs at the reconcile interval, read-only: the listing feeds Flink's
//! health (a standby that never asked Flink would report it down and fire the alert on `cdc_dependency_up`), and
//! goes no further.
//!
//! Taking over is the start-up path: a fresh policy whose launch generations are pinned from the take-over time
//! (so a new term never reuses a job id of an earlier term of this process), a listing at once that adopts the
//! running jobs, then what the standby remembered (drift, lag, and the activity still within the table's idle
//! timeout). Losing the lead aborts every launcher call in flight at once (each request that changes Flink is
//! refused by the launcher's guard anyway), forgets the policy, publishes and logs once.

use std::collections::BTreeMap;

use tokio::sync::watch;

use super::RunLoop;
use super::effects::InFlight;
use crate::flink::Launcher;
use crate::lease::{Leadership, Role};
use crate::model::Millis;
use crate::policy::{Activity, Input, Operations, Policy, TableStatus};

/// The loop's leadership and what it remembers while it does not lead.
#[derive(Debug)]
pub(super) struct Term {
    /// This replica's identity and role.
    leadership: Leadership,
    /// Changes of role.
    role: watch::Receiver<Role>,
    /// False once nobody can change the role any more (a leadership without election).
    watching: bool,
    /// Whether the loop acts: the role it last took.
    pub(super) leading: bool,
    /// The launch generations' high bits of the current (or last) term: a new term's must be higher.
    term_start_ms: u64,
    /// The standby's memory, replayed once the take-over's listing has been fed.
    remembered: Remembered,
    /// The take-over's listing is in flight: the memory is replayed when it comes back.
    replay_pending: bool,
}

/// What a standby remembers of each managed table (so bounded by them): its activity since it stood by,
/// merged, when it last saw some, and its latest lag.
#[derive(Debug, Default)]
struct Remembered {
    activity: BTreeMap<String, (Activity, Millis)>,
    lag: BTreeMap<String, u64>,
}

impl Term {
    /// A leader for good: a sidecar without leader election, its first term from the process's start.
    pub(super) fn always(process_start_ms: u64) -> Term {
        Term::new(Leadership::always_leader("cdc-orchestrator"), process_start_ms)
    }

    /// The term of `leadership`'s role now; a leader's from `process_start_ms`.
    pub(super) fn new(leadership: Leadership, process_start_ms: u64) -> Term {
        let role = leadership.subscribe();
        let leading = role.borrow().is_leader();
        Term {
            leadership,
            role,
            watching: true,
            leading,
            term_start_ms: process_start_ms,
            remembered: Remembered::default(),
            replay_pending: false,
        }
    }

    /// The role's next change: `true` when the role may have changed, `false` when it never will again.
    pub(super) async fn changed(&mut self) -> bool {
        if !self.watching {
            return std::future::pending().await;
        }
        let changed = self.role.changed().await.is_ok();
        self.watching = changed;
        changed
    }

    /// Who leads, when known and not this replica.
    pub(super) fn leader(&self) -> Option<String> {
        match self.leadership.role() {
            Role::Standby { leader } => leader,
            _ => None,
        }
    }
}

impl<L: Launcher + 'static> RunLoop<L> {
    /// Acts only while `leadership` says this replica leads ([`Leadership::always_leader`] unless set: a
    /// sidecar without election). Built as a standby, the loop starts nothing until it takes over.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.term = Term::new(leadership, self.clock.origin_unix_ms);
        if !self.term.leading {
            self.publish();
        }
        self
    }

    /// The role may have changed: take over, or stand by.
    pub(super) fn on_role_change(&mut self) {
        let role = self.term.role.borrow_and_update().clone();
        match (self.term.leading, role.is_leader()) {
            (false, true) => self.take_over(),
            (true, false) => self.stand_by(),
            _ => {}
        }
    }

    /// The start-up path, from the take-over on: a fresh policy pinning job ids from now, a listing at once, and
    /// the remembered activity once the listing is in.
    fn take_over(&mut self) {
        let start = self.clock.now().0.max(self.term.term_start_ms.saturating_add(1));
        self.term.term_start_ms = start;
        let settings = self.policy.settings().clone().with_process_start(start);
        self.policy = Policy::new(settings);
        self.inputs.clear();
        // A standby's listing in flight was asked for before the take-over: a fresh one is asked for instead.
        self.in_flight.tasks.abort_all();
        self.in_flight = InFlight::default();
        self.term.leading = true;
        self.term.replay_pending = true;
        tracing::info!(identity = %self.term.leadership.identity(), "leading: adopting Flink's running jobs");
        self.spawn_listing();
        self.publish();
    }

    /// Stops acting at once: every launcher call in flight is aborted, the policy forgotten.
    fn stand_by(&mut self) {
        let aborted = self.in_flight.tasks.len();
        self.in_flight.tasks.abort_all();
        self.in_flight = InFlight::default();
        self.inputs.clear();
        for status in self.policy.statuses() {
            self.telemetry.metrics.job_state(&status.table, None);
        }
        self.policy = Policy::new(self.policy.settings().clone());
        self.term.leading = false;
        self.term.replay_pending = false;
        self.term.remembered = Remembered::default();
        let leader = self.term.leader();
        tracing::warn!(
            identity = %self.term.leadership.identity(),
            leader = leader.as_deref().unwrap_or("unknown"),
            aborted,
            "no longer the leader: stopped acting on Flink"
        );
        self.publish();
    }

    /// A standby's inputs: remembered (activity and lag), or left to what keeps them (drift, in the drift book);
    /// the policy gets none of them.
    pub(super) fn remember(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Activity(activity) if self.managed.contains(&activity.table) => {
                let remembered = &mut self.term.remembered.activity;
                match remembered.get_mut(&activity.table) {
                    Some((merged, at)) => {
                        merge(merged, activity);
                        *at = now;
                    }
                    None => {
                        remembered.insert(activity.table.clone(), (activity, now));
                    }
                }
            }
            Input::Lag { table, lag } if self.managed.contains(&table) => {
                self.term.remembered.lag.insert(table, lag);
            }
            _ => {}
        }
    }

    /// After the take-over's listing (fed, or failed: a start adopts a live job anyway): the drift, lag and
    /// activity the standby saw, activity only while within the table's idle timeout (older, a job started for
    /// it would only be stopped as idle).
    pub(super) fn replay_remembered(&mut self) {
        if !std::mem::take(&mut self.term.replay_pending) {
            return;
        }
        let now = self.clock.now();
        let remembered = std::mem::take(&mut self.term.remembered);
        let drifts = self.managed.iter().filter_map(|table| {
            let drift = self.drift.current(table)?.clone();
            Some(Input::SchemaDrift {
                table: table.clone(),
                drift: Some(drift),
            })
        });
        let mut inputs: Vec<Input> = drifts.collect();
        inputs.extend(remembered.lag.into_iter().map(|(table, lag)| Input::Lag { table, lag }));
        let policy = &self.policy.settings().policy;
        inputs.extend(remembered.activity.into_iter().filter_map(|(table, (activity, at))| {
            (now.since(at) < policy.for_table(&table).idle_timeout).then_some(Input::Activity(activity))
        }));
        tracing::info!(inputs = inputs.len(), "leading: replaying what the standby saw");
        self.feed_all(inputs);
    }

    /// What a standby shows of the tables it has seen: their last activity and lag; no job.
    pub(super) fn standby_statuses(&self) -> BTreeMap<String, TableStatus> {
        let seen = self
            .term
            .remembered
            .activity
            .keys()
            .chain(self.term.remembered.lag.keys());
        seen.map(|table| {
            let mut status = self.policy.unseen_status(table);
            if let Some((activity, at)) = self.term.remembered.activity.get(table) {
                status.last_record_at = Some(*at);
                status.newest_record_ts_ms = activity.newest_ts_ms;
            }
            status.lag = self.term.remembered.lag.get(table).copied();
            status.schema_drift = self.drift.current(table).cloned();
            (table.clone(), status)
        })
        .collect()
    }
}

/// `later` added to `merged`: records summed, operations summed (unknown if either is), the newest timestamp.
fn merge(merged: &mut Activity, later: Activity) {
    merged.records = merged.records.saturating_add(later.records);
    merged.newest_ts_ms = merged.newest_ts_ms.max(later.newest_ts_ms);
    merged.ops = match (std::mem::take(&mut merged.ops), later.ops) {
        (Operations::Sampled(mut ops), Operations::Sampled(more)) => {
            for (op, n) in more {
                let count: &mut u64 = ops.entry(op).or_insert(0);
                *count = count.saturating_add(n);
            }
            Operations::Sampled(ops)
        }
        _ => Operations::Unknown,
    };
}
