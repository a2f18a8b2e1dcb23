//! What a Flink job does and the sidecar never: committing a group's offsets (tests set up lag with it). Spoken over
//! the sidecar's own connection layer, so it works under TLS and SASL too.

use std::error::Error;

use cdc_orchestrator::config::KafkaConfig;
use cdc_orchestrator::kafka::connection::{Pool, Security};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetCommitRequest, OffsetCommitResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

type Failure = Box<dyn Error + Send + Sync>;

/// Commits `offsets` for `group` as a simple (member-less) consumer would.
pub async fn commit_offsets(config: &KafkaConfig, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), Failure> {
    let mut pool = Pool::new(Security::for_config(config)?);
    let limit = config.request_timeout;
    let bootstrap = config.bootstrap.first().ok_or("no bootstrap broker")?;
    let key = StrBytes::from_string(group.to_owned());
    let found: FindCoordinatorResponse = pool
        .call(
            bootstrap,
            ApiKey::FindCoordinator,
            1..=3,
            |_| FindCoordinatorRequest::default().with_key(key),
            limit,
        )
        .await?;
    if let Some(error) = found.error_code.err() {
        return Err(format!("find coordinator: {error}").into());
    }
    let coordinator = format!("{}:{}", found.host.as_str(), found.port);
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
    let response: OffsetCommitResponse = pool
        .call(&coordinator, ApiKey::OffsetCommit, 2..=2, |_| request, limit)
        .await?;
    for topic in response.topics {
        for p in topic.partitions {
            if let Some(error) = p.error_code.err() {
                return Err(format!("offset commit: {error}").into());
            }
        }
    }
    Ok(())
}
