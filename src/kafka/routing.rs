//! Which table a change belongs to.
//!
//! Record content is hostile: anyone who can produce to a watched topic controls its `source.table`. So a table
//! comes from the topic, by the one rule `kafka.topic_template` states ([`KafkaConfig::table_of_topic`]); a
//! record's own table name is believed only on a topic configured as routed (`kafka.routed_topics`), and there
//! only when it is a valid table name that the sidecar can start (it has a SQL template, or is in
//! `policy.include`). Anything else counts as the topic's own table, or, on a topic that has none, is dropped.

use std::collections::BTreeSet;

use regex::RegexSet;

use crate::config::{Config, KafkaConfig};
use crate::model::TableName;

/// The trust rule, built once from the configuration: which topics' records may name their table, and which
/// names are believed there.
#[derive(Debug, Clone)]
pub struct Routing {
    routed: RegexSet,
    startable: BTreeSet<TableName>,
}

/// Where one sampled change is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resolved<'a> {
    /// The topic's own table (the record's name, if any, was not asked).
    Topic(&'a str),
    /// A routed topic's record named this table, and it is trusted.
    Named(&'a str),
    /// A routed topic's record named a table that is not trusted (`named`); counted as the topic's own `table`.
    Fallback {
        /// The topic's own table.
        table: &'a str,
        /// What the record said.
        named: &'a str,
    },
    /// No table: the topic has none by `kafka.topic_template`, and the record named none that is trusted.
    Dropped {
        /// What the record said, if anything.
        named: Option<&'a str>,
    },
}

impl<'a> Resolved<'a> {
    /// The table the change counts for, if any.
    pub fn table(&self) -> Option<&'a str> {
        match *self {
            Resolved::Topic(t) | Resolved::Named(t) | Resolved::Fallback { table: t, .. } => Some(t),
            Resolved::Dropped { .. } => None,
        }
    }

    /// The record's table name when it was not believed (for a rate-limited warning).
    pub fn untrusted(&self) -> Option<&'a str> {
        match *self {
            Resolved::Fallback { named, .. } | Resolved::Dropped { named: Some(named) } => Some(named),
            _ => None,
        }
    }
}

impl Routing {
    /// The rules of `kafka`, trusting routed records only for `startable` tables.
    pub fn new(kafka: &KafkaConfig, startable: impl IntoIterator<Item = String>) -> Result<Routing, regex::Error> {
        Ok(Routing {
            routed: kafka.routed_regex()?,
            startable: startable
                .into_iter()
                .filter_map(|t| TableName::try_from(t).ok())
                .collect(),
        })
    }

    /// The rules of `config` for the tables that have a SQL template (`templated`): those and `policy.include` are
    /// startable.
    pub fn with_templates(
        config: &Config,
        templated: impl IntoIterator<Item = String>,
    ) -> Result<Routing, regex::Error> {
        Routing::new(
            &config.kafka,
            templated.into_iter().chain(config.policy.include.iter().cloned()),
        )
    }

    /// Whether `topic` is one of `kafka.routed_topics`.
    pub fn is_routed(&self, topic: &str) -> bool {
        self.routed.is_match(topic)
    }

    /// Whether the sidecar can start a job for `table`.
    pub fn can_start(&self, table: &str) -> bool {
        self.startable.contains(table)
    }

    /// The table a change on `topic` counts for, given the topic's `own` table (by
    /// [`KafkaConfig::table_of_topic`]) and the table the record itself `named` (if it did).
    pub fn resolve<'a>(&self, topic: &str, own: Option<&'a str>, named: Option<&'a str>) -> Resolved<'a> {
        let Some(named) = named.filter(|_| self.is_routed(topic)) else {
            return own.map_or(Resolved::Dropped { named: None }, Resolved::Topic);
        };
        // Only parsed table names are startable, so a named table that is one is a valid name.
        if self.can_start(named) {
            return Resolved::Named(named);
        }
        match own {
            Some(table) if table == named => Resolved::Topic(table),
            Some(table) => Resolved::Fallback { table, named },
            None => Resolved::Dropped { named: Some(named) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(routed: &[&str]) -> Routing {
        let kafka = KafkaConfig {
            routed_topics: routed.iter().map(|s| (*s).to_owned()).collect(),
            ..KafkaConfig::default()
        };
        Routing::new(&kafka, ["faculty".to_owned(), "program".to_owned()]).expect("valid patterns")
    }

    /// `r`'s answer for a change on `topic`, whose own table is the default `kafka.topic_template`'s.
    fn resolve<'a>(r: &Routing, topic: &'a str, named: Option<&'a str>) -> Resolved<'a> {
        r.resolve(topic, KafkaConfig::default().table_of_topic(topic), named)
    }

    #[test]
    fn the_topic_names_the_table_and_record_names_are_ignored_on_ordinary_topics() {
        let r = routing(&[]);
        let course = "university-server.public.course";
        assert_eq!(resolve(&r, course, Some("junk_1")), Resolved::Topic("course"));
        assert_eq!(resolve(&r, course, Some("program")), Resolved::Topic("course"));
        assert_eq!(resolve(&r, course, None), Resolved::Topic("course"));
        for no_table in [
            "other.public.course",
            "university-server.public.a-b",
            "university-server.public.",
        ] {
            assert_eq!(
                resolve(&r, no_table, Some("faculty")),
                Resolved::Dropped { named: None },
                "{no_table}"
            );
        }
    }

    #[test]
    fn routed_topics_trust_only_valid_startable_names() {
        let r = routing(&[r"university-server\.all", "university-server.public.course"]);
        assert_eq!(
            resolve(&r, "university-server.all", Some("program")),
            Resolved::Named("program")
        );
        assert_eq!(
            resolve(&r, "university-server.all", Some("junk")),
            Resolved::Dropped { named: Some("junk") }
        );
        assert_eq!(
            resolve(&r, "university-server.all", None),
            Resolved::Dropped { named: None }
        );
        let course = "university-server.public.course";
        assert_eq!(resolve(&r, course, Some("faculty")), Resolved::Named("faculty"));
        assert_eq!(resolve(&r, course, Some("course")), Resolved::Topic("course"));
        let forged = "faculty\n2026-01-01T00:00:00Z  INFO forged";
        assert_eq!(
            resolve(&r, course, Some(forged)),
            Resolved::Fallback {
                table: "course",
                named: forged
            }
        );
        assert_eq!(resolve(&r, course, Some(forged)).untrusted(), Some(forged));
        // Patterns match whole names only.
        assert!(!r.is_routed("university-server.allx"));
    }
}
