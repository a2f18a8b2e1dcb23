//! A small Postgres client for the catalog's few queries: startup, authentication (SCRAM-SHA-256, md5, cleartext),
//! the simple-query protocol with every value as text, and Terminate.
//!
//! Why not tokio-postgres: it added 664 KB to the static binary (its generic connection machinery, postgres-types,
//! phf, whoami, its URL/config parser) and took the binary 325 KB over the 8 MiB budget. `scaffold` needs four
//! read-only catalog queries, so this module keeps rust-postgres's own message codec and SCRAM/md5 code
//! (postgres-protocol, the crate tokio-postgres is built on) and writes only the conversation around it.
//!
//! Everything the server sends is outside input: every message is bounded ([`MAX_MESSAGE`]), a query's rows are
//! bounded ([`MAX_ROWS`], [`MAX_ANSWER`]), every read happens under the caller's timeout (the [`Catalog`](super::catalog::Catalog)
//! wraps connecting and each query in one), and the server's error text is escaped and cut before it is shown.

use std::fmt;
use std::io;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::TlsConfig;

/// Largest message accepted from the server (a catalog row is a few hundred bytes).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// Most rows one query may return.
pub const MAX_ROWS: usize = 100_000;

/// Most bytes of values one query may return (the catalog of ten thousand wide tables is far less).
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Longest server error text shown (the rest is cut).
const MAX_ERROR_TEXT: usize = 512;

/// How the connection is encrypted (`sslmode`), as libpq names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it (the default).
    Prefer,
    /// TLS or no connection.
    Require,
}

/// Where and as whom to connect; parsed from a `postgres://` URL by [`Config::parse`].
#[derive(Clone)]
pub struct Config {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, when one is known.
    pub password: Option<String>,
    /// Database.
    pub dbname: String,
    /// `sslmode`.
    pub ssl: SslMode,
}

// Never shows the password.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("ssl", &self.ssl)
            .finish()
    }
}

impl Config {
    /// Parses `postgres://user[:password]@host[:port][/database][?key=value&...]` (or `postgresql://`), with the
    /// parameters `sslmode` (disable, prefer, require), `password`, `user`, `dbname`, `host`, `port`. Errors name
    /// the part or key, never a value (the URL may hold a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err("the scheme is not postgres:// or postgresql://".into());
        }
        let decode = |part: &str, what: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("the {what} is not UTF-8 once percent-decoded"))
        };
        let mut host = match url.host() {
            Some(url::Host::Domain(h)) => decode(h, "host")?,
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => String::new(),
        };
        let mut port = url.port().unwrap_or(5432);
        let mut user = decode(url.username(), "user")?;
        let mut password = url.password().map(|p| decode(p, "password")).transpose()?;
        let mut dbname = decode(url.path().trim_start_matches('/'), "database")?;
        let mut ssl = SslMode::Prefer;
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    ssl = match &*value {
                        "disable" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        _ => return Err("sslmode is not one of disable, prefer, require".into()),
                    }
                }
                "password" => password = Some(value.into_owned()),
                "user" => user = value.into_owned(),
                "dbname" => dbname = value.into_owned(),
                "host" => host = value.into_owned(),
                "port" => port = value.parse().map_err(|_| "port is not a port number".to_owned())?,
                // Harmless libpq keys a copied URL may carry.
                "application_name" | "connect_timeout" => {}
                other => return Err(format!("unknown parameter {:?}", other.escape_debug().to_string())),
            }
        }
        if user.is_empty() {
            return Err("no user".into());
        }
        if host.is_empty() {
            host = "localhost".into();
        }
        if dbname.is_empty() {
            dbname.clone_from(&user);
        }
        Ok(Self {
            host,
            port,
            user,
            password,
            dbname,
            ssl,
        })
    }
}

/// What went wrong talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection failed or broke.
    #[error("I/O")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (the certificate, most often).
    #[error("TLS handshake")]
    Tls(#[source] io::Error),
    /// `sslmode=require` and the server does not speak TLS.
    #[error("the server does not accept TLS and sslmode=require")]
    NoTls,
    /// The server asked for a password and none was given.
    #[error("the server asks for a password and none was given (URL or PGPASSWORD)")]
    NoPassword,
    /// An authentication method this client does not speak.
    #[error("the server asks for {0} authentication, which this client does not support")]
    AuthMethod(&'static str),
    /// The server sent something this client does not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server's error (escaped and cut).
    #[error("server error: {0}")]
    Server(String),
}

fn protocol(what: impl Into<String>) -> PgError {
    PgError::Protocol(what.into())
}

/// The server's error as one line: severity, message, SQLSTATE; escaped (it may quote our input) and cut.
fn server_error(body: &ErrorResponseBody) -> PgError {
    let (mut severity, mut message, mut code) = (String::new(), String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        let value = String::from_utf8_lossy(field.value_bytes());
        match field.type_() {
            b'S' => severity = value.into_owned(),
            b'M' => message = value.into_owned(),
            b'C' => code = value.into_owned(),
            _ => {}
        }
    }
    let line = format!("{severity}: {message} (SQLSTATE {code})");
    let mut shown: String = line.escape_debug().take(MAX_ERROR_TEXT).collect();
    if shown.len() < line.escape_debug().count() {
        shown.push('…');
    }
    PgError::Server(shown)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection, authenticated and ready for a query.
pub struct Connection {
    // Plain or TLS behind one pointer: one copy of the code for both.
    stream: Box<dyn Io>,
    read: BytesMut,
    write: BytesMut,
}

/// A query's rows, each value as Postgres's text form (`None` for NULL).
pub type Rows = Vec<Vec<Option<String>>>;

impl Connection {
    /// Connects, negotiates TLS per `config.ssl` (the certificate verified by `tls`) and authenticates. The caller
    /// bounds the whole of it with a timeout.
    pub async fn connect(config: &Config, tls: &TlsConfig, application_name: &str) -> Result<Self, PgError> {
        let tcp = TcpStream::connect((config.host.as_str(), config.port)).await?;
        // Small request/response messages: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let mut conn = Self {
            stream: Box::new(tcp),
            read: BytesMut::with_capacity(8192),
            write: BytesMut::with_capacity(1024),
        };
        if config.ssl != SslMode::Disable {
            frontend::ssl_request(&mut conn.write);
            conn.flush().await?;
            let answer = conn.stream.read_u8().await?;
            match (answer, config.ssl) {
                (b'S', _) => {
                    let name = ServerName::try_from(config.host.clone())
                        .map_err(|e| PgError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                    let stream = std::mem::replace(&mut conn.stream, Box::new(tokio::io::empty()));
                    let tls_stream = tokio_rustls::TlsConnector::from(tls.client())
                        .connect(name, stream)
                        .await
                        .map_err(PgError::Tls)?;
                    conn.stream = Box::new(tls_stream);
                }
                (b'N', SslMode::Require) => return Err(PgError::NoTls),
                (b'N', _) => {}
                _ => return Err(protocol("an answer to SSLRequest that is neither S nor N")),
            }
        }
        frontend::startup_message(
            [
                ("user", config.user.as_str()),
                ("database", config.dbname.as_str()),
                ("application_name", application_name),
                ("client_encoding", "UTF8"),
            ],
            &mut conn.write,
        )?;
        conn.flush().await?;
        conn.authenticate(config).await?;
        // Parameter statuses and the backend key until the server is ready.
        loop {
            match conn.message().await? {
                Message::ReadyForQuery(_) => return Ok(conn),
                Message::ErrorResponse(body) => return Err(server_error(&body)),
                Message::ParameterStatus(_) | Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                _ => return Err(protocol("an unexpected message before ReadyForQuery")),
            }
        }
    }

    async fn authenticate(&mut self, config: &Config) -> Result<(), PgError> {
        let password = || config.password.as_deref().map(str::as_bytes).ok_or(PgError::NoPassword);
        match self.message().await? {
            Message::AuthenticationOk => return Ok(()),
            Message::ErrorResponse(body) => return Err(server_error(&body)),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?, &mut self.write)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(config.user.as_bytes(), password()?, body.salt());
                frontend::password_message(hash.as_bytes(), &mut self.write)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut scram = false;
                while let Some(m) = mechanisms.next()? {
                    scram |= m == sasl::SCRAM_SHA_256;
                }
                if !scram {
                    return Err(PgError::AuthMethod("a SASL mechanism other than SCRAM-SHA-256"));
                }
                // No channel binding (as tokio-postgres without a binding from its TLS stream): the client says it
                // does not support it, and the server's signature is still checked at the end.
                let mut scram = sasl::ScramSha256::new(password()?, sasl::ChannelBinding::unsupported());
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, scram.message(), &mut self.write)?;
                self.flush().await?;
                match self.message().await? {
                    Message::AuthenticationSaslContinue(body) => scram.update(body.data())?,
                    Message::ErrorResponse(body) => return Err(server_error(&body)),
                    _ => return Err(protocol("expected SASL continue")),
                }
                frontend::sasl_response(scram.message(), &mut self.write)?;
                self.flush().await?;
                match self.message().await? {
                    Message::AuthenticationSaslFinal(body) => scram.finish(body.data())?,
                    Message::ErrorResponse(body) => return Err(server_error(&body)),
                    _ => return Err(protocol("expected SASL final")),
                }
            }
            Message::AuthenticationKerberosV5 => return Err(PgError::AuthMethod("Kerberos V5")),
            Message::AuthenticationScmCredential => return Err(PgError::AuthMethod("SCM credential")),
            Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => {
                return Err(PgError::AuthMethod("GSSAPI"));
            }
            Message::AuthenticationSspi => return Err(PgError::AuthMethod("SSPI")),
            _ => return Err(protocol("an unexpected message during authentication")),
        }
        self.flush().await?;
        match self.message().await? {
            Message::AuthenticationOk => Ok(()),
            Message::ErrorResponse(body) => Err(server_error(&body)),
            _ => Err(protocol("expected AuthenticationOk")),
        }
    }

    /// Runs `sql` through the simple-query protocol (one statement; values inlined with
    /// [`postgres_protocol::escape::escape_literal`]) and returns its rows as text.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, PgError> {
        frontend::query(sql, &mut self.write)?;
        self.flush().await?;
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        let mut error = None;
        loop {
            match self.message().await? {
                Message::ReadyForQuery(_) => break,
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    bytes = bytes.saturating_add(buffer.len());
                    if rows.len() >= MAX_ROWS || bytes > MAX_ANSWER {
                        // Read on to ReadyForQuery so the connection stays usable; the answer is refused.
                        error.get_or_insert_with(|| {
                            protocol(format!("an answer of more than {MAX_ROWS} rows or {MAX_ANSWER} bytes"))
                        });
                        continue;
                    }
                    let mut values = Vec::new();
                    let mut ranges = body.ranges();
                    while let Some(range) = ranges.next()? {
                        values.push(match range {
                            None => None,
                            Some(r) => {
                                let bytes = buffer.get(r).ok_or_else(|| protocol("a value past its row"))?;
                                Some(
                                    std::str::from_utf8(bytes)
                                        .map_err(|_| protocol("a value that is not UTF-8"))?
                                        .to_owned(),
                                )
                            }
                        });
                    }
                    rows.push(values);
                }
                Message::ErrorResponse(body) => {
                    error.get_or_insert_with(|| server_error(&body));
                }
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_) => {}
                _ => return Err(protocol("an unexpected message in a query's answer")),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Says goodbye (Terminate) and closes; errors are of no use here and ignored.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    async fn flush(&mut self) -> Result<(), PgError> {
        self.stream.write_all(&self.write).await?;
        self.stream.flush().await?;
        self.write.clear();
        Ok(())
    }

    /// The next whole message, at most [`MAX_MESSAGE`] bytes.
    async fn message(&mut self) -> Result<Message, PgError> {
        loop {
            if self.read.len() >= 5 {
                let len = (&self.read[1..5]).get_u32() as usize;
                if len > MAX_MESSAGE {
                    return Err(protocol(format!("a message of {len} bytes (at most {MAX_MESSAGE})")));
                }
            }
            if let Some(message) = Message::parse(&mut self.read)? {
                return Ok(message);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(PgError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_defaults_and_parameters() {
        let c = Config::parse("postgres://alice:p%40ss@db.example:6543/app?sslmode=require").expect("parses");
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str(), c.ssl),
            ("db.example", 6543, "alice", "app", SslMode::Require)
        );
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"));
        let c = Config::parse("postgresql://bob@127.0.0.1").expect("parses");
        assert_eq!(
            (c.port, c.dbname.as_str(), c.ssl, c.password),
            (5432, "bob", SslMode::Prefer, None)
        );
        let c = Config::parse("postgres://bob@[::1]:5/x?password=s%20t&sslmode=disable").expect("parses");
        assert_eq!((c.host.as_str(), c.port, c.ssl), ("::1", 5, SslMode::Disable));
        assert_eq!(c.password.as_deref(), Some("s t"));
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_their_values() {
        for (url, says) in [
            ("mysql://a@b/c", "scheme"),
            ("postgres://b/c", "no user"),
            ("postgres://a:secret@b/c?sslmode=secret", "sslmode"),
            ("postgres://a@b/c?secret=1", "unknown parameter"),
            ("postgres://a@b/c?port=secret", "port"),
            ("not a url secret", "not a URL"),
        ] {
            let e = Config::parse(url).expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret") || says == "unknown parameter", "{url}: {e}");
        }
    }

    /// A server on loopback that reads the startup message and then writes `answer`.
    async fn server(answer: Vec<u8>) -> Config {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let len = socket.read_u32().await.expect("length") as usize;
            let mut startup = vec![0; len - 4];
            socket.read_exact(&mut startup).await.expect("startup");
            socket.write_all(&answer).await.expect("answer");
            // Holds the connection open until the client is done.
            let _ = socket.read_u8().await;
        });
        Config::parse(&format!("postgres://u:p@127.0.0.1:{port}/d?sslmode=disable")).expect("url")
    }

    /// Connects, failing the test (not hanging) when no answer comes within five seconds.
    async fn refused(config: &Config) -> PgError {
        let tls = TlsConfig::new(None).expect("system roots");
        let connect = Connection::connect(config, &tls, "t");
        match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
            Ok(Err(error)) => error,
            Ok(Ok(_)) => panic!("connected"),
            Err(_) => panic!("no answer within 5 s"),
        }
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_before_it_is_read() {
        let mut answer = vec![b'R'];
        answer.extend_from_slice(&(200 * 1024 * 1024u32).to_be_bytes());
        let config = server(answer).await;
        let error = refused(&config).await;
        assert!(error.to_string().contains("a message of 209715200 bytes"), "{error}");
    }

    #[tokio::test]
    async fn the_server_error_is_escaped_and_cut() {
        let mut fields = Vec::new();
        fields.extend_from_slice(b"SFATAL\0C28P01\0M");
        fields.extend_from_slice(b"bad\n\x1b[31mred");
        fields.extend_from_slice(&[b'x'; 2000]);
        fields.extend_from_slice(b"\0\0");
        let mut answer = vec![b'E'];
        answer.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        answer.extend_from_slice(&fields);
        let config = server(answer).await;
        let error = refused(&config).await.to_string();
        assert!(
            error.starts_with("server error: FATAL: bad\\n\\u{1b}[31mred"),
            "{error}"
        );
        assert!(!error.contains('\n') && !error.contains('\x1b'), "{error}");
        assert!(error.ends_with('…') && error.len() < 600, "{error}");
    }
}
