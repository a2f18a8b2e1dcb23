//! The one way the sidecar makes an outgoing HTTP client, and reads an answer's body: rustls with the ring
//! provider, a timeout on every request, no redirect followed, and every body read with a bound. The Flink clients
//! ([`crate::flink`]) and the OAUTHBEARER token endpoint's client ([`crate::auth`]) both build theirs here, so the
//! rules cannot drift apart.
//!
//! A leaf: imports nothing of the crate.

use std::sync::Once;
use std::time::Duration;

use reqwest::Response;

/// A body's first allocation is at most this, whatever length the server announces: the body grows as it
/// arrives, so a server's word alone never makes the process hold much.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// An HTTP client: rustls with the ring provider, `timeout` on connecting and on every whole request, and no
/// redirect followed. A redirect would re-send a request, and the credentials it carries (a statement's catalog
/// secrets, a token endpoint's client secret), to an address nobody configured, or turn a POST into a GET; its
/// caller gets the 3xx answer and reports it instead.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// [`client`]'s settings as a builder, for a client that adds its own (the Lease client's CA).
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    static PROVIDER: Once = Once::new();
    // reqwest is built without a default crypto provider; install ring once per process. Another part of the
    // program may have installed one already, which is just as good, so the result is ignored.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")))
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is larger than the limit; what was read of it is dropped, the rest is never read.
    #[error("answer larger than {limit} bytes; not read")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection failed while the body was read.
    #[error(transparent)]
    Read(reqwest::Error),
}

/// The whole body of `response`, or [`BodyError::TooLarge`] as soon as it is known to exceed `limit`: from its
/// `Content-Length` before anything is read, else as the chunks come in, so no more than `limit` bytes are held.
/// Every body a reqwest client of this program reads goes through here.
pub async fn read_body(mut response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = response
        .content_length()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if announced.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0).min(INITIAL_BODY_CAPACITY));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
