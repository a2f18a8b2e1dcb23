//! What the watcher reports, turned into policy inputs: changes of tables with a SQL template, lag, and the
//! broker's health.

use std::collections::BTreeMap;

use super::RunLoop;
use crate::decoder::Op;
use crate::flink::Launcher;
use crate::http::metrics::{TableLabels, inc_saturating};
use crate::kafka::watcher::{TableActivity, WatchEvent};
use crate::policy::{Activity, Input};

impl<L: Launcher + 'static> RunLoop<L> {
    pub(super) fn on_observation(&mut self, observation: WatchEvent) {
        match observation {
            WatchEvent::Activity(seen) => self.on_activity(seen),
            WatchEvent::Lag { table, lag } if !self.templated.contains(&table) => {
                tracing::trace!(%table, lag, "lag of a table without a SQL template ignored");
            }
            WatchEvent::Lag { table, lag } => {
                self.metrics
                    .table_lag
                    .get_or_create(&TableLabels { table: table.clone() })
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
                // Simulated jobs consume nothing, so their group's lag says nothing about them: a dry run treats
                // its jobs as caught up (and must never commit offsets for the real jobs' groups to pretend).
                if !self.launcher.simulated() {
                    self.feed(Input::Lag { table, lag });
                }
            }
            WatchEvent::BrokerUp => self.health.kafka_ok(),
            WatchEvent::BrokerDown { error } => self.health.kafka_failed(error),
            WatchEvent::SampleTimeouts { partitions } => self.health.kafka_sample_timeouts(&partitions),
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
        inc_saturating(
            &self
                .metrics
                .new_records
                .get_or_create(&TableLabels { table: table.clone() }),
            records,
        );
        if !self.templated.contains(&table) {
            // Nothing could start it: it must not queue, spend a start token or show up as failing.
            if self.untemplated_warned.insert(table.clone()) {
                tracing::warn!(%table, "changes on a table without a SQL template are ignored: it never \
                    starts (add tables/<table>.sql under flink.sql_dir)");
            }
            return;
        }
        let ops_seen = self.operations_seen(&table, &ops, unknown_ops);
        // Records whose operation is unknown may be any change: let them all count, so the operation
        // filter never drops a change it could not see.
        let ops = if unknown_ops > 0 { BTreeMap::new() } else { ops };
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
                .last_ops
                .get(table)
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
        }
        let seen = letters.join("/");
        self.last_ops.insert(table.to_owned(), seen.clone());
        seen
    }
}
