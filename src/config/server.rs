//! The `[server]` section: the operator HTTP endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::{Checks, check_fields};
use super::de::{list, socket_addr, whole_u32};
use super::{ConfigError, Secret, Section};

/// The `[server]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP server (health, metrics, control).
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// When set, POST requests need `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Without a token, the host names (beyond IP literals and `localhost`) a state-changing request may address
    /// in its `Host` header; any other name could be a DNS-rebinding page's.
    #[serde(deserialize_with = "list")]
    pub allowed_hosts: Vec<String>,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    #[serde(deserialize_with = "whole_u32")]
    pub max_connections: u32,
    /// A client must send a request's whole header within this time, or the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection with no request in progress for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request body accepted, counted as it is read (chunked or sized); the API takes no bodies.
    #[serde(deserialize_with = "whole_u32")]
    pub max_body_bytes: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            token: None,
            allowed_hosts: Vec::new(),
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_body_bytes: 4096,
        }
    }
}

impl Section for ServerConfig {
    const KEY: &'static str = "server";

    fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_fields!(errors.positive, "server", self: header_timeout, idle_timeout);
        check_fields!(errors.at_least_one, "server", self: max_connections);
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            // An empty token would make every POST a 401; leaving the key unset is how to disable the check.
            errors.invalid("server.token", &"", "must not be empty (leave it unset for no token)");
        }
        for host in &self.allowed_hosts {
            if !is_host_name(host) {
                errors.invalid(
                    "server.allowed_hosts",
                    host,
                    "must be a host name (letters, digits, '-' and '.', no port)",
                );
            }
        }
    }
}

/// A DNS host name as a `Host` header carries it, without a port: what `server.allowed_hosts` lists.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
