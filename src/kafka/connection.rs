//! Kafka requests over a connection of our own (plaintext or TLS), spoken with the `kafka-protocol` crate's client
//! half: for the calls rskafka does not make (group offsets) or makes one partition at a time (watermarks).
//!
//! One request is in flight per connection; every step is bounded by the caller's time limit. SASL is not spoken
//! here: callers fall back to rskafka's own connections when `kafka.sasl` is set.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kafka::tls::{self, TlsError};

/// A response larger than this is not an answer to our requests (a watermark read of 100,000 partitions is ~4 MB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Connection failure, reset or timeout.
    #[error("{0}")]
    Io(String),
    /// The request could not be encoded or the answer decoded.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The TLS handshake could not start (e.g. the address is no name to verify).
    #[error("kafka.tls: {0}")]
    Tls(#[from] TlsError),
}

/// Any stream a connection can run over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// An open connection to one broker.
pub struct Connection {
    address: String,
    stream: Box<dyn Stream>,
    correlation: i32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("address", &self.address).finish()
    }
}

impl Connection {
    /// Connects to `address` (`host:port`), with TLS when `tls` is given, within `limit`.
    pub async fn connect(
        address: &str,
        tls: Option<&Arc<rustls::ClientConfig>>,
        limit: Duration,
    ) -> Result<Connection, WireError> {
        let connect = async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| WireError::Io(format!("connect {address}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = match tls {
                Some(config) => {
                    let name = tls::server_name(address)?;
                    Box::new(
                        tokio_rustls::TlsConnector::from(Arc::clone(config))
                            .connect(name, tcp)
                            .await
                            .map_err(|e| WireError::Io(format!("TLS handshake with {address}: {e}")))?,
                    )
                }
                None => Box::new(tcp),
            };
            Ok::<_, WireError>(stream)
        };
        let stream = tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| timeout(address, limit))??;
        Ok(Connection {
            address: address.to_owned(),
            stream,
            correlation: 0,
        })
    }

    /// The broker's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` as `version` of `api_key` and reads its response, within `limit`. After an error the
    /// connection's state is unknown: drop it.
    pub async fn call<Req: Encodable, Resp: Decodable + HeaderVersion>(
        &mut self,
        api_key: ApiKey,
        request: &Req,
        version: i16,
        limit: Duration,
    ) -> Result<Resp, WireError> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let frame = encode(api_key, request, version, correlation)?;
        let address = self.address.clone();
        let body = tokio::time::timeout(limit, roundtrip(&mut self.stream, &frame, &address))
            .await
            .map_err(|_| timeout(&address, limit))??;
        let mut body = bytes::Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, Resp::header_version(version)).map_err(protocol)?;
        if header.correlation_id != correlation {
            return Err(WireError::Protocol(format!(
                "{address}: correlation id {} does not match {correlation}",
                header.correlation_id
            )));
        }
        let response = Resp::decode(&mut body, version).map_err(protocol)?;
        if body.has_remaining() {
            tracing::debug!(bytes = body.remaining(), "trailing bytes in response");
        }
        Ok(response)
    }
}

/// `[len][header][body]`. (Generic over the two halves rather than kafka-protocol's `Request` trait, which needs
/// the crate's "broker" half too: the client half alone keeps the static binary smaller.)
fn encode<Req: Encodable>(
    api_key: ApiKey,
    request: &Req,
    version: i16,
    correlation: i32,
) -> Result<BytesMut, WireError> {
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
    Ok(frame)
}

/// Writes `frame` and reads one length-prefixed response.
async fn roundtrip(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    frame: &[u8],
    address: &str,
) -> Result<Vec<u8>, WireError> {
    let io = |e: std::io::Error| WireError::Io(format!("{address}: {e}"));
    stream.write_all(frame).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let len = stream.read_i32().await.map_err(io)?;
    let len = usize::try_from(len).map_err(|_| WireError::Protocol(format!("{address}: response length {len}")))?;
    if len > MAX_RESPONSE_BYTES {
        return Err(WireError::Protocol(format!("{address}: response of {len} bytes")));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.map_err(io)?;
    Ok(buf)
}

fn timeout(address: &str, limit: Duration) -> WireError {
    WireError::Io(format!(
        "{address}: no answer within {}",
        humantime::format_duration(limit)
    ))
}

fn protocol(e: impl std::fmt::Display) -> WireError {
    WireError::Protocol(e.to_string())
}
