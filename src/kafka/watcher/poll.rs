//! One poll of the watcher: topic discovery, watermark reads (one request per broker), samples of the partitions
//! that advanced, and lag.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{BrokerError, PollStats, TableActivity, Watched, Watcher, now_unix_ms};
use crate::kafka::lag::PartitionOffsets;
use crate::kafka::samples::{self, PartitionSampler, SampleClient, Summary, Untrusted, excerpt, summarize};
use crate::kafka::watermarks::{Offset, TopicPartition, records_between};

/// Partitions sampled at once through rskafka; bounds sockets and memory while keeping a poll of thousands of
/// advances short.
const SAMPLE_CONCURRENCY: usize = 64;

/// How long a partition whose sample timed out is reported as such (unless a later sample answers).
const SAMPLE_TIMEOUT_MEMORY: Duration = Duration::from_secs(300);

/// One partition's offset, or why it was not read (boxed: a poll holds one per partition, nearly all `Ok`).
type Read = Result<i64, Box<BrokerError>>;

/// A partition whose watermark moved from `.1` to `.2`.
type Advance = (TopicPartition, i64, i64);

/// What one partition's sample came to.
struct SampleOutcome {
    key: TopicPartition,
    /// The partition client to keep: `None` after a failed request, so that its connection goes.
    client: Option<Arc<PartitionSampler>>,
    /// Whether the fetch succeeded.
    ok: bool,
    /// Whether it got no answer within `kafka.request_timeout`.
    timed_out: bool,
    summary: Summary,
    kinds: BTreeMap<&'static str, u64>,
}

impl Watcher {
    /// rskafka's client for samples, made on first use.
    async fn connect(&mut self) -> Result<Arc<SampleClient>, BrokerError> {
        if let Some(client) = &self.client {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(SampleClient::connect(&self.config, &self.security).await?);
        self.client = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Reads topic metadata and adds or removes partitions to match the topic pattern.
    pub async fn refresh(&mut self) -> Result<(), BrokerError> {
        let limit = self.config.request_timeout;
        let topics = self
            .watermarks
            .refresh(&mut self.pool, &self.config.bootstrap, limit)
            .await
            .map_err(BrokerError::Metadata)?;
        // Each topic's partitions, sorted; one shared name per topic, and no key built per partition unless new.
        let mut wanted: HashMap<Arc<str>, Vec<i32>> = HashMap::new();
        for topic in topics.into_iter().filter(|t| self.pattern.is_match(&t.name)) {
            // Sorted by the reader already.
            wanted.insert(Arc::from(topic.name), topic.partitions);
        }
        let late = self.started;
        let mut added = 0;
        for (topic, partitions) in &wanted {
            for &partition in partitions {
                let key = (Arc::clone(topic), partition);
                if self.partitions.contains_key(&key) {
                    continue;
                }
                if late {
                    tracing::info!(topic = %key.0, partition, "watching new partition");
                }
                added += 1;
                self.partitions.insert(key, Watched::new(late));
            }
        }
        let before = self.partitions.len();
        self.partitions.retain(|(topic, partition), _| {
            wanted
                .get(topic)
                .is_some_and(|partitions| partitions.binary_search(partition).is_ok())
        });
        let removed = before - self.partitions.len();
        if removed > 0 {
            tracing::info!(removed, "stopped watching deleted partitions");
        }
        if added > 0 || removed > 0 || !self.started {
            // A new list (a new `Arc`) tells the watermark reader to plan its requests again.
            self.keys = self.partitions.keys().cloned().collect();
        }
        self.started = true;
        self.refreshed_at = Some(Instant::now());
        Ok(())
    }

    /// The table a recent sample of `key` found alone, if it is still within `kafka.sample_interval`.
    fn known_table(&self, key: &TopicPartition, now: Instant) -> Option<String> {
        let (at, table) = self.partitions.get(key)?.known_table()?;
        (now.duration_since(*at) < self.config.sample_interval).then(|| table.clone())
    }

    /// rskafka's client for `key`'s partition, if one is open.
    fn cached_client(&self, key: &TopicPartition) -> Option<Arc<PartitionSampler>> {
        self.partitions.get(key)?.sampled.as_ref()?.client.clone()
    }

    /// Keeps `client` for `key`'s partition, or (`None`, after a failed request) lets its connection go: a
    /// connection is never reused after an error, whose answer may still be arriving on it.
    fn keep_client(&mut self, key: &TopicPartition, client: Option<Arc<PartitionSampler>>) {
        if let Some(watched) = self.partitions.get_mut(key)
            && (client.is_some() || watched.sampled.is_some())
        {
            watched.sampled().client = client;
        }
    }

    /// The `at` offset of each of `keys`, in their order: one request per broker (see [`WatermarkReader`]).
    ///
    /// [`WatermarkReader`]: crate::kafka::watermarks::WatermarkReader
    async fn read_offsets(&mut self, keys: &Arc<[TopicPartition]>, at: Offset) -> Vec<Read> {
        let read = self
            .watermarks
            .offsets(&mut self.pool, keys, at, self.config.request_timeout)
            .await;
        if self.watermarks.is_stale() {
            // A leader moved or a topic went away: read metadata again before the next poll.
            self.refreshed_at = None;
        }
        read.into_iter()
            .map(|r| r.map_err(|e| Box::new(BrokerError::from(e))))
            .collect()
    }

    /// One poll: reads every watermark, samples the partitions that advanced and returns the activity found.
    /// Samples run side by side and end, answered or not, `kafka.request_timeout` after they begin: a broker that
    /// never answers a Fetch holds a poll no longer than that.
    pub async fn poll(&mut self) -> Result<(Vec<TableActivity>, PollStats), BrokerError> {
        let keys = Arc::clone(&self.keys);
        let reads = self.read_offsets(&keys, Offset::Latest).await;
        let mut stats = PollStats {
            partitions: reads.len(),
            ..PollStats::default()
        };
        let advanced = self.advances(&keys, reads).await?;
        stats.advanced = advanced.len();
        let mut activity = Vec::new();
        let now = Instant::now();
        let mut to_sample = Vec::new();
        for advance in advanced {
            match self.unsampled_activity(&advance, now, &mut stats) {
                Some(found) => activity.extend(found),
                None => to_sample.push(advance),
            }
        }
        if !to_sample.is_empty() {
            for outcome in self.samples(to_sample, now + self.config.request_timeout).await {
                activity.extend(self.settle(outcome, now, &mut stats));
            }
        }
        self.expire_sample_timeouts(now);
        activity.retain(|a| self.admit(&a.table));
        Ok((activity, stats))
    }

    /// The partitions of `keys` whose watermark in `reads` (in the same order) moved past their baseline (which
    /// moves with them). Fails only when every read failed.
    async fn advances(&mut self, keys: &[TopicPartition], reads: Vec<Read>) -> Result<Vec<Advance>, BrokerError> {
        let total = reads.len();
        let mut errors = Vec::new();
        let mut advanced = Vec::new();
        let mut went_back = Vec::new();
        // `keys` is `partitions`' keys in its order, so the two are walked side by side; a key out of step (which
        // a change of partitions without a new `keys` would cause) is looked up instead.
        let mut walk = self.partitions.range_mut::<TopicPartition, _>(..);
        for (key, result) in keys.iter().zip(reads) {
            let watched = match walk.next() {
                Some((k, w)) if Arc::ptr_eq(&k.0, &key.0) && k.1 == key.1 => w,
                _ => {
                    walk = self.partitions.range_mut(key.clone()..);
                    match walk.next() {
                        Some((k, w)) if k == key => w,
                        _ => continue,
                    }
                }
            };
            let high = match result {
                Ok(high) => high,
                Err(source) => {
                    errors.push(BrokerError::Partition {
                        topic: key.0.to_string(),
                        partition: key.1,
                        source,
                    });
                    continue;
                }
            };
            match watched.baseline.replace(high) {
                // Known at start-up: what is already there is the job's business (lag), not new activity.
                None if !watched.discovered_late => {}
                None if high > 0 => advanced.push((key.clone(), 0, high)),
                None => {}
                Some(base) if high < base => {
                    // Broker restarted with empty storage, or the topic was recreated: start over from its log start.
                    tracing::warn!(topic = %key.0, partition = key.1, from = base, to = high,
                        "high watermark went backwards; resetting");
                    went_back.push((key.clone(), high));
                }
                Some(base) if high > base => advanced.push((key.clone(), base, high)),
                Some(_) => {}
            }
        }
        if !errors.is_empty() && errors.len() == total {
            return Err(errors.swap_remove(0));
        }
        for error in &errors {
            tracing::debug!(%error, "watermark read failed; retried next poll");
        }
        if !went_back.is_empty() {
            let keys: Arc<[TopicPartition]> = went_back.iter().map(|(key, _)| key.clone()).collect();
            let starts = self.read_offsets(&keys, Offset::Earliest).await;
            for ((key, high), start) in went_back.into_iter().zip(starts) {
                // A log start past the high watermark is no offset to count from.
                let start = start.ok().filter(|start| *start <= high).unwrap_or(0);
                if high > start {
                    advanced.push((key, start, high));
                }
            }
        }
        Ok(advanced)
    }

    /// What an advance says without a fetch, if that is enough: within `kafka.sample_interval` of a sample that
    /// found only the topic's own table, or of one that timed out, the advance is that table's changes (of unknown
    /// operation after a timeout). `None`: sample it.
    fn unsampled_activity(&self, advance: &Advance, now: Instant, stats: &mut PollStats) -> Option<Vec<TableActivity>> {
        let (key, from, high) = advance;
        let records = records_between(*from, *high);
        let activity = |table: String, unknown_ops: u64| TableActivity {
            table,
            topic: key.0.to_string(),
            partition: key.1,
            records,
            ops: BTreeMap::new(),
            unknown_ops,
            newest_ts_ms: None,
            observed_at_ms: now_unix_ms(),
            fields: None,
        };
        if let Some(table) = self.known_table(key, now) {
            // A table topic keeps carrying its table: the watermark alone says how many changes arrived, and
            // nothing is fetched (the bytes a consume-everything watcher would read are what we save).
            stats.known_table_advances += 1;
            return Some(vec![activity(table, 0)]);
        }
        let timed_out = self.partitions.get(key)?.timed_out()?;
        if now.duration_since(timed_out) >= self.config.sample_interval {
            return None;
        }
        // The broker does not answer this partition's samples: its topic's table (if it has one) changed.
        Some(
            self.config
                .table_of_topic(&key.0)
                .map(|table| activity(table.to_owned(), records))
                .into_iter()
                .collect(),
        )
    }

    /// Samples `advances` side by side, each ending by `deadline` whether or not the broker answered.
    async fn samples(&mut self, advances: Vec<Advance>, deadline: Instant) -> Vec<SampleOutcome> {
        let limit = self.config.request_timeout;
        let client = match tokio::time::timeout_at(deadline, self.connect()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(Arc::new(e)),
            Err(_) => Err(Arc::new(BrokerError::Timeout { what: "connect", limit })),
        };
        let this = &*self;
        let samples = advances.into_iter().map(|(key, from, high)| {
            let cached = this.cached_client(&key);
            let client = client.clone();
            async move {
                let records = records_between(from, high);
                let client = match client {
                    Ok(client) => client,
                    Err(e) => return this.failed_sample(key, records, BrokerError::Shared(e)),
                };
                let sample = this.sample(&client, cached, &key, from, high);
                match tokio::time::timeout_at(deadline, sample).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        let error = BrokerError::Timeout { what: "fetch", limit };
                        this.failed_sample(key, records, error)
                    }
                }
            }
        });
        futures::stream::iter(samples)
            .buffer_unordered(SAMPLE_CONCURRENCY)
            .collect()
            .await
    }

    /// A sample that failed with `error`: the advance still counts for the topic's table.
    fn failed_sample(&self, key: TopicPartition, records: u64, error: BrokerError) -> SampleOutcome {
        let timed_out = matches!(error, BrokerError::Timeout { .. });
        let mut kinds = BTreeMap::new();
        let summary = summarize(
            &self.config,
            &self.routing,
            &key.0,
            key.1,
            records,
            &Err(error),
            &mut kinds,
        );
        SampleOutcome {
            key,
            client: None,
            ok: false,
            timed_out,
            summary,
            kinds,
        }
    }

    /// Takes in what one sample found: the partition's client (kept only if the sample succeeded), whether its
    /// table is known now, whether its samples time out, warnings and counters; returns its activity.
    fn settle(&mut self, outcome: SampleOutcome, now: Instant, stats: &mut PollStats) -> Vec<TableActivity> {
        let SampleOutcome {
            key,
            client,
            ok,
            timed_out,
            summary,
            kinds,
        } = outcome;
        let (topic, partition) = (key.0.to_string(), key.1);
        let Summary {
            activity: found,
            sampled,
            bytes,
            invalid,
            untrusted,
        } = summary;
        let learned = match (ok, found.as_slice()) {
            (true, [only])
                if invalid.is_none()
                    && untrusted.is_none()
                    && self.config.table_of_topic(&topic) == Some(only.table.as_str()) =>
            {
                Some((now, only.table.clone()))
            }
            // Another table, several tables, no table data, or no sample: sample the next advance again.
            _ => None,
        };
        self.keep_client(&key, client);
        if let Some(watched) = self.partitions.get_mut(&key)
            && (learned.is_some() || timed_out || watched.sampled.is_some())
        {
            let sampled = watched.sampled();
            sampled.known_table = learned;
            sampled.timed_out = timed_out.then_some(now);
        }
        if timed_out {
            stats.sample_timeouts += 1;
            if self.sample_timeouts.insert(key, now).is_none() {
                self.sample_timeouts_changed = true;
                tracing::warn!(%topic, partition, limit = %humantime::format_duration(self.config.request_timeout),
                    "record samples of this partition get no answer in time: its advances count as changes of its \
                    topic's table from the watermarks alone, and it is sampled again after kafka.sample_interval");
            }
        } else if ok && self.sample_timeouts.remove(&key).is_some() {
            self.sample_timeouts_changed = true;
            tracing::info!(%topic, partition, "record samples of this partition are answered again");
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
        for (kind, n) in kinds {
            *stats.kinds.entry(kind).or_default() += n;
        }
        stats.sampled += sampled;
        stats.sampled_bytes += bytes;
        found
    }

    /// Forgets sample timeouts of partitions that are gone or that have not timed out again for
    /// [`SAMPLE_TIMEOUT_MEMORY`] (or `kafka.sample_interval` if longer): a quiet partition is not sampled, so its
    /// last timeout says less and less about the broker, and `/readyz` should not stay down on it for good.
    fn expire_sample_timeouts(&mut self, now: Instant) {
        let keep = self.config.sample_interval.max(SAMPLE_TIMEOUT_MEMORY);
        let partitions = &self.partitions;
        let before = self.sample_timeouts.len();
        self.sample_timeouts
            .retain(|key, at| partitions.contains_key(key) && now.duration_since(*at) < keep);
        self.sample_timeouts_changed |= self.sample_timeouts.len() != before;
    }

    /// The partitions whose samples time out (`topic/partition`), if that changed since the last report.
    pub(super) fn sample_timeouts_report(&mut self) -> Option<Vec<String>> {
        if !std::mem::take(&mut self.sample_timeouts_changed) {
            return None;
        }
        Some(
            self.sample_timeouts
                .keys()
                .map(|(topic, partition)| format!("{topic}/{partition}"))
                .collect(),
        )
    }

    /// Samples the newest records of `[from, high)` of `key`, through `cached` or a new partition client of
    /// `client`. A partition whose table is known from an earlier sample is re-checked with its newest record only.
    /// So is a table topic's first sample, unless that record leaves a doubt (see [`Watcher::settles`]): then, as
    /// on routed topics where every record's table matters, the full `kafka.sample_records` is fetched.
    async fn sample(
        &self,
        client: &SampleClient,
        cached: Option<Arc<PartitionSampler>>,
        key: &TopicPartition,
        from: i64,
        high: i64,
    ) -> SampleOutcome {
        let records = records_between(from, high);
        let partition = match cached {
            Some(partition) => partition,
            None => match client.partition(key, self.config.request_timeout).await {
                Ok(partition) => Arc::new(partition),
                Err(e) => return self.failed_sample(key.clone(), records, e),
            },
        };
        let rechecked = self.partitions.get(key).is_some_and(|w| w.known_table().is_some());
        let full = self.config.sample_records;
        let mut want = if rechecked || !self.routing.is_routed(&key.0) {
            1
        } else {
            full
        };
        loop {
            let sample = samples::fetch(&self.config, &partition, from, high, want).await;
            let mut kinds = BTreeMap::new();
            let summary = summarize(&self.config, &self.routing, &key.0, key.1, records, &sample, &mut kinds);
            let done =
                rechecked || want >= full || records <= 1 || sample.is_err() || self.settles(&key.0, &sample, &summary);
            if done {
                let timed_out = matches!(sample, Err(BrokerError::Timeout { .. }));
                return SampleOutcome {
                    key: key.clone(),
                    client: sample.is_ok().then_some(partition),
                    ok: sample.is_ok(),
                    timed_out,
                    summary,
                    kinds,
                };
            }
            want = full;
        }
    }

    /// Whether a one-record sample says what a full one would: its record is a change of the topic's own table
    /// whose operation counts for every table. A tombstone, heartbeat, snapshot read the policy ignores, invalid
    /// record or another table's change could hide changes among the records before it.
    fn settles(&self, topic: &str, sample: &Result<Vec<samples::Record>, BrokerError>, summary: &Summary) -> bool {
        let own = self.config.table_of_topic(topic);
        sample.as_ref().is_ok_and(|records| records.len() == 1)
            && summary.invalid.is_none()
            && summary.untrusted.is_none()
            && matches!(summary.activity.as_slice(), [only]
                if Some(only.table.as_str()) == own
                    && only.unknown_ops == 0
                    && !only.ops.is_empty()
                    && only.ops.keys().all(|op| self.counted_ops.contains(op)))
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

    /// The lag of each table with a job group worth reading (see [`Watcher::with_lag_tables`]).
    pub async fn lags(&mut self) -> Vec<(String, u64)> {
        if self.lag.is_none() {
            return Vec::new();
        }
        let filter = self.lag_filter();
        // The high watermarks are those the last poll read; only the log starts are read here.
        let highs: Vec<(TopicPartition, Option<i64>)> = self
            .partitions
            .iter()
            .filter(|(key, _)| match (&filter, self.config.table_of_topic(&key.0)) {
                (None, _) => true,
                (Some(tables), Some(table)) => tables.contains(table),
                (Some(_), None) => false,
            })
            .map(|(key, w)| (key.clone(), w.baseline))
            .collect();
        if highs.is_empty() {
            return Vec::new();
        }
        let keys: Arc<[TopicPartition]> = highs.iter().map(|(key, _)| key.clone()).collect();
        let starts = self.read_offsets(&keys, Offset::Earliest).await;
        // A table with a partition whose offsets could not be read has no lag this time (unknown, not zero).
        let mut by_table: BTreeMap<String, Option<Vec<PartitionOffsets>>> = BTreeMap::new();
        for (((topic, partition), high), start) in highs.into_iter().zip(starts) {
            // Lag is per table topic; a topic without a table of its own (a routed one) has none.
            let Some(table) = self.config.table_of_topic(&topic).map(str::to_owned) else {
                continue;
            };
            if !self.admit(&table) {
                continue;
            }
            let start = start.ok();
            let entry = by_table.entry(table).or_insert_with(|| Some(Vec::new()));
            match (high, start, entry.as_mut()) {
                // A log start past the high watermark is a broker error: the table's lag is unknown this time.
                (Some(high), Some(start), Some(list)) if start <= high => list.push(PartitionOffsets {
                    topic: topic.to_string(),
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
            match reader.lag_from(&mut self.pool, &self.config, &table, &partitions).await {
                Ok(lag) => out.push((table, lag)),
                Err(e) => tracing::debug!(%table, error = %e, "lag unknown"),
            }
        }
        out
    }
}
