//! Decoder throughput on a file of record values, one JSON value per line: the Rust half of the decoder
//! comparison in `scripts/bench.sh` (`bench/json_loads.py` is the Python half, on the same file).
//!
//! `cargo run --release --example decode_throughput -- <values.jsonl> [rounds]` prints one JSON line:
//! records, rounds, ns per record, and how many records decoded as changes.

use std::hint::black_box;
use std::time::Instant;

use cdc_orchestrator::decoder::{Decoded, decode};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: decode_throughput <values.jsonl> [rounds]");
        return std::process::ExitCode::from(2);
    };
    let rounds: u32 = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{path}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let values: Vec<&[u8]> = text.lines().filter(|l| !l.is_empty()).map(str::as_bytes).collect();
    let topic = "university-server.public.bench";
    let mut changes = 0u64;
    for value in &values {
        if matches!(decode(topic, None, Some(value)), Decoded::Change(_)) {
            changes += 1;
        }
    }
    let started = Instant::now();
    for _ in 0..rounds {
        for value in &values {
            black_box(decode(topic, None, Some(black_box(value))));
        }
    }
    let elapsed = started.elapsed();
    let decoded = values.len() as f64 * f64::from(rounds);
    println!(
        "{{\"records\":{},\"rounds\":{rounds},\"ns_per_record\":{:.1},\"changes\":{changes}}}",
        values.len(),
        elapsed.as_nanos() as f64 / decoded.max(1.0)
    );
    std::process::ExitCode::SUCCESS
}
