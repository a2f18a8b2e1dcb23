//! Cost of one policy decision as the number of tables grows, and replay throughput.
//!
//! `cargo bench --bench policy` prints time per `handle` call for 10, 100 and 1000 tables side by side.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use cdc_orchestrator::cli::replay::{self, ReplayOptions};
use cdc_orchestrator::config::{FlinkConfig, PolicyConfig};
use cdc_orchestrator::model::{JobState, Millis, job_id_for};
use cdc_orchestrator::policy::{Activity, Input, JobObservation, Policy, PolicySettings};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn settings() -> PolicySettings {
    let flink = FlinkConfig {
        starts_per_minute: 1_000_000,
        start_burst: 100_000,
        max_concurrent_jobs: 100_000,
        ..FlinkConfig::default()
    };
    PolicySettings::new(PolicyConfig::default(), &flink, 0)
}

/// A policy with `tables` tables, each with a running job.
fn busy_policy(tables: usize) -> (Policy, Vec<String>) {
    let mut policy = Policy::new(settings());
    let names: Vec<String> = (0..tables).map(|i| format!("table_{i}")).collect();
    for name in &names {
        policy.handle(Millis(0), activity(name));
        policy.handle(
            Millis(0),
            Input::JobState(JobObservation {
                table: name.clone(),
                job_id: job_id_for(name, 1),
                generation: Some(1),
                state: JobState::Running,
            }),
        );
    }
    (policy, names)
}

fn activity(table: &str) -> Input {
    Input::Activity(Activity {
        table: table.to_owned(),
        records: 5,
        ..Activity::default()
    })
}

fn handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_handle");
    group.measurement_time(Duration::from_secs(3)).sample_size(30);
    for tables in [10usize, 100, 1_000] {
        group.bench_with_input(BenchmarkId::new("activity", tables), &tables, |b, &tables| {
            let (mut policy, names) = busy_policy(tables);
            let mut i = 0usize;
            b.iter(|| {
                i += 1;
                // Time moves 1 ms per call, so no job ever idles out and the state stays the same size.
                let actions = policy.handle(Millis(i as u64), activity(&names[i % names.len()]));
                black_box(actions);
            });
        });
        group.bench_with_input(BenchmarkId::new("tick_and_deadline", tables), &tables, |b, &tables| {
            let (mut policy, _) = busy_policy(tables);
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                black_box(policy.handle(Millis(i), Input::Tick));
                black_box(policy.next_deadline());
            });
        });
    }
    group.finish();
}

fn replay_throughput(c: &mut Criterion) {
    let lines = 10_000u64;
    let mut trace = String::new();
    for i in 0..lines {
        let table = format!("table_{}", i % 50);
        if i % 10 == 0 {
            trace.push_str(&format!(
                "{{\"t_ms\":{},\"input\":\"job\",\"table\":\"{table}\",\"state\":\"RUNNING\"}}\n",
                i * 100
            ));
        } else {
            trace.push_str(&format!(
                "{{\"t_ms\":{},\"input\":\"activity\",\"table\":\"{table}\",\"records\":3,\"ops\":{{\"c\":2,\"u\":1}}}}\n",
                i * 100
            ));
        }
    }
    let mut group = c.benchmark_group("replay");
    group.measurement_time(Duration::from_secs(3)).sample_size(10);
    group.throughput(Throughput::Elements(lines));
    group.bench_function("10k_lines_50_tables", |b| {
        b.iter(|| {
            let summary = replay::replay(
                settings(),
                trace.as_bytes(),
                io::sink(),
                io::sink(),
                ReplayOptions::default(),
            )
            .expect("replay");
            black_box(summary);
        });
    });
    group.finish();
}

criterion_group!(benches, handle, replay_throughput);
criterion_main!(benches);
