//! The credentials the templates may use: read from the environment when rendering, never from files or the
//! configuration, and masked wherever a statement is shown or logged.

use std::collections::{BTreeMap, BTreeSet};

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

/// Where the Kafka SASL password usually comes from, and what a missing one is reported as: the configuration
/// reads it (`kafka.sasl.password`), and the jobs' source options carry it.
pub const KAFKA_SASL_PASSWORD: &str = "CDC_KAFKA__SASL__PASSWORD";

/// Where the Kafka OAUTHBEARER client secret comes from (`kafka.sasl.oauth.client_secret`), and what a missing one
/// is reported as: the jobs' JAAS login carries it, as Kafka's `OAuthBearerLoginCallbackHandler` reads it.
pub const KAFKA_SASL_OAUTH_CLIENT_SECRET: &str = crate::config::kafka::OAUTH_CLIENT_SECRET_ENV;

/// Credential values for the templates, looked up by environment variable name.
#[derive(Clone, Default)]
pub struct Credentials {
    /// By environment variable: those of [`CREDENTIALS`], `kafka.sasl.password` under [`KAFKA_SASL_PASSWORD`] and
    /// `kafka.sasl.oauth.client_secret` under [`KAFKA_SASL_OAUTH_CLIENT_SECRET`] (no placeholder names either; only
    /// the source's options carry them).
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
    /// Reads the variables of [`CREDENTIALS`] from the process environment, and takes the Kafka SASL password
    /// from `kafka` (where `CDC_KAFKA__SASL__PASSWORD` or the file has put it), so that the jobs get it and every
    /// redaction masks it.
    pub fn from_env(kafka: &KafkaConfig) -> Self {
        let mut credentials = Self::from_lookup(|name| std::env::var(name).ok());
        if let Some(sasl) = &kafka.sasl {
            credentials = credentials.with_kafka_password(sasl.password.clone());
            if let Some(oauth) = &sasl.oauth {
                credentials = credentials.with_kafka_client_secret(oauth.client_secret.clone());
            }
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

    /// These credentials with `password` as the Kafka SASL password (tests, or another source of secrets).
    pub fn with_kafka_password(mut self, password: Secret) -> Self {
        if !password.expose().is_empty() {
            self.values.insert(KAFKA_SASL_PASSWORD, password);
        }
        self
    }

    /// These credentials with `secret` as the Kafka OAUTHBEARER client secret (tests, or another source of secrets).
    pub fn with_kafka_client_secret(mut self, secret: Secret) -> Self {
        if !secret.is_empty() {
            self.values.insert(KAFKA_SASL_OAUTH_CLIENT_SECRET, secret);
        }
        self
    }

    /// Every credential as [`REDACTED`]: statements rendered with these can be shown or logged, and a launcher
    /// that submits nothing (dry-run) needs no real credentials at all.
    pub fn redacted() -> Self {
        Self::from_lookup(|_| Some(REDACTED.to_owned()))
            .with_kafka_password(Secret::new(REDACTED))
            .with_kafka_client_secret(Secret::new(REDACTED))
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

    /// The secret the jobs' JAAS login under `kafka` carries, if known: the SASL password, or under OAUTHBEARER
    /// the client secret; and the variable it comes from, which a missing one is reported as.
    pub(super) fn kafka_secret(&self, kafka: &KafkaConfig) -> (&'static str, Option<&str>) {
        let variable = match &kafka.sasl {
            Some(sasl) if !sasl.mechanism.uses_password() => KAFKA_SASL_OAUTH_CLIENT_SECRET,
            _ => KAFKA_SASL_PASSWORD,
        };
        (variable, self.get(variable))
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
