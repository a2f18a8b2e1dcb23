//! The one rule between tables and topics: `kafka.topic_template` names a table's topic (`{table}` filled in),
//! the same template read backwards names a topic's table, and `kafka.topic_pattern` must watch every topic the
//! template names (`check` refuses a configuration where it does not). The config's `topic_for`/`table_of_topic`,
//! and through them `check`, the watcher, lag, routing and the SQL templates, ask here; the `decode` command's
//! guess for a topic read without a configuration is here too, so that no other place splits topic names.

use crate::config::is_table_name;

/// What `kafka.topic_template` (and `kafka.group_template`) replace with the table name.
pub const PLACEHOLDER: &str = "{table}";

/// The topic of `table` under `template`.
pub fn topic_for(template: &str, table: &str) -> String {
    template.replace(PLACEHOLDER, table)
}

/// The table of `topic` under `template`: the part of the name where `{table}` stands, if the rest matches and it
/// is a valid table name. `template` holds `{table}` once (checked by the config's validation).
pub fn table_of_topic<'t>(template: &str, topic: &'t str) -> Option<&'t str> {
    let (prefix, suffix) = template.split_once(PLACEHOLDER)?;
    let table = topic.strip_prefix(prefix)?.strip_suffix(suffix)?;
    is_table_name(table).then_some(table)
}

/// The `decode` command's guess at the table of a record read without a configuration: the topic's last
/// `.`-separated segment, as in Debezium's default `<prefix>.<schema>.<table>`. Only for display; the sidecar
/// itself names tables with [`table_of_topic`].
pub fn guess_table(topic: &str) -> &str {
    topic.rsplit('.').next().unwrap_or(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_names_topics_and_reads_them_back() {
        let template = "cdc.{table}.v1";
        assert_eq!(topic_for(template, "room"), "cdc.room.v1");
        assert_eq!(
            table_of_topic(template, &topic_for(template, "student_fee")),
            Some("student_fee")
        );
        for none in ["cdc.room.v2", "cdc..v1", "cdc.a-b.v1", "other.room.v1"] {
            assert_eq!(table_of_topic(template, none), None, "{none}");
        }
        assert_eq!(table_of_topic("no placeholder", "no placeholder"), None);
    }

    #[test]
    fn the_display_guess_is_the_last_segment() {
        assert_eq!(guess_table("university-server.public.faculty"), "faculty");
        assert_eq!(guess_table("plain"), "plain");
    }
}
