//! Produces Debezium change envelopes (JsonConverter, schemas disabled: the stack's format) to a broker, for
//! the demo and the benchmarks.
//!
//! `cargo run --example produce -- --broker 127.0.0.1:9092 --table faculty --table program --count 3`
//!
//! With `--rate`, records are paced against a schedule (not a sleep after each), so the rate holds while the
//! broker keeps up; `--log FILE` writes `table produce_ms` per record for the benchmark's latency pairing.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;

#[derive(Debug, Parser)]
struct Args {
    /// Bootstrap broker, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    broker: String,
    /// Debezium topic prefix.
    #[arg(long, default_value = "university-server")]
    prefix: String,
    /// Tables to write to (repeat); each gets `count` records.
    #[arg(long = "table", required = true)]
    tables: Vec<String>,
    /// Records per table.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Operation letter written in `op`.
    #[arg(long, default_value = "c")]
    op: String,
    /// Pad each record's `after` to about this many bytes.
    #[arg(long, default_value_t = 0)]
    pad: usize,
    /// Records per second over all tables (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Create missing topics with this many partitions.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Write `table produce_ms` per record to this file.
    #[arg(long)]
    log: Option<std::path::PathBuf>,
    /// Write `count` records in all, each to a table and partition (of `partitions`) drawn at random, instead of
    /// `count` per table to partition 0 (the benchmark's detection check at 120,000 partitions).
    #[arg(long)]
    random: bool,
    /// Produce requests in flight at once (still one record each): rates past one broker round trip.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn envelope(table: &str, id: u64, op: &str, pad: usize, now_ms: u128) -> Vec<u8> {
    let row = serde_json::json!({ "id": id, "name": format!("row {id}"), "padding": "x".repeat(pad) });
    let (before, after) = if op == "d" {
        (row, serde_json::Value::Null)
    } else {
        (serde_json::Value::Null, row)
    };
    serde_json::to_vec(&serde_json::json!({
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final", "connector": "postgresql", "name": "university-server",
            "ts_ms": now_ms, "snapshot": "false", "db": "sourcedb", "schema": "public", "table": table,
        },
        "op": op,
        "ts_ms": now_ms,
        "transaction": null,
    }))
    .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        ClientBuilder::new(vec![args.broker.clone()]).build(),
    )
    .await??;
    let existing: Vec<String> = client.list_topics().await?.into_iter().map(|t| t.name).collect();
    let controller = client.controller_client()?;
    let mut topics = Vec::new();
    for table in &args.tables {
        let topic = format!("{}.public.{table}", args.prefix);
        if !existing.contains(&topic) {
            controller.create_topic(&topic, args.partitions, 1, 5_000).await?;
        }
        topics.push((table.clone(), topic));
    }
    // Which (table index, partition) each record goes to, in produce order.
    let mut rng = rand::rng();
    let targets: Vec<(usize, i32)> = if args.random {
        (0..args.count)
            .map(|_| {
                (
                    rand::RngExt::random_range(&mut rng, 0..topics.len()),
                    rand::RngExt::random_range(&mut rng, 0..args.partitions.max(1)),
                )
            })
            .collect()
    } else {
        (0..args.count)
            .flat_map(|_| (0..topics.len()).map(|t| (t, 0)))
            .collect()
    };
    let mut clients = std::collections::HashMap::new();
    for &(t, p) in &targets {
        if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry((t, p)) {
            slot.insert(
                client
                    .partition_client(topics[t].1.as_str(), p, UnknownTopicHandling::Retry)
                    .await?,
            );
        }
    }
    let gap = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut log = match &args.log {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let started = Instant::now();
    let mut produced = 0u64;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for (seq, &(t, p)) in targets.iter().enumerate() {
        let table = &topics[t].0;
        if let Some(gap) = gap {
            tokio::time::sleep_until((started + gap.mul_f64(seq as f64)).into()).await;
        }
        let now_ms = now_ms();
        let id = seq as u64 / topics.len() as u64 + 1;
        let record = Record {
            key: Some(format!("{{\"id\":{id}}}").into_bytes()),
            value: Some(envelope(table, id, &args.op, args.pad, now_ms)),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        let pc = &clients[&(t, p)];
        // One record per batch: tansu mishandles multi-record batches.
        in_flight.push(pc.produce(vec![record], Compression::NoCompression));
        while in_flight.len() >= args.in_flight.max(1) {
            if let Some(result) = futures::StreamExt::next(&mut in_flight).await {
                result?;
            }
        }
        if let Some(log) = log.as_mut() {
            writeln!(log, "{table} {now_ms}")?;
        }
        produced += 1;
    }
    while let Some(result) = futures::StreamExt::next(&mut in_flight).await {
        result?;
    }
    if let Some(mut log) = log {
        log.flush()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {produced} records to {} table(s) in {seconds:.1} s ({:.0}/s)",
        topics.len(),
        produced as f64 / seconds.max(1e-9)
    );
    Ok(())
}
