//! The controller: the run loop between watcher, policy and launcher.
//!
//! Watcher observations, job listings and operator commands go into the policy; its actions go to the launcher;
//! outcomes come back as policy inputs. The loop decides nothing itself: what a listing means, which job a start
//! pinned, what unknown operations count as are the policy's. What it owns is carrying actions out (one launcher
//! call per task, so a slow Flink never stalls watching; at most one stop per job and one listing at a time),
//! which tables the sidecar manages ([`managed_tables`]: only their jobs reach the policy, and no call goes out
//! for any other), and publishing. One task owns the policy, so decisions are serial and the policy needs no
//! locks. The loop is generic over the [`Launcher`] trait, so tests drive it with a launcher of their own.
//!
//! - `run_loop`: the loop, its input queue, timers, publishing and shutdown.
//! - `effects`: launcher calls as tasks, and their outcomes fed back to the policy.
//! - `observe`: watcher events as policy inputs.
//! - `term`: only the leader acts; a standby remembers what it sees and replays it when it takes over.
//! - `control`: the operator commands the HTTP server forwards, and the table snapshots it reads.
//! - `reload`: re-reading the templates and the policy settings that may change at run time (SIGHUP,
//!   `POST /reload`), checked as start-up does and swapped in at once ([`Reloader`]).
//! - [`drift`]: each table's schema drift, judged from the sampled records' fields against the columns its
//!   template declares for the Kafka source.
//!
//! Owns the run loop and the ownership rule ([`managed_tables`]). May import: model, telemetry, config, policy,
//! flink, kafka (the watcher's events), sql (rendering a start's statements), lease (whether it may act); never
//! http or the composition root ([`crate::app`]), which wires it to them.

mod control;
pub mod drift;
mod effects;
mod observe;
mod reload;
mod run_loop;
mod term;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

pub use control::{ControlCommand, ControlError, ControlRequest, TablesSnapshot};
pub use reload::{RELOADABLE_POLICY_KEYS, ReloadError, ReloadRefused, ReloadReport, ReloadRequest, Reloader};

use crate::config::{FlinkConfig, PolicyConfig};
use crate::flink::Launcher;
use crate::policy::{Input, Policy, TableState, TableStatus};
use crate::telemetry::Seen;
use effects::{InFlight, JobSql};
use observe::Observer;
use run_loop::{Clock, Telemetry};

/// The run loop: it feeds the policy and carries out the policy's actions, deciding nothing itself.
pub struct RunLoop<L: Launcher + 'static> {
    /// Every decision.
    policy: Policy,
    /// Inputs waiting for the policy: what an action's outcome feeds back is queued here, so the policy takes one
    /// input at a time and carrying out an action never re-enters it.
    inputs: VecDeque<Input>,
    /// The time every input is given.
    clock: Clock,
    /// What carries out starts, stops and listings.
    launcher: Arc<L>,
    /// What a start submits: the templates and what fills their credential placeholders.
    sql: JobSql,
    /// Launcher calls in flight.
    in_flight: InFlight,
    /// What the loop publishes: metrics, health, the tables' snapshot.
    telemetry: Telemetry,
    /// Watcher events into policy inputs.
    observer: Observer,
    /// Each table's schema drift.
    drift: drift::DriftBook,
    /// The tables this sidecar manages ([`managed_tables`]): the only ones an operator may address, whose listed
    /// jobs reach the policy, and whose jobs are ever started, stopped or cancelled.
    managed: Arc<BTreeSet<String>>,
    /// `flink.reconcile_interval`, `flink.shutdown_timeout` and `flink.stop_jobs_on_shutdown`.
    flink: FlinkConfig,
    /// Shutting down: no new starts, stops still go out (and are retried) until the shutdown timeout.
    shutting_down: bool,
    /// Reloads prepared by the [`Reloader`], when one was asked for ([`RunLoop::reloader`]).
    reloads: Option<tokio::sync::mpsc::Receiver<reload::Reload>>,
    /// Whether this replica leads, so acts ([`RunLoop::with_leadership`]), and what it remembers while not.
    term: term::Term,
}

impl<L: Launcher + 'static> std::fmt::Debug for RunLoop<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLoop")
            .field("tasks", &self.in_flight.tasks.len())
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

/// The tables this sidecar manages: those with a SQL template (`templated`) that `policy.include` and
/// `policy.exclude` admit ([`PolicyConfig::manages`]). The one ownership rule: a job named `cdc-<table>` is the
/// sidecar's only if its table is one of these; any other is reported, never adopted, stopped or cancelled, and
/// makes no table in the policy, `GET /tables` or the metrics. Flink's job list, which anyone who can submit a
/// job writes, never adds to it.
pub fn managed_tables(templated: impl IntoIterator<Item = String>, policy: &PolicyConfig) -> BTreeSet<String> {
    templated.into_iter().filter(|table| policy.manages(table)).collect()
}

/// What the savings book reads of a policy status: whether a job exists (starting, running or stopping, each
/// holding Flink resources) and since when.
fn savings_seen(status: &TableStatus) -> Seen<'_> {
    Seen {
        table: &status.table,
        has_job: matches!(
            status.state,
            TableState::Starting | TableState::Running | TableState::Stopping
        ),
        job_since: status.job_since,
    }
}
