//! Our own decoder cases, one table: every kind, and every way of being invalid with the reason it gives.

use cdc_orchestrator::decoder::{Change, Decoded, decode};
use cdc_orchestrator::model::Op;

const FACULTY: &str = "university-server.public.faculty";
const TX: &str = "university-server.transaction";
const HEARTBEAT: &str = "__debezium-heartbeat.university-server";
const SERVER: &str = "university-server";

/// What a case must decode to.
enum Want {
    Is(Decoded),
    /// `invalid`, with an error containing this text.
    Invalid(&'static str),
}

/// A change whose record names its table (`source.table` or `__table`).
fn change(table: &str, schema: Option<&str>, op: Option<Op>, snapshot: bool, ts_ms: Option<i64>) -> Want {
    Want::Is(Decoded::Change(Change {
        table: table.to_owned(),
        table_from_record: true,
        schema: schema.map(str::to_owned),
        op,
        snapshot,
        ts_ms,
    }))
}

/// A change whose record names no table: the `decode` command shows the topic's last segment.
fn topic_change(table: &str, schema: Option<&str>, op: Option<Op>, snapshot: bool, ts_ms: Option<i64>) -> Want {
    Want::Is(Decoded::Change(Change {
        table: table.to_owned(),
        table_from_record: false,
        schema: schema.map(str::to_owned),
        op,
        snapshot,
        ts_ms,
    }))
}

fn tombstone(table: &str) -> Want {
    Want::Is(Decoded::Tombstone {
        table: table.to_owned(),
    })
}

fn transaction(status: &str) -> Want {
    Want::Is(Decoded::Transaction {
        status: status.to_owned(),
    })
}

fn opaque(table: &str) -> Want {
    Want::Is(Decoded::Opaque {
        table: table.to_owned(),
    })
}

/// `(name, topic, value, expected)`.
fn cases() -> Vec<(&'static str, &'static str, Option<Vec<u8>>, Want)> {
    let v = |s: &str| Some(s.as_bytes().to_vec());
    let deep = |levels: usize| {
        Some(
            format!(
                "{{\"op\":\"c\",\"after\":{}{}}}",
                "[".repeat(levels),
                "]".repeat(levels)
            )
            .into_bytes(),
        )
    };
    vec![
        // change: envelopes
        (
            "create",
            FACULTY,
            v(
                r#"{"before":null,"after":{"id":1},"source":{"schema":"public","table":"faculty","snapshot":"false","ts_ms":10},"op":"c","ts_ms":11}"#,
            ),
            change("faculty", Some("public"), Some(Op::Create), false, Some(10)),
        ),
        (
            "update",
            FACULTY,
            v(r#"{"op":"u","before":{"id":1},"after":{"id":1},"source":{"table":"faculty","ts_ms":10}}"#),
            change("faculty", None, Some(Op::Update), false, Some(10)),
        ),
        (
            "delete",
            FACULTY,
            v(r#"{"op":"d","before":{"id":1},"after":null,"source":{"table":"faculty"},"ts_ms":11}"#),
            change("faculty", None, Some(Op::Delete), false, Some(11)),
        ),
        (
            "snapshot read",
            FACULTY,
            v(r#"{"op":"r","after":{},"source":{"table":"faculty","snapshot":"first"}}"#),
            change("faculty", None, Some(Op::Read), true, None),
        ),
        (
            "incremental snapshot",
            FACULTY,
            v(r#"{"op":"r","after":{},"source":{"table":"faculty","snapshot":"incremental"}}"#),
            change("faculty", None, Some(Op::Read), true, None),
        ),
        (
            "snapshot as boolean (old connectors)",
            FACULTY,
            v(r#"{"op":"r","after":{},"source":{"snapshot":true}}"#),
            topic_change("faculty", None, Some(Op::Read), true, None),
        ),
        (
            "truncate",
            FACULTY,
            v(r#"{"op":"t","before":null,"after":null,"source":{"table":"faculty","schema":"public"}}"#),
            change("faculty", Some("public"), Some(Op::Truncate), false, None),
        ),
        (
            "routed topic takes source.table",
            "all-tables",
            v(r#"{"op":"c","after":{},"source":{"table":"program"}}"#),
            change("program", None, Some(Op::Create), false, None),
        ),
        (
            "source without table takes the topic",
            FACULTY,
            v(r#"{"op":"c","after":{},"source":{"db":"x"}}"#),
            topic_change("faculty", None, Some(Op::Create), false, None),
        ),
        (
            "null source",
            FACULTY,
            v(r#"{"op":"c","after":{},"source":null,"ts_ms":3}"#),
            topic_change("faculty", None, Some(Op::Create), false, Some(3)),
        ),
        (
            "unicode table, escaped",
            FACULTY,
            v(r#"{"op":"c","after":{},"source":{"table":"fakult\u00e4t \"x\""}}"#),
            change("fakultät \"x\"", None, Some(Op::Create), false, None),
        ),
        (
            "Debezium 2.x ts_us/ts_ns and transaction",
            FACULTY,
            v(
                r#"{"op":"c","after":{},"source":{"ts_ms":1,"ts_us":1000,"ts_ns":1000000},"ts_ms":2,"ts_us":2000,"ts_ns":2000000,"transaction":{"id":"1:2","total_order":1,"data_collection_order":1}}"#,
            ),
            topic_change("faculty", None, Some(Op::Create), false, Some(1)),
        ),
        (
            "schema wrapper",
            FACULTY,
            v(
                r#"{"schema":{"type":"struct","fields":[{"field":"op","type":"string"}]},"payload":{"op":"u","after":{},"source":{"table":"faculty"}}}"#,
            ),
            change("faculty", None, Some(Op::Update), false, None),
        ),
        // change: unwrapped rows
        (
            "unwrapped without __ fields",
            FACULTY,
            v(r#"{"id":1,"name":"x"}"#),
            topic_change("faculty", None, None, false, None),
        ),
        (
            "unwrapped with __op",
            FACULTY,
            v(r#"{"id":1,"__op":"c","__source_ts_ms":5}"#),
            topic_change("faculty", None, Some(Op::Create), false, Some(5)),
        ),
        (
            "unwrapped rewrite delete",
            FACULTY,
            v(r#"{"id":1,"__deleted":"true"}"#),
            topic_change("faculty", None, Some(Op::Delete), false, None),
        ),
        (
            "unwrapped not deleted",
            FACULTY,
            v(r#"{"id":1,"__deleted":"false"}"#),
            topic_change("faculty", None, None, false, None),
        ),
        (
            "unwrapped __table and __schema",
            "all-tables",
            v(r#"{"id":1,"__op":"u","__table":"program","__schema":"public"}"#),
            change("program", Some("public"), Some(Op::Update), false, None),
        ),
        (
            "unwrapped snapshot read",
            FACULTY,
            v(r#"{"id":1,"__op":"r"}"#),
            topic_change("faculty", None, Some(Op::Read), true, None),
        ),
        (
            "unwrapped in schema wrapper",
            FACULTY,
            v(r#"{"schema":{"type":"struct"},"payload":{"id":1,"__op":"d","__deleted":"true"}}"#),
            topic_change("faculty", None, Some(Op::Delete), false, None),
        ),
        (
            "unwrapped columns named like envelope fields",
            FACULTY,
            v(r#"{"id":1,"status":"active","op":"c","ts_ms":"soon"}"#),
            topic_change("faculty", None, None, false, None),
        ),
        // tombstone
        ("tombstone", FACULTY, None, tombstone("faculty")),
        (
            "wrapped null payload",
            FACULTY,
            v(r#"{"schema":null,"payload":null}"#),
            tombstone("faculty"),
        ),
        // heartbeat
        (
            "heartbeat",
            HEARTBEAT,
            v(r#"{"ts_ms":1732500000000}"#),
            Want::Is(Decoded::Heartbeat),
        ),
        (
            "heartbeat with a garbage value",
            HEARTBEAT,
            v("not even json"),
            Want::Is(Decoded::Heartbeat),
        ),
        // transaction
        (
            "transaction BEGIN",
            TX,
            v(r#"{"status":"BEGIN","id":"571:53195829","event_count":null,"data_collections":null,"ts_ms":1}"#),
            transaction("BEGIN"),
        ),
        (
            "transaction END",
            TX,
            v(
                r#"{"status":"END","id":"571:53195829","event_count":2,"data_collections":[{"data_collection":"public.faculty","event_count":2}]}"#,
            ),
            transaction("END"),
        ),
        (
            "transaction on a renamed topic",
            "tx-meta",
            v(r#"{"status":"END","id":"1","data_collections":[]}"#),
            transaction("END"),
        ),
        // message, schema change, opaque
        (
            "logical message",
            "university-server.message",
            v(r#"{"op":"m","ts_ms":1,"source":{"table":""},"message":{"prefix":"p","content":"eA=="}}"#),
            Want::Is(Decoded::Message),
        ),
        (
            "DDL event",
            SERVER,
            v(
                r#"{"source":{"server":"university-server"},"databaseName":"db","ddl":"CREATE TABLE t (id INT)","tableChanges":[]}"#,
            ),
            Want::Is(Decoded::SchemaChange),
        ),
        (
            "schema history record",
            SERVER,
            v(r#"{"source":{"server":"s"},"position":{},"historyRecord":"{}"}"#),
            Want::Is(Decoded::SchemaChange),
        ),
        (
            "Confluent Avro",
            FACULTY,
            Some(b"\x00\x00\x00\x00\x07\x02\x06abc".to_vec()),
            opaque("faculty"),
        ),
        (
            "Confluent wire format, header only",
            FACULTY,
            Some(vec![0, 0, 0, 1, 0]),
            opaque("faculty"),
        ),
        // invalid
        ("empty", FACULTY, Some(Vec::new()), Want::Invalid("empty record")),
        (
            "white space only",
            FACULTY,
            v(" \n\t "),
            Want::Invalid("empty record (only white space)"),
        ),
        ("not JSON", FACULTY, v("hello world"), Want::Invalid("not JSON")),
        (
            "truncated JSON",
            FACULTY,
            v(r#"{"op":"c","after":{"id"#),
            Want::Invalid("truncated JSON"),
        ),
        (
            "trailing garbage",
            FACULTY,
            v(r#"{"op":"c","source":{}} x"#),
            Want::Invalid("not JSON"),
        ),
        (
            "invalid UTF-8",
            FACULTY,
            Some(b"{\"op\":\"c\",\"source\":{\"table\":\"\xc3\x28\"}}".to_vec()),
            Want::Invalid("invalid UTF-8 at byte 29"),
        ),
        ("short binary", FACULTY, Some(vec![0, 0, 1]), Want::Invalid("not JSON")),
        (
            "array",
            FACULTY,
            v("[1,2]"),
            Want::Invalid("expected a JSON object, found an array"),
        ),
        (
            "string",
            FACULTY,
            v(r#""x""#),
            Want::Invalid("expected a JSON object, found a string"),
        ),
        (
            "number",
            FACULTY,
            v("-1.5"),
            Want::Invalid("expected a JSON object, found a number"),
        ),
        (
            "boolean",
            FACULTY,
            v("true"),
            Want::Invalid("expected a JSON object, found a boolean"),
        ),
        (
            "null",
            FACULTY,
            v("null"),
            Want::Invalid("expected a JSON object, found null"),
        ),
        (
            "too deep",
            FACULTY,
            deep(128),
            Want::Invalid("JSON nested deeper than 128 levels"),
        ),
        (
            "op of the wrong type",
            FACULTY,
            v(r#"{"op":1,"source":{}}"#),
            Want::Invalid("op: unexpected JSON shape"),
        ),
        (
            "unknown op",
            FACULTY,
            v(r#"{"op":"x","source":{}}"#),
            Want::Invalid("unknown op \"x\""),
        ),
        (
            "source not an object",
            FACULTY,
            v(r#"{"op":"c","source":"faculty"}"#),
            Want::Invalid("source: expected a JSON object"),
        ),
        (
            "source.table of the wrong type",
            FACULTY,
            v(r#"{"op":"c","source":{"table":["faculty"]}}"#),
            Want::Invalid("source: unexpected JSON shape"),
        ),
        (
            "source.ts_ms of the wrong type",
            FACULTY,
            v(r#"{"op":"c","source":{"ts_ms":"1"}}"#),
            Want::Invalid("source: unexpected JSON shape"),
        ),
        (
            "ts_ms of the wrong type",
            FACULTY,
            v(r#"{"op":"c","source":{},"ts_ms":1.5}"#),
            Want::Invalid("ts_ms:"),
        ),
        (
            "envelope without op",
            FACULTY,
            v(r#"{"before":null,"after":{},"source":{"table":"faculty"}}"#),
            Want::Invalid("envelope without op"),
        ),
        (
            "unknown __op",
            FACULTY,
            v(r#"{"id":1,"__op":"x"}"#),
            Want::Invalid("unknown __op \"x\""),
        ),
        (
            "__op of the wrong type",
            FACULTY,
            v(r#"{"id":1,"__op":1}"#),
            Want::Invalid("unexpected JSON shape"),
        ),
        (
            "__deleted neither true nor false",
            FACULTY,
            v(r#"{"id":1,"__deleted":"yes"}"#),
            Want::Invalid("__deleted"),
        ),
        (
            "unknown transaction status",
            TX,
            v(r#"{"status":"COMMIT","id":"1"}"#),
            Want::Invalid("unknown transaction status \"COMMIT\""),
        ),
        (
            "transaction status of the wrong type",
            TX,
            v(r#"{"status":1,"id":"1"}"#),
            Want::Invalid("status:"),
        ),
        (
            "duplicate op",
            FACULTY,
            v(r#"{"op":"c","op":"d","source":{}}"#),
            Want::Invalid("duplicate field `op`"),
        ),
        (
            "payload not an object",
            FACULTY,
            v(r#"{"schema":{},"payload":"x"}"#),
            Want::Invalid("payload: expected a JSON object"),
        ),
    ]
}

#[test]
fn own_cases() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for (name, topic, value, want) in &cases {
        let got = decode(topic, Some(b"{\"id\":1}"), value.as_deref());
        let ok = match (want, &got) {
            (Want::Is(want), got) => want == got,
            (Want::Invalid(fragment), Decoded::Invalid { error }) => error.contains(fragment) && !error.contains('\n'),
            (Want::Invalid(_), _) => false,
        };
        if !ok {
            failures.push(format!("{name}: got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_cases_cover_every_kind() {
    let kinds: std::collections::BTreeSet<&str> = cases()
        .iter()
        .map(|(_, topic, value, _)| decode(topic, None, value.as_deref()).kind())
        .collect();
    let all = [
        "change",
        "tombstone",
        "heartbeat",
        "transaction",
        "message",
        "schema_change",
        "opaque",
        "invalid",
    ];
    assert_eq!(kinds, all.into_iter().collect());
}

#[test]
fn nesting_up_to_the_limit_is_fine() {
    let value = format!("{{\"op\":\"c\",\"after\":{}{}}}", "[".repeat(127), "]".repeat(127));
    assert!(matches!(
        decode(FACULTY, None, Some(value.as_bytes())),
        Decoded::Change(_)
    ));
}
