//! Which shape a record is (schema wrapper, envelope, transaction metadata, schema change, unwrapped row), and
//! the table and operation each shape carries.

use serde_json::value::RawValue;

use super::fields::{Fields, Snapshot, Source, Text};
use super::json::{json_error, parse_object};
use super::row::{Row, RowImage};
use super::{Change, Decoded, guessed_table};
use crate::model::Op;

/// What the record with top-level fields `f` (parsed from `text`) is, and the row image its field names come
/// from, if it has one; `wrapper_depth` counts the schema wrappers already opened.
pub(super) fn classify<'a>(topic: &str, text: &'a str, f: Fields<'a>, wrapper_depth: u8) -> (Decoded, Option<Row<'a>>) {
    // `{"schema": ..., "payload": ...}`: decode the payload. Only one level: a payload that is itself wrapped
    // is not something Debezium writes.
    if let (Some(_), Some(payload)) = (f.schema, f.payload)
        && wrapper_depth == 0
    {
        if payload.get() == "null" {
            let table = guessed_table(topic).to_owned();
            return (Decoded::Tombstone { table }, None);
        }
        return match parse_object(payload.get()) {
            Ok(inner) => classify(topic, payload.get(), inner, wrapper_depth + 1),
            Err(e) => (Decoded::invalid(format!("payload: {e}")), None),
        };
    }
    if let Some(op) = f.op
        && (f.source.is_some() || f.before.is_some() || f.after.is_some())
    {
        return match envelope(topic, op, f.source, f.ts_ms) {
            Ok(decoded) => {
                let row = row_of_envelope(&decoded, f.before, f.after);
                (decoded, row)
            }
            Err(e) => (Decoded::invalid(e), None),
        };
    }
    if let Some(status) = f.status
        && (topic.ends_with(".transaction") || f.data_collections)
    {
        let decoded = match serde_json::from_str::<Text<'_>>(status.get()).as_deref() {
            Ok(status @ ("BEGIN" | "END")) => Decoded::Transaction {
                status: status.to_owned(),
            },
            Ok(other) => Decoded::invalid(format!("unknown transaction status {other:?}")),
            Err(e) => Decoded::invalid(format!("status: {}", json_error(e))),
        };
        return (decoded, None);
    }
    if f.source.is_some() && (f.ddl || f.table_changes) || f.history_record {
        return (Decoded::SchemaChange, None);
    }
    if f.source.is_some() && (f.before.is_some() || f.after.is_some()) {
        return (Decoded::invalid("envelope without op"), None);
    }
    match unwrapped(topic, &f) {
        Ok(decoded) => {
            // The unwrapped row is the record itself (less the transform's `__` fields). A delete's row is its
            // before image, which may hold only the key (see `RowImage::Before`).
            let image = match &decoded {
                Decoded::Change(c) if c.op == Some(Op::Delete) => RowImage::UnwrappedBefore,
                _ => RowImage::Unwrapped,
            };
            (decoded, Some(Row::new(text, image)))
        }
        Err(e) => (Decoded::invalid(e), None),
    }
}

/// The row image of an envelope whose fields say what the row is: `after`, or `before` for a delete (whose
/// `after` is null). A null or non-object image has no fields to read.
fn row_of_envelope<'a>(
    decoded: &Decoded,
    before: Option<&'a RawValue>,
    after: Option<&'a RawValue>,
) -> Option<Row<'a>> {
    let Decoded::Change(change) = decoded else {
        return None;
    };
    let (raw, image) = match change.op {
        Some(Op::Delete) => (before?, RowImage::Before),
        _ => (after?, RowImage::After),
    };
    raw.get().starts_with('{').then(|| Row::new(raw.get(), image))
}

/// A Debezium envelope: `op` and `source` say it all.
fn envelope(
    topic: &str,
    op: &RawValue,
    source: Option<&RawValue>,
    ts_ms: Option<&RawValue>,
) -> Result<Decoded, String> {
    let op: Text<'_> = serde_json::from_str(op.get()).map_err(|e| format!("op: {}", json_error(&e)))?;
    let op = match &*op {
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
    let snapshot = source.snapshot.as_ref().is_some_and(Snapshot::is_snapshot);
    Ok(change(
        topic,
        source.table.as_deref(),
        source.schema.as_deref(),
        Some(op),
        snapshot,
        source.ts_ms.or(ts_ms),
    ))
}

/// A row unwrapped by ExtractNewRecordState: the row's own columns plus optional `__` fields.
fn unwrapped(topic: &str, f: &Fields<'_>) -> Result<Decoded, String> {
    let op = match (&f.unwrapped_op, f.unwrapped_deleted) {
        (Some(code), _) => Some(Op::from_code(code).ok_or_else(|| format!("unknown __op {:?}", &**code))?),
        (None, Some(true)) => Some(Op::Delete),
        (None, _) => None,
    };
    let snapshot = f.unwrapped_snapshot.as_ref().is_some_and(Snapshot::is_snapshot) || op == Some(Op::Read);
    let ts_ms = f.unwrapped_source_ts_ms.or(f.unwrapped_ts_ms);
    Ok(change(
        topic,
        f.unwrapped_table.as_deref(),
        f.unwrapped_schema.as_deref(),
        op,
        snapshot,
        ts_ms,
    ))
}

/// A change of `table` as the record names it, else of the topic's table.
fn change(
    topic: &str,
    table: Option<&str>,
    schema: Option<&str>,
    op: Option<Op>,
    snapshot: bool,
    ts_ms: Option<i64>,
) -> Decoded {
    Decoded::Change(Change {
        table: table.unwrap_or_else(|| guessed_table(topic)).to_owned(),
        table_from_record: table.is_some(),
        schema: schema.map(str::to_owned),
        op,
        snapshot,
        ts_ms,
    })
}
