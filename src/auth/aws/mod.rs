//! AWS MSK IAM (`kafka.sasl.mechanism = "AWS_MSK_IAM"`): the token is a SigV4-presigned
//! `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect` (valid 900 s), signed with the pod's
//! AWS credentials, base64url-encoded without padding, and sent as a SASL OAUTHBEARER token: exactly what AWS's
//! signer libraries (aws-msk-iam-sasl-signer-python, -go, -js) make, so that MSK reads it as theirs.
//!
//! The credentials come from the standard sources a pod has, in the SDKs' order: the environment
//! (`AWS_ACCESS_KEY_ID`...), IRSA's web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, exchanged at STS,
//! [`sts`]), the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`, profile
//! `kafka.sasl.aws.profile`, `AWS_PROFILE` or `default`); `kafka.sasl.aws.credentials` forces one of them, for a
//! pod whose environment carries keys meant for something else (the Iceberg sink's S3 keys). Temporary credentials
//! are renewed
//! [`REFRESH_BEFORE_EXPIRY`] before they expire. SigV4 is ours, on `ring` ([`sigv4`]): an AWS SDK would not fit
//! the static binary's budget.

pub mod credentials;
pub mod sigv4;
pub mod sts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

pub use credentials::{AwsCredentials, AwsEnv};

use self::credentials::{config, from_environment, from_file, show_time, still_good_static};
use self::sigv4::{EMPTY_PAYLOAD_SHA256, Request, Scope, SigningKey};
use self::sts::WebIdentity;
use super::{BearerToken, TokenError, TokenProvider};
use crate::config::{AwsCredentialSource, AwsMskIamConfig, Secret, kafka::is_region};

/// How long an MSK IAM token is good for (`X-Amz-Expires`), as every signer library signs it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Temporary credentials are renewed this long before they expire, so that a token signed with them lives its
/// full [`TOKEN_LIFETIME`].
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Credentials that could not be renewed are still used while at least this much of their life is left.
pub const LAST_USABLE: Duration = Duration::from_secs(60);

/// The role session name when `AWS_ROLE_SESSION_NAME` is unset (it shows in CloudTrail).
pub const DEFAULT_SESSION_NAME: &str = "cdc-orchestrator";

/// The User-Agent query parameter the token carries after its signature, as the signer libraries add theirs.
pub const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// The signing name of MSK's IAM access control.
const SERVICE: &str = "kafka-cluster";

/// A clock: the system's, or a fixed one in tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Makes AWS MSK IAM tokens from the pod's AWS credentials (see the module's documentation).
pub struct MskIamTokenProvider {
    region: String,
    source: Source,
    /// The credentials last loaded; the lock also keeps two callers from asking STS at once.
    cache: tokio::sync::Mutex<Option<AwsCredentials>>,
    clock: Clock,
}

/// Where the credentials come from.
enum Source {
    /// Read once, at start: the environment's or the shared credentials file's.
    Static {
        credentials: AwsCredentials,
        /// What the source is, for messages.
        what: String,
        /// The key that names the source in an error.
        key: &'static str,
    },
    /// IRSA: STS exchanges the token file for a role's credentials, again before they expire.
    WebIdentity(WebIdentity),
}

impl std::fmt::Debug for MskIamTokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamTokenProvider")
            .field("region", &self.region)
            .field("source", &self.source())
            .finish_non_exhaustive()
    }
}

impl MskIamTokenProvider {
    /// The provider for `aws` (`[kafka.sasl.aws]`; its default when the section is absent), reading the AWS
    /// variables of `env` and calling STS within `request_timeout` (`kafka.request_timeout`).
    ///
    /// Picks the credential source now, and reads the environment's or the file's credentials now: what is
    /// missing or unusable is a [`TokenError::Config`] naming the key or variable (exit 2 at start).
    pub fn new(aws: &AwsMskIamConfig, env: &AwsEnv, request_timeout: Duration) -> Result<Self, TokenError> {
        Self::with_clock(aws, env, request_timeout, Arc::new(SystemTime::now))
    }

    /// [`MskIamTokenProvider::new`] with `clock` for the time (tests sign at a fixed time).
    pub fn with_clock(
        aws: &AwsMskIamConfig,
        env: &AwsEnv,
        request_timeout: Duration,
        clock: Clock,
    ) -> Result<Self, TokenError> {
        let region = region(aws, env)?;
        let source = source(aws, env, &region, request_timeout, clock())?;
        Ok(Self {
            region,
            source,
            cache: tokio::sync::Mutex::new(None),
            clock,
        })
    }

    /// The region the tokens are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where the credentials come from, for the log at start (no secret).
    pub fn source(&self) -> String {
        match &self.source {
            Source::Static { what, .. } => what.clone(),
            Source::WebIdentity(web) => web.describe(),
        }
    }

    /// Credentials good for a token now: the cached ones, or fresh ones when those are near their expiry. When
    /// renewing fails and the cached ones still have [`LAST_USABLE`] left, they are used and the failure logged.
    async fn credentials(&self) -> Result<AwsCredentials, TokenError> {
        let mut cache = self.cache.lock().await;
        let now = (self.clock)();
        if let Some(cached) = cache.as_ref()
            && !needs_refresh(cached.expiration, now)
        {
            return Ok(cached.clone());
        }
        let loaded = match &self.source {
            Source::Static { credentials, what, key } => still_good_static(credentials.clone(), key, what, now),
            Source::WebIdentity(web) => web.assume_role(now).await,
        };
        match loaded {
            Ok(fresh) => {
                *cache = Some(fresh.clone());
                Ok(fresh)
            }
            Err(error) => match cache.as_ref() {
                Some(cached) if still_usable(cached.expiration, now) => {
                    tracing::warn!(
                        error = %crate::logging::chain(&error),
                        expires = %cached.expiration.map(show_time).unwrap_or_default(),
                        "AWS credentials not renewed; signing with the current ones until they expire"
                    );
                    Ok(cached.clone())
                }
                _ => Err(error),
            },
        }
    }
}

impl TokenProvider for MskIamTokenProvider {
    fn fetch(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        Box::pin(async move {
            let credentials = self.credentials().await?;
            let now = (self.clock)();
            let (value, expires_at) = token(&self.region, &credentials, now, USER_AGENT)?;
            Ok(BearerToken {
                value: Secret::new(value),
                expires_at,
                principal: Some(credentials.principal.clone()),
            })
        })
    }

    fn describe(&self) -> String {
        format!(
            "kafka.sasl.aws (AWS MSK IAM in {}, credentials from {})",
            self.region,
            self.source()
        )
    }
}

/// The MSK IAM token for `region` signed with `credentials` at `now`, and when it expires: [`TOKEN_LIFETIME`]
/// after the signing second, or when the credentials do, whichever is first.
pub fn token(
    region: &str,
    credentials: &AwsCredentials,
    now: SystemTime,
    user_agent: &str,
) -> Result<(String, SystemTime), TokenError> {
    let unix = now.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| clock_error())?;
    let seconds = i64::try_from(unix.as_secs()).map_err(|_| clock_error())?;
    let at: DateTime<Utc> = DateTime::from_timestamp(seconds, 0).ok_or_else(clock_error)?;
    let signed_at = SystemTime::UNIX_EPOCH + Duration::from_secs(unix.as_secs());
    let host = format!("kafka.{region}.amazonaws.com");
    let presigned = sigv4::presign(
        &Request {
            method: "GET",
            host: &host,
            path: "/",
            query: &[("Action", "kafka-cluster:Connect")],
            payload_hash: EMPTY_PAYLOAD_SHA256,
        },
        &SigningKey {
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key.expose(),
            session_token: credentials.session_token.as_ref().map(Secret::expose),
        },
        &Scope {
            region,
            service: SERVICE,
            at,
            expires_secs: TOKEN_LIFETIME.as_secs() as u32,
        },
    );
    let url = format!(
        "https://{host}/?{}&User-Agent={}",
        presigned.query,
        sigv4::uri_encode(user_agent)
    );
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url);
    let lifetime_end = signed_at + TOKEN_LIFETIME;
    let expires_at = credentials
        .expiration
        .map_or(lifetime_end, |expiration| expiration.min(lifetime_end));
    Ok((value, expires_at))
}

fn clock_error() -> TokenError {
    TokenError::Unavailable {
        what: "AWS MSK IAM: the system clock is outside the years SigV4 can sign".to_owned(),
        source: None,
    }
}

/// Whether credentials expiring at `expiration` are renewed at `now`.
pub fn needs_refresh(expiration: Option<SystemTime>, now: SystemTime) -> bool {
    expiration.is_some_and(|expiration| now + REFRESH_BEFORE_EXPIRY >= expiration)
}

/// Whether credentials expiring at `expiration` may still sign at `now`, when they could not be renewed.
pub fn still_usable(expiration: Option<SystemTime>, now: SystemTime) -> bool {
    expiration.is_none_or(|expiration| now + LAST_USABLE < expiration)
}

/// `kafka.sasl.aws.region`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
fn region(aws: &AwsMskIamConfig, env: &AwsEnv) -> Result<String, TokenError> {
    let (key, region) = if !aws.region.is_empty() {
        ("kafka.sasl.aws.region", aws.region.as_str())
    } else if let Some(region) = env.get("AWS_REGION") {
        ("AWS_REGION", region)
    } else if let Some(region) = env.get("AWS_DEFAULT_REGION") {
        ("AWS_DEFAULT_REGION", region)
    } else {
        return Err(config(
            "kafka.sasl.aws.region",
            "unset, and so are AWS_REGION and AWS_DEFAULT_REGION: AWS_MSK_IAM signs for the cluster's region",
        ));
    };
    if !is_region(region) {
        return Err(config(
            key,
            format!("{region:?} is not an AWS region (such as us-east-1)"),
        ));
    }
    Ok(region.to_owned())
}

/// The key that picks the credentials' source.
const CREDENTIALS_KEY: &str = "kafka.sasl.aws.credentials";

/// The source `kafka.sasl.aws.credentials` names: under `auto` the first, in the SDKs' order, that the environment
/// sets up; a forced one must be set up, or the error names the key and the variables it needs.
fn source(
    aws: &AwsMskIamConfig,
    env: &AwsEnv,
    region: &str,
    request_timeout: Duration,
    now: SystemTime,
) -> Result<Source, TokenError> {
    let forced = aws.credentials;
    let not_set_up = |needs: &str| config(CREDENTIALS_KEY, format!("is \"{}\", but {needs}", forced.as_str()));
    let environment = |credentials: Result<AwsCredentials, TokenError>| {
        Ok(Source::Static {
            credentials: credentials?,
            what: "the environment (AWS_ACCESS_KEY_ID)".to_owned(),
            key: "AWS_CREDENTIAL_EXPIRATION",
        })
    };
    match forced {
        AwsCredentialSource::Auto => {}
        AwsCredentialSource::Environment => {
            return match from_environment(env, now) {
                Some(credentials) => environment(credentials),
                None => Err(not_set_up("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are unset")),
            };
        }
        AwsCredentialSource::WebIdentity => {
            let token_file = env
                .get("AWS_WEB_IDENTITY_TOKEN_FILE")
                .ok_or_else(|| not_set_up("AWS_WEB_IDENTITY_TOKEN_FILE is unset (IRSA sets it, with AWS_ROLE_ARN)"))?;
            return web_identity(aws, env, region, PathBuf::from(token_file), request_timeout).map(Source::WebIdentity);
        }
        AwsCredentialSource::Profile => return shared_file(aws, env),
    }
    if let Some(credentials) = from_environment(env, now) {
        if env.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
            // The pod has both: keys in the environment are often the sink's S3 keys (the chart puts them there),
            // not what should log in to Kafka.
            tracing::warn!(
                "kafka.sasl.aws.credentials = \"auto\" signs with the environment's AWS_ACCESS_KEY_ID although IRSA's \
                 web identity is set up too; if those keys are the Iceberg sink's S3 keys, set \
                 kafka.sasl.aws.credentials = \"web_identity\""
            );
        }
        return environment(credentials);
    }
    if let Some(token_file) = env.get("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return web_identity(aws, env, region, PathBuf::from(token_file), request_timeout).map(Source::WebIdentity);
    }
    shared_file(aws, env)
}

/// The shared credentials file's source: `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, and the profile
/// `kafka.sasl.aws.profile`, `AWS_PROFILE`, `AWS_DEFAULT_PROFILE` or `default`.
fn shared_file(aws: &AwsMskIamConfig, env: &AwsEnv) -> Result<Source, TokenError> {
    let path = match (env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("HOME")) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(home)) => PathBuf::from(home).join(".aws").join("credentials"),
        (None, None) => return Err(no_credentials(aws, "HOME is unset, so there is no ~/.aws/credentials")),
    };
    let profile = [
        Some(aws.profile.as_str()),
        env.get("AWS_PROFILE"),
        env.get("AWS_DEFAULT_PROFILE"),
    ]
    .into_iter()
    .flatten()
    .find(|p| !p.is_empty())
    .unwrap_or("default")
    .to_owned();
    if !path.exists() && env.get("AWS_SHARED_CREDENTIALS_FILE").is_none() {
        return Err(no_credentials(aws, &format!("{} does not exist", path.display())));
    }
    let credentials = from_file(&path, &profile)?;
    Ok(Source::Static {
        credentials,
        what: format!("the shared credentials file {}, profile [{profile}]", path.display()),
        key: "AWS_SHARED_CREDENTIALS_FILE",
    })
}

/// No source set up at all (under `auto`), or no credentials file (under `profile`).
fn no_credentials(aws: &AwsMskIamConfig, why: &str) -> TokenError {
    if aws.credentials == AwsCredentialSource::Profile {
        return config(
            CREDENTIALS_KEY,
            format!("is \"profile\", but there is no shared credentials file: {why} (set AWS_SHARED_CREDENTIALS_FILE)"),
        );
    }
    config(
        "AWS_ACCESS_KEY_ID",
        format!(
            "no AWS credentials for AWS_MSK_IAM: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
             AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (IRSA), or AWS_SHARED_CREDENTIALS_FILE ({why})"
        ),
    )
}

/// IRSA's source: `AWS_ROLE_ARN` must come with the token file, and STS is the region's unless configured.
fn web_identity(
    aws: &AwsMskIamConfig,
    env: &AwsEnv,
    region: &str,
    token_file: PathBuf,
    request_timeout: Duration,
) -> Result<WebIdentity, TokenError> {
    let role_arn = env.get("AWS_ROLE_ARN").ok_or_else(|| {
        config(
            "AWS_ROLE_ARN",
            "unset while AWS_WEB_IDENTITY_TOKEN_FILE is set (IRSA sets both)",
        )
    })?;
    if !role_arn.starts_with("arn:") || role_arn.len() > 2048 || role_arn.chars().any(char::is_whitespace) {
        return Err(config("AWS_ROLE_ARN", format!("{role_arn:?} is not a role ARN")));
    }
    let session_name = env.get("AWS_ROLE_SESSION_NAME").unwrap_or(DEFAULT_SESSION_NAME);
    // STS's rule for RoleSessionName: 2 to 64 of [\w+=,.@-].
    if !(2..=64).contains(&session_name.len())
        || !session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(config(
            "AWS_ROLE_SESSION_NAME",
            format!("{session_name:?}: expected 2 to 64 letters, digits or _+=,.@-"),
        ));
    }
    if !token_file.is_file() {
        return Err(config(
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            format!(
                "{}: not found (is the service account's token projected?)",
                token_file.display()
            ),
        ));
    }
    let endpoint = if aws.sts_endpoint.is_empty() {
        // China's partition has its own domain.
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://sts.{region}.{domain}/")
    } else {
        aws.sts_endpoint.clone()
    };
    let endpoint = reqwest::Url::parse(&endpoint)
        .map_err(|e| config("kafka.sasl.aws.sts_endpoint", format!("{endpoint:?}: {e}")))?;
    Ok(WebIdentity {
        token_file,
        role_arn: role_arn.to_owned(),
        session_name: session_name.to_owned(),
        endpoint,
        client: http_client(request_timeout)?,
    })
}

/// The client that calls STS: the crate's one outbound client ([`crate::http_client::client`]): `timeout` on every
/// request, and no redirect followed (a redirect would re-send the web-identity token to an address nobody
/// configured).
fn http_client(timeout: Duration) -> Result<reqwest::Client, TokenError> {
    crate::http_client::client(timeout).map_err(|e| TokenError::Unavailable {
        what: format!(
            "AWS MSK IAM: cannot build the STS client: {}",
            crate::logging::chain(&e)
        ),
        source: None,
    })
}

#[cfg(test)]
mod tests;
