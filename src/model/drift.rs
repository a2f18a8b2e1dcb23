//! A table's schema drift: the fields its records carry that its Kafka source does not declare, and the declared
//! columns they lack.

use serde::{Deserialize, Serialize};

use super::Millis;

/// How a table's records differ from the columns its template declares for its Kafka source (shown in
/// `GET /tables/<table>` as `schema_drift`, `null` while there is none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaDrift {
    /// Fields the records carry that the source does not declare (Flink drops them), sorted.
    pub added: Vec<String>,
    /// Declared columns absent from records' `after` (they read as NULL), sorted.
    pub missing: Vec<String>,
    /// Fields whose names are too long to keep (longer than any Postgres column's): added, name not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unnamed_added: u32,
    /// When this drift (these very lists) was first seen.
    pub since: Millis,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Whether a table under drift may start: `policy.on_schema_drift`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaDrift {
    /// Report the drift (metric, `/tables`, a warning line); the table runs as before.
    #[default]
    Alert,
    /// Report it, and start no job of the table until the drift is resolved (a running job stops when idle,
    /// with a savepoint, as always).
    Pause,
}
