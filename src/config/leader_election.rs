//! The `[leader_election]` section: whether replicas compete for a Kubernetes Lease, and with which timings and
//! credentials (client-go's defaults and rules).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{Checks, check_fields};
use super::shown_url::{self, redact_url};
use super::{ConfigError, Section};

/// Where Kubernetes mounts a pod's service account: its `token`, `ca.crt` and `namespace` files.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The longest identity accepted: a pod name is a DNS subdomain (at most 253 characters), and the identity is
/// logged and shown by `/tables`, so an unbounded one has no use.
pub const MAX_IDENTITY_LEN: usize = 253;

/// client-go's jitter factor: a standby retries after `retry_period` times up to this, so the renew deadline must
/// leave room for one jittered retry.
pub const JITTER_FACTOR: f64 = 1.2;

/// The `[leader_election]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Whether replicas compete for the Lease; without it this replica always leads.
    pub enabled: bool,
    /// This replica's name in the Lease; unset means `$POD_NAME`, else `$HOSTNAME`, else the host's name.
    pub identity: Option<String>,
    /// The Lease's namespace; unset means the service account's `namespace` file.
    pub namespace: Option<String>,
    /// The Lease's name.
    pub lease_name: String,
    /// How long a Lease holds after its last renewal, as others observe it (whole seconds: the Lease stores seconds).
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down (and its guard refuses from then on).
    #[serde(with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    #[serde(with = "humantime_serde")]
    pub retry_period: Duration,
    /// The Kubernetes API server; unset means `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`.
    #[serde(serialize_with = "shown_url::serialize_option")]
    pub api_server: Option<String>,
    /// The bearer token's file, re-read when it changes (Kubernetes rotates projected tokens).
    pub token_file: PathBuf,
    /// The CA bundle that signs the API server's certificate, re-read when it changes.
    pub ca_file: PathBuf,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            identity: None,
            namespace: None,
            lease_name: "cdc-orchestrator".to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            api_server: None,
            token_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("token"),
            ca_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"),
        }
    }
}

impl Section for LeaderElectionConfig {
    const KEY: &'static str = "leader_election";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_fields!(errors.positive, "leader_election", self: lease_duration, renew_deadline, retry_period);
        if let Some(identity) = &self.identity
            && let Err(reason) = check_identity(identity)
        {
            errors.invalid("leader_election.identity", identity, reason);
        }
        if let Some(namespace) = &self.namespace
            && !is_dns_label(namespace)
        {
            errors.invalid("leader_election.namespace", namespace, DNS_LABEL_RULE);
        }
        if !is_dns_subdomain(&self.lease_name) {
            errors.invalid("leader_election.lease_name", &self.lease_name, DNS_SUBDOMAIN_RULE);
        }
        let shown = |d: Duration| humantime::format_duration(d).to_string();
        let (lease, renew, retry) = (self.lease_duration, self.renew_deadline, self.retry_period);
        if lease < Duration::from_secs(1) || lease.subsec_nanos() != 0 {
            errors.invalid(
                "leader_election.lease_duration",
                &shown(lease),
                "must be a whole number of seconds, at least 1s (the Lease stores seconds)",
            );
        } else if lease <= renew {
            let reason = format!("must be longer than leader_election.renew_deadline ({})", shown(renew));
            errors.invalid("leader_election.lease_duration", &shown(lease), reason);
        }
        if !retry.is_zero() && renew.as_secs_f64() <= JITTER_FACTOR * retry.as_secs_f64() {
            let reason = format!(
                "must be longer than {JITTER_FACTOR} x leader_election.retry_period ({})",
                shown(retry)
            );
            errors.invalid("leader_election.renew_deadline", &shown(renew), reason);
        }
        if let Some(url) = &self.api_server
            && let Err(reason) = check_api_server(url)
        {
            errors.invalid("leader_election.api_server", &redact_url(url), reason);
        }
    }
}

/// A holder identity: not blank, at most [`MAX_IDENTITY_LEN`] characters, no control characters (it is logged and
/// written into the Lease).
pub fn check_identity(identity: &str) -> Result<(), String> {
    if identity.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if identity.chars().count() > MAX_IDENTITY_LEN {
        Err(format!("must be at most {MAX_IDENTITY_LEN} characters"))
    } else if identity.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

/// How a namespace must look, as the error says it.
pub const DNS_LABEL_RULE: &str =
    "must be a DNS-1123 label (lower-case letters, digits and '-', starting and ending alphanumeric, at most 63)";
const DNS_SUBDOMAIN_RULE: &str = "must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', each part \
     starting and ending alphanumeric, at most 253)";

/// A Kubernetes namespace name: a DNS-1123 label.
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A Lease's name: a DNS-1123 subdomain.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// The API server's URL: `https://`, or `http://` to a loopback address only. The requests carry the service
/// account's bearer token, which plain HTTP would show to anyone on the path; on loopback there is no path (a
/// `kubectl proxy` or the test stand-in), so plain HTTP is allowed there and nowhere else.
pub fn check_api_server(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry a user or password (the token file authenticates)".to_owned());
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err("expected an https:// URL with a host".to_owned()),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(
            "must be https:// (plain http:// only to a loopback address: the bearer token would travel \
                       in clear)"
                .to_owned(),
        ),
        _ => Err("expected an https:// URL".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(c: &LeaderElectionConfig) -> Vec<String> {
        let mut errors = Vec::new();
        c.validate(&mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_defaults_are_client_gos_and_valid() {
        let c = LeaderElectionConfig::default();
        assert_eq!(errors(&c), Vec::<String>::new());
        assert!(!c.enabled);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn bad_values_are_each_named() {
        let c = LeaderElectionConfig {
            identity: Some("a\u{1b}b".into()),
            namespace: Some("Bad_NS".into()),
            lease_name: "-x".into(),
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_secs(2),
            api_server: Some("http://10.0.0.1:6443".into()),
            ..LeaderElectionConfig::default()
        };
        let e = errors(&c);
        for key in [
            "identity",
            "namespace",
            "lease_name",
            "lease_duration",
            "renew_deadline",
            "api_server",
        ] {
            assert!(
                e.iter().any(|l| l.starts_with(&format!("leader_election.{key}:"))),
                "{key}: {e:?}"
            );
        }
        let long = "x".repeat(254);
        assert!(check_identity(&long).is_err());
        assert!(check_identity(" ").is_err());
        assert!(check_api_server("http://127.0.0.1:8001").is_ok());
        assert!(check_api_server("http://[::1]:8001").is_ok());
        assert!(check_api_server("https://user:pw@k8s:443").is_err());
        assert!(check_api_server("ftp://k8s").is_err());
        let c = LeaderElectionConfig {
            lease_duration: Duration::from_secs(10),
            ..LeaderElectionConfig::default()
        };
        assert!(
            errors(&c)[0].contains("longer than leader_election.renew_deadline"),
            "{:?}",
            errors(&c)
        );
    }
}
