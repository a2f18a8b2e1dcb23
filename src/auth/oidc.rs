//! `OAUTHBEARER`'s tokens from an OIDC identity provider: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4),
//! made the way Kafka's own `OAuthBearerLoginCallbackHandler` makes it (its `HttpAccessTokenRetriever`), so that
//! the sidecar and the per-table jobs log in alike:
//!
//! - `POST` to `kafka.sasl.oauth.token_endpoint`, `Content-Type: application/x-www-form-urlencoded`, body
//!   `grant_type=client_credentials` and `scope=` when a scope is set;
//! - the client authenticates with HTTP Basic, `base64(client_id ":" client_secret)`, the id and secret as written
//!   (Kafka's default, `sasl.oauthbearer.header.urlencode = false`);
//! - the answer's `access_token` is the token, and `expires_in` says how long it lasts.
//!
//! One difference: `audience=` is sent when `kafka.sasl.oauth.audience` is set (identity providers such as Auth0
//! issue a token for an API only when asked by audience). Kafka's handler sends no audience, so for the jobs an
//! audience must be the identity provider's default for the client.
//!
//! The answer is hostile until parsed: read with a bound, never through a redirect, within
//! `kafka.request_timeout`. When the token is a JWT its `exp` and `sub` claims are read without checking its
//! signature (the broker checks it; this client has no key to): `exp` only to refresh in time, `sub` only to name
//! the principal in the log. Every failure is one [`TokenError::Unavailable`] line naming the endpoint (as
//! [`redact_url`] shows it) and the cause, with the client secret and the token masked.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::{BearerToken, TokenError, TokenProvider};
use crate::config::{OauthConfig, REDACTED, Secret, redact_url};
use crate::http_client::{self, BodyError};
use crate::logging::Escaper;

/// The most of a token endpoint's answer that is read. A token answer is a JWT (a few kilobytes at most) and a
/// few fields; anything longer is not one.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Characters of an identity provider's `error_description` shown: enough to say why, never a flood.
const DESCRIPTION_CHARS: usize = 200;
/// A longer `expires_in` is taken as this: no token lives for years, and the sum must not overflow the clock.
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// The client-credentials grant against one token endpoint.
pub struct OidcProvider {
    http: reqwest::Client,
    endpoint: Url,
    /// The endpoint as it may be shown ([`redact_url`]), for every message.
    shown: String,
    /// `Basic base64(id:secret)`, the whole header value.
    authorization: Secret,
    /// The form body: `grant_type=client_credentials[&scope=..][&audience=..]`.
    form: String,
    /// What is masked in every text that comes back: the client secret, and the Basic header that carries it.
    secrets: Vec<String>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("endpoint", &self.shown)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// The grant `oauth` describes, each request bounded by `timeout` (`kafka.request_timeout`). A
    /// [`TokenError::Config`] when the endpoint is no http(s) URL (configuration validation has said so already).
    pub fn new(oauth: &OauthConfig, timeout: Duration) -> Result<OidcProvider, TokenError> {
        let shown = redact_url(&oauth.token_endpoint).into_owned();
        let endpoint = Url::parse(&oauth.token_endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| TokenError::Config {
                key: "kafka.sasl.oauth.token_endpoint",
                reason: format!("{shown:?} is not an http:// or https:// URL"),
            })?;
        let http = http_client::client(timeout).map_err(|e| TokenError::Config {
            key: "kafka.sasl.oauth.token_endpoint",
            reason: format!("cannot build the HTTP client: {}", crate::logging::chain(&e)),
        })?;
        let secret = oauth.client_secret.expose();
        let basic = STANDARD.encode(format!("{}:{secret}", oauth.client_id));
        let mut form = "grant_type=client_credentials".to_owned();
        for (name, value) in [("scope", oauth.scope.trim()), ("audience", oauth.audience.trim())] {
            if !value.is_empty() {
                form.push_str(&format!("&{name}={}", form_encode(value)));
            }
        }
        let secrets = [secret.to_owned(), basic.clone()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        Ok(OidcProvider {
            http,
            endpoint,
            shown,
            authorization: Secret::new(format!("Basic {basic}")),
            form,
            secrets,
        })
    }

    /// One grant.
    async fn grant(&self) -> Result<BearerToken, TokenError> {
        let answer = self
            .http
            .post(self.endpoint.clone())
            .header(AUTHORIZATION, self.authorization.expose())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(self.form.clone())
            .send()
            .await
            .map_err(|e| self.unavailable(transport(&e), Some(e.without_url().into())))?;
        let status = answer.status();
        let body = http_client::read_body(answer, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => self.unavailable(format!("answer larger than {limit} bytes"), None),
                BodyError::Read(e) => self.unavailable(transport(&e), Some(e.without_url().into())),
            })?;
        if !status.is_success() {
            return Err(self.unavailable(refusal(status, &body), None));
        }
        parse_answer(&body, SystemTime::now()).map_err(|why| self.unavailable(why, None))
    }

    /// A [`TokenError::Unavailable`] naming the endpoint, with the secrets masked and the text escaped to one line.
    fn unavailable(&self, why: String, source: Option<Box<dyn std::error::Error + Send + Sync>>) -> TokenError {
        let mut line = String::new();
        let _ = std::fmt::Write::write_fmt(
            &mut Escaper(&mut line),
            format_args!("kafka.sasl.oauth.token_endpoint {}: {why}", self.shown),
        );
        let source = source.map(|s| -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(Redacted(self.mask(&crate::logging::chain(&*s).to_string())))
        });
        TokenError::Unavailable {
            what: self.mask(&line),
            source,
        }
    }

    fn mask(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), REDACTED))
    }
}

impl TokenProvider for OidcProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        Box::pin(self.grant())
    }

    fn describe(&self) -> String {
        format!("kafka.sasl.oauth.token_endpoint {}", self.shown)
    }
}

/// A cause whose text was already masked (a transport error's own text cannot be changed otherwise).
#[derive(Debug)]
struct Redacted(String);

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// What a transport failure was, in words: the cause itself goes along as the error's source.
fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time (kafka.request_timeout)".to_owned()
    } else if error.is_connect() {
        "unreachable".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// Why a non-2xx answer is one: the status, what it means here, and the identity provider's own `error` and
/// `error_description` (RFC 6749 §5.2) when the body has them. Any other body is not shown: it may echo the
/// request.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorAnswer {
        error: Option<String>,
        error_description: Option<String>,
    }
    let meaning = match status.as_u16() {
        401 | 403 => "the client id or secret was refused",
        300..=399 => "a redirect, which is not followed",
        400..=499 => "the request was refused",
        _ => "the token endpoint failed",
    };
    let mut line = format!("HTTP {}: {meaning}", status.as_u16());
    if let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) {
        let said: Vec<String> = [answer.error, answer.error_description]
            .into_iter()
            .flatten()
            .map(|s| s.chars().take(DESCRIPTION_CHARS).collect())
            .collect();
        if !said.is_empty() {
            line.push_str(&format!(" ({})", said.join(": ")));
        }
    }
    line
}

/// A token endpoint's 2xx answer (RFC 6749 §5.1); other fields are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    /// Seconds; some providers send it as text.
    expires_in: Option<serde_json::Value>,
}

/// The claims of a JWT this client reads: for timing and the log only.
#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    sub: Option<String>,
}

/// The token in a 2xx answer `body` received at `now`, or why there is none. It expires at the earlier of
/// `expires_in` and the JWT's `exp`; with neither, or already expired, it is no token.
pub fn parse_answer(body: &[u8], now: SystemTime) -> Result<BearerToken, String> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not a JSON token answer ({e})"))?;
    let token = answer
        .access_token
        .filter(|t| !t.trim().is_empty())
        .ok_or("the answer has no access_token")?;
    // The token goes on the wire inside `auth=Bearer <token>`: RFC 6750's characters only, so it cannot end the
    // SASL message early or carry a line into a log.
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
    {
        return Err("the access_token holds characters a bearer token cannot (RFC 6750)".to_owned());
    }
    let expires_in = match answer.expires_in {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => return Err("expires_in is not a number".to_owned()),
    };
    if expires_in.is_some_and(|s| !s.is_finite() || s <= 0.0) {
        return Err("expires_in is not a positive number".to_owned());
    }
    let claims = jwt_claims(&token);
    let by_answer = expires_in.map(|s| now + Duration::from_secs_f64(s).min(MAX_LIFETIME));
    let by_claim = claims
        .as_ref()
        .and_then(|c| c.exp)
        .filter(|exp| exp.is_finite() && *exp >= 0.0)
        .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(exp).min(Duration::from_secs(1 << 40)));
    let expires_at = match (by_answer, by_claim) {
        (Some(a), Some(c)) => a.min(c),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => return Err("the answer has no expires_in and the token no exp claim".to_owned()),
    };
    if expires_at <= now {
        return Err("the token has expired already (its exp claim is in the past)".to_owned());
    }
    let principal = claims
        .and_then(|c| c.sub)
        .map(|s| s.chars().take(DESCRIPTION_CHARS).collect());
    Ok(BearerToken {
        value: Secret::new(token),
        expires_at,
        principal,
    })
}

/// The claims of `token` when it is a JWT (three base64url parts, the middle one JSON), unverified.
fn jwt_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let json = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&json).ok()
}

/// `value` as `application/x-www-form-urlencoded` encodes it: letters, digits and `*-._` as they are, a space
/// as `+`, every other byte as `%XX`.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
