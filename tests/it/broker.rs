//! Proves the test harness (a real tansu broker round-trips records through rskafka), and the sidecar's own
//! connection layer against it: API version negotiation, and SASL (PLAIN, SCRAM-SHA-256/512) for batched
//! watermarks, lag and the watcher, with a wrong password refused with a typed error. SASL is served by
//! `support::sasl_proxy` in front of tansu (see there why not by tansu itself).

use std::time::Duration;

use crate::support;
use cdc_orchestrator::config::{KafkaConfig, SaslConfig, SaslMechanism, Secret};
use cdc_orchestrator::kafka::connection::{Connection, Pool, Security, WireError};
use cdc_orchestrator::kafka::lag::{LagError, LagReader, PartitionOffsets};
use cdc_orchestrator::kafka::samples;
use cdc_orchestrator::kafka::sasl::Login;
use cdc_orchestrator::kafka::watcher::BrokerError;
use cdc_orchestrator::kafka::watermarks::{Offset, WatermarkReader};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest};
use kafka_protocol::protocol::Message;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use support::sasl_proxy::SaslProxy;

#[tokio::test]
async fn tansu_round_trips_records_through_rskafka() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = "university-server.public.faculty";
    support::create_topic(&client, topic, 3).await;

    let topics = client.list_topics().await.expect("list topics");
    let faculty = topics
        .iter()
        .find(|t| t.name == topic)
        .expect("created topic is listed");
    assert_eq!(faculty.partitions.len(), 3);

    let values: [Option<&[u8]>; 3] = [Some(b"one"), Some(b"two"), None];
    let offsets = support::produce(&client, topic, 1, Some(b"{\"id\":1}"), &values).await;
    assert_eq!(offsets, vec![0, 1, 2]);

    let pc = client
        .partition_client(topic, 1, UnknownTopicHandling::Error)
        .await
        .expect("partition client");
    let mut seen = Vec::new();
    let mut next = 0;
    while seen.len() < 3 {
        let (records, high_watermark) = pc.fetch_records(next, 1..1_000_000, 1_000).await.expect("fetch");
        assert_eq!(high_watermark, 3, "high watermark after three single-record batches");
        assert!(
            !records.is_empty(),
            "fetch from {next} returned nothing; broker log: {}",
            broker.log().display()
        );
        for r in records {
            next = r.offset + 1;
            seen.push((r.offset, r.record.value));
        }
    }
    assert_eq!(
        seen,
        vec![(0, Some(b"one".to_vec())), (1, Some(b"two".to_vec())), (2, None)]
    );
    assert_eq!(pc.get_offset(OffsetAt::Earliest).await.expect("earliest"), 0);
    let other = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await
        .expect("partition 0");
    assert_eq!(
        other.get_offset(OffsetAt::Latest).await.expect("latest"),
        0,
        "other partitions stay empty"
    );
}

#[tokio::test]
async fn watermarks_of_more_partitions_than_one_request_holds_come_from_several_requests() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let (wide, narrow) = ("university-server.public.wide", "university-server.public.narrow");
    support::create_topic(&client, wide, 7).await;
    support::create_topic(&client, narrow, 3).await;
    // Partition p of each topic gets p records, so each offset says which partition it came from.
    for (topic, count) in [(wide, 7), (narrow, 3)] {
        for partition in 0..count {
            let values = vec![Some(&b"{}"[..]); usize::try_from(partition).expect("small")];
            support::produce(&client, topic, partition, None, &values).await;
        }
    }
    let config = KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        ..KafkaConfig::default()
    };
    // At most 4 partitions per request: 10 partitions in 3 requests, the wide topic split over two of them.
    let mut reader = WatermarkReader::new(4);
    let mut pool = Pool::new(Security::for_config(&config).expect("security"));
    reader
        .refresh(&mut pool, &config.bootstrap, config.request_timeout)
        .await
        .expect("metadata");
    let partitions: std::sync::Arc<[(std::sync::Arc<str>, i32)]> = (0..7)
        .map(|p| (std::sync::Arc::from(wide), p))
        .chain((0..3).map(|p| (std::sync::Arc::from(narrow), p)))
        .rev()
        .collect();
    let expected = |extra: i64| -> Vec<i64> {
        partitions
            .iter()
            .map(|(topic, p)| i64::from(*p) + if &**topic == narrow && *p == 0 { extra } else { 0 })
            .collect()
    };
    let read = |r: Vec<Result<i64, _>>| -> Vec<i64> {
        r.into_iter()
            .map(|o| o.unwrap_or_else(|e| panic!("offset: {e}")))
            .collect()
    };
    let first = read(
        reader
            .offsets(&mut pool, &partitions, Offset::Latest, config.request_timeout)
            .await,
    );
    assert_eq!(first, expected(0), "in the caller's order, across requests");
    // The same list again reuses the requests, and still reads what is new.
    support::produce(&client, narrow, 0, None, &[Some(b"{}"), Some(b"{}")]).await;
    let second = read(
        reader
            .offsets(&mut pool, &partitions, Offset::Latest, config.request_timeout)
            .await,
    );
    assert_eq!(second, expected(2));
    let starts = read(
        reader
            .offsets(&mut pool, &partitions, Offset::Earliest, config.request_timeout)
            .await,
    );
    assert_eq!(starts, vec![0; 10]);
    assert!(!reader.is_stale());
}

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret";

/// A tansu broker behind a SASL proxy that knows [`USER`]; the broker advertises the proxy.
fn secured_broker() -> (support::Broker, SaslProxy) {
    let (listener, port) = SaslProxy::bind();
    let broker = support::Broker::start_advertising(&format!("127.0.0.1:{port}"));
    let proxy = SaslProxy::start(listener, broker.port(), &[(USER, PASSWORD)]);
    (broker, proxy)
}

fn sasl_config(proxy: &SaslProxy, mechanism: SaslMechanism, password: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![proxy.bootstrap()],
        request_timeout: Duration::from_secs(5),
        sasl: Some(SaslConfig {
            mechanism,
            username: USER.to_owned(),
            password: Secret::new(password),
            aws: None,
            oauth: None,
        }),
        ..KafkaConfig::default()
    }
}

#[tokio::test]
async fn negotiation_picks_the_highest_version_both_sides_speak() {
    let broker = support::Broker::start();
    let connection = Connection::connect(&broker.bootstrap(), &Security::default(), Duration::from_secs(5))
        .await
        .expect("connect");
    let ours = 2..=ListOffsetsRequest::VERSIONS.max;
    let picked = connection
        .version(ApiKey::ListOffsets, ours.clone())
        .expect("tansu speaks ListOffsets v2+");
    assert!(ours.contains(&picked), "{picked}");
    // Nothing above what this client speaks is ever asked for, whatever the broker offers.
    let beyond = ListOffsetsRequest::VERSIONS.max + 1..=ListOffsetsRequest::VERSIONS.max + 5;
    assert!(matches!(
        connection.version(ApiKey::ListOffsets, beyond),
        Err(WireError::Unsupported {
            api: ApiKey::ListOffsets,
            ..
        })
    ));
}

#[tokio::test]
async fn under_sasl_watermarks_and_lag_are_batched_for_every_mechanism() {
    let (_broker, proxy) = secured_broker();
    let plain = sasl_config(&proxy, SaslMechanism::Plain, PASSWORD);
    // rskafka (which fetches the samples) authenticates with the same credentials.
    let client = rskafka::client::ClientBuilder::new(plain.bootstrap.clone())
        .sasl_config(samples::rskafka_sasl(
            &Login::for_config(&plain).expect("login").expect("SASL"),
        ))
        .build()
        .await
        .expect("rskafka authenticates");
    let topic = "university-server.public.payment";
    support::create_topic(&client, topic, 1).await;
    let values: [Option<&[u8]>; 3] = [Some(b"{}"), Some(b"{}"), Some(b"{}")];
    support::produce(&client, topic, 0, None, &values).await;

    for (i, mechanism) in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ]
    .into_iter()
    .enumerate()
    {
        let config = KafkaConfig {
            group_template: format!("cdc{i}-{{table}}"),
            ..sasl_config(&proxy, mechanism, PASSWORD)
        };
        // One pool for watermarks and lag, as the watcher has.
        let mut pool = Pool::new(Security::for_config(&config).expect("security"));
        let mut reader = WatermarkReader::default();
        let topics = reader
            .refresh(&mut pool, &config.bootstrap, config.request_timeout)
            .await
            .expect("metadata over SASL");
        assert!(topics.iter().any(|t| t.name == topic), "{mechanism:?}: {topics:?}");
        let partitions: std::sync::Arc<[_]> = [(std::sync::Arc::from(topic), 0)].into();
        let highs = reader
            .offsets(&mut pool, &partitions, Offset::Latest, config.request_timeout)
            .await;
        assert!(matches!(highs.as_slice(), [Ok(3)]), "{mechanism:?}: {highs:?}");

        let mut lag = LagReader::default();
        let partitions = [PartitionOffsets {
            topic: topic.to_owned(),
            partition: 0,
            high: 3,
            start: 0,
        }];
        assert_eq!(
            lag.lag_from(&mut pool, &config, "payment", &partitions)
                .await
                .expect("lag"),
            3
        );
        support::kafka_admin::commit_offsets(&config, &config.group_for("payment"), &[(topic.to_owned(), 0, 1)])
            .await
            .expect("commit over SASL");
        let after = lag
            .lag_from(&mut pool, &config, "payment", &partitions)
            .await
            .expect("lag");
        assert_eq!(after, 2, "{mechanism:?}");
    }

    // The watcher reads through the same layer: batched watermarks and lag under SCRAM.
    let config = sasl_config(&proxy, SaslMechanism::ScramSha512, PASSWORD);
    let mut watcher = support::watcher(config).expect("watcher");
    watcher.refresh().await.expect("refresh over SCRAM");
    watcher.poll().await.expect("baseline poll over SCRAM");
    assert_eq!(watcher.lags().await, vec![("payment".to_owned(), 3)]);
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_a_typed_error() {
    let (_broker, proxy) = secured_broker();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let wrong = sasl_config(&proxy, mechanism, "not-her-password");
        let security = Security::for_config(&wrong).expect("security");
        let refused = Connection::connect(&proxy.bootstrap(), &security, Duration::from_secs(5)).await;
        let Err(
            error @ WireError::Authentication {
                error: ResponseError::SaslAuthenticationFailed,
                ..
            },
        ) = refused
        else {
            panic!("{mechanism:?}: expected a SASL authentication failure, got {refused:?}");
        };
        let text = error.to_string();
        assert!(
            text.contains(&format!("SASL {} authentication failed", mechanism.as_str())),
            "{text}"
        );
        assert!(!text.contains("not-her-password"), "the password never shows: {text}");
        // Lag and the watcher report the same cause rather than a silent gap.
        let mut pool = Pool::new(Security::for_config(&wrong).expect("security"));
        let lag = LagReader::default()
            .committed(&mut pool, &wrong, "cdc-payment", &[("t".to_owned(), 0)])
            .await;
        assert!(
            matches!(lag, Err(LagError::Wire(WireError::Authentication { .. }))),
            "{lag:?}"
        );
        let refresh = support::watcher(wrong).expect("watcher").refresh().await;
        assert!(
            matches!(refresh, Err(BrokerError::Metadata(WireError::Authentication { .. }))),
            "{refresh:?}"
        );
    }
}

#[tokio::test]
async fn sasl_over_tls_reads_watermarks_and_lag_in_batches() {
    // Client -> TLS proxy -> SASL proxy -> tansu, which advertises the TLS proxy.
    let dir = std::env::temp_dir().join(format!("cdc-sasl-tls-{}", std::process::id()));
    let (tls_listener, tls_port) = support::tls_proxy::TlsProxy::bind().await;
    let (sasl_listener, sasl_port) = SaslProxy::bind();
    let broker = support::Broker::start_advertising(&format!("127.0.0.1:{tls_port}"));
    let _sasl = SaslProxy::start(sasl_listener, broker.port(), &[(USER, PASSWORD)]);
    let tls = support::tls_proxy::TlsProxy::start(tls_listener, sasl_port, &dir);
    let mut config = KafkaConfig {
        bootstrap: vec![tls.bootstrap()],
        request_timeout: Duration::from_secs(5),
        sasl: Some(SaslConfig {
            mechanism: SaslMechanism::ScramSha256,
            username: USER.to_owned(),
            password: Secret::new(PASSWORD),
            aws: None,
            oauth: None,
        }),
        ..KafkaConfig::default()
    };
    config.tls.enabled = true;
    config.tls.ca_file = Some(tls.ca_pem().to_path_buf());
    let client = rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .tls_config(cdc_orchestrator::kafka::tls::client_config(&config.tls).expect("TLS config"))
        .sasl_config(samples::rskafka_sasl(
            &Login::for_config(&config).expect("login").expect("SASL"),
        ))
        .build()
        .await
        .expect("rskafka over TLS and SASL");
    let topic = "university-server.public.lecturer";
    support::create_topic(&client, topic, 1).await;
    support::produce(&client, topic, 0, None, &[Some(b"{}"), Some(b"{}")]).await;

    let mut watcher = support::watcher(config).expect("watcher");
    watcher.refresh().await.expect("metadata over TLS and SASL");
    watcher.poll().await.expect("watermarks over TLS and SASL");
    assert_eq!(watcher.lags().await, vec![("lecturer".to_owned(), 2)]);
    let _ = std::fs::remove_dir_all(dir);
}
