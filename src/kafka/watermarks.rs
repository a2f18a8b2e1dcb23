//! Batched watermark reads: one Metadata request for the cluster, then one ListOffsets request per broker for all
//! of its watched partitions, over the connections of the caller's [`Pool`], kept open between polls (with TLS and
//! SASL as configured).
//!
//! rskafka asks one partition at a time (a request and a response per partition per poll); at thousands of
//! partitions that is most of the sidecar's CPU. Here a poll of N partitions led by B brokers is B requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::kafka::connection::{Connection, Lease, Pool, WireError};

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
    /// The leader answered -1: it does not know the offset (yet).
    #[error("list offsets: offset unknown (-1)")]
    Unknown,
    /// The leader answered an offset no partition can have: a broker error for this partition.
    #[error("list offsets: impossible offset {0}")]
    Invalid(i64),
}

/// `offset` as a broker's answer for a partition's end: a real offset (0 or more), or why it is none. Every offset
/// read from a broker goes through here, so that the arithmetic on offsets only ever sees `0..=i64::MAX`.
pub(crate) fn checked_offset(offset: i64) -> OffsetRead {
    match offset {
        0.. => Ok(offset),
        -1 => Err(OffsetError::Unknown),
        _ => Err(OffsetError::Invalid(offset)),
    }
}

/// Records in `[from, high)`: 0 when `high` is not past `from`, never wrapping, whatever the two offsets.
pub(crate) fn records_between(from: i64, high: i64) -> u64 {
    if high > from { high.abs_diff(from) } else { 0 }
}

/// One partition's offset, or why it was not read.
pub type OffsetRead = Result<i64, OffsetError>;

/// A topic and one of its partitions. The topic's name is shared by all of its partitions (and with every list
/// of them), so that watching 100,000 partitions of 1,000 topics holds 1,000 names, not 100,000.
pub type TopicPartition = (Arc<str>, i32);

/// At most this many partitions go in one ListOffsets request; a broker's larger share is asked in several, one
/// after another over its connection. A broker's time to answer grows faster than the request (tansu 0.6 on 2
/// cores: 12,000 partitions in 0.06 s, 24,000 in 0.14 s, 120,000 in 1.78 s), and each answer is read and let go
/// before the next is asked for, which bounds what a poll of many partitions holds in memory. Below it (the usual
/// case) a poll is one request per broker.
pub const MAX_PARTITIONS_PER_REQUEST: usize = 10_000;

/// One broker's partitions by topic, each with its index in the caller's list.
type ByTopic<'p> = BTreeMap<&'p str, Vec<(i32, usize)>>;

/// Reads watermarks in batches; remembers brokers and partition leaders (the connections are the caller's pool's).
#[derive(Debug)]
pub struct WatermarkReader {
    brokers: HashMap<BrokerId, String>,
    /// Each partition's leader by topic, so a lookup borrows the topic name rather than allocating a key.
    leaders: HashMap<String, HashMap<i32, BrokerId>>,
    stale: bool,
    /// The requests of the last read of high watermarks, sent again while the partitions and their leaders stay
    /// the same: a poll then builds nothing per partition but the answer.
    plan: Option<Plan>,
    max_per_request: usize,
}

/// The ListOffsets requests that read `at` for one list of partitions.
#[derive(Debug)]
struct Plan {
    /// The list it was made for: the same `Arc` is the same partitions in the same order.
    partitions: Arc<[TopicPartition]>,
    at: Offset,
    /// Each leading broker's address and its requests.
    brokers: Vec<(String, Vec<Batch>)>,
    /// Partitions that cannot be asked for (their index in `partitions`), and why.
    unaskable: Vec<(usize, OffsetError)>,
}

/// One ListOffsets request, and the index in the caller's list of each partition it asks for, in its order.
#[derive(Debug)]
struct Batch {
    request: ListOffsetsRequest,
    indices: Vec<usize>,
}

impl Default for WatermarkReader {
    /// A reader of at most [`MAX_PARTITIONS_PER_REQUEST`] partitions per request, the watcher's.
    fn default() -> Self {
        WatermarkReader::new(MAX_PARTITIONS_PER_REQUEST)
    }
}

impl WatermarkReader {
    /// A reader that asks for at most `max_partitions_per_request` partitions per ListOffsets request (at least 1).
    pub fn new(max_partitions_per_request: usize) -> Self {
        WatermarkReader {
            brokers: HashMap::new(),
            leaders: HashMap::new(),
            stale: false,
            plan: None,
            max_per_request: max_partitions_per_request.max(1),
        }
    }

    /// Whether a broker answered that it no longer leads a partition: metadata should be read again.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Reads the cluster's metadata from the first of `bootstrap` that answers (or a known broker), learns every
    /// partition's leader and returns every topic with its partitions. `pool`'s connections to brokers that left
    /// are closed.
    pub async fn refresh(
        &mut self,
        pool: &mut Pool,
        bootstrap: &[String],
        limit: Duration,
    ) -> Result<Vec<TopicPartitions>, WireError> {
        // The requests are planned again after it; letting the old ones go first keeps the two, and the answer
        // (a few hundred bytes per partition decoded), out of memory at the same time.
        self.plan = None;
        let known: Vec<String> = self.brokers.values().cloned().collect();
        let mut last = WireError::NoBroker;
        for address in bootstrap.iter().chain(known.iter()) {
            let request = MetadataRequest::default().with_topics(None);
            match pool.call(address, &request, limit).await {
                Ok(metadata) => match metadata.error_code.err() {
                    None => return Ok(self.learn(pool, metadata, bootstrap)),
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

    fn learn(&mut self, pool: &mut Pool, metadata: MetadataResponse, bootstrap: &[String]) -> Vec<TopicPartitions> {
        let brokers: HashMap<BrokerId, String> = metadata
            .brokers
            .into_iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        // A broker that moved or left: its connection goes.
        pool.retain(|address| bootstrap.iter().chain(brokers.values()).any(|a| a == address));
        self.brokers = brokers;
        self.leaders.clear();
        self.stale = false;
        // Leaders may have moved: the next read plans its requests again.
        self.plan = None;
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
            partitions.dedup();
            topics.push(TopicPartitions { name, partitions });
        }
        topics
    }

    /// The `at` offset of each of `partitions` (in their order): one request per leading broker (or several, of at
    /// most [`MAX_PARTITIONS_PER_REQUEST`] partitions each), brokers read concurrently. A partition whose read
    /// failed has an error (the others still have their offsets); an error naming a lost leader marks the reader
    /// stale. The requests for high watermarks are built once and sent again while `partitions` is the same `Arc`
    /// and no metadata was read in between.
    pub async fn offsets(
        &mut self,
        pool: &mut Pool,
        partitions: &Arc<[TopicPartition]>,
        at: Offset,
        limit: Duration,
    ) -> Vec<OffsetRead> {
        let reusable = self
            .plan
            .as_ref()
            .is_some_and(|plan| plan.at == at && Arc::ptr_eq(&plan.partitions, partitions));
        let plan = match self.plan.take_if(|_| reusable) {
            Some(plan) => plan,
            None => self.plan_for(partitions, at),
        };
        let mut out: Vec<OffsetRead> = vec![Err(OffsetError::Missing); partitions.len()];
        for (i, error) in &plan.unaskable {
            // Metadata named no leader, or one it did not list: ask again next time.
            self.stale = true;
            out[*i] = Err(error.clone());
        }
        let calls: Vec<_> = plan
            .brokers
            .iter()
            .map(|(address, batches)| {
                let lease = pool.lease(address);
                read_broker(lease, batches, limit)
            })
            .collect();
        for (connection, read, stale) in futures::future::join_all(calls).await {
            // After an error the connection is gone; the next poll connects again.
            if let Some(connection) = connection {
                pool.restore(connection);
            }
            self.stale |= stale;
            for (i, offset) in read {
                out[i] = offset;
            }
        }
        // Only the high watermarks are read every poll; a read of log starts (for lag) is planned each time.
        if at == Offset::Latest {
            self.plan = Some(plan);
        }
        out
    }

    /// The requests that read `at` for `partitions`, by leading broker and topic, at most `max_per_request`
    /// partitions each.
    fn plan_for(&self, partitions: &Arc<[TopicPartition]>, at: Offset) -> Plan {
        let mut by_broker: BTreeMap<BrokerId, ByTopic<'_>> = BTreeMap::new();
        let mut unaskable = Vec::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            match self.leaders.get(&**topic).and_then(|ps| ps.get(partition)) {
                Some(leader) => by_broker
                    .entry(*leader)
                    .or_default()
                    .entry(&**topic)
                    .or_default()
                    .push((*partition, i)),
                None => unaskable.push((i, OffsetError::NoLeader)),
            }
        }
        let timestamp = match at {
            Offset::Earliest => -2,
            Offset::Latest => -1,
        };
        let mut brokers = Vec::with_capacity(by_broker.len());
        for (broker, topics) in by_broker {
            let Some(address) = self.brokers.get(&broker) else {
                let error = OffsetError::UnknownLeader(broker.0);
                unaskable.extend(topics.values().flatten().map(|(_, i)| (*i, error.clone())));
                continue;
            };
            brokers.push((address.clone(), batches(topics, timestamp, self.max_per_request)));
        }
        Plan {
            partitions: Arc::clone(partitions),
            at,
            brokers,
            unaskable,
        }
    }
}

/// Sends one broker's `batches` in turn over `lease`; each partition's offset by its index, whether an answer said
/// a leader moved, and the connection to keep (none after an error).
async fn read_broker(
    mut lease: Lease,
    batches: &[Batch],
    limit: Duration,
) -> (Option<Connection>, Vec<(usize, OffsetRead)>, bool) {
    let mut read = Vec::with_capacity(batches.iter().map(|b| b.indices.len()).sum());
    let mut stale = false;
    for (n, batch) in batches.iter().enumerate() {
        match lease.call(&batch.request, limit).await {
            Ok(response) => stale |= batch.read(&response, &mut read),
            Err(e) => {
                // The connection is gone and so is this poll's answer from this broker, for every batch left.
                let e = Arc::new(e);
                for batch in &batches[n..] {
                    read.extend(
                        batch
                            .indices
                            .iter()
                            .map(|i| (*i, Err(OffsetError::Broker(Arc::clone(&e))))),
                    );
                }
                break;
            }
        }
    }
    (lease.into_connection(), read, stale)
}

/// One broker's partitions by topic as ListOffsets requests of at most `max` partitions each; a topic with more
/// partitions than fit in the rest of a request goes on in the next.
fn batches(topics: ByTopic<'_>, timestamp: i64, max: usize) -> Vec<Batch> {
    let max = max.max(1);
    let mut batches = Vec::new();
    let mut topics_of_batch: Vec<ListOffsetsTopic> = Vec::new();
    let mut indices = Vec::new();
    for (topic, partitions) in topics {
        let name = TopicName(StrBytes::from_string(topic.to_owned()));
        let mut rest = partitions.as_slice();
        while !rest.is_empty() {
            let room = max - indices.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            topics_of_batch.push(
                ListOffsetsTopic::default().with_name(name.clone()).with_partitions(
                    now.iter()
                        .map(|(p, _)| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                ),
            );
            indices.extend(now.iter().map(|(_, i)| *i));
            if indices.len() == max {
                batches.push(Batch::new(
                    std::mem::take(&mut topics_of_batch),
                    std::mem::take(&mut indices),
                ));
            }
            rest = later;
        }
    }
    if !indices.is_empty() {
        batches.push(Batch::new(topics_of_batch, indices));
    }
    batches
}

impl Batch {
    /// ListOffsets for `topics` (the same in versions 2 and 3).
    fn new(topics: Vec<ListOffsetsTopic>, indices: Vec<usize>) -> Batch {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_COMMITTED)
            .with_topics(topics);
        Batch { request, indices }
    }

    /// The offsets `response` gives for the partitions asked, with their index, into `read`; whether an error
    /// said a leader moved. Partitions the answer does not mention stay out of `read` (they remain
    /// [`OffsetError::Missing`]); any it mentions that were not asked for are ignored.
    fn read(&self, response: &ListOffsetsResponse, read: &mut Vec<(usize, OffsetRead)>) -> bool {
        let asked = &self.request.topics;
        // Brokers answer in the order asked, so each answer is matched by its position; a lookup, built only when
        // needed, covers an answer in any other order.
        let mut starts = Vec::with_capacity(asked.len());
        let mut at = 0;
        for topic in asked {
            starts.push(at);
            at += topic.partitions.len();
        }
        let mut lookup: Option<HashMap<(&str, i32), usize>> = None;
        let mut stale = false;
        for (t, topic) in response.topics.iter().enumerate() {
            let name = topic.name.0.as_str();
            let same_topic = asked.get(t).filter(|a| a.name.0.as_str() == name);
            for (n, p) in topic.partitions.iter().enumerate() {
                let position = same_topic
                    .filter(|a| {
                        a.partitions
                            .get(n)
                            .is_some_and(|q| q.partition_index == p.partition_index)
                    })
                    .map(|_| starts[t] + n)
                    .or_else(|| {
                        lookup
                            .get_or_insert_with(|| self.positions())
                            .get(&(name, p.partition_index))
                            .copied()
                    });
                let Some(position) = position else {
                    continue;
                };
                let offset = match p.error_code.err() {
                    None => checked_offset(p.offset),
                    Some(error) => {
                        stale |= matches!(
                            error,
                            ResponseError::NotLeaderOrFollower
                                | ResponseError::UnknownTopicOrPartition
                                | ResponseError::LeaderNotAvailable
                                | ResponseError::FencedLeaderEpoch
                                | ResponseError::UnknownLeaderEpoch
                        );
                        Err(OffsetError::Kafka(error))
                    }
                };
                read.push((self.indices[position], offset));
            }
        }
        stale
    }

    /// Each partition asked for by topic and number, with its position in the request.
    fn positions(&self) -> HashMap<(&str, i32), usize> {
        self.request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.as_str(), p.partition_index)))
            .enumerate()
            .map(|(position, key)| (key, position))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};

    use super::*;

    fn list(partitions: &[(&str, i32)]) -> Arc<[TopicPartition]> {
        partitions.iter().map(|(t, p)| (Arc::from(*t), *p)).collect()
    }

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
    fn offsets_from_a_broker_are_real_or_an_error_for_their_partition() {
        assert!(matches!(checked_offset(0), Ok(0)));
        assert!(matches!(checked_offset(i64::MAX), Ok(i64::MAX)));
        assert!(matches!(checked_offset(-1), Err(OffsetError::Unknown)));
        assert!(matches!(checked_offset(-5), Err(OffsetError::Invalid(-5))));
        assert!(matches!(checked_offset(i64::MIN), Err(OffsetError::Invalid(i64::MIN))));
        let mut topics = ByTopic::new();
        topics.insert("a", vec![(0, 0), (1, 1), (2, 2)]);
        let [batch] = <[Batch; 1]>::try_from(batches(topics, -1, 10)).expect("one batch");
        let mut read = Vec::new();
        batch.read(
            &answer(&[("a", &[(0, 0, -5), (1, 0, -1), (2, 0, i64::MAX)])]),
            &mut read,
        );
        assert!(matches!(read[0], (0, Err(OffsetError::Invalid(-5)))), "{read:?}");
        assert!(matches!(read[1], (1, Err(OffsetError::Unknown))), "{read:?}");
        assert!(matches!(read[2], (2, Ok(i64::MAX))), "{read:?}");
    }

    proptest::proptest! {
        #[test]
        fn records_between_any_two_offsets_is_their_distance_or_zero(from: i64, high: i64) {
            let wide = i128::from(high) - i128::from(from);
            let expected = u64::try_from(wide.max(0)).expect("fits: at most 2^64 - 1");
            proptest::prop_assert_eq!(records_between(from, high), expected);
        }
    }

    #[test]
    fn metadata_lists_topics_with_sorted_partitions() {
        let mut reader = WatermarkReader::default();
        let topics = reader.learn(&mut Pool::default(), metadata(1), &[]);
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
        reader.learn(&mut Pool::default(), metadata(7), &[]);
        let read = reader
            .offsets(
                &mut Pool::default(),
                &list(&[("cdc.public.t", 0)]),
                Offset::Latest,
                limit,
            )
            .await;
        assert_eq!(read.len(), 1);
        assert!(matches!(&read[0], Err(OffsetError::UnknownLeader(7))), "{read:?}");
        assert!(reader.is_stale());
        // No leader at all (-1), and a partition metadata never named.
        let mut reader = WatermarkReader::default();
        reader.learn(&mut Pool::default(), metadata(-1), &[]);
        let read = reader
            .offsets(
                &mut Pool::default(),
                &list(&[("cdc.public.t", 0), ("cdc.public.gone", 3)]),
                Offset::Earliest,
                limit,
            )
            .await;
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(Result::is_err), "{read:?}");
        assert!(reader.is_stale());
    }

    /// The partitions a batch asks for, in its order.
    fn asked(batch: &Batch) -> Vec<(String, i32)> {
        batch
            .request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), p.partition_index)))
            .collect()
    }

    #[test]
    fn a_broker_share_is_asked_in_requests_of_at_most_the_limit_each_index_once() {
        let mut topics = ByTopic::new();
        topics.insert("a", (0..5).map(|p| (p, 10 + p as usize)).collect());
        topics.insert("b", (0..3).map(|p| (p, 20 + p as usize)).collect());
        let made = batches(topics, -1, 4);
        let shapes: Vec<Vec<(String, i32)>> = made.iter().map(asked).collect();
        let a = |p| ("a".to_owned(), p);
        let b = |p| ("b".to_owned(), p);
        assert_eq!(shapes, vec![vec![a(0), a(1), a(2), a(3)], vec![a(4), b(0), b(1), b(2)]]);
        assert_eq!(made[0].indices, vec![10, 11, 12, 13]);
        assert_eq!(made[1].indices, vec![14, 20, 21, 22]);
        // Topic "a" goes on in the second request under its own name, once per request.
        assert_eq!(made[1].request.topics.len(), 2);
        assert!(
            made.iter()
                .flat_map(|b| &b.request.topics)
                .flat_map(|t| &t.partitions)
                .all(|p| p.timestamp == -1)
        );
        // A limit of 0 is taken as 1 rather than looping forever.
        let mut one = ByTopic::new();
        one.insert("a", vec![(0, 0), (1, 1)]);
        assert_eq!(batches(one, -2, 0).len(), 2);
    }

    /// A partition's answer: number, error code and offset.
    type Answered = (i32, i16, i64);

    fn answer(topics: &[(&str, &[Answered])]) -> ListOffsetsResponse {
        use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
        ListOffsetsResponse::default().with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(StrBytes::from_string((*name).to_owned())))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(p, code, offset)| {
                                    ListOffsetsPartitionResponse::default()
                                        .with_partition_index(*p)
                                        .with_error_code(*code)
                                        .with_offset(*offset)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    #[test]
    fn answers_match_their_partitions_in_any_order_and_ignore_what_was_not_asked() {
        let mut topics = ByTopic::new();
        topics.insert("a", vec![(0, 7), (1, 8)]);
        topics.insert("b", vec![(0, 9)]);
        let [batch] = <[Batch; 1]>::try_from(batches(topics, -1, 10)).expect("one batch");
        // In order: matched by position.
        let mut read = Vec::new();
        let stale = batch.read(
            &answer(&[("a", &[(0, 0, 5), (1, 0, 6)]), ("b", &[(0, 0, 7)])]),
            &mut read,
        );
        let offsets: Vec<(usize, i64)> = read.iter().map(|(i, r)| (*i, *r.as_ref().expect("offset"))).collect();
        assert_eq!(offsets, vec![(7, 5), (8, 6), (9, 7)]);
        assert!(!stale);
        // Another order, a partition not asked for, a topic not asked for, one partition left out, and an error
        // saying the leader moved.
        let mut read = Vec::new();
        let shuffled = answer(&[
            ("b", &[(0, 6, -1), (5, 0, 1)]),
            ("zzz", &[(0, 0, 1)]),
            ("a", &[(1, 0, 60)]),
        ]);
        let stale = batch.read(&shuffled, &mut read);
        assert!(stale, "NOT_LEADER_OR_FOLLOWER marks the plan stale");
        assert_eq!(read.len(), 2, "{read:?}");
        assert!(
            matches!(
                read[0],
                (9, Err(OffsetError::Kafka(ResponseError::NotLeaderOrFollower)))
            ),
            "{read:?}"
        );
        assert!(matches!(read[1], (8, Ok(60))), "{read:?}");
    }

    #[tokio::test]
    async fn the_plan_is_kept_for_the_same_list_and_made_again_after_metadata() {
        let limit = Duration::from_millis(100);
        let mut reader = WatermarkReader::default();
        reader.learn(&mut Pool::default(), metadata(7), &[]);
        let partitions = list(&[("cdc.public.t", 0), ("cdc.public.t", 1)]);
        reader
            .offsets(&mut Pool::default(), &partitions, Offset::Latest, limit)
            .await;
        let first = reader.plan.as_ref().map(|p| Arc::as_ptr(&p.partitions));
        assert_eq!(first, Some(Arc::as_ptr(&partitions)));
        // A read of log starts for another list leaves the high watermarks' plan alone.
        reader
            .offsets(
                &mut Pool::default(),
                &list(&[("cdc.public.t", 0)]),
                Offset::Earliest,
                limit,
            )
            .await;
        assert!(
            reader
                .plan
                .as_ref()
                .is_some_and(|p| p.at == Offset::Latest && Arc::ptr_eq(&p.partitions, &partitions))
        );
        reader.learn(&mut Pool::default(), metadata(7), &[]);
        assert!(reader.plan.is_none(), "new metadata, new plan");
    }
}
