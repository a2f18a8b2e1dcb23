//! `cdc-orchestrator healthcheck`: the container's HEALTHCHECK, since a `FROM scratch` image has no curl. It asks
//! the running sidecar's own `/healthz` on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{EXIT_FAILURE, block_on, load_config};
use crate::flink::FlinkError;

/// How long the probe waits for an answer; Docker's default interval is 30 s, so a slow answer is a bad sign.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Exit 0 when the sidecar configured in `file` answers `/healthz` with 200; else prints why and exits 1.
pub fn command(file: Option<&Path>) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    block_on(probe(config.server.listen, TIMEOUT), "unhealthy", |_| EXIT_FAILURE)
}

/// The address to probe for a server listening on `listen`: a wildcard address is probed on loopback.
pub fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Why the sidecar is not healthy, naming the URL probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No HTTP client could be built.
    #[error(transparent)]
    Client(FlinkError),
    /// It answered, but not 200.
    #[error("{url} answered {status}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status it answered with.
        status: reqwest::StatusCode,
    },
    /// No answer in time.
    #[error("{url}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The URL probed.
        url: String,
        /// How long the probe waited.
        timeout: Duration,
    },
    /// Nothing listens there.
    #[error("{url}: connection refused (is the sidecar running?)")]
    Refused {
        /// The URL probed.
        url: String,
        /// The connection error.
        #[source]
        source: reqwest::Error,
    },
    /// Any other failure of the request.
    #[error("{url}")]
    Request {
        /// The URL probed.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
}

/// `Ok` when `GET /healthz` on the sidecar listening on `listen` answers 200 within `timeout`, else the reason.
pub async fn probe(listen: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    let url = format!("http://{}/healthz", probe_address(listen));
    let client = crate::flink::http_client(timeout).map_err(ProbeError::Client)?;
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(ProbeError::Status {
            url,
            status: response.status(),
        }),
        Err(e) if e.is_timeout() => Err(ProbeError::Timeout { url, timeout }),
        Err(source) if source.is_connect() => Err(ProbeError::Refused { url, source }),
        Err(source) => Err(ProbeError::Request { url, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        addr
    }

    #[tokio::test]
    async fn healthy_unhealthy_slow_and_absent_servers() {
        let healthy = serve(Router::new().route("/healthz", get(|| async { "ok" }))).await;
        probe(healthy, TIMEOUT).await.expect("healthy");
        // The sidecar listens on 0.0.0.0; the probe goes to loopback on the same port.
        let wildcard = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), healthy.port());
        probe(wildcard, TIMEOUT).await.expect("healthy on loopback");

        let failing = serve(Router::new().route("/healthz", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))).await;
        let err = probe(failing, TIMEOUT).await.expect_err("503 is unhealthy").to_string();
        assert!(err.contains("503"), "{err}");

        let slow = serve(Router::new().route(
            "/healthz",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        ))
        .await;
        let err = probe(slow, Duration::from_millis(200))
            .await
            .expect_err("too slow")
            .to_string();
        assert!(err.contains("no answer within 200ms"), "{err}");

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let err = probe(closed, TIMEOUT).await.expect_err("nothing listens").to_string();
        assert!(err.contains("connection refused"), "{err}");
    }

    #[test]
    fn wildcards_are_probed_on_loopback() {
        let v6: SocketAddr = "[::]:8080".parse().expect("addr");
        assert_eq!(probe_address(v6), "[::1]:8080".parse().expect("addr"));
        let specific: SocketAddr = "10.1.2.3:9".parse().expect("addr");
        assert_eq!(probe_address(specific), specific);
    }
}
