//! What the watcher reports, turned into policy inputs: changes of tables with a SQL template, lag, and the
//! broker's health.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::RunLoop;
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
        self.feed(Input::Activity(activity));
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
