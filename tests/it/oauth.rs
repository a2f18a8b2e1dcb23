//! SASL OAUTHBEARER end to end: a real token endpoint the tests start ([`support::token_endpoint`], HS256 JWTs of
//! a short lifetime), the SASL front in front of real tansu checking each token's signature and expiry
//! ([`support::sasl_proxy`]), and the sidecar's watcher (watermarks, lag, and samples through rskafka) and the real
//! binary (its log, `/readyz`, `/metrics`, `watch --once`) against them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cdc_orchestrator::auth::{BearerToken, TokenError, TokenProvider};
use cdc_orchestrator::config::{KafkaConfig, OauthConfig, SaslConfig, SaslMechanism, Secret};
use cdc_orchestrator::kafka::connection::{Connection, Security, WireError};
use cdc_orchestrator::kafka::samples;
use cdc_orchestrator::kafka::sasl::Login;
use cdc_orchestrator::kafka::token::{RETRY_BACKOFF, TokenCache};
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::sasl_proxy::SaslProxy;
use crate::support::sidecar::{Sidecar, command};
use crate::support::token_endpoint::{CLIENT_ID, CLIENT_SECRET, Mode, TokenEndpoint, sign, sign_with};
use crate::support::{self, Broker};

/// A tansu broker behind an OAUTHBEARER front; the broker advertises the front.
fn oauth_broker() -> (Broker, SaslProxy) {
    let (listener, port) = SaslProxy::bind();
    let broker = Broker::start_advertising(&format!("127.0.0.1:{port}"));
    let proxy = SaslProxy::start_oauth(listener, broker.port());
    (broker, proxy)
}

/// `[kafka]` for the front at `proxy` logging in with the token endpoint at `endpoint`, one SASL extension set.
fn oauth_config(proxy: &SaslProxy, endpoint: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![proxy.bootstrap()],
        poll_interval: Duration::from_millis(100),
        topic_refresh: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        sasl: Some(SaslConfig {
            mechanism: SaslMechanism::OAuthBearer,
            username: String::new(),
            password: Secret::default(),
            aws: None,
            oauth: Some(OauthConfig {
                token_endpoint: endpoint.to_owned(),
                client_id: CLIENT_ID.to_owned(),
                client_secret: Secret::new(CLIENT_SECRET),
                scope: "kafka".to_owned(),
                audience: String::new(),
                extensions: [("logicalCluster".to_owned(), "lkc-test".to_owned())].into(),
            }),
        }),
        ..KafkaConfig::default()
    }
}

/// Waits up to `limit` for `done`, failing with `what`.
async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unix(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_reads_through_oauthbearer_and_refreshes_the_token_before_it_expires() {
    let endpoint = TokenEndpoint::start(Mode::Issue(Duration::from_secs(2)));
    let (_broker, proxy) = oauth_broker();
    let config = oauth_config(&proxy, endpoint.url());
    // The change is produced through the front too, by rskafka with the sidecar's own OAUTHBEARER callback.
    let login = Login::for_config(&config).expect("login").expect("SASL");
    let client = rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .sasl_config(samples::rskafka_sasl(&login))
        .build()
        .await
        .expect("rskafka logs in with the token");
    let topic = "university-server.public.faculty";
    support::create_topic(&client, topic, 1).await;
    let granted_before = endpoint.grants().len();

    let watcher = support::watcher(config).expect("watcher");
    let (tx, mut rx) = mpsc::channel(64);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    support::one_create_seen(&mut rx, &client, topic).await;

    // The watcher's first token, then a second grant before that token expires, with no connection asking.
    let first = endpoint.grants()[granted_before];
    wait_for("a refresh", Duration::from_secs(10), || {
        endpoint.grants().len() > granted_before + 1
    })
    .await;
    let second = endpoint.grants()[granted_before + 1];
    assert!(
        second.at < unix(first.exp),
        "refreshed at {:?}, after the token's exp {}",
        second.at,
        first.exp
    );
    shutdown.cancel();
    task.await.expect("the watcher stops");

    let logins = proxy.oauth_logins();
    assert!(!logins.is_empty() && logins.iter().all(Result::is_ok), "{logins:?}");
    assert!(
        logins
            .iter()
            .all(|l| l.as_deref() == Ok("cdc-sidecar;logicalCluster=lkc-test")),
        "both connection kinds send the subject's token and the extension: {logins:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_after_the_first_token_expired_logs_in_with_a_fresh_one() {
    let endpoint = TokenEndpoint::start(Mode::Issue(Duration::from_secs(2)));
    let (_broker, proxy) = oauth_broker();
    let security = Security::for_config(&oauth_config(&proxy, endpoint.url())).expect("security");
    let limit = Duration::from_secs(5);
    Connection::connect(&proxy.bootstrap(), &security, limit)
        .await
        .expect("first login");
    let first = endpoint.grants()[0];
    wait_for("the first token to expire", Duration::from_secs(5), || {
        SystemTime::now() > unix(first.exp)
    })
    .await;
    Connection::connect(&proxy.bootstrap(), &security, limit)
        .await
        .expect("a login with a fresh token");
    assert_eq!(endpoint.grants().len(), 2, "one grant per token, not per connection");
    let logins = proxy.oauth_logins();
    assert!(logins.len() == 2 && logins.iter().all(Result::is_ok), "{logins:?}");
}

/// A provider handing out a fixed token said to last a minute.
struct Fixed(String);

impl TokenProvider for Fixed {
    fn fetch(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        let token = BearerToken {
            value: Secret::new(self.0.clone()),
            expires_at: SystemTime::now() + Duration::from_secs(60),
            principal: None,
        };
        Box::pin(async move { Ok(token) })
    }
}

#[tokio::test]
async fn the_front_refuses_a_forged_or_expired_token_and_the_error_says_so_without_the_token() {
    let (_broker, proxy) = oauth_broker();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("now")
        .as_secs();
    let forged = sign_with(b"not the key", &serde_json::json!({"sub": CLIENT_ID, "exp": now + 60}));
    let expired = sign(&serde_json::json!({"sub": CLIENT_ID, "exp": now - 1}));
    for (token, why) in [(forged, "bad signature"), (expired, "expired")] {
        let cache = TokenCache::new(Arc::new(Fixed(token.clone())), Vec::new(), RETRY_BACKOFF);
        let security = Security::new(None, Some(Login::Bearer(cache)));
        let refused = Connection::connect(&proxy.bootstrap(), &security, Duration::from_secs(5)).await;
        let Err(
            error @ WireError::Authentication {
                error: ResponseError::SaslAuthenticationFailed,
                ..
            },
        ) = refused
        else {
            panic!("{why}: expected a SASL authentication failure, got {refused:?}");
        };
        let text = error.to_string();
        assert!(
            text.contains("SASL OAUTHBEARER authentication failed") && text.contains(why),
            "{text}"
        );
        assert!(!text.contains(&token), "{text}");
    }
    let logins = proxy.oauth_logins();
    assert_eq!(logins, [Err("bad signature".to_owned()), Err("expired".to_owned())]);
}

/// The environment that makes the binary log in with OAUTHBEARER at `proxy` through `endpoint`.
fn oauth_env(proxy: &SaslProxy, endpoint: &TokenEndpoint) -> Vec<(&'static str, String)> {
    vec![
        ("CDC_KAFKA__BOOTSTRAP", proxy.bootstrap()),
        ("CDC_KAFKA__SASL__MECHANISM", "OAUTHBEARER".to_owned()),
        ("CDC_KAFKA__SASL__OAUTH__TOKEN_ENDPOINT", endpoint.url().to_owned()),
        ("CDC_KAFKA__SASL__OAUTH__CLIENT_ID", CLIENT_ID.to_owned()),
        ("CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("CDC_KAFKA__POLL_INTERVAL", "100ms".to_owned()),
        ("CDC_KAFKA__REQUEST_TIMEOUT", "2s".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_a_refusing_token_endpoint_once_in_its_log_in_readyz_metrics_and_watch_once() {
    let endpoint = TokenEndpoint::start(Mode::Unauthorized);
    let (_broker, proxy) = oauth_broker();
    let env = oauth_env(&proxy, &endpoint);
    let cause = format!(
        "kafka.sasl.oauth.token_endpoint {}: HTTP 401: the client id or secret was refused (invalid_client: client \
         authentication failed)",
        endpoint.url()
    );
    let sidecar = Sidecar::builder()
        .quick_without_kafka()
        .dry_run()
        .envs(env.clone())
        .start();
    // Retried with backoff (0.5 s, 1 s, ...): the third attempt comes about 1.5 s in.
    wait_for("three attempts", Duration::from_secs(15), || endpoint.requests() >= 3).await;
    let log = sidecar.log_text();
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("cannot get a SASL token")).collect();
    assert_eq!(failures.len(), 1, "once per change, not per retry:\n{log}");
    assert!(failures[0].contains(&cause), "{}", failures[0]);
    assert!(!log.contains(CLIENT_SECRET), "{log}");
    let (code, reason) = sidecar.get("/readyz");
    assert_eq!(code, 503, "{reason}");
    assert!(reason.contains(&cause), "{reason}");
    let (_, metrics) = sidecar.get("/metrics");
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cdc_kafka_token_refresh_failures_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no token failure count:\n{metrics}"));
    assert!(count >= 3, "every attempt counts: {count}");

    // `watch --once` ends at once with that line.
    let out = command(&["watch", "--once"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("watch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains(&format!("no SASL token: {cause}")), "{err}");
    assert!(!err.contains(CLIENT_SECRET), "{err}");

    // The endpoint heals: the sidecar logs in, says so once, and the token no longer holds readiness back.
    endpoint.set_mode(Mode::Issue(Duration::from_secs(60)));
    sidecar.wait_for("the token to heal", Duration::from_secs(60), || {
        sidecar.count("SASL token refreshed again") == 1
    });
    sidecar.wait_for("readiness without the token's failure", Duration::from_secs(10), || {
        !sidecar.get("/readyz").1.contains("token")
    });
    assert!(
        proxy.oauth_logins().iter().any(Result::is_ok),
        "{:?}",
        proxy.oauth_logins()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_slow_endpoint_are_each_one_line_from_watch_once() {
    let endpoint = TokenEndpoint::start(Mode::Garbage);
    let (_broker, proxy) = oauth_broker();
    let env = oauth_env(&proxy, &endpoint);
    let run = |env: &[(&'static str, String)]| {
        command(&["watch", "--once"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("watch")
    };
    let out = run(&env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(": the answer is not a JSON token answer ("), "{err}");
    assert!(
        !err.contains("bad gateway") && !err.contains('\u{1b}'),
        "the body is not shown: {err}"
    );
    // Slower than kafka.request_timeout (2 s): no answer in time.
    endpoint.set_mode(Mode::Slow(Duration::from_secs(30)));
    let began = Instant::now();
    let out = run(&env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(": no answer in time (kafka.request_timeout)"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(15), "{:?}", began.elapsed());
}

#[test]
fn oauthbearer_without_its_client_secret_is_a_configuration_error_at_start() {
    let out = command(&["watch", "--once"])
        .env("CDC_KAFKA__SASL__MECHANISM", "OAUTHBEARER")
        .env("CDC_KAFKA__SASL__OAUTH__TOKEN_ENDPOINT", "https://idp.example/token")
        .env("CDC_KAFKA__SASL__OAUTH__CLIENT_ID", "cdc")
        .output()
        .expect("watch");
    support::assert_config_error(
        &out,
        &["kafka.sasl.oauth.client_secret: must be set for OAUTHBEARER (CDC_KAFKA__SASL__OAUTH__CLIENT_SECRET)"],
    );
}
