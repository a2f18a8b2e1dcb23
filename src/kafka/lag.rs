//! Consumer-group lag: the committed offsets of a table's Flink job group against the high watermarks of the
//! table's partitions.
//!
//! rskafka has no consumer-group APIs, so FindCoordinator and OffsetFetch go over our own connections (the
//! caller's [`Pool`], the one the watermarks use), with TLS and SASL as configured. The sidecar only reads offsets:
//! committing them is the job's business.

use std::collections::HashMap;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{FindCoordinatorResponse, OffsetFetchResponse};

use crate::config::KafkaConfig;
use crate::kafka::connection::{Pool, WireError};
use crate::kafka::control;
use crate::kafka::requests::{FindCoordinator, OffsetFetch};
use crate::kafka::watermarks::records_between;

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

/// Reads committed offsets; remembers each group's coordinator (whose connection stays open in the caller's pool).
#[derive(Debug, Default)]
pub struct LagReader {
    coordinators: HashMap<String, String>,
}

impl LagReader {
    /// The lag of `table`'s job group given each partition's watermarks (read by the caller, e.g. in one batch).
    /// A partition with no committed offset counts from its log start; an offset below the log start (retention
    /// deleted records) counts from the log start too. Transaction markers are not records a job processes: a
    /// partition whose lag is only markers has none ([`control`]); the checks for markers all end within one
    /// `kafka.request_timeout`.
    pub async fn lag_from(
        &mut self,
        pool: &mut Pool,
        config: &KafkaConfig,
        table: &str,
        partitions: &[PartitionOffsets],
    ) -> Result<u64, LagError> {
        let group = config.group_for(table);
        let keys: Vec<(String, i32)> = partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
        let committed = self.committed(pool, config, &group, &keys).await?;
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
        // The control-record checks of one read share one `kafka.request_timeout`: a broker that never answers a
        // Fetch costs one timeout per read, not one per partition. A check cut short counts its whole lag (the
        // connection it held goes with it).
        let deadline = tokio::time::Instant::now() + config.request_timeout;
        let mut total = 0u64;
        for (p, lag) in partitions.iter().zip(lags) {
            let check = without_control_records(pool, config, p, lag);
            let lag = tokio::time::timeout_at(deadline, check).await.unwrap_or(lag);
            total = total.saturating_add(lag);
        }
        Ok(total)
    }

    /// Committed offsets of `group` for `partitions`; `None` where the group has none.
    pub async fn committed(
        &mut self,
        pool: &mut Pool,
        config: &KafkaConfig,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), Option<i64>>, LagError> {
        let coordinator = self.coordinator(pool, config, group).await?;
        let mut request = OffsetFetch {
            group,
            partitions: HashMap::new(),
        };
        for (topic, partition) in partitions {
            request.partitions.entry(topic).or_default().push(*partition);
        }
        let answer = pool.call(&coordinator, &request, config.request_timeout).await;
        let read = answer.map_err(LagError::from).and_then(committed_offsets);
        if read.is_err() {
            // The coordinator may have moved; ask again next time.
            self.coordinators.remove(group);
        }
        read
    }

    async fn coordinator(&mut self, pool: &mut Pool, config: &KafkaConfig, group: &str) -> Result<String, LagError> {
        if let Some(address) = self.coordinators.get(group) {
            return Ok(address.clone());
        }
        let mut last = LagError::Wire(WireError::NoBroker);
        for broker in &config.bootstrap {
            let answer = pool
                .call(broker, &FindCoordinator { group }, config.request_timeout)
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

/// `lag` of partition `p` without the transaction markers in it: a small lag is fetched and only its records
/// that are not control records count ([`control`]); a larger one, or one the broker cannot show, counts whole.
async fn without_control_records(pool: &mut Pool, config: &KafkaConfig, p: &PartitionOffsets, lag: u64) -> u64 {
    if lag == 0 || lag > control::MAX_CHECKED_LAG {
        return lag;
    }
    // lag <= MAX_CHECKED_LAG, so it fits and the committed offset is high - lag.
    let from = p.high.saturating_sub(i64::try_from(lag).unwrap_or(i64::MAX));
    let read = control::unprocessed(
        pool,
        &config.bootstrap,
        config.request_timeout,
        &p.topic,
        p.partition,
        from,
        p.high,
    )
    .await;
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
