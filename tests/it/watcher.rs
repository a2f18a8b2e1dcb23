//! The watcher against a real tansu broker: activity, topic discovery, heartbeats, broker restarts and lag.

use std::time::Duration;

use cdc_orchestrator::config::{Config, KafkaConfig, PolicyConfig};
use cdc_orchestrator::kafka::connection::{Pool, Security};
use cdc_orchestrator::kafka::lag::{LagReader, PartitionOffsets};
use cdc_orchestrator::kafka::watcher::{TableActivity, WatchEvent, Watcher};
use cdc_orchestrator::model::Op;
use rskafka::client::partition::OffsetAt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support;

const PREFIX: &str = "university-server.public.";

fn config(broker: &support::Broker) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        poll_interval: Duration::from_millis(200),
        topic_refresh: Duration::from_millis(400),
        request_timeout: Duration::from_secs(2),
        // Most tests look at the operations of every advance; `sample_interval` has its own test.
        sample_interval: Duration::ZERO,
        ..KafkaConfig::default()
    }
}

async fn produce(client: &rskafka::client::Client, topic: &str, values: &[Vec<u8>]) {
    let values: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_slice())).collect();
    support::produce(client, topic, 0, Some(b"{\"id\":1}"), &values).await;
}

struct Running {
    events: mpsc::Receiver<WatchEvent>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(config: KafkaConfig) -> Running {
    start_counting(config, &Op::ALL)
}

/// [`start`] with `counted` as `policy.operations`, the operations that count as changes for every table. With
/// none, no newest record settles a first sample, so every first sample is a full one.
fn start_counting(config: KafkaConfig, counted: &[Op]) -> Running {
    let (tx, events) = mpsc::channel(1024);
    let shutdown = CancellationToken::new();
    let full = Config {
        kafka: config,
        policy: PolicyConfig {
            operations: counted.to_vec(),
            ..PolicyConfig::default()
        },
        ..Config::default()
    };
    // The sidecar's routing: the built-in templates' tables can start.
    let templated = cdc_orchestrator::sql::known_tables(&full).expect("built-in templates");
    let watcher = Watcher::new(&full, templated).expect("valid config");
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    Running { events, shutdown, task }
}

impl Running {
    /// The next activity within `within`, skipping other events.
    async fn activity(&mut self, within: Duration) -> Option<TableActivity> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(WatchEvent::Activity(a))) => return Some(a),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn event(&mut self, within: Duration, want: impl Fn(&WatchEvent) -> bool) -> Option<WatchEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) if want(&e) => return Some(e),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops on shutdown")
            .expect("join");
    }
}

/// Waits until the watcher has polled its baseline (first BrokerUp).
async fn ready(running: &mut Running) {
    running
        .event(Duration::from_secs(10), |e| matches!(e, WatchEvent::BrokerUp))
        .await
        .expect("watcher reaches the broker");
}

#[tokio::test]
async fn activity_names_the_table_and_its_operations_within_two_polls() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    support::create_topic(&client, &format!("{PREFIX}faculty"), 1).await;
    support::create_topic(&client, &format!("{PREFIX}program"), 1).await;
    // Full first samples, whose operations this test checks (the one-record first sample has its own test).
    let mut running = start_counting(config(&broker), &[]);
    ready(&mut running).await;
    produce(
        &client,
        &format!("{PREFIX}faculty"),
        &[
            support::envelope("faculty", "c"),
            support::envelope("faculty", "u"),
            support::envelope("faculty", "c"),
        ],
    )
    .await;
    let a = running
        .activity(Duration::from_millis(1_500))
        .await
        .expect("activity within a few polls");
    assert_eq!(
        (a.table.as_str(), a.topic.as_str(), a.partition),
        ("faculty", "university-server.public.faculty", 0)
    );
    let mut seen = a.ops.clone();
    let mut records = a.records;
    // The three records may straddle two polls.
    while records < 3 {
        let more = running
            .activity(Duration::from_millis(500))
            .await
            .expect("rest of the records");
        records += more.records;
        for (op, n) in more.ops {
            *seen.entry(op).or_default() += n;
        }
    }
    assert_eq!(records, 3);
    assert_eq!(seen, [(Op::Create, 2), (Op::Update, 1)].into_iter().collect());
    assert_eq!(a.newest_ts_ms, Some(1_700_000_000_000));
    assert!(
        running.activity(Duration::from_millis(600)).await.is_none(),
        "nothing more happened"
    );
    running.stop().await;
}

#[tokio::test]
async fn topics_outside_the_pattern_and_heartbeats_are_not_activity() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let heartbeat = "__debezium-heartbeat.university-server";
    support::create_topic(&client, "other-server.public.faculty", 1).await;
    support::create_topic(&client, heartbeat, 1).await;
    support::create_topic(&client, "university-server.transaction", 1).await;
    // Watch everything, so that heartbeat and transaction topics are polled too.
    let mut running = start(KafkaConfig {
        topic_pattern: ".*".into(),
        ..config(&broker)
    });
    ready(&mut running).await;
    produce(
        &client,
        heartbeat,
        &[
            br#"{"ts_ms":1700000000000}"#.to_vec(),
            br#"{"ts_ms":1700000001000}"#.to_vec(),
        ],
    )
    .await;
    produce(
        &client,
        "university-server.transaction",
        &[br#"{"status":"BEGIN","id":"1:2","event_count":null,"data_collections":null,"ts_ms":1}"#.to_vec()],
    )
    .await;
    assert_eq!(running.activity(Duration::from_millis(1_200)).await, None);
    running.stop().await;

    let mut running = start(config(&broker));
    ready(&mut running).await;
    produce(
        &client,
        "other-server.public.faculty",
        &[support::envelope("faculty", "c")],
    )
    .await;
    assert_eq!(
        running.activity(Duration::from_millis(1_200)).await,
        None,
        "the default pattern ignores other-server"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_topic_created_after_start_is_found_and_its_first_records_count() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let mut running = start(config(&broker));
    ready(&mut running).await;
    let topic = format!("{PREFIX}students");
    support::create_topic(&client, &topic, 2).await;
    produce(&client, &topic, &[support::envelope("students", "c")]).await;
    let a = running
        .activity(Duration::from_secs(3))
        .await
        .expect("found within a refresh");
    assert_eq!((a.table.as_str(), a.records), ("students", 1));
    running.stop().await;
}

#[tokio::test]
async fn a_broker_restart_is_survived_and_reported() {
    let mut broker = support::Broker::start();
    let port = broker.port();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}faculty");
    support::create_topic(&client, &topic, 1).await;
    produce(
        &client,
        &topic,
        &[support::envelope("faculty", "c"), support::envelope("faculty", "c")],
    )
    .await;
    let mut running = start(config(&broker));
    ready(&mut running).await;
    broker.kill();
    let down = running
        .event(Duration::from_secs(10), |e| matches!(e, WatchEvent::BrokerDown { .. }))
        .await;
    assert!(down.is_some(), "the outage is reported");
    let broker = support::Broker::start_on(port);
    let client = support::client(&broker).await;
    support::create_topic(&client, &topic, 1).await;
    produce(&client, &topic, &[support::envelope("faculty", "d")]).await;
    // Memory storage starts over at offset 0: the watermark went backwards, and the new record still counts.
    let a = running
        .activity(Duration::from_secs(40))
        .await
        .expect("activity after the restart");
    assert_eq!(a.table, "faculty");
    assert_eq!(a.records, 1, "no bogus huge activity");
    assert_eq!(a.ops.get(&Op::Delete), Some(&1));
    running.stop().await;
}

#[tokio::test]
async fn lag_is_high_watermark_minus_the_committed_offset() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}payment");
    support::create_topic(&client, &topic, 1).await;
    let records: Vec<Vec<u8>> = (0..5).map(|_| support::envelope("payment", "c")).collect();
    produce(&client, &topic, &records).await;
    let config = config(&broker);
    let mut reader = LagReader::default();
    let mut pool = Pool::new(Security::for_config(&config).expect("plaintext config"));
    let pc = client
        .partition_client(
            topic.clone(),
            0,
            rskafka::client::partition::UnknownTopicHandling::Error,
        )
        .await
        .expect("partition client");
    let partitions = vec![PartitionOffsets {
        topic: topic.clone(),
        partition: 0,
        high: pc.get_offset(OffsetAt::Latest).await.expect("high watermark"),
        start: pc.get_offset(OffsetAt::Earliest).await.expect("log start"),
    }];
    let no_commit = reader
        .lag_from(&mut pool, &config, "payment", &partitions)
        .await
        .expect("lag without a commit");
    assert_eq!(no_commit, 5, "no committed offset: lag from the log start");
    support::kafka_admin::commit_offsets(&config, "cdc-payment", &[(topic.clone(), 0, 3)])
        .await
        .expect("commit");
    let committed = reader
        .committed(&mut pool, &config, "cdc-payment", &[(topic.clone(), 0)])
        .await
        .expect("fetch");
    assert_eq!(committed.get(&(topic.clone(), 0)), Some(&Some(3)));
    assert_eq!(
        reader
            .lag_from(&mut pool, &config, "payment", &partitions)
            .await
            .expect("lag"),
        2
    );
    support::kafka_admin::commit_offsets(&config, "cdc-payment", &[(topic.clone(), 0, 5)])
        .await
        .expect("commit");
    assert_eq!(
        reader
            .lag_from(&mut pool, &config, "payment", &partitions)
            .await
            .expect("lag"),
        0
    );
}

#[tokio::test]
async fn the_watch_command_prints_activity_as_json_lines() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}course");
    support::create_topic(&client, &topic, 1).await;
    let mut child = support::sidecar::command(&["watch", "--lag"])
        .env("CDC_KAFKA__BOOTSTRAP", broker.bootstrap())
        .env("CDC_KAFKA__POLL_INTERVAL", "200ms")
        .env("CDC_KAFKA__TOPIC_REFRESH", "400ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("Kafka brokers answer") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("watch reaches the broker");
    produce(&client, &topic, &[support::envelope("course", "u")]).await;
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let mut activity = None;
    let mut lag = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (activity.is_none() || lag.is_none()) && std::time::Instant::now() < deadline {
        let Ok(line) = line_rx.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        match event["event"].as_str() {
            Some("activity") => activity = Some(event),
            // One record and no committed offset: lag 1 once the poll has read the new watermark.
            Some("lag") if event["table"] == "course" && event["lag"] == 1 => lag = Some(event),
            _ => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let activity = activity.expect("an activity line");
    assert_eq!(activity["table"], "course");
    assert_eq!(activity["ops"]["u"], 1);
    assert!(
        lag.is_some(),
        "--lag prints the table's lag: 1 record with no committed offset"
    );
}

/// tansu 0.6.0 rejects CreatePartitions (API key 37: "UnknownServiceFrame"), so a partition cannot be added to a
/// live topic here; recreating the topic with more partitions makes new partitions appear in metadata the same
/// way, and the watcher must pick them up at its next refresh.
#[tokio::test]
async fn partitions_that_appear_in_a_watched_topic_are_watched() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}course");
    support::create_topic(&client, &topic, 1).await;
    let mut running = start(config(&broker));
    ready(&mut running).await;
    let controller = client.controller_client().expect("controller client");
    controller.delete_topic(&topic, 5_000).await.expect("delete topic");
    support::create_topic(&client, &topic, 3).await;
    let record = support::envelope("course", "u");
    support::produce(&client, &topic, 2, Some(b"{\"id\":7}"), &[Some(record.as_slice())]).await;
    let a = running
        .activity(Duration::from_secs(5))
        .await
        .expect("the new partition is watched within a refresh or two");
    assert_eq!((a.table.as_str(), a.partition, a.records), ("course", 2, 1));
    assert_eq!(a.ops.get(&Op::Update), Some(&1));
    running.stop().await;
}

/// A TLS client for `proxy`, trusting its CA.
async fn tls_client(config: &KafkaConfig) -> rskafka::client::Client {
    let tls = cdc_orchestrator::kafka::tls::client_config(&config.tls).expect("TLS config");
    rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .tls_config(tls)
        .build()
        .await
        .expect("connect over TLS")
}

#[tokio::test]
async fn over_tls_activity_and_lag_are_read_and_plaintext_or_an_unknown_ca_is_refused() {
    let dir = std::env::temp_dir().join(format!("cdc-tls-watch-{}", std::process::id()));
    let (listener, proxy_port) = support::tls_proxy::TlsProxy::bind().await;
    let broker = support::Broker::start_advertising(&format!("127.0.0.1:{proxy_port}"));
    let proxy = support::tls_proxy::TlsProxy::start(listener, broker.port(), &dir);
    let mut tls_config = KafkaConfig {
        bootstrap: vec![proxy.bootstrap()],
        ..config(&broker)
    };
    tls_config.tls.enabled = true;
    tls_config.tls.ca_file = Some(proxy.ca_pem().to_path_buf());

    let client = tls_client(&tls_config).await;
    let topic = format!("{PREFIX}lecturer");
    support::create_topic(&client, &topic, 1).await;
    let mut running = start(tls_config.clone());
    ready(&mut running).await;
    produce(
        &client,
        &topic,
        &[support::envelope("lecturer", "c"), support::envelope("lecturer", "c")],
    )
    .await;
    let a = activity_of(&mut running, "lecturer", 2).await;
    assert_eq!(a.records, 2, "activity over TLS");
    running.stop().await;

    // Lag's own connections (FindCoordinator, OffsetCommit, OffsetFetch) go through TLS too.
    support::kafka_admin::commit_offsets(&tls_config, "cdc-lecturer", &[(topic.clone(), 0, 1)])
        .await
        .expect("commit over TLS");
    let mut reader = LagReader::default();
    let mut pool = Pool::new(Security::for_config(&tls_config).expect("TLS material"));
    let committed = reader
        .committed(&mut pool, &tls_config, "cdc-lecturer", &[(topic.clone(), 0)])
        .await
        .expect("offset fetch over TLS");
    assert_eq!(committed.get(&(topic.clone(), 0)), Some(&Some(1)));

    // The same proxy refuses a plaintext client and one that does not trust its CA.
    let plaintext = KafkaConfig {
        tls: Default::default(),
        ..tls_config.clone()
    };
    let mut unknown_ca = tls_config.clone();
    let other_dir = dir.join("other");
    let (other_listener, _) = support::tls_proxy::TlsProxy::bind().await;
    let other = support::tls_proxy::TlsProxy::start(other_listener, broker.port(), &other_dir);
    unknown_ca.tls.ca_file = Some(other.ca_pem().to_path_buf());
    for (what, config) in [("plaintext", plaintext), ("unknown CA", unknown_ca)] {
        let mut running = start(config);
        let event = running
            .event(Duration::from_secs(10), |e| {
                matches!(e, WatchEvent::BrokerDown { .. } | WatchEvent::BrokerUp)
            })
            .await;
        assert!(
            matches!(event, Some(WatchEvent::BrokerDown { .. })),
            "{what}: the broker must be reported down, got {event:?}"
        );
        running.stop().await;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits for activity of `table` until `records` new records were reported; returns the merged activity.
async fn activity_of(running: &mut Running, table: &str, records: u64) -> TableActivity {
    let mut merged: Option<TableActivity> = None;
    while merged.as_ref().is_none_or(|m| m.records < records) {
        let a = running
            .activity(Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("activity of {table}"));
        assert_eq!(a.table, table);
        match merged.as_mut() {
            None => merged = Some(a),
            Some(m) => {
                m.records += a.records;
                m.unknown_ops += a.unknown_ops;
                for (op, n) in a.ops {
                    *m.ops.entry(op).or_default() += n;
                }
            }
        }
    }
    merged.unwrap_or_else(|| panic!("activity of {table}"))
}

#[tokio::test]
async fn a_table_topic_is_sampled_once_per_sample_interval_and_a_routed_topic_every_time() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let table_topic = format!("{PREFIX}faculty");
    let routed_topic = format!("{PREFIX}routed");
    support::create_topic(&client, &table_topic, 1).await;
    support::create_topic(&client, &routed_topic, 1).await;
    let mut running = start(KafkaConfig {
        sample_interval: Duration::from_secs(60),
        routed_topics: vec![routed_topic.clone()],
        ..config(&broker)
    });
    ready(&mut running).await;

    produce(&client, &table_topic, &[support::envelope("faculty", "c")]).await;
    let first = activity_of(&mut running, "faculty", 1).await;
    assert_eq!(
        (first.ops.get(&Op::Create), first.unknown_ops),
        (Some(&1), 0),
        "sampled"
    );
    produce(
        &client,
        &table_topic,
        &[support::envelope("faculty", "u"), support::envelope("faculty", "u")],
    )
    .await;
    let later = activity_of(&mut running, "faculty", 2).await;
    assert_eq!(
        (later.records, later.unknown_ops, later.ops.len()),
        (2, 0, 0),
        "within the interval the watermark alone counts the table's changes: {later:?}"
    );

    // A topic that carries another table's records is sampled at every advance.
    produce(&client, &routed_topic, &[support::envelope("program", "c")]).await;
    let first = activity_of(&mut running, "program", 1).await;
    assert_eq!(first.ops.get(&Op::Create), Some(&1));
    produce(&client, &routed_topic, &[support::envelope("program", "d")]).await;
    let later = activity_of(&mut running, "program", 1).await;
    assert_eq!(
        (later.ops.get(&Op::Delete), later.unknown_ops),
        (Some(&1), 0),
        "sampled again: {later:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn once_the_table_is_known_an_expired_interval_rechecks_only_the_newest_record() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}grade");
    support::create_topic(&client, &topic, 1).await;
    // Full first samples (see `start_counting`), whose operations this test checks.
    let mut running = start_counting(
        KafkaConfig {
            sample_interval: Duration::from_millis(1),
            ..config(&broker)
        },
        &[],
    );
    ready(&mut running).await;
    produce(
        &client,
        &topic,
        &[support::envelope("grade", "c"), support::envelope("grade", "c")],
    )
    .await;
    // The first advance is a full sample (both records, or the first one if they straddle two polls, and then the
    // second re-checked alone): every record's operation is known.
    let learned = activity_of(&mut running, "grade", 2).await;
    assert_eq!(
        (learned.records, learned.ops.get(&Op::Create), learned.unknown_ops),
        (2, Some(&2), 0)
    );
    let values: Vec<Vec<u8>> = (0..4).map(|_| support::envelope("grade", "u")).collect();
    produce(&client, &topic, &values).await;
    let mut seen = 0;
    while seen < 4 {
        let a = running.activity(Duration::from_secs(3)).await.expect("activity");
        let sampled: u64 = a.ops.values().sum();
        assert_eq!(
            (sampled, a.unknown_ops),
            (1, 0),
            "one record re-checked per advance: {a:?}"
        );
        seen += a.records;
    }
    assert_eq!(seen, 4);
    running.stop().await;
}
