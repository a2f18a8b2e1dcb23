//! AWS MSK IAM's credentials through IRSA's web identity, against a real HTTP server on 127.0.0.1 standing in for
//! STS: the provider is driven through its public API (`kafka.sasl.aws.sts_endpoint` points at the server), and
//! each answer STS might give (good, an error, garbage, a huge body, a redirect) is served for real.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use base64::Engine;
use cdc_orchestrator::auth::aws::{AwsEnv, Clock, MskIamTokenProvider, REFRESH_BEFORE_EXPIRY};
use cdc_orchestrator::auth::{TokenError, TokenProvider};
use cdc_orchestrator::config::AwsMskIamConfig;

/// One scripted answer: status, extra headers, body.
type Answer = (StatusCode, Vec<(&'static str, String)>, Vec<u8>);

/// A request as STS received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    content_type: String,
    body: String,
}

/// An HTTP server that answers each request with the next scripted answer and records what it received.
struct FakeSts {
    url: String,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeSts {
    async fn start() -> FakeSts {
        let answers: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (script, log) = (Arc::clone(&answers), Arc::clone(&received));
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (script, log) = (Arc::clone(&script), Arc::clone(&log));
            async move {
                let method = request.method().to_string();
                let content_type = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .expect("request body");
                log.lock().expect("log").push(Received {
                    method,
                    content_type,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let (status, headers, body) = script.lock().expect("script").pop_front().unwrap_or((
                    StatusCode::SERVICE_UNAVAILABLE,
                    Vec::new(),
                    b"no answer scripted".to_vec(),
                ));
                let mut response = Response::builder().status(status);
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                response.body(Body::from(body)).expect("response")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeSts { url, answers, received }
    }

    fn answer(&self, status: StatusCode, headers: Vec<(&'static str, String)>, body: impl Into<Vec<u8>>) {
        self.answers
            .lock()
            .expect("script")
            .push_back((status, headers, body.into()));
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.the-projected-service-account-token.sig";
const ROLE: &str = "arn:aws:iam::123456789012:role/cdc-sidecar";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
const SESSION_TOKEN: &str = "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE";

/// STS's answer to AssumeRoleWithWebIdentity (the documented example's shape), expiring at `expiration`.
fn good_answer(key_id: &str, expiration: SystemTime) -> String {
    let expiration =
        chrono::DateTime::<chrono::Utc>::from(expiration).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleWithWebIdentityResult><AssumedRoleUser>\
         <Arn>arn:aws:sts::123456789012:assumed-role/cdc-sidecar/cdc-orchestrator</Arn>\
         <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:cdc-orchestrator</AssumedRoleId></AssumedRoleUser>\
         <Credentials><SessionToken>{SESSION_TOKEN}</SessionToken><SecretAccessKey>{SECRET}</SecretAccessKey>\
         <Expiration>{expiration}</Expiration><AccessKeyId>{key_id}</AccessKeyId></Credentials>\
         </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    )
}

/// A web-identity setup: the token file, and the provider's environment and configuration.
struct Irsa {
    _dir: tempfile::TempDir,
    token_file: PathBuf,
    env: AwsEnv,
    aws: AwsMskIamConfig,
}

fn irsa(sts: &FakeSts) -> Irsa {
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WEB_TOKEN}\n")).expect("token file");
    let env = AwsEnv::from_pairs([
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().expect("path")),
        ("AWS_ROLE_ARN", ROLE),
        ("AWS_REGION", "eu-west-1"),
    ]);
    let aws = AwsMskIamConfig {
        sts_endpoint: sts.url.clone(),
        ..Default::default()
    };
    Irsa {
        _dir: dir,
        token_file,
        env,
        aws,
    }
}

/// A clock the test moves.
fn clock(start: SystemTime) -> (Arc<Mutex<SystemTime>>, Clock) {
    let now = Arc::new(Mutex::new(start));
    let read = Arc::clone(&now);
    (now, Arc::new(move || *read.lock().expect("clock")))
}

fn url_of(token: &str) -> String {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("base64url");
    String::from_utf8(bytes).expect("UTF-8")
}

/// `error`'s text, after checking that it is one that may heal and that it shows no secret.
fn unavailable(error: TokenError) -> String {
    let text = error.to_string();
    assert!(matches!(error, TokenError::Unavailable { .. }), "{error:?}");
    for secret in [WEB_TOKEN, SECRET, SESSION_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
    text
}

#[tokio::test]
async fn a_good_sts_answer_signs_tokens_and_is_renewed_before_it_expires() {
    let sts = FakeSts::start().await;
    let setup = irsa(&sts);
    let start = SystemTime::now();
    let (now, clock) = clock(start);
    let first_expiry = start + Duration::from_secs(3600);
    sts.answer(StatusCode::OK, vec![], good_answer("ASIAFIRSTFIRSTFIRST", first_expiry));
    let provider =
        MskIamTokenProvider::with_clock(&setup.aws, &setup.env, Duration::from_secs(5), clock).expect("provider");
    assert_eq!(provider.region(), "eu-west-1");

    let token = provider.fetch().await.expect("token");
    let url = url_of(token.value.expose());
    assert!(
        url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"),
        "{url}"
    );
    assert!(url.contains("X-Amz-Credential=ASIAFIRSTFIRSTFIRST%2F"), "{url}");
    assert!(
        url.contains("X-Amz-Security-Token=AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp%2BIEXAMPLE&"),
        "{url}"
    );
    assert!(!url.contains(SECRET) && !url.contains(WEB_TOKEN), "{url}");
    assert_eq!(
        token.principal.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/cdc-sidecar/cdc-orchestrator")
    );
    let received = sts.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert!(
        received[0]
            .content_type
            .starts_with("application/x-www-form-urlencoded"),
        "{received:?}"
    );
    assert_eq!(
        received[0].body,
        format!(
            "Action=AssumeRoleWithWebIdentity&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fcdc-sidecar\
             &RoleSessionName=cdc-orchestrator&Version=2011-06-15&WebIdentityToken={}",
            WEB_TOKEN
        )
    );

    // Credentials are cached while far from their expiry: no second call.
    *now.lock().expect("clock") = first_expiry - REFRESH_BEFORE_EXPIRY - Duration::from_secs(1);
    provider.fetch().await.expect("token");
    assert_eq!(sts.received().len(), 1);

    // Within REFRESH_BEFORE_EXPIRY of it they are renewed, with the token file read again (the kubelet rotates it).
    std::fs::write(&setup.token_file, "rotated-token").expect("rotate");
    *now.lock().expect("clock") = first_expiry - REFRESH_BEFORE_EXPIRY;
    let second_expiry = first_expiry + Duration::from_secs(3600);
    sts.answer(StatusCode::OK, vec![], good_answer("ASIASECONDSECONDSE", second_expiry));
    let renewed = provider.fetch().await.expect("token");
    assert!(url_of(renewed.value.expose()).contains("X-Amz-Credential=ASIASECONDSECONDSE%2F"));
    let received = sts.received();
    assert_eq!(received.len(), 2);
    assert!(
        received[1].body.ends_with("&WebIdentityToken=rotated-token"),
        "{received:?}"
    );
}

#[tokio::test]
async fn a_failed_renewal_keeps_signing_with_the_old_credentials_until_their_last_minute() {
    let sts = FakeSts::start().await;
    let setup = irsa(&sts);
    let start = SystemTime::now();
    let (now, clock) = clock(start);
    let expiry = start + Duration::from_secs(600);
    sts.answer(StatusCode::OK, vec![], good_answer("ASIASHORTSHORTSHOR", expiry));
    let provider =
        MskIamTokenProvider::with_clock(&setup.aws, &setup.env, Duration::from_secs(5), clock).expect("provider");
    let first = provider.fetch().await.expect("token");
    // The credentials end before the token's 900 s would: the token ends with them.
    assert!(first.expires_at <= expiry, "{:?} > {expiry:?}", first.expires_at);

    // STS is down now; the credentials have 5 minutes left, so they still sign.
    sts.answer(StatusCode::SERVICE_UNAVAILABLE, vec![], "<ErrorResponse/>");
    *now.lock().expect("clock") = start + Duration::from_secs(300);
    let kept = provider.fetch().await.expect("the old credentials still sign");
    assert!(url_of(kept.value.expose()).contains("ASIASHORTSHORTSHOR"));
    assert_eq!(sts.received().len(), 2, "a renewal was tried");

    // In their last minute they do not: the error says what failed.
    sts.answer(StatusCode::SERVICE_UNAVAILABLE, vec![], "<ErrorResponse/>");
    *now.lock().expect("clock") = expiry - Duration::from_secs(30);
    let error = unavailable(provider.fetch().await.expect_err("expired"));
    assert!(error.contains("HTTP 503"), "{error}");
}

#[tokio::test]
async fn an_sts_error_is_one_redacted_line_with_its_code_and_message() {
    let sts = FakeSts::start().await;
    let setup = irsa(&sts);
    sts.answer(
        StatusCode::BAD_REQUEST,
        vec![("content-type", "text/xml".to_owned())],
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>InvalidIdentityToken</Code><Message>Token {WEB_TOKEN} has &quot;expired&quot;\nretry</Message>\
             </Error><RequestId>x</RequestId></ErrorResponse>"
        ),
    );
    let provider = MskIamTokenProvider::new(&setup.aws, &setup.env, Duration::from_secs(5)).expect("provider");
    let error = unavailable(provider.fetch().await.expect_err("refused"));
    assert!(
        error.contains(&format!(
            "web identity (role {ROLE}, token file {}): STS refused AssumeRoleWithWebIdentity: HTTP 400: \
             InvalidIdentityToken: Token <redacted> has \"expired\"",
            setup.token_file.display()
        )),
        "{error}"
    );
}

#[tokio::test]
async fn garbage_a_huge_body_and_an_empty_token_file_are_errors_that_may_heal() {
    let sts = FakeSts::start().await;
    let setup = irsa(&sts);
    let provider = MskIamTokenProvider::new(&setup.aws, &setup.env, Duration::from_secs(5)).expect("provider");

    sts.answer(StatusCode::OK, vec![], "<html><body>captive portal</body></html>");
    let error = unavailable(provider.fetch().await.expect_err("garbage"));
    assert!(
        error.contains("STS answered HTTP 200 but its answer has no <Credentials>"),
        "{error}"
    );

    // A body past the bound, whose credentials would otherwise be good: refused without being held whole.
    let mut huge = good_answer("ASIAHUGEHUGEHUGEHU", SystemTime::now() + Duration::from_secs(3600));
    huge.push_str(&" ".repeat(200 * 1024));
    sts.answer(StatusCode::OK, vec![], huge);
    let error = unavailable(provider.fetch().await.expect_err("huge"));
    assert!(error.contains("the answer is longer than 65536 bytes"), "{error}");

    // Credentials that are already expired (a wrong clock, a lying STS) are not used.
    sts.answer(
        StatusCode::OK,
        vec![],
        good_answer("ASIAOLDOLDOLDOLDOL", SystemTime::now() - Duration::from_secs(1)),
    );
    let error = unavailable(provider.fetch().await.expect_err("expired"));
    assert!(error.contains("its credentials expired at"), "{error}");

    std::fs::write(&setup.token_file, "\n").expect("empty");
    let error = unavailable(provider.fetch().await.expect_err("empty token file"));
    assert!(error.ends_with("the token file is empty"), "{error}");
    assert_eq!(sts.received().len(), 3, "no call without a token");
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_token_goes_nowhere_else() {
    let sts = FakeSts::start().await;
    let elsewhere = FakeSts::start().await;
    elsewhere.answer(
        StatusCode::OK,
        vec![],
        good_answer("ASIAELSEWHEREELSEW", SystemTime::now() + Duration::from_secs(3600)),
    );
    let setup = irsa(&sts);
    sts.answer(
        StatusCode::TEMPORARY_REDIRECT,
        vec![("location", elsewhere.url.clone())],
        "",
    );
    let provider = MskIamTokenProvider::new(&setup.aws, &setup.env, Duration::from_secs(5)).expect("provider");
    let error = unavailable(provider.fetch().await.expect_err("redirect"));
    assert!(error.contains("answered HTTP 307 (a redirect, not followed"), "{error}");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn an_sts_that_does_not_answer_in_time_is_an_error_within_the_timeout() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let sts = FakeSts::start().await;
    let mut setup = irsa(&sts);
    setup.aws.sts_endpoint = url;
    let provider = MskIamTokenProvider::new(&setup.aws, &setup.env, Duration::from_millis(300)).expect("provider");
    let started = std::time::Instant::now();
    let error = unavailable(provider.fetch().await.expect_err("timeout"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(error.contains("unreachable"), "{error}");
}
