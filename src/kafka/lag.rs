//! Consumer lag of a table's Flink job, the KEDA way: high watermark minus the committed offset of the job's
//! consumer group, summed over the table's partitions.
//!
//! rskafka has no consumer-group APIs, so FindCoordinator, OffsetFetch and (for tests and tools) OffsetCommit are
//! spoken directly with the `kafka-protocol` crate over a short-lived TCP connection, with TLS when the brokers
//! use it. SASL is not spoken here: with `kafka.sasl` set, lag is reported unknown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::config::KafkaConfig;
use crate::kafka::connection::{Connection, WireError};
use crate::kafka::tls;

/// Non-flexible versions every broker since Kafka 2.0 speaks (tansu too).
const FIND_COORDINATOR_VERSION: i16 = 1;
const OFFSET_FETCH_VERSION: i16 = 5;
const OFFSET_COMMIT_VERSION: i16 = 2;

/// Why lag could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LagError {
    /// Network failure or timeout.
    #[error("{0}")]
    Io(String),
    /// The broker answered with a Kafka error code.
    #[error("{what}: Kafka error code {code}")]
    Kafka {
        /// Which call.
        what: &'static str,
        /// The error code.
        code: i16,
    },
    /// The answer could not be encoded or decoded.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TLS material could not be loaded, or a broker's address is not a name to verify.
    #[error("kafka.tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The brokers need SASL, which this reader does not speak yet.
    #[error("lag is not read over SASL connections yet")]
    Unsupported,
}

impl From<WireError> for LagError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Tls(e) => LagError::Tls(e),
            WireError::Protocol(e) => LagError::Protocol(e),
            other => LagError::Io(other.to_string()),
        }
    }
}

/// One partition's watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// High watermark (last stable offset under transactions).
    pub high: i64,
    /// Log start offset.
    pub start: i64,
}

/// Reads committed offsets; remembers each group's coordinator.
#[derive(Debug, Default)]
pub struct LagReader {
    coordinators: HashMap<String, String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl LagReader {
    /// A reader that connects with `tls` when given (the watcher passes the configuration it built).
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        LagReader {
            tls,
            ..LagReader::default()
        }
    }

    /// A reader for the brokers of `config`, loading its TLS material.
    pub fn for_config(config: &KafkaConfig) -> Result<Self, LagError> {
        Ok(LagReader::new(tls::client_config_if_enabled(&config.tls)?))
    }

    /// The lag of `table`'s job group given each partition's watermarks (read by the caller, e.g. in one batch).
    /// A partition with no committed offset counts from its log start; an offset below the log start (retention
    /// deleted records) counts from the log start too.
    pub async fn lag_from(
        &mut self,
        config: &KafkaConfig,
        table: &str,
        partitions: &[PartitionOffsets],
    ) -> Result<u64, LagError> {
        let group = config.group_for(table);
        let keys: Vec<(String, i32)> = partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        let committed = self.committed(config, &group, &keys).await?;
        Ok(partitions
            .iter()
            .map(|p| {
                let from = committed
                    .get(&(p.topic.clone(), p.partition))
                    .copied()
                    .flatten()
                    .unwrap_or(p.start)
                    .max(p.start);
                u64::try_from(p.high - from).unwrap_or(0)
            })
            .sum())
    }

    /// Committed offsets of `group` for `partitions`; `None` where the group has none.
    pub async fn committed(
        &mut self,
        config: &KafkaConfig,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), Option<i64>>, LagError> {
        if config.sasl.is_some() {
            return Err(LagError::Unsupported);
        }
        let coordinator = self.coordinator(config, group).await?;
        let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(Some(
                by_topic
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partition_indexes(parts)
                    })
                    .collect(),
            ));
        let response: OffsetFetchResponse = match self
            .call(
                &coordinator,
                config.request_timeout,
                ApiKey::OffsetFetch,
                request,
                OFFSET_FETCH_VERSION,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // The coordinator may have moved; ask again next time.
                self.coordinators.remove(group);
                return Err(e);
            }
        };
        if response.error_code != 0 {
            self.coordinators.remove(group);
            return Err(LagError::Kafka {
                what: "offset fetch",
                code: response.error_code,
            });
        }
        let mut out = HashMap::new();
        for topic in response.topics {
            for p in topic.partitions {
                let offset = (p.error_code == 0 && p.committed_offset >= 0).then_some(p.committed_offset);
                out.insert((topic.name.0.to_string(), p.partition_index), offset);
            }
        }
        Ok(out)
    }

    async fn coordinator(&mut self, config: &KafkaConfig, group: &str) -> Result<String, LagError> {
        if let Some(address) = self.coordinators.get(group) {
            return Ok(address.clone());
        }
        let mut last = LagError::Io("no bootstrap broker".to_owned());
        for broker in &config.bootstrap {
            let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_owned()));
            match self
                .call::<_, FindCoordinatorResponse>(
                    broker,
                    config.request_timeout,
                    ApiKey::FindCoordinator,
                    request,
                    FIND_COORDINATOR_VERSION,
                )
                .await
            {
                Ok(r) if r.error_code == 0 => {
                    let address = format!("{}:{}", r.host.as_str(), r.port);
                    self.coordinators.insert(group.to_owned(), address.clone());
                    return Ok(address);
                }
                Ok(FindCoordinatorResponse { error_code, .. }) => {
                    last = LagError::Kafka {
                        what: "find coordinator",
                        code: error_code,
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        address: &str,
        limit: Duration,
        api_key: ApiKey,
        request: Req,
        version: i16,
    ) -> Result<Resp, LagError> {
        // A fresh connection per call: lag is read once per topic refresh, and the coordinator may move.
        let mut connection = Connection::connect(address, self.tls.as_ref(), limit).await?;
        Ok(connection.call(api_key, &request, version, limit).await?)
    }
}

/// Commits `offsets` for `group` as a simple (member-less) consumer would; used by tests and tools to set up lag.
pub async fn commit_offsets(config: &KafkaConfig, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), LagError> {
    let mut reader = LagReader::for_config(config)?;
    let coordinator = reader.coordinator(config, group).await?;
    let mut by_topic: HashMap<&str, Vec<OffsetCommitRequestPartition>> = HashMap::new();
    for (topic, partition, offset) in offsets {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response: OffsetCommitResponse = reader
        .call(
            &coordinator,
            config.request_timeout,
            ApiKey::OffsetCommit,
            request,
            OFFSET_COMMIT_VERSION,
        )
        .await?;
    for topic in response.topics {
        for p in topic.partitions {
            if p.error_code != 0 {
                return Err(LagError::Kafka {
                    what: "offset commit",
                    code: p.error_code,
                });
            }
        }
    }
    Ok(())
}
