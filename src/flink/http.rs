//! The request/answer plumbing both Flink clients share: one line per failure, error bodies made typed.

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Fault, FlinkError, root_cause};

/// Flink's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// A REST endpoint: a client and the base URL the API paths are joined to.
#[derive(Debug, Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: Url,
}

impl Rest {
    pub(crate) fn new(http: reqwest::Client, base: &str) -> Result<Rest, FlinkError> {
        let mut base = Url::parse(base).map_err(|e| FlinkError::Setup(format!("bad Flink URL {base:?}: {e}")))?;
        // Url::join replaces the last path segment unless the base ends with '/'; a gateway behind a path
        // prefix (http://host/flink) must keep it.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Rest { http, base })
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
        serde_json::from_slice(bytes).map_err(|e| FlinkError::Decode {
            endpoint,
            reason: e.to_string(),
        })
    }

    /// Sends a request; returns the endpoint label and the body of a 2xx answer.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(String, Vec<u8>), FlinkError> {
        let endpoint = format!("{method} /{}", path.split('?').next().unwrap_or(path));
        let url = self
            .base
            .join(path)
            .map_err(|e| FlinkError::Setup(format!("{endpoint}: {e}")))?;
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| transport(&endpoint, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(&endpoint, &e))?;
        if status.is_success() {
            return Ok((endpoint, bytes.to_vec()));
        }
        Err(api_error(endpoint, status, &bytes))
    }
}

fn transport(endpoint: &str, error: &reqwest::Error) -> FlinkError {
    // reqwest's Display stops at the outermost layer ("error sending request"); the cause says why.
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    FlinkError::Transport {
        endpoint: endpoint.to_owned(),
        reason,
        timed_out: error.is_timeout(),
        unreachable: error.is_connect(),
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
