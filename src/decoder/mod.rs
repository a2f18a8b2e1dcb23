//! Debezium record decoder: `(topic, key, value) -> Decoded`, learning only what the policy needs (which table,
//! which operation, snapshot or not, when) from every shape Debezium writes.
//!
//! It is fast by design: only a handful of top-level fields are deserialized, borrowed from the input; `before`,
//! `after` and the schema are skipped without building a value tree. Every outcome is a value: a record that is
//! not what we expect becomes [`Decoded::Invalid`] with a one-line reason, never a panic.

pub mod op;

use std::borrow::Cow;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

pub use op::Op;

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

    fn invalid(error: impl Into<String>) -> Decoded {
        Decoded::Invalid { error: error.into() }
    }
}

/// The `decode` command's guess at the table of a record that names none: the topic's last `.`-separated segment.
/// Only for display; the sidecar maps topics to tables with `kafka.topic_template`
/// ([`crate::config::KafkaConfig::table_of_topic`]) and never with this.
fn table_of_topic(topic: &str) -> &str {
    crate::kafka::naming::guess_table(topic)
}

/// Decodes one record. The key is not needed today (tables and operations live in the value) but is part of
/// the signature so that key-only shapes can be learned without changing callers.
pub fn decode(topic: &str, _key: Option<&[u8]>, value: Option<&[u8]>) -> Decoded {
    if topic.starts_with(HEARTBEAT_TOPIC_PREFIX) {
        return Decoded::Heartbeat;
    }
    let Some(bytes) = value else {
        return Decoded::Tombstone {
            table: table_of_topic(topic).to_owned(),
        };
    };
    match bytes.first() {
        None => return Decoded::invalid("empty record"),
        // Confluent wire format: magic byte 0, then a 4-byte schema id. No registry here to read the rest.
        Some(0) if bytes.len() >= 5 => {
            return Decoded::Opaque {
                table: table_of_topic(topic).to_owned(),
            };
        }
        _ => {}
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Decoded::invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
    };
    if let Err(error) = check_depth(text.as_bytes()) {
        return Decoded::invalid(error);
    }
    parse_object(text).map_or_else(Decoded::invalid, |fields| classify(topic, fields, 0))
}

/// Parses the top-level fields of a JSON object; anything but an object is an error (serde would otherwise
/// read a JSON array positionally into the struct).
fn parse_object(text: &str) -> Result<Fields<'_>, String> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<Fields<'_>>(text).map_err(|e| json_error(&e)),
        Some(b'[') => Err("expected a JSON object, found an array".to_owned()),
        Some(b'"') => Err("expected a JSON object, found a string".to_owned()),
        Some(b'n') if text.trim() == "null" => Err("expected a JSON object, found null".to_owned()),
        Some(b't' | b'f') if matches!(text.trim(), "true" | "false") => {
            Err("expected a JSON object, found a boolean".to_owned())
        }
        Some(b'-' | b'0'..=b'9') if serde_json::from_str::<IgnoredAny>(text).is_ok() => {
            Err("expected a JSON object, found a number".to_owned())
        }
        Some(_) => serde_json::from_str::<IgnoredAny>(text)
            .map(|_| "expected a JSON object".to_owned())
            .map_err(|e| json_error(&e))
            .and_then(Err),
        None => Err("empty record (only white space)".to_owned()),
    }
}

/// serde_json skips ignored values without a depth limit, so nesting is bounded here, in one pass that also
/// tracks strings (brackets inside strings do not count). Strings are jumped over with `memchr`: they are most
/// of a record's bytes, and a byte-at-a-time scan of them cost as much as the whole parse.
fn check_depth(bytes: &[u8]) -> Result<(), String> {
    // Deeper than MAX_DEPTH takes more than MAX_DEPTH opening brackets; most records have fewer, and counting
    // them is one vectorized pass, several times cheaper than the scan below on schema blocks full of short
    // strings. Brackets inside strings are counted too, which only makes this conservative.
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        at += 1;
        match b {
            b'"' => match string_rest_len(&bytes[at..]) {
                Some(len) => at += len,
                // Unterminated: the parse reports it.
                None => return Ok(()),
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The length of a string's rest after its opening quote, closing quote included; `None` if it never closes.
fn string_rest_len(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', rest.get(at..)?)?;
        if rest[found] == b'"' {
            return Some(found + 1);
        }
        // A backslash escapes the byte after it (for `\u`, the four hex digits hold no quote or backslash).
        at = found + 2;
    }
}

fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected JSON shape",
        serde_json::error::Category::Io => "cannot read",
    };
    format!("{what}: {e}")
}

/// The top-level fields of every shape, borrowed; everything else is skipped.
///
/// Fields an unwrapped row could also carry as ordinary columns (`op`, `source`, `status`, `ts_ms`, ...) are
/// kept raw and only interpreted once the shape is known, so a table with a `status` column is not mistaken
/// for transaction metadata, nor rejected for the column's type.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Fields<'a> {
    // Schema wrapper (`schemas.enable=true`).
    #[serde(borrow, deserialize_with = "present_raw")]
    schema: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    payload: Option<&'a RawValue>,
    // Envelope.
    #[serde(deserialize_with = "present")]
    before: bool,
    #[serde(deserialize_with = "present")]
    after: bool,
    #[serde(borrow, deserialize_with = "present_raw")]
    op: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    source: Option<&'a RawValue>,
    #[serde(borrow, deserialize_with = "present_raw")]
    ts_ms: Option<&'a RawValue>,
    // Transaction metadata.
    #[serde(borrow, deserialize_with = "present_raw")]
    status: Option<&'a RawValue>,
    #[serde(deserialize_with = "present")]
    data_collections: bool,
    // Schema change events (`ddl`/`tableChanges` on relational connectors, `historyRecord` in MySQL's history).
    #[serde(deserialize_with = "present")]
    ddl: bool,
    #[serde(rename = "tableChanges", deserialize_with = "present")]
    table_changes: bool,
    #[serde(rename = "historyRecord", deserialize_with = "present")]
    history_record: bool,
    // ExtractNewRecordState's added fields: ours to interpret, so typed strictly.
    #[serde(rename = "__op", borrow)]
    unwrapped_op: Option<Cow<'a, str>>,
    #[serde(rename = "__table", borrow)]
    unwrapped_table: Option<Cow<'a, str>>,
    #[serde(rename = "__schema", borrow)]
    unwrapped_schema: Option<Cow<'a, str>>,
    #[serde(rename = "__deleted", deserialize_with = "flag")]
    unwrapped_deleted: Option<bool>,
    #[serde(rename = "__source_ts_ms")]
    unwrapped_source_ts_ms: Option<i64>,
    #[serde(rename = "__ts_ms")]
    unwrapped_ts_ms: Option<i64>,
    #[serde(rename = "__snapshot", alias = "__source_snapshot", borrow)]
    unwrapped_snapshot: Option<Snapshot<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Source<'a> {
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    snapshot: Option<Snapshot<'a>>,
    ts_ms: Option<i64>,
}

/// `source.snapshot`: a string in Debezium 1.x/2.x (`"true"`, `"last"`, `"incremental"`, `"false"`, ...), a
/// boolean in some older connectors.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Snapshot<'a> {
    Flag(bool),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Snapshot<'_> {
    /// Every value but `false` marks a snapshot record: new markers in later Debezium versions err on the side
    /// of "snapshot", which only affects reporting.
    fn is_snapshot(&self) -> bool {
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
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag<'a> {
        Bool(bool),
        #[serde(borrow)]
        Text(Cow<'a, str>),
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

fn classify(topic: &str, f: Fields<'_>, wrapper_depth: u8) -> Decoded {
    // `{"schema": ..., "payload": ...}`: decode the payload. Only one level: a payload that is itself wrapped
    // is not something Debezium writes.
    if let (Some(_), Some(payload)) = (f.schema, f.payload)
        && wrapper_depth == 0
    {
        if payload.get() == "null" {
            return Decoded::Tombstone {
                table: table_of_topic(topic).to_owned(),
            };
        }
        return match parse_object(payload.get()) {
            Ok(inner) => classify(topic, inner, wrapper_depth + 1),
            Err(e) => Decoded::invalid(format!("payload: {e}")),
        };
    }
    if let Some(op) = f.op
        && (f.source.is_some() || f.before || f.after)
    {
        return envelope(topic, op, f.source, f.ts_ms).unwrap_or_else(Decoded::invalid);
    }
    if let Some(status) = f.status
        && (topic.ends_with(".transaction") || f.data_collections)
    {
        return match serde_json::from_str::<Cow<'_, str>>(status.get()).as_deref() {
            Ok(status @ ("BEGIN" | "END")) => Decoded::Transaction {
                status: status.to_owned(),
            },
            Ok(other) => Decoded::invalid(format!("unknown transaction status {other:?}")),
            Err(e) => Decoded::invalid(format!("status: {}", json_error(e))),
        };
    }
    if f.source.is_some() && (f.ddl || f.table_changes) || f.history_record {
        return Decoded::SchemaChange;
    }
    if f.source.is_some() && (f.before || f.after) {
        return Decoded::invalid("envelope without op");
    }
    unwrapped(topic, &f).unwrap_or_else(Decoded::invalid)
}

/// A Debezium envelope: `op` and `source` say it all.
fn envelope(
    topic: &str,
    op: &RawValue,
    source: Option<&RawValue>,
    ts_ms: Option<&RawValue>,
) -> Result<Decoded, String> {
    let op: Cow<'_, str> = serde_json::from_str(op.get()).map_err(|e| format!("op: {}", json_error(&e)))?;
    let op = match op.as_ref() {
        "m" => return Ok(Decoded::Message),
        code => Op::from_code(code).ok_or_else(|| format!("unknown op {code:?}"))?,
    };
    let source: Source<'_> = match source {
        Some(raw) if raw.get() == "null" => Source::default(),
        // serde would read an array positionally into the struct.
        Some(raw) if !raw.get().starts_with('{') => return Err("source: expected a JSON object".to_owned()),
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("source: {}", json_error(&e)))?,
        _ => Source::default(),
    };
    let ts_ms: Option<i64> = match ts_ms {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("ts_ms: {}", json_error(&e)))?,
        None => None,
    };
    Ok(Decoded::Change(Change {
        table: source
            .table
            .as_deref()
            .unwrap_or_else(|| table_of_topic(topic))
            .to_owned(),
        table_from_record: source.table.is_some(),
        schema: source.schema.as_deref().map(str::to_owned),
        op: Some(op),
        snapshot: source.snapshot.as_ref().is_some_and(Snapshot::is_snapshot),
        ts_ms: source.ts_ms.or(ts_ms),
    }))
}

/// A row unwrapped by ExtractNewRecordState: the row's own columns plus optional `__` fields.
fn unwrapped(topic: &str, f: &Fields<'_>) -> Result<Decoded, String> {
    let op = match (&f.unwrapped_op, f.unwrapped_deleted) {
        (Some(code), _) => Some(Op::from_code(code).ok_or_else(|| format!("unknown __op {:?}", code.as_ref()))?),
        (None, Some(true)) => Some(Op::Delete),
        (None, _) => None,
    };
    Ok(Decoded::Change(Change {
        table: f
            .unwrapped_table
            .as_deref()
            .unwrap_or_else(|| table_of_topic(topic))
            .to_owned(),
        table_from_record: f.unwrapped_table.is_some(),
        schema: f.unwrapped_schema.as_deref().map(str::to_owned),
        op,
        snapshot: f.unwrapped_snapshot.as_ref().is_some_and(Snapshot::is_snapshot) || op == Some(Op::Read),
        ts_ms: f.unwrapped_source_ts_ms.or(f.unwrapped_ts_ms),
    }))
}

/// One line of the fixture format: `{"topic": "...", "key": base64|null, "value": base64|null}`; other fields
/// (such as a fixture's `name` and `expect`) are ignored.
#[derive(Debug, Deserialize)]
struct InputLine {
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Decodes every line of `input` (the fixture JSON-lines format) and writes one JSON answer per line to
/// `output`, in order. A line that is not valid input gets an `invalid` answer naming the line; nothing stops
/// the run but an I/O error. Returns how many lines were answered.
pub fn decode_lines(input: impl std::io::BufRead, mut output: impl std::io::Write) -> std::io::Result<u64> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut answered = 0;
    let mut line = Vec::new();
    let mut input = input;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        answered += 1;
        let decoded = match serde_json::from_slice::<InputLine>(line.trim_ascii()) {
            Err(e) => Decoded::invalid(format!("input line {answered}: {}", json_error(&e))),
            Ok(record) => {
                let key = record.key.map(|k| b64.decode(k)).transpose();
                let value = record.value.map(|v| b64.decode(v)).transpose();
                match (key, value) {
                    (Ok(key), Ok(value)) => decode(&record.topic, key.as_deref(), value.as_deref()),
                    (Err(e), _) => Decoded::invalid(format!("input line {answered}: key is not base64: {e}")),
                    (_, Err(e)) => Decoded::invalid(format!("input line {answered}: value is not base64: {e}")),
                }
            }
        };
        serde_json::to_writer(&mut output, &decoded)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(answered)
}

/// Decodes one record whose raw value bytes are all of `input`, writing its JSON answer to `output`.
pub fn decode_raw(topic: &str, mut input: impl std::io::Read, mut output: impl std::io::Write) -> std::io::Result<u64> {
    let mut value = Vec::new();
    input.read_to_end(&mut value)?;
    serde_json::to_writer(&mut output, &decode(topic, None, Some(&value)))?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(topic: &str, json: &str) -> Decoded {
        decode(topic, Some(b"{\"id\":1}"), Some(json.as_bytes()))
    }

    const T: &str = "university-server.public.faculty";

    fn change(table: &str, op: Option<Op>, snapshot: bool, ts_ms: Option<i64>) -> Decoded {
        Decoded::Change(Change {
            table: table.to_owned(),
            table_from_record: true,
            schema: Some("public".to_owned()),
            op,
            snapshot,
            ts_ms,
        })
    }

    #[test]
    fn envelope_fields_are_read() {
        let json = r#"{"before":null,"after":{"id":1,"nested":{"a":[1,2,{"b":"}"}]}},"source":{"table":"faculty","schema":"public","snapshot":"false","ts_ms":5},"op":"c","ts_ms":7}"#;
        assert_eq!(value(T, json), change("faculty", Some(Op::Create), false, Some(5)));
        let json =
            r#"{"after":{},"source":{"table":"program","schema":"public","snapshot":"last"},"op":"r","ts_ms":7}"#;
        assert_eq!(value(T, json), change("program", Some(Op::Read), true, Some(7)));
    }

    #[test]
    fn routed_topics_take_the_table_from_source() {
        let json = r#"{"source":{"table":"payment","schema":"public"},"op":"t","before":null,"after":null}"#;
        assert_eq!(
            value("all-tables", json),
            change("payment", Some(Op::Truncate), false, None)
        );
    }

    #[test]
    fn schema_wrapper_is_unwrapped() {
        let json = r#"{"schema":{"type":"struct","fields":[]},"payload":{"op":"u","source":{"table":"faculty","schema":"public"},"after":{}}}"#;
        assert_eq!(value(T, json), change("faculty", Some(Op::Update), false, None));
        let json = r#"{"schema":null,"payload":null}"#;
        assert_eq!(
            value(T, json),
            Decoded::Tombstone {
                table: "faculty".into()
            }
        );
        let json = r#"{"schema":{},"payload":[1]}"#;
        assert!(matches!(value(T, json), Decoded::Invalid { error } if error.starts_with("payload:")));
    }

    #[test]
    fn unwrapped_rows() {
        let row = |json: &str| match value(T, json) {
            Decoded::Change(c) => (c.table, c.op, c.snapshot, c.ts_ms),
            other => panic!("{other:?}"),
        };
        assert_eq!(row(r#"{"id":1,"name":"x"}"#), ("faculty".into(), None, false, None));
        assert_eq!(
            row(r#"{"id":1,"__op":"u","__source_ts_ms":9}"#),
            ("faculty".into(), Some(Op::Update), false, Some(9))
        );
        assert_eq!(
            row(r#"{"id":1,"__deleted":"true"}"#),
            ("faculty".into(), Some(Op::Delete), false, None)
        );
        assert_eq!(
            row(r#"{"id":1,"__op":"d","__deleted":"true","__table":"program"}"#).1,
            Some(Op::Delete)
        );
        assert_eq!(
            row(r#"{"id":1,"__op":"r","__table":"program"}"#),
            ("program".into(), Some(Op::Read), true, None)
        );
        assert_eq!(row(r#"{"id":1,"__deleted":false}"#).1, None);
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            decode(T, Some(b"k"), None),
            Decoded::Tombstone {
                table: "faculty".into()
            }
        );
        assert_eq!(
            decode("__debezium-heartbeat.university-server", None, Some(b"{\"ts_ms\":1}")),
            Decoded::Heartbeat
        );
        let tx = r#"{"status":"BEGIN","id":"571:53195829","event_count":null,"data_collections":null,"ts_ms":1}"#;
        assert_eq!(
            value("university-server.transaction", tx),
            Decoded::Transaction { status: "BEGIN".into() }
        );
        let msg = r#"{"op":"m","source":{"table":""},"message":{"prefix":"p","content":"Y29udGVudA=="}}"#;
        assert_eq!(value("university-server.message", msg), Decoded::Message);
        // Ordinary columns named like envelope fields do not confuse an unwrapped row.
        let row = r#"{"id":1,"status":"active","op":7,"ts_ms":"soon","__op":"c"}"#;
        assert_eq!(
            value(T, row),
            Decoded::Change(Change {
                table: "faculty".into(),
                table_from_record: false,
                schema: None,
                op: Some(Op::Create),
                snapshot: false,
                ts_ms: None
            })
        );
        assert_eq!(value("university-server.message", msg), Decoded::Message);
        let ddl = r#"{"source":{"server":"s"},"databaseName":"db","ddl":"CREATE TABLE t (id INT)","tableChanges":[]}"#;
        assert_eq!(value("university-server", ddl), Decoded::SchemaChange);
        assert_eq!(
            decode(T, None, Some(&[0, 0, 0, 0, 7, 2, 4])),
            Decoded::Opaque {
                table: "faculty".into()
            }
        );
    }

    fn invalid(bytes: &[u8]) -> String {
        match decode(T, None, Some(bytes)) {
            Decoded::Invalid { error } => {
                assert!(!error.contains('\n'), "{error}");
                error
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_way_of_being_invalid_says_what() {
        assert_eq!(invalid(b""), "empty record");
        assert!(invalid(b"not json").starts_with("not JSON"));
        assert!(invalid(br#"{"op":"c","source":{"#).starts_with("truncated JSON"));
        assert!(invalid(b"\xff\xfe{}").starts_with("invalid UTF-8"));
        assert!(invalid(br#"{"op":5,"source":{}}"#).starts_with("op: unexpected JSON shape: invalid type"));
        assert!(invalid(br#"{"op":"c","source":[]}"#).starts_with("source:"));
        assert!(invalid(br#"{"op":"c","source":{},"ts_ms":"x"}"#).starts_with("ts_ms:"));
        assert!(invalid(br#"{"op":"x","source":{}}"#).contains("unknown op \"x\""));
        assert!(invalid(br#"{"id":1,"__op":"z"}"#).contains("unknown __op"));
        assert!(invalid(br#"{"source":{"table":7},"op":"c"}"#).contains("invalid type"));
        assert!(invalid(br#"{"before":null,"after":{},"source":{}}"#).contains("envelope without op"));
        assert!(invalid(br#"{"id":1,"__deleted":"maybe"}"#).contains("__deleted"));
        assert_eq!(invalid(b"[1,2]"), "expected a JSON object, found an array");
        assert_eq!(invalid(b"null"), "expected a JSON object, found null");
        assert_eq!(invalid(b"42"), "expected a JSON object, found a number");
        assert_eq!(invalid(b"\"s\""), "expected a JSON object, found a string");
        assert_eq!(invalid(b"  "), "empty record (only white space)");
        assert!(
            invalid(br#"{"status":"MAYBE","id":"1","data_collections":null}"#).contains("unknown transaction status")
        );
        assert!(invalid(br#"{"op":"c","op":"u","source":{}}"#).contains("duplicate field"));
        let deep = format!("{{\"after\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(invalid(deep.as_bytes()), "JSON nested deeper than 128 levels");
        let ok = format!("{{\"after\":{}{},\"op\":\"c\"}}", "[".repeat(127), "]".repeat(127));
        assert!(matches!(decode(T, None, Some(ok.as_bytes())), Decoded::Change(_)));
        let brackets_in_strings = format!("{{\"after\":\"{}\",\"op\":\"c\"}}", "[".repeat(500));
        assert!(matches!(
            decode(T, None, Some(brackets_in_strings.as_bytes())),
            Decoded::Change(_)
        ));
    }

    /// The byte-at-a-time scan `check_depth` replaced, as the reference it must agree with.
    fn naive_depth(bytes: &[u8]) -> Result<(), String> {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in bytes {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn check_depth_agrees_with_the_naive_scan(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("[".repeat(64)),
                    proptest::strategy::Just("]".repeat(32)),
                    "[\\[\\]{}\"\\\\a,:]{0,24}",
                    proptest::strategy::Just("\"\\\"[[[\\\\\"".to_owned()),
                ],
                0..24,
            )
        ) {
            let text = parts.concat();
            proptest::prop_assert_eq!(check_depth(text.as_bytes()), naive_depth(text.as_bytes()), "{}", text);
        }
    }

    #[test]
    fn answers_serialize_as_documented() {
        let json = |d: &Decoded| serde_json::to_string(d).expect("serializes");
        assert_eq!(
            json(&change("faculty", Some(Op::Delete), false, Some(1))),
            r#"{"kind":"change","table":"faculty","table_from_record":true,"schema":"public","op":"d","snapshot":false,"ts_ms":1}"#
        );
        assert_eq!(json(&Decoded::Heartbeat), r#"{"kind":"heartbeat"}"#);
        assert_eq!(
            json(&Decoded::Tombstone { table: "t".into() }),
            r#"{"kind":"tombstone","table":"t"}"#
        );
        assert_eq!(json(&Decoded::invalid("x")), r#"{"kind":"invalid","error":"x"}"#);
    }

    #[test]
    fn decode_lines_answers_every_line_in_order() {
        let input = concat!(
            r#"{"name":"a","topic":"s.public.faculty","key":null,"value":null,"expect":{}}"#,
            "\n",
            "garbage\n",
            r#"{"topic":"s.public.faculty","value":"!!!"}"#,
            "\n",
            r#"{"topic":"s.public.faculty","value":"eyJvcCI6ImMiLCJzb3VyY2UiOnt9fQ=="}"#,
            "\n"
        );
        let mut out = Vec::new();
        assert_eq!(decode_lines(input.as_bytes(), &mut out).expect("io"), 4);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["kind"], "tombstone");
        assert_eq!(lines[1]["kind"], "invalid");
        assert!(lines[1]["error"].as_str().expect("error").starts_with("input line 2:"));
        assert!(lines[2]["error"].as_str().expect("error").contains("not base64"));
        assert_eq!(lines[3]["op"], "c");
    }
}
