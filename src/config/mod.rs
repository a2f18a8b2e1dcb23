//! Layered configuration: built-in defaults < TOML file < `CDC_`-prefixed environment variables.
//!
//! Every section denies unknown keys, so a typo is an error naming the key instead of a silently ignored
//! setting. Values that deserialize but make no sense (an empty bootstrap list, a regex that does not compile,
//! a table name that is not an identifier) are caught by [`Config::validate`], which names the key and the bad
//! value on one line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decoder::Op;

/// Prefix of the environment variables that override the file; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "CDC_";

/// Environment variables with the prefix that belong to the CLI, not to the configuration tree.
const CLI_ENV_KEYS: [&str; 3] = ["config", "log_format", "log_level"];

/// Why a configuration could not be loaded. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file named by `--config` / `CDC_CONFIG` does not exist.
    #[error("config file not found: {}", .0.display())]
    FileNotFound(PathBuf),
    /// The path named by `--config` / `CDC_CONFIG` is a directory, not a file.
    #[error("config file {} is a directory, not a file", .0.display())]
    IsDirectory(PathBuf),
    /// The file is not valid TOML.
    #[error("{}: TOML syntax error at line {line}, column {column}: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The TOML parser's description, on one line.
        message: String,
    },
    /// A key is unknown, has the wrong type, or its value does not parse.
    #[error("{0}")]
    Parse(String),
    /// A value parsed but is not acceptable.
    #[error("{key}: {reason} (got {value})")]
    Invalid {
        /// Dotted path of the offending key, e.g. `kafka.topic_pattern`.
        key: String,
        /// The offending value as the user wrote it.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration of the sidecar.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the CDC topics live and how to watch them.
    pub kafka: KafkaConfig,
    /// When to start and stop a table's job.
    pub policy: PolicyConfig,
    /// How to reach Flink and how fast to start jobs.
    pub flink: FlinkConfig,
    /// The operator HTTP endpoint.
    pub server: ServerConfig,
    /// Where the per-table jobs write: the Iceberg REST catalog and its object store.
    pub iceberg: IcebergConfig,
    /// Which kind of sink the per-table jobs write to, and the JDBC sink's connection.
    pub sink: SinkConfig,
}

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
    /// After a sample finds only the topic's own table, later advances of that partition within this interval
    /// count as that table's changes without fetching records, and the first advance after it is re-checked with
    /// its newest record only (`0s`: a full sample at every advance).
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Read watermarks with one ListOffsets request per broker (`true`) rather than rskafka's one request per
    /// partition, under every TLS and SASL setting.
    pub batch_watermarks: bool,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslConfig>,
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
            sample_interval: Duration::from_secs(60),
            batch_watermarks: true,
            group_template: "cdc-{table}".to_owned(),
            topic_template: "university-server.public.{table}".to_owned(),
            routed_topics: Vec::new(),
            max_tables: 1000,
            tls: TlsConfig::default(),
            sasl: None,
        }
    }
}

impl KafkaConfig {
    /// The compiled topic pattern ([`Config::validate`] has already proven that it compiles).
    pub fn topic_regex(&self) -> Result<Regex, regex::Error> {
        Regex::new(&self.topic_pattern)
    }

    /// The consumer group of a table's Flink job.
    pub fn group_for(&self, table: &str) -> String {
        self.group_template.replace("{table}", table)
    }

    /// The CDC topic of a table, as its Flink job reads it.
    pub fn topic_for(&self, table: &str) -> String {
        crate::kafka::naming::topic_for(&self.topic_template, table)
    }

    /// The table a topic carries, by the same `kafka.topic_template` that [`KafkaConfig::topic_for`] fills: the
    /// part of the name where `{table}` stands, if the rest matches and it is a valid table name. This is the
    /// only mapping from topics to tables (watcher, lag and run loop all use it).
    pub fn table_of_topic<'t>(&self, topic: &'t str) -> Option<&'t str> {
        crate::kafka::naming::table_of_topic(&self.topic_template, topic)
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// The `[kafka.sasl]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// The user name.
    #[serde(deserialize_with = "lenient_string")]
    pub username: String,
    /// The password; set it through `CDC_KAFKA__SASL__PASSWORD` rather than the file.
    pub password: Secret,
}

/// Supported SASL mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
}

/// The `[policy]` section: defaults for every table, and per-table overrides under `[policy.tables.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Two starts of one table are at least this far apart.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// A running job whose table saw no new records for this long (and has no lag) is stopped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Operations that count as changes; others are observed but start nothing.
    #[serde(deserialize_with = "list")]
    pub operations: Vec<Op>,
    /// A paused table never starts.
    pub paused: bool,
    /// Only these tables are managed; empty means every table seen.
    #[serde(deserialize_with = "list")]
    pub include: Vec<String>,
    /// These tables are never managed, even when included.
    #[serde(deserialize_with = "list")]
    pub exclude: Vec<String>,
    /// First retry delay after a failed start; doubles per failure.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Cap of the retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// After this many consecutive failed starts the table is reported as `failing`.
    #[serde(deserialize_with = "whole_u32")]
    pub failing_after: u32,
    /// Per-table overrides, keyed by table name.
    pub tables: BTreeMap<String, TableOverrides>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            operations: Op::ALL.to_vec(),
            paused: false,
            include: Vec::new(),
            exclude: Vec::new(),
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(300),
            failing_after: 3,
            tables: BTreeMap::new(),
        }
    }
}

/// Settings of one table that differ from the `[policy]` defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableOverrides {
    /// Overrides `policy.cooldown`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Overrides `policy.idle_timeout`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Overrides `policy.operations`.
    #[serde(deserialize_with = "optional_list", skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<Op>>,
    /// Overrides `policy.paused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// The settings that apply to one table once overrides are merged into the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePolicy {
    /// Minimum time between two starts.
    pub cooldown: Duration,
    /// Quiet time after which a running job is stopped.
    pub idle_timeout: Duration,
    /// Operations that count as changes.
    pub operations: Vec<Op>,
    /// Whether starts are suspended.
    pub paused: bool,
}

impl PolicyConfig {
    /// The effective settings of `table`.
    pub fn for_table(&self, table: &str) -> TablePolicy {
        let overrides = self.tables.get(table);
        let pick =
            |f: fn(&TableOverrides) -> Option<Duration>, default: Duration| overrides.and_then(f).unwrap_or(default);
        TablePolicy {
            cooldown: pick(|o| o.cooldown, self.cooldown),
            idle_timeout: pick(|o| o.idle_timeout, self.idle_timeout),
            operations: overrides
                .and_then(|o| o.operations.clone())
                .unwrap_or_else(|| self.operations.clone()),
            paused: overrides.and_then(|o| o.paused).unwrap_or(self.paused),
        }
    }

    /// Whether the sidecar manages `table` at all (include/exclude lists).
    pub fn manages(&self, table: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|t| t == table);
        included && !self.exclude.iter().any(|t| t == table)
    }
}

/// How jobs are launched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LauncherKind {
    /// Submit through the Flink SQL Gateway and manage through the JobManager REST API.
    SqlGateway,
    /// Log the statements and simulate a running job; for demos without Flink.
    DryRun,
}

/// The `[flink]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlinkConfig {
    /// Which launcher submits jobs.
    pub launcher: LauncherKind,
    /// Base URL of the Flink SQL Gateway REST endpoint.
    pub sql_gateway_url: String,
    /// Base URL of the JobManager REST API.
    pub jobmanager_url: String,
    /// Base URL of the Flink web UI as an operator's browser reaches it, for the job links in `/tables`;
    /// unset means `jobmanager_url` (the UI is served on the REST port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_ui_url: Option<String>,
    /// Where stop-with-savepoint writes savepoints.
    pub savepoint_dir: String,
    /// Folder whose SQL templates override the built-in ones (and add tables); absent means built-in only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql_dir: Option<PathBuf>,
    /// Checkpoint interval of the per-table jobs: Iceberg commits and Kafka offsets land on checkpoints.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Job starts allowed per minute across all tables.
    #[serde(deserialize_with = "whole_u32")]
    pub starts_per_minute: u32,
    /// Starts allowed at once before the per-minute rate applies.
    #[serde(deserialize_with = "whole_u32")]
    pub start_burst: u32,
    /// Jobs that may be starting, running or stopping at once; further starts queue.
    #[serde(deserialize_with = "whole_u32")]
    pub max_concurrent_jobs: u32,
    /// Upper bound on any single HTTP request to Flink.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a start may take until the job is RUNNING.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// How long stop-with-savepoint may take before the job is cancelled.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// How often Flink's job list is compared with what the sidecar believes.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// On SIGTERM/SIGINT, how long in-flight Flink calls may take to finish before they are abandoned.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Stop every running job (with savepoint) on shutdown, instead of leaving them to be adopted next time.
    pub stop_jobs_on_shutdown: bool,
}

impl FlinkConfig {
    /// Where job links in `/tables` point: the web UI, or nothing for the dry-run launcher (no Flink exists).
    pub fn job_link_base(&self) -> String {
        match self.launcher {
            LauncherKind::DryRun => String::new(),
            _ => self.web_ui_url.clone().unwrap_or_else(|| self.jobmanager_url.clone()),
        }
    }
}

impl Default for FlinkConfig {
    fn default() -> Self {
        Self {
            launcher: LauncherKind::SqlGateway,
            sql_gateway_url: "http://127.0.0.1:8083".to_owned(),
            jobmanager_url: "http://127.0.0.1:8081".to_owned(),
            web_ui_url: None,
            savepoint_dir: "s3://warehouse/savepoints".to_owned(),
            sql_dir: None,
            checkpoint_interval: Duration::from_secs(10),
            starts_per_minute: 10,
            start_burst: 5,
            max_concurrent_jobs: 20,
            request_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(20),
            stop_jobs_on_shutdown: false,
        }
    }
}

/// The `[iceberg]` section: what the per-table jobs' Iceberg catalog connects to.
///
/// These addresses are used by Flink, not by the sidecar, so they name hosts as Flink sees them. The catalog's
/// credentials are not here: they are read from the environment when statements are rendered (see `sql`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IcebergConfig {
    /// Iceberg REST catalog endpoint (Apache Polaris: `http://<host>:8181/api/catalog`).
    pub catalog_uri: String,
    /// The REST catalog's warehouse, i.e. the Polaris catalog name.
    pub warehouse: String,
    /// OAuth2 scope requested with the client credentials.
    pub scope: String,
    /// Iceberg namespace (Flink database) the tables are created in.
    pub database: String,
    /// S3 endpoint of the object store (MinIO).
    pub s3_endpoint: String,
    /// S3 region; MinIO ignores it but the AWS SDK requires one.
    pub s3_region: String,
    /// Path-style bucket addressing, which MinIO needs.
    pub s3_path_style_access: bool,
}

impl Default for IcebergConfig {
    fn default() -> Self {
        Self {
            catalog_uri: "http://127.0.0.1:8181/api/catalog".to_owned(),
            warehouse: "polariscatalog".to_owned(),
            scope: "PRINCIPAL_ROLE:ALL".to_owned(),
            database: "university".to_owned(),
            s3_endpoint: "http://127.0.0.1:9000".to_owned(),
            s3_region: "us-east-1".to_owned(),
            s3_path_style_access: true,
        }
    }
}

/// Which kind of sink the per-table templates render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SinkKind {
    /// An Iceberg v2 upsert table in the REST catalog of the `[iceberg]` section.
    #[default]
    Iceberg,
    /// A database table through Flink's JDBC connector (`[sink.jdbc]`), upserted on the primary key.
    Jdbc,
}

impl SinkKind {
    /// The name the configuration and the templates (`{{ sink }}`) use.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Iceberg => "iceberg",
            SinkKind::Jdbc => "jdbc",
        }
    }
}

/// The `[sink]` section: where the per-table jobs write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// The kind of sink; Iceberg unless set.
    pub kind: SinkKind,
    /// The JDBC sink's connection, used when `kind = "jdbc"`.
    pub jdbc: JdbcSinkConfig,
}

/// The `[sink.jdbc]` section: the database the JDBC sink writes to, as Flink reaches it.
///
/// The password is not here: rendering reads it from the environment (`SINK_JDBC_PASSWORD`, see `sql`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JdbcSinkConfig {
    /// JDBC URL of the database, e.g. `jdbc:postgresql://db:5432/warehouse`.
    pub url: String,
    /// The database table each source table is written to; `{table}` is replaced by the table's name.
    pub table_name: String,
    /// The database user.
    pub username: String,
}

impl Default for JdbcSinkConfig {
    fn default() -> Self {
        Self {
            url: "jdbc:postgresql://127.0.0.1:5432/university".to_owned(),
            table_name: "{table}".to_owned(),
            username: "postgres".to_owned(),
        }
    }
}

impl JdbcSinkConfig {
    /// The database table that `table` is written to.
    pub fn table_for(&self, table: &str) -> String {
        self.table_name.replace("{table}", table)
    }
}

/// The `[server]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP server (health, metrics, control).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// When set, POST requests need `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    #[serde(deserialize_with = "whole_u32")]
    pub max_connections: u32,
    /// A client must send a request's whole header within this time, or the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request body accepted, counted as it is read (chunked or sized); the API takes no bodies.
    #[serde(deserialize_with = "whole_u32")]
    pub max_body_bytes: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            token: None,
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 4096,
        }
    }
}

/// A string that never appears in logs, `Debug` output or `check`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_string(deserializer).map(Secret)
    }
}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then the `CDC_` environment, and validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if path.is_dir() {
                return Err(ConfigError::IsDirectory(path.to_owned()));
            }
            if !path.is_file() {
                return Err(ConfigError::FileNotFound(path.to_owned()));
            }
            check_syntax(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(EnvText(Env::prefixed(ENV_PREFIX).split("__").ignore(&CLI_ENV_KEYS)));
        // Lossy: a `true` or `8` that arrives as text (every environment value does) is a bool or a number where
        // the key is one; where the key is a string the text is kept as written.
        let config: Config = figment.extract_lossy().map_err(|e| ConfigError::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what deserialization cannot: non-empty lists, compilable patterns, valid identifiers, URLs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn fmt::Debug, reason: &str| ConfigError::Invalid {
            key: key.to_owned(),
            value: format!("{value:?}"),
            reason: reason.to_owned(),
        };
        let k = &self.kafka;
        if k.bootstrap.is_empty() {
            return Err(invalid("kafka.bootstrap", &k.bootstrap, "needs at least one host:port"));
        }
        for addr in &k.bootstrap {
            if !is_host_port(addr) {
                return Err(invalid("kafka.bootstrap", addr, "expected host:port"));
            }
        }
        if let Err(e) = Regex::new(&k.topic_pattern) {
            return Err(invalid(
                "kafka.topic_pattern",
                &k.topic_pattern,
                &one_line(&e.to_string()),
            ));
        }
        for (key, value) in [
            ("kafka.poll_interval", k.poll_interval),
            ("kafka.topic_refresh", k.topic_refresh),
            ("kafka.request_timeout", k.request_timeout),
            ("flink.request_timeout", self.flink.request_timeout),
            ("flink.start_timeout", self.flink.start_timeout),
            ("flink.stop_timeout", self.flink.stop_timeout),
            ("flink.reconcile_interval", self.flink.reconcile_interval),
            ("flink.shutdown_timeout", self.flink.shutdown_timeout),
            ("flink.checkpoint_interval", self.flink.checkpoint_interval),
            ("policy.retry_initial_backoff", self.policy.retry_initial_backoff),
            ("policy.idle_timeout", self.policy.idle_timeout),
            ("server.header_timeout", self.server.header_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(
                    key,
                    &humantime::format_duration(value).to_string(),
                    "must be greater than 0",
                ));
            }
        }
        if self.policy.retry_max_backoff < self.policy.retry_initial_backoff {
            return Err(invalid(
                "policy.retry_max_backoff",
                &humantime::format_duration(self.policy.retry_max_backoff).to_string(),
                "must not be below policy.retry_initial_backoff",
            ));
        }
        for (key, value) in [
            ("kafka.sample_records", k.sample_records),
            ("kafka.sample_bytes", k.sample_bytes),
            ("flink.starts_per_minute", self.flink.starts_per_minute),
            ("flink.start_burst", self.flink.start_burst),
            ("flink.max_concurrent_jobs", self.flink.max_concurrent_jobs),
            ("policy.failing_after", self.policy.failing_after),
            ("server.max_connections", self.server.max_connections),
        ] {
            if value == 0 {
                return Err(invalid(key, &value, "must be at least 1"));
            }
        }
        for (key, template) in [
            ("kafka.group_template", &k.group_template),
            ("kafka.topic_template", &k.topic_template),
        ] {
            if !template.contains("{table}") {
                return Err(invalid(key, template, "must contain {table}"));
            }
        }
        if k.topic_template.matches("{table}").count() > 1 {
            return Err(invalid(
                "kafka.topic_template",
                &k.topic_template,
                "must contain {table} once (it also maps topics back to tables)",
            ));
        }
        for pattern in &k.routed_topics {
            if let Err(e) = Regex::new(&format!("^(?:{pattern})$")) {
                return Err(invalid("kafka.routed_topics", pattern, &one_line(&e.to_string())));
            }
        }
        if k.max_tables == 0 {
            return Err(invalid("kafka.max_tables", &k.max_tables, "must be at least 1"));
        }
        if k.tls.cert_file.is_some() != k.tls.key_file.is_some() {
            return Err(invalid(
                "kafka.tls.cert_file",
                &k.tls.cert_file,
                "cert_file and key_file go together",
            ));
        }
        for (key, file) in [
            ("kafka.tls.ca_file", &k.tls.ca_file),
            ("kafka.tls.cert_file", &k.tls.cert_file),
            ("kafka.tls.key_file", &k.tls.key_file),
        ] {
            if let Some(path) = file
                && !path.is_file()
            {
                return Err(invalid(key, &path.display().to_string(), "file not found"));
            }
        }
        for (key, names) in [
            ("policy.include", &self.policy.include),
            ("policy.exclude", &self.policy.exclude),
        ] {
            if let Some(bad) = names.iter().find(|n| !is_table_name(n)) {
                return Err(invalid(key, bad, TABLE_NAME_RULE));
            }
        }
        for (name, overrides) in &self.policy.tables {
            if !is_table_name(name) {
                return Err(invalid(&format!("policy.tables.{name}"), name, TABLE_NAME_RULE));
            }
            if let Some(idle) = overrides.idle_timeout.filter(Duration::is_zero) {
                return Err(invalid(
                    &format!("policy.tables.{name}.idle_timeout"),
                    &humantime::format_duration(idle).to_string(),
                    "must be greater than 0",
                ));
            }
            if overrides.operations.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    &format!("policy.tables.{name}.operations"),
                    &"[]",
                    "needs at least one operation",
                ));
            }
        }
        if self.policy.operations.is_empty() {
            return Err(invalid("policy.operations", &"[]", "needs at least one operation"));
        }
        for (key, url) in [
            ("flink.sql_gateway_url", &self.flink.sql_gateway_url),
            ("flink.jobmanager_url", &self.flink.jobmanager_url),
            ("iceberg.catalog_uri", &self.iceberg.catalog_uri),
            ("iceberg.s3_endpoint", &self.iceberg.s3_endpoint),
            (
                "flink.web_ui_url",
                self.flink.web_ui_url.as_ref().unwrap_or(&self.flink.jobmanager_url),
            ),
        ] {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => return Err(invalid(key, url, "expected an http:// or https:// URL")),
                Err(e) => return Err(invalid(key, url, &e.to_string())),
            }
        }
        if let Some(dir) = &self.flink.sql_dir
            && !dir.is_dir()
        {
            return Err(invalid("flink.sql_dir", &dir.display().to_string(), "not a directory"));
        }
        for (key, value) in [
            ("iceberg.warehouse", &self.iceberg.warehouse),
            ("iceberg.scope", &self.iceberg.scope),
            ("iceberg.s3_region", &self.iceberg.s3_region),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, value, "must not be empty"));
            }
        }
        if !is_table_name(&self.iceberg.database) {
            return Err(invalid(
                "iceberg.database",
                &self.iceberg.database,
                "not a valid database name (letters, digits and _, not starting with a digit, at most 63)",
            ));
        }
        if self.sink.kind == SinkKind::Jdbc {
            let jdbc = &self.sink.jdbc;
            if !jdbc.url.starts_with("jdbc:") || jdbc.url.contains(char::is_whitespace) {
                return Err(invalid("sink.jdbc.url", &jdbc.url, "expected a jdbc: URL"));
            }
            if !jdbc.table_name.contains("{table}") {
                return Err(invalid(
                    "sink.jdbc.table_name",
                    &jdbc.table_name,
                    "must contain {table}",
                ));
            }
            if jdbc.username.trim().is_empty() {
                return Err(invalid("sink.jdbc.username", &jdbc.username, "must not be empty"));
            }
        }
        if self.server.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            // An empty token would make every POST a 401; leaving the key unset is how to disable the check.
            return Err(invalid(
                "server.token",
                &"",
                "must not be empty (leave it unset for no token)",
            ));
        }
        if let Some(sasl) = &k.sasl {
            if sasl.username.trim().is_empty() {
                return Err(invalid("kafka.sasl.username", &sasl.username, "must not be empty"));
            }
            if sasl.password.expose().is_empty() {
                return Err(invalid("kafka.sasl.password", &"", "must not be empty"));
            }
        }
        if self.flink.savepoint_dir.trim().is_empty() {
            return Err(invalid(
                "flink.savepoint_dir",
                &self.flink.savepoint_dir,
                "must not be empty",
            ));
        }
        self.validate_topic_template()
    }

    /// `kafka.topic_pattern` must watch the topics `kafka.topic_template` names: the topic of every table in
    /// `policy.include`, and of at least one table that has a SQL template; otherwise no change of those tables
    /// is ever seen.
    fn validate_topic_template(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        // The pattern compiled above; a failure here was reported there.
        let Ok(pattern) = Regex::new(&k.topic_pattern) else {
            return Ok(());
        };
        let unwatched = |table: &str| ConfigError::Invalid {
            key: "kafka.topic_template".to_owned(),
            value: format!("{:?}", k.topic_template),
            reason: format!(
                "kafka.topic_pattern {:?} does not match {:?}, the topic of table {table}",
                k.topic_pattern,
                k.topic_for(table)
            ),
        };
        if let Some(table) = self.policy.include.iter().find(|t| !pattern.is_match(&k.topic_for(t))) {
            return Err(unwatched(table));
        }
        // Templates that cannot be read are reported by `render` and `run`; there is nothing to compare then.
        let templated = crate::sql::known_tables(self).unwrap_or_default();
        if let Some(first) = templated.first()
            && !templated.iter().any(|t| pattern.is_match(&k.topic_for(t)))
        {
            return Err(unwatched(first));
        }
        Ok(())
    }

    /// Settings that are allowed but probably not what was meant, each as one line naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let mut tables: Vec<(String, TablePolicy)> = vec![("policy".to_owned(), self.policy.for_table(""))];
        tables.extend(
            self.policy
                .tables
                .keys()
                .map(|name| (format!("policy.tables.{name}"), self.policy.for_table(name))),
        );
        for (key, effective) in tables {
            if effective.cooldown > effective.idle_timeout {
                warnings.push(format!(
                    "{key}: cooldown ({}) is longer than idle_timeout ({}): a job stopped for being idle cannot \
                     start again until the cooldown since its last start has passed, so changes in between wait \
                     up to {} before their job starts",
                    humantime::format_duration(effective.cooldown),
                    humantime::format_duration(effective.idle_timeout),
                    humantime::format_duration(effective.cooldown.saturating_sub(effective.idle_timeout)),
                ));
            }
        }
        warnings
    }

    /// The resolved configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, string, list or table, so serialization cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

const TABLE_NAME_RULE: &str = "not a valid table name (letters, digits and _, not starting with a digit, at most 63)";

/// A Postgres-style unquoted identifier, which is what Debezium topics and Flink job names carry.
pub fn is_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// Collapses a multi-line error (regex errors draw a caret diagram) to its last meaningful line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(message)
        .trim_start_matches("error: ")
        .to_owned()
}

/// Renders figment's error as `key: what is wrong (from <source>)`, one line per error.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let mut path = e.path.clone();
            let kind = match &e.kind {
                figment::error::Kind::UnknownField(field, expected) => {
                    // figment usually ends the path with the field already; make sure it is named once.
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                    format!("unknown key (expected one of: {})", expected.join(", "))
                }
                other => other.to_string(),
            };
            let key = path.join(".");
            let source = e.metadata.as_ref().map(|md| match &md.source {
                Some(figment::Source::File(file)) => format!("file {}", file.display()),
                _ if md.name.contains("environment") => {
                    format!("environment variable {ENV_PREFIX}{}", path.join("__").to_uppercase())
                }
                _ => md.name.to_string(),
            });
            match source {
                Some(source) if !key.is_empty() => format!("{key}: {kind} (from {source})"),
                Some(source) => format!("{kind} (from {source})"),
                None => kind,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `CDC_` environment variables with every value kept as its text.
///
/// figment's own [`Env`] parses each value as TOML-ish data, so `007` became the number 7 and `[x` an error, even
/// for a key that is a string (a token, a user name). Here every value stays a string; the typed deserializers
/// ([`Figment::extract_lossy`], [`whole_u32`], [`list`], humantime) parse it where the key is not a string.
struct EnvText(Env);

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in self.0.iter() {
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert_nested(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at the dotted `path` of `dict`, creating the tables on the way.
fn insert_nested(dict: &mut Dict, path: &[&str], value: String) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), Value::from(value));
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// Parses the file once to report a syntax error on one line (the TOML parser draws a caret diagram).
fn check_syntax(path: &Path) -> Result<(), ConfigError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        // Unreadable files are reported by figment with the reason.
        return Ok(());
    };
    match toml::from_str::<toml::Table>(&text) {
        Ok(_) => Ok(()),
        Err(e) => {
            let offset = e.span().map_or(0, |span| span.start).min(text.len());
            let before = text.get(..offset).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: e
                    .message()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        }
    }
}

/// A list: `["a", "b"]` in TOML; in an environment variable either the same bracketed form or `a,b`.
fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Vec<T>, D::Error> {
    let value = match <Value as Deserialize>::deserialize(deserializer)? {
        Value::String(_, text) if text.trim_start().starts_with('[') => {
            text.parse::<Value>().map_err(serde::de::Error::custom)?
        }
        Value::String(_, text) => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        other => other,
    };
    Vec::<T>::deserialize(&value).map_err(|e| serde::de::Error::custom(e.kind))
}

/// [`list`] for an optional key.
fn optional_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Option<Vec<T>>, D::Error> {
    list(deserializer).map(Some)
}

/// A socket address; the error shows the value and the expected form.
fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = lenient_string(deserializer)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected ip:port such as 0.0.0.0:8080 or [::]:8080 (a host name is not accepted), got {text:?}"
        ))
    })
}

/// A `u32`, also when written as a whole float: helm's `toToml` renders every YAML number as a float (`8.0`).
fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
        // Environment values arrive as text.
        Text(String),
    }
    let out_of_range = |shown: String| {
        serde::de::Error::custom(format!("expected a whole number from 0 to {}, got {shown}", u32::MAX))
    };
    let number = match Number::deserialize(deserializer)? {
        Number::Text(text) => {
            let text = text.trim();
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(i), _) => Number::Int(i),
                (_, Ok(f)) if f.is_finite() => Number::Float(f),
                _ => return Err(out_of_range(format!("{text:?}"))),
            }
        }
        number => number,
    };
    match number {
        Number::Int(i) => u32::try_from(i).map_err(|_| out_of_range(i.to_string())),
        Number::Float(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
        Number::Float(f) => Err(out_of_range(f.to_string())),
        Number::Text(text) => Err(out_of_range(text)),
    }
}

/// Accepts any scalar as a string: environment values like `12345` reach serde as numbers.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        Uint(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(deserializer)? {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}

#[cfg(test)]
// figment's Jail closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail, toml: Option<&str>) -> Result<Config, ConfigError> {
        match toml {
            Some(text) => {
                jail.create_file("c.toml", text)
                    .map_err(|e| ConfigError::Parse(e.to_string()))?;
                Config::load(Some(Path::new("c.toml")))
            }
            None => Config::load(None),
        }
    }

    #[test]
    fn defaults_match_the_reference_system() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).map_err(|e| e.to_string())?;
            assert_eq!(c.policy.cooldown, Duration::from_secs(30));
            assert_eq!(c.policy.idle_timeout, Duration::from_secs(60));
            assert_eq!(c.kafka.poll_interval, Duration::from_secs(1));
            let topics = c.kafka.topic_regex().map_err(|e| e.to_string())?;
            assert!(topics.is_match("university-server.public.faculty"));
            assert!(!topics.is_match("__debezium-heartbeat.university-server"));
            assert_eq!(c.server.listen.port(), 8080);
            Ok(())
        });
    }

    #[test]
    fn env_beats_file_beats_defaults() {
        Jail::expect_with(|jail| {
            let file = "[kafka]\npoll_interval = \"2s\"\ntopic_refresh = \"20s\"\n";
            let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.poll_interval, Duration::from_secs(2));
            jail.set_env("CDC_KAFKA__POLL_INTERVAL", "250ms");
            jail.set_env("CDC_KAFKA__BOOTSTRAP", "a:1, b:2");
            jail.set_env("CDC_SERVER__TOKEN", "12345");
            jail.set_env("CDC_CONFIG", "ignored-by-figment.toml");
            let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.poll_interval, Duration::from_millis(250));
            assert_eq!(c.kafka.topic_refresh, Duration::from_secs(20));
            assert_eq!(c.kafka.request_timeout, Duration::from_secs(5));
            assert_eq!(c.kafka.bootstrap, vec!["a:1", "b:2"]);
            assert_eq!(c.server.token.as_ref().map(Secret::expose), Some("12345"));
            Ok(())
        });
    }

    #[test]
    fn per_table_overrides_merge_into_defaults() {
        Jail::expect_with(|jail| {
            let file =
                "[policy]\ncooldown = \"5s\"\n[policy.tables.faculty]\nidle_timeout = \"2m\"\noperations = [\"d\"]\n";
            let c = load_in(jail, Some(file)).map_err(|e| e.to_string())?;
            let faculty = c.policy.for_table("faculty");
            assert_eq!(faculty.cooldown, Duration::from_secs(5));
            assert_eq!(faculty.idle_timeout, Duration::from_secs(120));
            assert_eq!(faculty.operations, vec![Op::Delete]);
            let program = c.policy.for_table("program");
            assert_eq!(program.idle_timeout, Duration::from_secs(60));
            assert_eq!(program.operations, Op::ALL.to_vec());
            Ok(())
        });
    }

    #[test]
    fn include_and_exclude_decide_what_is_managed() {
        let mut p = PolicyConfig::default();
        assert!(p.manages("anything"));
        p.include = vec!["faculty".into(), "program".into()];
        p.exclude = vec!["program".into()];
        assert!(p.manages("faculty"));
        assert!(!p.manages("program"));
        assert!(!p.manages("students"));
    }

    fn error_of(toml: Option<&str>, env: &[(&str, &str)]) -> String {
        let mut message = String::new();
        Jail::expect_with(|jail| {
            for (k, v) in env {
                jail.set_env(k, v);
            }
            message = match load_in(jail, toml) {
                Ok(_) => "no error".to_owned(),
                Err(e) => e.to_string(),
            };
            Ok(())
        });
        assert!(!message.contains('\n'), "error must be one line: {message}");
        message
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let m = error_of(Some("[kafka]\npoll_intervall = \"1s\"\n"), &[]);
        assert!(m.contains("kafka.poll_intervall: unknown key"), "{m}");
        let m = error_of(None, &[("CDC_FLINK__NOPE", "1")]);
        assert!(m.contains("flink.nope: unknown key"), "{m}");
        assert!(m.contains("CDC_FLINK__NOPE"), "{m}");
        let m = error_of(Some("[policy.tables.faculty]\ncooldwn = \"1s\"\n"), &[]);
        assert!(m.contains("policy.tables.faculty.cooldwn: unknown key"), "{m}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let m = error_of(None, &[("CDC_KAFKA__POLL_INTERVAL", "soon")]);
        assert!(m.contains("kafka.poll_interval"), "{m}");
        assert!(m.contains("soon"), "{m}");
        let m = error_of(Some("[kafka]\ntopic_pattern = \"(\"\n"), &[]);
        assert!(m.starts_with("kafka.topic_pattern:"), "{m}");
        assert!(m.contains("\"(\""), "{m}");
        let m = error_of(Some("[kafka]\nbootstrap = []\n"), &[]);
        assert!(m.starts_with("kafka.bootstrap: needs at least one"), "{m}");
        let m = error_of(None, &[("CDC_KAFKA__BOOTSTRAP", ",")]);
        assert!(m.starts_with("kafka.bootstrap: needs at least one"), "{m}");
        let m = error_of(Some("[kafka]\nbootstrap = [\"nohost\"]\n"), &[]);
        assert!(m.starts_with("kafka.bootstrap: expected host:port"), "{m}");
        let m = error_of(Some("[policy.tables.\"bad-name\"]\npaused = true\n"), &[]);
        assert!(m.starts_with("policy.tables.bad-name: not a valid table name"), "{m}");
        let m = error_of(Some("[policy]\ninclude = [\"1abc\"]\n"), &[]);
        assert!(m.contains("policy.include") && m.contains("1abc"), "{m}");
        let m = error_of(Some("[policy]\noperations = [\"x\"]\n"), &[]);
        assert!(m.contains("policy.operations"), "{m}");
        let m = error_of(Some("[flink]\nsql_gateway_url = \"ftp://x\"\n"), &[]);
        assert!(m.starts_with("flink.sql_gateway_url: expected an http"), "{m}");
        let m = error_of(Some("[flink]\ncheckpoint_interval = \"0s\"\n"), &[]);
        assert!(
            m.starts_with("flink.checkpoint_interval: must be greater than 0"),
            "{m}"
        );
        let m = error_of(Some("[flink]\nstarts_per_minute = 0\n"), &[]);
        assert!(m.starts_with("flink.starts_per_minute: must be at least 1"), "{m}");
        let m = error_of(Some("[kafka.tls]\nca_file = \"/nonexistent/ca.pem\"\n"), &[]);
        assert!(m.contains("kafka.tls.ca_file: file not found"), "{m}");
        let m = error_of(Some("[server]\nlisten = \"nowhere\"\n"), &[]);
        assert!(m.contains("server.listen"), "{m}");
    }

    #[test]
    fn job_template_keys_have_defaults_and_are_validated() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).map_err(|e| e.to_string())?;
            assert_eq!(c.kafka.topic_for("faculty"), "university-server.public.faculty");
            assert_eq!(c.flink.sql_dir, None);
            assert_eq!(c.flink.checkpoint_interval, Duration::from_secs(10));
            assert_eq!(c.iceberg.database, "university");
            assert!(c.iceberg.s3_path_style_access);
            jail.set_env("CDC_ICEBERG__CATALOG_URI", "http://polaris:8181/api/catalog");
            jail.set_env("CDC_KAFKA__TOPIC_TEMPLATE", "srv.{table}");
            jail.set_env("CDC_KAFKA__TOPIC_PATTERN", r"^srv\..+$");
            let c = load_in(jail, None).map_err(|e| e.to_string())?;
            assert_eq!(c.iceberg.catalog_uri, "http://polaris:8181/api/catalog");
            assert_eq!(c.kafka.topic_for("room"), "srv.room");
            Ok(())
        });
        let m = error_of(Some("[kafka]\ntopic_template = \"fixed\"\n"), &[]);
        assert!(m.starts_with("kafka.topic_template: must contain {table}"), "{m}");
        let m = error_of(Some("[kafka]\ntopic_template = \"srv.{table}\"\n"), &[]);
        assert!(
            m.starts_with("kafka.topic_template: kafka.topic_pattern ") && m.contains("\"srv.class\""),
            "{m}"
        );
        let m = error_of(
            Some(
                "[kafka]\ntopic_pattern = '^u\\.(faculty|program)$'\ntopic_template = \"u.{table}\"\n[policy]\ninclude = [\"faculty\", \"room\"]\n",
            ),
            &[],
        );
        assert!(
            m.starts_with("kafka.topic_template:") && m.contains("table room"),
            "{m}"
        );
        let m = error_of(Some("[kafka]\ntopic_template = \"{table}.{table}\"\n"), &[]);
        assert!(m.starts_with("kafka.topic_template: must contain {table} once"), "{m}");
        let m = error_of(Some("[kafka]\nrouted_topics = [\"a(\"]\n"), &[]);
        assert!(m.starts_with("kafka.routed_topics:") && m.contains("a("), "{m}");
        let m = error_of(None, &[("CDC_KAFKA__MAX_TABLES", "0")]);
        assert!(m.starts_with("kafka.max_tables: must be at least 1"), "{m}");
        let m = error_of(Some("[flink]\nsql_dir = \"/nonexistent/sql\"\n"), &[]);
        assert!(m.starts_with("flink.sql_dir: not a directory"), "{m}");
        let m = error_of(None, &[("CDC_FLINK__CHECKPOINT_INTERVAL", "0s")]);
        assert!(
            m.starts_with("flink.checkpoint_interval: must be greater than 0"),
            "{m}"
        );
        let m = error_of(None, &[("CDC_ICEBERG__CATALOG_URI", "polaris:8181")]);
        assert!(m.starts_with("iceberg.catalog_uri:"), "{m}");
        let m = error_of(None, &[("CDC_ICEBERG__DATABASE", "uni-versity")]);
        assert!(m.starts_with("iceberg.database: not a valid database name"), "{m}");
        let m = error_of(None, &[("CDC_ICEBERG__WAREHOUSE", " ")]);
        assert!(m.starts_with("iceberg.warehouse: must not be empty"), "{m}");
        let m = error_of(None, &[("CDC_ICEBERG__BUCKET", "x")]);
        assert!(m.contains("iceberg.bucket: unknown key"), "{m}");
    }

    #[test]
    fn sink_is_iceberg_by_default_and_jdbc_keys_are_checked_only_for_jdbc() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None).map_err(|e| e.to_string())?;
            assert_eq!(c.sink.kind, SinkKind::Iceberg);
            assert_eq!(c.sink.jdbc.url, "jdbc:postgresql://127.0.0.1:5432/university");
            assert_eq!(c.sink.jdbc.table_for("room"), "room");
            assert_eq!(c.sink.jdbc.username, "postgres");
            // Unused JDBC keys are not validated while the sink is Iceberg.
            jail.set_env("CDC_SINK__JDBC__URL", "nonsense");
            assert!(load_in(jail, None).is_ok());
            jail.clear_env();
            let c = load_in(
                jail,
                Some(
                    "[sink]\nkind = \"jdbc\"\n[sink.jdbc]\nurl = \"jdbc:postgresql://db:5433/lake\"\n\
                     table_name = \"cdc.{table}_copy\"\nusername = \"writer\"\n",
                ),
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.sink.kind, SinkKind::Jdbc);
            assert_eq!(c.sink.jdbc.url, "jdbc:postgresql://db:5433/lake");
            assert_eq!(c.sink.jdbc.table_for("room"), "cdc.room_copy");
            assert_eq!(c.sink.jdbc.username, "writer");
            Ok(())
        });
        let jdbc = [("CDC_SINK__KIND", "jdbc")];
        let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__URL", "postgresql://db/x")]);
        assert!(m.starts_with("sink.jdbc.url: expected a jdbc: URL"), "{m}");
        let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__TABLE_NAME", "fixed")]);
        assert!(m.starts_with("sink.jdbc.table_name: must contain {table}"), "{m}");
        let m = error_of(None, &[jdbc[0], ("CDC_SINK__JDBC__USERNAME", " ")]);
        assert!(m.starts_with("sink.jdbc.username: must not be empty"), "{m}");
        let m = error_of(None, &[("CDC_SINK__KIND", "kafka")]);
        assert!(m.contains("sink.kind") && m.contains("kafka"), "{m}");
        let m = error_of(None, &[("CDC_SINK__JDBC__PASSWORD", "x")]);
        assert!(m.contains("sink.jdbc.password: unknown key"), "{m}");
    }

    #[test]
    fn check_output_redacts_secrets_and_loads_back() {
        let mut c = Config::default();
        c.server.token = Some(Secret::new("hunter2"));
        c.kafka.sasl = Some(SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username: "u".into(),
            password: Secret::new("s3cret"),
        });
        let text = c.to_toml();
        assert!(!text.contains("hunter2") && !text.contains("s3cret"), "{text}");
        assert!(text.contains("<redacted>"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let back: Config = toml::from_str(&text).expect("check output is valid config");
        assert_eq!(back.kafka.poll_interval, c.kafka.poll_interval);
        assert_eq!(back.policy.operations, c.policy.operations);
    }

    #[test]
    fn whole_floats_are_integers_but_fractions_are_not() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, Some("[flink]\nmax_concurrent_jobs = 8.0\n")).map_err(|e| e.to_string())?;
            assert_eq!(c.flink.max_concurrent_jobs, 8);
            Ok(())
        });
        let m = error_of(Some("[flink]\nmax_concurrent_jobs = 8.5\n"), &[]);
        assert!(m.contains("flink.max_concurrent_jobs") && m.contains("8.5"), "{m}");
        let m = error_of(Some("[kafka]\nsample_records = -1\n"), &[]);
        assert!(m.contains("kafka.sample_records") && m.contains("-1"), "{m}");
    }

    #[test]
    fn the_topic_template_maps_topics_back_to_tables() {
        let mut k = KafkaConfig::default();
        assert_eq!(k.table_of_topic("university-server.public.faculty"), Some("faculty"));
        for none in [
            "university-server.public.",
            "university-server.public.a.b",
            "university-server.public.bad-name",
            "other.public.faculty",
            "university-server.transaction",
        ] {
            assert_eq!(k.table_of_topic(none), None, "{none}");
        }
        k.topic_template = "cdc.{table}.v1".into();
        assert_eq!(k.table_of_topic("cdc.room.v1"), Some("room"));
        assert_eq!(k.table_of_topic(&k.topic_for("student_fee")), Some("student_fee"));
        assert_eq!(k.table_of_topic("cdc.room.v2"), None);
    }

    #[test]
    fn table_names() {
        for good in ["faculty", "student_detail", "_x", "T1"] {
            assert!(is_table_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a b", "é", &"x".repeat(64)] {
            assert!(!is_table_name(bad), "{bad}");
        }
    }
}
