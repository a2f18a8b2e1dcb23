//! Kafka watcher: finds the CDC topics, reads each partition's high watermark every poll interval, and when it
//! advances, decodes a bounded sample of the newest records to learn which table changed and how. It never
//! consumes the stream: the cost is one ListOffsets request per broker per poll ([`crate::kafka::watermarks`]; one per
//! partition through rskafka under SASL) plus a small fetch when a partition's table must be learned or re-checked
//! (at most once per `kafka.sample_interval` for a table topic).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use regex::Regex;
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{KafkaConfig, SaslMechanism};
use crate::decoder::Op;
use crate::decoder::{self, Decoded};
use crate::http::metrics::{KindLabels, Metrics, TableOpLabels};
use crate::kafka::lag::{LagReader, PartitionOffsets};
use crate::kafka::routing::Routing;
use crate::kafka::watermarks::{Offset, WatermarkReader};

/// Partitions polled at once; bounds sockets and memory while keeping a poll of thousands of partitions short.
const POLL_CONCURRENCY: usize = 64;
/// Fetch wait for a sample. The records are known to exist, so the broker answers at once; tansu answers a
/// zero wait with an empty (malformed) response, hence 10 ms rather than 0.
const SAMPLE_MAX_WAIT_MS: i32 = 10;
/// An invalid record (or a record naming a table that is not believed) is logged at most once per topic in this
/// window (the rest are counted in metrics).
const INVALID_LOG_EVERY: Duration = Duration::from_secs(60);
/// Characters of a record's table name shown in a warning: enough to recognise it, never a flood.
const NAME_EXCERPT_CHARS: usize = 256;
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
    /// `watch --once`: no broker answered.
    #[error("Kafka brokers unreachable: {0}")]
    Unreachable(String),
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
    pub new_records: u64,
    /// Sampled records per operation.
    pub ops: BTreeMap<Op, u64>,
    /// Sampled changes whose operation is unknown (unwrapped rows without `__op`, binary records).
    pub unknown_ops: u64,
    /// Source timestamp of the newest sampled change.
    pub newest_ts_ms: Option<i64>,
    /// When the advance was observed, ms since the Unix epoch.
    pub observed_at_ms: i64,
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
}

/// A partition being watched.
#[derive(Debug)]
struct Watched {
    /// rskafka's client for sampling (and, with SASL, watermarks); made when first needed.
    client: Option<Arc<PartitionClient>>,
    /// Offset up to which records have been accounted for; `None` until the first read.
    baseline: Option<i64>,
    /// Found after start-up: everything in it is new.
    discovered_late: bool,
    /// When a sample last found nothing but changes of the topic's own table, and that table: later advances within
    /// `kafka.sample_interval` are that table's changes without fetching anything.
    known_table: Option<(Instant, String)>,
}

/// The watcher's state; drive it with [`Watcher::run`], or step it with [`Watcher::refresh`] and
/// [`Watcher::poll`].
pub struct Watcher {
    config: KafkaConfig,
    pattern: Regex,
    client: Option<Arc<Client>>,
    partitions: HashMap<(String, i32), Watched>,
    refreshed_at: Option<Instant>,
    started: bool,
    /// Built once at start, so bad TLS files fail `new` instead of every connection attempt.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Batched watermark reads; `None` with SASL, which only rskafka's own connections speak.
    watermarks: Option<WatermarkReader>,
    lag: Option<LagReader>,
    metrics: Option<Arc<Metrics>>,
    /// Topics whose last invalid record was logged recently; entries expire after [`INVALID_LOG_EVERY`].
    invalid_logged: moka::sync::Cache<String, ()>,
    /// Topics whose last untrusted table name (or table-less change) was logged recently.
    untrusted_logged: moka::sync::Cache<String, ()>,
    /// Which table a change belongs to.
    routing: Routing,
    /// Tables reported so far (activity or lag); at most `kafka.max_tables` besides the startable ones.
    tables: HashSet<String>,
    /// Whether the `kafka.max_tables` warning was given (it is given once).
    tables_full_warned: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("bootstrap", &self.config.bootstrap)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn timed<T, E: std::fmt::Display>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {}",
            humantime::format_duration(limit)
        )),
    }
}

impl Watcher {
    /// A watcher for `config`; it connects lazily, so a broker that is down at start is not an error.
    pub fn new(config: KafkaConfig) -> Result<Watcher, WatchError> {
        let pattern = config.topic_regex()?;
        let routing = Routing::new(&config, []).map_err(WatchError::Routed)?;
        let tls = crate::kafka::tls::client_config_if_enabled(&config.tls)?;
        let lag = Some(LagReader::new(tls.clone()));
        let watermarks = (config.batch_watermarks && config.sasl.is_none()).then(|| WatermarkReader::new(tls.clone()));
        Ok(Watcher {
            config,
            tls,
            watermarks,
            pattern,
            client: None,
            partitions: HashMap::new(),
            refreshed_at: None,
            started: false,
            lag,
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
            tables: HashSet::new(),
            tables_full_warned: false,
        })
    }

    /// Uses `routing` (built from the whole configuration, see [`Routing::for_config`]) to decide which table a
    /// change belongs to; without it no record's own table name is believed. Its startable tables are always
    /// tracked, whatever `kafka.max_tables` says.
    pub fn with_routing(mut self, routing: Routing) -> Watcher {
        self.routing = routing;
        self
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

    /// Logs, at most once per topic and minute, a change whose record named a table that is not believed here,
    /// or that has no table at all.
    fn warn_untrusted(&self, topic: &str, partition: i32, untrusted: &Untrusted) {
        if self.untrusted_logged.contains_key(topic) {
            return;
        }
        self.untrusted_logged.insert(topic.to_owned(), ());
        let named = untrusted.named.as_deref().map(excerpt);
        // Only routed topics ever look at a record's name, so a name that was not believed comes from one.
        match (&named, untrusted.counted_as.as_deref()) {
            (Some(named), Some(table)) => tracing::warn!(%topic, partition, %named, %table,
                "record on a routed topic names no table the sidecar can start (one with a SQL template or in \
                policy.include): counted as the topic's own table; further ones are logged at most once a minute"),
            (Some(named), None) => tracing::warn!(%topic, partition, %named,
                "record on a routed topic names no table the sidecar can start (one with a SQL template or in \
                policy.include), and the topic has no table of its own: change dropped; further ones are logged \
                at most once a minute"),
            (None, _) if self.routing.is_routed(topic) => tracing::warn!(%topic, partition,
                "record on a routed topic names no table, and the topic has no table of its own: change dropped; \
                further ones are logged at most once a minute"),
            (None, _) => tracing::warn!(%topic, partition,
                "changes on a topic that kafka.topic_template maps to no table and that is not in \
                kafka.routed_topics are dropped; further ones are logged at most once a minute"),
        }
    }

    /// Records polls, their duration, partitions watched, sampled records by kind and sampled bytes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Watcher {
        self.metrics = Some(metrics);
        self
    }

    /// Partitions currently watched.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    async fn connect(&mut self) -> Result<Arc<Client>, String> {
        if self.client.is_none() {
            let limit = self.config.request_timeout;
            let mut builder = ClientBuilder::new(self.config.bootstrap.clone())
                .client_id("cdc-orchestrator")
                // rskafka retries forever by default; a deadline turns a dead broker into an error we can report.
                .backoff_config(BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                    deadline: Some(limit),
                });
            if let Some(tls) = &self.tls {
                builder = builder.tls_config(Arc::clone(tls));
            }
            if let Some(sasl) = &self.config.sasl {
                let credentials = Credentials::new(sasl.username.clone(), sasl.password.expose().to_owned());
                builder = builder.sasl_config(match sasl.mechanism {
                    SaslMechanism::Plain => SaslConfig::Plain(credentials),
                    SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                    SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
                });
            }
            self.client = Some(Arc::new(timed(limit, "connect", builder.build()).await?));
        }
        self.client.clone().ok_or_else(|| "not connected".to_owned())
    }

    /// Reads topic metadata and adds or removes partitions to match the topic pattern.
    pub async fn refresh(&mut self) -> Result<(), String> {
        let limit = self.config.request_timeout;
        let topics: Vec<(String, Vec<i32>)> = match self.watermarks.as_mut() {
            Some(reader) => reader
                .refresh(&self.config.bootstrap, limit)
                .await
                .map_err(|e| format!("metadata: {e}"))?
                .into_iter()
                .map(|t| (t.name, t.partitions))
                .collect(),
            None => {
                let client = self.connect().await?;
                timed(limit, "list topics", client.list_topics())
                    .await?
                    .into_iter()
                    .map(|t| (t.name, t.partitions.into_iter().collect()))
                    .collect()
            }
        };
        let mut wanted = HashSet::new();
        for (topic, partitions) in topics.into_iter().filter(|(name, _)| self.pattern.is_match(name)) {
            for partition in partitions {
                wanted.insert((topic.clone(), partition));
            }
        }
        let late = self.started;
        for key in &wanted {
            if self.partitions.contains_key(key) {
                continue;
            }
            if late {
                tracing::info!(topic = %key.0, partition = key.1, "watching new partition");
            }
            self.partitions.insert(
                key.clone(),
                Watched {
                    client: None,
                    baseline: None,
                    discovered_late: late,
                    known_table: None,
                },
            );
        }
        let before = self.partitions.len();
        self.partitions.retain(|key, _| wanted.contains(key));
        if self.partitions.len() < before {
            tracing::info!(
                removed = before - self.partitions.len(),
                "stopped watching deleted partitions"
            );
        }
        self.started = true;
        self.refreshed_at = Some(Instant::now());
        Ok(())
    }

    /// The table a recent sample of `key` found alone, if it is still within `kafka.sample_interval`.
    fn known_table(&self, key: &(String, i32), now: Instant) -> Option<String> {
        let (at, table) = self.partitions.get(key)?.known_table.as_ref()?;
        (now.duration_since(*at) < self.config.sample_interval).then(|| table.clone())
    }

    /// rskafka's client for one partition, made on first use.
    async fn partition_client(&mut self, key: &(String, i32)) -> Result<Arc<PartitionClient>, String> {
        if let Some(client) = self.partitions.get(key).and_then(|w| w.client.clone()) {
            return Ok(client);
        }
        let limit = self.config.request_timeout;
        let client = self.connect().await?;
        let call = client.partition_client(key.0.clone(), key.1, UnknownTopicHandling::Error);
        let made = Arc::new(timed(limit, "partition client", call).await?);
        if let Some(watched) = self.partitions.get_mut(key) {
            watched.client = Some(Arc::clone(&made));
        }
        Ok(made)
    }

    /// The `at` offset of each of `keys`: one request per broker, or with SASL one rskafka request per partition.
    async fn read_offsets(
        &mut self,
        keys: Vec<(String, i32)>,
        at: Offset,
    ) -> Vec<((String, i32), Result<i64, String>)> {
        let limit = self.config.request_timeout;
        if let Some(reader) = self.watermarks.as_mut() {
            let read = reader.offsets(&keys, at, limit).await;
            if reader.is_stale() {
                // A leader moved or a topic went away: read metadata again before the next poll.
                self.refreshed_at = None;
            }
            return read;
        }
        let mut read = Vec::with_capacity(keys.len());
        let mut targets = Vec::with_capacity(keys.len());
        for key in keys {
            match self.partition_client(&key).await {
                Ok(client) => targets.push((key, client)),
                Err(e) => read.push((key, Err(e))),
            }
        }
        let offset_at = move || match at {
            Offset::Earliest => OffsetAt::Earliest,
            _ => OffsetAt::Latest,
        };
        read.extend(
            futures::stream::iter(targets.into_iter().map(|(key, client)| async move {
                (key, timed(limit, "list offsets", client.get_offset(offset_at())).await)
            }))
            .buffer_unordered(POLL_CONCURRENCY)
            .collect::<Vec<_>>()
            .await,
        );
        read
    }

    /// One poll: reads every watermark, samples the partitions that advanced and returns the activity found.
    pub async fn poll(&mut self) -> Result<(Vec<TableActivity>, PollStats), String> {
        let keys: Vec<(String, i32)> = self.partitions.keys().cloned().collect();
        let reads = self.read_offsets(keys, Offset::Latest).await;
        let mut stats = PollStats {
            partitions: reads.len(),
            ..PollStats::default()
        };
        let mut errors = Vec::new();
        let mut advanced = Vec::new();
        let mut went_back = Vec::new();
        for (key, result) in reads {
            let Some(watched) = self.partitions.get_mut(&key) else {
                continue;
            };
            let high = match result {
                Ok(high) => high,
                Err(e) => {
                    errors.push(format!("{}/{}: {e}", key.0, key.1));
                    continue;
                }
            };
            let base = watched.baseline.replace(high);
            match base {
                // Known at start-up: what is already there is the job's business (lag), not new activity.
                None if !watched.discovered_late => {}
                None if high > 0 => advanced.push((key, 0, high)),
                None => {}
                Some(base) if high < base => {
                    // Broker restarted with empty storage, or the topic was recreated: start over from its log start.
                    tracing::warn!(topic = %key.0, partition = key.1, from = base, to = high,
                        "high watermark went backwards; resetting");
                    went_back.push((key, high));
                }
                Some(base) if high > base => advanced.push((key, base, high)),
                Some(_) => {}
            }
        }
        if !errors.is_empty() && errors.len() == stats.partitions {
            return Err(errors.swap_remove(0));
        }
        for error in &errors {
            tracing::debug!(%error, "watermark read failed; retried next poll");
        }
        if !went_back.is_empty() {
            let keys = went_back.iter().map(|(key, _)| key.clone()).collect();
            let starts: HashMap<(String, i32), Result<i64, String>> =
                self.read_offsets(keys, Offset::Earliest).await.into_iter().collect();
            for (key, high) in went_back {
                let start = starts.get(&key).and_then(|r| r.as_ref().ok()).copied().unwrap_or(0);
                if high > start.min(high) {
                    advanced.push((key, start.min(high), high));
                }
            }
        }
        stats.advanced = advanced.len();
        let mut activity = Vec::new();
        let now = Instant::now();
        for ((topic, partition), from, high) in advanced {
            let new_records = u64::try_from(high - from).unwrap_or(0);
            let key = (topic.clone(), partition);
            if let Some(table) = self.known_table(&key, now) {
                // A table topic keeps carrying its table: the watermark alone says how many changes arrived, and
                // nothing is fetched (the bytes a consume-everything watcher would read are what we save).
                stats.known_table_advances += 1;
                activity.push(TableActivity {
                    table,
                    topic,
                    partition,
                    new_records,
                    ops: BTreeMap::new(),
                    unknown_ops: 0,
                    newest_ts_ms: None,
                    observed_at_ms: now_unix_ms(),
                });
                continue;
            }
            // A partition whose table is known from an earlier sample is re-checked with its newest record only;
            // a full sample is for learning (new partitions, routed topics, or a surprise at the last check).
            let want = match self.partitions.get(&key) {
                Some(w) if w.known_table.is_some() => 1,
                _ => self.config.sample_records,
            };
            let sample = match self.partition_client(&key).await {
                Ok(client) => self.sample(&client, from, high, want).await,
                Err(e) => Err(e),
            };
            let Summary {
                activity: found,
                sampled,
                bytes,
                invalid,
                untrusted,
            } = summarize(&self.routing, &topic, partition, new_records, &sample, &mut stats.kinds);
            let learned = match (&sample, found.as_slice()) {
                (Ok(_), [only])
                    if invalid.is_none()
                        && untrusted.is_none()
                        && self.routing.table_of_topic(&topic) == Some(only.table.as_str()) =>
                {
                    Some((now, only.table.clone()))
                }
                // Another table, several tables, no table data, or no sample: sample the next advance again.
                _ => None,
            };
            if let Some(watched) = self.partitions.get_mut(&key) {
                watched.known_table = learned;
            }
            if let Some(error) = invalid
                && !self.invalid_logged.contains_key(&topic)
            {
                self.invalid_logged.insert(topic.clone(), ());
                tracing::warn!(%topic, partition, %error, "invalid record (counted as a change of unknown operation; \
                    further ones on this topic are logged at most once a minute)");
            }
            if let Some(untrusted) = &untrusted {
                self.warn_untrusted(&topic, partition, untrusted);
            }
            stats.sampled += sampled;
            stats.sampled_bytes += bytes;
            activity.extend(found);
        }
        activity.retain(|a| self.admit(&a.table));
        Ok((activity, stats))
    }

    /// Fetches the newest records of `[from, high)`, at most `want` and about `sample_bytes`.
    async fn sample(
        &self,
        client: &PartitionClient,
        from: i64,
        high: i64,
        want: u32,
    ) -> Result<Vec<Decodable>, String> {
        let want = i64::from(want);
        let start = from.max(high - want);
        let max_bytes = i32::try_from(self.config.sample_bytes).unwrap_or(i32::MAX);
        let mut records = Vec::new();
        let mut next = start;
        // A fetch may return fewer records than asked (batch boundaries); a few rounds fill the sample.
        for _ in 0..4 {
            if next >= high {
                break;
            }
            let fetched = timed(
                self.config.request_timeout,
                "fetch",
                client.fetch_records(next, 1..max_bytes, SAMPLE_MAX_WAIT_MS),
            )
            .await?;
            let (batch, _) = fetched;
            let before = records.len();
            for r in batch {
                if r.offset >= start && r.offset < high && r.offset >= next {
                    next = r.offset + 1;
                    records.push(Decodable {
                        key: r.record.key,
                        value: r.record.value,
                    });
                }
            }
            if records.len() == before {
                break;
            }
        }
        Ok(records)
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
            let result = self.cycle(&events, &mut next_lag).await;
            match result {
                Ok(()) => {
                    if down.take().is_some() {
                        tracing::info!(partitions = self.partitions.len(), "Kafka brokers answer");
                    }
                    let _ = events.send(WatchEvent::BrokerUp).await;
                    failures = 0;
                }
                Err(error) => {
                    if down.as_deref() != Some(error.as_str()) {
                        tracing::warn!(%error, "Kafka brokers unreachable; retrying with backoff");
                        let _ = events.send(WatchEvent::BrokerDown { error: error.clone() }).await;
                    }
                    down = Some(error);
                    // A broken client is rebuilt, so a restarted broker is found again.
                    self.client = None;
                    self.partitions
                        .values_mut()
                        .for_each(|w| w.baseline = w.baseline.or(Some(0)));
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

    async fn cycle(&mut self, events: &mpsc::Sender<WatchEvent>, next_lag: &mut Instant) -> Result<(), String> {
        let stale = self
            .refreshed_at
            .is_none_or(|at| at.elapsed() >= self.config.topic_refresh);
        if stale {
            self.refresh().await?;
        }
        let began = Instant::now();
        let (activity, stats) = self.poll().await?;
        if let Some(m) = &self.metrics {
            m.polls.inc();
            m.poll_duration.observe(began.elapsed().as_secs_f64());
            m.partitions_watched
                .set(i64::try_from(stats.partitions).unwrap_or(i64::MAX));
            m.sampled_bytes
                .inc_by(u64::try_from(stats.sampled_bytes).unwrap_or(u64::MAX));
            for (kind, n) in &stats.kinds {
                m.decoded_records
                    .get_or_create(&KindLabels {
                        kind: (*kind).to_owned(),
                    })
                    .inc_by(*n);
            }
            for a in &activity {
                for (op, n) in &a.ops {
                    let labels = TableOpLabels {
                        table: a.table.clone(),
                        op: op.code().to_owned(),
                    };
                    m.activity_records.get_or_create(&labels).inc_by(*n);
                }
                if a.unknown_ops > 0 {
                    let labels = TableOpLabels {
                        table: a.table.clone(),
                        op: "unknown".to_owned(),
                    };
                    m.activity_records.get_or_create(&labels).inc_by(a.unknown_ops);
                }
            }
        }
        for a in activity {
            let _ = events.send(WatchEvent::Activity(a)).await;
        }
        if Instant::now() >= *next_lag {
            *next_lag = Instant::now() + self.config.topic_refresh;
            for (table, lag) in self.lags().await {
                let _ = events.send(WatchEvent::Lag { table, lag }).await;
            }
        }
        Ok(())
    }

    /// Lag of every watched table's job group, where the group coordinator answers. Call it after a poll: it
    /// uses the high watermarks that poll read.
    pub async fn lags(&mut self) -> Vec<(String, u64)> {
        if self.lag.is_none() {
            return Vec::new();
        }
        // The high watermarks are those the last poll read; only the log starts are read here.
        let highs: Vec<((String, i32), Option<i64>)> = self
            .partitions
            .iter()
            .map(|(key, w)| (key.clone(), w.baseline))
            .collect();
        let keys = highs.iter().map(|(key, _)| key.clone()).collect();
        let starts: HashMap<(String, i32), Result<i64, String>> =
            self.read_offsets(keys, Offset::Earliest).await.into_iter().collect();
        // A table with a partition whose offsets could not be read has no lag this time (unknown, not zero).
        let mut by_table: BTreeMap<String, Option<Vec<PartitionOffsets>>> = BTreeMap::new();
        for ((topic, partition), high) in highs {
            // Lag is per table topic; a topic without a table of its own (a routed one) has none.
            let Some(table) = self.routing.table_of_topic(&topic).map(str::to_owned) else {
                continue;
            };
            if !self.admit(&table) {
                continue;
            }
            let start = starts
                .get(&(topic.clone(), partition))
                .and_then(|r| r.as_ref().ok())
                .copied();
            let entry = by_table.entry(table).or_insert_with(|| Some(Vec::new()));
            match (high, start, entry.as_mut()) {
                (Some(high), Some(start), Some(list)) => list.push(PartitionOffsets {
                    topic,
                    partition,
                    high,
                    start,
                }),
                _ => *entry = None,
            }
        }
        let Some(reader) = self.lag.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (table, partitions) in by_table {
            let Some(partitions) = partitions else {
                tracing::debug!(%table, "lag unknown: offsets could not be read");
                continue;
            };
            match reader.lag_from(&self.config, &table, &partitions).await {
                Ok(lag) => out.push((table, lag)),
                Err(e) => tracing::debug!(%table, error = %e, "lag unknown"),
            }
        }
        out
    }
}

/// A fetched record, owned.
#[derive(Debug)]
struct Decodable {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// A change that was not counted where its record said, for a rate-limited warning.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Untrusted {
    /// The table the record named, if any.
    named: Option<String>,
    /// The table it was counted for instead; `None`: dropped.
    counted_as: Option<String>,
}

/// What one partition's sample says.
#[derive(Debug, Default)]
struct Summary {
    activity: Vec<TableActivity>,
    sampled: usize,
    bytes: usize,
    /// The first invalid record's error.
    invalid: Option<String>,
    /// The first change not counted where its record said.
    untrusted: Option<Untrusted>,
}

/// The start of a record's table name, for a warning.
fn excerpt(name: &str) -> String {
    match name.char_indices().nth(NAME_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

/// Turns a decoded sample into per-table activity. An advance whose sample holds only heartbeats, transaction
/// markers, messages or schema changes is no table activity; records beyond the sample count for the topic's
/// table, since a table topic carries nothing but changes and tombstones. Which table a change counts for is
/// [`Routing::resolve`]'s answer: a record's own table name matters only on routed topics.
fn summarize(
    routing: &Routing,
    topic: &str,
    partition: i32,
    new_records: u64,
    sample: &Result<Vec<Decodable>, String>,
    kinds: &mut BTreeMap<&'static str, u64>,
) -> Summary {
    let observed_at_ms = now_unix_ms();
    let blank = |table: &str| TableActivity {
        table: table.to_owned(),
        topic: topic.to_owned(),
        partition,
        new_records: 0,
        ops: BTreeMap::new(),
        unknown_ops: 0,
        newest_ts_ms: None,
        observed_at_ms,
    };
    let topic_table = routing.table_of_topic(topic);
    let no_table = || Untrusted {
        named: None,
        counted_as: None,
    };
    let mut summary = Summary::default();
    let records = match sample {
        Ok(records) => records,
        Err(e) => {
            // No sample, but the watermark moved: still a change of the topic's table, operation unknown.
            tracing::warn!(%topic, partition, error = %e, "sample fetch failed");
            match topic_table {
                Some(table) => {
                    let mut a = blank(table);
                    a.new_records = new_records;
                    a.unknown_ops = new_records;
                    summary.activity.push(a);
                }
                None => summary.untrusted = Some(no_table()),
            }
            return summary;
        }
    };
    let mut tables: BTreeMap<String, TableActivity> = BTreeMap::new();
    let mut not_table_data = 0u64;
    for record in records {
        summary.bytes += record.value.as_ref().map_or(0, Vec::len);
        let decoded = decoder::decode(topic, record.key.as_deref(), record.value.as_deref());
        *kinds.entry(decoded.kind()).or_default() += 1;
        // Opaque and invalid records are changes of the topic's table, operation unknown.
        let (table, change) = match &decoded {
            Decoded::Change(change) => {
                let named = change.table_from_record.then_some(change.table.as_str());
                let resolved = routing.resolve(topic, named);
                if let Some(named) = resolved.untrusted()
                    && summary.untrusted.is_none()
                {
                    summary.untrusted = Some(Untrusted {
                        named: Some(named.to_owned()),
                        counted_as: resolved.table().map(str::to_owned),
                    });
                }
                (resolved.table(), Some(change))
            }
            Decoded::Opaque { .. } => (topic_table, None),
            Decoded::Invalid { error } => {
                summary.invalid.get_or_insert_with(|| error.clone());
                (topic_table, None)
            }
            Decoded::Tombstone { .. } => continue,
            _ => {
                not_table_data += 1;
                continue;
            }
        };
        let Some(table) = table else {
            summary.untrusted.get_or_insert_with(no_table);
            continue;
        };
        let a = tables.entry(table.to_owned()).or_insert_with(|| blank(table));
        a.new_records += 1;
        match change {
            Some(change) => {
                match change.op {
                    Some(op) => *a.ops.entry(op).or_default() += 1,
                    None => a.unknown_ops += 1,
                }
                a.newest_ts_ms = a.newest_ts_ms.max(change.ts_ms);
            }
            None => a.unknown_ops += 1,
        }
    }
    summary.sampled = records.len();
    let unsampled = new_records.saturating_sub(u64::try_from(summary.sampled).unwrap_or(u64::MAX));
    if not_table_data == 0
        && unsampled > 0
        && let Some(table) = topic_table
    {
        let a = tables.entry(table.to_owned()).or_insert_with(|| blank(table));
        a.new_records += unsampled;
    }
    // A single-table topic: every new record is the table's, sampled or not.
    if tables.len() == 1
        && let Some(table) = topic_table
        && let Some(a) = tables.get_mut(table)
    {
        a.new_records = a.new_records.max(new_records.saturating_sub(not_table_data));
    }
    summary.activity = tables.into_values().collect();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: &str) -> Decodable {
        Decodable {
            key: None,
            value: Some(value.as_bytes().to_vec()),
        }
    }

    const TOPIC: &str = "university-server.public.faculty";

    fn routing(routed: &[&str]) -> Routing {
        let kafka = KafkaConfig {
            routed_topics: routed.iter().map(|s| (*s).to_owned()).collect(),
            ..KafkaConfig::default()
        };
        Routing::new(&kafka, ["faculty".to_owned(), "program".to_owned()]).expect("valid")
    }

    /// `summarize` with no routed topics: activity, sampled count, invalid error.
    fn plain(
        topic: &str,
        partition: i32,
        new_records: u64,
        sample: &Result<Vec<Decodable>, String>,
        kinds: &mut BTreeMap<&'static str, u64>,
    ) -> (Vec<TableActivity>, usize, usize, Option<String>) {
        let s = summarize(&routing(&[]), topic, partition, new_records, sample, kinds);
        (s.activity, s.sampled, s.bytes, s.invalid)
    }

    #[test]
    fn a_sample_of_changes_is_activity_of_the_topic_table() {
        let sample = Ok(vec![
            rec(r#"{"op":"c","source":{"table":"faculty"},"after":{},"ts_ms":5}"#),
            rec(r#"{"op":"u","source":{"table":"faculty","ts_ms":9},"after":{}}"#),
        ]);
        let (found, sampled, _, _) = plain(TOPIC, 0, 10, &sample, &mut BTreeMap::new());
        assert_eq!(sampled, 2);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].table, "faculty");
        assert_eq!(
            found[0].new_records, 10,
            "unsampled records count for the topic's table"
        );
        assert_eq!(found[0].ops, BTreeMap::from([(Op::Create, 1), (Op::Update, 1)]));
        assert_eq!(found[0].newest_ts_ms, Some(9));
    }

    #[test]
    fn heartbeats_and_transactions_are_not_activity() {
        let sample = Ok(vec![rec(r#"{"status":"BEGIN","id":"1","data_collections":null}"#)]);
        let (found, _, _, _) = plain("university-server.transaction", 0, 1, &sample, &mut BTreeMap::new());
        assert!(found.is_empty());
        let (found, _, _, _) = plain(
            "__debezium-heartbeat.university-server",
            0,
            3,
            &Ok(vec![rec("{}")]),
            &mut BTreeMap::new(),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn routed_topics_report_each_startable_table_and_drop_the_rest() {
        let sample = Ok(vec![
            rec(r#"{"op":"c","source":{"table":"faculty"},"after":{}}"#),
            rec(r#"{"op":"d","source":{"table":"program"},"before":{}}"#),
            rec(r#"{"op":"d","source":{"table":"junk"},"before":{}}"#),
        ]);
        let s = summarize(
            &routing(&[r"university-server\.all"]),
            "university-server.all",
            0,
            3,
            &sample,
            &mut BTreeMap::new(),
        );
        let tables: Vec<_> = s.activity.iter().map(|a| (a.table.as_str(), a.new_records)).collect();
        assert_eq!(tables, [("faculty", 1), ("program", 1)]);
        assert_eq!(
            s.untrusted,
            Some(Untrusted {
                named: Some("junk".into()),
                counted_as: None
            })
        );
        // The same records on a topic that is not routed: nothing is believed, and the topic has no table.
        let s = summarize(
            &routing(&[]),
            "university-server.all",
            0,
            3,
            &sample,
            &mut BTreeMap::new(),
        );
        assert!(s.activity.is_empty(), "{:?}", s.activity);
    }

    #[test]
    fn record_table_names_do_not_create_tables_on_a_table_topic() {
        let sample = Ok((0..16)
            .map(|i| rec(&format!(r#"{{"op":"c","source":{{"table":"junk_{i}"}},"after":{{}}}}"#)))
            .collect());
        let course = "university-server.public.course";
        let (found, _, _, _) = plain(course, 0, 640, &sample, &mut BTreeMap::new());
        let tables: Vec<_> = found.iter().map(|a| (a.table.as_str(), a.new_records)).collect();
        assert_eq!(tables, [("course", 640)]);
        let s = summarize(&routing(&[course]), course, 0, 640, &sample, &mut BTreeMap::new());
        let tables: Vec<_> = s.activity.iter().map(|a| (a.table.as_str(), a.new_records)).collect();
        assert_eq!(
            tables,
            [("course", 640)],
            "routed, but junk is no table the sidecar can start"
        );
        assert_eq!(s.untrusted.and_then(|u| u.counted_as).as_deref(), Some("course"));
    }

    #[test]
    fn a_failed_sample_still_reports_the_advance() {
        let (found, _, _, _) = plain(TOPIC, 2, 4, &Err("fetch: timeout".into()), &mut BTreeMap::new());
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].new_records, found[0].unknown_ops), (4, 4));
    }

    #[test]
    fn invalid_and_binary_records_are_changes_of_unknown_operation() {
        let sample = Ok(vec![
            rec("garbage"),
            Decodable {
                key: None,
                value: Some(vec![0, 0, 0, 0, 1, 9]),
            },
        ]);
        let mut kinds = BTreeMap::new();
        let (found, _, _, invalid) = plain(TOPIC, 0, 2, &sample, &mut kinds);
        assert_eq!(found[0].unknown_ops, 2);
        assert!(invalid.is_some_and(|e| e.starts_with("not JSON")));
        assert_eq!(kinds, BTreeMap::from([("invalid", 1), ("opaque", 1)]));
        assert!(found[0].ops.is_empty());
    }

    #[test]
    fn tombstones_alone_are_not_activity_but_their_deletes_are() {
        let tombstone = Decodable {
            key: Some(b"{}".to_vec()),
            value: None,
        };
        let (found, _, _, _) = plain(TOPIC, 0, 1, &Ok(vec![tombstone]), &mut BTreeMap::new());
        assert!(found.is_empty());
    }
}
