use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::*;

const SECRET: &str = "s3cr3t:with/odd+chars";

/// A JWT with `claims` (unsigned: this client never checks signatures).
fn jwt(claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2lnbmF0dXJl")
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn the_answer_gives_the_token_its_earliest_expiry_and_the_jwts_subject() {
    let now = at(1_000_000);
    let token = jwt(&serde_json::json!({"sub": "cdc-sidecar", "exp": 1_000_100}));
    let body = serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600});
    let got = parse_answer(body.to_string().as_bytes(), now).expect("a token");
    assert_eq!(got.value.expose(), token);
    assert_eq!(
        got.expires_at,
        at(1_000_100),
        "the exp claim is earlier than expires_in"
    );
    assert_eq!(got.principal.as_deref(), Some("cdc-sidecar"));
    // expires_in earlier than exp, and as text.
    let body = serde_json::json!({"access_token": token, "expires_in": "60"});
    assert_eq!(
        parse_answer(body.to_string().as_bytes(), now).unwrap().expires_at,
        at(1_000_060)
    );
    // An opaque token: expires_in alone, no principal.
    let body = br#"{"access_token":"opaque-token_1~","expires_in":30.5}"#;
    let got = parse_answer(body, now).expect("an opaque token");
    assert_eq!(got.expires_at, now + Duration::from_millis(30_500));
    assert_eq!(got.principal, None);
    // A JWT with exp and no expires_in.
    let body = serde_json::json!({"access_token": token});
    assert_eq!(
        parse_answer(body.to_string().as_bytes(), now).unwrap().expires_at,
        at(1_000_100)
    );
}

#[test]
fn every_unusable_answer_says_why() {
    let now = at(1_000_000);
    let expired = jwt(&serde_json::json!({"sub": "x", "exp": 999_999}));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"<html>Service Unavailable</html>".to_vec(), "not a JSON token answer"),
        (b"".to_vec(), "not a JSON token answer"),
        (b"[1,2]".to_vec(), "not a JSON token answer"),
        (
            br#"{"token_type":"Bearer","expires_in":60}"#.to_vec(),
            "no access_token",
        ),
        (br#"{"access_token":" ","expires_in":60}"#.to_vec(), "no access_token"),
        (
            br#"{"access_token":42,"expires_in":60}"#.to_vec(),
            "not a JSON token answer",
        ),
        (
            br#"{"access_token":"opaque"}"#.to_vec(),
            "no expires_in and the token no exp claim",
        ),
        (
            br#"{"access_token":"opaque","expires_in":0}"#.to_vec(),
            "not a positive number",
        ),
        (
            br#"{"access_token":"opaque","expires_in":-5}"#.to_vec(),
            "not a positive number",
        ),
        (
            br#"{"access_token":"opaque","expires_in":"soon"}"#.to_vec(),
            "no expires_in",
        ),
        (
            br#"{"access_token":"opaque","expires_in":[1]}"#.to_vec(),
            "not a number",
        ),
        (
            br#"{"access_token":"a\u0001auth=x","expires_in":60}"#.to_vec(),
            "RFC 6750",
        ),
        (br#"{"access_token":"a b","expires_in":60}"#.to_vec(), "RFC 6750"),
        (
            serde_json::json!({"access_token": expired, "expires_in": 60})
                .to_string()
                .into_bytes(),
            "expired already",
        ),
    ];
    for (body, why) in cases {
        let error = match parse_answer(&body, now) {
            Ok(token) => panic!(
                "{:?} gave a token expiring {:?}",
                String::from_utf8_lossy(&body),
                token.expires_at
            ),
            Err(error) => error,
        };
        assert!(error.contains(why), "{:?}: {error}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn form_values_are_encoded_as_a_browser_encodes_them() {
    assert_eq!(form_encode("kafka read&write=1"), "kafka+read%26write%3D1");
    assert_eq!(form_encode("api://x/é"), "api%3A%2F%2Fx%2F%C3%A9");
    assert_eq!(form_encode("a-b.c_d*"), "a-b.c_d*");
}

/// What the test endpoint answers.
#[derive(Clone)]
enum Answer {
    Token(String),
    Status(u16, String),
    Garbage,
    Redirect(String),
    Huge,
    Never,
}

/// A token endpoint on 127.0.0.1 answering every request with `answer`; the requests it saw.
struct Endpoint {
    url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn endpoint(answer: Answer) -> Endpoint {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let app = Router::new().route(
        "/token",
        post(move |headers: HeaderMap, body: Bytes| {
            record.lock().unwrap().push((headers, body));
            let answer = answer.clone();
            async move {
                match answer {
                    Answer::Token(token) => {
                        axum::Json(serde_json::json!({"access_token": token, "expires_in": 60})).into_response()
                    }
                    Answer::Status(code, body) => (
                        AxumStatus::from_u16(code).unwrap(),
                        [(header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                        .into_response(),
                    Answer::Garbage => "\u{1b}[31m<html>oops\n".into_response(),
                    Answer::Redirect(to) => (AxumStatus::FOUND, [(header::LOCATION, to)], "").into_response(),
                    Answer::Huge => "x".repeat(MAX_ANSWER_BYTES + 1).into_response(),
                    Answer::Never => {
                        std::future::pending::<()>().await;
                        Response::new(axum::body::Body::empty())
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/token", listener.local_addr().unwrap().port());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Endpoint { url, seen, task }
}

fn oauth(url: &str) -> OauthConfig {
    OauthConfig {
        token_endpoint: url.to_owned(),
        client_id: "cdc".to_owned(),
        client_secret: Secret::new(SECRET),
        scope: "kafka read".to_owned(),
        audience: "https://kafka.example/".to_owned(),
        extensions: Default::default(),
    }
}

async fn fetch(url: &str, timeout: Duration) -> Result<BearerToken, TokenError> {
    OidcProvider::new(&oauth(url), timeout).unwrap().fetch().await
}

/// The one line a failure is, with its causes.
fn line(error: &TokenError) -> String {
    assert!(matches!(error, TokenError::Unavailable { .. }), "{error:?}");
    crate::logging::chain(error).to_string()
}

#[tokio::test]
async fn the_grant_is_a_client_credentials_post_with_basic_authentication() {
    let token = jwt(&serde_json::json!({"sub": "cdc-sidecar", "exp": 4_000_000_000u64}));
    let server = endpoint(Answer::Token(token.clone())).await;
    let got = fetch(&server.url, Duration::from_secs(5)).await.expect("a token");
    assert_eq!(got.value.expose(), token);
    assert_eq!(got.principal.as_deref(), Some("cdc-sidecar"));
    let seen = server.seen.lock().unwrap();
    let (headers, body) = &seen[0];
    let basic = headers[header::AUTHORIZATION].to_str().unwrap();
    let decoded = STANDARD.decode(basic.strip_prefix("Basic ").unwrap()).unwrap();
    assert_eq!(
        decoded,
        format!("cdc:{SECRET}").as_bytes(),
        "id and secret as written, as Kafka sends them"
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-www-form-urlencoded");
    assert_eq!(
        &body[..],
        b"grant_type=client_credentials&scope=kafka+read&audience=https%3A%2F%2Fkafka.example%2F"
    );
}

#[tokio::test]
async fn a_refusal_names_the_endpoint_and_the_status_and_never_the_secret() {
    // The identity provider echoes the secret in its description: it is masked.
    let description = format!("client secret {SECRET} is wrong");
    let body = serde_json::json!({"error": "invalid_client", "error_description": description}).to_string();
    let server = endpoint(Answer::Status(401, body)).await;
    let error = fetch(&server.url, Duration::from_secs(5)).await.unwrap_err();
    let line = line(&error);
    assert!(
        line.starts_with(&format!("kafka.sasl.oauth.token_endpoint {}: HTTP 401: the client id or secret was refused (invalid_client: client secret <redacted> is wrong)", server.url)),
        "{line}"
    );
    assert!(!line.contains(SECRET), "{line}");
    let forbidden = endpoint(Answer::Status(403, "not json".to_owned())).await;
    let line = self::line(&fetch(&forbidden.url, Duration::from_secs(5)).await.unwrap_err());
    assert!(
        line.ends_with(": HTTP 403: the client id or secret was refused"),
        "{line}"
    );
    let failing = endpoint(Answer::Status(503, "{}".to_owned())).await;
    let line = self::line(&fetch(&failing.url, Duration::from_secs(5)).await.unwrap_err());
    assert!(line.ends_with(": HTTP 503: the token endpoint failed"), "{line}");
}

#[tokio::test]
async fn garbage_a_huge_answer_and_a_redirect_are_each_their_own_line() {
    let garbage = endpoint(Answer::Garbage).await;
    let line = line(&fetch(&garbage.url, Duration::from_secs(5)).await.unwrap_err());
    assert!(line.contains(": the answer is not a JSON token answer ("), "{line}");
    assert!(
        !line.contains('\u{1b}') && !line.contains("oops"),
        "the body is not shown: {line}"
    );

    let huge = endpoint(Answer::Huge).await;
    let line = self::line(&fetch(&huge.url, Duration::from_secs(5)).await.unwrap_err());
    assert!(
        line.ends_with(&format!(": answer larger than {MAX_ANSWER_BYTES} bytes")),
        "{line}"
    );

    // The redirect's target would get the client secret if it were followed.
    let target = endpoint(Answer::Token("stolen".to_owned())).await;
    let redirect = endpoint(Answer::Redirect(target.url.clone())).await;
    let line = self::line(&fetch(&redirect.url, Duration::from_secs(5)).await.unwrap_err());
    assert!(
        line.ends_with(": HTTP 302: a redirect, which is not followed"),
        "{line}"
    );
    assert!(target.seen.lock().unwrap().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn an_endpoint_that_is_down_or_silent_is_unavailable_in_time() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://user:hunter2@127.0.0.1:{port}/token");
    let line = line(&fetch(&down, Duration::from_secs(5)).await.unwrap_err());
    assert!(
        line.starts_with(&format!(
            "kafka.sasl.oauth.token_endpoint http://user:<redacted>@127.0.0.1:{port}/token: unreachable: "
        )),
        "{line}"
    );
    assert!(!line.contains("hunter2") && !line.contains(SECRET), "{line}");

    let silent = endpoint(Answer::Never).await;
    let began = std::time::Instant::now();
    let line = self::line(&fetch(&silent.url, Duration::from_millis(300)).await.unwrap_err());
    assert!(line.contains(": no answer in time (kafka.request_timeout)"), "{line}");
    assert!(began.elapsed() < Duration::from_secs(5), "{:?}", began.elapsed());
}

#[test]
fn an_endpoint_that_is_no_http_url_is_a_configuration_error() {
    for url in ["ftp://idp/token", "not a url"] {
        match OidcProvider::new(&oauth(url), Duration::from_secs(1)) {
            Err(TokenError::Config { key, .. }) => assert_eq!(key, "kafka.sasl.oauth.token_endpoint"),
            other => panic!("{url}: {other:?}"),
        }
    }
}
