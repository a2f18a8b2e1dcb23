//! Debezium record decoder: `(topic, key, value) -> Decoded`, learning only what the policy needs (which table,
//! which operation, snapshot or not, when) from every shape Debezium writes.
//!
//! It is fast by design: only a handful of top-level fields are deserialized, borrowed from the input; `before`,
//! `after` and the schema are skipped without building a value tree. Every outcome is a value: a record that is
//! not what we expect becomes [`Decoded::Invalid`] with a one-line reason, never a panic.
//!
//! Owns: the record shapes Debezium writes (`classify` by shape, `fields` read borrowed, `json` with its depth
//! bound), read into the shared [`crate::model::Op`]. It maps no topic to a table: a table the record does not name is only
//! a display guess for the `decode` command (`guessed_table`); the sidecar's rule is
//! [`crate::config::KafkaConfig::table_of_topic`]. May import nothing of the crate but the shared vocabulary leaf:
//! the Kafka layer and the `decode` command import it.

mod classify;
mod fields;
mod json;
mod row;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::model::Op;

pub(crate) use json::json_error;
use json::{check_depth, parse_object};
pub use row::{FieldCount, MAX_FIELD_NAME_BYTES, MAX_FIELD_NAMES, Row, RowImage, SeenFields};

/// JSON nested deeper than this is rejected: no Debezium record comes close, and a bound keeps every later
/// consumer of the record safe from stack exhaustion.
pub const MAX_DEPTH: usize = 128;

/// Prefix of Debezium's heartbeat topics (`__debezium-heartbeat.<topic.prefix>`).
const HEARTBEAT_TOPIC_PREFIX: &str = "__debezium-heartbeat";

/// What one record is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decoded {
    /// A row change or a truncate.
    Change(Change),
    /// A null value after a delete, for log compaction; not a change of its own.
    Tombstone {
        /// The table, from the topic name.
        table: String,
    },
    /// A heartbeat: the connector is alive; no table changed.
    Heartbeat,
    /// Transaction metadata (BEGIN or END).
    Transaction {
        /// `BEGIN` or `END`.
        status: String,
    },
    /// A logical-decoding message (`op` = `m`).
    Message,
    /// A schema change (DDL) event.
    SchemaChange,
    /// A binary record (Confluent wire format): a change of the topic's table whose operation is unknown.
    Opaque {
        /// The table, from the topic name.
        table: String,
    },
    /// Anything else.
    Invalid {
        /// One line saying what is wrong.
        error: String,
    },
}

/// A row change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The table: `source.table` or `__table` when present, else the topic's last segment.
    pub table: String,
    /// Whether the record itself named the table (`source.table` or `__table`). Such a name is record content:
    /// the sidecar believes it only on topics configured as routed (see `kafka.routed_topics`).
    pub table_from_record: bool,
    /// The database schema, when the record names it.
    pub schema: Option<String>,
    /// The operation, or `None` when the record does not say (unwrapped rows without `__op`).
    pub op: Option<Op>,
    /// Whether the record comes from a snapshot rather than the live log.
    pub snapshot: bool,
    /// When the change happened at the source (`source.ts_ms`, else the event's `ts_ms`), in ms since the epoch.
    pub ts_ms: Option<i64>,
}

impl Decoded {
    /// The kind as written in the JSON answer and in metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Decoded::Change(_) => "change",
            Decoded::Tombstone { .. } => "tombstone",
            Decoded::Heartbeat => "heartbeat",
            Decoded::Transaction { .. } => "transaction",
            Decoded::Message => "message",
            Decoded::SchemaChange => "schema_change",
            Decoded::Opaque { .. } => "opaque",
            Decoded::Invalid { .. } => "invalid",
        }
    }

    pub(crate) fn invalid(error: impl Into<String>) -> Decoded {
        Decoded::Invalid { error: error.into() }
    }

    /// Writes the JSON answer, byte for byte what `serde_json::to_writer` writes for the `Serialize` derive
    /// above (a test holds the two together for every variant).
    ///
    /// The `decode` command answers every line with this: serde's internally tagged enums serialize through a
    /// generic path (a tagging serializer around the struct, a call into the writer per token), a sizeable part
    /// of a line's time once the decoding itself is fast. Strings are still escaped by serde_json.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(b"{\"kind\":\"")?;
        out.write_all(self.kind().as_bytes())?;
        match self {
            Decoded::Change(c) => {
                out.write_all(b"\",\"table\":")?;
                json_string(out, &c.table)?;
                out.write_all(if c.table_from_record {
                    b",\"table_from_record\":true,\"schema\":"
                } else {
                    b",\"table_from_record\":false,\"schema\":"
                })?;
                match &c.schema {
                    Some(schema) => json_string(out, schema)?,
                    None => out.write_all(b"null")?,
                }
                out.write_all(b",\"op\":")?;
                match c.op {
                    // Codes are single ASCII letters: nothing to escape.
                    Some(op) => {
                        out.write_all(b"\"")?;
                        out.write_all(op.code().as_bytes())?;
                        out.write_all(b"\"")?;
                    }
                    None => out.write_all(b"null")?,
                }
                out.write_all(if c.snapshot {
                    b",\"snapshot\":true,\"ts_ms\":"
                } else {
                    b",\"snapshot\":false,\"ts_ms\":"
                })?;
                match c.ts_ms {
                    Some(ts_ms) => serde_json::to_writer(&mut *out, &ts_ms)?,
                    None => out.write_all(b"null")?,
                }
            }
            Decoded::Tombstone { table } | Decoded::Opaque { table } => {
                out.write_all(b"\",\"table\":")?;
                json_string(out, table)?;
            }
            Decoded::Transaction { status } => {
                out.write_all(b"\",\"status\":")?;
                json_string(out, status)?;
            }
            Decoded::Invalid { error } => {
                out.write_all(b"\",\"error\":")?;
                json_string(out, error)?;
            }
            Decoded::Heartbeat | Decoded::Message | Decoded::SchemaChange => out.write_all(b"\"")?,
        }
        out.write_all(b"}")
    }
}

/// `text` as a JSON string, quoted and escaped by serde_json.
fn json_string(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    serde_json::to_writer(out, text).map_err(std::io::Error::from)
}

/// A guess at the table of a record that names none, for the `decode` command, which reads records without a
/// configuration: the topic's last `.`-separated segment, as in Debezium's default `<prefix>.<schema>.<table>`.
/// Only for display: the sidecar believes a decoded table only when the record named it
/// ([`Change::table_from_record`]), and otherwise maps topics to tables by `kafka.topic_template`
/// ([`crate::config::KafkaConfig::table_of_topic`]).
pub(crate) fn guessed_table(topic: &str) -> &str {
    crate::model::naming::guess_table(topic)
}

/// Decodes one record. The key is not needed today (tables and operations live in the value) but is part of
/// the signature so that key-only shapes can be learned without changing callers.
pub fn decode(topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) -> Decoded {
    decode_row(topic, key, value).0
}

/// Decodes one record as [`decode`] does, and also gives its row image (borrowed from `value`, not read yet):
/// the fields of a change are then read with [`SeenFields::add`], only for the records that are sampled.
pub fn decode_row<'a>(topic: &str, _key: Option<&[u8]>, value: Option<&'a [u8]>) -> (Decoded, Option<Row<'a>>) {
    if topic.starts_with(HEARTBEAT_TOPIC_PREFIX) {
        return (Decoded::Heartbeat, None);
    }
    let Some(bytes) = value else {
        let table = guessed_table(topic).to_owned();
        return (Decoded::Tombstone { table }, None);
    };
    match bytes.first() {
        None => return (Decoded::invalid("empty record"), None),
        // Confluent wire format: magic byte 0, then a 4-byte schema id. No registry here to read the rest.
        Some(0) if bytes.len() >= 5 => {
            let table = guessed_table(topic).to_owned();
            return (Decoded::Opaque { table }, None);
        }
        _ => {}
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return (
                Decoded::invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
                None,
            );
        }
    };
    if let Err(error) = check_depth(text.as_bytes()) {
        return (Decoded::invalid(error), None);
    }
    match parse_object(text) {
        Ok(fields) => classify::classify(topic, text, fields, 0),
        Err(e) => (Decoded::invalid(e), None),
    }
}
