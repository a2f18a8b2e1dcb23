//! The Kafka source's options, the same for every table and written here once: the templates say
//! `CREATE TEMPORARY TABLE <source> ( <columns> ) WITH ( {{ source_options }} )`, and `[kafka]` fills them in.
//!
//! The source reads the table's topic (`kafka.topic_template`) from `kafka.bootstrap` as the table's consumer
//! group (`kafka.group_template`, whose lag the sidecar reads). It resumes from the group's committed offsets, and
//! a first run, with none committed, starts at the beginning of the topic. Records are Debezium's envelope
//! (`before`, `after`, `op`) as JSON without schemas, read as a changelog.

use minijinja::Value;

use super::with_options;
use crate::config::Config;

/// The placeholder whose value holds the Kafka source's options.
pub(super) const SOURCE_OPTIONS: &str = "source_options";

/// The source placeholder of `table` under `config`.
pub(super) fn variables(config: &Config, table: &str) -> Vec<(&'static str, Value)> {
    let kafka = &config.kafka;
    let options = with_options(&[
        ("connector", "kafka"),
        ("topic", &kafka.topic_for(table)),
        ("properties.bootstrap.servers", &kafka.bootstrap.join(",")),
        ("properties.group.id", &kafka.group_for(table)),
        ("scan.startup.mode", "group-offsets"),
        ("properties.auto.offset.reset", "earliest"),
        ("format", "debezium-json"),
        ("debezium-json.schema-include", "false"),
    ]);
    // SQL text whose values `with_options` has escaped: marked safe, so the formatter passes it unchanged.
    vec![(SOURCE_OPTIONS, Value::from_safe_string(options))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_name_the_tables_topic_and_group_escaped() {
        let mut config = Config::default();
        config.kafka.bootstrap = vec!["a:9092".to_owned(), "o'b:9093".to_owned()];
        let variables = variables(&config, "room");
        let [(name, options)] = variables.as_slice() else {
            panic!("one placeholder: {variables:?}");
        };
        assert_eq!(*name, SOURCE_OPTIONS);
        assert!(options.is_safe());
        let options = options.to_string();
        assert!(options.starts_with("    'connector' = 'kafka',\n"), "{options}");
        assert!(
            options.contains("    'topic' = 'university-server.public.room',\n"),
            "{options}"
        );
        assert!(
            options.contains("    'properties.bootstrap.servers' = 'a:9092,o''b:9093',\n"),
            "{options}"
        );
        assert!(
            options.contains("    'properties.group.id' = 'cdc-room',\n"),
            "{options}"
        );
        assert!(
            options.ends_with("    'debezium-json.schema-include' = 'false'"),
            "{options}"
        );
    }
}
