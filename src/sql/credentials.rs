//! The credentials the templates may use: read from the environment when rendering, never from files or the
//! configuration, and masked wherever a statement is shown or logged.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{
    KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET, KAFKA_JOBS_SASL_PASSWORD, KAFKA_JOBS_TLS_KEY_PASSWORD,
    KAFKA_SASL_OAUTH_CLIENT_SECRET, KAFKA_SASL_PASSWORD,
};
use crate::config::{KafkaConfig, REDACTED, Secret, SinkKind};

use super::SqlError;

/// Template variables that carry credentials, and the environment variable each one is read from.
pub const CREDENTIALS: [(&str, &str); 5] = [
    ("polaris_client_id", "POLARIS_CLIENT_ID"),
    ("polaris_client_secret", "POLARIS_CLIENT_SECRET"),
    ("s3_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("s3_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("jdbc_password", "SINK_JDBC_PASSWORD"),
];

/// The sink whose statements use a credential: the JDBC password is the JDBC sink's, the catalog and S3
/// credentials are Iceberg's. Only the configured sink's credentials are required.
pub fn sink_of(variable: &str) -> SinkKind {
    if variable == "SINK_JDBC_PASSWORD" {
        SinkKind::Jdbc
    } else {
        SinkKind::Iceberg
    }
}

/// The environment variables of the `[kafka]` secrets the jobs' source options may carry (the sidecar's SASL
/// password, the jobs' own, the jobs' key password): taken from the configuration, where those variables put them,
/// rather than read here. No placeholder names them; only `{{ source_options }}` carries them.
pub const KAFKA_SECRETS: [&str; 5] = [
    KAFKA_SASL_PASSWORD,
    KAFKA_SASL_OAUTH_CLIENT_SECRET,
    KAFKA_JOBS_SASL_PASSWORD,
    KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET,
    KAFKA_JOBS_TLS_KEY_PASSWORD,
];

/// Credential values for the templates, looked up by environment variable name.
#[derive(Clone, Default)]
pub struct Credentials {
    /// By environment variable: those of [`CREDENTIALS`] and of [`KAFKA_SECRETS`].
    values: BTreeMap<&'static str, Secret>,
    /// Variables set to a value that is not UTF-8: reported as such rather than as unset.
    not_utf8: BTreeSet<&'static str>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which credentials are present is useful; their values never appear.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Credentials {
    /// Reads the variables of [`CREDENTIALS`] from the process environment, and takes the secrets of
    /// [`KAFKA_SECRETS`] from `kafka` (where their variables or the file have put them), so that the jobs get them
    /// and every redaction masks them.
    pub fn from_env(kafka: &KafkaConfig) -> Self {
        let mut credentials = Self::from_lookup(|name| std::env::var(name).ok());
        for (variable, secret) in kafka.job_secrets() {
            credentials = credentials.with_kafka_secret(variable, secret.clone());
        }
        credentials.not_utf8 = CREDENTIALS
            .iter()
            .map(|&(_, variable)| variable)
            .filter(|variable| matches!(std::env::var(variable), Err(std::env::VarError::NotUnicode(_))))
            .collect();
        credentials
    }

    /// Reads the variables of [`CREDENTIALS`] through `lookup` (tests, or another source of secrets).
    /// An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let values = CREDENTIALS
            .iter()
            .filter_map(|&(_, variable)| {
                lookup(variable)
                    .filter(|v| !v.is_empty())
                    .map(|v| (variable, Secret::new(v)))
            })
            .collect();
        Self {
            values,
            not_utf8: BTreeSet::new(),
        }
    }

    /// These credentials with `password` as the sidecar's Kafka SASL password (tests, or another source of
    /// secrets).
    pub fn with_kafka_password(self, password: Secret) -> Self {
        self.with_kafka_secret(KAFKA_SASL_PASSWORD, password)
    }

    /// These credentials with `secret` as the `[kafka]` secret set by `variable`, one of [`KAFKA_SECRETS`] (tests,
    /// or another source of secrets); an empty one counts as unset.
    pub fn with_kafka_secret(mut self, variable: &'static str, secret: Secret) -> Self {
        if !secret.expose().is_empty() {
            self.values.insert(variable, secret);
        }
        self
    }

    /// Every credential as [`REDACTED`]: statements rendered with these can be shown or logged, and a launcher
    /// that submits nothing (dry-run) needs no real credentials at all.
    pub fn redacted() -> Self {
        KAFKA_SECRETS.iter().fold(
            Self::from_lookup(|_| Some(REDACTED.to_owned())),
            |credentials, &variable| credentials.with_kafka_secret(variable, Secret::new(REDACTED)),
        )
    }

    /// `text` with every credential value replaced by [`REDACTED`], as set and in every escaped form a
    /// statement carries it (a SQL literal, a JAAS value, a JAAS value in a SQL literal): for text that may echo
    /// a statement back, such as Flink's error messages.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.values.values().map(Secret::expose).filter(|&s| s != REDACTED) {
            let jaas = jaas_escape(secret);
            let mut forms = vec![sql_escape(&jaas), jaas, sql_escape(secret), secret.to_owned()];
            // Longest first, so that a form containing another is masked whole rather than leaving its escapes.
            forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
            forms.dedup();
            for form in forms {
                if text.contains(&form) {
                    text = text.replace(&form, REDACTED);
                }
            }
        }
        text
    }

    /// The value of the credential read from environment variable `variable`, if set.
    pub(super) fn get(&self, variable: &str) -> Option<&str> {
        self.values.get(variable).map(Secret::expose)
    }

    /// Whether `variable` is set to a value that is not UTF-8 (and so has no value here).
    pub(super) fn is_not_utf8(&self, variable: &str) -> bool {
        self.not_utf8.contains(variable)
    }

    /// The value behind template placeholder `placeholder`, if set.
    pub(super) fn placeholder(&self, placeholder: &str) -> Option<&str> {
        let &(_, variable) = CREDENTIALS.iter().find(|&&(p, _)| p == placeholder)?;
        self.get(variable)
    }

    pub(super) fn check(&self) -> Result<(), SqlError> {
        // Iceberg splits `credential` at its first ':' into client id and secret.
        if self.get("POLARIS_CLIENT_ID").is_some_and(|id| id.contains(':')) {
            return Err(SqlError::InvalidCredential {
                variable: "POLARIS_CLIENT_ID",
                reason: "must not contain ':'",
            });
        }
        Ok(())
    }
}

/// `value` as a double-quoted JAAS option value. Kafka parses JAAS with Java's `StreamTokenizer`, which ends a
/// quoted value at an unescaped `"` or a line break and reads `\` escapes (`\n`, `\r` among them).
pub(super) fn jaas_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// `value` inside a single-quoted SQL literal.
fn sql_escape(value: &str) -> String {
    value.replace('\'', "''")
}
