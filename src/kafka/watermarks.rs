//! Batched watermark reads: one Metadata request for the cluster, then one ListOffsets request per broker for all
//! of its watched partitions, over connections kept open between polls (with TLS and SASL as configured).
//!
//! rskafka asks one partition at a time (a request and a response per partition per poll); at thousands of
//! partitions that is most of the sidecar's CPU. Here a poll of N partitions led by B brokers is B requests.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::connection::{Pool, Security, WireError};

/// The most compact versions that carry what we need, not the highest the broker speaks: these requests go out
/// every poll (ListOffsets) or every `kafka.topic_refresh` (Metadata), and newer versions only add fields we do not
/// read. ListOffsets v2 is the first with an isolation level; v4 adds a 4-byte leader epoch per partition in each
/// direction (about 4.7 KB more per cycle at 1,000 partitions), so v3 is the highest asked for. Metadata v1 is the
/// first that asks for every topic with a null list; v5 adds offline replicas and v7 leader epochs per partition,
/// so v4 is the highest (kept in range for brokers that dropped v1-v3). The connection still negotiates the
/// highest common version within these ranges with ApiVersions ([`Pool::call`]).
pub(crate) const METADATA_VERSIONS: RangeInclusive<i16> = 1..=4;
pub(crate) const LIST_OFFSETS_VERSIONS: RangeInclusive<i16> = 2..=3;
/// `read_committed`: the last stable offset, what a transactional reader (and rskafka's `get_offset`) sees.
const READ_COMMITTED: i8 = 1;

/// Which end of a partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offset {
    /// The log start offset (ListOffsets timestamp -2).
    Earliest,
    /// The high watermark, or the last stable offset under transactions (timestamp -1).
    Latest,
}

/// A topic and its partitions, as the cluster's metadata lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    /// The topic.
    pub name: String,
    /// Its partition numbers.
    pub partitions: Vec<i32>,
}

/// Why one partition's offset was not read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetError {
    /// The metadata named no leader for the partition (or did not list it).
    #[error("no known leader")]
    NoLeader,
    /// The metadata named a leader it did not list among its brokers.
    #[error("leader {0} is not among the brokers")]
    UnknownLeader(i32),
    /// The leader answered with a Kafka error code for the partition.
    #[error("list offsets: {0}")]
    Kafka(#[source] ResponseError),
    /// The leader's answer did not mention the partition.
    #[error("list offsets: partition missing from the answer")]
    Missing,
    /// The leader gave no answer (shared by all partitions it leads).
    #[error(transparent)]
    Broker(Arc<WireError>),
}

/// One partition's offset, or why it was not read.
pub type OffsetRead = Result<i64, OffsetError>;

/// One broker's partitions by topic, each with its index in the caller's list.
type ByTopic<'p> = BTreeMap<&'p str, Vec<(i32, usize)>>;

/// Reads watermarks in batches; remembers brokers, partition leaders and one open connection per broker.
#[derive(Debug, Default)]
pub struct WatermarkReader {
    pool: Pool,
    brokers: HashMap<BrokerId, String>,
    /// Each partition's leader by topic, so a lookup borrows the topic name rather than allocating a key.
    leaders: HashMap<String, HashMap<i32, BrokerId>>,
    stale: bool,
}

impl WatermarkReader {
    /// A reader whose connections are opened as `security` says.
    pub fn new(security: Security) -> Self {
        WatermarkReader {
            pool: Pool::new(security),
            ..WatermarkReader::default()
        }
    }

    /// Whether a broker answered that it no longer leads a partition: metadata should be read again.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Reads the cluster's metadata from the first of `bootstrap` that answers (or a known broker), learns every
    /// partition's leader and returns every topic with its partitions.
    pub async fn refresh(&mut self, bootstrap: &[String], limit: Duration) -> Result<Vec<TopicPartitions>, WireError> {
        let known: Vec<String> = self.brokers.values().cloned().collect();
        let mut last = WireError::NoBroker;
        for address in bootstrap.iter().chain(known.iter()) {
            let request = |_| MetadataRequest::default().with_topics(None);
            let answer: Result<MetadataResponse, _> = self
                .pool
                .call(address, ApiKey::Metadata, METADATA_VERSIONS, request, limit)
                .await;
            match answer {
                Ok(metadata) => match metadata.error_code.err() {
                    None => return Ok(self.learn(metadata, bootstrap)),
                    Some(error) => {
                        last = WireError::Kafka {
                            address: address.clone(),
                            api: ApiKey::Metadata,
                            error,
                        }
                    }
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn learn(&mut self, metadata: MetadataResponse, bootstrap: &[String]) -> Vec<TopicPartitions> {
        let brokers: HashMap<BrokerId, String> = metadata
            .brokers
            .into_iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        // A broker that moved or left: its connection goes.
        self.pool
            .retain(|address| bootstrap.iter().chain(brokers.values()).any(|a| a == address));
        self.brokers = brokers;
        self.leaders.clear();
        self.stale = false;
        let mut topics = Vec::new();
        for topic in metadata.topics {
            let Some(name) = topic.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if let Some(error) = topic.error_code.err() {
                tracing::debug!(topic = %name, %error, "topic metadata error");
                continue;
            }
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            let mut leaders = HashMap::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                partitions.push(p.partition_index);
                if p.leader_id.0 >= 0 {
                    leaders.insert(p.partition_index, p.leader_id);
                }
            }
            self.leaders.insert(name.clone(), leaders);
            partitions.sort_unstable();
            topics.push(TopicPartitions { name, partitions });
        }
        topics
    }

    /// The `at` offset of each of `partitions` (in their order), one request per leading broker, brokers read
    /// concurrently. A partition whose read failed has an error (the others still have their offsets); an error
    /// naming a lost leader marks the reader stale. Partitions are referred to by their index in `partitions`, so
    /// a poll of many thousands allocates no topic name per partition.
    pub async fn offsets(&mut self, partitions: &[(String, i32)], at: Offset, limit: Duration) -> Vec<OffsetRead> {
        let mut out: Vec<OffsetRead> = vec![Err(OffsetError::Missing); partitions.len()];
        let by_broker = self.by_leader(partitions, &mut out);
        let timestamp = match at {
            Offset::Earliest => -2,
            Offset::Latest => -1,
        };
        let mut calls = Vec::with_capacity(by_broker.len());
        for (broker, topics) in by_broker {
            let asked: HashMap<(&str, i32), usize> = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|(p, i)| ((*t, *p), *i)))
                .collect();
            let Some(address) = self.brokers.get(&broker) else {
                // Metadata named a leader it did not list: ask again next time.
                self.stale = true;
                asked
                    .values()
                    .for_each(|i| out[*i] = Err(OffsetError::UnknownLeader(broker.0)));
                continue;
            };
            let lease = self.pool.lease(address);
            let request = list_offsets(topics, timestamp);
            calls.push(async move {
                let (connection, answer) = lease
                    .call::<_, ListOffsetsResponse>(ApiKey::ListOffsets, LIST_OFFSETS_VERSIONS, |_| request, limit)
                    .await;
                (asked, connection, answer)
            });
        }
        for (asked, connection, answer) in futures::future::join_all(calls).await {
            // After an error the connection is gone; the next poll connects again.
            if let Some(connection) = connection {
                self.pool.restore(connection);
            }
            match answer {
                Ok(response) => self.read_answer(response, &asked, &mut out),
                Err(e) => {
                    let e = Arc::new(e);
                    asked
                        .values()
                        .for_each(|i| out[*i] = Err(OffsetError::Broker(Arc::clone(&e))));
                }
            }
        }
        out
    }

    /// `partitions` (each with its index) by leading broker and topic; those without a known leader get an error
    /// in `out`.
    fn by_leader<'p>(
        &mut self,
        partitions: &'p [(String, i32)],
        out: &mut [OffsetRead],
    ) -> BTreeMap<BrokerId, ByTopic<'p>> {
        let mut by_broker: BTreeMap<BrokerId, ByTopic<'p>> = BTreeMap::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            match self.leaders.get(topic.as_str()).and_then(|ps| ps.get(partition)) {
                Some(leader) => by_broker
                    .entry(*leader)
                    .or_default()
                    .entry(topic.as_str())
                    .or_default()
                    .push((*partition, i)),
                None => {
                    self.stale = true;
                    out[i] = Err(OffsetError::NoLeader);
                }
            }
        }
        by_broker
    }

    /// The offsets one broker's `response` gives for the partitions `asked` (by topic and partition, their index in
    /// `out`).
    fn read_answer(
        &mut self,
        response: ListOffsetsResponse,
        asked: &HashMap<(&str, i32), usize>,
        out: &mut [OffsetRead],
    ) {
        for topic in &response.topics {
            let name = topic.name.0.as_str();
            for p in &topic.partitions {
                let Some(&i) = asked.get(&(name, p.partition_index)) else {
                    continue;
                };
                out[i] = match p.error_code.err() {
                    None => Ok(p.offset),
                    Some(error) => {
                        if matches!(
                            error,
                            ResponseError::NotLeaderOrFollower
                                | ResponseError::UnknownTopicOrPartition
                                | ResponseError::LeaderNotAvailable
                                | ResponseError::FencedLeaderEpoch
                                | ResponseError::UnknownLeaderEpoch
                        ) {
                            self.stale = true;
                        }
                        Err(OffsetError::Kafka(error))
                    }
                };
            }
        }
    }
}

/// ListOffsets for one broker's `topics` (the same in versions 2 and 3).
fn list_offsets(topics: ByTopic<'_>, timestamp: i64) -> ListOffsetsRequest {
    let topics = topics
        .into_iter()
        .map(|(topic, parts)| {
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, _)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )
        })
        .collect();
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(topics)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};

    use super::*;

    fn metadata(leader: i32) -> MetadataResponse {
        MetadataResponse::default().with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("cdc.public.t"))))
                .with_partitions(vec![
                    MetadataResponsePartition::default()
                        .with_partition_index(1)
                        .with_leader_id(BrokerId(leader)),
                    MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(leader)),
                ]),
        ])
    }

    #[test]
    fn metadata_lists_topics_with_sorted_partitions() {
        let mut reader = WatermarkReader::default();
        let topics = reader.learn(metadata(1), &[]);
        assert_eq!(
            topics,
            vec![TopicPartitions {
                name: "cdc.public.t".to_owned(),
                partitions: vec![0, 1],
            }]
        );
        assert!(!reader.is_stale());
    }

    #[tokio::test]
    async fn partitions_without_a_reachable_leader_get_errors_and_mark_the_reader_stale() {
        let limit = Duration::from_millis(100);
        // A leader the metadata does not list among its brokers.
        let mut reader = WatermarkReader::default();
        reader.learn(metadata(7), &[]);
        let read = reader
            .offsets(&[("cdc.public.t".to_owned(), 0)], Offset::Latest, limit)
            .await;
        assert_eq!(read.len(), 1);
        assert!(matches!(&read[0], Err(OffsetError::UnknownLeader(7))), "{read:?}");
        assert!(reader.is_stale());
        // No leader at all (-1), and a partition metadata never named.
        let mut reader = WatermarkReader::default();
        reader.learn(metadata(-1), &[]);
        let read = reader
            .offsets(
                &[("cdc.public.t".to_owned(), 0), ("cdc.public.gone".to_owned(), 3)],
                Offset::Earliest,
                limit,
            )
            .await;
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(Result::is_err), "{read:?}");
        assert!(reader.is_stale());
    }
}
