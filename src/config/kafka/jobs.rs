//! The `[kafka.jobs]` section: how the per-table Flink jobs' Kafka client connects, where it differs from the
//! sidecar's own `[kafka]` settings, and [`JobsClient`], the settings the jobs end up with.
//!
//! Every key defaults to the sidecar's setting, so a cluster where the sidecar and the jobs log in alike sets
//! nothing. The keys exist for what differs in practice: the brokers as Flink's TaskManagers reach them, a
//! least-privilege user of the jobs' own (the jobs need Read on their topics and groups, the sidecar Describe and
//! a little Read), and files as Flink sees them. Paths here are never opened by the sidecar: they name files
//! mounted on Flink's side, so they are checked to be absolute, not to exist.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::check::Checks;
use super::super::de::{lenient_string, optional_list};
use super::super::{ConfigError, REDACTED, Secret};
use super::{KafkaConfig, SaslConfig, SaslMechanism, is_host_port};

/// Where `kafka.sasl.password` usually comes from; the jobs' options carry it when they use the sidecar's login.
pub const KAFKA_SASL_PASSWORD: &str = "CDC_KAFKA__SASL__PASSWORD";

/// Where `kafka.jobs.sasl.password` usually comes from.
pub const KAFKA_JOBS_SASL_PASSWORD: &str = "CDC_KAFKA__JOBS__SASL__PASSWORD";

/// Where `kafka.sasl.oauth.client_secret` usually comes from; the jobs' options carry it when they use the
/// sidecar's login.
pub const KAFKA_SASL_OAUTH_CLIENT_SECRET: &str = "CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET";

/// Where `kafka.jobs.sasl.oauth.client_secret` usually comes from.
pub const KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET: &str = "CDC_KAFKA__JOBS__SASL__OAUTH__CLIENT_SECRET";

/// Where `kafka.jobs.tls.key_password` usually comes from.
pub const KAFKA_JOBS_TLS_KEY_PASSWORD: &str = "CDC_KAFKA__JOBS__TLS__KEY_PASSWORD";

/// The `[kafka.jobs]` section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaJobsConfig {
    /// Bootstrap brokers as Flink's TaskManagers reach them; unset means `kafka.bootstrap`.
    #[serde(deserialize_with = "optional_list")]
    pub bootstrap: Option<Vec<String>>,
    /// The jobs' own SASL login, the same keys as `[kafka.sasl]`; unset means the sidecar's.
    pub sasl: Option<SaslConfig>,
    /// The jobs' TLS settings, each key defaulting to `[kafka.tls]`'s.
    pub tls: JobsTlsConfig,
    /// The package prefix of the Kafka client's classes on Flink's class path, written before every
    /// `org.apache.kafka` class the options name (login modules, the login callback handler): empty for the thin
    /// `flink-connector-kafka` with kafka-clients, `org.apache.flink.kafka.shaded.` for the fat
    /// `flink-sql-connector-kafka`, which relocates kafka-clients there.
    #[serde(deserialize_with = "lenient_string")]
    pub client_class_prefix: String,
}

/// The `[kafka.jobs.tls]` section: paths as Flink sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsTlsConfig {
    /// Connect with TLS; unset means `kafka.tls.enabled`.
    pub enabled: Option<bool>,
    /// PEM trust store on Flink's side; unset means `kafka.tls.ca_file` (the same path on both sides).
    pub ca_file: Option<PathBuf>,
    /// PEM file on Flink's side holding the client's private key (PKCS#8) and its certificate chain, for mutual
    /// TLS. Required when the sidecar uses mutual TLS (`kafka.tls.cert_file`) and the jobs use TLS.
    pub keystore_file: Option<PathBuf>,
    /// Password of an encrypted key in `keystore_file`; set it through `CDC_KAFKA__JOBS__TLS__KEY_PASSWORD`.
    pub key_password: Option<Secret>,
}

/// Which table a SASL login was configured in, and so the keys and environment variables of its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslOrigin {
    /// `[kafka.sasl]`, the sidecar's own login.
    Sidecar,
    /// `[kafka.jobs.sasl]`, the jobs' own login.
    Jobs,
}

impl SaslOrigin {
    /// The dotted key of the table, e.g. `kafka.jobs.sasl`.
    pub fn key(self) -> &'static str {
        match self {
            SaslOrigin::Sidecar => "kafka.sasl",
            SaslOrigin::Jobs => "kafka.jobs.sasl",
        }
    }

    /// The environment variable that sets the table's `password`.
    pub fn password_variable(self) -> &'static str {
        match self {
            SaslOrigin::Sidecar => KAFKA_SASL_PASSWORD,
            SaslOrigin::Jobs => KAFKA_JOBS_SASL_PASSWORD,
        }
    }

    /// The environment variable that sets the table's `oauth.client_secret`.
    pub fn client_secret_variable(self) -> &'static str {
        match self {
            SaslOrigin::Sidecar => KAFKA_SASL_OAUTH_CLIENT_SECRET,
            SaslOrigin::Jobs => KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET,
        }
    }

    /// The environment variable of the one secret a login of `mechanism` from this table carries: the password,
    /// the OAUTHBEARER client secret, or none (AWS MSK IAM signs with the pod's own credentials).
    pub fn secret_variable(self, mechanism: SaslMechanism) -> Option<&'static str> {
        match mechanism {
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                Some(self.password_variable())
            }
            SaslMechanism::OAuthBearer => Some(self.client_secret_variable()),
            SaslMechanism::AwsMskIam => None,
        }
    }
}

/// The Kafka client settings of the per-table jobs: `[kafka.jobs]`'s where set, the sidecar's `[kafka]`'s
/// otherwise. The one place those defaults are decided; the jobs' source options are made from it.
#[derive(Debug, Clone, Copy)]
pub struct JobsClient<'a> {
    /// The bootstrap brokers.
    pub bootstrap: &'a [String],
    /// The SASL login, if any, and the table it comes from (its secrets are that table's).
    pub sasl: Option<(SaslOrigin, &'a SaslConfig)>,
    /// TLS, if the jobs use it.
    pub tls: Option<JobsTls<'a>>,
    /// `kafka.jobs.client_class_prefix`: what the Kafka client's class names start with on Flink's class path.
    pub class_prefix: &'a str,
}

/// The jobs' TLS settings.
#[derive(Debug, Clone, Copy)]
pub struct JobsTls<'a> {
    /// PEM trust store as Flink sees it; `None` means the JVM's default trust store.
    pub ca_file: Option<&'a Path>,
    /// PEM file with the client key and certificate chain as Flink sees it, for mutual TLS.
    pub keystore_file: Option<&'a Path>,
    /// Whether the key is encrypted (`kafka.jobs.tls.key_password` is set; the value is a credential).
    pub key_password: bool,
}

impl KafkaConfig {
    /// The per-table jobs' Kafka client settings, each key of `[kafka.jobs]` defaulting to the sidecar's.
    pub fn jobs_client(&self) -> JobsClient<'_> {
        let jobs = &self.jobs;
        let sasl = match (&jobs.sasl, &self.sasl) {
            (Some(own), _) => Some((SaslOrigin::Jobs, own)),
            (None, Some(sidecar)) => Some((SaslOrigin::Sidecar, sidecar)),
            (None, None) => None,
        };
        let tls = self.jobs_use_tls().then(|| JobsTls {
            ca_file: jobs.tls.ca_file.as_deref().or(self.tls.ca_file.as_deref()),
            keystore_file: jobs.tls.keystore_file.as_deref(),
            key_password: jobs.tls.key_password.is_some(),
        });
        JobsClient {
            bootstrap: jobs.bootstrap.as_deref().unwrap_or(&self.bootstrap),
            sasl,
            tls,
            class_prefix: &jobs.client_class_prefix,
        }
    }

    /// Whether the jobs connect with TLS: `kafka.jobs.tls.enabled`, else `kafka.tls.enabled`.
    fn jobs_use_tls(&self) -> bool {
        self.jobs.tls.enabled.unwrap_or(self.tls.enabled)
    }

    /// The secrets of `[kafka]` that the jobs' options may carry, with the environment variable each is read from
    /// (its name identifies it, whichever layer set it): every one is masked wherever statements are shown.
    pub fn job_secrets(&self) -> Vec<(&'static str, &Secret)> {
        let mut secrets = Vec::new();
        for (origin, sasl) in [(SaslOrigin::Sidecar, &self.sasl), (SaslOrigin::Jobs, &self.jobs.sasl)] {
            if let Some(sasl) = sasl {
                secrets.push((origin.password_variable(), &sasl.password));
                if let Some(oauth) = &sasl.oauth {
                    secrets.push((origin.client_secret_variable(), &oauth.client_secret));
                }
            }
        }
        if let Some(password) = &self.jobs.tls.key_password {
            secrets.push((KAFKA_JOBS_TLS_KEY_PASSWORD, password));
        }
        secrets
    }

    /// `[kafka.jobs]`: brokers in host:port form, the login as `[kafka.sasl]`'s is checked, absolute paths, and
    /// a keystore wherever the sidecar's own connections need a client certificate.
    pub(super) fn validate_jobs(&self, errors: &mut Vec<ConfigError>) {
        let jobs = &self.jobs;
        if let Some(bootstrap) = &jobs.bootstrap {
            if bootstrap.is_empty() {
                errors.invalid(
                    "kafka.jobs.bootstrap",
                    bootstrap,
                    "needs at least one host:port (or leave it unset)",
                );
            }
            for addr in bootstrap.iter().filter(|a| !is_host_port(a)) {
                errors.invalid("kafka.jobs.bootstrap", addr, "expected host:port");
            }
        }
        if let Some(sasl) = &jobs.sasl {
            sasl.validate(SaslOrigin::Jobs, self.jobs_use_tls(), errors);
        }
        if !is_class_prefix(&jobs.client_class_prefix) {
            errors.invalid(
                "kafka.jobs.client_class_prefix",
                &jobs.client_class_prefix,
                "expected empty, or a Java package prefix ending in '.' (such as org.apache.flink.kafka.shaded.)",
            );
        }
        for (key, file) in [
            ("kafka.jobs.tls.ca_file", &jobs.tls.ca_file),
            ("kafka.jobs.tls.keystore_file", &jobs.tls.keystore_file),
        ] {
            if let Some(path) = file {
                flink_side_path(key, path, errors);
            }
        }
        if let Some(password) = &jobs.tls.key_password {
            if jobs.tls.keystore_file.is_none() {
                errors.invalid(
                    "kafka.jobs.tls.key_password",
                    &"<set>",
                    "is the password of kafka.jobs.tls.keystore_file's key, which is not set",
                );
            } else if password.expose().is_empty() {
                errors.invalid(
                    "kafka.jobs.tls.key_password",
                    &"",
                    format!("must not be empty (pass it as {KAFKA_JOBS_TLS_KEY_PASSWORD}, or leave it unset for a key that is not encrypted)"),
                );
            }
        }
        // A broker that asks the sidecar for a certificate asks the jobs too; they cannot use the sidecar's pair
        // (two files on the sidecar's side), and without one every job would fail its handshake at run time.
        if self.tls.enabled && self.tls.cert_file.is_some() && self.jobs_use_tls() && jobs.tls.keystore_file.is_none() {
            errors.invalid(
                "kafka.jobs.tls.keystore_file",
                &None::<PathBuf>,
                "must be set when kafka.tls.cert_file is: the jobs need their client key (PKCS#8) and certificate \
                 chain in one PEM file, as Flink sees it (or set kafka.jobs.tls.enabled = false)",
            );
        }
    }

    /// `[kafka.jobs]` settings that do nothing as configured, each as one line naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let tls = &self.jobs.tls;
        let mut warnings = Vec::new();
        if !self.jobs_use_tls() {
            for (key, set) in [
                ("kafka.jobs.tls.ca_file", tls.ca_file.is_some()),
                ("kafka.jobs.tls.keystore_file", tls.keystore_file.is_some()),
            ] {
                if set {
                    warnings.push(format!(
                        "{key} is set but the jobs do not use TLS (kafka.jobs.tls.enabled, else kafka.tls.enabled, \
                         is false), so it is ignored"
                    ));
                }
            }
        }
        warnings
    }
}

impl SaslConfig {
    /// A login under the keys of the table it was configured in: each mechanism with its own credentials and
    /// nothing else's. `tls` says whether the connections it logs in on use TLS.
    pub(super) fn validate(&self, origin: SaslOrigin, tls: bool, errors: &mut Vec<ConfigError>) {
        let key = origin.key();
        let name = self.mechanism.as_str();
        if self.mechanism.takes_password() {
            errors.not_blank(&format!("{key}.username"), &self.username);
            if self.password.expose().is_empty() {
                errors.invalid(
                    format!("{key}.password"),
                    &"",
                    format!("must be set; pass it as {}", origin.password_variable()),
                );
            }
        } else {
            // A token mechanism: a user or password here would be a mistake that silently does nothing.
            if !self.username.is_empty() {
                errors.invalid(
                    format!("{key}.username"),
                    &self.username,
                    format!("only for PLAIN and SCRAM, not {name}"),
                );
            }
            if !self.password.expose().is_empty() {
                errors.invalid(
                    format!("{key}.password"),
                    &REDACTED,
                    format!("only for PLAIN and SCRAM, not {name}"),
                );
            }
        }
        match (self.mechanism, &self.oauth) {
            (SaslMechanism::OAuthBearer, Some(oauth)) => {
                oauth.validate(&format!("{key}.oauth"), origin.client_secret_variable(), errors)
            }
            (SaslMechanism::OAuthBearer, None) => errors.invalid(
                format!("{key}.oauth.token_endpoint"),
                &"",
                format!(
                    "must be set for OAUTHBEARER ([{key}.oauth] with token_endpoint, client_id and the client secret, {})",
                    origin.client_secret_variable()
                ),
            ),
            (_, Some(_)) => errors.invalid(format!("{key}.oauth"), &name, "only for OAUTHBEARER"),
            (_, None) => {}
        }
        if self.mechanism != SaslMechanism::AwsMskIam {
            if self.aws.is_some() {
                errors.invalid(format!("{key}.aws"), &name, "only for AWS_MSK_IAM");
            }
            return;
        }
        // MSK serves IAM only on its TLS listener (port 9098); without TLS the broker never answers the handshake.
        if !tls {
            let tls_key = match origin {
                SaslOrigin::Sidecar => "kafka.tls.enabled",
                SaslOrigin::Jobs => "kafka.jobs.tls.enabled",
            };
            errors.invalid(
                tls_key,
                &tls,
                format!("must be true with {key}.mechanism = AWS_MSK_IAM (MSK serves IAM on its TLS port, 9098)"),
            );
        }
        match (origin, &self.aws) {
            (SaslOrigin::Sidecar, Some(aws)) => aws.validate(errors),
            (SaslOrigin::Jobs, Some(_)) => errors.invalid(
                "kafka.jobs.sasl.aws",
                &"[kafka.jobs.sasl.aws]",
                "the jobs sign with their own pods' AWS credentials (the aws-msk-iam-auth jar); nothing here is used",
            ),
            (_, None) => {}
        }
    }
}

/// Whether `prefix` is empty or Java package names each followed by '.': it is written straight before
/// `org.apache.kafka...` in a JAAS value and a class option, so anything else would name no class (or break the
/// JAAS syntax).
pub fn is_class_prefix(prefix: &str) -> bool {
    let Some(packages) = prefix.strip_suffix('.') else {
        return prefix.is_empty();
    };
    packages.split('.').all(|name| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    })
}

/// A path on Flink's side: not blank, and absolute (a relative one would resolve against the TaskManager's working
/// directory, which nobody chooses on purpose). Not checked for existence: the sidecar does not see those files.
fn flink_side_path(key: &str, path: &Path, errors: &mut Vec<ConfigError>) {
    let shown = path.display().to_string();
    if shown.trim().is_empty() {
        errors.invalid(key, &shown, "must not be empty");
    } else if !path.is_absolute() {
        errors.invalid(
            key,
            &shown,
            "must be an absolute path (as Flink's TaskManagers see the file)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_class_prefix;

    #[test]
    fn a_class_prefix_is_empty_or_java_packages_each_ended_by_a_dot() {
        for good in ["", "org.apache.flink.kafka.shaded.", "shaded.", "a1.$b._c."] {
            assert!(is_class_prefix(good), "{good:?}");
        }
        for bad in [
            ".",
            "org.apache.flink.kafka.shaded",
            "org..shaded.",
            ".org.",
            "1org.",
            "org.apache-flink.",
            "org.x\" required;.",
            "org. x.",
            "org.ü.",
        ] {
            assert!(!is_class_prefix(bad), "{bad:?}");
        }
    }
}
