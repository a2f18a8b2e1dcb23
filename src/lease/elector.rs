//! The elector: client-go's LeaderElector on one Lease. It acquires the Lease when it is free or expired, renews it
//! while it leads, steps down when a renewal has not succeeded within the renew deadline, and releases it when the
//! sidecar has stopped acting.
//!
//! Expiry is judged as client-go judges it: by this replica's own monotonic clock, from when it observed the
//! Lease's record change, plus the record's `leaseDurationSeconds`; the `renewTime` written by another replica's
//! wall clock is never compared with ours, so a skewed or jumping clock changes nothing. A leader's guard allows
//! acting only until the send time of its last successful renewal plus the renew deadline, which ends before any
//! other replica can see the Lease expire (they count the longer lease duration from a later instant).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::kube::{Lease, LeaseSpec, ObjectMeta, micro_time_now};
use super::{KubeClient, Leadership, LeadershipControl, LeaseError};
use crate::backoff::Backoff;
use crate::config::LeaderElectionConfig;
use crate::config::leader_election::{
    JITTER_FACTOR, SERVICE_ACCOUNT_DIR, check_api_server, check_identity, is_dns_label,
};
use crate::logging::chain;
use crate::telemetry::Metrics;

/// The annotation in which the holder writes its version, so a replica of another version is named in the logs.
pub const VERSION_ANNOTATION: &str = "cdc-orchestrator.io/version";

/// The longest `leaseDurationSeconds` honoured: a larger one (a mistake, or another program's Lease) would keep
/// every replica waiting that long for a holder that may be gone; an hour bounds the damage.
pub const MAX_LEASE_SECONDS: i64 = 3600;

/// The elector's seam to the Lease: the Kubernetes client in production, an in-memory Lease in tests.
pub trait LeaseApi: Send + Sync + 'static {
    /// Reads the Lease; [`LeaseError::NotFound`] when there is none.
    fn get(&self) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Creates it; [`LeaseError::Conflict`] when another replica created it first.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// Replaces it if `lease.metadata.resource_version` is still current, else [`LeaseError::Conflict`].
    fn update(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;
    /// `namespace/name`, for the logs.
    fn name(&self) -> String;
}

/// The election's timings (`leader_election.lease_duration`, `renew_deadline`, `retry_period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a record holds after it was observed to change.
    pub lease_duration: Duration,
    /// How long a leader may go without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

/// The record last seen, and when by our own clock.
#[derive(Debug)]
struct Observed {
    lease: Lease,
    at: Instant,
}

/// What one attempt found.
#[derive(Debug)]
enum Attempt {
    /// This replica holds the Lease; the request that won it was sent at this instant.
    Held(Instant),
    /// Another holds it (or won the race), named when known.
    Other(Option<String>),
}

/// Competes for the Lease and sets the [`Leadership`] it returned with; see the module's documentation.
#[derive(Debug)]
pub struct Elector<A: LeaseApi = KubeClient> {
    api: A,
    identity: String,
    timings: Timings,
    control: LeadershipControl,
    metrics: Arc<Metrics>,
    observed: Option<Observed>,
    /// The send time of the last successful acquire or renew while leading.
    leading_since_send: Option<Instant>,
    /// The leader last logged while standing by, so a change is logged once.
    shown_leader: Option<Option<String>>,
    /// The last failure logged, so each change is logged once and not every retry.
    shown_problem: Option<String>,
    /// The other version last warned about.
    shown_version: Option<String>,
}

impl Elector<KubeClient> {
    /// The elector of `config` (in-cluster credentials unless configured otherwise) and the leadership it sets,
    /// standing by until it first acquires the Lease. A missing service account is one clear error naming the
    /// file and how to run without election.
    pub fn from_config(
        config: &LeaderElectionConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Elector<KubeClient>, Leadership), LeaseError> {
        let identity = match &config.identity {
            Some(identity) => identity.clone(),
            None => default_identity()?,
        };
        check_identity(&identity).map_err(|reason| LeaseError::Setting {
            key: "leader_election.identity",
            reason: format!("{reason} (from $POD_NAME, $HOSTNAME or the host name; set it)"),
        })?;
        let namespace = match &config.namespace {
            Some(namespace) => namespace.clone(),
            None => service_account_namespace()?,
        };
        let api_server = match &config.api_server {
            Some(url) => url.clone(),
            None => in_cluster_api_server()?,
        };
        check_api_server(&api_server).map_err(|reason| LeaseError::Setting {
            key: "leader_election.api_server",
            reason,
        })?;
        let client = KubeClient::new(
            &api_server,
            &namespace,
            &config.lease_name,
            &config.token_file,
            &config.ca_file,
            config.renew_deadline,
        )?;
        let timings = Timings {
            lease_duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
        };
        Ok(Elector::new(client, &identity, timings, metrics))
    }
}

impl<A: LeaseApi> Elector<A> {
    /// An elector of `identity` on the Lease behind `api`, and the leadership it sets.
    pub fn new(api: A, identity: &str, timings: Timings, metrics: Arc<Metrics>) -> (Elector<A>, Leadership) {
        let (leadership, control) = Leadership::controlled(identity);
        metrics.leader(false);
        let elector = Elector {
            api,
            identity: identity.to_owned(),
            timings,
            control,
            metrics,
            observed: None,
            leading_since_send: None,
            shown_leader: None,
            shown_problem: None,
            shown_version: None,
        };
        (elector, leadership)
    }

    /// Competes for the Lease until `done_acting` is cancelled (after the sidecar has stopped acting), then
    /// releases it if this replica holds it, so a standby takes over at its next retry.
    pub async fn run(mut self, done_acting: CancellationToken) {
        tracing::info!(identity = %self.identity, lease = %self.api.name(), "competing for the lease");
        let backoff = Backoff::new(self.timings.retry_period, self.timings.lease_duration);
        let mut failures = 0u32;
        loop {
            if let Some(sent) = self.leading_since_send
                && Instant::now() >= sent + self.timings.renew_deadline
            {
                self.step_down(None, "no renewal succeeded within the renew deadline");
            }
            // A leader's attempt may last only until its renew deadline; a standby's is bounded the same way.
            let budget = match self.leading_since_send {
                Some(sent) => (sent + self.timings.renew_deadline).saturating_duration_since(Instant::now()),
                None => self.timings.renew_deadline,
            };
            let attempt = tokio::select! {
                biased;
                () = done_acting.cancelled() => break,
                attempt = timeout(budget, self.try_acquire_or_renew()) => attempt.unwrap_or(Err(LeaseError::Timeout)),
            };
            let delay = match attempt {
                Ok(Attempt::Held(sent)) => {
                    failures = 0;
                    self.recovered();
                    self.lead(sent);
                    self.timings.retry_period
                }
                Ok(Attempt::Other(holder)) => {
                    failures = 0;
                    self.recovered();
                    if self.leading_since_send.is_some() {
                        self.step_down(holder, "another replica holds the lease");
                    } else {
                        self.stand_by(holder);
                    }
                    self.jittered()
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    self.problem(&error);
                    match self.leading_since_send {
                        // Retry within the deadline; the loop's top steps down once it has passed.
                        Some(sent) => self
                            .timings
                            .retry_period
                            .min((sent + self.timings.renew_deadline).saturating_duration_since(Instant::now())),
                        None => backoff.delay(failures),
                    }
                }
            };
            tokio::select! {
                biased;
                () = done_acting.cancelled() => break,
                () = sleep(delay) => {}
            }
        }
        self.release().await;
    }

    /// A standby's delay: the retry period stretched by up to client-go's jitter factor, so replicas that failed
    /// together do not retry in step.
    fn jittered(&self) -> Duration {
        let stretch = rand::rng().random_range(1.0..=JITTER_FACTOR);
        self.timings.retry_period.mul_f64(stretch)
    }

    /// client-go's tryAcquireOrRenew: read the Lease (create it when missing), leave it to an unexpired other
    /// holder, else write this replica into it with the version read (a 409 is a lost race).
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, LeaseError> {
        let sent = Instant::now();
        let current = match self.api.get().await {
            Ok(lease) => lease,
            Err(LeaseError::NotFound) => {
                let lease = self.record(&Lease::default(), false);
                return match self.api.create(&lease).await {
                    Ok(created) => {
                        self.observe(created);
                        Ok(Attempt::Held(sent))
                    }
                    Err(LeaseError::Conflict { .. }) => Ok(Attempt::Other(None)),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        self.observe(current.clone());
        let holder = current.spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if let Some(holder) = &holder
            && !mine
        {
            self.check_version(holder, &current);
            if self.observed_valid() {
                return Ok(Attempt::Other(Some(holder.clone())));
            }
        }
        let lease = self.record(&current, mine);
        match self.api.update(&lease).await {
            Ok(updated) => {
                self.observe(updated);
                Ok(Attempt::Held(sent))
            }
            Err(LeaseError::Conflict { .. }) => Ok(Attempt::Other(None)),
            Err(e) => Err(e),
        }
    }

    /// `current` with this replica as holder: a renewal (`mine`) keeps the acquire time and the transitions, an
    /// acquisition counts one more transition.
    fn record(&self, current: &Lease, mine: bool) -> Lease {
        let now = micro_time_now();
        let old = &current.spec;
        let mut annotations = current.metadata.annotations.clone().unwrap_or_default();
        annotations.insert(VERSION_ANNOTATION.to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        let seconds = i64::try_from(self.timings.lease_duration.as_secs()).unwrap_or(MAX_LEASE_SECONDS);
        let transitions = old.lease_transitions.unwrap_or(0).max(0);
        let (acquire_time, lease_transitions) = if mine {
            (old.acquire_time.clone().or_else(|| Some(now.clone())), transitions)
        } else if current.metadata.resource_version.is_none() {
            (Some(now.clone()), 0)
        } else {
            (Some(now.clone()), transitions.saturating_add(1))
        };
        Lease {
            api_version: Some("coordination.k8s.io/v1".to_owned()),
            kind: Some("Lease".to_owned()),
            metadata: ObjectMeta {
                annotations: Some(annotations),
                ..current.metadata.clone()
            },
            spec: LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time,
                renew_time: Some(now),
                lease_transitions: Some(lease_transitions),
                rest: old.rest.clone(),
            },
        }
    }

    /// Notes `lease` with the time now if it differs from the record last seen: the start of its lease duration.
    fn observe(&mut self, lease: Lease) {
        if self.observed.as_ref().is_some_and(|o| o.lease == lease) {
            return;
        }
        self.observed = Some(Observed {
            lease,
            at: Instant::now(),
        });
    }

    /// Whether the record last seen still holds, by our clock: observed + its lease duration (bounded).
    fn observed_valid(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            let seconds = match o.lease.spec.lease_duration_seconds {
                Some(s) if s >= 1 => s.min(MAX_LEASE_SECONDS),
                // Missing or not positive: as long as this replica would hold it, rather than take it at once from
                // a holder that may well be alive.
                _ => i64::try_from(self.timings.lease_duration.as_secs()).unwrap_or(MAX_LEASE_SECONDS),
            };
            Instant::now() < o.at + Duration::from_secs(seconds.unsigned_abs())
        })
    }

    /// Logs, once per holder and version, that the holder runs another version of the sidecar.
    fn check_version(&mut self, holder: &str, lease: &Lease) {
        let theirs = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VERSION_ANNOTATION));
        let ours = env!("CARGO_PKG_VERSION");
        let shown = format!("{holder}@{}", theirs.map_or("unknown", String::as_str));
        if theirs.map(String::as_str) != Some(ours) && self.shown_version.as_ref() != Some(&shown) {
            tracing::warn!(
                identity = %self.identity,
                holder,
                holder_version = theirs.map_or("unknown (no annotation)", String::as_str),
                version = ours,
                "the lease is held by a sidecar of another version; treated as any holder (upgrades roll through it)"
            );
            self.shown_version = Some(shown);
        }
    }

    /// Leads until `sent` + the renew deadline.
    fn lead(&mut self, sent: Instant) {
        let previous = self.shown_leader.take().flatten();
        if self.leading_since_send.is_none() {
            tracing::info!(
                identity = %self.identity,
                previous_holder = previous.as_deref().unwrap_or("none"),
                lease = %self.api.name(),
                "became the leader"
            );
        }
        self.leading_since_send = Some(sent);
        self.control.lead_until(sent + self.timings.renew_deadline);
        self.metrics.leader(true);
    }

    /// Stops leading at once (the guard refuses from now on) and goes back to acquiring.
    fn step_down(&mut self, holder: Option<String>, why: &str) {
        self.control.stand_by(holder.clone());
        self.leading_since_send = None;
        self.metrics.leader(false);
        tracing::warn!(
            identity = %self.identity,
            holder = holder.as_deref().unwrap_or("unknown"),
            why,
            "stopped leading"
        );
        self.shown_leader = Some(holder);
    }

    /// Stands by while `holder` leads; logs a change of holder once.
    fn stand_by(&mut self, holder: Option<String>) {
        self.control.stand_by(holder.clone());
        self.metrics.leader(false);
        if self.shown_leader.as_ref() != Some(&holder) {
            tracing::info!(
                identity = %self.identity,
                holder = holder.as_deref().unwrap_or("unknown (lost a race)"),
                "standing by: another replica leads"
            );
            self.shown_leader = Some(holder);
        }
    }

    fn problem(&mut self, error: &LeaseError) {
        let line = chain(error).to_string();
        if self.shown_problem.as_ref() != Some(&line) {
            tracing::warn!(identity = %self.identity, lease = %self.api.name(), error = %line, "cannot read or write the lease; retrying");
            self.shown_problem = Some(line);
        }
    }

    fn recovered(&mut self) {
        if self.shown_problem.take().is_some() {
            tracing::info!(identity = %self.identity, lease = %self.api.name(), "the lease is reachable again");
        }
    }

    /// client-go's ReleaseOnCancel: after acting has stopped, a leader empties the holder (duration 1 s), so a
    /// standby takes over at its next retry rather than after the lease duration.
    async fn release(&mut self) {
        let Some(sent) = self.leading_since_send.take() else {
            return;
        };
        self.control.stand_by(None);
        self.metrics.leader(false);
        let budget = (sent + self.timings.renew_deadline).saturating_duration_since(Instant::now());
        let release = async {
            let current = self.api.get().await?;
            if current.spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            let mut lease = current.clone();
            lease.spec.holder_identity = Some(String::new());
            lease.spec.lease_duration_seconds = Some(1);
            lease.spec.renew_time = Some(micro_time_now());
            lease.spec.acquire_time = lease.spec.renew_time.clone();
            self.api.update(&lease).await.map(drop)
        };
        match timeout(budget, release).await.unwrap_or(Err(LeaseError::Timeout)) {
            Ok(()) => tracing::info!(identity = %self.identity, lease = %self.api.name(), "released the lease"),
            Err(e) => tracing::warn!(
                identity = %self.identity,
                error = %chain(&e),
                "cannot release the lease; the others take over when it expires"
            ),
        }
    }
}

/// `$POD_NAME`, else `$HOSTNAME`, else the kernel's host name.
fn default_identity() -> Result<String, LeaseError> {
    let from_env = ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    if let Some(name) = from_env {
        return Ok(name);
    }
    super::kube::read_small(std::path::Path::new("/proc/sys/kernel/hostname"))
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or(LeaseError::Setting {
            key: "leader_election.identity",
            reason: "unset, and neither $POD_NAME, $HOSTNAME nor the host name says this replica's name".to_owned(),
        })
}

/// The namespace of the pod's service account.
fn service_account_namespace() -> Result<String, LeaseError> {
    let path = std::path::Path::new(SERVICE_ACCOUNT_DIR).join("namespace");
    let bytes = match super::kube::read_small(&path) {
        Ok(bytes) => bytes.unwrap_or_default(),
        Err(source) => return Err(LeaseError::NoServiceAccount { path, source }),
    };
    let namespace = String::from_utf8_lossy(&bytes).trim().to_owned();
    if is_dns_label(&namespace) {
        Ok(namespace)
    } else {
        Err(LeaseError::Credential {
            path,
            reason: "not a namespace name; set leader_election.namespace".to_owned(),
        })
    }
}

/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, as client-go's in-cluster configuration.
fn in_cluster_api_server() -> Result<String, LeaseError> {
    match (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) {
        (Ok(host), Ok(port)) if !host.is_empty() && !port.is_empty() => {
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            Ok(format!("https://{host}:{port}"))
        }
        _ => Err(LeaseError::Setting {
            key: "leader_election.api_server",
            reason: "unset, and $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT are not set (not in a pod?); set \
                     it, or leader_election.enabled = false to run without leader election"
                .to_owned(),
        }),
    }
}

#[cfg(test)]
#[path = "elector_tests.rs"]
mod tests;
