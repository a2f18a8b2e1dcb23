//! The `[policy]` section: when to start and stop a table's job, with per-table overrides under
//! `[policy.tables.<name>]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{Checks, TABLE_NAME_RULE, check_fields};
use super::de::{list, optional_list, whole_u32};
use super::{ConfigError, Section};
use crate::model::{OnSchemaDrift, Op, TableName};

/// The `[policy]` section: defaults for every table, and per-table overrides under `[policy.tables.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Two starts of one table are at least this far apart.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A running job whose table saw no new records for this long (and has no lag) is stopped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Operations that count as changes; others are observed but start nothing.
    #[serde(deserialize_with = "list")]
    pub operations: Vec<Op>,
    /// A paused table never starts.
    pub paused: bool,
    /// Only these tables are managed; empty means every table seen.
    #[serde(deserialize_with = "list")]
    pub include: Vec<String>,
    /// These tables are never managed, even when included.
    #[serde(deserialize_with = "list")]
    pub exclude: Vec<String>,
    /// First retry delay after a failed start; doubles per failure.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Cap of the retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// After this many consecutive failed starts the table is reported as `failing`.
    #[serde(deserialize_with = "whole_u32")]
    pub failing_after: u32,
    /// What a table's schema drift does: `alert` (report it) or `pause` (also start no job until resolved).
    pub on_schema_drift: OnSchemaDrift,
    /// Per-table overrides, keyed by table name.
    pub tables: BTreeMap<String, TableOverrides>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            operations: Op::ALL.to_vec(),
            paused: false,
            include: Vec::new(),
            exclude: Vec::new(),
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(300),
            failing_after: 3,
            on_schema_drift: OnSchemaDrift::Alert,
            tables: BTreeMap::new(),
        }
    }
}

/// Settings of one table that differ from the `[policy]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableOverrides {
    /// Overrides `policy.cooldown`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Overrides `policy.idle_timeout`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Overrides `policy.operations`.
    #[serde(deserialize_with = "optional_list", skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Op>>,
    /// Overrides `policy.paused`.
    pub paused: Option<bool>,
    /// Overrides `policy.on_schema_drift`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_schema_drift: Option<OnSchemaDrift>,
}

/// The settings that apply to one table once overrides are merged into the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePolicy {
    /// Minimum time between two starts.
    pub cooldown: Duration,
    /// Quiet time after which a running job is stopped.
    pub idle_timeout: Duration,
    /// Operations that count as changes.
    pub operations: Vec<Op>,
    /// Whether starts are suspended.
    pub paused: bool,
    /// What schema drift does to the table's starts.
    pub on_schema_drift: OnSchemaDrift,
}

impl PolicyConfig {
    /// The effective settings of `table`.
    pub fn for_table(&self, table: &str) -> TablePolicy {
        let overrides = self.tables.get(table);
        let pick =
            |f: fn(&TableOverrides) -> Option<Duration>, default: Duration| overrides.and_then(f).unwrap_or(default);
        TablePolicy {
            cooldown: pick(|o| o.cooldown, self.cooldown),
            idle_timeout: pick(|o| o.idle_timeout, self.idle_timeout),
            operations: overrides
                .and_then(|o| o.operations.clone())
                .unwrap_or_else(|| self.operations.clone()),
            paused: overrides.and_then(|o| o.paused).unwrap_or(self.paused),
            on_schema_drift: overrides
                .and_then(|o| o.on_schema_drift)
                .unwrap_or(self.on_schema_drift),
        }
    }

    /// Settings that are allowed but probably not what was meant, each as one line naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut tables: Vec<(String, TablePolicy)> = vec![("policy".to_owned(), self.for_table(""))];
        tables.extend(
            self.tables
                .keys()
                .map(|name| (format!("policy.tables.{name}"), self.for_table(name))),
        );
        for (key, effective) in tables {
            if effective.cooldown > effective.idle_timeout {
                warnings.push(format!(
                    "{key}: cooldown ({}) is longer than idle_timeout ({}): a job stopped for being idle cannot \
                     start again until the cooldown since its last start has passed, so changes in between wait \
                     up to {} before their job starts",
                    humantime::format_duration(effective.cooldown),
                    humantime::format_duration(effective.idle_timeout),
                    humantime::format_duration(effective.cooldown.saturating_sub(effective.idle_timeout)),
                ));
            }
        }
        warnings
    }

    /// Whether the sidecar manages `table` at all (include/exclude lists).
    pub fn manages(&self, table: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|t| t == table);
        included && !self.exclude.iter().any(|t| t == table)
    }
}

impl Section for PolicyConfig {
    const KEY: &'static str = "policy";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_fields!(errors.positive, "policy", self: retry_initial_backoff, idle_timeout);
        if self.retry_max_backoff < self.retry_initial_backoff {
            errors.invalid(
                "policy.retry_max_backoff",
                &humantime::format_duration(self.retry_max_backoff).to_string(),
                "must not be below policy.retry_initial_backoff",
            );
        }
        check_fields!(errors.at_least_one, "policy", self: failing_after);
        errors.table_names("policy.include", &self.include);
        errors.table_names("policy.exclude", &self.exclude);
        if self.operations.is_empty() {
            errors.invalid("policy.operations", &"[]", "needs at least one operation");
        }
        for (name, overrides) in &self.tables {
            overrides.validate(name, errors);
        }
    }
}

impl TableOverrides {
    /// `[policy.tables.<name>]`: the name is a table's, and what it overrides is as valid as the default.
    fn validate(&self, name: &str, errors: &mut Vec<ConfigError>) {
        let key = format!("policy.tables.{name}");
        if TableName::parse(name).is_err() {
            errors.invalid(&key, &name, TABLE_NAME_RULE);
        }
        if let Some(idle) = self.idle_timeout {
            errors.positive(&format!("{key}.idle_timeout"), &idle);
        }
        if self.operations.as_ref().is_some_and(Vec::is_empty) {
            errors.invalid(format!("{key}.operations"), &"[]", "needs at least one operation");
        }
    }
}
