//! The rules that name things after a table, and read the table back from the name.
//!
//! Topics: `kafka.topic_template` names a table's topic (`{table}` filled in), the same template read backwards
//! names a topic's table, and `kafka.topic_pattern` must watch every topic the template names (`check` refuses a
//! configuration where it does not). The config's `topic_for`/`table_of_topic`, and through them `check`, the
//! watcher, lag, routing and the SQL templates, ask here; the `decode` command's guess for a topic read without a
//! configuration is here too, so that no other place splits topic names.
//!
//! Jobs: every job this sidecar submits is named `cdc-<table>` ([`job_name`]); a listed job is the sidecar's kind
//! only when its name reads back to a table name ([`table_of_job`]).

use super::TableName;

/// Prefix of every job name this sidecar submits; the rest of the name is the table.
pub const JOB_NAME_PREFIX: &str = "cdc-";

/// The job name of a table.
pub fn job_name(table: &str) -> String {
    format!("{JOB_NAME_PREFIX}{table}")
}

/// The table a job name belongs to, when the name is `cdc-<table>` with a valid table name. Flink's job list is
/// written by anyone who can submit a job, so this is where a listed job's table is parsed.
pub fn table_of_job(name: &str) -> Option<TableName> {
    TableName::parse(name.strip_prefix(JOB_NAME_PREFIX)?).ok()
}

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
    TableName::is_valid(table).then_some(table)
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
    fn job_names_map_back_to_tables() {
        assert_eq!(table_of_job(&job_name("faculty")).as_deref(), Some("faculty"));
        assert_eq!(table_of_job("cdc-bad-name"), None);
        assert_eq!(table_of_job("insert-into_default_catalog"), None);
        assert_eq!(table_of_job("cdc-"), None);
    }

    #[test]
    fn the_display_guess_is_the_last_segment() {
        assert_eq!(guess_table("university-server.public.faculty"), "faculty");
        assert_eq!(guess_table("plain"), "plain");
    }
}
