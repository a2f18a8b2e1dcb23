//! `cdc-orchestrator reload`: asks the running sidecar to reload its templates and policy settings (`POST /reload`),
//! which is what a `FROM scratch` image, without `kill`, can run through `kubectl exec` instead of a SIGHUP.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_FAILURE, block_on};

/// How long the reload may take: every template is read and rendered (the server gives it 30 s).
const TIMEOUT: Duration = Duration::from_secs(35);

/// The most of the answer that is read: what changed, or the messages of a refused set.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why the reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No HTTP client could be built.
    #[error("cannot build an HTTP client")]
    Client(#[source] crate::flink::FlinkError),
    /// The request got no answer.
    #[error("{url}")]
    Request {
        /// The URL asked.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The sidecar answered with an error (a refused set: 422 with start-up's messages).
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// The URL asked.
        url: String,
        /// Its status.
        status: reqwest::StatusCode,
        /// Its answer, escaped for the terminal.
        body: String,
    },
}

/// Reloads the sidecar at `url` (default: the configured `server.listen`), presenting the API token as `status`
/// does; prints what changed. Exit 1 when the sidecar refuses the new set or cannot be reached.
pub fn command(file: Option<&Path>, url: Option<&str>) -> ExitCode {
    let (url, token) = match super::status::target(file, url) {
        Ok(target) => target,
        Err(code) => return code,
    };
    block_on(reload(&url, token.as_deref()), "error", |_| EXIT_FAILURE)
}

/// `POST {base}/reload`; prints the answer when it is a success.
pub async fn reload(base: &str, token: Option<&str>) -> Result<(), ReloadError> {
    let url = format!("{}/reload", base.trim_end_matches('/'));
    let client = crate::flink::http_client(TIMEOUT).map_err(ReloadError::Client)?;
    let mut request = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let request_error = |source| ReloadError::Request {
        url: url.clone(),
        source,
    };
    let mut response = request.send().await.map_err(request_error)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER_BYTES.saturating_sub(body.len()))]);
    }
    // The answer is JSON, whose strings escape control characters already; anything else is escaped here.
    let mut escaped = String::new();
    let _ = std::fmt::Write::write_str(
        &mut crate::logging::Escaper(&mut escaped),
        &String::from_utf8_lossy(&body),
    );
    let body = escaped;
    if !status.is_success() {
        return Err(ReloadError::Refused { url, status, body });
    }
    println!("{body}");
    Ok(())
}
