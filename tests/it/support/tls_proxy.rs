//! A TLS-terminating TCP proxy in front of a tansu broker, with a throw-away CA.
//!
//! tansu 0.6.0 cannot serve TLS itself: its CLI puts `--cert` and `--key` in one clap group, which makes them
//! mutually exclusive, while the broker needs both. So the TLS tests put this proxy (rustls, the same library
//! the sidecar's client uses) in front of a plaintext tansu that advertises the proxy's address. Everything the
//! client sends still goes to the real broker; only the TLS session ends here.

use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream};

/// A listening proxy; stops (with every connection) on drop.
pub struct TlsProxy {
    port: u16,
    ca_pem: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Binds a free loopback port now, so the broker can advertise it before the proxy forwards to it.
    pub async fn bind() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        (listener, port)
    }

    /// Serves TLS on `listener` with a certificate for `127.0.0.1` and `localhost` signed by a fresh CA (written to
    /// `dir/ca.pem`), forwarding each connection to `127.0.0.1:origin_port`.
    pub fn start(listener: TcpListener, origin_port: u16, dir: &Path) -> TlsProxy {
        let port = listener.local_addr().expect("proxy address").port();
        let (ca, acceptor) = super::lease_server::tls();
        std::fs::create_dir_all(dir).expect("create the certificate folder");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca).expect("write ca.pem");
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    // A client that does not speak TLS fails the handshake here and is dropped.
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut origin) = TcpStream::connect(("127.0.0.1", origin_port)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut origin).await;
                });
            }
        });
        TlsProxy { port, ca_pem, accept }
    }

    /// `127.0.0.1:<port>`, the TLS bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA that signed the proxy's certificate, as PEM.
    pub fn ca_pem(&self) -> &Path {
        &self.ca_pem
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every forwarded connection.
        self.accept.abort();
    }
}
