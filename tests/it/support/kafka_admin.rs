//! What a Flink job does and the sidecar never: committing a group's offsets (tests set up lag with it). Spoken over
//! the sidecar's own connection layer, so it works under TLS and SASL too. Also the requests the sidecar never
//! sends, typed for that layer ([`Request`]) for the tests that speak them.

use std::error::Error;
use std::ops::RangeInclusive;

use bytes::BytesMut;
use cdc_orchestrator::config::KafkaConfig;
use cdc_orchestrator::kafka::connection::{Pool, Security};
use cdc_orchestrator::kafka::requests::{FindCoordinator, Request};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse, GroupId,
    InitProducerIdRequest, InitProducerIdResponse, OffsetCommitRequest, OffsetCommitResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

type Failure = Box<dyn Error + Send + Sync>;

/// Newtypes over kafka-protocol's requests the sidecar never sends, each a [`Request`] in the versions given.
macro_rules! test_requests {
    ($($name:ident($request:ty) => $response:ty, $key:expr, $versions:expr;)*) => {$(
        #[doc = concat!("`", stringify!($request), "`, typed for the sidecar's connection layer.")]
        pub struct $name(pub $request);

        impl Request for $name {
            const KEY: ApiKey = $key;
            const VERSIONS: RangeInclusive<i16> = $versions;
            type Response = $response;

            fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), Failure> {
                self.0.encode(buf, version).map_err(Into::into)
            }
        }
    )*};
}

test_requests! {
    OffsetCommit(OffsetCommitRequest) => OffsetCommitResponse, ApiKey::OffsetCommit, 2..=2;
    InitProducerId(InitProducerIdRequest) => InitProducerIdResponse, ApiKey::InitProducerId, 0..=4;
    AddPartitionsToTxn(AddPartitionsToTxnRequest) => AddPartitionsToTxnResponse, ApiKey::AddPartitionsToTxn, 0..=3;
    Produce(ProduceRequest) => ProduceResponse, ApiKey::Produce, 3..=12;
    EndTxn(EndTxnRequest) => EndTxnResponse, ApiKey::EndTxn, 0..=4;
}

/// Commits `offsets` for `group` as a simple (member-less) consumer would.
pub async fn commit_offsets(config: &KafkaConfig, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), Failure> {
    let mut pool = Pool::new(Security::for_config(config)?);
    let limit = config.request_timeout;
    let bootstrap = config.bootstrap.first().ok_or("no bootstrap broker")?;
    let found = pool.call(bootstrap, &FindCoordinator { group }, limit).await?;
    // One key before v4, a batch of one since.
    let (error, host, port) = match found.coordinators.into_iter().next() {
        Some(c) => (c.error_code, c.host, c.port),
        None => (found.error_code, found.host, found.port),
    };
    if let Some(error) = error.err() {
        return Err(format!("find coordinator: {error}").into());
    }
    let coordinator = format!("{}:{port}", host.as_str());
    let mut by_topic: std::collections::BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = Default::default();
    for (topic, partition, offset) in offsets {
        by_topic.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset),
        );
    }
    let topics: Vec<OffsetCommitRequestTopic> = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(partitions)
        })
        .collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_generation_id_or_member_epoch(-1)
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let response = pool.call(&coordinator, &OffsetCommit(request), limit).await?;
    for topic in response.topics {
        for p in topic.partitions {
            if let Some(error) = p.error_code.err() {
                return Err(format!("offset commit: {error}").into());
            }
        }
    }
    Ok(())
}
