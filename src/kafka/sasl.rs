//! SASL credentials for both kinds of broker connection: rskafka's (record samples) and ours
//! ([`crate::kafka::connection`]: watermarks and lag, whose SaslHandshake/SaslAuthenticate exchange lives there
//! beside the other calls). PLAIN and SCRAM-SHA-256/512 run the mechanisms of the `rsasl` crate, which rskafka uses
//! itself; a token mechanism sends a [`TokenCache`]'s token through OAUTHBEARER. `kafka.sasl` is turned into a
//! [`Login`] in one place, [`Login::for_config`]. This file imports nothing of the connection, so the two are no
//! circle.

use crate::auth::aws::AwsEnv;
use crate::auth::{self, TokenError};
use crate::config::{KafkaConfig, SaslMechanism, Secret};
use crate::kafka::token::{RETRY_BACKOFF, TokenCache};

/// How a connection logs in.
#[derive(Debug, Clone)]
pub enum Login {
    /// PLAIN or SCRAM: `kafka.sasl.username` and its password.
    Password(PasswordLogin),
    /// OAUTHBEARER with the cache's token (and its SASL extensions): `OAUTHBEARER`, and every mechanism whose
    /// token [`auth::provider_for`] makes.
    Bearer(TokenCache),
}

impl Login {
    /// The login `config.kafka.sasl` asks for (`None` without SASL): a token mechanism gets its provider from
    /// [`auth::provider_for`], each fetch bounded by `kafka.request_timeout`. A [`TokenError::Config`] when the
    /// provider cannot be made from the configuration.
    pub fn for_config(config: &KafkaConfig) -> Result<Option<Login>, TokenError> {
        Self::for_config_with_env(config, &AwsEnv::from_process())
    }

    /// [`Login::for_config`] with AWS MSK IAM reading the AWS variables of `aws_env` rather than the process's
    /// ([`auth::provider_with_env`]).
    pub fn for_config_with_env(config: &KafkaConfig, aws_env: &AwsEnv) -> Result<Option<Login>, TokenError> {
        let Some(sasl) = &config.sasl else {
            return Ok(None);
        };
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => Some(PasswordMechanism::Plain),
            SaslMechanism::ScramSha256 => Some(PasswordMechanism::ScramSha256),
            SaslMechanism::ScramSha512 => Some(PasswordMechanism::ScramSha512),
            SaslMechanism::OAuthBearer | SaslMechanism::AwsMskIam => None,
        };
        if let Some(mechanism) = mechanism {
            return Ok(Some(Login::Password(PasswordLogin {
                mechanism,
                username: sasl.username.clone(),
                password: sasl.password.clone(),
            })));
        }
        Ok(match auth::provider_with_env(sasl, config.request_timeout, aws_env)? {
            Some(provider) => {
                let extensions = sasl
                    .oauth
                    .as_ref()
                    .map(|oauth| oauth.extensions.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                Some(Login::Bearer(TokenCache::new(provider, extensions, RETRY_BACKOFF)))
            }
            None => None,
        })
    }

    /// The mechanism's name on the wire.
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            Login::Password(login) => login.mechanism.name(),
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

/// A password login: PLAIN or SCRAM.
#[derive(Debug, Clone)]
pub struct PasswordLogin {
    /// The mechanism.
    pub mechanism: PasswordMechanism,
    /// `kafka.sasl.username`.
    pub username: String,
    /// `kafka.sasl.password`.
    pub password: Secret,
}

/// The mechanisms that log in with a user name and password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMechanism {
    /// `PLAIN`.
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl PasswordMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            PasswordMechanism::Plain => "PLAIN",
            PasswordMechanism::ScramSha256 => "SCRAM-SHA-256",
            PasswordMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}
