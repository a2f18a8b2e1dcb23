//! SASL credentials for both kinds of broker connection: rskafka's (record samples) and ours
//! ([`crate::kafka::connection`]: watermarks and lag, whose SaslHandshake/SaslAuthenticate exchange lives there
//! beside the other calls). PLAIN and SCRAM-SHA-256/512 run the mechanisms of the `rsasl` crate, which rskafka uses
//! itself; a token mechanism sends a [`TokenCache`]'s token through OAUTHBEARER. `kafka.sasl` is turned into a
//! [`Login`] in one place, [`Login::for_config`]. This file imports nothing of the connection, so the two are no
//! circle.

use crate::auth::{self, TokenError};
use crate::config::{KafkaConfig, SaslConfig, SaslMechanism};
use crate::kafka::token::{RETRY_BACKOFF, TokenCache};

/// How a connection logs in.
#[derive(Debug, Clone)]
pub enum Login {
    /// PLAIN or SCRAM: `kafka.sasl.username` and its password.
    Password(SaslConfig),
    /// OAUTHBEARER with the cache's token (and its SASL extensions): `OAUTHBEARER`, and every mechanism whose
    /// token [`auth::provider_for`] makes.
    Bearer(TokenCache),
}

impl Login {
    /// The login `config.kafka.sasl` asks for (`None` without SASL): a token mechanism gets its provider from
    /// [`auth::provider_for`], each fetch bounded by `kafka.request_timeout`. A [`TokenError::Config`] when the
    /// provider cannot be made from the configuration.
    pub fn for_config(config: &KafkaConfig) -> Result<Option<Login>, TokenError> {
        let Some(sasl) = &config.sasl else {
            return Ok(None);
        };
        Ok(Some(match auth::provider_for(sasl, config.request_timeout)? {
            Some(provider) => {
                let extensions = sasl
                    .oauth
                    .as_ref()
                    .map(|oauth| oauth.extensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                Login::Bearer(TokenCache::new(provider, extensions, RETRY_BACKOFF))
            }
            None => Login::Password(sasl.clone()),
        }))
    }

    /// The mechanism's name on the wire.
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            Login::Password(sasl) => mechanism_name(sasl.mechanism),
            Login::Bearer(_) => OAUTHBEARER,
        }
    }

    /// The token cache, for a token login.
    pub fn token_cache(&self) -> Option<&TokenCache> {
        match self {
            Login::Bearer(cache) => Some(cache),
            Login::Password(_) => None,
        }
    }
}

/// The wire name every token mechanism authenticates with.
pub const OAUTHBEARER: &str = "OAUTHBEARER";

/// The mechanism's name on the wire.
pub fn mechanism_name(mechanism: SaslMechanism) -> &'static str {
    match mechanism {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
        SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        SaslMechanism::OAuthBearer => OAUTHBEARER,
    }
}
