//! Consumer-group lag: the committed offsets of a table's Flink job group against the high watermarks of the
//! table's partitions.
//!
//! rskafka has no consumer-group APIs, so FindCoordinator and OffsetFetch go over our own connections
//! ([`crate::kafka::connection`]), with TLS and SASL as configured. The sidecar only reads offsets: committing them
//! is the job's business.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetFetchRequest, OffsetFetchResponse,
    TopicName,
};
use kafka_protocol::protocol::{Message, StrBytes};

use crate::config::KafkaConfig;
use crate::kafka::connection::{Pool, Security, WireError};
use crate::kafka::control;
use crate::kafka::tls;
use crate::kafka::watermarks::records_between;

const FIND_COORDINATOR_VERSIONS: RangeInclusive<i16> =
    FindCoordinatorRequest::VERSIONS.min..=FindCoordinatorRequest::VERSIONS.max;
/// FindCoordinator v4 asks for a batch of keys rather than one.
const FIND_COORDINATOR_BATCH_VERSION: i16 = 4;
const OFFSET_FETCH_VERSIONS: RangeInclusive<i16> = OffsetFetchRequest::VERSIONS.min..=OffsetFetchRequest::VERSIONS.max;
/// OffsetFetch v8 asks for a batch of groups rather than one.
const OFFSET_FETCH_BATCH_VERSION: i16 = 8;

/// Why lag could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LagError {
    /// No broker answered, or the coordinator did not.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The broker answered with a Kafka error code.
    #[error("{what}: {error}")]
    Kafka {
        /// Which call.
        what: &'static str,
        /// The error code.
        #[source]
        error: ResponseError,
    },
    /// The TLS material could not be loaded.
    #[error("kafka.tls: {0}")]
    Tls(#[from] tls::TlsError),
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

/// Reads committed offsets; remembers each group's coordinator and keeps its connection open.
#[derive(Debug, Default)]
pub struct LagReader {
    coordinators: HashMap<String, String>,
    pool: Pool,
    /// When the transaction-marker checks of the current round of lag reads must be done (see
    /// [`LagReader::start_round`]).
    round_deadline: Option<tokio::time::Instant>,
}

impl LagReader {
    /// A reader whose connections are opened as `security` says (the watcher passes what it built).
    pub fn new(security: Security) -> Self {
        LagReader {
            coordinators: HashMap::new(),
            pool: Pool::new(security),
            round_deadline: None,
        }
    }

    /// Starts a round of lag reads (one per table): the transaction-marker checks of all its tables share one
    /// `budget`, so a broker that never answers a Fetch holds a round at most that long, not once per partition.
    pub fn start_round(&mut self, budget: Duration) {
        self.round_deadline = Some(tokio::time::Instant::now() + budget);
    }

    /// A reader for the brokers of `config`, loading its TLS material.
    pub fn for_config(config: &KafkaConfig) -> Result<Self, LagError> {
        Ok(LagReader::new(Security::for_config(config)?))
    }

    /// The lag of `table`'s job group given each partition's watermarks (read by the caller, e.g. in one batch).
    /// A partition with no committed offset counts from its log start; an offset below the log start (retention
    /// deleted records) counts from the log start too. Transaction markers are not records a job processes: a
    /// partition whose lag is only markers has none ([`control`]).
    pub async fn lag_from(
        &mut self,
        config: &KafkaConfig,
        table: &str,
        partitions: &[PartitionOffsets],
    ) -> Result<u64, LagError> {
        let group = config.group_for(table);
        let keys: Vec<(String, i32)> = partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        let committed = self.committed(config, &group, &keys).await?;
        let lags: Vec<u64> = partitions
            .iter()
            .map(|p| {
                let from = committed
                    .get(&(p.topic.clone(), p.partition))
                    .copied()
                    .flatten()
                    .unwrap_or(p.start)
                    .max(p.start);
                records_between(from, p.high)
            })
            .collect();
        let mut total = 0u64;
        for (p, lag) in partitions.iter().zip(lags) {
            total = total.saturating_add(self.without_control_records(config, p, lag).await);
        }
        Ok(total)
    }

    /// `lag` of partition `p` without the transaction markers in it: a small lag is fetched and only its records
    /// that are not control records count ([`control`]); a larger one, or one the broker cannot show, counts whole.
    async fn without_control_records(&mut self, config: &KafkaConfig, p: &PartitionOffsets, lag: u64) -> u64 {
        if lag == 0 || lag > control::MAX_CHECKED_LAG {
            return lag;
        }
        // lag <= MAX_CHECKED_LAG, so it fits and the committed offset is high - lag.
        let from = p.high.saturating_sub(i64::try_from(lag).unwrap_or(i64::MAX));
        let left = match self.round_deadline {
            Some(deadline) => deadline.saturating_duration_since(tokio::time::Instant::now()),
            None => config.request_timeout,
        };
        if left.is_zero() {
            tracing::debug!(topic = %p.topic, partition = p.partition,
                "no time left in this round to look for transaction markers; the whole lag counts");
            return lag;
        }
        let check = control::unprocessed(
            &mut self.pool,
            &config.bootstrap,
            left.min(config.request_timeout),
            &p.topic,
            p.partition,
            from,
            p.high,
        );
        let Ok(read) = tokio::time::timeout(left, check).await else {
            tracing::debug!(topic = %p.topic, partition = p.partition,
                "transaction-marker check timed out; the whole lag counts");
            return lag;
        };
        match read {
            Ok(0) => {
                tracing::debug!(topic = %p.topic, partition = p.partition, committed = from, high = p.high,
                    "lag of only control records counted as zero");
                0
            }
            Ok(real) => real.min(lag),
            Err(error) => {
                tracing::debug!(topic = %p.topic, partition = p.partition, %error,
                    "cannot tell control records from real ones; the whole lag counts");
                lag
            }
        }
    }

    /// Committed offsets of `group` for `partitions`; `None` where the group has none.
    pub async fn committed(
        &mut self,
        config: &KafkaConfig,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), Option<i64>>, LagError> {
        let coordinator = self.coordinator(config, group).await?;
        let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let request = |version| offset_fetch(group, &by_topic, version);
        let answer: Result<OffsetFetchResponse, _> = self
            .pool
            .call(
                &coordinator,
                ApiKey::OffsetFetch,
                OFFSET_FETCH_VERSIONS,
                request,
                config.request_timeout,
            )
            .await;
        let read = answer.map_err(LagError::from).and_then(committed_offsets);
        if read.is_err() {
            // The coordinator may have moved; ask again next time.
            self.coordinators.remove(group);
        }
        read
    }

    async fn coordinator(&mut self, config: &KafkaConfig, group: &str) -> Result<String, LagError> {
        if let Some(address) = self.coordinators.get(group) {
            return Ok(address.clone());
        }
        let mut last = LagError::Wire(WireError::NoBroker);
        for broker in &config.bootstrap {
            let request = |version| find_coordinator(group, version);
            let answer: Result<FindCoordinatorResponse, _> = self
                .pool
                .call(
                    broker,
                    ApiKey::FindCoordinator,
                    FIND_COORDINATOR_VERSIONS,
                    request,
                    config.request_timeout,
                )
                .await;
            match answer.map_err(LagError::from).and_then(coordinator_address) {
                Ok(address) => {
                    self.coordinators.insert(group.to_owned(), address.clone());
                    return Ok(address);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// FindCoordinator for `group`, in `version` (one key before v4, a batch of one since).
fn find_coordinator(group: &str, version: i16) -> FindCoordinatorRequest {
    let key = StrBytes::from_string(group.to_owned());
    if version >= FIND_COORDINATOR_BATCH_VERSION {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
    } else {
        FindCoordinatorRequest::default().with_key(key)
    }
}

/// The coordinator's `host:port` in either form of the answer.
fn coordinator_address(answer: FindCoordinatorResponse) -> Result<String, LagError> {
    let (error, host, port) = match answer.coordinators.into_iter().next() {
        Some(c) => (c.error_code, c.host, c.port),
        None => (answer.error_code, answer.host, answer.port),
    };
    match error.err() {
        None => Ok(format!("{}:{port}", host.as_str())),
        Some(error) => Err(LagError::Kafka {
            what: "find coordinator",
            error,
        }),
    }
}

/// OffsetFetch of `group` for `by_topic`, in `version` (one group before v8, a batch of one since).
fn offset_fetch(group: &str, by_topic: &HashMap<&str, Vec<i32>>, version: i16) -> OffsetFetchRequest {
    let group_id = GroupId(StrBytes::from_string(group.to_owned()));
    let named = by_topic
        .iter()
        .map(|(topic, parts)| (TopicName(StrBytes::from_string((*topic).to_owned())), parts.clone()));
    if version < OFFSET_FETCH_BATCH_VERSION {
        let topics = named.map(|(name, parts)| {
            OffsetFetchRequestTopic::default()
                .with_name(name)
                .with_partition_indexes(parts)
        });
        return OffsetFetchRequest::default()
            .with_group_id(group_id)
            .with_topics(Some(topics.collect()));
    }
    let topics = named.map(|(name, parts)| {
        OffsetFetchRequestTopics::default()
            .with_name(name)
            .with_partition_indexes(parts)
    });
    let group = OffsetFetchRequestGroup::default()
        .with_group_id(group_id)
        .with_topics(Some(topics.collect()));
    OffsetFetchRequest::default().with_groups(vec![group])
}

/// The committed offsets in either form of the answer; `None` for a partition without one.
fn committed_offsets(answer: OffsetFetchResponse) -> Result<HashMap<(String, i32), Option<i64>>, LagError> {
    // Both forms hold topics of partitions with the same fields; only their types differ.
    macro_rules! offsets_of {
        ($topics:expr) => {
            $topics
                .into_iter()
                .flat_map(|t| {
                    let name = t.name.0.to_string();
                    t.partitions.into_iter().map(move |p| {
                        let committed =
                            (p.error_code.err().is_none() && p.committed_offset >= 0).then_some(p.committed_offset);
                        ((name.clone(), p.partition_index), committed)
                    })
                })
                .collect::<HashMap<_, _>>()
        };
    }
    let (error, offsets) = match answer.groups.into_iter().next() {
        Some(group) => (group.error_code, offsets_of!(group.topics)),
        None => (answer.error_code, offsets_of!(answer.topics)),
    };
    match error.err() {
        None => Ok(offsets),
        Some(error) => Err(LagError::Kafka {
            what: "offset fetch",
            error,
        }),
    }
}
