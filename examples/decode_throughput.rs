//! Decoder throughput on a file of record values, one JSON value per line: the Rust half of the decoder
//! comparison in `scripts/bench.sh` (`bench/json_loads.py` is the Python half, on the same file).
//!
//! `cargo run --release --example decode_throughput -- <values.jsonl> [rounds]` prints one JSON line:
//! records, rounds, ns per record (wall), CPU ns per record (the thread's time on a CPU, from
//! `/proc/thread-self/schedstat`: on a shared machine the wall time includes waiting for a core), and how many
//! records decoded as changes.

use std::hint::black_box;
use std::time::Instant;

use cdc_orchestrator::decoder::{Decoded, decode};

/// Nanoseconds this thread has run on a CPU (the first field of `/proc/thread-self/schedstat`), if readable.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

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
    let cpu_started = thread_cpu_ns();
    let started = Instant::now();
    for _ in 0..rounds {
        for value in &values {
            black_box(decode(topic, None, Some(black_box(value))));
        }
    }
    let elapsed = started.elapsed();
    let cpu = thread_cpu_ns()
        .zip(cpu_started)
        .map(|(end, start)| end.saturating_sub(start));
    let decoded = values.len() as f64 * f64::from(rounds);
    println!(
        "{{\"records\":{},\"rounds\":{rounds},\"ns_per_record\":{:.1},\"cpu_ns_per_record\":{},\"changes\":{changes}}}",
        values.len(),
        elapsed.as_nanos() as f64 / decoded.max(1.0),
        cpu.map_or("null".to_owned(), |ns| format!("{:.1}", ns as f64 / decoded.max(1.0)))
    );
    std::process::ExitCode::SUCCESS
}
