//! Tokens for SASL OAUTHBEARER, the way the sidecar logs in to Kafka clusters that take no password: an OIDC
//! identity provider's client-credentials grant (`kafka.sasl.mechanism = "OAUTHBEARER"`), and AWS MSK IAM, whose
//! token is a SigV4-presigned `kafka-cluster:Connect` request (`"AWS_MSK_IAM"`).
//!
//! A [`TokenProvider`] makes one token; the Kafka layer caches it and asks again before it expires. Both kinds
//! of broker connection (ours and rskafka's) send the same token.
//!
//! May import: [`crate::config`], [`crate::model`], [`crate::logging`], [`crate::backoff`]; imported by
//! [`crate::kafka`] and the composition root.

pub mod aws;

use std::time::SystemTime;

use futures::future::BoxFuture;

use crate::config::Secret;

/// A bearer token and when it stops being good.
#[derive(Debug, Clone)]
pub struct BearerToken {
    /// The token as it goes on the wire (a JWT, or MSK IAM's base64url presigned URL).
    pub value: Secret,
    /// When the broker stops accepting it.
    pub expires_at: SystemTime,
    /// Who the token names, when known (for logs: never the token itself).
    pub principal: Option<String>,
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The configuration cannot give a token; it must be fixed (exit 2 at start).
    #[error("{key}: {reason}")]
    Config {
        /// The configuration key (or environment variable) at fault.
        key: &'static str,
        /// Why, in one line.
        reason: String,
    },
    /// No token now; this may heal, so the caller retries with backoff.
    #[error("{what}")]
    Unavailable {
        /// What failed, in one line, already redacted.
        what: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Makes a fresh token on each call; callers cache it (see [`BearerToken::expires_at`]).
pub trait TokenProvider: Send + Sync + 'static {
    /// A new token.
    fn fetch(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>>;
}
