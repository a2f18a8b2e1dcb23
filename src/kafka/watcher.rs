//! Kafka watcher: finds the CDC topics, reads each partition's high watermark every poll interval, and when it
//! advances, decodes a bounded sample of the newest records to learn which table changed and how. It never
//! consumes the stream: the cost is one ListOffsets request per broker per poll ([`crate::kafka::watermarks`], under
//! every TLS and SASL setting) plus a small fetch when a partition's table must be learned or re-checked
//! ([`crate::kafka::samples`], at most once per `kafka.sample_interval` for a table topic).
//!
//! Discovery, watermark reads, sampling and lag are in `watcher/poll.rs`; this file holds the types and the loop.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::aws::AwsEnv;
use crate::backoff::Backoff;
use crate::config::{Config, KafkaConfig, PolicyConfig};
use crate::decoder::SeenFields;
use crate::kafka::connection::{Pool, Security, SecurityError, WireError};
use crate::kafka::lag::LagReader;
use crate::kafka::routing::Routing;
use crate::kafka::samples::{ClientError, PartitionSampler, SampleClient};
use crate::kafka::watermarks::{OffsetError, TopicPartition, WatermarkReader};
use crate::model::Op;
use crate::telemetry::Metrics;

mod poll;

/// An invalid record (or a record naming a table that is not believed) is logged at most once per topic in this
/// window (the rest are counted in metrics).
const INVALID_LOG_EVERY: Duration = Duration::from_secs(60);
/// Longest wait between attempts while the brokers are unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Why the watcher could not be set up (errors while running are retried, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// `kafka.topic_pattern` does not compile.
    #[error("kafka.topic_pattern: {0}")]
    Pattern(#[from] regex::Error),
    /// `kafka.routed_topics` does not compile.
    #[error("kafka.routed_topics: {0}")]
    Routed(#[source] regex::Error),
    /// TLS material could not be loaded.
    #[error("kafka.tls: {0}")]
    Tls(#[from] crate::kafka::tls::TlsError),
    /// The SASL token provider could not be made from `kafka.sasl` (a [`crate::auth::TokenError::Config`]).
    #[error("{0}")]
    Login(#[source] crate::auth::TokenError),
    /// `watch --once`: no SASL token could be had (one line naming its source and the cause).
    #[error("no SASL token: {0}")]
    Token(String),
    /// `watch --once`: no broker answered.
    #[error("Kafka brokers unreachable: {0}")]
    Unreachable(#[source] BrokerError),
}

/// Why the brokers gave no usable answer (the watcher retries; `watch --once` reports it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// An rskafka call (connect, partition client, fetch) failed.
    #[error("{what}: {source}")]
    Client {
        /// Which call.
        what: &'static str,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// An rskafka call got no answer in time.
    #[error("{what}: no answer within {}", humantime::format_duration(*limit))]
    Timeout {
        /// Which call.
        what: &'static str,
        /// `kafka.request_timeout`.
        limit: Duration,
    },
    /// No broker answered the Metadata request.
    #[error("metadata: {0}")]
    Metadata(#[source] WireError),
    /// A batched watermark read failed.
    #[error(transparent)]
    Offset(#[from] OffsetError),
    /// One failure shared by several calls (the client they all needed could not be made).
    #[error(transparent)]
    Shared(Arc<BrokerError>),
    /// One partition's watermark read failed (every partition's did).
    #[error("{topic}/{partition}: {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Why.
        #[source]
        source: Box<BrokerError>,
    },
}

/// New records on one table, learned from one partition's watermark advance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableActivity {
    /// The table: the topic's by `kafka.topic_template`, or on a routed topic the one its records name.
    pub table: String,
    /// The topic the records were appended to.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records appended since the last poll (for a topic routed from several tables: those sampled for this one).
    pub records: u64,
    /// Sampled records per operation.
    pub ops: BTreeMap<Op, u64>,
    /// Sampled changes whose operation is unknown (unwrapped rows without `__op`, binary records).
    pub unknown_ops: u64,
    /// Source timestamp of the newest sampled change.
    pub newest_ts_ms: Option<i64>,
    /// When the advance was observed, ms since the Unix epoch.
    pub observed_at_ms: i64,
    /// The field names of the sampled changes' rows (`after`, or `before` for deletes), bounded, for schema
    /// drift; `None` when no row was sampled (an advance counted from watermarks alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<SeenFields>,
}

/// Everything the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WatchEvent {
    /// A table has new records.
    Activity(TableActivity),
    /// A table's job group is behind by `lag` records (high watermark minus committed offset, summed).
    Lag {
        /// The table.
        table: String,
        /// Records not yet committed by the table's job.
        lag: u64,
    },
    /// The brokers answer again (or for the first time).
    BrokerUp,
    /// The brokers do not answer; the watcher keeps retrying.
    BrokerDown {
        /// The last error.
        error: String,
    },
    /// Whether the SASL token can be had changed (sent only on a change): `Some` says why it cannot (one line
    /// naming its source and the cause, secrets masked), `None` that it can again.
    TokenFailure {
        /// Why, while it cannot.
        failure: Option<String>,
    },
    /// The partitions whose record samples time out changed (sent only on a change; empty: none any more). Their
    /// advances are counted from the watermarks alone meanwhile.
    SampleTimeouts {
        /// `topic/partition` of each, sorted.
        partitions: Vec<String>,
    },
}

/// Counters of one poll cycle, for metrics and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Partitions whose watermark was read.
    pub partitions: usize,
    /// Partitions that advanced.
    pub advanced: usize,
    /// Records decoded in samples.
    pub sampled: usize,
    /// Bytes of sampled record values (a lower bound of what was fetched).
    pub sampled_bytes: usize,
    /// Sampled records per decoder kind (`change`, `tombstone`, `heartbeat`, ..., `invalid`).
    pub kinds: BTreeMap<&'static str, u64>,
    /// Advances not sampled: their partition's table was learned within `kafka.sample_interval`.
    pub known_table_advances: usize,
    /// Samples that got no answer within `kafka.request_timeout`.
    pub sample_timeouts: usize,
}

/// A partition being watched. Kept small: a watcher of 100,000 partitions holds one each, and most are never
/// sampled.
#[derive(Debug)]
struct Watched {
    /// Offset up to which records have been accounted for; `None` until the first read.
    baseline: Option<i64>,
    /// Found after start-up: everything in it is new.
    discovered_late: bool,
    /// What sampling it keeps, from its first sample on.
    sampled: Option<Box<Sampled>>,
}

/// What a partition that has been sampled keeps between polls.
#[derive(Debug, Default)]
struct Sampled {
    /// rskafka's client for sampling.
    client: Option<Arc<PartitionSampler>>,
    /// When a sample last found nothing but changes of the topic's own table, and that table: later advances within
    /// `kafka.sample_interval` are that table's changes without fetching anything.
    known_table: Option<(Instant, String)>,
    /// When a sample last got no answer in time: until `kafka.sample_interval` after it, advances count for the
    /// topic's table from the watermarks alone, so a broker that never answers a Fetch costs one timeout per
    /// interval, not one per poll.
    timed_out: Option<Instant>,
}

impl Watched {
    fn new(discovered_late: bool) -> Watched {
        Watched {
            baseline: None,
            discovered_late,
            sampled: None,
        }
    }

    fn sampled(&mut self) -> &mut Sampled {
        self.sampled.get_or_insert_with(Box::default)
    }

    fn known_table(&self) -> Option<&(Instant, String)> {
        self.sampled.as_ref()?.known_table.as_ref()
    }

    fn timed_out(&self) -> Option<Instant> {
        self.sampled.as_ref()?.timed_out
    }
}

/// The watcher's state; drive it with [`Watcher::run`], or step it with [`Watcher::refresh`] and
/// [`Watcher::poll`].
pub struct Watcher {
    config: KafkaConfig,
    pattern: Regex,
    /// rskafka's client, made at the first sample.
    client: Option<Arc<SampleClient>>,
    /// Sorted, so that walking it follows `keys`: a poll of every partition looks none up.
    partitions: BTreeMap<TopicPartition, Watched>,
    /// The keys of `partitions`, in its order; a new list whenever partitions come or go.
    keys: Arc<[TopicPartition]>,
    refreshed_at: Option<Instant>,
    started: bool,
    /// Built once at start, so bad TLS files fail `new` instead of every connection attempt.
    security: Security,
    /// The one pool of our own connections, one per broker: watermarks, lag and its control-record checks.
    pool: Pool,
    /// Batched watermark reads.
    watermarks: WatermarkReader,
    lag: Option<LagReader>,
    /// Tables whose lag decides something (a job starting, running or stopping); `None`: every table's.
    lag_tables: Option<watch::Receiver<BTreeSet<String>>>,
    /// The set the last lag read used; its tables get one more read, so a job's end leaves a fresh lag behind.
    lag_previous: BTreeSet<String>,
    /// Whether lag has been read once: the first read covers every table, so changes made while the sidecar was
    /// down are found as lag.
    lag_read_once: bool,
    metrics: Option<Arc<Metrics>>,
    /// Topics whose last invalid record was logged recently; entries expire after [`INVALID_LOG_EVERY`].
    invalid_logged: moka::sync::Cache<String, ()>,
    /// Topics whose last untrusted table name (or table-less change) was logged recently.
    untrusted_logged: moka::sync::Cache<String, ()>,
    /// Which table a change belongs to.
    routing: Routing,
    /// Operations that count as changes for every table (`policy.operations` and its overrides): a first sample's
    /// newest record of one of these settles what the advance means, so the rest need not be fetched.
    counted_ops: BTreeSet<Op>,
    /// Tables reported so far (activity or lag); at most `kafka.max_tables` besides the startable ones.
    tables: HashSet<String>,
    /// Whether the `kafka.max_tables` warning was given (it is given once).
    tables_full_warned: bool,
    /// Partitions whose last sample timed out, and when; for `/readyz` (see [`WatchEvent::SampleTimeouts`]).
    sample_timeouts: BTreeMap<TopicPartition, Instant>,
    /// Whether `sample_timeouts` changed since it was last reported.
    sample_timeouts_changed: bool,
    /// The token failure last reported ([`WatchEvent::TokenFailure`]).
    token_failure: Option<String>,
}

impl std::fmt::Debug for Watcher {
    /// The settings that decide what a sample means (so two watchers that show the same sample alike), and the
    /// partitions watched.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("bootstrap", &self.config.bootstrap)
            .field("topic_template", &self.config.topic_template)
            .field("routing", &self.routing)
            .field("counted_ops", &self.counted_ops)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

/// The operations that count as changes for every table: `policy.operations`, less any a table's override leaves
/// out.
fn counted_everywhere(policy: &PolicyConfig) -> BTreeSet<Op> {
    policy
        .operations
        .iter()
        .copied()
        .filter(|op| {
            policy
                .tables
                .keys()
                .all(|t| policy.for_table(t).operations.contains(op))
        })
        .collect()
}

pub(crate) fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Watcher {
    /// The watcher of `config`, the one way to build it (`run` and `watch` alike), given the tables that have a
    /// SQL template (`templated`). Everything that decides what a sample means comes from these two:
    /// - routing ([`Routing::with_templates`]) believes a routed record's table name only for a table it can start
    ///   (templated, or in `policy.include`), and those tables are always tracked, whatever `kafka.max_tables`
    ///   says;
    /// - a table topic's first sample fetches only its newest record when that record is a change of an operation
    ///   that counts for every table (`policy.operations` and every table's override); otherwise, and always on
    ///   routed topics, it fetches the full `kafka.sample_records`.
    ///
    /// It connects lazily, so a broker that is down at start is not an error.
    pub fn new(config: &Config, templated: impl IntoIterator<Item = String>) -> Result<Watcher, WatchError> {
        Self::new_with_env(config, templated, &AwsEnv::from_process())
    }

    /// [`Watcher::new`] with AWS MSK IAM reading the AWS variables of `aws_env` rather than the process's (tests,
    /// which share one process and must not change its environment).
    pub fn new_with_env(
        config: &Config,
        templated: impl IntoIterator<Item = String>,
        aws_env: &AwsEnv,
    ) -> Result<Watcher, WatchError> {
        let routing = Routing::with_templates(config, templated).map_err(WatchError::Routed)?;
        let counted_ops = counted_everywhere(&config.policy);
        let config = config.kafka.clone();
        let pattern = config.topic_regex()?;
        let security = Security::for_config_with_env(&config, aws_env).map_err(|e| match e {
            SecurityError::Tls(e) => WatchError::Tls(e),
            SecurityError::Login(e) => WatchError::Login(e),
        })?;
        Ok(Watcher {
            config,
            pool: Pool::new(security.clone()),
            security,
            watermarks: WatermarkReader::default(),
            pattern,
            client: None,
            partitions: BTreeMap::new(),
            keys: Arc::from([]),
            refreshed_at: None,
            started: false,
            lag: Some(LagReader::default()),
            lag_tables: None,
            lag_previous: BTreeSet::new(),
            lag_read_once: false,
            metrics: None,
            invalid_logged: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(INVALID_LOG_EVERY)
                .build(),
            untrusted_logged: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(INVALID_LOG_EVERY)
                .build(),
            routing,
            counted_ops,
            tables: HashSet::new(),
            tables_full_warned: false,
            sample_timeouts: BTreeMap::new(),
            sample_timeouts_changed: false,
            token_failure: None,
        })
    }

    /// Whether `table` may be reported: it is tracked already, or can be started, or there is room for it
    /// under `kafka.max_tables`. Past the limit, the first refused table is warned about and the rest ignored.
    fn admit(&mut self, table: &str) -> bool {
        if self.tables.contains(table) {
            return true;
        }
        let limit = usize::try_from(self.config.max_tables).unwrap_or(usize::MAX);
        if self.routing.can_start(table) || self.tables.len() < limit {
            self.tables.insert(table.to_owned());
            return true;
        }
        if !self.tables_full_warned {
            self.tables_full_warned = true;
            tracing::warn!(
                max_tables = limit,
                %table,
                "more tables than kafka.max_tables: this and any further new table are ignored"
            );
        }
        false
    }

    /// Reads no consumer-group lag at all: for a watcher whose lag decides nothing (`watch` without `--lag`).
    pub fn without_lag(mut self) -> Watcher {
        self.lag = None;
        self
    }

    /// Reads lag, after the first read, only for the tables `tables` holds (and, once more, those it held at the
    /// previous read): lag decides something only for a table with a job starting, running or stopping, and each
    /// table's read costs a ListOffsets and an OffsetFetch. Without it every table's lag is read.
    pub fn with_lag_tables(mut self, tables: watch::Receiver<BTreeSet<String>>) -> Watcher {
        self.lag_tables = Some(tables);
        self
    }

    /// The tables whose lag the next read covers; `None`: all of them.
    fn lag_filter(&mut self) -> Option<BTreeSet<String>> {
        let tables = self.lag_tables.as_ref()?;
        let current = tables.borrow().clone();
        let previous = std::mem::replace(&mut self.lag_previous, current.clone());
        if !std::mem::replace(&mut self.lag_read_once, true) {
            return None;
        }
        Some(current.into_iter().chain(previous).collect())
    }

    /// Records polls, their duration, partitions watched, sampled records by kind, sampled bytes and failed SASL
    /// token fetches in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Watcher {
        if let Some(cache) = self.security.token_cache() {
            cache.count_in(Arc::clone(&metrics));
        }
        self.metrics = Some(metrics);
        self
    }

    /// Refreshes the SASL token when it is due (so that it is fresh although every connection stays open), and
    /// returns the token failure when it changed since the last call: `Some(None)` once it heals.
    pub async fn refresh_token(&mut self) -> Option<Option<String>> {
        let cache = self.security.token_cache()?;
        cache.refresh_if_due().await;
        let failure = cache.failure();
        (failure != self.token_failure).then(|| {
            self.token_failure = failure.clone();
            failure
        })
    }

    /// Partitions currently watched.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Runs until `shutdown`, sending events to `events`. Never returns an error: broker failures are reported as
    /// [`WatchEvent::BrokerDown`] and retried with capped backoff.
    pub async fn run(mut self, events: mpsc::Sender<WatchEvent>, shutdown: CancellationToken) {
        let poll_every = self.config.poll_interval;
        // Starts as "down", so that the first answer is logged like every recovery: once per state change.
        let mut down: Option<String> = Some(String::new());
        // Consecutive failed cycles: the wait doubles from the poll interval with each.
        let mut failures = 0u32;
        let mut next_lag = Instant::now();
        loop {
            let cycle = Instant::now();
            // Whatever a cycle waits for (a sample, a lag read), shutdown does not wait for it.
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.cycle(&events, &mut next_lag) => result,
            };
            match result {
                Ok(()) => {
                    if down.take().is_some() {
                        tracing::info!(partitions = self.partitions.len(), "Kafka brokers answer");
                    }
                    let _ = events.send(WatchEvent::BrokerUp).await;
                    failures = 0;
                }
                Err(error) => {
                    let error = error.to_string();
                    if down.as_deref() != Some(error.as_str()) {
                        tracing::warn!(%error, "Kafka brokers unreachable; retrying with backoff");
                        let _ = events.send(WatchEvent::BrokerDown { error: error.clone() }).await;
                    }
                    down = Some(error);
                    // A broken client is rebuilt, so a restarted broker is found again; its partition clients (and
                    // their connections) go with it.
                    self.client = None;
                    self.partitions.values_mut().for_each(|w| {
                        w.baseline = w.baseline.or(Some(0));
                        if let Some(sampled) = w.sampled.as_mut() {
                            sampled.client = None;
                        }
                    });
                    self.refreshed_at = None;
                    failures = failures.saturating_add(1);
                }
            }
            let delay = Backoff::new(poll_every, MAX_RETRY_DELAY.max(poll_every)).delay(failures.saturating_add(1));
            let wait = delay.saturating_sub(cycle.elapsed());
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn cycle(&mut self, events: &mpsc::Sender<WatchEvent>, next_lag: &mut Instant) -> Result<(), BrokerError> {
        if let Some(failure) = self.refresh_token().await {
            let _ = events.send(WatchEvent::TokenFailure { failure }).await;
        }
        let stale = self
            .refreshed_at
            .is_none_or(|at| at.elapsed() >= self.config.topic_refresh);
        if stale {
            self.refresh().await?;
        }
        let began = Instant::now();
        let (activity, stats) = self.poll().await?;
        if let Some(m) = &self.metrics {
            record(m, began, &stats, &activity);
        }
        for a in activity {
            let _ = events.send(WatchEvent::Activity(a)).await;
        }
        if let Some(partitions) = self.sample_timeouts_report() {
            let _ = events.send(WatchEvent::SampleTimeouts { partitions }).await;
        }
        if Instant::now() >= *next_lag {
            *next_lag = Instant::now() + self.config.topic_refresh;
            for (table, lag) in self.lags().await {
                let _ = events.send(WatchEvent::Lag { table, lag }).await;
            }
        }
        Ok(())
    }
}

/// One poll's counters in `m`.
fn record(m: &Metrics, began: Instant, stats: &PollStats, activity: &[TableActivity]) {
    m.poll_completed(began.elapsed(), stats.partitions);
    m.sampled(stats.sampled_bytes);
    m.samples_timed_out(stats.sample_timeouts);
    for (kind, n) in &stats.kinds {
        m.records_decoded(kind, *n);
    }
    for a in activity {
        for (op, n) in &a.ops {
            m.records_sampled(&a.table, Some(*op), *n);
        }
        if a.unknown_ops > 0 {
            m.records_sampled(&a.table, None, a.unknown_ops);
        }
    }
}
