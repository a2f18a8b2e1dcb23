//! A minimal Kubernetes client for one `coordination.k8s.io/v1` Lease: GET, POST and PUT on reqwest (the client the
//! binary has already; a general Kubernetes client would cost the size budget for three calls), with in-cluster
//! credentials re-read as Kubernetes rotates them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::LeaseError;
use crate::http_client;

/// Largest answer read from the API server: a Lease is well under a kilobyte, its Status errors too.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Largest token or CA file read: a projected token is about a kilobyte, a CA bundle a few.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// Longest text from the API server (a Status message) kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// A Lease as the API server writes it; fields this client does not use are kept as they came, so a PUT does not
/// drop them (labels, owner references, managed fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// `coordination.k8s.io/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Lease`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, namespace, version, annotations.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Who holds it, for how long.
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// The metadata of a [`Lease`] this client reads or writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The Lease's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The version a PUT must name: the API server refuses a PUT of an older one with 409 Conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Annotations; the elector writes the sidecar's version in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Everything else, kept as it came.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The spec of a [`Lease`]: client-go's leader election record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    /// The holder; empty or absent when nobody holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long the holder holds it after a renewal, as others observe it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// When the holder acquired it (a MicroTime, `2006-01-02T15:04:05.000000Z`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the holder last renewed it; informational: expiry is judged by the observer's own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times the holder changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
    /// Everything else, kept as it came.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The API server's error body (`kind: Status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Status`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `Failure`.
    #[serde(default)]
    pub status: Option<String>,
    /// What happened, for a human.
    #[serde(default)]
    pub message: Option<String>,
    /// A machine-readable reason: `NotFound`, `AlreadyExists`, `Conflict`, `Unauthorized`, `Forbidden`, ...
    #[serde(default)]
    pub reason: Option<String>,
    /// The HTTP status.
    #[serde(default)]
    pub code: Option<u16>,
}

/// Now as a Kubernetes MicroTime, `2006-01-02T15:04:05.000000Z`.
pub fn micro_time_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Text from outside, fit for an error: control characters replaced, at most [`MAX_MESSAGE_CHARS`] characters.
pub(super) fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

/// Reads a small credential file whole; `None` when it is larger than [`MAX_FILE_BYTES`].
pub(super) fn read_small(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

/// The client of one Lease.
#[derive(Debug)]
pub struct KubeClient {
    /// `<api_server>/apis/coordination.k8s.io/v1/namespaces/<ns>/leases`.
    collection: String,
    name: String,
    namespace: String,
    token_file: PathBuf,
    /// The CA bundle, for an `https://` API server.
    ca_file: Option<PathBuf>,
    timeout: Duration,
    /// The HTTP client, and the CA bundle it trusts: rebuilt when the file's content changes.
    http: Mutex<Option<(Vec<u8>, reqwest::Client)>>,
}

impl KubeClient {
    /// A client of Lease `name` in `namespace` at `api_server` (checked by the configuration), each request
    /// bounded by `timeout`. Reads the credentials once, so a missing file is reported now, naming it.
    pub fn new(
        api_server: &str,
        namespace: &str,
        name: &str,
        token_file: &Path,
        ca_file: &Path,
        timeout: Duration,
    ) -> Result<KubeClient, LeaseError> {
        let https = api_server.starts_with("https:");
        let client = KubeClient {
            collection: format!(
                "{}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
                api_server.trim_end_matches('/')
            ),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            token_file: token_file.to_owned(),
            ca_file: https.then(|| ca_file.to_owned()),
            timeout,
            http: Mutex::new(None),
        };
        client.token()?;
        client.http()?;
        Ok(client)
    }

    /// `namespace/name`, as the logs name the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The bearer token, read now: Kubernetes rotates projected tokens in place, so every request reads the file
    /// (a few hundred bytes, once per retry period) and always sends the current one. Never logged.
    fn token(&self) -> Result<String, LeaseError> {
        let credential = |reason: &str| LeaseError::Credential {
            path: self.token_file.clone(),
            reason: reason.to_owned(),
        };
        let bytes = match read_small(&self.token_file) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(credential("larger than 256 KiB")),
            Err(source) => {
                return Err(LeaseError::NoServiceAccount {
                    path: self.token_file.clone(),
                    source,
                });
            }
        };
        let token = String::from_utf8(bytes).map_err(|_| credential("not UTF-8 text"))?;
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(credential(
                "empty, or not a bearer token (printable ASCII without spaces)",
            ));
        }
        Ok(token.to_owned())
    }

    /// The HTTP client, rebuilt when the CA file's content changed (Kubernetes rotates it in place too).
    fn http(&self) -> Result<reqwest::Client, LeaseError> {
        let ca = match &self.ca_file {
            Some(path) => match read_small(path) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => {
                    return Err(LeaseError::Credential {
                        path: path.clone(),
                        reason: "larger than 256 KiB".to_owned(),
                    });
                }
                Err(source) => {
                    return Err(LeaseError::NoServiceAccount {
                        path: path.clone(),
                        source,
                    });
                }
            },
            None => Vec::new(),
        };
        let mut http = self.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((trusted, client)) = http.as_ref()
            && *trusted == ca
        {
            return Ok(client.clone());
        }
        let mut builder = http_client::builder(self.timeout);
        if let Some(path) = &self.ca_file {
            let bad = |reason: String| LeaseError::Credential {
                path: path.clone(),
                reason,
            };
            let certs = reqwest::Certificate::from_pem_bundle(&ca).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("holds no PEM certificate".to_owned()));
            }
            // Only the cluster's CA: a public CA has no business signing an API server's certificate.
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(LeaseError::Client)?;
        *http = Some((ca, client.clone()));
        Ok(client)
    }

    async fn call(&self, method: Method, url: String, body: Option<&Lease>) -> Result<Lease, LeaseError> {
        let token = self.token()?;
        let mut request = self.http()?.request(method, url).bearer_auth(token);
        if let Some(lease) = body {
            request = request.json(lease);
        }
        let response = request.send().await.map_err(LeaseError::Transport)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(LeaseError::Redirect { code: status.as_u16() });
        }
        let body = http_client::read_body(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                http_client::BodyError::TooLarge { limit } => LeaseError::Garbage {
                    what: format!("an answer larger than {limit} bytes"),
                },
                http_client::BodyError::Read(e) => LeaseError::Transport(e),
            })?;
        if status.is_success() {
            let lease: Lease = serde_json::from_slice(&body).map_err(|e| LeaseError::Garbage {
                what: format!(
                    "HTTP {} with a body that is not a Lease ({})",
                    status.as_u16(),
                    bounded(&e.to_string())
                ),
            })?;
            if lease.kind.as_deref().is_some_and(|k| k != "Lease") {
                return Err(LeaseError::Garbage {
                    what: format!(
                        "a {} where a Lease was expected",
                        bounded(lease.kind.as_deref().unwrap_or(""))
                    ),
                });
            }
            return Ok(lease);
        }
        let parsed = serde_json::from_slice::<Status>(&body)
            .ok()
            .filter(|s| s.kind.as_deref() == Some("Status"));
        let message = match &parsed {
            Some(s) => bounded(s.message.as_deref().unwrap_or("")),
            None => bounded(&String::from_utf8_lossy(&body)),
        };
        Err(match status {
            StatusCode::CONFLICT => LeaseError::Conflict { message },
            StatusCode::NOT_FOUND => LeaseError::NotFound,
            StatusCode::UNAUTHORIZED => LeaseError::Unauthorized {
                token_file: self.token_file.clone(),
            },
            StatusCode::FORBIDDEN => LeaseError::Forbidden { message },
            _ => LeaseError::Status {
                code: status.as_u16(),
                reason: bounded(parsed.and_then(|s| s.reason).as_deref().unwrap_or("")),
                message,
            },
        })
    }

    fn item(&self) -> String {
        format!("{}/{}", self.collection, self.name)
    }
}

impl super::LeaseApi for KubeClient {
    async fn get(&self) -> Result<Lease, LeaseError> {
        self.call(Method::GET, self.item(), None).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        let mut lease = lease.clone();
        lease.metadata.name = Some(self.name.clone());
        lease.metadata.namespace = Some(self.namespace.clone());
        self.call(Method::POST, self.collection.clone(), Some(&lease)).await
    }

    async fn update(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.call(Method::PUT, self.item(), Some(lease)).await
    }

    fn name(&self) -> String {
        self.lease()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_round_trips_keeping_unknown_fields() {
        let text = r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l","namespace":"n",
            "resourceVersion":"7","labels":{"a":"b"}},"spec":{"holderIdentity":"pod-a","leaseDurationSeconds":15,
            "renewTime":"2024-01-02T03:04:05.000000Z","leaseTransitions":2,"preferredHolder":"x"}}"#;
        let lease: Lease = serde_json::from_str(text).expect("a lease");
        assert_eq!(lease.spec.holder_identity.as_deref(), Some("pod-a"));
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("7"));
        let back = serde_json::to_value(&lease).expect("json");
        assert_eq!(back["metadata"]["labels"]["a"], "b");
        assert_eq!(back["spec"]["preferredHolder"], "x");
        assert_eq!(micro_time_now().len(), "2006-01-02T15:04:05.000000Z".len());
        assert_eq!(bounded(&"\u{1b}".repeat(400)).len(), 303);
    }
}
