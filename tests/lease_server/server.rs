//! A stand-in for the Kubernetes API server's Lease endpoints, for the elector's tests and the e2e script (no
//! registry ships an API server). It serves what the elector uses as the API server does: GET, POST (201; 409
//! AlreadyExists) and PUT (200; 409 Conflict on a stale `metadata.resourceVersion`) of
//! `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`, `resourceVersion` a global counter, the bearer
//! token checked (401), every error a `Status` body with the API server's messages; over TLS with its own CA.
//!
//! Faults on demand, in process through [`LeaseServer`]'s methods and at run time through a plain-HTTP control
//! endpoint on a second loopback port (`POST /control/<what>?...`, see [`control`]): refuse one client by its token
//! (hang or reset its requests), answer slowly, go away (refuse every connection), rotate the accepted tokens, and
//! answer garbage, a redirect or a huge body.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// How a blocked client's requests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Never answered (the client's timeout ends them).
    Hang,
    /// The connection is closed without an answer.
    Reset,
}

/// What every authenticated request is answered with, instead of the Lease API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The Lease API.
    Normal,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON of another kind.
    WrongKind,
    /// 307 to another address.
    Redirect,
    /// 200 with a 1 MiB body.
    Huge,
}

#[derive(Debug)]
struct State {
    /// Leases by `ns/name`.
    leases: HashMap<String, Value>,
    version: u64,
    tokens: HashSet<String>,
    blocked: HashMap<String, Block>,
    delay: Duration,
    away: bool,
    answer: Answer,
    requests: u64,
}

type Shared = Arc<Mutex<State>>;

/// A running stand-in; stops on drop.
pub struct LeaseServer {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// `http://127.0.0.1:<port>/control`.
    pub control_url: String,
    /// The CA that signs its certificate, PEM.
    pub ca_pem: String,
    state: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LeaseServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LeaseServer {
    /// Starts on two free loopback ports, accepting `tokens`.
    pub async fn start(tokens: &[&str]) -> LeaseServer {
        LeaseServer::start_on("127.0.0.1:0".parse().expect("address"), tokens).await
    }

    /// Starts on `addr` (port 0: any free one), the control endpoint on a free port of the same host.
    pub async fn start_on(addr: SocketAddr, tokens: &[&str]) -> LeaseServer {
        let state: Shared = Arc::new(Mutex::new(State {
            leases: HashMap::new(),
            version: 100,
            tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
            blocked: HashMap::new(),
            delay: Duration::ZERO,
            away: false,
            answer: Answer::Normal,
            requests: 0,
        }));
        let (ca_pem, acceptor) = tls();
        let listener = TcpListener::bind(addr).await.expect("bind the lease server");
        let port = listener.local_addr().expect("address").port();
        let control_listener = TcpListener::bind((addr.ip(), 0)).await.expect("bind the control port");
        let control_port = control_listener.local_addr().expect("address").port();
        let api = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    if state.lock().unwrap().away {
                        drop(stream);
                        continue;
                    }
                    let (state, acceptor) = (state.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let service = hyper::service::service_fn(move |request| api(state.clone(), request));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        let controller = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = control_listener.accept().await else {
                        continue;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                            let answer = control(&state, request.method(), request.uri().path(), request.uri().query());
                            async move { Ok::<_, Infallible>(answer) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        LeaseServer {
            url: format!("https://{}:{port}", host(addr)),
            control_url: format!("http://{}:{control_port}/control", host(addr)),
            ca_pem,
            state,
            tasks: vec![api, controller],
        }
    }

    /// Blocks the client that sends `token`.
    pub fn block(&self, token: &str, how: Block) {
        self.state.lock().unwrap().blocked.insert(token.to_owned(), how);
    }

    /// Serves the client that sends `token` again.
    pub fn unblock(&self, token: &str) {
        self.state.lock().unwrap().blocked.remove(token);
    }

    /// Delays every answer by `delay`.
    pub fn slow(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// Refuses every connection (`true`) or serves again.
    pub fn away(&self, away: bool) {
        self.state.lock().unwrap().away = away;
    }

    /// Accepts these tokens from now on, and no other.
    pub fn tokens(&self, tokens: &[&str]) {
        self.state.lock().unwrap().tokens = tokens.iter().map(|t| (*t).to_owned()).collect();
    }

    /// Answers every authenticated request so.
    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = answer;
    }

    /// The Lease `ns/name`, as stored.
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().leases.get(&format!("{ns}/{name}")).cloned()
    }

    /// The holder of Lease `ns/name`.
    pub fn holder(&self, ns: &str, name: &str) -> Option<String> {
        self.lease(ns, name)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    }

    /// Requests answered or refused so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }
}

fn host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// A fresh CA (PEM) and an acceptor with a certificate for `127.0.0.1` and `localhost` it signed (the tests' TLS
/// front uses it too).
pub fn tls() -> (String, tokio_rustls::TlsAcceptor) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cdc-orchestrator test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    let leaf_key = rcgen::KeyPair::generate().expect("server key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&leaf_key, &ca)
        .expect("server certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .expect("server config");
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    response
}

/// The API server's `Status` body.
fn status(code: StatusCode, reason: &str, message: &str, name: Option<&str>) -> Response<Full<Bytes>> {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    if let Some(name) = name {
        body["details"] = json!({"name": name, "group": "coordination.k8s.io", "kind": "leases"});
    }
    reply(code, body)
}

/// One request to the Lease API; `Err` closes the connection without an answer.
async fn api(state: Shared, request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let (delay, block, authorized, answer) = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        if s.away {
            // Gone: connections kept alive from before are closed too.
            return Err("away".to_owned());
        }
        (
            s.delay,
            s.blocked.get(&token).copied(),
            s.tokens.contains(&token),
            s.answer,
        )
    };
    match block {
        Some(Block::Hang) => std::future::pending::<()>().await,
        Some(Block::Reset) => return Err("blocked".to_owned()),
        None => {}
    }
    tokio::time::sleep(delay).await;
    if !authorized {
        return Ok(status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None));
    }
    match answer {
        Answer::Normal => {}
        Answer::Garbage => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"<html>\x1b[2J not json</html>")));
            r.headers_mut()
                .insert("content-type", "text/html".parse().expect("header"));
            return Ok(r);
        }
        Answer::WrongKind => return Ok(reply(StatusCode::OK, json!({"kind": "Pod", "metadata": {}}))),
        Answer::Redirect => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            r.headers_mut()
                .insert("location", "https://elsewhere.invalid/".parse().expect("header"));
            return Ok(r);
        }
        Answer::Huge => return Ok(Response::new(Full::new(Bytes::from(vec![b' '; 1 << 20])))),
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                "too large",
                None,
            ));
        }
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (ns, name) = match parts.as_slice() {
        ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases"] => (*ns, None),
        ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", name] => (*ns, Some(*name)),
        _ => {
            return Ok(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ));
        }
    };
    let mut s = state.lock().unwrap();
    Ok(match (method, name) {
        (Method::GET, Some(name)) => match s.leases.get(&format!("{ns}/{name}")) {
            Some(lease) => reply(StatusCode::OK, lease.clone()),
            None => not_found(name),
        },
        (Method::POST, None) => {
            let Ok(mut lease) = serde_json::from_slice::<Value>(&body) else {
                return Ok(bad_request());
            };
            let Some(name) = lease["metadata"]["name"].as_str().map(str::to_owned) else {
                return Ok(bad_request());
            };
            let key = format!("{ns}/{name}");
            if s.leases.contains_key(&key) {
                return Ok(status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                    Some(&name),
                ));
            }
            s.version += 1;
            lease["metadata"]["namespace"] = json!(ns);
            lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
            lease["metadata"]["uid"] = json!(format!("uid-{}", s.version));
            lease["apiVersion"] = json!("coordination.k8s.io/v1");
            lease["kind"] = json!("Lease");
            s.leases.insert(key, lease.clone());
            reply(StatusCode::CREATED, lease)
        }
        (Method::PUT, Some(name)) => {
            let Ok(mut lease) = serde_json::from_slice::<Value>(&body) else {
                return Ok(bad_request());
            };
            let key = format!("{ns}/{name}");
            let Some(current) = s.leases.get(&key) else {
                return Ok(not_found(name));
            };
            let sent = lease["metadata"]["resourceVersion"].as_str();
            if sent.is_some() && sent != current["metadata"]["resourceVersion"].as_str() {
                return Ok(status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been \
                         modified; please apply your changes to the latest version and try again"
                    ),
                    Some(name),
                ));
            }
            s.version += 1;
            lease["metadata"]["name"] = json!(name);
            lease["metadata"]["namespace"] = json!(ns);
            lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
            lease["apiVersion"] = json!("coordination.k8s.io/v1");
            lease["kind"] = json!("Lease");
            s.leases.insert(key, lease.clone());
            reply(StatusCode::OK, lease)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        ),
    })
}

fn not_found(name: &str) -> Response<Full<Bytes>> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("leases.coordination.k8s.io \"{name}\" not found"),
        Some(name),
    )
}

fn bad_request() -> Response<Full<Bytes>> {
    status(StatusCode::BAD_REQUEST, "BadRequest", "the body is not a Lease", None)
}

/// The control endpoint: `POST /control/block?token=T&how=hang|reset`, `/control/unblock?token=T`,
/// `/control/slow?ms=N`, `/control/away?on=true|false`, `/control/tokens?set=A,B`,
/// `/control/answer?mode=normal|garbage|wrong-kind|redirect|huge`; `GET /control/lease?ns=N&name=L` shows a Lease.
fn control(state: &Shared, method: &Method, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    let ok = || reply(StatusCode::OK, json!({"ok": true}));
    let bad = |why: &str| reply(StatusCode::BAD_REQUEST, json!({"error": why}));
    match (method, path) {
        (&Method::GET, "/control/lease") => {
            let lease = s.leases.get(&format!("{}/{}", arg("ns"), arg("name"))).cloned();
            reply(StatusCode::OK, lease.unwrap_or(Value::Null))
        }
        (&Method::POST, "/control/block") => {
            let how = match arg("how").as_str() {
                "" | "hang" => Block::Hang,
                "reset" => Block::Reset,
                _ => return bad("how: hang or reset"),
            };
            s.blocked.insert(arg("token"), how);
            ok()
        }
        (&Method::POST, "/control/unblock") => {
            s.blocked.remove(&arg("token"));
            ok()
        }
        (&Method::POST, "/control/slow") => match arg("ms").parse() {
            Ok(ms) => {
                s.delay = Duration::from_millis(ms);
                ok()
            }
            Err(_) => bad("ms: a number"),
        },
        (&Method::POST, "/control/away") => {
            s.away = arg("on") != "false";
            ok()
        }
        (&Method::POST, "/control/tokens") => {
            s.tokens = arg("set")
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            ok()
        }
        (&Method::POST, "/control/answer") => {
            s.answer = match arg("mode").as_str() {
                "normal" => Answer::Normal,
                "garbage" => Answer::Garbage,
                "wrong-kind" => Answer::WrongKind,
                "redirect" => Answer::Redirect,
                "huge" => Answer::Huge,
                _ => return bad("mode: normal, garbage, wrong-kind, redirect or huge"),
            };
            ok()
        }
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "unknown control"})),
    }
}
