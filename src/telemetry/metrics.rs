//! Prometheus metrics, registered once and rendered in the text exposition format on `GET /metrics`.
//!
//! Names follow Prometheus conventions: counters end in `_total` (added by the encoder), units are in the name.
//! The other layers report what happened through [`Metrics`]' methods (`job_started`, `records_seen`, ...); the
//! series, their labels and how a value is kept (saturating, one `cdc_job_state` series per table) are this
//! file's business.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::Health;
use crate::model::{JobState, Op};

/// Labels `{table}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableLabels {
    /// Table name.
    pub table: String,
}

/// A label value whose text came from outside (Flink's answers). The text format escapes only `\`, `"` and line
/// feeds in label values and passes every other control character through raw (prometheus-client 0.26), which
/// would put terminal escapes on the `/metrics` page: this value writes them escaped as the logs do
/// ([`crate::logging::Escaper`], e.g. `\u{1b}`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct LabelText(String);

impl From<&str> for LabelText {
    fn from(text: &str) -> Self {
        LabelText(text.to_owned())
    }
}

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        crate::logging::Escaper(encoder).write_str(&self.0)
    }
}

/// Labels `{table, state}`: a table's job and the state Flink reports for it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableJobStateLabels {
    /// Table name.
    pub table: String,
    /// Flink's job state, e.g. `RUNNING`, `RESTARTING`.
    pub state: LabelText,
}

/// Labels `{table, op}`; `op` is a Debezium letter or `unknown`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableOpLabels {
    /// Table name.
    pub table: String,
    /// Operation letter, or `unknown` when the record does not say.
    pub op: String,
}

/// Labels `{kind}` of a decoded record (`change`, `tombstone`, `heartbeat`, ..., `invalid`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabels {
    /// The decoder's kind.
    pub kind: String,
}

/// Labels `{table, result}` of a start or stop; `result` is `ok` or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableResultLabels {
    /// Table name.
    pub table: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Labels `{result}` of a reload: `ok` or `refused`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    /// `ok` or `refused`.
    pub result: String,
}

/// Labels `{table, kind}` of a table's schema drift count; `kind` is `added` or `missing`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableDriftLabels {
    /// Table name.
    pub table: String,
    /// `added` or `missing`.
    pub kind: String,
}

/// Every metric the sidecar exports. Cloning a metric handle shares its value, so parts can hold their own.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Completed watermark poll cycles.
    polls: Counter,
    /// Duration of one poll cycle over all partitions.
    poll_duration: Histogram,
    /// Partitions currently watched.
    partitions_watched: Gauge,
    /// New records seen (high-watermark advances), by table.
    new_records: Family<TableLabels, Counter>,
    /// Sampled records by table and operation (`unknown` when the record does not say).
    activity_records: Family<TableOpLabels, Counter>,
    /// Sampled records by decoder kind.
    decoded_records: Family<KindLabels, Counter>,
    /// Job starts by table and result.
    job_starts: Family<TableResultLabels, Counter>,
    /// Job stops by table and result.
    job_stops: Family<TableResultLabels, Counter>,
    /// Starts that had to wait for the start throttle or the concurrency limit.
    starts_throttled: Counter,
    /// Tables whose job Flink reports RUNNING (not RESTARTING, not merely started by the policy).
    jobs_running: Gauge,
    /// Flink's state of each table's job: one series at 1 per table that has a job, labelled with the state
    /// Flink last reported; none while the table has no job.
    job_state: Family<TableJobStateLabels, Gauge>,
    /// Live jobs named `cdc-<table>` in Flink's last job list whose table this sidecar does not manage (no SQL
    /// template, or left out by `policy.include`/`policy.exclude`): reported, never adopted, stopped or cancelled.
    /// No per-job labels, so however many Flink lists, this is one series.
    unmanaged_jobs: Gauge,
    /// TaskManagers Flink's `/overview` last reported (0 until it first answers).
    flink_taskmanagers: Gauge,
    /// Their task slots, together.
    flink_slots_total: Gauge,
    /// Slots no job used.
    flink_slots_available: Gauge,
    /// Consumer lag of a table's job, in records.
    table_lag: Family<TableLabels, Gauge>,
    /// 1 while a table's records differ from its template's source columns, 0 otherwise.
    table_schema_drift: Family<TableLabels, Gauge>,
    /// How many fields a table's drift has added or missing.
    table_schema_drift_fields: Family<TableDriftLabels, Gauge>,
    /// Bytes of record values fetched in samples (the watcher's only record traffic; watermark reads are
    /// a few dozen bytes per partition).
    sampled_bytes: Counter,
    /// Record samples that got no answer within `kafka.request_timeout` (their advances are counted from the
    /// watermarks alone).
    sample_timeouts: Counter,
    /// Failed attempts to get a SASL OAUTHBEARER token (every retry counts; the log says each change once).
    token_refresh_failures: Counter,
    /// Reloads (SIGHUP, `POST /reload`) by result: `ok` (the new set is in use) or `refused` (the old one stays).
    reloads: Family<ResultLabels, Counter>,
    /// 1 while this replica leads (holds the Lease, or runs without leader election), 0 otherwise.
    leader: Gauge,
    /// Times this replica became leader or stopped leading.
    leadership_changes: Counter,
    /// What scale-to-zero saves (per-table job time, cycles, running share), rendered on each scrape.
    savings: Arc<super::Savings>,
    /// Readiness inputs, rendered as `cdc_dependency_up` on each scrape once the run loop hands them over.
    health: Arc<DependencyGauges>,
    /// The `cdc_job_state` series set for each table, to remove it when the state changes.
    job_state_series: Mutex<HashMap<String, TableJobStateLabels>>,
}

/// Adds `n` to `counter`, stopping at `u64::MAX` rather than wrapping to a small value: counts fed by a broker's
/// offsets can be as large as the broker says.
fn inc_saturating(counter: &Counter, n: u64) {
    use std::sync::atomic::Ordering;
    let _ = counter
        .inner()
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(n)));
}

/// `cdc_dependency_up{dependency="kafka"|"flink"}`: 1 while the dependency counts as up for readiness, so alerts
/// and `/readyz` agree. Nothing is rendered before [`DependencyGauges::watch`].
#[derive(Debug, Default)]
struct DependencyGauges {
    health: std::sync::OnceLock<Arc<Health>>,
}

/// Labels `{dependency}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: String,
}

impl DependencyGauges {
    /// Renders `health` from now on.
    fn watch(&self, health: Arc<Health>) {
        let _ = self.health.set(health);
    }
}

impl prometheus_client::collector::Collector for DependencyGauges {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some(health) = self.health.get() else {
            return Ok(());
        };
        let mut family = encoder.encode_descriptor(
            "dependency_up",
            "1 while Kafka or Flink answered recently and its last call did not fail (as /readyz)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (dependency, up) in health.dependencies_up() {
            let labels = DependencyLabels {
                dependency: dependency.to_owned(),
            };
            ConstGauge::new(i64::from(up)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Registers each `field` of `metrics` under its name and help text, in the order given (the page's order).
macro_rules! register_each {
    ($registry:ident, $metrics:ident, $($field:ident: $name:literal, $help:literal;)*) => {
        $($registry.register($name, $help, $metrics.$field.clone());)*
    };
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `cdc` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cdc");
        let m = Metrics {
            polls: Counter::default(),
            // 1 ms .. ~4 s: a cycle over a thousand partitions should stay well inside a second.
            poll_duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 13,
            )),
            partitions_watched: Gauge::default(),
            new_records: Family::default(),
            activity_records: Family::default(),
            decoded_records: Family::default(),
            job_starts: Family::default(),
            job_stops: Family::default(),
            starts_throttled: Counter::default(),
            jobs_running: Gauge::default(),
            job_state: Family::default(),
            unmanaged_jobs: Gauge::default(),
            flink_taskmanagers: Gauge::default(),
            flink_slots_total: Gauge::default(),
            flink_slots_available: Gauge::default(),
            table_lag: Family::default(),
            table_schema_drift: Family::default(),
            table_schema_drift_fields: Family::default(),
            sampled_bytes: Counter::default(),
            sample_timeouts: Counter::default(),
            token_refresh_failures: Counter::default(),
            reloads: Family::default(),
            leader: Gauge::default(),
            leadership_changes: Counter::default(),
            savings: Arc::default(),
            health: Arc::default(),
            job_state_series: Mutex::default(),
            registry: Registry::default(),
        };
        register_each!(registry, m,
            polls: "polls", "Completed watermark poll cycles";
            poll_duration: "poll_duration_seconds", "Duration of one poll cycle";
            partitions_watched: "partitions_watched", "Partitions currently watched";
            new_records: "new_records", "New records seen, by table";
            activity_records: "activity_records", "Sampled records by table and operation";
            decoded_records: "decoded_records", "Sampled records by decoder kind";
            job_starts: "job_starts", "Job starts by table and result";
            job_stops: "job_stops", "Job stops by table and result";
            starts_throttled: "starts_throttled", "Starts that waited for the start throttle or the concurrency limit";
            jobs_running: "jobs_running", "Tables whose job Flink reports RUNNING";
            job_state: "job_state", "Flink's state of a table's job (1 for the state last reported)";
            unmanaged_jobs: "unmanaged_jobs", "Live cdc jobs in Flink of tables this sidecar does not manage";
            flink_taskmanagers: "flink_taskmanagers", "TaskManagers registered with Flink's JobManager (its /overview)";
            flink_slots_total: "flink_slots_total", "Task slots of Flink's TaskManagers";
            flink_slots_available: "flink_slots_available", "Task slots no Flink job uses";
            table_lag: "table_lag_records", "Consumer lag of a table's job";
            table_schema_drift: "table_schema_drift", "1 while a table's records differ from its template's source columns";
            table_schema_drift_fields: "table_schema_drift_fields", "Fields of a table's schema drift, added or missing";
            sampled_bytes: "sampled_bytes", "Bytes of record values fetched in samples";
            sample_timeouts: "kafka_sample_timeouts", "Record samples that got no answer within kafka.request_timeout";
            token_refresh_failures: "kafka_token_refresh_failures", "Failed attempts to get a SASL OAUTHBEARER token";
            reloads: "reloads", "Reloads of the templates and policy settings by result (ok, refused)";
            leader: "leader", "1 while this replica leads, 0 while it stands by";
            leadership_changes: "leadership_changes", "Times this replica became leader or stopped leading";
        );
        registry.register_collector(Box::new(m.savings.clone()));
        registry.register_collector(Box::new(m.health.clone()));
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        );
        Metrics { registry, ..m }
    }

    /// Renders `health` as `cdc_dependency_up` from now on.
    pub fn watch_health(&self, health: Arc<Health>) {
        self.health.watch(health);
    }

    /// The book of what scale-to-zero saves, rendered on each scrape and shown by `/tables`.
    pub fn savings(&self) -> &super::Savings {
        &self.savings
    }

    /// A poll cycle over `partitions` partitions completed in `took`.
    pub fn poll_completed(&self, took: Duration, partitions: usize) {
        self.polls.inc();
        self.poll_duration.observe(took.as_secs_f64());
        self.partitions_watched
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// Samples fetched `bytes` of record values.
    pub fn sampled(&self, bytes: usize) {
        inc_saturating(&self.sampled_bytes, u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// `n` record samples got no answer within `kafka.request_timeout`.
    pub fn samples_timed_out(&self, n: usize) {
        inc_saturating(&self.sample_timeouts, u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// An attempt to get a SASL OAUTHBEARER token (from the token endpoint) failed.
    pub fn token_refresh_failed(&self) {
        self.token_refresh_failures.inc();
    }

    /// `n` sampled records were of the decoder's `kind`.
    pub fn records_decoded(&self, kind: &str, n: u64) {
        let labels = KindLabels { kind: kind.to_owned() };
        inc_saturating(&self.decoded_records.get_or_create(&labels), n);
    }

    /// `n` sampled records of `table` had the operation `op` (`None`: the record did not say).
    pub fn records_sampled(&self, table: &str, op: Option<Op>, n: u64) {
        let labels = TableOpLabels {
            table: table.to_owned(),
            op: op.map_or("unknown", Op::code).to_owned(),
        };
        inc_saturating(&self.activity_records.get_or_create(&labels), n);
    }

    /// `n` new records appeared on `table`'s topic (its high watermarks advanced).
    pub fn records_seen(&self, table: &str, n: u64) {
        inc_saturating(&self.new_records.get_or_create(&table_labels(table)), n);
    }

    /// The consumer lag of `table`'s job was read.
    pub fn lag_read(&self, table: &str, lag: u64) {
        self.table_lag
            .get_or_create(&table_labels(table))
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// `table`'s schema drift is now `added` fields the records carry and its source does not declare, and
    /// `missing` declared columns they lack (both 0: no drift).
    pub fn schema_drift(&self, table: &str, added: usize, missing: usize) {
        let drifted = added > 0 || missing > 0;
        self.table_schema_drift
            .get_or_create(&table_labels(table))
            .set(i64::from(drifted));
        for (kind, n) in [("added", added), ("missing", missing)] {
            let labels = TableDriftLabels {
                table: table.to_owned(),
                kind: kind.to_owned(),
            };
            self.table_schema_drift_fields
                .get_or_create(&labels)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// `table`'s job started (it is running).
    pub fn job_started(&self, table: &str) {
        self.job_starts.get_or_create(&table_result(table, true)).inc();
    }

    /// A start of `table`'s job failed.
    pub fn job_start_failed(&self, table: &str) {
        self.job_starts.get_or_create(&table_result(table, false)).inc();
    }

    /// `table`'s job stopped.
    pub fn job_stopped(&self, table: &str) {
        self.job_stops.get_or_create(&table_result(table, true)).inc();
    }

    /// A stop of `table`'s job failed.
    pub fn job_stop_failed(&self, table: &str) {
        self.job_stops.get_or_create(&table_result(table, false)).inc();
    }

    /// A reload of the templates and policy settings was applied (`ok`) or refused, the old set staying.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "ok" } else { "refused" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// This replica leads (`true`) or stands by; a change of the two is counted in `cdc_leadership_changes_total`.
    pub fn leader(&self, leads: bool) {
        let was = self.leader.set(i64::from(leads));
        if was != i64::from(leads) {
            self.leadership_changes.inc();
        }
    }

    /// A start waited for the start throttle or the concurrency limit.
    pub fn start_throttled(&self) {
        self.starts_throttled.inc();
    }

    /// `running` tables have a job Flink reports RUNNING.
    pub fn jobs_running(&self, running: usize) {
        self.jobs_running.set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// Flink's last job list had `live` live jobs of tables this sidecar does not manage.
    pub fn unmanaged_jobs(&self, live: usize) {
        self.unmanaged_jobs.set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    /// Flink's JobManager last reported `taskmanagers` TaskManagers with `slots_total` slots, `slots_available`
    /// of them unused: what stopped jobs free, and whether the cluster gives TaskManagers back.
    pub fn flink_cluster(&self, taskmanagers: u32, slots_total: u32, slots_available: u32) {
        self.flink_taskmanagers.set(i64::from(taskmanagers));
        self.flink_slots_total.set(i64::from(slots_total));
        self.flink_slots_available.set(i64::from(slots_available));
    }

    /// Flink last reported `table`'s job in `state` (`None`: the table has no job): its one `cdc_job_state` series
    /// now carries that state, the series of its previous state is removed.
    pub fn job_state(&self, table: &str, state: Option<&JobState>) {
        let now = state.map(|state| TableJobStateLabels {
            table: table.to_owned(),
            state: state.as_str().into(),
        });
        let mut series = self
            .job_state_series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = series.get(table);
        if before == now.as_ref() {
            return;
        }
        if let Some(old) = before {
            self.job_state.remove(old);
        }
        match now {
            Some(labels) => {
                self.job_state.get_or_create(&labels).set(1);
                series.insert(table.to_owned(), labels);
            }
            None => {
                series.remove(table);
            }
        }
    }

    /// The registry in the Prometheus text format (OpenMetrics flavour, ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only truncate the page.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %crate::logging::chain(&e), "cannot encode metrics");
        }
        out
    }
}

fn table_labels(table: &str) -> TableLabels {
    TableLabels {
        table: table.to_owned(),
    }
}

fn table_result(table: &str, ok: bool) -> TableResultLabels {
    TableResultLabels {
        table: table.to_owned(),
        result: if ok { "ok" } else { "failed" }.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_build_info() {
        let m = Metrics::new();
        m.job_started("faculty");
        m.job_started("faculty");
        m.job_stop_failed("program");
        m.records_sampled("faculty", Some(Op::Create), 3);
        let text = m.render();
        assert!(
            text.contains("cdc_job_starts_total{table=\"faculty\",result=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("cdc_job_stops_total{table=\"program\",result=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cdc_activity_records_total{table=\"faculty\",op=\"c\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "cdc_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn control_characters_in_a_label_value_are_escaped() {
        let m = Metrics::new();
        m.job_state
            .get_or_create(&TableJobStateLabels {
                table: "faculty".into(),
                state: "RUN\u{1b}[2J\u{7}\r\n\"\\NING".into(),
            })
            .set(1);
        let text = m.render();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a raw control character on the page: {text:?}"
        );
        assert!(
            text.contains(r#"cdc_job_state{table="faculty",state="RUN\\u{1b}[2J\\u{7}\\r\\n\"\\NING"} 1"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dependency_up_follows_the_readiness_rule() {
        let m = Metrics::new();
        assert!(
            !m.render().contains("cdc_dependency_up"),
            "nothing before the run loop hands health over"
        );
        let health = Arc::new(Health::new(Duration::from_secs(30), Duration::from_secs(90)));
        m.watch_health(health.clone());
        health.kafka_ok();
        let text = m.render();
        assert!(text.contains("cdc_dependency_up{dependency=\"kafka\"} 1"), "{text}");
        assert!(
            text.contains("cdc_dependency_up{dependency=\"flink\"} 0"),
            "never answered: {text}"
        );
        health.flink_ok();
        tokio::time::advance(Duration::from_secs(31)).await;
        let text = m.render();
        assert!(
            text.contains("cdc_dependency_up{dependency=\"kafka\"} 0"),
            "stale: {text}"
        );
        assert!(text.contains("cdc_dependency_up{dependency=\"flink\"} 1"), "{text}");
        health.flink_failed(&super::super::health::tests::Unreachable);
        assert!(m.render().contains("cdc_dependency_up{dependency=\"flink\"} 0"));
    }
}
