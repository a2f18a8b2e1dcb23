//! The elector against an in-memory Lease with the API server's concurrency rule (a stale `resourceVersion` is a
//! 409), in paused time: every timing is exact and nothing sleeps for real.

use std::sync::Mutex;

use super::*;
use crate::lease::Role;

#[derive(Debug, Default)]
struct Store {
    lease: Option<Lease>,
    version: u64,
    /// The next update loses a race: another writer got there first.
    race_next_update: bool,
    writes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Answers 503.
    Down,
    /// Never answers.
    Hang,
}

/// One replica's view of the shared Lease, with its own fault.
#[derive(Debug, Clone)]
struct Mem {
    store: Arc<Mutex<Store>>,
    fault: Arc<Mutex<Fault>>,
}

impl Mem {
    fn new(store: &Arc<Mutex<Store>>) -> Mem {
        Mem {
            store: store.clone(),
            fault: Arc::new(Mutex::new(Fault::None)),
        }
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    async fn gate(&self) -> Result<(), LeaseError> {
        let fault = *self.fault.lock().unwrap();
        match fault {
            Fault::None => Ok(()),
            Fault::Down => Err(LeaseError::Status {
                code: 503,
                reason: "ServiceUnavailable".into(),
                message: "down".into(),
            }),
            Fault::Hang => std::future::pending().await,
        }
    }

    fn store(&self, mut lease: Lease, store: &mut Store) -> Lease {
        store.version += 1;
        store.writes += 1;
        lease.metadata.resource_version = Some(store.version.to_string());
        store.lease = Some(lease.clone());
        lease
    }
}

impl LeaseApi for Mem {
    async fn get(&self) -> Result<Lease, LeaseError> {
        self.gate().await?;
        self.store.lock().unwrap().lease.clone().ok_or(LeaseError::NotFound)
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.gate().await?;
        let mut store = self.store.lock().unwrap();
        if store.lease.is_some() {
            return Err(LeaseError::Conflict {
                message: "exists".into(),
            });
        }
        Ok(self.store(lease.clone(), &mut store))
    }

    async fn update(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.gate().await?;
        let mut store = self.store.lock().unwrap();
        let current = store.lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
        if std::mem::take(&mut store.race_next_update) || current != lease.metadata.resource_version {
            return Err(LeaseError::Conflict {
                message: "stale".into(),
            });
        }
        Ok(self.store(lease.clone(), &mut store))
    }

    fn name(&self) -> String {
        "ns/lease".into()
    }
}

const TIMINGS: Timings = Timings {
    lease_duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry_period: Duration::from_secs(2),
};

fn holder(store: &Arc<Mutex<Store>>) -> Option<String> {
    store
        .lock()
        .unwrap()
        .lease
        .as_ref()
        .and_then(|l| l.spec.holder_identity.clone())
}

fn spec(store: &Arc<Mutex<Store>>) -> LeaseSpec {
    store
        .lock()
        .unwrap()
        .lease
        .as_ref()
        .map(|l| l.spec.clone())
        .unwrap_or_default()
}

/// Starts an elector named `id` on `mem`; its leadership, metrics and stop token.
fn start(mem: &Mem, id: &str) -> (Leadership, Arc<Metrics>, CancellationToken, tokio::task::JoinHandle<()>) {
    let metrics = Arc::new(Metrics::new());
    let (elector, leadership) = Elector::new(mem.clone(), id, TIMINGS, metrics.clone());
    let done = CancellationToken::new();
    let task = tokio::spawn(elector.run(done.clone()));
    (leadership, metrics, done, task)
}

async fn wait(d: u64) {
    sleep(Duration::from_millis(d)).await;
}

#[tokio::test(start_paused = true)]
async fn acquires_a_missing_lease_then_renews_it_keeping_its_acquire_time() {
    let store = Arc::default();
    let (a, metrics, _done, _task) = start(&Mem::new(&store), "pod-a");
    wait(100).await;
    assert_eq!(a.role(), Role::Leader);
    assert_eq!(a.guard().check(), Ok(()));
    let first = spec(&store);
    assert_eq!(first.holder_identity.as_deref(), Some("pod-a"));
    assert_eq!(
        (first.lease_duration_seconds, first.lease_transitions),
        (Some(15), Some(0))
    );
    let annotations = store
        .lock()
        .unwrap()
        .lease
        .clone()
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations[VERSION_ANNOTATION], env!("CARGO_PKG_VERSION"));
    wait(30_000).await;
    let later = spec(&store);
    assert_eq!(a.role(), Role::Leader, "renewed all along");
    assert_eq!(a.guard().check(), Ok(()));
    assert_eq!(later.acquire_time, first.acquire_time);
    assert_eq!(later.lease_transitions, Some(0));
    assert!(store.lock().unwrap().writes >= 15, "renewed every retry period");
    let text = metrics.render();
    assert!(text.contains("cdc_leader 1"), "{text}");
    assert!(text.contains("cdc_leadership_changes_total 1"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_live_holder_is_left_alone_and_taken_over_a_lease_duration_after_observation_whatever_its_renew_time() {
    let store: Arc<Mutex<Store>> = Arc::default();
    // A holder that wrote once, with a renew time an hour in the past by its (skewed) clock: irrelevant, only
    // our own observation counts.
    Mem::new(&store).store(
        Lease {
            spec: LeaseSpec {
                holder_identity: Some("ghost".into()),
                lease_duration_seconds: Some(15),
                renew_time: Some("2000-01-01T00:00:00.000000Z".into()),
                lease_transitions: Some(4),
                ..LeaseSpec::default()
            },
            ..Lease::default()
        },
        &mut store.lock().unwrap(),
    );
    let (b, _, _done, _task) = start(&Mem::new(&store), "pod-b");
    wait(100).await;
    assert_eq!(
        b.role(),
        Role::Standby {
            leader: Some("ghost".into())
        }
    );
    assert!(b.guard().check().is_err());
    wait(14_000).await;
    assert!(
        !b.role().is_leader(),
        "14 s after observing it, the ghost's lease still holds"
    );
    // Expired at 15 s after observation; taken at the next jittered retry (at most 2.4 s later).
    wait(1_000 + 2_500).await;
    assert_eq!(b.role(), Role::Leader);
    let s = spec(&store);
    assert_eq!(
        (s.holder_identity.as_deref(), s.lease_transitions),
        (Some("pod-b"), Some(5))
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_race_is_a_standby_answer_not_an_error() {
    let store: Arc<Mutex<Store>> = Arc::default();
    let mem = Mem::new(&store);
    let (mut elector, leadership) = Elector::new(mem.clone(), "pod-a", TIMINGS, Arc::new(Metrics::new()));
    Mem::new(&store).store(Lease::default(), &mut store.lock().unwrap());
    store.lock().unwrap().race_next_update = true;
    let attempt = elector.try_acquire_or_renew().await;
    assert!(matches!(attempt, Ok(Attempt::Other(None))), "{attempt:?}");
    assert!(elector.shown_problem.is_none());
    assert!(!leadership.role().is_leader());
    // A lost race on create too (another replica created it between our GET and POST).
    assert!(matches!(elector.try_acquire_or_renew().await, Ok(Attempt::Held(_))));
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_stops_acting_at_its_renew_deadline_before_the_other_can_take_over() {
    for fault in [Fault::Hang, Fault::Down] {
        let store = Arc::default();
        let mem_a = Mem::new(&store);
        let (a, metrics, _da, _ta) = start(&mem_a, "pod-a");
        wait(100).await;
        assert!(a.role().is_leader());
        let (b, _, _db, _tb) = start(&Mem::new(&store), "pod-b");
        wait(3_000).await;
        assert_eq!(
            b.role(),
            Role::Standby {
                leader: Some("pod-a".into())
            }
        );
        mem_a.set(fault);
        let cut = Instant::now();
        // Sample every 100 ms: never two leaders by their guards, and A refuses within the renew deadline.
        let mut a_refused_at = None;
        while Instant::now() < cut + Duration::from_secs(25) {
            let (ga, gb) = (a.guard().check().is_ok(), b.guard().check().is_ok());
            assert!(!(ga && gb), "{fault:?}: two leaders at {:?}", Instant::now() - cut);
            if !ga && a_refused_at.is_none() {
                a_refused_at = Some(Instant::now() - cut);
            }
            wait(100).await;
        }
        let refused = a_refused_at.expect("A stopped acting");
        assert!(refused <= TIMINGS.renew_deadline, "{fault:?}: {refused:?}");
        assert!(!a.role().is_leader(), "{fault:?}: A stepped down");
        assert!(b.role().is_leader(), "{fault:?}: B took over");
        assert!(metrics.render().contains("cdc_leadership_changes_total 2"));
    }
}

#[tokio::test(start_paused = true)]
async fn done_acting_releases_the_lease_and_the_standby_takes_over_at_its_next_retry() {
    let store = Arc::default();
    let (a, _, done_a, task_a) = start(&Mem::new(&store), "pod-a");
    wait(100).await;
    let (b, _, _db, _tb) = start(&Mem::new(&store), "pod-b");
    wait(3_000).await;
    assert!(a.role().is_leader() && !b.role().is_leader());
    done_a.cancel();
    task_a.await.expect("the elector ends");
    assert!(a.guard().check().is_err() && !a.role().is_leader());
    assert_eq!(holder(&store).as_deref(), Some(""));
    assert_eq!(spec(&store).lease_duration_seconds, Some(1));
    wait(2_500).await;
    assert!(
        b.role().is_leader(),
        "taken at the next retry, not after the lease duration"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_api_server_never_makes_a_leader_and_is_retried_with_backoff() {
    let store: Arc<Mutex<Store>> = Arc::default();
    let mem = Mem::new(&store);
    mem.set(Fault::Down);
    let (a, _, _done, _task) = start(&mem, "pod-a");
    wait(60_000).await;
    assert!(!a.role().is_leader() && a.guard().check().is_err());
    mem.set(Fault::None);
    wait(16_000).await;
    assert!(
        a.role().is_leader(),
        "back within the backoff's cap (the lease duration)"
    );
}

#[tokio::test(start_paused = true)]
async fn an_absurd_lease_duration_is_bounded_and_a_missing_one_counts_as_ours() {
    for (seconds, expires_after) in [(Some(i64::MAX), MAX_LEASE_SECONDS as u64), (None, 15), (Some(-5), 15)] {
        let store: Arc<Mutex<Store>> = Arc::default();
        Mem::new(&store).store(
            Lease {
                spec: LeaseSpec {
                    holder_identity: Some("other".into()),
                    lease_duration_seconds: seconds,
                    ..LeaseSpec::default()
                },
                ..Lease::default()
            },
            &mut store.lock().unwrap(),
        );
        let (b, _, _done, _task) = start(&Mem::new(&store), "pod-b");
        wait(expires_after * 1000 - 500).await;
        assert!(!b.role().is_leader(), "{seconds:?}");
        wait(3_000).await;
        assert!(b.role().is_leader(), "{seconds:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_by_another_version_is_respected_until_it_expires_then_taken_with_this_version() {
    // A rolling upgrade: the old version's pod holds the lease. It is any holder: left alone while live, taken once
    // expired, and the taker writes its own version.
    let store: Arc<Mutex<Store>> = Arc::default();
    let old = Lease {
        metadata: ObjectMeta {
            annotations: Some([(VERSION_ANNOTATION.to_owned(), "0.0.1-old".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: LeaseSpec {
            holder_identity: Some("old-pod".into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        },
        ..Lease::default()
    };
    Mem::new(&store).store(old, &mut store.lock().unwrap());
    let (b, _, _done, _task) = start(&Mem::new(&store), "pod-b");
    wait(10_000).await;
    assert_eq!(
        b.role(),
        Role::Standby {
            leader: Some("old-pod".into())
        }
    );
    wait(8_000).await;
    assert_eq!(b.role(), Role::Leader);
    let lease = store.lock().unwrap().lease.clone().unwrap();
    assert_eq!(
        lease.metadata.annotations.unwrap()[VERSION_ANNOTATION],
        env!("CARGO_PKG_VERSION")
    );
}
