//! Issue 24, items 4, 5 and 8: a fake Kafka broker on loopback that speaks the framing (ApiVersions, Metadata,
//! ListOffsets, FindCoordinator and OffsetFetch answered properly) and then lies: a Fetch answered with a frame
//! length near 2 GB and a trickle of bytes, a Fetch never answered, watermarks near `i64::MAX` or negative.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cdc_orchestrator::config::KafkaConfig;
use cdc_orchestrator::kafka::watcher::WatchEvent;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support;
use crate::support::sidecar::Sidecar;

const TABLE: &str = "faculty";
const TOPIC: &str = "university-server.public.faculty";

/// How the fake broker treats a Fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchMode {
    /// An answer without records.
    Empty,
    /// A frame length near 2^31, then one byte every 20 ms.
    Huge,
    /// No answer, ever.
    Hang,
}

/// What the fake broker answers and what it saw.
#[derive(Debug)]
struct State {
    /// Each partition's high watermark (its log start is 0).
    highs: Vec<i64>,
    fetch: FetchMode,
    /// Connections accepted so far.
    accepted: usize,
    /// The connections a Fetch came on.
    fetched_on: BTreeSet<usize>,
    /// The connections the client closed.
    closed: BTreeSet<usize>,
}

/// A Kafka broker of one topic on loopback; stops on drop.
struct FakeBroker {
    port: u16,
    state: Arc<Mutex<State>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    async fn start(highs: Vec<i64>, fetch: FetchMode) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(State {
            highs,
            fetch,
            accepted: 0,
            fetched_on: BTreeSet::new(),
            closed: BTreeSet::new(),
        }));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut state = shared.lock().expect("state");
                    state.accepted += 1;
                    state.accepted
                };
                connections.spawn(serve(stream, id, port, Arc::clone(&shared)));
            }
        });
        FakeBroker { port, state, accept }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn set_highs(&self, highs: &[i64]) {
        self.state.lock().expect("state").highs = highs.to_vec();
    }

    fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("state"))
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = usize::try_from(stream.read_i32().await.ok()?).ok()?;
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.ok()?;
    Some(Bytes::from(buf))
}

fn respond<R: Encodable + HeaderVersion>(header: &RequestHeader, response: &R, version: i16) -> Vec<u8> {
    let mut body = BytesMut::new();
    let header_version = if header.request_api_key == ApiKey::ApiVersions as i16 {
        0
    } else {
        R::header_version(version)
    };
    ResponseHeader::default()
        .with_correlation_id(header.correlation_id)
        .encode(&mut body, header_version)
        .expect("encode header");
    response.encode(&mut body, version).expect("encode response");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.put_i32(i32::try_from(body.len()).expect("small"));
    out.extend_from_slice(&body);
    out
}

fn api(key: ApiKey, min: i16, max: i16) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(key as i16)
        .with_min_version(min)
        .with_max_version(max)
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// Answers one connection until the client closes it; a hanging or trickling Fetch keeps the connection until then.
async fn serve(mut stream: TcpStream, id: usize, port: u16, state: Arc<Mutex<State>>) {
    loop {
        let Some(mut frame) = read_frame(&mut stream).await else {
            break;
        };
        let key = frame.clone().get_i16();
        let version = frame.clone().slice(2..).get_i16();
        let Ok(api_key) = ApiKey::try_from(key) else { break };
        let Ok(header) = RequestHeader::decode(&mut frame, api_key.request_header_version(version)) else {
            break;
        };
        let (highs, fetch) = {
            let state = state.lock().expect("state");
            (state.highs.clone(), state.fetch)
        };
        let answer = match api_key {
            ApiKey::ApiVersions => respond(
                &header,
                &ApiVersionsResponse::default().with_api_keys(vec![
                    api(ApiKey::ApiVersions, 0, 3),
                    api(ApiKey::Metadata, 1, 4),
                    api(ApiKey::ListOffsets, 1, 3),
                    api(ApiKey::Fetch, 4, 4),
                    api(ApiKey::FindCoordinator, 0, 3),
                    api(ApiKey::OffsetFetch, 1, 7),
                ]),
                version.min(3),
            ),
            ApiKey::Metadata => {
                let _ = MetadataRequest::decode(&mut frame, version);
                let partitions = (0..highs.len())
                    .map(|p| {
                        let p = i32::try_from(p).expect("few");
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(BrokerId(0))
                            .with_replica_nodes(vec![BrokerId(0)])
                            .with_isr_nodes(vec![BrokerId(0)])
                    })
                    .collect();
                let response = MetadataResponse::default()
                    .with_brokers(vec![
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(0))
                            .with_host(StrBytes::from_static_str("127.0.0.1"))
                            .with_port(i32::from(port)),
                    ])
                    .with_controller_id(BrokerId(0))
                    .with_topics(vec![
                        MetadataResponseTopic::default()
                            .with_name(Some(topic_name()))
                            .with_partitions(partitions),
                    ]);
                respond(&header, &response, version)
            }
            ApiKey::ListOffsets => {
                let Ok(request) = ListOffsetsRequest::decode(&mut frame, version) else {
                    break;
                };
                let topics = request
                    .topics
                    .iter()
                    .map(|t| {
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        let high = usize::try_from(p.partition_index)
                                            .ok()
                                            .and_then(|i| highs.get(i).copied())
                                            .unwrap_or(0);
                                        let offset = if p.timestamp == -2 { 0 } else { high };
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(p.partition_index)
                                            .with_offset(offset)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                respond(&header, &ListOffsetsResponse::default().with_topics(topics), version)
            }
            ApiKey::FindCoordinator => {
                let _ = FindCoordinatorRequest::decode(&mut frame, version);
                // This broker offers versions 0 to 3: one coordinator, not a list (v4).
                let response = FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(0))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(i32::from(port));
                respond(&header, &response, version)
            }
            ApiKey::OffsetFetch => {
                let _ = OffsetFetchRequest::decode(&mut frame, version);
                // No committed offsets: lag counts from the log start.
                let partitions = (0..highs.len())
                    .map(|p| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(i32::try_from(p).expect("few"))
                            .with_committed_offset(-1)
                    })
                    .collect();
                let response = OffsetFetchResponse::default().with_topics(vec![
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name())
                        .with_partitions(partitions),
                ]);
                respond(&header, &response, version)
            }
            ApiKey::Fetch => {
                let Ok(request) = FetchRequest::decode(&mut frame, version) else {
                    break;
                };
                state.lock().expect("state").fetched_on.insert(id);
                match fetch {
                    FetchMode::Empty => {
                        let topics = request
                            .topics
                            .iter()
                            .map(|t| {
                                FetchableTopicResponse::default()
                                    .with_topic(t.topic.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                let high = usize::try_from(p.partition)
                                                    .ok()
                                                    .and_then(|i| highs.get(i).copied())
                                                    .unwrap_or(0);
                                                PartitionData::default()
                                                    .with_partition_index(p.partition)
                                                    .with_high_watermark(high)
                                                    .with_last_stable_offset(high)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                        respond(&header, &FetchResponse::default().with_responses(topics), version)
                    }
                    FetchMode::Huge => {
                        if stream.write_all(&0x7fff_fff0_i32.to_be_bytes()).await.is_err() {
                            break;
                        }
                        loop {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if stream.write_all(&[0]).await.is_err() {
                                break;
                            }
                        }
                        break;
                    }
                    FetchMode::Hang => {
                        // Reads on (and ignores) whatever else comes, until the client hangs up.
                        let mut sink = [0u8; 4096];
                        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                        break;
                    }
                }
            }
            _ => break,
        };
        if stream.write_all(&answer).await.is_err() {
            break;
        }
    }
    state.lock().expect("state").closed.insert(id);
}

fn config(bootstrap: String) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![bootstrap],
        request_timeout: Duration::from_secs(1),
        ..KafkaConfig::default()
    }
}

/// Waits until `condition` holds, or fails after `limit` saying `what`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// Item 4.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_frame_of_2_gb_fails_the_sample_and_its_connection_is_closed_and_made_again() {
    let broker = FakeBroker::start(vec![10], FetchMode::Huge).await;
    let mut watcher = support::watcher(KafkaConfig {
        sample_interval: Duration::ZERO,
        ..config(broker.bootstrap())
    })
    .expect("watcher")
    .without_lag();
    watcher.refresh().await.expect("metadata");
    watcher.poll().await.expect("baseline");
    broker.set_highs(&[20]);
    let (activity, _) = watcher.poll().await.expect("a failed sample fails no poll");
    // The advance is still the topic's table's change, of unknown operation: the sample failed.
    assert_eq!(activity.len(), 1, "{activity:?}");
    assert_eq!((activity[0].records, activity[0].unknown_ops), (10, 10));
    let first = broker
        .with(|s| s.fetched_on.iter().next().copied())
        .expect("a Fetch was sent");
    eventually(
        "the connection that got the bogus frame is closed",
        Duration::from_secs(5),
        || broker.with(|s| s.closed.contains(&first)),
    )
    .await;
    // The next sample goes over a new connection, and polling goes on.
    broker.set_highs(&[30]);
    let (activity, _) = watcher.poll().await.expect("polling goes on");
    assert_eq!(activity.len(), 1, "{activity:?}");
    let fetched_on = broker.with(|s| s.fetched_on.clone());
    assert_eq!(fetched_on.len(), 2, "a Fetch on a new connection: {fetched_on:?}");
}

// Item 5.

async fn next(events: &mut mpsc::Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event in time")
        .expect("the watcher runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_that_never_answer_hold_a_poll_no_longer_than_request_timeout_and_changes_still_count() {
    let partitions = 8;
    let broker = FakeBroker::start(vec![10; partitions], FetchMode::Hang).await;
    let watcher = support::watcher(config(broker.bootstrap()))
        .expect("watcher")
        .without_lag();
    let (events, mut seen) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(events, shutdown.clone()));
    assert_eq!(next(&mut seen).await, WatchEvent::BrokerUp);
    broker.set_highs(&[20; 8]);
    let advanced = Instant::now();
    let mut counted = 0;
    let mut timeouts = None;
    while counted < partitions || timeouts.is_none() {
        match next(&mut seen).await {
            WatchEvent::Activity(a) => {
                assert_eq!((a.table.as_str(), a.records), (TABLE, 10), "{a:?}");
                counted += 1;
            }
            WatchEvent::SampleTimeouts { partitions } => timeouts = Some(partitions),
            _ => {}
        }
    }
    // Eight samples one after another would take 8 s; side by side under one deadline, about 1 s.
    let took = advanced.elapsed();
    assert!(took < Duration::from_secs(4), "a poll took {took:?}");
    let timeouts = timeouts.expect("reported");
    assert_eq!(timeouts.len(), partitions, "{timeouts:?}");
    assert!(timeouts.contains(&format!("{TOPIC}/0")), "{timeouts:?}");
    // Meanwhile advances are counted from the watermarks alone, without a Fetch.
    let fetches = broker.with(|s| s.fetched_on.len());
    broker.set_highs(&[25; 8]);
    let mut counted = 0;
    while counted < partitions {
        if let WatchEvent::Activity(a) = next(&mut seen).await {
            assert_eq!((a.records, a.unknown_ops), (5, 5), "{a:?}");
            counted += 1;
        }
    }
    assert_eq!(
        broker.with(|s| s.fetched_on.len()),
        fetches,
        "no Fetch within kafka.sample_interval"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the watcher stops at once")
        .expect("no panic");
}

/// Starts `cdc-orchestrator run` with the dry-run launcher against `bootstrap`, `env` on top of quick test
/// settings.
fn start_sidecar(bootstrap: &str, env: &[(&str, &str)]) -> Sidecar {
    Sidecar::builder()
        .env("CDC_LOG_LEVEL", "info")
        .bootstrap(bootstrap)
        .envs([
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__TOPIC_REFRESH", "500ms"),
            // Long enough that SIGTERM waiting for a hanging Fetch would show.
            ("CDC_KAFKA__REQUEST_TIMEOUT", "4s"),
            // Every advance is sampled: a Fetch is pending whenever the watermarks move.
            ("CDC_KAFKA__SAMPLE_INTERVAL", "0s"),
        ])
        .dry_run()
        .envs(env.iter().copied())
        .ready_when_logged("Kafka brokers answer", Duration::from_secs(15))
        .start()
}

/// Waits for `GET path` to answer `code` with a body containing `needle`.
fn wait_for_answer(sidecar: &Sidecar, path: &str, code: u16, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (got, body) = sidecar.get(path);
        if got == code && body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {got} {body}; log:\n{}",
            sidecar.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_hanging_samples_as_not_ready_and_exits_at_once_on_sigterm() {
    let broker = FakeBroker::start(vec![10; 4], FetchMode::Hang).await;
    let mut sidecar = tokio::task::block_in_place(|| start_sidecar(&broker.bootstrap(), &[]));
    broker.set_highs(&[20; 4]);
    tokio::task::block_in_place(|| {
        let body = wait_for_answer(
            &sidecar,
            "/readyz",
            503,
            "record samples time out",
            Duration::from_secs(15),
        );
        assert!(body.contains("university-server.public.faculty/0"), "{body}");
        // A new advance, new Fetches that hang: SIGTERM does not wait for them.
        let fetches = broker.with(|s| s.fetched_on.len());
        broker.set_highs(&[30; 4]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while broker.with(|s| s.fetched_on.len()) <= fetches {
            assert!(Instant::now() < deadline, "no new Fetch");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (took, status) = sidecar.terminate(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0), "{}", sidecar.log.text());
        assert!(
            took < Duration::from_secs(2),
            "SIGTERM took {took:?} while a Fetch hung"
        );
    });
}
/// The value of the metric line starting with `name ` in `/metrics`.
fn metric(sidecar: &Sidecar, name: &str) -> Option<f64> {
    let (_, body) = sidecar.get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_holds_little_for_2_gb_frames_on_16_partitions_and_keeps_polling() {
    let partitions = 16;
    let broker = FakeBroker::start(vec![10; partitions], FetchMode::Huge).await;
    let env = [
        ("CDC_KAFKA__REQUEST_TIMEOUT", "2s"),
        ("CDC_KAFKA__MAX_RESPONSE_BYTES", "2097152"),
    ];
    let sidecar = tokio::task::block_in_place(|| start_sidecar(&broker.bootstrap(), &env));
    let before = sidecar.peak_rss() / 1024;
    broker.set_highs(&[20; 16]);
    tokio::task::block_in_place(|| {
        sidecar.wait_for_log("sample fetch failed", Duration::from_secs(15));
        let polls = metric(&sidecar, "cdc_polls_total").expect("polls");
        // Another round of bogus frames, and polling goes on past them.
        broker.set_highs(&[30; 16]);
        let deadline = Instant::now() + Duration::from_secs(15);
        while metric(&sidecar, "cdc_polls_total").is_none_or(|now| now < polls + 5.0) {
            assert!(
                Instant::now() < deadline,
                "polling stopped; log:\n{}",
                sidecar.log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // Every sampling connection got a bogus frame, and none is kept after it: at most the last round's are open.
    let fetched_on = broker.with(|s| s.fetched_on.clone());
    assert!(fetched_on.len() >= 2 * partitions, "{fetched_on:?}");
    let open: Vec<_> = broker.with(|s| fetched_on.difference(&s.closed).copied().collect());
    assert!(
        open.len() <= partitions,
        "connections kept after a bogus frame: {open:?}"
    );
    // rskafka's default would let each of the 16 connections hold 100 MB; here each holds at most 2 MiB.
    let grew = (sidecar.peak_rss() / 1024).saturating_sub(before);
    assert!(grew < 128 * 1024, "the peak grew by {grew} kB");
}

// Item 8.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_near_i64_max_or_negative_neither_panic_nor_wrap() {
    let near = i64::MAX - 10;
    let broker = FakeBroker::start(vec![10, near, near, near], FetchMode::Empty).await;
    let mut watcher = support::watcher(config(broker.bootstrap())).expect("watcher");
    watcher.refresh().await.expect("metadata");
    watcher.poll().await.expect("baseline");
    // Three partitions of ~2^63 records none of which is committed: more than u64 holds, reported as its most.
    let lags = watcher.lags().await;
    assert_eq!(lags, vec![(TABLE.to_owned(), u64::MAX)]);
    // An impossible watermark is that partition's error, not a baseline.
    broker.set_highs(&[-5, near, near, near]);
    let (activity, _) = watcher.poll().await.expect("the other partitions answered");
    assert!(activity.is_empty(), "{activity:?}");
    broker.set_highs(&[i64::MAX, i64::MAX, i64::MAX, i64::MAX]);
    let (activity, _) = watcher.poll().await.expect("polling goes on");
    let mut counted: Vec<u64> = activity.iter().map(|a| a.records).collect();
    counted.sort_unstable();
    let max = u64::try_from(i64::MAX).expect("positive");
    assert_eq!(counted, vec![10, 10, 10, max - 10], "{activity:?}");
}
