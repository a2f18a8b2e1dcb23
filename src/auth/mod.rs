//! Tokens for SASL OAUTHBEARER, the way the sidecar logs in to Kafka clusters that take no password: an OIDC
//! identity provider's client-credentials grant (`kafka.sasl.mechanism = "OAUTHBEARER"`), and AWS MSK IAM, whose
//! token is a SigV4-presigned `kafka-cluster:Connect` request (`"AWS_MSK_IAM"`).
//!
//! A [`TokenProvider`] makes one token; the Kafka layer caches it and asks again before it expires. Both kinds
//! of broker connection (ours and rskafka's) send the same token.
//!
//! [`provider_for`] is the one place that turns `kafka.sasl` into a provider: a mechanism that logs in with a
//! token has an arm there, and nothing else in the crate needs to know which kind of token it is.
//!
//! May import: [`crate::config`], [`crate::model`], [`crate::logging`], [`crate::backoff`],
//! [`crate::http_client`]; imported by [`crate::kafka`] and the composition root.

pub mod aws;
pub mod oidc;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use crate::config::{SaslConfig, SaslMechanism, Secret};

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

    /// Where the tokens come from, for the log: the key and what it names, never a secret (e.g.
    /// `kafka.sasl.oauth.token_endpoint https://idp/token`).
    fn describe(&self) -> String {
        "the SASL token provider".to_owned()
    }
}

/// The token provider of `sasl`'s mechanism, each of its requests bounded by `timeout` (`kafka.request_timeout`);
/// `None` for a mechanism that logs in with a password (PLAIN, SCRAM). Every provider's token is sent through
/// SASL OAUTHBEARER. AWS MSK IAM reads the process's AWS variables.
pub fn provider_for(sasl: &SaslConfig, timeout: Duration) -> Result<Option<Arc<dyn TokenProvider>>, TokenError> {
    provider_with_env(sasl, timeout, &aws::AwsEnv::from_process())
}

/// [`provider_for`] with the AWS variables of `aws_env` rather than the process's: tests share one process, whose
/// environment they must not change.
pub fn provider_with_env(
    sasl: &SaslConfig,
    timeout: Duration,
    aws_env: &aws::AwsEnv,
) -> Result<Option<Arc<dyn TokenProvider>>, TokenError> {
    match sasl.mechanism {
        SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => Ok(None),
        SaslMechanism::OAuthBearer => {
            let oauth = sasl.oauth.as_ref().ok_or(TokenError::Config {
                key: "kafka.sasl.oauth.token_endpoint",
                reason: "must be set for OAUTHBEARER".to_owned(),
            })?;
            Ok(Some(Arc::new(oidc::OidcProvider::new(oauth, timeout)?)))
        }
        SaslMechanism::AwsMskIam => {
            let aws = sasl.aws.clone().unwrap_or_default();
            Ok(Some(Arc::new(aws::MskIamTokenProvider::new(&aws, aws_env, timeout)?)))
        }
    }
}
