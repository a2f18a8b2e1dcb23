//! The request/answer plumbing both Flink clients share, and the one place where Flink's answers enter the
//! process: every body is read here with a bound, no redirect is followed, and every text of an answer or a
//! failure is redacted (the session's credentials) before it becomes a [`FlinkError`].

use reqwest::header::LOCATION;
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Fault, FlinkError, root_cause};
use crate::config::flink::DEFAULT_MAX_RESPONSE_BYTES;
use crate::config::redact_url;
use crate::lease::LeaseGuard;
use crate::sql::Credentials;

/// The most of an error answer (non-2xx) that is read: Flink's error bodies are a stack trace or two, a few
/// kilobytes; the rest of a larger one is left unread, its start is enough to say what failed.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Flink's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// A REST endpoint: a client, the base URL the API paths are joined to, the most of an answer that is read, and
/// the credentials masked in every text that comes back.
#[derive(Debug, Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: Url,
    max_response_bytes: usize,
    redact: Credentials,
    /// Asked immediately before every request that changes Flink ([`Rest::may_change`]).
    guard: LeaseGuard,
}

impl Rest {
    pub(crate) fn new(http: reqwest::Client, base: &str) -> Result<Rest, FlinkError> {
        let mut base =
            Url::parse(base).map_err(|e| FlinkError::Setup(format!("bad Flink URL {:?}: {e}", redact_url(base))))?;
        // Url::join replaces the last path segment unless the base ends with '/'; a gateway behind a path
        // prefix (http://host/flink) must keep it.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Rest {
            http,
            base,
            max_response_bytes: usize::try_from(DEFAULT_MAX_RESPONSE_BYTES).unwrap_or(usize::MAX),
            redact: Credentials::default(),
            guard: LeaseGuard::always(),
        })
    }

    /// Reads at most `bytes` of any answer (`flink.max_response_bytes`).
    pub(crate) fn set_max_response_bytes(&mut self, bytes: u32) {
        self.max_response_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }

    /// Masks `credentials` in every error this endpoint returns.
    pub(crate) fn set_redaction(&mut self, credentials: Credentials) {
        self.redact = credentials;
    }

    /// Asks `guard` before every request that changes Flink.
    pub(crate) fn set_guard(&mut self, guard: LeaseGuard) {
        self.guard = guard;
    }

    /// `Ok` when a request that changes Flink (`endpoint`, for the error) may go out now: called immediately
    /// before sending one, so a replica that lost its lease, or whose lease ran out by its own clock while it
    /// was paused, sends nothing that submits, stops or cancels a job.
    pub(crate) fn may_change(&self, endpoint: &str) -> Result<(), FlinkError> {
        self.guard.check().map_err(|source| FlinkError::NotLeader {
            endpoint: endpoint.to_owned(),
            source,
        })
    }

    /// `text` with the credentials masked: for what a client logs or reports of its own requests (statements).
    pub(crate) fn redact(&self, text: &str) -> String {
        self.redact.redact(text)
    }

    /// `error` with the credentials masked in every text it carries.
    pub(crate) fn redact_error(&self, error: FlinkError) -> FlinkError {
        error.redacted(&self.redact)
    }

    /// Sends a request and decodes a 2xx JSON answer into `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, FlinkError> {
        let (endpoint, bytes) = self.send(method, path, body).await?;
        // Some answers (heartbeat, configure) have an empty body; treat it as `{}`.
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // serde's message may quote a value of the answer.
        serde_json::from_slice(bytes).map_err(|e| {
            self.redact_error(FlinkError::Decode {
                endpoint,
                reason: e.to_string(),
            })
        })
    }

    /// Sends a request; returns the endpoint label and the body of a 2xx answer. Every failure is redacted.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(String, Vec<u8>), FlinkError> {
        let endpoint = format!("{method} /{}", path.split('?').next().unwrap_or(path));
        match self.exchange(method, &endpoint, path, body).await {
            Ok(bytes) => Ok((endpoint, bytes)),
            Err(e) => Err(self.redact_error(e)),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        endpoint: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, FlinkError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| FlinkError::Setup(format!("{endpoint}: {e}")))?;
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| transport(endpoint, e))?;
        let status = response.status();
        if status.is_redirection() {
            // The client follows no redirect (see `http_client`): a request, and the credentials in its
            // statements, goes to the configured address or nowhere.
            return Err(FlinkError::Redirect {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                location: redirect_target(&response),
            });
        }
        if status.is_success() {
            return read_body(response, self.max_response_bytes).await.map_err(|e| match e {
                BodyError::TooLarge { limit } => FlinkError::TooLarge {
                    endpoint: endpoint.to_owned(),
                    limit,
                },
                BodyError::Read(e) => transport(endpoint, e),
            });
        }
        let bytes = read_error_body(response, endpoint, self.max_response_bytes.min(ERROR_BODY_LIMIT)).await?;
        Err(api_error(endpoint.to_owned(), status, &bytes))
    }
}

pub(crate) use crate::http_client::{BodyError, read_body};

/// The first `limit` bytes of an error answer's body; the rest is left unread (the connection is dropped).
async fn read_error_body(mut response: Response, endpoint: &str, limit: usize) -> Result<Vec<u8>, FlinkError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(endpoint, e))? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// Where a redirect pointed, as it may be shown: scheme, host, port and path, without userinfo or query (either
/// may carry a secret), at most 200 characters; or why it cannot be said.
fn redirect_target(response: &Response) -> String {
    let Some(location) = response.headers().get(LOCATION) else {
        return "no Location".to_owned();
    };
    let Ok(location) = location.to_str() else {
        return "a Location that is not text".to_owned();
    };
    match response.url().join(location) {
        Ok(mut target) => {
            target.set_query(None);
            target.set_fragment(None);
            let _ = target.set_username("");
            let _ = target.set_password(None);
            target.as_str().chars().take(200).collect()
        }
        Err(_) => format!("{:?}", redact_url(location).chars().take(200).collect::<String>()),
    }
}

fn transport(endpoint: &str, error: reqwest::Error) -> FlinkError {
    FlinkError::Transport {
        endpoint: endpoint.to_owned(),
        timed_out: error.is_timeout(),
        unreachable: error.is_connect(),
        // reqwest names the URL in its message, userinfo and all; the endpoint already says which request failed.
        source: error.without_url(),
    }
}

fn api_error(endpoint: String, status: StatusCode, bytes: &[u8]) -> FlinkError {
    let errors = match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) if !body.errors.is_empty() => body.errors,
        _ => vec![String::from_utf8_lossy(bytes).chars().take(300).collect()],
    };
    let root_cause = root_cause(&errors);
    FlinkError::Api {
        endpoint,
        status: status.as_u16(),
        fault: Fault::of(&errors, &root_cause),
        root_cause,
    }
}

/// A transport error as a refused connection gives it, for tests of what reports one: made on a thread of its own,
/// so a test on a paused clock can call it.
#[cfg(test)]
pub(crate) fn refused(endpoint: &str) -> FlinkError {
    let error = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // A port just freed: nothing listens there.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let client = super::http_client(std::time::Duration::from_secs(5)).unwrap();
            client
                .get(format!("http://127.0.0.1:{port}/"))
                .send()
                .await
                .unwrap_err()
        })
    })
    .join()
    .unwrap();
    transport(endpoint, error)
}
