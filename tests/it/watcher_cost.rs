//! What the watcher reads, against a real tansu broker: lag only where it decides something, and first samples of
//! one record unless that record leaves a doubt.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support;
use cdc_orchestrator::config::{Config, KafkaConfig, PolicyConfig};
use cdc_orchestrator::kafka::watcher::{PollStats, TableActivity, Watcher};
use cdc_orchestrator::model::Op;
use support::counting_proxy::CountingProxy;
use tokio::sync::watch;

const PREFIX: &str = "university-server.public.";

fn config(broker: &support::Broker) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        request_timeout: Duration::from_secs(2),
        sample_interval: Duration::ZERO,
        ..KafkaConfig::default()
    }
}

/// A broker whose clients all go through a byte-counting proxy, and the watcher configuration that reaches it there.
fn behind_a_counting_proxy() -> (support::Broker, CountingProxy, KafkaConfig) {
    let (listener, proxy_port) = CountingProxy::bind();
    let broker = support::Broker::start_advertising(&format!("127.0.0.1:{proxy_port}"));
    let proxy = CountingProxy::start(listener, broker.port());
    let config = KafkaConfig {
        bootstrap: vec![proxy.bootstrap()],
        ..config(&broker)
    };
    (broker, proxy, config)
}

#[tokio::test]
async fn after_the_first_read_lag_is_read_only_for_tables_with_a_job() {
    let (broker, proxy, config) = behind_a_counting_proxy();
    let client = support::client(&broker).await;
    for table in ["course", "payment"] {
        let topic = format!("{PREFIX}{table}");
        support::create_topic(&client, &topic, 1).await;
        support::produce(
            &client,
            &topic,
            0,
            None,
            &[Some(support::envelope(table, "c").as_slice())],
        )
        .await;
    }
    let (with_jobs, tables) = watch::channel(BTreeSet::new());
    let mut watcher = support::watcher(config).expect("valid config").with_lag_tables(tables);
    watcher.refresh().await.expect("refresh");
    watcher.poll().await.expect("baseline poll");
    let lag = |tables: &[&str]| tables.iter().map(|t| ((*t).to_owned(), 1)).collect::<Vec<_>>();
    assert_eq!(
        watcher.lags().await,
        lag(&["course", "payment"]),
        "the first read covers every table: changes made while the sidecar was down show as lag"
    );
    let before = proxy.bytes();
    assert_eq!(watcher.lags().await, lag(&[]), "no table has a job");
    assert_eq!(proxy.bytes(), before, "no ListOffsets or OffsetFetch without a job");
    with_jobs.send_replace(BTreeSet::from(["course".to_owned()]));
    assert_eq!(watcher.lags().await, lag(&["course"]), "only the table with a job");
    with_jobs.send_replace(BTreeSet::new());
    assert_eq!(
        watcher.lags().await,
        lag(&["course"]),
        "once more after its job ended, so a fresh lag is left behind"
    );
    assert_eq!(watcher.lags().await, lag(&[]));
}

#[tokio::test]
async fn a_watcher_without_lag_never_asks_for_it() {
    let (broker, proxy, config) = behind_a_counting_proxy();
    let client = support::client(&broker).await;
    let topic = format!("{PREFIX}course");
    support::create_topic(&client, &topic, 1).await;
    support::produce(
        &client,
        &topic,
        0,
        None,
        &[Some(support::envelope("course", "c").as_slice())],
    )
    .await;
    let mut watcher = support::watcher(config).expect("valid config").without_lag();
    watcher.refresh().await.expect("refresh");
    watcher.poll().await.expect("baseline poll");
    let before = proxy.bytes();
    assert_eq!(watcher.lags().await, Vec::<(String, u64)>::new());
    assert_eq!(
        proxy.bytes(),
        before,
        "`watch` without --lag sends no ListOffsets or OffsetFetch for lag"
    );
}

/// The activity and counters of the first advance of a new table topic whose new records are `values` (`None`:
/// a tombstone), with `counted` as the operations that count as changes.
async fn first_sample(
    broker: &support::Broker,
    table: &str,
    values: &[Option<Vec<u8>>],
    counted: &[Op],
) -> (Vec<TableActivity>, PollStats) {
    let client = support::client(broker).await;
    let topic = format!("{PREFIX}{table}");
    support::create_topic(&client, &topic, 1).await;
    let counting = Config {
        kafka: config(broker),
        policy: PolicyConfig {
            operations: counted.to_vec(),
            ..PolicyConfig::default()
        },
        ..Config::default()
    };
    let mut watcher = Watcher::new(&counting, []).expect("valid config");
    watcher.refresh().await.expect("refresh");
    watcher.poll().await.expect("baseline poll");
    let values: Vec<Option<&[u8]>> = values.iter().map(Option::as_deref).collect();
    support::produce(&client, &topic, 0, Some(b"{\"id\":1}"), &values).await;
    watcher.poll().await.expect("poll")
}

#[tokio::test]
async fn a_first_sample_is_one_record_unless_that_record_leaves_a_doubt() {
    let broker = support::Broker::start();
    let change = |table: &str, op: &str| Some(support::envelope(table, op));
    let ops = |list: &[(Op, u64)]| list.iter().copied().collect::<BTreeMap<_, _>>();

    let values = [change("course", "c"), change("course", "u"), change("course", "u")];
    let (activity, stats) = first_sample(&broker, "course", &values, &Op::ALL).await;
    assert_eq!(stats.sampled, 1, "a change that counts settles it: one record fetched");
    assert_eq!(activity.len(), 1);
    assert_eq!((activity[0].table.as_str(), activity[0].records), ("course", 3));
    assert_eq!(activity[0].ops, ops(&[(Op::Update, 1)]));

    // Debezium follows a delete with a tombstone: the delete is still seen.
    let values = [change("payment", "c"), change("payment", "d"), None];
    let (activity, stats) = first_sample(&broker, "payment", &values, &Op::ALL).await;
    assert_eq!(stats.sampled, 3, "a tombstone says nothing: the full sample is fetched");
    assert_eq!(activity.len(), 1);
    assert_eq!(activity[0].ops, ops(&[(Op::Create, 1), (Op::Delete, 1)]));

    // A newest record that is no table data (a transaction marker) hides nothing before it.
    let marker = br#"{"status":"BEGIN","id":"1:2","event_count":null,"data_collections":null,"ts_ms":1}"#.to_vec();
    let values = [change("faculty", "u"), Some(marker)];
    let (activity, stats) = first_sample(&broker, "faculty", &values, &Op::ALL).await;
    assert_eq!(stats.sampled, 2);
    assert_eq!(activity.len(), 1);
    assert_eq!(activity[0].ops, ops(&[(Op::Update, 1)]));

    // An operation the policy does not count (here a snapshot read) does not settle it either.
    let values = [change("program", "c"), change("program", "r")];
    let (activity, stats) = first_sample(&broker, "program", &values, &[Op::Create]).await;
    assert_eq!(stats.sampled, 2);
    assert_eq!(activity[0].ops, ops(&[(Op::Create, 1), (Op::Read, 1)]));

    // A tombstone alone is still no activity.
    let (activity, _) = first_sample(&broker, "room", &[None], &Op::ALL).await;
    assert_eq!(activity, vec![]);
}
