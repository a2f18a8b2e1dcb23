//! The sink's part of a table's statements, the same for every table and written here once: the templates say
//! `{{ sink_create }} ( <columns> ) WITH ( {{ sink_options }} )` and `INSERT INTO {{ sink_table }}`, and
//! `[sink] kind` chooses what these become.
//!
//! - Iceberg: `CREATE TABLE IF NOT EXISTS` a v2 upsert table in the catalog that `setup.sql` creates.
//! - JDBC: a temporary table over the database table (which must exist), written by Flink's JDBC connector.

use minijinja::Value;

use super::with_options;
use crate::config::{Config, SinkKind};

/// The placeholder whose value holds the sink's options, credentials included.
pub(super) const SINK_OPTIONS: &str = "sink_options";

/// The credential placeholders (see [`super::CREDENTIALS`]) that [`SINK_OPTIONS`] carries for `sink`: a
/// template that uses `{{ sink_options }}` needs them as if it used them itself.
pub(super) fn carried_credentials(sink: SinkKind) -> &'static [&'static str] {
    match sink {
        SinkKind::Jdbc => &["jdbc_password"],
        SinkKind::Iceberg => &[],
    }
}

/// The sink placeholders of `table` under `config`. `credential` gives a carried credential's value by its
/// placeholder; when one is missing, `sink_options` is left out (the credential check names what is missing).
pub(super) fn variables<'c>(
    config: &Config,
    table: &str,
    credential: impl Fn(&str) -> Option<&'c str>,
) -> Vec<(&'static str, Value)> {
    // Identifiers go through the template's formatter like any value (it doubles single quotes); the options
    // are SQL text, so each value is escaped here and the whole is marked safe to pass unchanged.
    let (table_name, create, options) = match config.sink.kind {
        SinkKind::Iceberg => {
            let name = format!("`iceberg`.`{}`.`{table}`", config.iceberg.database);
            let create = format!("CREATE TABLE IF NOT EXISTS {name}");
            let options = with_options(&[("format-version", "2"), ("write.upsert.enabled", "true")]);
            (name, create, Some(options))
        }
        SinkKind::Jdbc => {
            let name = format!("`default_catalog`.`default_database`.`cdc_sink_{table}`");
            let create = format!("DROP TEMPORARY TABLE IF EXISTS {name};\n\nCREATE TEMPORARY TABLE {name}");
            let jdbc = &config.sink.jdbc;
            let remote = jdbc.table_for(table);
            let options = credential("jdbc_password").map(|password| {
                with_options(&[
                    ("connector", "jdbc"),
                    ("url", &jdbc.url),
                    ("table-name", &remote),
                    ("username", &jdbc.username),
                    ("password", password),
                ])
            });
            (name, create, options)
        }
    };
    let mut variables = vec![
        ("sink_table", Value::from(table_name)),
        ("sink_create", Value::from(create)),
    ];
    if let Some(options) = options {
        variables.push((SINK_OPTIONS, Value::from_safe_string(options)));
    }
    variables
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'v>(variables: &'v [(&str, Value)], name: &str) -> Option<&'v Value> {
        variables.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    #[test]
    fn jdbc_options_carry_the_password_escaped_and_need_it() {
        let mut config = Config::default();
        config.sink.kind = SinkKind::Jdbc;
        config.sink.jdbc.username = "o'brien".to_owned();
        let with = variables(&config, "room", |p| (p == "jdbc_password").then_some("pw'1"));
        let options = value(&with, SINK_OPTIONS).map(ToString::to_string).unwrap_or_default();
        assert!(options.contains("    'username' = 'o''brien',\n"), "{options}");
        assert!(options.ends_with("    'password' = 'pw''1'"), "{options}");
        assert!(value(&with, SINK_OPTIONS).is_some_and(Value::is_safe));
        let without = variables(&config, "room", |_| None);
        assert!(value(&without, SINK_OPTIONS).is_none());
        assert!(value(&without, "sink_table").is_some());
        assert_eq!(carried_credentials(SinkKind::Jdbc), ["jdbc_password"]);
        assert!(carried_credentials(SinkKind::Iceberg).is_empty());
    }
}
