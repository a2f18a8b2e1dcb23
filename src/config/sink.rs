//! The `[sink]` section: which kind of sink the per-table jobs write to, and the JDBC sink's connection.

use serde::{Deserialize, Serialize};

use super::check::Checks;
use super::{ConfigError, Section};

/// Which kind of sink the per-table templates render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkKind {
    /// An Iceberg v2 upsert table in the REST catalog of the `[iceberg]` section.
    #[default]
    Iceberg,
    /// A database table through Flink's JDBC connector (`[sink.jdbc]`), upserted on the primary key.
    Jdbc,
}

impl SinkKind {
    /// The name the configuration and the templates (`{{ sink }}`) use.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Iceberg => "iceberg",
            SinkKind::Jdbc => "jdbc",
        }
    }
}

/// The `[sink]` section: where the per-table jobs write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// The kind of sink; Iceberg unless set.
    pub kind: SinkKind,
    /// The JDBC sink's connection, used when `kind = "jdbc"`.
    pub jdbc: JdbcSinkConfig,
}

/// The `[sink.jdbc]` section: the database the JDBC sink writes to, as Flink reaches it.
///
/// The password is not here: rendering reads it from the environment (`SINK_JDBC_PASSWORD`, see `sql`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JdbcSinkConfig {
    /// JDBC URL of the database, e.g. `jdbc:postgresql://db:5432/warehouse`.
    pub url: String,
    /// The database table each source table is written to; `{table}` is replaced by the table's name.
    pub table_name: String,
    /// The database user.
    pub username: String,
}

impl Default for JdbcSinkConfig {
    fn default() -> Self {
        Self {
            url: "jdbc:postgresql://127.0.0.1:5432/university".to_owned(),
            table_name: "{table}".to_owned(),
            username: "postgres".to_owned(),
        }
    }
}

impl JdbcSinkConfig {
    /// The database table that `table` is written to.
    pub fn table_for(&self, table: &str) -> String {
        self.table_name.replace("{table}", table)
    }
}

impl Section for SinkConfig {
    const KEY: &'static str = "sink";

    /// The JDBC keys are checked only when the sink is JDBC: unused, they may hold anything.
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.kind != SinkKind::Jdbc {
            return;
        }
        let jdbc = &self.jdbc;
        if !jdbc.url.starts_with("jdbc:") || jdbc.url.contains(char::is_whitespace) {
            errors.invalid("sink.jdbc.url", &jdbc.url, "expected a jdbc: URL");
        }
        if !jdbc.table_name.contains("{table}") {
            errors.invalid("sink.jdbc.table_name", &jdbc.table_name, "must contain {table}");
        }
        errors.not_blank("sink.jdbc.username", &jdbc.username);
    }
}
