//! Leader election against the Lease server stand-in over TLS with its own CA (tests/lease_server): the real client,
//! credentials from files, the API server's answers and faults. Short timings (lease 2 s, renew deadline 1 s,
//! retry 200 ms) in real time; every wait polls a condition and fails after a bound.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_orchestrator::config::LeaderElectionConfig;
use cdc_orchestrator::lease::{Elector, KubeClient, Leadership, LeaseApi, LeaseError};
use cdc_orchestrator::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

use crate::support::lease_server::{Answer, Block, LeaseServer};

const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);

/// A replica's files and configuration.
struct Replica {
    config: LeaderElectionConfig,
    token_file: PathBuf,
}

fn replica(dir: &tempfile::TempDir, server: &LeaseServer, identity: &str, token: &str) -> Replica {
    let token_file = dir.path().join(format!("{identity}.token"));
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).expect("ca file");
    let config = LeaderElectionConfig {
        enabled: true,
        identity: Some(identity.to_owned()),
        namespace: Some("ns".to_owned()),
        api_server: Some(server.url.clone()),
        token_file: token_file.clone(),
        ca_file,
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
        ..LeaderElectionConfig::default()
    };
    Replica { config, token_file }
}

/// Starts the elector of `r`; its leadership and the token that stops it.
fn run(r: &Replica) -> (Leadership, CancellationToken) {
    let (elector, leadership) = Elector::from_config(&r.config, Arc::new(Metrics::new())).expect("an elector");
    let done = CancellationToken::new();
    tokio::spawn(elector.run(done.clone()));
    (leadership, done)
}

/// Polls `cond` every 10 ms for up to `within`, asserting at every sample that at most one of `all` may act.
async fn until(within: Duration, all: &[&Leadership], what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let acting: Vec<&str> = all
            .iter()
            .filter(|l| l.guard().check().is_ok())
            .map(|l| l.identity())
            .collect();
        assert!(acting.len() <= 1, "two replicas may act at once: {acting:?}");
        if cond() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_replicas_one_lease_exactly_one_leads_and_a_blocked_leader_is_replaced_within_the_lease() {
    let server = LeaseServer::start(&["token-a", "token-b"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (
        replica(&dir, &server, "pod-a", "token-a"),
        replica(&dir, &server, "pod-b", "token-b"),
    );
    let (la, _da) = run(&a);
    let (lb, _db) = run(&b);
    let all = [&la, &lb];
    until(Duration::from_secs(5), &all, "a leader", || {
        la.role().is_leader() || lb.role().is_leader()
    })
    .await;
    // Stable: the same one leads for a few lease durations, the other stands by naming it.
    let first = if la.role().is_leader() { "pod-a" } else { "pod-b" };
    let stable = until(Duration::from_secs(10), &all, "", || false);
    let _ = tokio::time::timeout(Duration::from_secs(5), stable).await;
    assert_eq!(server.holder("ns", "cdc-orchestrator").as_deref(), Some(first));
    for (how, round) in [(Block::Hang, 0), (Block::Reset, 1)] {
        let (leader, other, token) = if la.role().is_leader() {
            (&la, &lb, "token-a")
        } else {
            (&lb, &la, "token-b")
        };
        server.block(token, how);
        let cut = Instant::now();
        let stopped = until(Duration::from_secs(3), &all, "the cut-off leader stops acting", || {
            leader.guard().check().is_err()
        })
        .await;
        assert!(
            stopped <= RENEW + Duration::from_millis(100),
            "round {round}: acted {stopped:?} after the cut"
        );
        until(
            LEASE + RETRY * 3 + Duration::from_secs(1),
            &all,
            "the other takes over",
            || other.role().is_leader(),
        )
        .await;
        let failover = cut.elapsed();
        assert!(
            failover >= LEASE - Duration::from_millis(300),
            "round {round}: took over early, {failover:?}"
        );
        server.unblock(token);
        until(Duration::from_secs(2), &all, "the old leader stands by", || {
            leader.role()
                == cdc_orchestrator::lease::Role::Standby {
                    leader: Some(other.identity().to_owned()),
                }
        })
        .await;
    }
}

#[tokio::test]
async fn a_rotated_token_is_refused_with_401_and_the_new_one_is_read_from_the_file() {
    let server = LeaseServer::start(&["old"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&dir, &server, "pod-a", "old");
    let (la, _da) = run(&a);
    until(Duration::from_secs(5), &[&la], "leads", || la.role().is_leader()).await;
    server.tokens(&["new"]);
    let client = client(&a);
    let refused = client.get().await.expect_err("the old token is refused");
    assert!(matches!(refused, LeaseError::Unauthorized { .. }), "{refused:?}");
    let text = refused.to_string();
    assert!(
        text.contains("401") && text.contains(&a.token_file.display().to_string()),
        "{text}"
    );
    assert!(!text.contains("old"), "the token is never shown: {text}");
    until(Duration::from_secs(3), &[&la], "steps down", || {
        la.guard().check().is_err()
    })
    .await;
    std::fs::write(&a.token_file, "new").expect("rotate the token file");
    until(Duration::from_secs(5), &[&la], "leads again with the new token", || {
        la.role().is_leader()
    })
    .await;
}

#[tokio::test]
async fn a_slow_or_vanished_api_server_makes_the_leader_stop_acting_within_the_renew_deadline() {
    let server = LeaseServer::start(&["t"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&dir, &server, "pod-a", "t");
    let (la, _da) = run(&a);
    for fault in ["slow", "away"] {
        until(Duration::from_secs(5), &[&la], "leads", || la.role().is_leader()).await;
        match fault {
            "slow" => server.slow(RENEW * 3),
            _ => server.away(true),
        }
        let took = until(Duration::from_secs(3), &[&la], "stops acting", || {
            la.guard().check().is_err()
        })
        .await;
        assert!(took <= RENEW + Duration::from_millis(100), "{fault}: {took:?}");
        until(Duration::from_secs(1), &[&la], "stands by", || !la.role().is_leader()).await;
        server.slow(Duration::ZERO);
        server.away(false);
    }
    until(Duration::from_secs(5), &[&la], "leads again", || la.role().is_leader()).await;
}

#[tokio::test]
async fn garbage_a_redirect_a_huge_body_or_a_refused_token_are_clear_errors_and_never_leadership() {
    let server = LeaseServer::start(&["t"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = replica(&dir, &server, "pod-a", "t");
    let client = client(&a);
    for (answer, expect) in [
        (Answer::Garbage, "garbage: HTTP 200 with a body that is not a Lease"),
        (Answer::WrongKind, "garbage: a Pod where a Lease was expected"),
        (Answer::Redirect, "redirect (HTTP 307), which is not followed"),
        (Answer::Huge, "garbage: an answer larger than 65536 bytes"),
    ] {
        server.answer(answer);
        let error = client.get().await.expect_err("an error").to_string();
        assert!(error.contains(expect), "{answer:?}: {error}");
        assert!(!error.chars().any(char::is_control), "{answer:?}: {error:?}");
        let (la, done) = run(&a);
        never_leads(&la, Duration::from_millis(1200), &format!("{answer:?}")).await;
        done.cancel();
    }
    server.answer(Answer::Normal);
    let b = replica(&dir, &server, "pod-b", "unknown");
    let (lb, _db) = run(&b);
    never_leads(&lb, Duration::from_millis(1200), "a refused token").await;
    assert!(server.lease("ns", "cdc-orchestrator").is_none(), "nothing was written");
}

#[test]
fn a_missing_service_account_is_one_line_naming_the_file_and_how_to_run_without_election() {
    let config = LeaderElectionConfig {
        enabled: true,
        identity: Some("pod-a".into()),
        namespace: Some("ns".into()),
        api_server: Some("https://127.0.0.1:1".into()),
        token_file: "/nonexistent/serviceaccount/token".into(),
        ..LeaderElectionConfig::default()
    };
    let error = Elector::from_config(&config, Arc::new(Metrics::new())).expect_err("no service account");
    let text = cdc_orchestrator::logging::chain(&error).to_string();
    assert!(text.contains("/nonexistent/serviceaccount/token"), "{text}");
    assert!(text.contains("leader_election.enabled = false"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

/// Samples for `how_long` that `l` never leads nor may act.
async fn never_leads(l: &Leadership, how_long: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        assert!(!l.role().is_leader() && l.guard().check().is_err(), "{what}: led");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn client(r: &Replica) -> KubeClient {
    let c = &r.config;
    KubeClient::new(
        c.api_server.as_deref().expect("url"),
        "ns",
        &c.lease_name,
        &c.token_file,
        &c.ca_file,
        RENEW,
    )
    .expect("a client")
}
