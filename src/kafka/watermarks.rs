//! Batched watermark reads: one Metadata request for the cluster, then one ListOffsets request per broker for all
//! of its watched partitions, over a connection kept open between polls.
//!
//! rskafka asks one partition at a time (a request and a response per partition per poll); at thousands of
//! partitions that is most of the sidecar's CPU. Here a poll of N partitions led by B brokers is B requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::connection::{Connection, WireError};

/// Non-flexible versions every broker since Kafka 2.0 speaks (tansu too); ListOffsets v2 is the first with an
/// isolation level.
const METADATA_VERSION: i16 = 1;
const LIST_OFFSETS_VERSION: i16 = 2;
/// `read_committed`: the last stable offset, what a transactional reader (and rskafka's `get_offset`) sees.
const READ_COMMITTED: i8 = 1;
/// Kafka's error codes after which the partition's leader must be looked up again.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const LEADER_NOT_AVAILABLE: i16 = 5;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

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

/// Reads watermarks in batches; remembers brokers, partition leaders and one open connection per broker.
#[derive(Debug, Default)]
pub struct WatermarkReader {
    tls: Option<Arc<rustls::ClientConfig>>,
    brokers: HashMap<BrokerId, String>,
    leaders: HashMap<(String, i32), BrokerId>,
    connections: HashMap<BrokerId, Connection>,
    stale: bool,
}

impl WatermarkReader {
    /// A reader that connects with `tls` when given.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        WatermarkReader {
            tls,
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
        let request = MetadataRequest::default().with_topics(None);
        let known: Vec<String> = self.brokers.values().cloned().collect();
        let mut last = WireError::Io("no bootstrap broker".to_owned());
        for address in bootstrap.iter().chain(known.iter()) {
            let answer = async {
                let mut connection = Connection::connect(address, self.tls.as_ref(), limit).await?;
                connection
                    .call::<_, MetadataResponse>(ApiKey::Metadata, &request, METADATA_VERSION, limit)
                    .await
            };
            match answer.await {
                Ok(metadata) => return Ok(self.learn(metadata)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn learn(&mut self, metadata: MetadataResponse) -> Vec<TopicPartitions> {
        let brokers: HashMap<BrokerId, String> = metadata
            .brokers
            .into_iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        // A broker that moved or left: its connection goes.
        self.connections
            .retain(|id, c| brokers.get(id).is_some_and(|address| address == c.address()));
        self.brokers = brokers;
        self.leaders.clear();
        self.stale = false;
        let mut topics = Vec::new();
        for topic in metadata.topics {
            let Some(name) = topic.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if topic.error_code != 0 {
                tracing::debug!(topic = %name, code = topic.error_code, "topic metadata error");
                continue;
            }
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                partitions.push(p.partition_index);
                if p.leader_id.0 >= 0 {
                    self.leaders.insert((name.clone(), p.partition_index), p.leader_id);
                }
            }
            partitions.sort_unstable();
            topics.push(TopicPartitions { name, partitions });
        }
        topics
    }

    /// The `at` offset of each of `partitions`, one request per leading broker, brokers read concurrently. A
    /// partition whose read failed has an error (the others still have their offsets); an error naming a lost
    /// leader marks the reader stale.
    pub async fn offsets(
        &mut self,
        partitions: &[(String, i32)],
        at: Offset,
        limit: Duration,
    ) -> Vec<((String, i32), Result<i64, String>)> {
        let mut out = Vec::with_capacity(partitions.len());
        let mut by_broker: BTreeMap<BrokerId, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
        for (topic, partition) in partitions {
            match self.leaders.get(&(topic.clone(), *partition)) {
                Some(leader) => by_broker
                    .entry(*leader)
                    .or_default()
                    .entry(topic.as_str())
                    .or_default()
                    .push(*partition),
                None => {
                    self.stale = true;
                    out.push(((topic.clone(), *partition), Err("no known leader".to_owned())));
                }
            }
        }
        let timestamp = match at {
            Offset::Earliest => -2,
            Offset::Latest => -1,
        };
        let mut calls = Vec::with_capacity(by_broker.len());
        for (broker, topics) in by_broker {
            let asked: Vec<(String, i32)> = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| ((*t).to_owned(), *p)))
                .collect();
            let Some(address) = self.brokers.get(&broker).cloned() else {
                // Metadata named a leader it did not list: ask again next time.
                self.stale = true;
                let error = format!("leader {} is not among the brokers", broker.0);
                out.extend(asked.into_iter().map(|key| (key, Err(error.clone()))));
                continue;
            };
            let connection = self.connections.remove(&broker);
            let tls = self.tls.clone();
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(READ_COMMITTED)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(topic, parts)| {
                            ListOffsetsTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(p)
                                                .with_timestamp(timestamp)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            calls.push(async move {
                let answer = async {
                    let mut connection = match connection {
                        Some(c) => c,
                        None => Connection::connect(&address, tls.as_ref(), limit).await?,
                    };
                    let response = connection
                        .call::<_, ListOffsetsResponse>(ApiKey::ListOffsets, &request, LIST_OFFSETS_VERSION, limit)
                        .await?;
                    Ok::<_, WireError>((connection, response))
                };
                (broker, asked, answer.await)
            });
        }
        for (broker, asked, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok((connection, response)) => {
                    self.connections.insert(broker, connection);
                    let mut answered: HashMap<(String, i32), Result<i64, String>> = HashMap::new();
                    for topic in response.topics {
                        let name = topic.name.0.to_string();
                        for p in topic.partitions {
                            let result = if p.error_code == 0 {
                                Ok(p.offset)
                            } else {
                                if matches!(
                                    p.error_code,
                                    NOT_LEADER_OR_FOLLOWER
                                        | UNKNOWN_TOPIC_OR_PARTITION
                                        | LEADER_NOT_AVAILABLE
                                        | FENCED_LEADER_EPOCH
                                        | UNKNOWN_LEADER_EPOCH
                                ) {
                                    self.stale = true;
                                }
                                Err(format!("list offsets: Kafka error code {}", p.error_code))
                            };
                            answered.insert((name.clone(), p.partition_index), result);
                        }
                    }
                    for key in asked {
                        let result = answered
                            .remove(&key)
                            .unwrap_or_else(|| Err("list offsets: partition missing from the answer".to_owned()));
                        out.push((key, result));
                    }
                }
                Err(e) => {
                    // The connection is dropped with the error; the next poll connects again.
                    let error = e.to_string();
                    out.extend(asked.into_iter().map(|key| (key, Err(error.clone()))));
                }
            }
        }
        out
    }
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
        let topics = reader.learn(metadata(1));
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
        reader.learn(metadata(7));
        let read = reader
            .offsets(&[("cdc.public.t".to_owned(), 0)], Offset::Latest, limit)
            .await;
        assert_eq!(read.len(), 1);
        assert!(matches!(&read[0].1, Err(e) if e.contains("leader 7")), "{read:?}");
        assert!(reader.is_stale());
        // No leader at all (-1), and a partition metadata never named.
        let mut reader = WatermarkReader::default();
        reader.learn(metadata(-1));
        let read = reader
            .offsets(
                &[("cdc.public.t".to_owned(), 0), ("cdc.public.gone".to_owned(), 3)],
                Offset::Earliest,
                limit,
            )
            .await;
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(|(_, r)| r.is_err()), "{read:?}");
        assert!(reader.is_stale());
    }
}
