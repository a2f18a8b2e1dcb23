//! The watcher's cost against a real tansu broker: one poll cycle at 10, 100 and 1,000 partitions (CPU time of
//! the thread that runs the watcher, and bytes counted by a proxy in front of the broker), and detection latency
//! from produce to activity event at 1 s polling. `cargo bench --bench watcher`; under `cargo test` it only says
//! how to run it.
//!
//! Each poll cycle is measured twice: the watcher's batched reads (one ListOffsets request per broker), and
//! beside them the per-partition reads they replaced (one rskafka request per partition over a partition client
//! each, [`PerPartition`]), which the sidecar no longer has.

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};

use cdc_orchestrator::config::KafkaConfig;
use cdc_orchestrator::kafka::watcher::WatchEvent;
use support::counting_proxy::CountingProxy;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// CPU seconds of the calling thread so far, in nanoseconds' resolution (`/proc/thread-self/schedstat`: time on
/// a CPU). The watcher runs on a current-thread runtime on this thread (rskafka's connection tasks included); the
/// byte-counting proxy runs on other threads, so its cost is not counted.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e9
}

fn config(broker: &support::Broker) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        request_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    }
}

/// Requests in flight at once in the per-partition reads, as the watcher's old fallback had.
const PER_PARTITION_CONCURRENCY: usize = 64;

/// How watermarks were read before batching: one rskafka ListOffsets request per partition, through a partition
/// client (and its connection) per partition, made once and kept.
struct PerPartition {
    partitions: Vec<Arc<PartitionClient>>,
}

impl PerPartition {
    /// Finds the topics of `client` that the default `kafka.topic_pattern` matches and a client for each partition.
    async fn new(client: &Client) -> PerPartition {
        let pattern = KafkaConfig::default().topic_regex().expect("default pattern");
        let mut partitions = Vec::new();
        for topic in client.list_topics().await.expect("list topics") {
            if !pattern.is_match(&topic.name) {
                continue;
            }
            for partition in topic.partitions {
                let made = client
                    .partition_client(topic.name.clone(), partition, UnknownTopicHandling::Error)
                    .await
                    .expect("partition client");
                partitions.push(Arc::new(made));
            }
        }
        PerPartition { partitions }
    }

    /// One poll: every partition's high watermark.
    async fn poll(&self) {
        let reads = self.partitions.iter().map(|p| p.get_offset(OffsetAt::Latest));
        let read: Vec<_> = futures::stream::iter(reads)
            .buffer_unordered(PER_PARTITION_CONCURRENCY)
            .collect()
            .await;
        assert!(read.iter().all(Result::is_ok), "every watermark read");
    }
}

async fn poll_cycle_cost(partitions: i32, batch_watermarks: bool, proxy_runtime: &tokio::runtime::Runtime) {
    let (listener, proxy_port) = CountingProxy::bind();
    let broker = support::Broker::start_advertising(&format!("127.0.0.1:{proxy_port}"));
    let proxy = {
        let _context = proxy_runtime.enter();
        CountingProxy::start(listener, broker.port())
    };
    let config = KafkaConfig {
        bootstrap: vec![proxy.bootstrap()],
        ..config(&broker)
    };
    let client = rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .build()
        .await
        .expect("connect through the proxy");
    let topics = (partitions / 10).max(1);
    let per_topic = partitions / topics;
    for t in 0..topics {
        support::create_topic(&client, &format!("university-server.public.t{t}"), per_topic).await;
    }
    let mut watcher = support::watcher(config).expect("config");
    let per_partition = if batch_watermarks {
        watcher.refresh().await.expect("refresh");
        watcher.poll().await.expect("baseline poll");
        None
    } else {
        let reader = PerPartition::new(&client).await;
        reader.poll().await;
        Some(reader)
    };
    let cycles = 20;
    let (cpu0, (r0, w0), wall0) = (thread_cpu_seconds(), proxy.bytes(), Instant::now());
    for _ in 0..cycles {
        match &per_partition {
            Some(reader) => reader.poll().await,
            None => drop(watcher.poll().await.expect("poll")),
        }
    }
    let cpu = (thread_cpu_seconds() - cpu0) / f64::from(cycles);
    let wall = wall0.elapsed().as_secs_f64() / f64::from(cycles);
    let (r1, w1) = proxy.bytes();
    println!(
        "poll cycle, {:>5} partitions, {}: {:>7.2} ms CPU ({:>5.2}% of one core at 1 s polling), {:>7.2} ms wall, \
         {:>8} B received, {:>8} B sent per cycle",
        per_partition
            .as_ref()
            .map_or(watcher.partitions(), |r| r.partitions.len()),
        if batch_watermarks {
            "batched     "
        } else {
            "per partition"
        },
        cpu * 1e3,
        cpu * 100.0,
        wall * 1e3,
        (r1 - r0) / u64::try_from(cycles).unwrap_or(1),
        (w1 - w0) / u64::try_from(cycles).unwrap_or(1),
    );
}

async fn detection_latency() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let tables: Vec<String> = (0..12).map(|i| format!("table{i}")).collect();
    for t in &tables {
        support::create_topic(&client, &format!("university-server.public.{t}"), 1).await;
    }
    let (tx, mut rx) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let watcher = support::watcher(KafkaConfig {
        poll_interval: Duration::from_secs(1),
        ..config(&broker)
    })
    .expect("config");
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    while !matches!(rx.recv().await, Some(WatchEvent::BrokerUp)) {}
    let mut latencies = Vec::new();
    let samples = 40;
    for i in 0..samples {
        let table = &tables[i % tables.len()];
        let value = format!(r#"{{"op":"c","source":{{"table":"{table}"}},"after":{{"id":{i}}}}}"#);
        // Spread produce times over the poll period so the latency distribution covers all phases.
        tokio::time::sleep(Duration::from_millis(137 + (i as u64 * 61) % 400)).await;
        let produced = Instant::now();
        support::produce(
            &client,
            &format!("university-server.public.{table}"),
            0,
            None,
            &[Some(value.as_bytes())],
        )
        .await;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(WatchEvent::Activity(a))) if &a.table == table => {
                    latencies.push(produced.elapsed());
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    println!("no activity for {table} within 5 s");
                    break;
                }
            }
        }
    }
    shutdown.cancel();
    let _ = task.await;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "detection latency at 1 s polling, {} samples: p50 {:?}, p99 {:?}, max {:?} (target p99 <= 1.2 s)",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/watcher.rs measures against a live broker; run it with `cargo bench --bench watcher`");
        return;
    }
    let watcher_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let proxy_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("proxy runtime");
    watcher_runtime.block_on(async {
        for partitions in [10, 100, 1000] {
            for batch_watermarks in [false, true] {
                poll_cycle_cost(partitions, batch_watermarks, &proxy_runtime).await;
            }
        }
        detection_latency().await;
    });
}
