//! Property tests: any bytes decode to an answer (never a panic), and generated Debezium records decode to
//! exactly what was generated, whatever the field order, extra fields, missing optional fields and wrapper.

use cdc_orchestrator::decoder::{Change, Decoded, decode};
use cdc_orchestrator::model::Op;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Every `source.snapshot` value Debezium writes, and its absence.
const SNAPSHOTS: [Option<&str>; 8] = [
    Some("true"),
    Some("first"),
    Some("first_in_data_collection"),
    Some("last"),
    Some("last_in_data_collection"),
    Some("incremental"),
    Some("false"),
    None,
];

/// Modest by default so `cargo test` stays fast; `PROPTEST_CASES=10000 cargo test --test it decoder_props::`
/// digs deeper.
fn config() -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(128)
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop::sample::select(Op::ALL.to_vec())
}

/// Table and schema names: any printable unicode, quotes and backslashes included.
fn name() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

/// The topic's table segment: no dot, since the topic's last `.`-segment is the table.
fn topic_table() -> impl Strategy<Value = String> {
    "[a-zA-Z_\u{e9}\u{4e2d}][a-zA-Z0-9_\u{e9}\u{4e2d}]{0,12}"
}

/// Random JSON, nested a few levels, with unicode keys and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        // Brackets and escapes inside strings must not confuse the depth check.
        "[\\[\\]{}\"\\\\]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn row() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("\\PC{0,8}", json_value(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// `before`/`after`: absent, `null`, or a row.
fn image() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![Just(None), Just(Some(Value::Null)), row().prop_map(Some)]
}

/// An object's fields as (name, JSON text of the value), so that nested objects keep their own field order.
type Fields = Vec<(String, String)>;

/// A JSON object's text with its fields in the given order (serde_json's own maps would sort them).
fn object(fields: &Fields) -> String {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A field list, shuffled: Debezium's order is not a contract.
fn shuffled(fields: Fields) -> impl Strategy<Value = Fields> {
    Just(fields).prop_shuffle()
}

fn push<T: Into<Value>>(fields: &mut Fields, key: &str, value: Option<T>) {
    if let Some(value) = value {
        fields.push((key.to_owned(), value.into().to_string()));
    }
}

fn raw(fields: Vec<(String, Value)>) -> Fields {
    fields.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// A realistic schema block for the wrapper; its content never matters to the decoder.
fn schema_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        json_value().prop_map(|v| json!({"type": "struct", "fields": [v], "optional": false, "name": "x.Envelope"})),
    ]
}

/// Wraps `payload` in `{"schema": ..., "payload": ...}` (in either order) when asked.
fn maybe_wrap(payload: String, wrap: Option<(Value, bool)>) -> String {
    match wrap {
        None => payload,
        Some((schema, true)) => format!("{{\"schema\":{schema},\"payload\":{payload}}}"),
        Some((schema, false)) => format!("{{\"payload\":{payload},\"schema\":{schema}}}"),
    }
}

#[derive(Debug, Clone)]
struct Envelope {
    topic_table: String,
    op: Op,
    table: Option<String>,
    schema: Option<String>,
    snapshot: Option<&'static str>,
    source_ts_ms: Option<i64>,
    ts_ms: Option<i64>,
}

impl Envelope {
    fn expected(&self) -> Decoded {
        Decoded::Change(Change {
            table: self.table.clone().unwrap_or_else(|| self.topic_table.clone()),
            table_from_record: self.table.is_some(),
            schema: self.schema.clone(),
            op: Some(self.op),
            snapshot: self.snapshot.is_some_and(|s| s != "false"),
            ts_ms: self.source_ts_ms.or(self.ts_ms),
        })
    }
}

/// An envelope, its record text and the topic it arrives on.
fn envelope() -> impl Strategy<Value = (Envelope, String, String)> {
    let head = (
        topic_table(),
        op(),
        proptest::option::of(name()),
        proptest::option::of(name()),
        prop::sample::select(SNAPSHOTS.to_vec()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(topic_table, op, table, schema, snapshot, source_ts_ms, ts_ms)| Envelope {
                topic_table,
                op,
                table,
                schema,
                snapshot,
                source_ts_ms,
                ts_ms,
            },
        );
    let extras = (
        image(),
        image(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            ("[0-9]{1,6}:[0-9]{1,9}", any::<u32>())
                .prop_map(|(id, n)| Some(json!({"id": id, "total_order": n, "data_collection_order": n}))),
        ],
        prop::collection::vec(("x_\\PC{0,6}", json_value()), 0..3),
        proptest::option::of((schema_block(), any::<bool>())),
    );
    (head, extras)
        .prop_flat_map(|(env, (before, after, ts_us, ts_ns, transaction, extra, wrap))| {
            let mut source = raw(vec![
                ("version".to_owned(), json!("2.7.3.Final")),
                ("connector".to_owned(), json!("postgresql")),
                ("name".to_owned(), json!("university-server")),
            ]);
            push(&mut source, "table", env.table.clone());
            push(&mut source, "schema", env.schema.clone());
            push(&mut source, "snapshot", env.snapshot);
            push(&mut source, "ts_ms", env.source_ts_ms);
            push(&mut source, "ts_us", ts_us);
            let mut fields = raw(vec![("op".to_owned(), json!(env.op.code()))]);
            push(&mut fields, "before", before);
            push(&mut fields, "after", after);
            push(&mut fields, "ts_ms", env.ts_ms);
            push(&mut fields, "ts_us", ts_us);
            push(&mut fields, "ts_ns", ts_ns);
            push(&mut fields, "transaction", transaction);
            fields.extend(raw(extra));
            (Just(env), shuffled(source), Just(fields), Just(wrap))
        })
        .prop_flat_map(|(env, source, mut fields, wrap)| {
            fields.push(("source".to_owned(), object(&source)));
            (Just(env), shuffled(fields), Just(wrap))
        })
        .prop_map(|(env, fields, wrap)| {
            let text = object(&fields);
            let topic = format!("university-server.public.{}", env.topic_table);
            (env, maybe_wrap(text, wrap), topic)
        })
}

#[derive(Debug, Clone)]
struct Unwrapped {
    topic_table: String,
    op: Option<Op>,
    deleted: Option<bool>,
    table: Option<String>,
    schema: Option<String>,
    source_ts_ms: Option<i64>,
    ts_ms: Option<i64>,
}

impl Unwrapped {
    fn expected(&self) -> Decoded {
        let op = self.op.or(if self.deleted == Some(true) {
            Some(Op::Delete)
        } else {
            None
        });
        Decoded::Change(Change {
            table: self.table.clone().unwrap_or_else(|| self.topic_table.clone()),
            table_from_record: self.table.is_some(),
            schema: self.schema.clone(),
            op,
            snapshot: op == Some(Op::Read),
            ts_ms: self.source_ts_ms.or(self.ts_ms),
        })
    }
}

/// A row unwrapped by ExtractNewRecordState, with or without its `__` fields.
fn unwrapped() -> impl Strategy<Value = (Unwrapped, String, String)> {
    (
        topic_table(),
        proptest::option::of(op()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(name()),
        proptest::option::of(name()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
    )
        .prop_flat_map(|(topic_table, op, deleted, table, schema, source_ts_ms, ts_ms)| {
            let row = Unwrapped {
                topic_table,
                op,
                deleted,
                table,
                schema,
                source_ts_ms,
                ts_ms,
            };
            (
                Just(row),
                // Column names that cannot be taken for an envelope, wrapper or `__` field.
                prop::collection::vec(("c_\\PC{0,8}", json_value()), 0..8),
                any::<bool>(),
                proptest::option::of((schema_block(), any::<bool>())),
            )
        })
        .prop_flat_map(|(row, columns, deleted_as_text, wrap)| {
            let mut fields = raw(columns);
            push(&mut fields, "__op", row.op.map(Op::code));
            let deleted = row.deleted.map(|d| {
                if deleted_as_text {
                    json!(d.to_string())
                } else {
                    json!(d)
                }
            });
            push(&mut fields, "__deleted", deleted);
            push(&mut fields, "__table", row.table.clone());
            push(&mut fields, "__schema", row.schema.clone());
            push(&mut fields, "__source_ts_ms", row.source_ts_ms);
            push(&mut fields, "__ts_ms", row.ts_ms);
            // Duplicate column names would make the JSON ambiguous; keep the first of each.
            let mut seen = std::collections::HashSet::new();
            fields.retain(|(k, _)| seen.insert(k.clone()));
            (Just(row), shuffled(fields), Just(wrap))
        })
        .prop_map(|(row, fields, wrap)| {
            let topic = format!("university-server.public.{}", row.topic_table);
            (row, maybe_wrap(object(&fields), wrap), topic)
        })
}

fn assert_one_json_line(decoded: &Decoded) {
    let line = serde_json::to_string(decoded).expect("every answer serializes");
    assert!(!line.contains('\n'), "answer spans lines: {line}");
    let answer: Value = serde_json::from_str(&line).expect("answer is JSON");
    assert_eq!(answer["kind"], decoded.kind());
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(
        topic in prop_oneof![
            Just("university-server.public.faculty".to_owned()),
            Just("__debezium-heartbeat.university-server".to_owned()),
            Just("university-server.transaction".to_owned()),
            Just("university-server".to_owned()),
            "\\PC{0,20}",
        ],
        key in proptest::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        value in proptest::option::of(prop::collection::vec(any::<u8>(), 0..256)),
    ) {
        assert_one_json_line(&decode(&topic, key.as_deref(), value.as_deref()));
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let text = value.to_string();
        assert_one_json_line(&decode("university-server.public.faculty", None, Some(text.as_bytes())));
    }

    #[test]
    fn generated_envelopes_decode_to_what_was_generated((env, text, topic) in envelope()) {
        prop_assert_eq!(decode(&topic, None, Some(text.as_bytes())), env.expected(), "{}", text);
    }

    #[test]
    fn generated_unwrapped_rows_decode_to_what_was_generated((row, text, topic) in unwrapped()) {
        prop_assert_eq!(decode(&topic, None, Some(text.as_bytes())), row.expected(), "{}", text);
    }

    #[test]
    fn every_proper_prefix_of_an_envelope_is_invalid((_, text, topic) in envelope(), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(text.len());
        let decoded = decode(&topic, None, Some(&text.as_bytes()[..cut]));
        prop_assert!(matches!(decoded, Decoded::Invalid { .. }), "{:?} from {:?}", decoded, String::from_utf8_lossy(&text.as_bytes()[..cut]));
    }
}
