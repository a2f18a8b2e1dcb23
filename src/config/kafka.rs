//! The `[kafka]` section: where the CDC topics live, how to watch them, and the rule that names a topic's table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::check::{Checks, check_fields};
use super::de::{lenient_string, list, whole_u32};
use super::{ConfigError, Secret, Section};

mod jobs;

pub use jobs::{
    JobsClient, JobsTls, JobsTlsConfig, KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET, KAFKA_JOBS_SASL_PASSWORD,
    KAFKA_JOBS_TLS_KEY_PASSWORD, KAFKA_SASL_OAUTH_CLIENT_SECRET, KAFKA_SASL_PASSWORD, KafkaJobsConfig, SaslOrigin,
};

/// What `kafka.topic_template` and `kafka.group_template` replace with the table name.
pub const TABLE_PLACEHOLDER: &str = crate::model::naming::PLACEHOLDER;

/// Room a Fetch answer needs besides its records (headers, batch and partition fields), so that a sample of
/// `kafka.sample_bytes` fits in `kafka.max_response_bytes`.
pub const SAMPLE_OVERHEAD_BYTES: u64 = 64 * 1024;

/// The `[kafka]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`; a comma-separated string is accepted too (handy in env vars).
    #[serde(deserialize_with = "list")]
    pub bootstrap: Vec<String>,
    /// Topics whose names match this regex are watched.
    pub topic_pattern: String,
    /// How often partition high watermarks are read.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How often topic metadata is refreshed to find new topics and partitions.
    #[serde(with = "humantime_serde")]
    pub topic_refresh: Duration,
    /// Upper bound on any single broker request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// At most this many of a partition's newest records are decoded per advance.
    #[serde(deserialize_with = "whole_u32")]
    pub sample_records: u32,
    /// At most this many bytes are fetched per partition sample.
    #[serde(deserialize_with = "whole_u32")]
    pub sample_bytes: u32,
    /// The largest answer accepted from a broker, on every connection (watermarks, lag, metadata, samples): a
    /// longer frame is a protocol error and its connection is closed. Bounds what a lying broker can make the
    /// sidecar hold per connection; the largest honest answer is the cluster's metadata (~100 bytes a partition).
    #[serde(deserialize_with = "whole_u32")]
    pub max_response_bytes: u32,
    /// After a sample finds only the topic's own table, later advances of that partition within this interval
    /// count as that table's changes without fetching records, and the first advance after it is re-checked with
    /// its newest record only (`0s`: a full sample at every advance).
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Consumer group of a table's Flink job, used for lag; `{table}` is replaced by the table name.
    pub group_template: String,
    /// Topic a table's Flink job reads (Debezium's `<topic.prefix>.<schema>.<table>`); `{table}` is replaced.
    /// It is also the one rule that maps a watched topic back to its table ([`KafkaConfig::table_of_topic`]).
    pub topic_template: String,
    /// Topics (exact names or regexes matched against the whole name) that carry several tables, such as a
    /// Debezium `ByLogicalTableRouter` topic. Only on these is a record's own `source.table` (or `__table`)
    /// believed, and only for a table the sidecar can start; everywhere else a change belongs to the topic's
    /// table. Empty by default.
    #[serde(deserialize_with = "list")]
    pub routed_topics: Vec<String>,
    /// Most tables the watcher tracks (and so most per-table metric series); tables beyond it are ignored with
    /// one warning.
    #[serde(deserialize_with = "whole_u32")]
    pub max_tables: u32,
    /// Transport encryption.
    pub tls: TlsConfig,
    /// SASL authentication; absent means none.
    pub sasl: Option<SaslConfig>,
    /// The per-table Flink jobs' Kafka client, where it differs from the sidecar's ([`KafkaConfig::jobs_client`]).
    pub jobs: KafkaJobsConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec!["127.0.0.1:9092".to_owned()],
            topic_pattern: r"^university-server\.public\..+$".to_owned(),
            poll_interval: Duration::from_secs(1),
            topic_refresh: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            sample_records: 16,
            sample_bytes: 1024 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            sample_interval: Duration::from_secs(60),
            group_template: "cdc-{table}".to_owned(),
            topic_template: "university-server.public.{table}".to_owned(),
            routed_topics: Vec::new(),
            max_tables: 1000,
            tls: TlsConfig::default(),
            sasl: None,
            jobs: KafkaJobsConfig::default(),
        }
    }
}

impl KafkaConfig {
    /// The compiled topic pattern ([`Section::validate`] has already proven that it compiles).
    pub fn topic_regex(&self) -> Result<Regex, regex::Error> {
        Regex::new(&self.topic_pattern)
    }

    /// The consumer group of a table's Flink job.
    pub fn group_for(&self, table: &str) -> String {
        self.group_template.replace(TABLE_PLACEHOLDER, table)
    }

    /// The CDC topic of a table, as its Flink job reads it.
    pub fn topic_for(&self, table: &str) -> String {
        crate::model::naming::topic_for(&self.topic_template, table)
    }

    /// The table a topic carries, by the same `kafka.topic_template` that [`KafkaConfig::topic_for`] fills: the
    /// part of the name where `{table}` stands, if the rest matches and it is a valid table name.
    ///
    /// The one rule from topics to tables: the watcher, its samples, lag and routing all ask here. It lives beside
    /// the key it reads, so that the configuration's own checks (the topic pattern must watch every templated
    /// table's topic) use it without reaching into the Kafka layer. `kafka.topic_template` holds `{table}` once (checked by
    /// [`Section::validate`]).
    pub fn table_of_topic<'t>(&self, topic: &'t str) -> Option<&'t str> {
        crate::model::naming::table_of_topic(&self.topic_template, topic)
    }

    /// The compiled `kafka.routed_topics`, each anchored to the whole topic name.
    pub fn routed_regex(&self) -> Result<regex::RegexSet, regex::Error> {
        regex::RegexSet::new(self.routed_topics.iter().map(|p| format!("^(?:{p})$")))
    }
}

/// The `[kafka.tls]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Connect with TLS.
    pub enabled: bool,
    /// PEM file of the CA(s) to trust; absent means the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// The `[kafka.sasl]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// The user name (PLAIN and SCRAM only; empty otherwise).
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "String::is_empty"
    )]
    pub username: String,
    /// The password (PLAIN and SCRAM only); set it through `CDC_KAFKA__SASL__PASSWORD`
    /// (`CDC_KAFKA__JOBS__SASL__PASSWORD` for the jobs' own login) rather than the file. Missing is reported by the
    /// checks, naming that variable.
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    /// The OIDC client-credentials login (`OAUTHBEARER` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OauthConfig>,
    /// `[kafka.sasl.aws]`: where AWS MSK IAM signs (`AWS_MSK_IAM` only; every key has a default, so the section
    /// may be left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsMskIamConfig>,
}

/// The `[kafka.sasl.oauth]` section: where `OAUTHBEARER` gets its tokens, an OAuth 2.0 client-credentials grant
/// against an OIDC identity provider's token endpoint, as Kafka's own `OAuthBearerLoginCallbackHandler` makes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OauthConfig {
    /// The token endpoint, an `http://` or `https://` URL (shown only through [`super::redact_url`]).
    #[serde(deserialize_with = "lenient_string", serialize_with = "super::shown_url::serialize")]
    pub token_endpoint: String,
    /// The OAuth client id.
    #[serde(deserialize_with = "lenient_string")]
    pub client_id: String,
    /// The OAuth client secret; set it through `CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET` rather than the file.
    pub client_secret: Secret,
    /// The scope asked for (`scope=` of the grant); empty: none.
    #[serde(deserialize_with = "lenient_string")]
    pub scope: String,
    /// The audience asked for (`audience=` of the grant, as Auth0 and others want it); empty: none.
    #[serde(deserialize_with = "lenient_string")]
    pub audience: String,
    /// SASL extensions sent with the token (RFC 7628 `key=value` pairs, e.g. Confluent Cloud's `logicalCluster`).
    pub extensions: BTreeMap<String, String>,
}

/// Supported SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN`: the password travels as is; use with TLS.
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// `OAUTHBEARER`: a token from an OIDC token endpoint (`[kafka.sasl.oauth]`).
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
    /// `AWS_MSK_IAM`: a SigV4-presigned `kafka-cluster:Connect` request made from the pod's AWS credentials, sent
    /// as a SASL OAUTHBEARER token as the MSK IAM signer libraries send it (`[kafka.sasl.aws]`).
    #[serde(rename = "AWS_MSK_IAM")]
    AwsMskIam,
}

impl SaslMechanism {
    /// The mechanism as the configuration names it.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
            SaslMechanism::AwsMskIam => "AWS_MSK_IAM",
        }
    }

    /// Whether the mechanism logs in with `username` and `password` (PLAIN, SCRAM) rather than a token.
    pub fn takes_password(self) -> bool {
        match self {
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => true,
            SaslMechanism::OAuthBearer | SaslMechanism::AwsMskIam => false,
        }
    }
}

/// The `[kafka.sasl.aws]` section: AWS MSK IAM. The credentials are not configured here: they come from the
/// standard AWS sources of the pod (environment variables, the IRSA web-identity token file through STS, the
/// shared credentials file), read by [`crate::auth`]; `credentials` only says which of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsMskIamConfig {
    /// The cluster's AWS region (`us-east-1`); empty: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    #[serde(deserialize_with = "lenient_string")]
    pub region: String,
    /// The STS endpoint that exchanges the web-identity token for credentials; empty: the region's
    /// `https://sts.<region>.amazonaws.com`. Set it for VPC or FIPS endpoints.
    #[serde(deserialize_with = "lenient_string")]
    pub sts_endpoint: String,
    /// The profile of the shared credentials file; empty: `AWS_PROFILE`, then `default`.
    #[serde(deserialize_with = "lenient_string")]
    pub profile: String,
    /// Which source's credentials sign the token: the first one set up, in the SDKs' order (`auto`), or one forced.
    pub credentials: AwsCredentialSource,
}

/// `kafka.sasl.aws.credentials`: where the AWS credentials that sign the MSK IAM token come from.
///
/// Forcing one matters where a pod has several: the chart puts the Iceberg sink's S3 keys into the sidecar's
/// environment as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, which `auto` would pick before IRSA's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsCredentialSource {
    /// The first source set up, in the AWS SDKs' order: the environment, then web identity, then the shared file.
    #[default]
    Auto,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`.
    Environment,
    /// IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`, exchanged at STS.
    WebIdentity,
    /// The shared credentials file's profile (`kafka.sasl.aws.profile`, `AWS_PROFILE`, `default`).
    Profile,
}

impl AwsCredentialSource {
    /// The value as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AwsCredentialSource::Auto => "auto",
            AwsCredentialSource::Environment => "environment",
            AwsCredentialSource::WebIdentity => "web_identity",
            AwsCredentialSource::Profile => "profile",
        }
    }
}

impl AwsMskIamConfig {
    /// `[kafka.sasl.aws]`: a region fit for a host name, an STS endpoint that keeps the web-identity token off
    /// the wire in clear (https, or http to the loopback only: tests and local proxies).
    pub(super) fn validate(&self, errors: &mut Vec<ConfigError>) {
        if !self.region.is_empty() && !is_region(&self.region) {
            errors.invalid(
                "kafka.sasl.aws.region",
                &self.region,
                "expected an AWS region such as us-east-1 (lower-case letters, digits and '-')",
            );
        }
        if !self.sts_endpoint.is_empty() {
            match reqwest::Url::parse(&self.sts_endpoint) {
                Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => {
                    if !url.username().is_empty() || url.password().is_some() {
                        errors.invalid(
                            "kafka.sasl.aws.sts_endpoint",
                            &super::redact_url(&self.sts_endpoint),
                            "must not carry credentials",
                        );
                    }
                }
                Ok(_) => errors.invalid(
                    "kafka.sasl.aws.sts_endpoint",
                    &super::redact_url(&self.sts_endpoint),
                    "expected an https:// URL (http:// only to the loopback): the web-identity token travels to it",
                ),
                Err(e) => errors.invalid(
                    "kafka.sasl.aws.sts_endpoint",
                    &super::redact_url(&self.sts_endpoint),
                    e.to_string(),
                ),
            }
        }
        if self.profile.chars().any(|c| c.is_control() || c == ']') {
            errors.invalid("kafka.sasl.aws.profile", &self.profile, "not a profile name");
        }
        // A key of a source that `credentials` rules out would silently do nothing.
        let forced = self.credentials.as_str();
        if !self.sts_endpoint.is_empty()
            && matches!(
                self.credentials,
                AwsCredentialSource::Environment | AwsCredentialSource::Profile
            )
        {
            errors.invalid(
                "kafka.sasl.aws.sts_endpoint",
                &super::redact_url(&self.sts_endpoint),
                format!("is used by web identity only, and kafka.sasl.aws.credentials is \"{forced}\""),
            );
        }
        if !self.profile.is_empty()
            && matches!(
                self.credentials,
                AwsCredentialSource::Environment | AwsCredentialSource::WebIdentity
            )
        {
            errors.invalid(
                "kafka.sasl.aws.profile",
                &self.profile,
                format!("is used by the shared credentials file only, and kafka.sasl.aws.credentials is \"{forced}\""),
            );
        }
    }
}

/// Whether `region` can stand in `kafka.<region>.amazonaws.com`: AWS region names are lower-case words joined by
/// '-' (`us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`).
pub fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Section for KafkaConfig {
    const KEY: &'static str = "kafka";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.bootstrap.is_empty() {
            errors.invalid("kafka.bootstrap", &self.bootstrap, "needs at least one host:port");
        }
        for addr in self.bootstrap.iter().filter(|a| !is_host_port(a)) {
            errors.invalid("kafka.bootstrap", addr, "expected host:port");
        }
        errors.regex("kafka.topic_pattern", &self.topic_pattern, &self.topic_pattern);
        for pattern in &self.routed_topics {
            errors.regex("kafka.routed_topics", pattern, &format!("^(?:{pattern})$"));
        }
        check_fields!(errors.positive, "kafka", self: poll_interval, topic_refresh, request_timeout);
        check_fields!(errors.at_least_one, "kafka", self: sample_records, sample_bytes, max_tables);
        if u64::from(self.max_response_bytes) < u64::from(self.sample_bytes) + SAMPLE_OVERHEAD_BYTES {
            errors.invalid(
                "kafka.max_response_bytes",
                &self.max_response_bytes,
                format!(
                    "must exceed kafka.sample_bytes by at least {SAMPLE_OVERHEAD_BYTES}, so that a sample's answer fits"
                ),
            );
        }
        for (key, template) in [
            ("kafka.group_template", &self.group_template),
            ("kafka.topic_template", &self.topic_template),
        ] {
            if !template.contains(TABLE_PLACEHOLDER) {
                errors.invalid(key, template, "must contain {table}");
            }
        }
        if self.topic_template.matches(TABLE_PLACEHOLDER).count() > 1 {
            errors.invalid(
                "kafka.topic_template",
                &self.topic_template,
                "must contain {table} once (it also maps topics back to tables)",
            );
        }
        self.tls.validate(errors);
        if let Some(sasl) = &self.sasl {
            sasl.validate(SaslOrigin::Sidecar, self.tls.enabled, errors);
        }
        self.validate_jobs(errors);
    }
}

impl OauthConfig {
    /// `[<key>]` (`kafka.sasl.oauth` or `kafka.jobs.sasl.oauth`): an http(s) token endpoint, a client id and
    /// secret (set by `secret_variable`), and extensions Kafka accepts.
    pub(super) fn validate(&self, key: &str, secret_variable: &str, errors: &mut Vec<ConfigError>) {
        let endpoint_key = format!("{key}.token_endpoint");
        if self.token_endpoint.trim().is_empty() {
            errors.invalid(&endpoint_key, &"", "must be set for OAUTHBEARER");
        } else {
            errors.http_url(&endpoint_key, &self.token_endpoint);
            // The jobs' options carry the URL as written, and `render` shows them: no password may ride in it.
            if reqwest::Url::parse(&self.token_endpoint)
                .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
            {
                errors.invalid(
                    &endpoint_key,
                    &super::redact_url(&self.token_endpoint),
                    format!("must not carry user or password (the client secret goes in {secret_variable})"),
                );
            }
        }
        errors.not_blank(&format!("{key}.client_id"), &self.client_id);
        if self.client_secret.is_empty() {
            errors.invalid(
                format!("{key}.client_secret"),
                &"",
                format!("must be set for OAUTHBEARER ({secret_variable})"),
            );
        }
        for (name, value) in &self.extensions {
            let at = format!("{key}.extensions.{name}");
            // Kafka's rules for SASL extensions (OAuthBearerClientInitialResponse): `auth` is the token's own key.
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
                errors.invalid(&at, name, "an extension's name is letters only (A-Z, a-z)");
            } else if name == "auth" {
                errors.invalid(&at, name, "\"auth\" is reserved for the token itself");
            }
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n'))
            {
                errors.invalid(&at, value, "an extension's value is printable ASCII, spaces and tabs");
            }
        }
    }
}

impl TlsConfig {
    /// `[kafka.tls]`: the certificate comes with its key, and every named file exists.
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.invalid(
                "kafka.tls.cert_file",
                &self.cert_file,
                "cert_file and key_file go together",
            );
        }
        for (key, file) in [
            ("kafka.tls.ca_file", &self.ca_file),
            ("kafka.tls.cert_file", &self.cert_file),
            ("kafka.tls.key_file", &self.key_file),
        ] {
            if let Some(path) = file
                && !path.is_file()
            {
                errors.invalid(key, &path.display().to_string(), "file not found");
            }
        }
    }
}

fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok(),
        None => false,
    }
}
