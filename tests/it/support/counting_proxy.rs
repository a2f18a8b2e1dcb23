//! A TCP proxy that counts the bytes between clients and a broker, for benchmarks: start the broker advertising
//! the proxy's address (`Broker::start_advertising`) so that every connection a client makes goes through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Byte counts so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Broker to clients.
    pub received: AtomicU64,
    /// Clients to broker.
    pub sent: AtomicU64,
}

/// A listening proxy; stops (with every connection) on drop.
pub struct CountingProxy {
    port: u16,
    counts: Arc<Counts>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Binds a free loopback port, to advertise before the broker starts.
    pub fn bind() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        (listener, port)
    }

    /// Forwards every connection on `listener` to `127.0.0.1:origin_port`, counting bytes both ways. Call it
    /// inside the runtime that should carry the proxy (a separate one keeps its CPU apart from the client's).
    pub fn start(listener: std::net::TcpListener, origin_port: u16) -> CountingProxy {
        let listener = TcpListener::from_std(listener).expect("register the listener");
        let port = listener.local_addr().expect("proxy address").port();
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let counts = Arc::clone(&shared);
                connections.spawn(async move {
                    let _ = client.set_nodelay(true);
                    let Ok(origin) = TcpStream::connect(("127.0.0.1", origin_port)).await else {
                        return;
                    };
                    let _ = origin.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (origin_read, origin_write) = origin.into_split();
                    tokio::join!(
                        pump(client_read, origin_write, &counts.sent),
                        pump(origin_read, client_write, &counts.received),
                    );
                });
            }
        });
        CountingProxy { port, counts, accept }
    }

    /// `127.0.0.1:<port>`, the bootstrap address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (received from the broker, sent to the broker) so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counts.received.load(Ordering::Relaxed),
            self.counts.sent.load(Ordering::Relaxed),
        )
    }
}

async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
