//! The controller: the run loop between watcher, policy and launcher.
//!
//! Watcher observations and operator commands go into the policy; its actions go to the launcher; outcomes come
//! back as policy inputs. One task owns the policy, so decisions are serial and the policy needs no locks;
//! launcher calls run as separate tasks so a slow Flink never stalls watching. The loop is generic over the
//! [`Launcher`] trait, so tests drive it with a launcher of their own.
//!
//! - `run_loop`: the loop, its input queue, timers, publishing and shutdown.
//! - `effects`: launcher calls as tasks, and their outcomes fed back to the policy.
//! - `observe`: watcher events as policy inputs.
//! - `control`: the operator commands the HTTP server forwards, and the table snapshots it reads.
//!
//! Owns the run loop and the ownership rule ([`managed_tables`]). May import: model, telemetry, config, policy,
//! flink, kafka (the watcher's events), sql (rendering a start's statements); never http or the composition root
//! ([`crate::app`]), which wires it to them.

mod control;
mod effects;
mod observe;
mod run_loop;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use control::{ControlCommand, ControlError, ControlRequest, TablesSnapshot};
// moved to telemetry (issue 25)
pub use crate::telemetry::Health;

use crate::config::{Config, PolicyConfig};
use crate::flink::{JobId, Launcher};
use crate::policy::{Input, Millis, Policy, TableState, TableStatus};
use crate::sql::{Credentials, Templates};
use crate::telemetry::{Metrics, Seen};
use effects::Outcome;
use run_loop::Clock;

/// The run loop: the policy, the launcher it drives, and what it publishes.
pub struct RunLoop<L: Launcher + 'static> {
    config: Config,
    clock: Clock,
    policy: Policy,
    launcher: Arc<L>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    tables: watch::Sender<TablesSnapshot>,
    /// Launcher calls in flight.
    tasks: JoinSet<Outcome>,
    /// Inputs waiting for the policy: what an action's outcome or a listing feeds back is queued here, so the
    /// policy takes one input at a time and carrying out an action never re-enters it.
    inputs: VecDeque<Input>,
    /// Jobs with a stop in flight, so no job gets two concurrent stops.
    stopping: BTreeSet<JobId>,
    /// Tables with a SQL template: the only ones whose changes and lag the policy hears of from the watcher.
    templated: BTreeSet<String>,
    /// The tables this sidecar manages ([`managed_tables`]): the only ones an operator may address, whose jobs are
    /// adopted, and whose jobs are ever stopped or cancelled.
    managed: Arc<BTreeSet<String>>,
    /// The live jobs of unmanaged tables in the last listing, each reported once when first seen.
    unmanaged_seen: HashSet<JobId>,
    /// The SQL templates, read and checked once at start-up.
    templates: Arc<Templates>,
    /// Tables without a template whose changes were reported once (the watcher bounds how many tables exist).
    untemplated_warned: BTreeSet<String>,
    /// The operations the last sample of each table found, for activity counted from watermarks alone.
    last_ops: HashMap<String, String>,
    /// The job ids this process pinned for its latest starts, per table: (policy generation, job id).
    pinned: HashMap<String, VecDeque<(u64, JobId)>>,
    /// What the templates' credential placeholders are filled with: the environment's values for a launcher
    /// that submits them, [`Credentials::redacted`] for a simulated one, which only logs its statements.
    credentials: Credentials,
    reconciling: bool,
    /// When the listing in flight was asked for.
    reconcile_requested_at: Millis,
    /// Shutting down: no new starts, stops still go out (and are retried) until the shutdown timeout.
    shutting_down: bool,
}

impl<L: Launcher + 'static> std::fmt::Debug for RunLoop<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLoop")
            .field("tasks", &self.tasks.len())
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
