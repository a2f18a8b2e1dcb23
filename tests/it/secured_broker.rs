//! The sidecar against a REAL broker that requires SASL SCRAM (issue 26 item 4): tansu with SQLite storage
//! (`support::secure_tansu`), not the project's own SASL front. Our own connections (watermarks, lag, offsets) and
//! rskafka's (the samples) authenticate with SCRAM-SHA-512 and SCRAM-SHA-256; a TLS front adds TLS (tansu 0.6
//! cannot serve TLS itself); a wrong password and a client without credentials are refused with an error that names
//! authentication; and the real binary with a wrong password says why in its log and in `/readyz`, never showing a
//! password.
//!
//! Each test skips (saying so) where the tansu build is missing, unless the suite must run everything
//! (`REQUIRE_REAL_FLINK`, `CI`): see `support::secure_tansu::secure_tansu_bin`.

use std::process::Command;
use std::time::Duration;

use cdc_orchestrator::config::{KafkaConfig, SaslConfig, SaslMechanism, Secret};
use cdc_orchestrator::kafka::connection::{Connection, Security, WireError};
use cdc_orchestrator::kafka::samples;
use cdc_orchestrator::kafka::sasl::Login;
use cdc_orchestrator::kafka::watcher::BrokerError;
use cdc_orchestrator::model::Op;
use kafka_protocol::error::ResponseError;

use crate::support;
use support::secure_tansu::{SCRAM_256, SCRAM_512, SecureBroker, User, secure_tansu_bin};
use support::sidecar::Sidecar;

const TOPIC: &str = "university-server.public.payment";

fn mechanism_of(user: &User) -> SaslMechanism {
    match user.mechanism {
        support::secure_tansu::Scram::Sha256 => SaslMechanism::ScramSha256,
        support::secure_tansu::Scram::Sha512 => SaslMechanism::ScramSha512,
    }
}

/// `user`'s login to `bootstrap`, every record sampled.
fn scram_config(bootstrap: &str, user: &User, password: &str) -> KafkaConfig {
    KafkaConfig {
        bootstrap: vec![bootstrap.to_owned()],
        request_timeout: Duration::from_secs(5),
        sample_interval: Duration::ZERO,
        sasl: Some(SaslConfig {
            mechanism: mechanism_of(user),
            username: user.name.to_owned(),
            password: Secret::new(password),
            aws: None,
            oauth: None,
        }),
        ..KafkaConfig::default()
    }
}

/// rskafka (the samples' client) logged in as `config` says, with its TLS when enabled.
async fn rskafka_client(config: &KafkaConfig) -> Result<rskafka::client::Client, rskafka::client::error::Error> {
    let mut builder = rskafka::client::ClientBuilder::new(config.bootstrap.clone())
        .sasl_config(samples::rskafka_sasl(
            &Login::for_config(config).expect("login").expect("SASL"),
        ))
        // rskafka retries forever by default, a refused login too.
        .backoff_config(rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(config.request_timeout),
        });
    if config.tls.enabled {
        builder = builder.tls_config(cdc_orchestrator::kafka::tls::client_config(&config.tls).expect("TLS config"));
    }
    builder.build().await
}

/// Creates [`TOPIC`] and writes `records` Debezium changes into it over `config`'s login; then the watcher (our own
/// connections for metadata, watermarks and lag; rskafka's for the samples) sees them as lag, sees two more as
/// activity with the sampled operations, and the lag drops once the table's group commits.
async fn watcher_reads_everything_over(config: KafkaConfig, broker_log: &str) {
    let client = rskafka_client(&config)
        .await
        .unwrap_or_else(|e| panic!("rskafka logs in: {e}; broker log:\n{broker_log}"));
    support::create_topic(&client, TOPIC, 1).await;
    let created = support::envelope("payment", "c");
    support::produce(&client, TOPIC, 0, Some(b"{\"id\":1}"), &[Some(created.as_slice()); 3]).await;

    let mut watcher = support::watcher(config.clone()).expect("watcher");
    watcher.refresh().await.expect("metadata over SCRAM");
    watcher.poll().await.expect("baseline watermarks over SCRAM");
    assert_eq!(watcher.lags().await, vec![("payment".to_owned(), 3)], "lag over SCRAM");

    let updated = support::envelope("payment", "u");
    support::produce(&client, TOPIC, 0, Some(b"{\"id\":1}"), &[Some(updated.as_slice()); 2]).await;
    let (activity, stats) = watcher.poll().await.expect("watermarks over SCRAM");
    let payment = activity
        .iter()
        .find(|a| a.table == "payment")
        .unwrap_or_else(|| panic!("no activity for payment: {activity:?}"));
    assert_eq!(payment.records, 2, "{payment:?}");
    // The operations come from the records rskafka fetched (its SCRAM login worked too): the newest record, which
    // settles the sample when every operation counts.
    assert!(stats.sampled >= 1, "{stats:?}");
    assert_eq!(
        payment.ops.keys().collect::<Vec<_>>(),
        vec![&Op::Update],
        "sampled: {payment:?}, {stats:?}"
    );

    support::kafka_admin::commit_offsets(&config, &config.group_for("payment"), &[(TOPIC.to_owned(), 0, 4)])
        .await
        .expect("commit over SCRAM");
    assert_eq!(
        watcher.lags().await,
        vec![("payment".to_owned(), 1)],
        "lag after the commit"
    );
}

#[tokio::test]
async fn the_watcher_reads_watermarks_lag_and_samples_over_scram_sha_512_on_a_real_broker() {
    let Some(broker) = SecureBroker::start() else { return };
    let config = scram_config(&broker.bootstrap(), &SCRAM_512, SCRAM_512.password);
    watcher_reads_everything_over(config, &broker.log_text()).await;
}

#[tokio::test]
async fn the_watcher_reads_watermarks_lag_and_samples_over_scram_sha_256_on_a_real_broker() {
    let Some(broker) = SecureBroker::start() else { return };
    let config = scram_config(&broker.bootstrap(), &SCRAM_256, SCRAM_256.password);
    watcher_reads_everything_over(config, &broker.log_text()).await;
}

#[tokio::test]
async fn scram_through_a_tls_front_reads_watermarks_lag_and_samples() {
    // Client -> TLS front (rustls) -> tansu requiring SCRAM, which advertises the front.
    if secure_tansu_bin().is_none() {
        return;
    }
    let (tls_listener, tls_port) = support::tls_proxy::TlsProxy::bind().await;
    let Some(broker) = SecureBroker::advertising(&format!("127.0.0.1:{tls_port}")) else {
        return;
    };
    let tls = support::tls_proxy::TlsProxy::start(tls_listener, broker.port(), &broker.dir().join("tls"));
    let mut config = scram_config(&tls.bootstrap(), &SCRAM_512, SCRAM_512.password);
    config.tls.enabled = true;
    config.tls.ca_file = Some(tls.ca_pem().to_path_buf());
    watcher_reads_everything_over(config, &broker.log_text()).await;
}

#[test]
fn tansu_0_6_cannot_take_a_certificate_and_its_key() {
    // Why the TLS test puts a front before tansu: if a later tansu accepts both, serve TLS from it instead.
    let Some(bin) = secure_tansu_bin() else { return };
    let out = Command::new(bin)
        .args([
            "broker",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--storage-engine",
            "memory://tansu/",
        ])
        .output()
        .expect("run tansu");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "tansu took --cert with --key: {err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_and_a_client_without_credentials_are_refused_naming_authentication() {
    let Some(broker) = SecureBroker::start() else { return };
    let wrong_password = "not-the-sidecar-pw";
    for user in [SCRAM_512, SCRAM_256] {
        let wrong = scram_config(&broker.bootstrap(), &user, wrong_password);
        let security = Security::for_config(&wrong).expect("security");
        let refused = Connection::connect(&broker.bootstrap(), &security, Duration::from_secs(5)).await;
        let Err(
            error @ WireError::Authentication {
                error: ResponseError::SaslAuthenticationFailed,
                ..
            },
        ) = refused
        else {
            panic!("{user:?}: expected a SASL authentication failure, got {refused:?}");
        };
        let text = error.to_string();
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains(wrong_password), "the password never shows: {text}");
        // rskafka (the samples) is refused too.
        // rskafka retries a refused login until its backoff deadline; a SCRAM attempt costs 8192 rounds of PBKDF2
        // on both sides, slow in a debug build on a busy machine: the bound is generous.
        let rskafka = tokio::time::timeout(Duration::from_secs(60), rskafka_client(&wrong)).await;
        assert!(
            matches!(rskafka, Ok(Err(_))),
            "{user:?}: rskafka was not refused a wrong password: {:?}",
            rskafka.map(|r| r.map(|_| "a client"))
        );
        // The watcher reports the cause rather than a silent gap.
        let refresh = support::watcher(wrong).expect("watcher").refresh().await;
        assert!(
            matches!(refresh, Err(BrokerError::Metadata(WireError::Authentication { .. }))),
            "{refresh:?}"
        );
    }
    // A user whose credentials exist only for SCRAM-SHA-256 is refused under SCRAM-SHA-512.
    let other = User {
        mechanism: support::secure_tansu::Scram::Sha512,
        ..SCRAM_256
    };
    let security =
        Security::for_config(&scram_config(&broker.bootstrap(), &other, SCRAM_256.password)).expect("security");
    let refused = Connection::connect(&broker.bootstrap(), &security, Duration::from_secs(5)).await;
    assert!(matches!(refused, Err(WireError::Authentication { .. })), "{refused:?}");

    // No credentials at all: the broker answers ApiVersions, then closes the connection at the first other request.
    let plain = KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        request_timeout: Duration::from_secs(5),
        ..KafkaConfig::default()
    };
    let refresh = tokio::time::timeout(Duration::from_secs(15), async {
        support::watcher(plain).expect("watcher").refresh().await
    })
    .await
    .expect("refresh without credentials answers within 15 s");
    let Err(error) = refresh else {
        panic!("metadata without credentials from a broker that requires SCRAM");
    };
    let text = error.to_string();
    assert!(text.contains("authentication"), "{text}");
}

#[test]
fn the_binary_with_a_wrong_password_logs_why_and_is_not_ready_never_showing_a_password() {
    let Some(broker) = SecureBroker::start() else { return };
    let wrong_password = "wrong-pw-0d41e";
    let sidecar = Sidecar::builder()
        .env("CDC_LOG_LEVEL", "info")
        .bootstrap(&broker.bootstrap())
        .dry_run()
        .envs([
            ("CDC_KAFKA__SASL__MECHANISM", "SCRAM-SHA-512"),
            ("CDC_KAFKA__SASL__USERNAME", SCRAM_512.name),
            ("CDC_KAFKA__SASL__PASSWORD", wrong_password),
            ("CDC_KAFKA__POLL_INTERVAL", "200ms"),
            ("CDC_KAFKA__REQUEST_TIMEOUT", "2s"),
        ])
        .start();
    sidecar.wait_for_log("SASL SCRAM-SHA-512 authentication failed", Duration::from_secs(20));
    sidecar.wait_for("/readyz 503 naming authentication", Duration::from_secs(20), || {
        let (code, body) = sidecar.get("/readyz");
        code == 503 && body.contains("authentication failed")
    });
    let log = sidecar.log_text();
    for secret in [wrong_password, SCRAM_512.password, SCRAM_256.password] {
        assert!(!log.contains(secret), "a password in the log:\n{log}");
        assert!(!sidecar.get("/readyz").1.contains(secret), "a password in /readyz");
    }
}
