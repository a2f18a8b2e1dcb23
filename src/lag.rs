//! Consumer lag of a table's Flink job, the KEDA way: high watermark minus the committed offset of the job's
//! consumer group, summed over the table's partitions.
//!
//! rskafka has no consumer-group APIs, so FindCoordinator, OffsetFetch and (for tests and tools) OffsetCommit are
//! spoken directly with the `kafka-protocol` crate over a short-lived TCP connection, with TLS when the brokers
//! use it. SASL is not spoken here: with `kafka.sasl` set, lag is reported unknown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::KafkaConfig;
use crate::tls;

/// Non-flexible versions every broker since Kafka 2.0 speaks (tansu too).
const FIND_COORDINATOR_VERSION: i16 = 1;
const OFFSET_FETCH_VERSION: i16 = 5;
const OFFSET_COMMIT_VERSION: i16 = 2;
/// A response larger than this is not an answer to our small requests.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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

/// Reads committed offsets; remembers each group's coordinator.
#[derive(Debug, Default)]
pub struct LagReader {
    coordinators: HashMap<String, String>,
    correlation: i32,
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
        let tls = if config.tls.enabled {
            Some(tls::client_config(&config.tls)?)
        } else {
            None
        };
        Ok(LagReader::new(tls))
    }

    /// The lag of `table`'s job group over `partitions` (topic, partition, client for watermarks). A partition
    /// with no committed offset counts from its log start; an offset below the log start (retention deleted
    /// records) counts from the log start too.
    pub async fn table_lag(
        &mut self,
        config: &KafkaConfig,
        table: &str,
        partitions: &[(String, i32, Arc<PartitionClient>)],
    ) -> Result<u64, LagError> {
        let group = config.group_for(table);
        let keys: Vec<(String, i32)> = partitions.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        let committed = self.committed(config, &group, &keys).await?;
        let limit = config.request_timeout;
        let mut lag = 0u64;
        for (topic, partition, client) in partitions {
            let high = offset(limit, client, OffsetAt::Latest).await?;
            let start = offset(limit, client, OffsetAt::Earliest).await?;
            let from = committed
                .get(&(topic.clone(), *partition))
                .copied()
                .flatten()
                .unwrap_or(start)
                .max(start);
            lag += u64::try_from(high - from).unwrap_or(0);
        }
        Ok(lag)
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
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        tokio::time::timeout(
            limit,
            exchange::<Req, Resp>(address, self.tls.clone(), api_key, request, version, correlation),
        )
        .await
        .map_err(|_| {
            LagError::Io(format!(
                "{address}: no answer within {}",
                humantime::format_duration(limit)
            ))
        })?
    }
}

async fn offset(limit: Duration, client: &PartitionClient, at: OffsetAt) -> Result<i64, LagError> {
    tokio::time::timeout(limit, client.get_offset(at))
        .await
        .map_err(|_| LagError::Io("list offsets: timeout".to_owned()))?
        .map_err(|e| LagError::Io(format!("list offsets: {e}")))
}

fn protocol(e: impl std::fmt::Display) -> LagError {
    LagError::Protocol(e.to_string())
}

/// One request and its response over a fresh connection (TLS with `tls`): `[len][header][body]` out,
/// `[len][header][body]` in.
/// (Generic over the two halves rather than kafka-protocol's `Request` trait, which needs the crate's "broker"
/// half too: the client half alone keeps the static binary smaller.)
async fn exchange<Req: Encodable, Resp: Decodable + HeaderVersion>(
    address: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    api_key: ApiKey,
    request: Req,
    version: i16,
    correlation: i32,
) -> Result<Resp, LagError> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("cdc-orchestrator")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .map_err(protocol)?;
    request.encode(&mut body, version).map_err(protocol)?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).map_err(protocol)?);
    frame.extend_from_slice(&body);

    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| LagError::Io(format!("connect {address}: {e}")))?;
    let buf = match tls {
        Some(config) => {
            let name = tls::server_name(address)?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| LagError::Io(format!("TLS handshake with {address}: {e}")))?;
            roundtrip(stream, &frame, address).await?
        }
        None => roundtrip(stream, &frame, address).await?,
    };
    let mut buf = bytes::Bytes::from(buf);
    let header =
        kafka_protocol::messages::ResponseHeader::decode(&mut buf, Resp::header_version(version)).map_err(protocol)?;
    if header.correlation_id != correlation {
        return Err(LagError::Protocol(format!(
            "correlation id {} does not match {correlation}",
            header.correlation_id
        )));
    }
    let response = Resp::decode(&mut buf, version).map_err(protocol)?;
    if buf.has_remaining() {
        tracing::debug!(bytes = buf.remaining(), "trailing bytes in response");
    }
    Ok(response)
}

/// Writes `frame` and reads one length-prefixed response.
async fn roundtrip(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    frame: &[u8],
    address: &str,
) -> Result<Vec<u8>, LagError> {
    let io = |e: std::io::Error| LagError::Io(format!("{address}: {e}"));
    stream.write_all(frame).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let len = usize::try_from(stream.read_i32().await.map_err(io)?).map_err(protocol)?;
    if len > MAX_RESPONSE_BYTES {
        return Err(LagError::Protocol(format!("response of {len} bytes")));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Ok(buf)
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
