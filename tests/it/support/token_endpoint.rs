//! A real OAuth 2.0 token endpoint on 127.0.0.1 (axum): it answers the client-credentials grant with an HS256 JWT
//! signed with [`JWT_KEY`] (`ring::hmac`), `sub` the client id and a short lifetime, after checking the client's
//! HTTP Basic credentials. Its [`Mode`] can be switched while it runs (refusing with 401, answering garbage,
//! answering slowly), and it records when each grant was made. The SASL front ([`super::sasl_proxy`]) checks the
//! tokens' signature and expiry with the same key.

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The key the endpoint signs with and the SASL front verifies with.
pub const JWT_KEY: &[u8] = b"cdc-orchestrator-test-jwt-key-0123456789";
/// The client the endpoint knows.
pub const CLIENT_ID: &str = "cdc-sidecar";
/// Its secret.
pub const CLIENT_SECRET: &str = "oauth-client-s3cret";

/// How the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A JWT living this long (`expires_in` and `exp` alike).
    Issue(Duration),
    /// 401 with an RFC 6749 error body, whatever the credentials.
    Unauthorized,
    /// 200 with a body that is no JSON.
    Garbage,
    /// Answers after this long.
    Slow(Duration),
}

/// A grant the endpoint made: when, and the token's `exp` (seconds since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub at: SystemTime,
    pub exp: u64,
}

struct State {
    mode: Mutex<Mode>,
    grants: Mutex<Vec<Grant>>,
    requests: Mutex<usize>,
}

/// A running token endpoint; stops on drop.
pub struct TokenEndpoint {
    url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenEndpoint {
    /// Starts answering as `mode` on a free loopback port, on the current runtime.
    pub fn start(mode: Mode) -> TokenEndpoint {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the token endpoint");
        listener.set_nonblocking(true).expect("non-blocking");
        let url = format!(
            "http://127.0.0.1:{}/oauth2/token",
            listener.local_addr().expect("address").port()
        );
        let state = Arc::new(State {
            mode: Mutex::new(mode),
            grants: Mutex::default(),
            requests: Mutex::default(),
        });
        let shared = Arc::clone(&state);
        let app = Router::new().route(
            "/oauth2/token",
            post(move |headers: HeaderMap, body: String| answer(Arc::clone(&shared), headers, body)),
        );
        let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenEndpoint { url, state, task }
    }

    /// The token endpoint's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers as `mode` from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = mode;
    }

    /// The grants made so far.
    pub fn grants(&self) -> Vec<Grant> {
        self.state.grants.lock().expect("grants").clone()
    }

    /// Requests received so far, granted or not.
    pub fn requests(&self) -> usize {
        *self.state.requests.lock().expect("requests")
    }
}

async fn answer(state: Arc<State>, headers: HeaderMap, body: String) -> Response {
    *state.requests.lock().expect("requests") += 1;
    let mode = *state.mode.lock().expect("mode");
    let lifetime = match mode {
        Mode::Unauthorized => return unauthorized(),
        Mode::Garbage => return (StatusCode::OK, "<html>\u{1b}[31mbad gateway\n").into_response(),
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            Duration::from_secs(60)
        }
        Mode::Issue(lifetime) => lifetime,
    };
    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|h| h.as_bytes() == basic.as_bytes());
    if !authorized || !body.split('&').any(|pair| pair == "grant_type=client_credentials") {
        return unauthorized();
    }
    let now = SystemTime::now();
    let exp = (now + lifetime)
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    state.grants.lock().expect("grants").push(Grant { at: now, exp });
    let token = sign(&serde_json::json!({"sub": CLIENT_ID, "exp": exp, "iat": exp - lifetime.as_secs()}));
    axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
    }))
    .into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    )
        .into_response()
}

/// An HS256 JWT of `claims`, signed with [`JWT_KEY`].
pub fn sign(claims: &serde_json::Value) -> String {
    sign_with(JWT_KEY, claims)
}

/// An HS256 JWT of `claims`, signed with `key` (another key forges one).
pub fn sign_with(key: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Why `token` is no good JWT of [`JWT_KEY`] now, if it is not: a bad signature, no `sub`, expired.
pub fn verify(token: &str) -> Result<String, String> {
    let (input, signature) = token.rsplit_once('.').ok_or("not a JWT")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "signature is not base64url")?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, JWT_KEY);
    ring::hmac::verify(&key, input.as_bytes(), &signature).map_err(|_| "bad signature")?;
    let payload = input.split('.').nth(1).ok_or("not a JWT")?;
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| "payload is not base64url")?,
    )
    .map_err(|_| "payload is not JSON")?;
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    if exp <= now {
        return Err("expired".to_owned());
    }
    claims["sub"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no sub".to_owned())
}
