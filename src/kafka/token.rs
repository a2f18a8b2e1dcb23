//! The SASL OAUTHBEARER token both kinds of broker connection send (ours in [`crate::kafka::connection`], rskafka's
//! in [`crate::kafka::samples`]): one [`TokenCache`] over whichever [`TokenProvider`] `kafka.sasl` names
//! ([`crate::auth::provider_for`]), so that the token endpoint is asked once per token, not once per connection.
//!
//! Refreshing follows Kafka's own client: a token is used until 80% of its lifetime has passed
//! (`sasl.login.refresh.window.factor`), then the next use, or the watcher's call to [`TokenCache::refresh_if_due`]
//! at every cycle, fetches a new one. A failed fetch is retried no sooner than [`crate::backoff`] says (so a
//! hundred connections opening at once make one request, and a down endpoint is not hammered); meanwhile the last
//! token serves as long as it is good. Each failure counts in `cdc_kafka_token_refresh_failures_total`; the log
//! says a failure once per change of its text, and the recovery once; [`TokenCache::failure`] tells the watcher,
//! which reports it to `/readyz`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::auth::{BearerToken, TokenError, TokenProvider};
use crate::backoff::Backoff;
use crate::config::Secret;
use crate::telemetry::Metrics;

/// The share of a token's lifetime after which it is refreshed: Kafka's `sasl.login.refresh.window.factor`.
pub const REFRESH_WINDOW_FACTOR: f64 = 0.8;
/// Retries of a failed fetch: 500 ms doubling up to 30 s (Kafka's `sasl.login.retry.backoff.ms` is 100 ms up to
/// 10 s; a little slower here, since every connection of the sidecar waits on the same cache).
pub const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// A token provider's tokens, cached and refreshed; cheap to clone (the clones share one cache).
#[derive(Clone)]
pub struct TokenCache {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.shared.source)
            .field("extensions", &self.shared.extensions)
            .finish_non_exhaustive()
    }
}

struct Shared {
    provider: Arc<dyn TokenProvider>,
    /// The provider's [`TokenProvider::describe`], for the log.
    source: String,
    /// SASL extensions sent with every token (RFC 7628 `key=value`).
    extensions: Vec<(String, String)>,
    backoff: Backoff,
    /// Held across a fetch: connections that need a token at the same time wait for one answer.
    state: tokio::sync::Mutex<State>,
    /// The last attempt's failure, while the last attempt failed (read without waiting for a fetch).
    failure: Mutex<Option<String>>,
    metrics: OnceLock<Arc<Metrics>>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    /// Consecutive failed fetches.
    failures: u32,
    /// No fetch before this, after a failure.
    retry_at: Option<Instant>,
}

struct Cached {
    value: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl TokenCache {
    /// A cache of `provider`'s tokens, each sent with `extensions`, a failed fetch retried after `backoff`'s
    /// delays ([`RETRY_BACKOFF`] but in tests).
    pub fn new(provider: Arc<dyn TokenProvider>, extensions: Vec<(String, String)>, backoff: Backoff) -> TokenCache {
        TokenCache {
            shared: Arc::new(Shared {
                source: provider.describe(),
                provider,
                extensions,
                backoff,
                state: tokio::sync::Mutex::default(),
                failure: Mutex::default(),
                metrics: OnceLock::new(),
            }),
        }
    }

    /// Counts failed fetches in `metrics` from now on (the first call wins; every clone shares it).
    pub fn count_in(&self, metrics: Arc<Metrics>) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// The SASL extensions sent with the token.
    pub fn extensions(&self) -> &[(String, String)] {
        &self.shared.extensions
    }

    /// Why the last attempt to get a token failed, while it did (one line, secrets masked).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A token to authenticate with now: the cached one until its refresh point, then a fresh one. When a fetch
    /// fails, or failed within its backoff, the cached token is still given while it is good; without one, the
    /// failure.
    pub async fn token(&self) -> Result<Secret, TokenError> {
        let mut state = self.shared.state.lock().await;
        let now = Instant::now();
        if let Some(cached) = state.token.as_ref().filter(|c| now < c.refresh_at) {
            return Ok(cached.value.clone());
        }
        let backing_off = state.retry_at.is_some_and(|at| now < at);
        if !backing_off {
            match self.shared.provider.fetch().await {
                Ok(token) => {
                    let cached = self.cache(&mut state, token);
                    return Ok(cached);
                }
                Err(error) => self.failed(&mut state, &error),
            }
        }
        let now = Instant::now();
        match state.token.as_ref().filter(|c| now < c.expires_at) {
            Some(cached) => Ok(cached.value.clone()),
            None => Err(TokenError::Unavailable {
                what: self
                    .failure()
                    .unwrap_or_else(|| format!("{}: no token", self.shared.source)),
                source: None,
            }),
        }
    }

    /// Fetches a new token if the cached one has reached its refresh point (or there is none) and no failure's
    /// backoff is running; the watcher calls it at every cycle, so a token is refreshed even while every
    /// connection stays open. A failure is reported as [`TokenCache::token`] reports it.
    pub async fn refresh_if_due(&self) {
        let _ = self.token().await;
    }

    /// Keeps `token`, clearing any failure; its value.
    fn cache(&self, state: &mut State, token: BearerToken) -> Secret {
        let now = Instant::now();
        let lifetime = token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let cached = Cached {
            value: token.value,
            refresh_at: now + lifetime.mul_f64(REFRESH_WINDOW_FACTOR),
            expires_at: now + lifetime,
        };
        let value = cached.value.clone();
        let first = state.token.is_none();
        state.token = Some(cached);
        state.failures = 0;
        state.retry_at = None;
        let recovered = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .is_some();
        let principal = token.principal.as_deref().unwrap_or("-");
        let expires_in = humantime::format_duration(Duration::from_secs(lifetime.as_secs()));
        if recovered {
            tracing::info!(source = %self.shared.source, %principal, %expires_in, "SASL token refreshed again");
        } else if first {
            tracing::info!(source = %self.shared.source, %principal, %expires_in, "SASL token obtained");
        } else {
            tracing::debug!(source = %self.shared.source, %principal, %expires_in, "SASL token refreshed");
        }
        value
    }

    /// Counts a failed fetch, starts its backoff, and logs it when its text is new.
    fn failed(&self, state: &mut State, error: &TokenError) {
        state.failures = state.failures.saturating_add(1);
        let delay = self.shared.backoff.delay(state.failures);
        state.retry_at = Some(Instant::now() + delay);
        if let Some(metrics) = self.shared.metrics.get() {
            metrics.token_refresh_failed();
        }
        let line = crate::logging::chain(error).to_string();
        let mut failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failure.as_deref() != Some(line.as_str()) {
            let good_for = state
                .token
                .as_ref()
                .map(|c| c.expires_at.saturating_duration_since(Instant::now()))
                .filter(|left| !left.is_zero())
                .map(|left| humantime::format_duration(Duration::from_secs(left.as_secs())).to_string());
            tracing::warn!(
                error = %line,
                current_token_good_for = good_for.as_deref().unwrap_or("none"),
                "cannot get a SASL token; retrying with backoff"
            );
            *failure = Some(line);
        }
    }
}

/// The client's first (and only) OAUTHBEARER message, RFC 7628 §3.1 as Kafka's client writes it:
/// `n,,` `\x01auth=Bearer <token>` then `\x01key=value` per extension, and `\x01\x01`.
pub fn initial_response(token: &str, extensions: &[(String, String)]) -> Vec<u8> {
    let mut message = format!("n,,\x01auth=Bearer {token}");
    for (key, value) in extensions {
        message.push('\x01');
        message.push_str(key);
        message.push('=');
        message.push_str(value);
    }
    message.push_str("\x01\x01");
    message.into_bytes()
}

#[cfg(test)]
mod tests;
