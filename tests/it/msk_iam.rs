//! AWS MSK IAM's credentials through IRSA's web identity, against a real HTTP server on 127.0.0.1 standing in for
//! STS: the provider is driven through its public API (`kafka.sasl.aws.sts_endpoint` points at the server), and
//! each answer STS might give (good, an error, garbage, a huge body, a redirect) is served for real.
//!
//! Then on the wire: the sidecar logs in to a real tansu broker with its MSK IAM token, through TLS and the SASL
//! front ([`support::sasl_proxy::SaslProxy::start_msk_iam`]), which recomputes each token's SigV4 signature with
//! its own implementation ([`support::msk_iam::Verifier`]); signed with keys from the environment and with IRSA's
//! credentials from the STS stand-in; refused for a wrong secret, region or an expired token; and the real binary
//! stops at start, naming the variable, when its environment's credentials have expired.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use base64::Engine;
use cdc_orchestrator::auth::aws::{AwsEnv, Clock, MskIamTokenProvider, REFRESH_BEFORE_EXPIRY};
use cdc_orchestrator::auth::{TokenError, TokenProvider};
use cdc_orchestrator::config::{AwsMskIamConfig, Config, KafkaConfig, SaslConfig, SaslMechanism, Secret};
use cdc_orchestrator::kafka::connection::{Connection, Security, WireError};
use cdc_orchestrator::kafka::samples;
use cdc_orchestrator::kafka::sasl::Login;
use cdc_orchestrator::kafka::token::{RETRY_BACKOFF, TokenCache};
use cdc_orchestrator::kafka::watcher::{BrokerError, Watcher};
use kafka_protocol::error::ResponseError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::msk_iam::{self as verifier, Verifier};
use crate::support::sasl_proxy::SaslProxy;
use crate::support::sidecar::command;
use crate::support::tls_proxy::TlsProxy;
use crate::support::{self, Broker};

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

const REGION: &str = "eu-west-1";
const ENV_KEY_ID: &str = "AKIAENVIRONMENTKEY01";
/// A secret with the characters real ones have ('/', '+'), which must be signed, never sent.
const ENV_SECRET: &str = "env/Secret+Key0123456789abcdefghijklmnop";
const ENV_SESSION_TOKEN: &str = "FwoGZXIvYXdzEEnvSessionToken/with+slash=";

/// A tansu broker behind the MSK IAM front behind TLS (MSK serves IAM on its TLS port only): client -> TLS proxy
/// -> SASL front -> tansu, which advertises the TLS proxy.
struct MskCluster {
    _broker: Broker,
    sasl: SaslProxy,
    tls: TlsProxy,
    _dir: tempfile::TempDir,
}

async fn msk_cluster(verifier: Verifier) -> MskCluster {
    let dir = tempfile::tempdir().expect("dir");
    let (tls_listener, tls_port) = TlsProxy::bind().await;
    let (sasl_listener, sasl_port) = SaslProxy::bind();
    let broker = Broker::start_advertising(&format!("127.0.0.1:{tls_port}"));
    let sasl = SaslProxy::start_msk_iam(sasl_listener, broker.port(), verifier);
    let tls = TlsProxy::start(tls_listener, sasl_port, dir.path());
    MskCluster {
        _broker: broker,
        sasl,
        tls,
        _dir: dir,
    }
}

/// The front's verifier for the environment's keys.
fn env_verifier() -> Verifier {
    Verifier {
        region: REGION.to_owned(),
        access_key_id: ENV_KEY_ID.to_owned(),
        secret_access_key: ENV_SECRET.to_owned(),
        session_token: Some(ENV_SESSION_TOKEN.to_owned()),
    }
}

/// The environment's keys, with `secret` as the secret access key.
fn env_keys(secret: &str) -> AwsEnv {
    AwsEnv::from_pairs([
        ("AWS_ACCESS_KEY_ID", ENV_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", ENV_SESSION_TOKEN),
    ])
}

/// `[kafka]` for `cluster` under AWS_MSK_IAM in `region` (empty: `AWS_REGION`), over TLS trusting its CA.
fn msk_config(cluster: &MskCluster, aws: AwsMskIamConfig) -> KafkaConfig {
    let mut config = KafkaConfig {
        bootstrap: vec![cluster.tls.bootstrap()],
        poll_interval: Duration::from_millis(100),
        topic_refresh: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        sasl: Some(SaslConfig {
            mechanism: SaslMechanism::AwsMskIam,
            username: String::new(),
            password: Secret::default(),
            oauth: None,
            aws: Some(aws),
        }),
        ..KafkaConfig::default()
    };
    config.tls.enabled = true;
    config.tls.ca_file = Some(cluster.tls.ca_pem().to_path_buf());
    config
}

fn in_region(region: &str) -> AwsMskIamConfig {
    AwsMskIamConfig {
        region: region.to_owned(),
        ..Default::default()
    }
}

/// An rskafka client logged in with the sidecar's own MSK IAM login, to make topics and records with (within 20 s:
/// rskafka retries a refused login without end).
async fn producer(config: &KafkaConfig, env: &AwsEnv) -> rskafka::client::Client {
    let login = Login::for_config_with_env(config, env).expect("login").expect("SASL");
    let build = rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .tls_config(cdc_orchestrator::kafka::tls::client_config(&config.tls).expect("TLS config"))
        .sasl_config(samples::rskafka_sasl(&login))
        .build();
    tokio::time::timeout(Duration::from_secs(20), build)
        .await
        .expect("rskafka logs in within 20 s")
        .expect("rskafka logs in with the MSK IAM token")
}

fn watcher_with(config: KafkaConfig, env: &AwsEnv) -> Watcher {
    let config = Config {
        kafka: config,
        ..Config::default()
    };
    Watcher::new_with_env(&config, [], env).expect("watcher")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_reads_watermarks_lag_and_samples_through_msk_iam_signed_with_environment_keys() {
    let cluster = msk_cluster(env_verifier()).await;
    let config = msk_config(&cluster, in_region(REGION));
    let env = env_keys(ENV_SECRET);
    let client = producer(&config, &env).await;
    let topic = "university-server.public.faculty";
    support::create_topic(&client, topic, 1).await;

    let watcher = watcher_with(config, &env);
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    support::one_create_seen(&mut rx, &client, topic).await;
    shutdown.cancel();
    task.await.expect("the watcher stops");
    // Every connection, ours and rskafka's, logged in with a token the front verified.
    let logins = cluster.sasl.oauth_logins();
    assert!(logins.len() >= 2, "{logins:?}");
    assert!(logins.iter().all(|l| l.as_deref() == Ok(ENV_KEY_ID)), "{logins:?}");
}

#[tokio::test]
async fn the_watcher_reads_through_msk_iam_signed_with_irsa_credentials_from_sts() {
    const ROLE_KEY_ID: &str = "ASIAIRSAROLEKEY00001";
    let sts = FakeSts::start().await;
    let setup = irsa(&sts);
    // One exchange for the producer's login, one for the watcher's.
    for _ in 0..2 {
        sts.answer(
            StatusCode::OK,
            vec![],
            good_answer(ROLE_KEY_ID, SystemTime::now() + Duration::from_secs(3600)),
        );
    }
    let cluster = msk_cluster(Verifier {
        region: REGION.to_owned(),
        access_key_id: ROLE_KEY_ID.to_owned(),
        secret_access_key: SECRET.to_owned(),
        session_token: Some(SESSION_TOKEN.to_owned()),
    })
    .await;
    // The region from AWS_REGION, STS at the stand-in.
    let config = msk_config(&cluster, setup.aws.clone());
    let client = producer(&config, &setup.env).await;
    let topic = "university-server.public.lecturer";
    support::create_topic(&client, topic, 1).await;
    support::produce(&client, topic, 0, None, &[Some(b"{}"), Some(b"{}")]).await;

    let mut watcher = watcher_with(config, &setup.env);
    watcher.refresh().await.expect("metadata over MSK IAM");
    watcher.poll().await.expect("watermarks over MSK IAM");
    assert_eq!(watcher.lags().await, vec![("lecturer".to_owned(), 2)]);
    assert_eq!(sts.received().len(), 2, "one exchange per login, then cached");
    let logins = cluster.sasl.oauth_logins();
    assert!(
        !logins.is_empty() && logins.iter().all(|l| l.as_deref() == Ok(ROLE_KEY_ID)),
        "{logins:?}"
    );
}

/// Connects to `cluster` with `security`, expecting a refusal that names authentication and shows no secret.
async fn refused(cluster: &MskCluster, security: &Security) -> String {
    let result = Connection::connect(&cluster.tls.bootstrap(), security, Duration::from_secs(5)).await;
    let Err(
        error @ WireError::Authentication {
            error: ResponseError::SaslAuthenticationFailed,
            ..
        },
    ) = result
    else {
        panic!("expected a SASL authentication failure, got {result:?}");
    };
    let text = error.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    for secret in [ENV_SECRET, WRONG_SECRET, ENV_SESSION_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
    text
}

const WRONG_SECRET: &str = "not/the+Secret0123456789abcdefghijklmnop";

#[tokio::test]
async fn a_wrong_secret_a_wrong_region_and_an_expired_token_are_refused_naming_authentication() {
    let cluster = msk_cluster(env_verifier()).await;
    let config = msk_config(&cluster, in_region(REGION));
    // The right keys get in, so each refusal below is for its one difference.
    let right = Security::for_config_with_env(&config, &env_keys(ENV_SECRET)).expect("security");
    Connection::connect(&cluster.tls.bootstrap(), &right, Duration::from_secs(5))
        .await
        .expect("the right keys log in");

    let wrong_secret = Security::for_config_with_env(&config, &env_keys(WRONG_SECRET)).expect("security");
    let text = refused(&cluster, &wrong_secret).await;
    assert!(text.contains("SASL OAUTHBEARER authentication failed"), "{text}");

    let elsewhere = msk_config(&cluster, in_region("us-west-2"));
    refused(
        &cluster,
        &Security::for_config_with_env(&elsewhere, &env_keys(ENV_SECRET)).expect("security"),
    )
    .await;

    // Signed with the right keys 16 minutes ago: past its 900 s.
    let clock: Clock = Arc::new(|| SystemTime::now() - Duration::from_secs(16 * 60));
    let provider =
        MskIamTokenProvider::with_clock(&in_region(REGION), &env_keys(ENV_SECRET), Duration::from_secs(5), clock)
            .expect("provider");
    let login = Login::Bearer(TokenCache::new(Arc::new(provider), Vec::new(), RETRY_BACKOFF));
    let tls = cdc_orchestrator::kafka::tls::client_config(&config.tls).expect("TLS config");
    refused(&cluster, &Security::new(Some(tls), Some(login))).await;

    // The front refused each for its reason.
    let logins = cluster.sasl.oauth_logins();
    assert_eq!(logins.len(), 4, "{logins:?}");
    assert_eq!(logins[0].as_deref(), Ok(ENV_KEY_ID));
    let why = |i: usize| logins[i].clone().expect_err("refused");
    assert_eq!(why(1), "the signature does not match");
    assert!(why(2).starts_with("wrong region"), "{}", why(2));
    assert!(why(3).starts_with("expired"), "{}", why(3));

    // The watcher reports the same cause rather than a silent gap.
    let refresh = watcher_with(config, &env_keys(WRONG_SECRET)).refresh().await;
    let Err(error @ BrokerError::Metadata(WireError::Authentication { .. })) = refresh else {
        panic!("expected an authentication failure, got {refresh:?}");
    };
    let text = cdc_orchestrator::logging::chain(&error).to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        !text.contains(WRONG_SECRET) && !text.contains(ENV_SESSION_TOKEN),
        "{text}"
    );
}

#[test]
fn run_with_expired_environment_credentials_exits_2_naming_the_variable() {
    let mut child = command(&["run"])
        .envs([
            ("CDC_SERVER__LISTEN", "127.0.0.1:0"),
            ("CDC_FLINK__LAUNCHER", "dry-run"),
            ("CDC_KAFKA__BOOTSTRAP", "127.0.0.1:9"),
            ("CDC_KAFKA__TLS__ENABLED", "true"),
            ("CDC_KAFKA__SASL__MECHANISM", "AWS_MSK_IAM"),
            ("CDC_KAFKA__SASL__AWS__REGION", REGION),
            ("CDC_KAFKA__SASL__AWS__CREDENTIALS", "environment"),
            ("AWS_ACCESS_KEY_ID", ENV_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", ENV_SECRET),
            ("AWS_SESSION_TOKEN", ENV_SESSION_TOKEN),
            ("AWS_CREDENTIAL_EXPIRATION", "2024-01-01T00:00:00Z"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("run started with expired credentials");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut text = String::new();
        pipe.expect("pipe").read_to_string(&mut text).expect("read");
        text
    };
    let stderr = read(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
    let stdout = read(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
    assert_eq!(status.code(), Some(2), "stderr: {stderr}\nstdout: {stdout}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        errors,
        [
            "error: cannot set up the Kafka watcher: AWS_CREDENTIAL_EXPIRATION: the environment's credentials \
             expired at 2024-01-01T00:00:00Z; give the sidecar fresh ones"
        ],
        "stderr: {stderr}"
    );
    for secret in [ENV_SECRET, ENV_SESSION_TOKEN] {
        assert!(!stderr.contains(secret) && !stdout.contains(secret), "{stderr}{stdout}");
    }
}

/// The front's own SigV4 against AWS's published example (the IAM ListUsers request of "Create a signed AWS API
/// request": its signing key and signature), so that it cannot share a mistake with the crate's signer.
#[test]
fn the_fronts_sigv4_matches_the_documented_example_and_its_query_parsing_is_strict() {
    let key = verifier::signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20150830",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        verifier::hex(&key),
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    );
    let string_to_sign = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
                          f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
    assert_eq!(
        verifier::signature(&key, string_to_sign),
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    );
    let params =
        verifier::parse_query("Action=kafka-cluster%3AConnect&X-Amz-Security-Token=a%2Fb%2B%3D").expect("query");
    assert_eq!(params["Action"], "kafka-cluster:Connect");
    assert_eq!(params["X-Amz-Security-Token"], "a/b+=");
    for bad in ["a=b+c", "a=%2", "a=1&a=2", "a"] {
        assert!(verifier::parse_query(bad).is_err(), "{bad}");
    }
    assert_eq!(verifier::uri_encode("a/b+c=~:"), "a%2Fb%2Bc%3D~%3A");
}
