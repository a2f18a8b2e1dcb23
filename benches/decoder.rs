//! Decoder throughput against a full `serde_json::Value` parse of the same bytes, side by side in one run.
//!
//! `cargo bench --bench decoder`. Target: the decoder at least 3x faster than the full parse on the
//! schema-included envelope and on the 1 MiB row.

use std::hint::black_box;

use cdc_orchestrator::decoder::{Decoded, decode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

const TOPIC: &str = "university-server.public.faculty";

fn source() -> Value {
    json!({
        "version": "2.7.3.Final", "connector": "postgresql", "name": "university-server",
        "ts_ms": 1_732_500_000_000_i64, "snapshot": "false", "db": "sourcedb",
        "sequence": "[\"34078712\",\"34078720\"]", "ts_us": 1_732_500_000_000_000_i64,
        "ts_ns": 1_732_500_000_000_000_000_i64, "schema": "public", "table": "faculty",
        "txId": 601, "lsn": 34_078_720, "xmin": null
    })
}

/// A 12-column faculty row.
fn row(id: i64) -> Value {
    json!({
        "id": id, "faculty_code": "FIKOM", "faculty_name": "Fakultas Ilmu Komputer dan Informatika",
        "dean": "Prof. Dr. Siti Rahmawati, M.Kom.", "email": "fikom@university.example.ac.id",
        "phone": "+62 21 555 0199", "building": "Gedung C, Lantai 4", "budget": "AYag",
        "established": 7305, "active": true, "created_at": 1_732_499_999_000_000_i64,
        "updated_at": 1_732_500_000_000_000_i64
    })
}

fn envelope(before: Value, after: Value) -> Value {
    json!({
        "before": before, "after": after, "source": source(), "transaction": null, "op": "u",
        "ts_ms": 1_732_500_000_037_i64, "ts_us": 1_732_500_000_037_000_i64, "ts_ns": 1_732_500_000_037_000_000_i64
    })
}

fn field(name: &str, kind: &str, optional: bool) -> Value {
    json!({"type": kind, "optional": optional, "field": name})
}

fn logical(name: &str, kind: &str, logical: &str, version: u32) -> Value {
    json!({"type": kind, "optional": true, "name": logical, "version": version, "field": name})
}

/// The schema block JsonConverter writes with `schemas.enable=true` for the 12-column table.
fn schema_block() -> Value {
    let columns = json!([
        {"type": "int32", "optional": false, "default": 0, "field": "id"},
        field("faculty_code", "string", false),
        field("faculty_name", "string", false),
        field("dean", "string", true),
        field("email", "string", true),
        field("phone", "string", true),
        field("building", "string", true),
        {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
         "parameters": {"scale": "2", "connect.decimal.precision": "14"}, "field": "budget"},
        logical("established", "int32", "io.debezium.time.Date", 1),
        field("active", "boolean", true),
        logical("created_at", "int64", "io.debezium.time.MicroTimestamp", 1),
        logical("updated_at", "int64", "io.debezium.time.MicroTimestamp", 1),
    ]);
    let value = |side: &str| {
        json!({"type": "struct", "fields": columns, "optional": true,
               "name": "university-server.public.faculty.Value", "field": side})
    };
    let source_fields = json!([
        field("version", "string", false),
        field("connector", "string", false),
        field("name", "string", false),
        field("ts_ms", "int64", false),
        {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
         "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
         "default": "false", "field": "snapshot"},
        field("db", "string", false),
        field("sequence", "string", true),
        field("ts_us", "int64", true),
        field("ts_ns", "int64", true),
        field("schema", "string", false),
        field("table", "string", false),
        field("txId", "int64", true),
        field("lsn", "int64", true),
        field("xmin", "int64", true),
    ]);
    json!({
        "type": "struct",
        "fields": [
            value("before"),
            value("after"),
            {"type": "struct", "fields": source_fields, "optional": false,
             "name": "io.debezium.connector.postgresql.Source", "field": "source"},
            {"type": "struct", "fields": [
                field("id", "string", false), field("total_order", "int64", false),
                field("data_collection_order", "int64", false)],
             "optional": true, "name": "event.block", "version": 1, "field": "transaction"},
            field("op", "string", false),
            field("ts_ms", "int64", true),
            field("ts_us", "int64", true),
            field("ts_ns", "int64", true),
        ],
        "optional": false,
        "name": "university-server.public.faculty.Envelope",
        "version": 2
    })
}

/// A ~1 MiB row: the 12 columns plus a JSONB document of many small objects and a base64 blob, the kind of
/// row that makes a full parse allocate.
fn large_row() -> Value {
    let mut after = row(1);
    let items: Vec<Value> = (0..6000)
        .map(|i| json!({"course": format!("IF{i:05}"), "credits": i % 6, "grade": "A-", "tags": ["core", "lab"], "score": 87.5}))
        .collect();
    let blob = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=".repeat(16 * 1024);
    if let Value::Object(columns) = &mut after {
        columns.insert("transcript".into(), Value::Array(items));
        columns.insert("attachment".into(), Value::String(blob));
    }
    envelope(Value::Null, after)
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let plain = serde_json::to_vec(&envelope(row(1), row(1))).expect("serializes");
    let wrapped = json!({"schema": schema_block(), "payload": envelope(row(1), row(1))});
    let wrapped = serde_json::to_vec(&wrapped).expect("serializes");
    let large = serde_json::to_vec(&large_row()).expect("serializes");
    vec![
        ("envelope_1k", plain),
        ("schema_included", wrapped),
        ("row_1mib", large),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, bytes) in cases() {
        // A bench that measured an error path would be meaningless.
        assert!(
            matches!(decode(TOPIC, None, Some(&bytes)), Decoded::Change(_)),
            "{name}"
        );
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: bytes.len() as u64,
        });
        if bytes.len() > 100_000 {
            group.sample_size(20);
        }
        group.bench_function("decoder", |b| b.iter(|| decode(TOPIC, None, Some(black_box(&bytes)))));
        group.bench_function("serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&bytes)).expect("valid JSON"))
        });
        group.finish();
        println!("{name}: {} bytes", bytes.len());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
