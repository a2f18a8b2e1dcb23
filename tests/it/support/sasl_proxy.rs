//! A SASL front for a tansu broker: answers SaslHandshake and SaslAuthenticate itself, refuses every other
//! request until the client has authenticated (as Kafka does), then relays the connection to the broker. Start the
//! broker advertising the proxy's address (`Broker::start_advertising`) so that every connection goes through it.
//!
//! Why not tansu itself: tansu 0.6 under `--authentication` offers only SCRAM, and with memory storage no SCRAM
//! user can be created (creating one needs an authenticated connection first). So PLAIN is checked here byte for
//! byte, and SCRAM-SHA-256/512 run the server side of the `rsasl` crate, the SCRAM code tansu runs too.
//!
//! OAUTHBEARER ([`SaslProxy::start_oauth`]) is checked as a Kafka broker's default validator does: the client's
//! RFC 7628 message must carry `auth=Bearer <JWT>`, whose HS256 signature (the test token endpoint's key,
//! [`super::token_endpoint::verify`]) and `exp` must hold; a forged or expired token gets the error challenge
//! `{"status":"invalid_token"}`, and the client's `\x01` then gets SaslAuthenticationFailed.
//!
//! AWS MSK IAM ([`SaslProxy::start_msk_iam`]) comes the same way, as the signer libraries send it: an OAUTHBEARER
//! token that is MSK's presigned `kafka-cluster:Connect` URL, checked by [`super::msk_iam::Verifier`] (its own
//! SigV4, the secret key the test knows, the region, the expiry). MSK serves IAM over TLS only: put a
//! [`super::tls_proxy::TlsProxy`] in front of this proxy, as `broker::sasl_over_tls_reads_watermarks_and_lag_in_batches` does.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
use rsasl::prelude::{Mechname, SASLConfig, SASLServer, Session, SessionError, Validation};
use rsasl::property::AuthId;
use rsasl::validate::{Validate, ValidationError};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ITERATIONS: u32 = 4096;
const SALT: &[u8] = b"cdc-orchestrator-test-salt";
const AUTHENTICATION_FAILED: i16 = ResponseError::SaslAuthenticationFailed.code();
const UNSUPPORTED_MECHANISM: i16 = ResponseError::UnsupportedSaslMechanism.code();
const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// What the proxy decided about each OAUTHBEARER login: `Ok(subject and extensions)` or `Err(why)`.
pub type OauthLog = Arc<std::sync::Mutex<Vec<Result<String, String>>>>;

/// A listening proxy; stops (with every connection) on drop.
pub struct SaslProxy {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
    oauth: OauthLog,
}

/// Whom the proxy lets in.
struct Accounts {
    /// PLAIN and SCRAM users and their passwords.
    users: HashMap<String, String>,
    /// How OAUTHBEARER tokens are checked; `None`: the mechanism is refused.
    bearer: Option<BearerCheck>,
    log: OauthLog,
}

/// What an OAUTHBEARER token must be.
enum BearerCheck {
    /// A JWT of the test token endpoint that has not expired.
    Jwt,
    /// An AWS MSK IAM token signed with the verifier's credentials.
    MskIam(super::msk_iam::Verifier),
}

impl SaslProxy {
    /// Binds a free loopback port, to advertise before the broker starts.
    pub fn bind() -> (std::net::TcpListener, u16) {
        super::counting_proxy::CountingProxy::bind()
    }

    /// Authenticates every connection on `listener` against `users` (name, password) and relays it to
    /// `127.0.0.1:origin_port`.
    pub fn start(listener: std::net::TcpListener, origin_port: u16, users: &[(&str, &str)]) -> SaslProxy {
        Self::serve_accounts(listener, origin_port, users, None)
    }

    /// Authenticates every connection on `listener` by OAUTHBEARER with a JWT of the test token endpoint that has
    /// not expired, and relays it to `127.0.0.1:origin_port`.
    pub fn start_oauth(listener: std::net::TcpListener, origin_port: u16) -> SaslProxy {
        Self::serve_accounts(listener, origin_port, &[], Some(BearerCheck::Jwt))
    }

    /// Authenticates every connection on `listener` by AWS MSK IAM (an OAUTHBEARER token that `verifier` accepts
    /// now), and relays it to `127.0.0.1:origin_port`. [`SaslProxy::oauth_logins`] gives each login's access key
    /// id, or why it was refused.
    pub fn start_msk_iam(
        listener: std::net::TcpListener,
        origin_port: u16,
        verifier: super::msk_iam::Verifier,
    ) -> SaslProxy {
        Self::serve_accounts(listener, origin_port, &[], Some(BearerCheck::MskIam(verifier)))
    }

    fn serve_accounts(
        listener: std::net::TcpListener,
        origin_port: u16,
        users: &[(&str, &str)],
        bearer: Option<BearerCheck>,
    ) -> SaslProxy {
        let listener = TcpListener::from_std(listener).expect("register the listener");
        let port = listener.local_addr().expect("proxy address").port();
        let log = OauthLog::default();
        let accounts = Arc::new(Accounts {
            users: users.iter().map(|(u, p)| ((*u).to_owned(), (*p).to_owned())).collect(),
            bearer,
            log: Arc::clone(&log),
        });
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(serve(client, origin_port, Arc::clone(&accounts)));
            }
        });
        SaslProxy {
            port,
            accept,
            oauth: log,
        }
    }

    /// Every OAUTHBEARER login so far: the token's subject and extensions (`sub;key=value;...`), or why it was
    /// refused.
    pub fn oauth_logins(&self) -> Vec<Result<String, String>> {
        self.oauth.lock().expect("oauth log").clone()
    }

    /// `127.0.0.1:<port>`, the bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SaslProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The SASL state of one client connection.
enum Auth {
    None,
    Plain,
    Scram(Box<Session<Accepted>>),
    OAuthBearer,
    /// The token was refused with an error challenge; the client's `\x01` ends the exchange.
    OAuthRefused(String),
    Done,
}

async fn serve(mut client: TcpStream, origin_port: u16, accounts: Arc<Accounts>) {
    let Ok(mut origin) = TcpStream::connect(("127.0.0.1", origin_port)).await else {
        return;
    };
    let mut auth = Auth::None;
    loop {
        let Some(frame) = read_frame(&mut client).await else {
            return;
        };
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let answer = match ApiKey::try_from(api_key) {
            // Clients ask for versions before authenticating; the broker answers.
            Ok(ApiKey::ApiVersions) => relay_one(&frame, &mut origin).await,
            Ok(ApiKey::SaslHandshake) => handshake(frame, version, &mut auth, &accounts),
            Ok(ApiKey::SaslAuthenticate) => authenticate(frame, version, &mut auth, &accounts),
            _ if matches!(auth, Auth::Done) => {
                // Authenticated: from here on the proxy is a plain relay.
                if origin.write_all(&framed(&frame)).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                return;
            }
            // Kafka closes a connection that sends requests before authenticating.
            _ => return,
        };
        let Some(answer) = answer else { return };
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}

fn handshake(frame: Bytes, version: i16, auth: &mut Auth, accounts: &Accounts) -> Option<Vec<u8>> {
    let users = &accounts.users;
    let (header, mut body) = request_header(frame, ApiKey::SaslHandshake, version)?;
    let request = SaslHandshakeRequest::decode(&mut body, version).ok()?;
    let mechanism = request.mechanism.to_string();
    let mut response = SaslHandshakeResponse::default()
        .with_mechanisms(MECHANISMS.iter().map(|m| StrBytes::from_static_str(m)).collect());
    *auth = match mechanism.as_str() {
        "PLAIN" => Auth::Plain,
        "OAUTHBEARER" if accounts.bearer.is_some() => Auth::OAuthBearer,
        "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
            let config = SASLConfig::builder()
                .with_defaults()
                .with_callback(Users(users.clone()))
                .ok()?;
            let name = Mechname::parse(mechanism.as_bytes()).ok()?;
            Auth::Scram(Box::new(
                SASLServer::<Accepted>::new(config).start_suggested(name).ok()?,
            ))
        }
        _ => {
            response = response.with_error_code(UNSUPPORTED_MECHANISM);
            Auth::None
        }
    };
    respond(&header, &response, version)
}

fn authenticate(frame: Bytes, version: i16, auth: &mut Auth, accounts: &Accounts) -> Option<Vec<u8>> {
    let users = &accounts.users;
    let (header, mut body) = request_header(frame, ApiKey::SaslAuthenticate, version)?;
    let request = SaslAuthenticateRequest::decode(&mut body, version).ok()?;
    let refused = |message: String| {
        SaslAuthenticateResponse::default()
            .with_error_code(AUTHENTICATION_FAILED)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let response = match std::mem::replace(auth, Auth::None) {
        Auth::Plain => {
            // `authzid NUL authcid NUL password`, checked byte for byte.
            let accepted = users
                .iter()
                .any(|(user, password)| request.auth_bytes[..] == *format!("\0{user}\0{password}").as_bytes());
            if accepted {
                *auth = Auth::Done;
                SaslAuthenticateResponse::default()
            } else {
                refused("Invalid username or password".to_owned())
            }
        }
        Auth::Scram(mut session) => {
            let mut out = Vec::new();
            match session.step(Some(&request.auth_bytes), &mut out) {
                Ok(state) if state.is_finished() && session.validation().is_some() => *auth = Auth::Done,
                Ok(state) if !state.is_finished() => *auth = Auth::Scram(session),
                Ok(_) => return respond(&header, &refused("not validated".to_owned()), version),
                Err(e) => return respond(&header, &refused(format!("Authentication failed: {e}")), version),
            }
            SaslAuthenticateResponse::default().with_auth_bytes(out.into())
        }
        Auth::OAuthBearer => match bearer(&request.auth_bytes, accounts.bearer.as_ref()) {
            Ok(login) => {
                accounts.log.lock().expect("oauth log").push(Ok(login));
                *auth = Auth::Done;
                SaslAuthenticateResponse::default()
            }
            Err(why) => {
                accounts.log.lock().expect("oauth log").push(Err(why.clone()));
                // As Kafka's OAuthBearerSaslServer: an error challenge first, the failure on the client's answer.
                *auth = Auth::OAuthRefused(why);
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from_static(br#"{"status":"invalid_token"}"#))
            }
        },
        Auth::OAuthRefused(why) if request.auth_bytes[..] == b"\x01"[..] => {
            refused(format!("Authentication failed: invalid token: {why}"))
        }
        Auth::OAuthRefused(_) => refused("expected the client's \\x01 after an error challenge".to_owned()),
        Auth::None | Auth::Done => refused("SaslAuthenticate without a handshake".to_owned()),
    };
    respond(&header, &response, version)
}

/// The subject (a JWT's `sub`, an MSK IAM token's access key id) and extensions (`sub;key=value;...`) of an
/// RFC 7628 client message whose bearer token `check` accepts, or why it is not accepted.
fn bearer(message: &[u8], check: Option<&BearerCheck>) -> Result<String, String> {
    let message = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_owned())?;
    let rest = message.strip_prefix("n,,\x01").ok_or("no gs2 header")?;
    let body = rest.strip_suffix("\x01\x01").ok_or("not ended by two kvsep")?;
    let mut token = None;
    let mut extensions = Vec::new();
    for pair in body.split('\x01') {
        let (key, value) = pair.split_once('=').ok_or("a pair without =")?;
        if key == "auth" {
            token = Some(value.strip_prefix("Bearer ").ok_or("auth is not Bearer")?);
        } else {
            extensions.push(format!("{key}={value}"));
        }
    }
    let token = token.ok_or("no auth")?;
    let subject = match check.ok_or("OAUTHBEARER is not served")? {
        BearerCheck::Jwt => super::token_endpoint::verify(token)?,
        BearerCheck::MskIam(verifier) => verifier.verify(token, std::time::SystemTime::now())?,
    };
    Ok(std::iter::once(subject).chain(extensions).collect::<Vec<_>>().join(";"))
}

/// One length-prefixed frame, without its length.
async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = usize::try_from(stream.read_i32().await.ok()?).ok()?;
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await.ok()?;
    (len >= 4).then(|| Bytes::from(buf))
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
    out.extend_from_slice(body);
    out
}

/// Sends `frame` to the broker and returns its answer, framed.
async fn relay_one(frame: &[u8], origin: &mut TcpStream) -> Option<Vec<u8>> {
    origin.write_all(&framed(frame)).await.ok()?;
    read_frame(origin).await.map(|answer| framed(&answer))
}

fn request_header(mut frame: Bytes, api: ApiKey, version: i16) -> Option<(RequestHeader, Bytes)> {
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).ok()?;
    Some((header, frame))
}

fn respond<R: Encodable + HeaderVersion>(request: &RequestHeader, response: &R, version: i16) -> Option<Vec<u8>> {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(request.correlation_id)
        .encode(&mut body, R::header_version(version))
        .ok()?;
    response.encode(&mut body, version).ok()?;
    Some(framed(body.chunk()))
}

/// What a finished SCRAM exchange yields: the user.
struct Accepted;

impl Validation for Accepted {
    type Value = String;
}

/// The users' SCRAM credentials, derived from their passwords as a broker stores them.
#[derive(Clone, Default)]
struct Users(HashMap<String, String>);

impl SessionCallback for Users {
    fn callback(
        &self,
        session: &SessionData,
        context: &Context,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        let Some(password) = context.get_ref::<AuthId>().and_then(|user| self.0.get(user)) else {
            return Ok(());
        };
        let (stored, server) = if session.mechanism().mechanism.as_str() == "SCRAM-SHA-512" {
            let mut salted = sha2::digest::Output::<sha2::Sha512>::default();
            hash_password::<sha2::Sha512>(password.as_bytes(), ITERATIONS, SALT, &mut salted);
            let (client, server) = derive_keys::<sha2::Sha512>(&salted);
            (sha2::Sha512::digest(client).to_vec(), server.to_vec())
        } else {
            let mut salted = sha2::digest::Output::<sha2::Sha256>::default();
            hash_password::<sha2::Sha256>(password.as_bytes(), ITERATIONS, SALT, &mut salted);
            let (client, server) = derive_keys::<sha2::Sha256>(&salted);
            (sha2::Sha256::digest(client).to_vec(), server.to_vec())
        };
        request.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(ITERATIONS, SALT, &stored, &server))?;
        Ok(())
    }

    fn validate(&self, _: &SessionData, context: &Context, validate: &mut Validate<'_>) -> Result<(), ValidationError> {
        let user = context.get_ref::<AuthId>().map(str::to_owned).unwrap_or_default();
        validate.with::<Accepted, _>(|| Ok(user))?;
        Ok(())
    }
}
