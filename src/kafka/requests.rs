//! Every request our connections send, typed as rskafka types its own: each [`Request`] names its API key, the
//! versions it goes out in and its response type, so a call is `connection.call(&request, limit)` and its answer
//! comes back typed. The version ranges are chosen here, once per request, with why.
//!
//! Requests that are the same in every version they go out in are kafka-protocol's own messages; those whose shape
//! changes between versions ([`FindCoordinator`], [`OffsetFetch`]) are ours, and build the message for the version
//! the connection picked.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetFetchRequest, OffsetFetchResponse, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};

use crate::kafka::connection::ProtocolCause;

/// A request a connection can send: which API it is, the versions it may go out in (the connection picks the
/// highest the broker speaks too), and what the broker answers.
pub trait Request {
    /// The API.
    const KEY: ApiKey;
    /// The versions this client sends it in.
    const VERSIONS: RangeInclusive<i16>;
    /// The answer.
    type Response: Decodable + HeaderVersion;

    /// Writes the request's body as `version` of it.
    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), ProtocolCause>;
}

/// [`Request`] for a kafka-protocol message that is the same in every version of `$versions`.
macro_rules! same_in_every_version {
    ($request:ty => $response:ty, $key:expr, $versions:expr) => {
        impl Request for $request {
            const KEY: ApiKey = $key;
            const VERSIONS: RangeInclusive<i16> = $versions;
            type Response = $response;

            fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), ProtocolCause> {
                Encodable::encode(self, buf, version).map_err(Into::into)
            }
        }
    };
}

// Every version kafka-protocol speaks: the connection falls back within it as KIP-511 says.
same_in_every_version!(
    ApiVersionsRequest => ApiVersionsResponse,
    ApiKey::ApiVersions,
    <ApiVersionsRequest as Message>::VERSIONS.min..=<ApiVersionsRequest as Message>::VERSIONS.max
);

// The most compact versions that carry what we need, not the highest the broker speaks: these requests go out
// every poll (ListOffsets) or every `kafka.topic_refresh` (Metadata), and newer versions only add fields we do not
// read. Metadata v1 is the first that asks for every topic with a null list; v5 adds offline replicas and v7
// leader epochs per partition, so v4 is the highest (kept in range for brokers that dropped v1-v3).
same_in_every_version!(MetadataRequest => MetadataResponse, ApiKey::Metadata, 1..=4);

// ListOffsets v2 is the first with an isolation level; v4 adds a 4-byte leader epoch per partition in each
// direction (about 4.7 KB more per cycle at 1,000 partitions), so v3 is the highest asked for.
same_in_every_version!(ListOffsetsRequest => ListOffsetsResponse, ApiKey::ListOffsets, 2..=3);

// Fetch v4 is the first with an isolation level (and record batches, magic 2, which carry the control flag); from
// v13 topics are named by id. Versions between add fields the control-record check does not read.
same_in_every_version!(FetchRequest => FetchResponse, ApiKey::Fetch, 4..=12);

// SaslHandshake v1 wraps the mechanism's messages in SaslAuthenticate requests; v0 sent them raw (Kafka < 1.0).
same_in_every_version!(
    SaslHandshakeRequest => SaslHandshakeResponse,
    ApiKey::SaslHandshake,
    1..=<SaslHandshakeRequest as Message>::VERSIONS.max
);
same_in_every_version!(
    SaslAuthenticateRequest => SaslAuthenticateResponse,
    ApiKey::SaslAuthenticate,
    <SaslAuthenticateRequest as Message>::VERSIONS.min..=<SaslAuthenticateRequest as Message>::VERSIONS.max
);

/// FindCoordinator v4 asks for a batch of keys rather than one.
const FIND_COORDINATOR_BATCH_VERSION: i16 = 4;
/// OffsetFetch v8 asks for a batch of groups rather than one.
const OFFSET_FETCH_BATCH_VERSION: i16 = 8;

/// FindCoordinator for one consumer group: one key before v4, a batch of one since.
#[derive(Debug, Clone, Copy)]
pub struct FindCoordinator<'a> {
    /// The group.
    pub group: &'a str,
}

impl Request for FindCoordinator<'_> {
    const KEY: ApiKey = ApiKey::FindCoordinator;
    const VERSIONS: RangeInclusive<i16> =
        <FindCoordinatorRequest as Message>::VERSIONS.min..=<FindCoordinatorRequest as Message>::VERSIONS.max;
    type Response = FindCoordinatorResponse;

    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), ProtocolCause> {
        let key = StrBytes::from_string(self.group.to_owned());
        let request = if version >= FIND_COORDINATOR_BATCH_VERSION {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        request.encode(buf, version).map_err(Into::into)
    }
}

/// OffsetFetch of one group's committed offsets for some partitions: one group before v8, a batch of one since.
#[derive(Debug, Clone)]
pub struct OffsetFetch<'a> {
    /// The group.
    pub group: &'a str,
    /// Its partitions, by topic.
    pub partitions: HashMap<&'a str, Vec<i32>>,
}

impl Request for OffsetFetch<'_> {
    const KEY: ApiKey = ApiKey::OffsetFetch;
    const VERSIONS: RangeInclusive<i16> =
        <OffsetFetchRequest as Message>::VERSIONS.min..=<OffsetFetchRequest as Message>::VERSIONS.max;
    type Response = OffsetFetchResponse;

    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), ProtocolCause> {
        let group_id = GroupId(StrBytes::from_string(self.group.to_owned()));
        let named = self
            .partitions
            .iter()
            .map(|(topic, parts)| (TopicName(StrBytes::from_string((*topic).to_owned())), parts.clone()));
        let request = if version < OFFSET_FETCH_BATCH_VERSION {
            let topics = named.map(|(name, parts)| {
                OffsetFetchRequestTopic::default()
                    .with_name(name)
                    .with_partition_indexes(parts)
            });
            OffsetFetchRequest::default()
                .with_group_id(group_id)
                .with_topics(Some(topics.collect()))
        } else {
            let topics = named.map(|(name, parts)| {
                OffsetFetchRequestTopics::default()
                    .with_name(name)
                    .with_partition_indexes(parts)
            });
            let group = OffsetFetchRequestGroup::default()
                .with_group_id(group_id)
                .with_topics(Some(topics.collect()));
            OffsetFetchRequest::default().with_groups(vec![group])
        };
        request.encode(buf, version).map_err(Into::into)
    }
}
