//! Kafka requests over connections of our own, spoken with the `kafka-protocol` crate's client half: the calls
//! rskafka does not make (group offsets) or makes one partition at a time (watermarks). rskafka still fetches the
//! record samples.
//!
//! A connection runs over plain TCP or TLS, opens with ApiVersions so that every request goes out in the highest
//! version both sides speak, and authenticates with SASL when `kafka.sasl` is set ([`crate::kafka::sasl`]): the
//! batched watermark and lag reads work the same under every security setting. One request is in flight per
//! connection; every step is bounded by the caller's time limit.

use std::collections::HashMap;
use std::io::{Cursor, ErrorKind};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::auth::TokenError;
use crate::auth::aws::AwsEnv;
use crate::config::KafkaConfig;
use crate::kafka::requests::Request;
use crate::kafka::sasl::{self, Login, PasswordLogin};
use crate::kafka::tls::{self, TlsError};
use crate::kafka::token::{TokenCache, initial_response};

/// Read size while a response arrives: memory follows the bytes a broker actually sends, not the length it claims.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Sent as the client id, and in ApiVersions v3+ as the client software name.
const CLIENT_ID: &str = "cdc-orchestrator";
/// Every SASL request must be answered within this, whatever the caller's overall limit (which also bounds it).
const SASL_STEP_LIMIT: Duration = Duration::from_secs(30);

/// A cause from the `kafka-protocol` crate (its errors are `anyhow` errors) or the `rsasl` crate.
pub(crate) type ProtocolCause = Box<dyn std::error::Error + Send + Sync>;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The TCP connection could not be made.
    #[error("connect {address}: {source}")]
    Connect {
        /// The broker.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {address}: {source}")]
    Handshake {
        /// The broker.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed or was reset mid-request.
    #[error("{address}: {source}")]
    Io {
        /// The broker.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer within the time limit.
    #[error("{address}: no answer within {}", humantime::format_duration(*limit))]
    Timeout {
        /// The broker.
        address: String,
        /// The limit.
        limit: Duration,
    },
    /// A request could not be encoded, or its answer decoded.
    #[error("{address}: {api:?}: protocol: {source}")]
    Protocol {
        /// The broker.
        address: String,
        /// Which request.
        api: ApiKey,
        /// Why.
        #[source]
        source: ProtocolCause,
    },
    /// The answer does not fit the request (wrong correlation id, impossible length).
    #[error("{address}: protocol: {reason}")]
    Framing {
        /// The broker.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker speaks no version of an API that this client can use.
    #[error("{address}: the broker speaks {api:?} versions {theirs}, this client {}-{}", ours.start(), ours.end())]
    Unsupported {
        /// The broker.
        address: String,
        /// Which API.
        api: ApiKey,
        /// What this client speaks.
        ours: RangeInclusive<i16>,
        /// What the broker announced (`none` if it did not list the API).
        theirs: String,
    },
    /// The broker answered a request with a Kafka error code.
    #[error("{address}: {api:?}: {error}")]
    Kafka {
        /// The broker.
        address: String,
        /// Which request.
        api: ApiKey,
        /// The error code.
        #[source]
        error: ResponseError,
    },
    /// The broker refused the SASL mechanism or credentials.
    #[error("{address}: SASL {mechanism} authentication failed: {error}{}", detail(message))]
    Authentication {
        /// The broker.
        address: String,
        /// The mechanism, e.g. `SCRAM-SHA-256`.
        mechanism: &'static str,
        /// The error code (e.g. `SaslAuthenticationFailed`, `UnsupportedSaslMechanism`).
        #[source]
        error: ResponseError,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// The broker closed a connection without a SASL login at its first request after ApiVersions: what a broker
    /// that requires authentication does (it answers nothing else before a login).
    #[error(
        "{address}: {api:?}: the broker closed the connection ({source}); kafka.sasl is not set, and a broker that \
         requires authentication closes a connection that has not logged in"
    )]
    ClosedUnauthenticated {
        /// The broker.
        address: String,
        /// The request it did not answer.
        api: ApiKey,
        /// How the connection ended.
        #[source]
        source: std::io::Error,
    },
    /// The SASL exchange itself failed on our side (e.g. the server's SCRAM signature does not verify).
    #[error("{address}: SASL {mechanism}: {source}")]
    Sasl {
        /// The broker.
        address: String,
        /// The mechanism.
        mechanism: &'static str,
        /// Why.
        #[source]
        source: ProtocolCause,
    },
    /// No SASL OAUTHBEARER token could be had (the token endpoint is down, refuses, answers garbage).
    #[error("{address}: SASL OAUTHBEARER: no token: {source}")]
    Token {
        /// The broker.
        address: String,
        /// Why, naming the token's source.
        #[source]
        source: TokenError,
    },
    /// The TLS handshake could not start (e.g. the address is no name to verify).
    #[error("kafka.tls: {0}")]
    Tls(#[from] TlsError),
    /// There was no broker to ask.
    #[error("no bootstrap broker")]
    NoBroker,
}

fn detail(message: &Option<String>) -> String {
    message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
}

/// Why [`Security::for_config`] cannot secure connections as the configuration says: exit 2 at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// `kafka.tls`'s material could not be loaded.
    #[error("kafka.tls: {0}")]
    Tls(#[from] TlsError),
    /// `kafka.sasl`'s token provider could not be made.
    #[error(transparent)]
    Login(#[from] TokenError),
}

/// How connections reach the brokers: TLS and SASL, as `kafka.tls` and `kafka.sasl` say, and the largest answer
/// accepted (`kafka.max_response_bytes`).
#[derive(Debug, Clone)]
pub struct Security {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Login>,
    max_response_bytes: usize,
}

impl Default for Security {
    fn default() -> Self {
        Security::new(None, None)
    }
}

impl Security {
    /// TLS with `tls` when given, SASL with `sasl` when given.
    /// Answers are bounded by the default `kafka.max_response_bytes`.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, sasl: Option<Login>) -> Security {
        Security {
            tls,
            sasl,
            max_response_bytes: max_response_bytes(&KafkaConfig::default()),
        }
    }

    /// What `config` asks for, loading its TLS material and making its SASL token provider (no token is fetched
    /// yet: a token endpoint that is down at start is retried like a broker that is).
    pub fn for_config(config: &KafkaConfig) -> Result<Security, SecurityError> {
        Self::for_config_with_env(config, &AwsEnv::from_process())
    }

    /// [`Security::for_config`] with AWS MSK IAM reading the AWS variables of `aws_env` rather than the process's.
    pub fn for_config_with_env(config: &KafkaConfig, aws_env: &AwsEnv) -> Result<Security, SecurityError> {
        Ok(Security::new(
            tls::client_config_if_enabled(&config.tls)?,
            Login::for_config_with_env(config, aws_env)?,
        )
        .with_max_response_bytes(max_response_bytes(config)))
    }

    /// Refuses answers longer than `bytes` (a protocol error that closes the connection).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Security {
        self.max_response_bytes = bytes;
        self
    }

    /// The largest answer accepted.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The TLS configuration, if any.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// The SASL login, if any.
    pub fn login(&self) -> Option<&Login> {
        self.sasl.as_ref()
    }

    /// The SASL token cache, under a token mechanism: shared by every connection made with this security.
    pub fn token_cache(&self) -> Option<&TokenCache> {
        self.sasl.as_ref().and_then(Login::token_cache)
    }
}

/// Any stream a connection can run over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// `kafka.max_response_bytes` as a length: the one bound on every answer, on our connections and rskafka's.
pub fn max_response_bytes(config: &KafkaConfig) -> usize {
    usize::try_from(config.max_response_bytes).unwrap_or(usize::MAX)
}

/// An open (and, under SASL, authenticated) connection to one broker.
pub struct Connection {
    address: String,
    stream: Box<dyn Stream>,
    max_response_bytes: usize,
    correlation: i32,
    /// The broker's API versions: key to (min, max).
    versions: HashMap<i16, (i16, i16)>,
    /// No request after ApiVersions was answered yet, and no SASL login was made: a broker that requires
    /// authentication closes such a connection at its first other request (Apache Kafka and tansu alike).
    unauthenticated_first: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("address", &self.address).finish()
    }
}

impl Connection {
    /// Connects to `address` (`host:port`) as `security` says, learns the broker's API versions and authenticates,
    /// all within `limit`.
    pub async fn connect(address: &str, security: &Security, limit: Duration) -> Result<Connection, WireError> {
        let open = async {
            let tcp = TcpStream::connect(address).await.map_err(|source| WireError::Connect {
                address: address.to_owned(),
                source,
            })?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = match &security.tls {
                Some(config) => Box::new(
                    tokio_rustls::TlsConnector::from(Arc::clone(config))
                        .connect(tls::server_name(address)?, tcp)
                        .await
                        .map_err(|source| WireError::Handshake {
                            address: address.to_owned(),
                            source,
                        })?,
                ),
                None => Box::new(tcp),
            };
            let mut connection = Connection {
                address: address.to_owned(),
                stream,
                max_response_bytes: security.max_response_bytes,
                correlation: 0,
                versions: HashMap::new(),
                unauthenticated_first: security.sasl.is_none(),
            };
            connection.negotiate().await?;
            match &security.sasl {
                Some(Login::Password(credentials)) => authenticate(&mut connection, credentials).await?,
                Some(Login::Bearer(cache)) => authenticate_bearer(&mut connection, cache).await?,
                None => {}
            }
            Ok(connection)
        };
        tokio::time::timeout(limit, open)
            .await
            .map_err(|_| timeout(address, limit))?
    }

    /// The broker's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The version of `api` to speak: the highest in `ours` that the broker speaks too.
    pub fn version(&self, api: ApiKey, ours: RangeInclusive<i16>) -> Result<i16, WireError> {
        let theirs = self.versions.get(&(api as i16)).copied();
        pick(ours.clone(), theirs).ok_or_else(|| WireError::Unsupported {
            address: self.address.clone(),
            api,
            ours,
            theirs: theirs.map_or_else(|| "none".to_owned(), |(min, max)| format!("{min}-{max}")),
        })
    }

    /// Sends `request` in the highest of its versions the broker speaks too and reads its response, within
    /// `limit`. After an error the connection's state is unknown: drop it.
    pub async fn call<R: Request>(&mut self, request: &R, limit: Duration) -> Result<R::Response, WireError> {
        let version = self.version(R::KEY, R::VERSIONS)?;
        let exchange = self.exchange(request, version, R::Response::header_version(version));
        let answer = tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| timeout(&self.address, limit))?;
        let mut body = match answer {
            Err(WireError::Io { address, source })
                if self.unauthenticated_first
                    && matches!(
                        source.kind(),
                        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
            {
                return Err(WireError::ClosedUnauthenticated {
                    address,
                    api: R::KEY,
                    source,
                });
            }
            answer => answer?,
        };
        self.unauthenticated_first = false;
        let response = R::Response::decode(&mut body, version).map_err(|e| self.protocol(R::KEY, e))?;
        if body.has_remaining() {
            tracing::debug!(bytes = body.remaining(), api = ?R::KEY, "trailing bytes in response");
        }
        Ok(response)
    }

    /// Asks the broker which versions it speaks. ApiVersions is sent in the highest version kafka-protocol
    /// speaks; a broker that does not speak it answers in version 0 with UNSUPPORTED_VERSION and its own range
    /// (KIP-511), and the request is sent again in that range.
    async fn negotiate(&mut self) -> Result<(), WireError> {
        let mut version = *ApiVersionsRequest::VERSIONS.end();
        loop {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request = request
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            }
            // ApiVersions answers always carry a version 0 header.
            let mut body = self.exchange(&request, version, 0).await?;
            let code = body.clone().try_get_i16().unwrap_or(0);
            if code == ResponseError::UnsupportedVersion.code() && version > 0 {
                let answer =
                    ApiVersionsResponse::decode(&mut body, 0).map_err(|e| self.protocol(ApiKey::ApiVersions, e))?;
                let theirs = versions_of(&answer)
                    .get(&(ApiKey::ApiVersions as i16))
                    .map_or(0, |v| v.1);
                version = theirs.min(version - 1).max(0);
                continue;
            }
            let answer =
                ApiVersionsResponse::decode(&mut body, version).map_err(|e| self.protocol(ApiKey::ApiVersions, e))?;
            if let Some(error) = answer.error_code.err() {
                return Err(self.kafka(ApiKey::ApiVersions, error));
            }
            self.versions = versions_of(&answer);
            return Ok(());
        }
    }

    /// Writes one request and reads its answer's body (after the header).
    async fn exchange<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        response_header_version: i16,
    ) -> Result<Bytes, WireError> {
        let api = R::KEY;
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let frame = encode(request, version, correlation).map_err(|e| self.protocol(api, e))?;
        let address = self.address.clone();
        let mut body = Bytes::from(roundtrip(&mut self.stream, &frame, &address, self.max_response_bytes).await?);
        let header = ResponseHeader::decode(&mut body, response_header_version).map_err(|e| self.protocol(api, e))?;
        if header.correlation_id != correlation {
            return Err(WireError::Framing {
                address,
                reason: format!("correlation id {} does not match {correlation}", header.correlation_id),
            });
        }
        Ok(body)
    }

    /// A Kafka error code in an answer to `api`.
    fn kafka(&self, api: ApiKey, error: ResponseError) -> WireError {
        WireError::Kafka {
            address: self.address.clone(),
            api,
            error,
        }
    }

    fn protocol(&self, api: ApiKey, error: impl Into<ProtocolCause>) -> WireError {
        WireError::Protocol {
            address: self.address.clone(),
            api,
            source: error.into(),
        }
    }
}

/// The broker's versions by API key.
fn versions_of(answer: &ApiVersionsResponse) -> HashMap<i16, (i16, i16)> {
    answer
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

/// The highest version in `ours` within the broker's `(min, max)`, if any.
fn pick(ours: RangeInclusive<i16>, theirs: Option<(i16, i16)>) -> Option<i16> {
    let (min, max) = theirs?;
    let version = (*ours.end()).min(max);
    (version >= (*ours.start()).max(min)).then_some(version)
}

/// `[len][header][body]`. (Our own [`Request`] trait rather than kafka-protocol's, which needs the crate's "broker"
/// half too: the client half alone keeps the static binary smaller.)
fn encode<R: Request>(request: &R, version: i16, correlation: i32) -> Result<BytesMut, ProtocolCause> {
    let api = R::KEY;
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut body = BytesMut::new();
    header.encode(&mut body, api.request_header_version(version))?;
    request.encode(&mut body, version)?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len())?);
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes `frame` and reads one length-prefixed response of at most `max` bytes.
async fn roundtrip(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    frame: &[u8],
    address: &str,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let io = |source: std::io::Error| WireError::Io {
        address: address.to_owned(),
        source,
    };
    stream.write_all(frame).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let len = stream.read_i32().await.map_err(io)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= max)
        .ok_or_else(|| WireError::Framing {
            address: address.to_owned(),
            reason: format!("response of {len} bytes (kafka.max_response_bytes is {max})"),
        })?;
    // Grown as bytes arrive: a broker that claims a large answer and trickles it makes us hold what it sent.
    let mut buf = Vec::with_capacity(len.min(READ_CHUNK_BYTES));
    let read = (&mut *stream)
        .take(u64::try_from(len).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)
        .await
        .map_err(io)?;
    if read < len {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(buf)
}

fn timeout(address: &str, limit: Duration) -> WireError {
    WireError::Timeout {
        address: address.to_owned(),
        limit,
    }
}

/// Open connections by broker address, for readers that ask the same brokers again and again (a SASL connection
/// costs several round trips to open).
#[derive(Debug, Default)]
pub struct Pool {
    security: Arc<Security>,
    idle: HashMap<String, Connection>,
}

impl Pool {
    /// An empty pool whose connections are opened as `security` says.
    pub fn new(security: Security) -> Pool {
        Pool {
            security: Arc::new(security),
            idle: HashMap::new(),
        }
    }

    /// Takes `address`'s open connection, if any, to use it alongside others; give it back with
    /// [`Pool::restore`].
    pub fn lease(&mut self, address: &str) -> Lease {
        Lease {
            address: address.to_owned(),
            security: Arc::clone(&self.security),
            connection: self.idle.remove(address),
        }
    }

    /// Keeps `connection` open for the next request to its broker.
    pub fn restore(&mut self, connection: Connection) {
        self.idle.insert(connection.address.clone(), connection);
    }

    /// Closes the connections to brokers `keep` does not want.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.idle.retain(|address, _| keep(address));
    }

    /// One request to `address` over its open connection (opened if needed). The connection stays open unless the
    /// request failed.
    pub async fn call<R: Request>(
        &mut self,
        address: &str,
        request: &R,
        limit: Duration,
    ) -> Result<R::Response, WireError> {
        let mut lease = self.lease(address);
        let answer = lease.call(request, limit).await;
        if let Some(connection) = lease.into_connection() {
            self.restore(connection);
        }
        answer
    }
}

/// A pool's connection to one broker, taken out for one request or several in a row.
#[derive(Debug)]
pub struct Lease {
    address: String,
    security: Arc<Security>,
    connection: Option<Connection>,
}

impl Lease {
    /// Sends `request` and keeps the connection for the next request unless this one failed; give it back with
    /// [`Lease::into_connection`].
    pub async fn call<R: Request>(&mut self, request: &R, limit: Duration) -> Result<R::Response, WireError> {
        let mut connection = self.open(limit).await?;
        let response = connection.call(request, limit).await?;
        self.connection = Some(connection);
        Ok(response)
    }

    /// The connection, if the last request over it succeeded (or none was sent), to give back to the pool.
    pub fn into_connection(self) -> Option<Connection> {
        self.connection
    }

    /// The leased connection, or a new one.
    async fn open(&mut self, limit: Duration) -> Result<Connection, WireError> {
        match self.connection.take() {
            Some(connection) => Ok(connection),
            None => Connection::connect(&self.address, &self.security, limit).await,
        }
    }
}

/// SaslHandshake: names `mechanism`; a broker that does not take it answers with the mechanisms it offers.
async fn handshake(connection: &mut Connection, mechanism: &'static str) -> Result<(), WireError> {
    let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let answer = connection.call(&request, SASL_STEP_LIMIT).await?;
    match answer.error_code.err() {
        None => Ok(()),
        Some(error) => {
            let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
            Err(WireError::Authentication {
                address: connection.address().to_owned(),
                mechanism,
                error,
                message: Some(format!("the broker offers {}", offered.join(", "))),
            })
        }
    }
}

/// Authenticates `connection` with `sasl`: SaslHandshake names the mechanism, then SaslAuthenticate carries its
/// messages until the mechanism is done (for SCRAM, after checking the server's signature).
async fn authenticate(connection: &mut Connection, sasl: &PasswordLogin) -> Result<(), WireError> {
    let mechanism = sasl.mechanism.name();
    let refused = |connection: &Connection, error: ResponseError, message: Option<String>| WireError::Authentication {
        address: connection.address().to_owned(),
        mechanism,
        error,
        message,
    };
    let failed = |connection: &Connection, source: ProtocolCause| WireError::Sasl {
        address: connection.address().to_owned(),
        mechanism,
        source,
    };
    handshake(connection, mechanism).await?;
    let config = SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password.expose().to_owned())
        .map_err(|e| failed(connection, e.into()))?;
    let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| failed(connection, e.into()))?;
    let mut session = SASLClient::new(config)
        .start_suggested(&[name])
        .map_err(|e| failed(connection, e.into()))?;
    let mut received: Option<Bytes> = None;
    loop {
        let mut message = Cursor::new(Vec::new());
        let state = session.step(received.as_deref(), &mut message).map_err(|e| {
            // RFC 5802 section 7: a SCRAM server refuses the proof or the user in its final message (`e=...`), which a
            // broker may send with error code 0 (tansu does; Apache Kafka also sets SaslAuthenticationFailed). The
            // client-side step then fails on it: that is a refused login, not a protocol fault of ours.
            match received.as_deref().and_then(scram_server_error) {
                Some(reason) => refused(
                    connection,
                    ResponseError::SaslAuthenticationFailed,
                    Some(format!("the broker's SCRAM answer: e={reason}")),
                ),
                None => failed(connection, e.into()),
            }
        })?;
        if state.has_sent_message() {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message.into_inner()));
            let answer = connection.call(&request, SASL_STEP_LIMIT).await?;
            if let Some(error) = answer.error_code.err() {
                let message = answer.error_message.map(|m| m.to_string());
                return Err(refused(connection, error, message));
            }
            received = Some(answer.auth_bytes);
        }
        if state.is_finished() {
            return Ok(());
        }
    }
}

/// Authenticates `connection` with an OAUTHBEARER token from `cache` (RFC 7628, as Kafka's client does it):
/// SaslHandshake names OAUTHBEARER, then one SaslAuthenticate carries the initial response. A broker that refuses
/// the token may first answer with an error challenge (a JSON status); the client then sends the lone `\x01` the
/// RFC asks for, and the broker's answer to that carries the refusal.
async fn authenticate_bearer(connection: &mut Connection, cache: &TokenCache) -> Result<(), WireError> {
    let mechanism = sasl::OAUTHBEARER;
    let refused = |connection: &Connection, error: ResponseError, message: Option<String>| WireError::Authentication {
        address: connection.address().to_owned(),
        mechanism,
        error,
        message,
    };
    handshake(connection, mechanism).await?;
    let token = cache.token().await.map_err(|source| WireError::Token {
        address: connection.address().to_owned(),
        source,
    })?;
    let message = initial_response(token.expose(), cache.extensions());
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
    let answer = connection.call(&request, SASL_STEP_LIMIT).await?;
    if let Some(error) = answer.error_code.err() {
        let message = answer.error_message.map(|m| m.to_string());
        return Err(refused(connection, error, message));
    }
    if answer.auth_bytes.is_empty() {
        return Ok(());
    }
    // The error challenge: its status (at most a line of it) says why; the broker ends the exchange on our `\x01`.
    let challenge: String = String::from_utf8_lossy(&answer.auth_bytes).chars().take(200).collect();
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\x01"));
    let answer = connection.call(&request, SASL_STEP_LIMIT).await?;
    let error = answer
        .error_code
        .err()
        .unwrap_or(ResponseError::SaslAuthenticationFailed);
    let message = answer.error_message.map(|m| m.to_string());
    Err(refused(
        connection,
        error,
        Some(message.map_or_else(|| challenge.clone(), |m| format!("{m}; {challenge}"))),
    ))
}

/// The `server-error-value` of a SCRAM server-final message (`e=invalid-proof`), if `message` is one. The broker's
/// bytes: only a short token of RFC 5802's alphabet (letters, digits, `-`) is shown, anything else as `?`.
fn scram_server_error(message: &[u8]) -> Option<String> {
    const SHOWN_BYTES: usize = 64;
    let value = message.strip_prefix(b"e=")?;
    let value = value.split(|&b| b == b',').next().unwrap_or_default();
    let token = value.len() <= SHOWN_BYTES
        && !value.is_empty()
        && value.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    Some(if token {
        String::from_utf8_lossy(value).into_owned()
    } else {
        "?".to_owned()
    })
}

#[cfg(test)]
mod tests;
