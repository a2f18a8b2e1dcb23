//! Every shape, every way of being invalid, and the depth bound against a naive reference scan.

use super::json::{Depth, check_depth};
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
    let json = r#"{"after":{},"source":{"table":"program","schema":"public","snapshot":"last"},"op":"r","ts_ms":7}"#;
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
    assert!(invalid(br#"{"status":"MAYBE","id":"1","data_collections":null}"#).contains("unknown transaction status"));
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
    let (mut depth, mut in_string, mut escaped) = (Depth::default(), false, false);
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
        if b == b'"' {
            in_string = true;
        } else {
            depth.step(b)?;
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
fn write_json_writes_what_serde_writes() {
    let change = |table_from_record, schema: Option<&str>, op, snapshot, ts_ms| {
        Decoded::Change(Change {
            table: "fac\"ul\\ty\u{1}é".to_owned(),
            table_from_record,
            schema: schema.map(str::to_owned),
            op,
            snapshot,
            ts_ms,
        })
    };
    let mut every = vec![
        change(true, Some("public"), Some(Op::Create), false, Some(1_700_000_000_000)),
        change(false, None, None, true, None),
        change(true, Some("a\nb"), Some(Op::Truncate), true, Some(i64::MIN)),
        change(false, Some(""), Some(Op::Read), false, Some(-1)),
        Decoded::Tombstone { table: "t".into() },
        Decoded::Heartbeat,
        Decoded::Transaction { status: "BEGIN".into() },
        Decoded::Message,
        Decoded::SchemaChange,
        Decoded::Opaque { table: "".into() },
        Decoded::invalid("not JSON: \"x\"\t\u{7f}"),
    ];
    every.extend(Op::ALL.map(|op| change(true, None, Some(op), false, Some(i64::MAX))));
    for decoded in every {
        let mut written = Vec::new();
        decoded.write_json(&mut written).expect("a Vec takes every write");
        let written = String::from_utf8(written).expect("utf-8");
        assert_eq!(written, serde_json::to_string(&decoded).expect("serializes"));
    }
}

#[test]
fn the_display_guess_is_the_last_segment() {
    assert_eq!(guessed_table("university-server.public.faculty"), "faculty");
    assert_eq!(guessed_table("plain"), "plain");
}

/// The fields of each record's row image, read as the watcher reads a sample.
fn seen_fields(records: &[&str]) -> SeenFields {
    let mut seen = SeenFields::default();
    for record in records {
        let (_, row) = decode_row(TOPIC_FOR_FIELDS, None, Some(record.as_bytes()));
        if let Some(row) = row {
            seen.add(&row);
        }
    }
    seen
}

const TOPIC_FOR_FIELDS: &str = "university-server.public.faculty";

fn names(seen: &SeenFields) -> Vec<&str> {
    seen.names.keys().map(String::as_str).collect()
}

#[test]
fn a_change_gives_the_fields_of_after_and_a_delete_those_of_before() {
    let seen = seen_fields(&[
        r#"{"op":"c","source":{"table":"faculty"},"before":null,"after":{"id":1,"name":"a","nested":{"x":[1,{"y":2}]}}}"#,
        r#"{"op":"u","source":{"table":"faculty"},"before":{"id":1},"after":{"id":1,"extra":true}}"#,
        r#"{"op":"d","source":{"table":"faculty"},"before":{"id":1,"gone_key":2},"after":null}"#,
    ]);
    assert_eq!(names(&seen), ["extra", "gone_key", "id", "name", "nested"]);
    assert_eq!(
        (seen.rows, seen.full_rows),
        (3, 2),
        "the delete's before is no full row"
    );
    assert!(seen.in_every_full_row("id"));
    assert!(!seen.in_every_full_row("name"), "absent from the update's after");
    assert!(!seen.in_every_full_row("gone_key"), "only in a delete's before");
    // The decoded record is what `decode` says.
    let record = br#"{"op":"c","source":{"table":"faculty"},"after":{"id":1}}"#;
    assert_eq!(
        decode_row(TOPIC_FOR_FIELDS, None, Some(record)).0,
        decode(TOPIC_FOR_FIELDS, None, Some(record))
    );
}

#[test]
fn schema_wrapped_and_unwrapped_rows_give_their_fields_without_the_transforms() {
    let seen = seen_fields(&[
        r#"{"schema":{"type":"struct"},"payload":{"op":"c","source":{"table":"faculty"},"after":{"id":1,"w":2}}}"#,
        r#"{"id":2,"w":3,"__op":"u","__table":"faculty"}"#,
        r#"{"id":3,"__deleted":"true"}"#,
    ]);
    assert_eq!(names(&seen), ["id", "w"]);
    assert_eq!(seen.full_rows, 2, "the unwrapped delete is no full row");
}

#[test]
fn records_without_a_row_image_give_no_fields() {
    for record in [
        r#"{"op":"c","source":{"table":"faculty"},"after":null}"#,
        r#"{"op":"d","source":{"table":"faculty"},"before":null,"after":null}"#,
        r#"{"op":"c","source":{"table":"faculty"},"after":[1,2]}"#,
        r#"{"status":"BEGIN","id":"1","data_collections":null}"#,
        "not json",
    ] {
        let (_, row) = decode_row(TOPIC_FOR_FIELDS, None, Some(record.as_bytes()));
        assert!(row.is_none(), "{record}");
    }
}

#[test]
fn hostile_field_names_are_bounded_in_number_and_length_and_kept_verbatim() {
    let long = "x".repeat(MAX_FIELD_NAME_BYTES + 1);
    let at_limit = "y".repeat(MAX_FIELD_NAME_BYTES);
    let many: Vec<String> = (0..MAX_FIELD_NAMES + 50).map(|i| format!("\"f{i}\":0")).collect();
    let record = format!(
        r#"{{"op":"c","source":{{"table":"faculty"}},"after":{{"{long}":1,"{at_limit}":2,"a\"b\n\u001b[31m":3,"dup":1,"dup":2,{}}}}}"#,
        many.join(",")
    );
    let seen = seen_fields(&[&record]);
    assert_eq!(seen.names.len(), MAX_FIELD_NAMES);
    assert_eq!(seen.too_long, 1);
    assert!(seen.names.contains_key(&at_limit));
    assert!(
        seen.names.contains_key("a\"b\n\u{1b}[31m"),
        "unescaped from JSON, escaped only when shown"
    );
    assert_eq!(seen.names["dup"].full_rows, 1, "a repeated key counts once per row");
    assert_eq!(seen.overflow, 53, "the names past the bound are counted");
    // Merging keeps the bound.
    let mut merged = seen.clone();
    merged.merge(&seen_fields(&[
        r#"{"op":"c","source":{"table":"faculty"},"after":{"brand_new":1}}"#,
    ]));
    assert_eq!(merged.names.len(), MAX_FIELD_NAMES);
    assert_eq!(merged.overflow, 54);
    assert_eq!(merged.rows, 2);
}
