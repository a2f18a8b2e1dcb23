//! Proves the test harness: a real tansu broker round-trips records through rskafka.

mod support;

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

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
