//! The top-level fields of every Debezium shape as serde reads them: borrowed from the input, values that are
//! only interpreted once the shape is known kept raw, and everything else skipped without building a value tree.

use std::borrow::Cow;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The top-level fields of every shape, borrowed; everything else is skipped.
///
/// Fields an unwrapped row could also carry as ordinary columns (`op`, `source`, `status`, `ts_ms`, ...) are
/// kept raw and only interpreted once the shape is known, so a table with a `status` column is not mistaken
/// for transaction metadata, nor rejected for the column's type.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Fields<'a> {
    // Schema wrapper (`schemas.enable=true`).
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) schema: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) payload: Option<&'a RawValue>,
    // Envelope. The row images are kept raw (a borrowed slice, skipped like any ignored value): a sample's
    // field names are read from one of them only when asked ([`super::decode_row`]).
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) before: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) after: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) op: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) source: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) ts_ms: Option<&'a RawValue>,
    // Transaction metadata.
    #[serde(borrow, deserialize_with = "present_raw")]
    pub(super) status: Option<&'a RawValue>,
    #[serde(deserialize_with = "present")]
    pub(super) data_collections: bool,
    // Schema change events (`ddl`/`tableChanges` on relational connectors, `historyRecord` in MySQL's history).
    #[serde(deserialize_with = "present")]
    pub(super) ddl: bool,
    #[serde(rename = "tableChanges", deserialize_with = "present")]
    pub(super) table_changes: bool,
    #[serde(rename = "historyRecord", deserialize_with = "present")]
    pub(super) history_record: bool,
    // ExtractNewRecordState's added fields: ours to interpret, so typed strictly.
    #[serde(rename = "__op", borrow)]
    pub(super) unwrapped_op: Option<Text<'a>>,
    #[serde(rename = "__table", borrow)]
    pub(super) unwrapped_table: Option<Text<'a>>,
    #[serde(rename = "__schema", borrow)]
    pub(super) unwrapped_schema: Option<Text<'a>>,
    #[serde(rename = "__deleted", deserialize_with = "flag")]
    pub(super) unwrapped_deleted: Option<bool>,
    #[serde(rename = "__source_ts_ms")]
    pub(super) unwrapped_source_ts_ms: Option<i64>,
    #[serde(rename = "__ts_ms")]
    pub(super) unwrapped_ts_ms: Option<i64>,
    #[serde(rename = "__snapshot", alias = "__source_snapshot", borrow)]
    pub(super) unwrapped_snapshot: Option<Snapshot<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Source<'a> {
    #[serde(borrow)]
    pub(super) table: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) schema: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) snapshot: Option<Snapshot<'a>>,
    pub(super) ts_ms: Option<i64>,
}

/// A JSON string, borrowed from the input unless it holds escapes. `#[serde(borrow)]` borrows a bare `Cow<str>`
/// but not one inside an `Option`: serde reads that one into an owned `String`, an allocation per field.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(super) struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// `source.snapshot`: a string in Debezium 1.x/2.x (`"true"`, `"last"`, `"incremental"`, `"false"`, ...), a
/// boolean in some older connectors.
///
/// An untagged enum tries its variants in order and each miss builds a formatted error, so the common string
/// comes first: with the boolean first, every record paid for an error message (a tenth of a decode). The
/// variants accept disjoint JSON types, so the order changes nothing else.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Snapshot<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Flag(bool),
}

impl Snapshot<'_> {
    /// Every value but `false` marks a snapshot record: new markers in later Debezium versions err on the side
    /// of "snapshot", which only affects reporting.
    pub(super) fn is_snapshot(&self) -> bool {
        match self {
            Snapshot::Flag(b) => *b,
            Snapshot::Text(t) => t != "false",
        }
    }
}

/// Marks a field as present whatever its value (`null` included), without reading the value.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// Keeps a field's raw text, `null` included (a plain `Option<&RawValue>` turns `null` into `None`).
fn present_raw<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// `__deleted`: `"true"`/`"false"` as the transform writes it, or a real boolean.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    // The transform's string first, for the reason given at [`Snapshot`]; the variants' JSON types are disjoint.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag<'a> {
        #[serde(borrow)]
        Text(Cow<'a, str>),
        Bool(bool),
        Null(()),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(b) => Ok(Some(b)),
        Flag::Text(t) if t == "true" => Ok(Some(true)),
        Flag::Text(t) if t == "false" => Ok(Some(false)),
        Flag::Text(t) => Err(de::Error::custom(format!(
            "__deleted: expected \"true\" or \"false\", got {t:?}"
        ))),
        Flag::Null(()) => Ok(None),
    }
}
