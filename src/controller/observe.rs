//! What the watcher reports, turned into policy inputs: changes of tables with a SQL template, lag, and the
//! broker's health.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::RunLoop;
use super::drift::DriftChange;
use crate::flink::Launcher;
use crate::kafka::watcher::{TableActivity, WatchEvent};
use crate::model::Op;
use crate::policy::{Activity, Input, Operations};

/// What turning watcher events into policy inputs remembers.
#[derive(Debug)]
pub(super) struct Observer {
    /// Tables with a SQL template: the only ones whose changes and lag the policy hears of from the watcher.
    pub(super) templated: BTreeSet<String>,
    /// Tables without a template whose changes were reported once (the watcher bounds how many tables exist).
    pub(super) untemplated_warned: BTreeSet<String>,
    /// The operations the last sample of each table found, for the log line of activity counted from watermarks
    /// alone.
    pub(super) last_ops: HashMap<String, String>,
}

impl Observer {
    /// An observer of the tables in `templated`.
    pub(super) fn new(templated: BTreeSet<String>) -> Self {
        Self {
            templated,
            untemplated_warned: BTreeSet::new(),
            last_ops: HashMap::new(),
        }
    }
}

impl<L: Launcher + 'static> RunLoop<L> {
    pub(super) fn on_observation(&mut self, observation: WatchEvent) {
        match observation {
            WatchEvent::Activity(seen) => self.on_activity(seen),
            WatchEvent::Lag { table, lag } if !self.observer.templated.contains(&table) => {
                tracing::trace!(%table, lag, "lag of a table without a SQL template ignored");
            }
            WatchEvent::Lag { table, lag } => {
                self.telemetry.metrics.lag_read(&table, lag);
                // Simulated jobs consume nothing, so their group's lag says nothing about them: a dry run treats
                // its jobs as caught up (and must never commit offsets for the real jobs' groups to pretend).
                if !self.launcher.simulated() {
                    self.feed(Input::Lag { table, lag });
                }
            }
            WatchEvent::BrokerUp => self.telemetry.health.kafka_ok(),
            WatchEvent::BrokerDown { error } => self.telemetry.health.kafka_failed(error),
            WatchEvent::SampleTimeouts { partitions } => self.telemetry.health.kafka_sample_timeouts(&partitions),
            WatchEvent::TokenFailure { failure } => self.telemetry.health.kafka_token_failure(failure.as_deref()),
        }
    }

    fn on_activity(&mut self, seen: TableActivity) {
        let TableActivity {
            table,
            records,
            ops,
            unknown_ops,
            newest_ts_ms,
            fields,
            ..
        } = seen;
        self.telemetry.metrics.records_seen(&table, records);
        if !self.observer.templated.contains(&table) {
            // Nothing could start it: it must not queue, spend a start token or show up as failing.
            if self.observer.untemplated_warned.insert(table.clone()) {
                tracing::warn!(%table, "changes on a table without a SQL template are ignored: it never \
                    starts (add tables/<table>.sql under flink.sql_dir)");
            }
            return;
        }
        let ops_seen = self.operations_seen(&table, &ops, unknown_ops);
        // No sampled operation (an advance counted from watermarks alone) or a sampled record without one: what
        // the records are is not known.
        let ops = if unknown_ops > 0 || ops.is_empty() {
            Operations::Unknown
        } else {
            Operations::Sampled(ops)
        };
        let activity = Activity {
            table,
            records,
            ops,
            newest_ts_ms,
        };
        tracing::info!(
            table = %activity.table,
            records = activity.records,
            "Detected {ops_seen} operation on table: {}",
            activity.table
        );
        // The drift first, so that a table whose drift holds its starts does not start for these records.
        let now = self.clock.now();
        let drift_input = match fields.map(|fields| self.drift.observe(&activity.table, fields, now)) {
            Some(Some(change)) => Some(self.report_drift(change)),
            // A sampled table's series exists from its first sample on (0 without drift), and only then: a table
            // never sampled has no series, as with every per-table metric.
            Some(None) if self.drift.is_watched(&activity.table) => {
                let (added, missing) = drift_counts(self.drift.current(&activity.table));
                self.telemetry.metrics.schema_drift(&activity.table, added, missing);
                None
            }
            _ => None,
        };
        self.feed_all(drift_input.into_iter().chain([Input::Activity(activity)]));
    }

    /// The seam of a template reload: judges every table's drift again against `declared` (the new templates'
    /// [`crate::sql::Templates::declared_columns`]) and reports each change as a new sample's would be, so a drift
    /// the new templates resolve clears itself (metric, `/tables`, one log line, and the policy's hold lifted).
    pub fn replace_declared_columns(&mut self, declared: crate::sql::DeclaredColumns) {
        let now = self.clock.now();
        let changes = self.drift.replace_declared(declared, now);
        let inputs: Vec<Input> = changes.into_iter().map(|change| self.report_drift(change)).collect();
        self.feed_all(inputs);
    }

    /// Reports one change of a table's drift (a log line and the metric) and gives the policy's input for it.
    fn report_drift(&self, change: DriftChange) -> Input {
        change.log();
        let (added, missing) = drift_counts(change.now.as_ref());
        self.telemetry.metrics.schema_drift(&change.table, added, missing);
        Input::SchemaDrift {
            table: change.table,
            drift: change.now,
        }
    }

    /// The operations of one activity as the start log line names them (`c/u`, `unknown`): those sampled, or
    /// for an advance counted from watermarks alone (within `kafka.sample_interval`) those the table's last
    /// sample found, or `unknown` when there was none since start-up.
    fn operations_seen(&mut self, table: &str, ops: &BTreeMap<Op, u64>, unknown_ops: u64) -> String {
        let mut letters: Vec<&str> = ops.keys().map(|op| op.code()).collect();
        if unknown_ops > 0 {
            letters.push("unknown");
        }
        if letters.is_empty() {
            return self
                .observer
                .last_ops
                .get(table)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
        }
        let seen = letters.join("/");
        self.observer.last_ops.insert(table.to_owned(), seen.clone());
        seen
    }
}

/// The metric's counts of a drift: added fields (those with names too long to keep count as one more) and
/// missing columns; none without drift.
fn drift_counts(drift: Option<&crate::model::SchemaDrift>) -> (usize, usize) {
    drift.map_or((0, 0), |d| {
        (
            d.added.len().saturating_add(usize::from(d.unnamed_added > 0)),
            d.missing.len(),
        )
    })
}
