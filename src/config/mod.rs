//! Layered configuration: built-in defaults < TOML file < `CDC_`-prefixed environment variables.
//!
//! One file per section ([`kafka`], [`policy`], [`flink`], [`server`], [`iceberg`], [`sink`], [`leader_election`]), each a [`Section`]
//! that checks its own values; [`Config`] adds the rules that span sections. Every section denies unknown keys,
//! so a typo is an error naming the key instead of a silently ignored setting. Values that deserialize but make
//! no sense (an empty bootstrap list, a regex that does not compile, a table name that is not an identifier) are
//! caught by the section's [`Section::validate`], which names the key and the bad value on one line.
//!
//! Loading reports every mistake at once ([`ConfigErrors`]): each section is read on its own, so a key that does
//! not parse in one section does not hide the mistakes of another, and every section that parses is checked.
//!
//! Owns every setting, its default and its validation, and [`REDACTED`], how a secret is shown. May import only
//! [`crate::model`] (table names, operations, the topic naming rule) and [`crate::logging`]; every other layer
//! imports it.

mod check;
mod de;
mod env;
mod file;
pub mod flink;
pub mod iceberg;
pub mod kafka;
pub mod leader_election;
pub mod policy;
mod secret;
pub mod server;
mod shown_url;
pub mod sink;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::Dict;
use figment::{Figment, error::Kind};
use regex::Regex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use env::ENV_PREFIX;
pub use file::MAX_CONFIG_BYTES;
pub use flink::{FlinkConfig, LauncherKind};
pub use iceberg::IcebergConfig;
pub use kafka::{
    AwsCredentialSource, AwsMskIamConfig, JobsClient, JobsTls, JobsTlsConfig, KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET,
    KAFKA_JOBS_SASL_PASSWORD, KAFKA_JOBS_TLS_KEY_PASSWORD, KAFKA_SASL_OAUTH_CLIENT_SECRET, KAFKA_SASL_PASSWORD,
    KafkaConfig, KafkaJobsConfig, OauthConfig, SaslConfig, SaslMechanism, SaslOrigin, TlsConfig,
};
pub use leader_election::LeaderElectionConfig;
pub use policy::{PolicyConfig, TableOverrides, TablePolicy};
pub use secret::{REDACTED, Secret};
pub use server::ServerConfig;
pub use shown_url::{link_url, redact_url};
pub use sink::{JdbcSinkConfig, SinkConfig, SinkKind};

use env::EnvText;
use file::ConfigFile;

/// Why a configuration could not be loaded. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` / `CDC_CONFIG` does not exist.
    #[error("config file not found: {}", .0.display())]
    FileNotFound(PathBuf),
    /// The path named by `--config` / `CDC_CONFIG` is a directory, not a file.
    #[error("config file {} is a directory, not a file", .0.display())]
    IsDirectory(PathBuf),
    /// The path is neither a file nor a directory: a device, a pipe or a socket.
    #[error("config file {} is not a regular file (a device, pipe or socket)", .0.display())]
    NotAFile(PathBuf),
    /// The file exists but cannot be read.
    #[error("cannot read config file {}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is longer than [`MAX_CONFIG_BYTES`].
    #[error("config file {} is larger than {limit} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, [`MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("config file {} is not valid UTF-8 (at byte {offset})", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// A `CDC_` environment variable's name or value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUtf8 {
        /// The variable's name, invalid bytes replaced.
        name: String,
    },
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
    #[error("{key}")]
    Parse {
        /// Dotted path of the key, e.g. `kafka.poll_interval`; `configuration` when the whole is at fault.
        key: String,
        /// What is wrong with it, and where its value came from.
        #[source]
        source: ParseError,
    },
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
    /// Whether replicas compete for a Kubernetes Lease, so that only one acts.
    pub leader_election: LeaderElectionConfig,
}

/// The top-level keys, in [`Config`]'s order (as an unknown key's error lists them).
const SECTIONS: &[&str] = &[
    "kafka",
    "policy",
    "flink",
    "server",
    "iceberg",
    "sink",
    "leader_election",
];

/// Every reason a configuration could not be loaded, in the order found; never empty.
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, each naming its key (or the file).
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    /// `Ok` when nothing was found.
    fn check(errors: Vec<ConfigError>) -> Result<(), ConfigErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// What figment found wrong with one key (`unknown key (expected one of: ...)`, `invalid type: ...`), and where
/// the value came from (`(from file ...)`, `(from environment variable CDC_...)`); the key is the
/// [`ConfigError::Parse`] it causes.
#[derive(Debug)]
pub struct ParseError {
    /// Boxed: figment's error is large, and every configuration error would carry its size.
    error: Box<figment::Error>,
    origin: Option<String>,
    /// Why the key is gone, when it is one of [`REMOVED_KEYS`].
    removed: Option<&'static str>,
}

impl ParseError {
    /// figment's error.
    pub fn figment(&self) -> &figment::Error {
        &self.error
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error.kind, self.removed) {
            (Kind::UnknownField(..), Some(why)) => write!(f, "removed: {why}; delete it")?,
            (Kind::UnknownField(_, expected), None) => {
                write!(f, "unknown key (expected one of: {})", expected.join(", "))?
            }
            (other, _) => write!(f, "{other}")?,
        }
        match &self.origin {
            Some(origin) => write!(f, " (from {origin})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// One line: the errors separated by `; ` (the CLI prints one line per error instead, from [`ConfigErrors::iter`]).
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", crate::logging::chain(error))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.first().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A section of the configuration file: its table's key, and the checks of its own values.
pub trait Section: DeserializeOwned + Default {
    /// The section's top-level key, e.g. `kafka`.
    const KEY: &'static str;

    /// Pushes one error per unacceptable value, each naming its dotted key (e.g. `kafka.topic_pattern`).
    fn validate(&self, errors: &mut Vec<ConfigError>);
}

impl Config {
    /// Loads defaults, then `file` (which must exist when given), then the `CDC_` environment, and validates.
    /// Every mistake is reported, not only the first.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            let file = ConfigFile::read(path)?;
            check_syntax(file.path(), file.text())?;
            figment = figment.merge(file);
        }
        Config::extract(&figment.merge(EnvText::new()?))
    }

    /// Reads each section on its own and checks each one that parses; the rules across sections are checked once
    /// every section is valid on its own (a broken section would only make them report its mistake again).
    fn extract(figment: &Figment) -> Result<Config, ConfigErrors> {
        let mut errors = unknown_sections(figment)?;
        let kafka = section::<KafkaConfig>(figment, &mut errors);
        let policy = section::<PolicyConfig>(figment, &mut errors);
        let flink = section::<FlinkConfig>(figment, &mut errors);
        let server = section::<ServerConfig>(figment, &mut errors);
        let iceberg = section::<IcebergConfig>(figment, &mut errors);
        let sink = section::<SinkConfig>(figment, &mut errors);
        let leader_election = section::<LeaderElectionConfig>(figment, &mut errors);
        if let (Some(kafka), Some(policy), Some(flink), Some(server), Some(iceberg), Some(sink), Some(leader_election)) =
            (kafka, policy, flink, server, iceberg, sink, leader_election)
            && errors.is_empty()
        {
            let config = Config {
                kafka,
                policy,
                flink,
                server,
                iceberg,
                sink,
                leader_election,
            };
            config.validate_across(&mut errors);
            ConfigErrors::check(errors)?;
            return Ok(config);
        }
        Err(ConfigErrors(errors))
    }

    /// Checks what deserialization cannot: non-empty lists, compilable patterns, valid identifiers, URLs; every
    /// section, then the rules across sections.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        self.kafka.validate(&mut errors);
        self.policy.validate(&mut errors);
        self.flink.validate(&mut errors);
        self.server.validate(&mut errors);
        self.iceberg.validate(&mut errors);
        self.sink.validate(&mut errors);
        self.leader_election.validate(&mut errors);
        if errors.is_empty() {
            self.validate_across(&mut errors);
        }
        ConfigErrors::check(errors)
    }

    /// `kafka.topic_pattern` must watch the topics `kafka.topic_template` names: the topic of every table in
    /// `policy.include`; otherwise no change of those tables is ever seen. (That it watches a table with a SQL
    /// template is [`Config::check_templated_topics`], since the templates are read after the configuration.)
    fn validate_across(&self, errors: &mut Vec<ConfigError>) {
        let k = &self.kafka;
        // The pattern compiled in the section's checks; a failure there was reported there.
        let Ok(pattern) = Regex::new(&k.topic_pattern) else {
            return;
        };
        if let Some(table) = self.policy.include.iter().find(|t| !pattern.is_match(&k.topic_for(t))) {
            errors.push(self.unwatched(table));
        }
    }

    /// `kafka.topic_pattern` must watch the topic of at least one of the `templated` tables (those with a SQL
    /// template, in `flink.sql_dir` or built in, which the caller read with this configuration); otherwise no
    /// change of any table the sidecar could start is ever seen. Checked by every command that loads the
    /// configuration, right after [`Config::load`].
    pub fn check_templated_topics(&self, templated: &[String]) -> Result<(), ConfigErrors> {
        let k = &self.kafka;
        let Ok(pattern) = Regex::new(&k.topic_pattern) else {
            return Ok(());
        };
        match templated.first() {
            Some(first) if !templated.iter().any(|t| pattern.is_match(&k.topic_for(t))) => {
                Err(self.unwatched(first).into())
            }
            _ => Ok(()),
        }
    }

    /// The error for a `table` whose topic `kafka.topic_pattern` does not match.
    fn unwatched(&self, table: &str) -> ConfigError {
        let k = &self.kafka;
        let reason = format!(
            "kafka.topic_pattern {:?} does not match {:?}, the topic of table {table}",
            k.topic_pattern,
            k.topic_for(table)
        );
        check::invalid("kafka.topic_template", &k.topic_template, reason)
    }

    /// Settings that are allowed but probably not what was meant, each as one line naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.kafka.warnings();
        warnings.extend(self.policy.warnings());
        warnings
    }

    /// The resolved configuration as TOML, secrets redacted. Unset optional keys are left out (TOML has no null,
    /// so the serializer skips a `None` field).
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, string, list or table, so serialization cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

/// Keys that were removed, and why. Like any key the sidecar does not act on they are refused (a setting that
/// silently does nothing is worse than a one-line fix), but the error says the key is gone rather than unknown.
const REMOVED_KEYS: &[(&str, &str)] = &[(
    "kafka.batch_watermarks",
    "watermarks are always read with one ListOffsets request per broker, as `true` did",
)];

/// Top-level keys that name no section, as errors; `Err` when the layers cannot be merged at all.
fn unknown_sections(figment: &Figment) -> Result<Vec<ConfigError>, ConfigErrors> {
    let top: Dict = figment.extract_lossy().map_err(parse_errors)?;
    let errors = top.keys().filter(|key| !SECTIONS.contains(&key.as_str())).map(|key| {
        let mut error = figment::Error::from(Kind::UnknownField(key.clone(), SECTIONS));
        error.metadata = figment.find_metadata(key).cloned();
        parse_error(error)
    });
    Ok(errors.collect())
}

/// One section, or `None` with its parse errors pushed; a section that parses is checked at once.
fn section<T: Section>(figment: &Figment, errors: &mut Vec<ConfigError>) -> Option<T> {
    if !figment.contains(T::KEY) {
        return Some(T::default());
    }
    // Lossy: a `true` or `8` that arrives as text (every environment value does) is a bool or a number where
    // the key is one; where the key is a string the text is kept as written.
    match figment.extract_inner_lossy::<T>(T::KEY) {
        Ok(section) => {
            section.validate(errors);
            Some(section)
        }
        Err(mut error) => {
            // figment appends the section to the path within it; the key reads section first.
            error.path.pop();
            error.path.insert(0, T::KEY.to_owned());
            errors.extend(parse_errors(error).0);
            None
        }
    }
}

/// figment's errors, one [`ConfigError::Parse`] each.
fn parse_errors(error: figment::Error) -> ConfigErrors {
    ConfigErrors(error.into_iter().map(parse_error).collect())
}

/// One of figment's errors as [`ConfigError::Parse`]: the key it is about, what is wrong, and the value's layer.
fn parse_error(error: figment::Error) -> ConfigError {
    let mut path = error.path.clone();
    // figment usually ends the path with an unknown field already; make sure it is named once.
    if let Kind::UnknownField(field, _) = &error.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    let origin = error.metadata.as_ref().map(|md| match &md.source {
        Some(figment::Source::File(file)) => format!("file {}", file.display()),
        _ if md.name.contains("environment") => {
            format!("environment variable {ENV_PREFIX}{}", path.join("__").to_uppercase())
        }
        _ => md.name.to_string(),
    });
    let key = if path.is_empty() {
        "configuration".to_owned()
    } else {
        path.join(".")
    };
    let removed = match &error.kind {
        Kind::UnknownField(..) => REMOVED_KEYS.iter().find(|(k, _)| *k == key).map(|(_, why)| *why),
        _ => None,
    };
    ConfigError::Parse {
        key,
        source: ParseError {
            error: Box::new(error),
            origin,
            removed,
        },
    }
}

/// Parses the file's `text` once to report a syntax error on one line (the TOML parser draws a caret diagram).
fn check_syntax(path: &Path, text: &str) -> Result<(), ConfigError> {
    match toml::from_str::<toml::Table>(text) {
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
