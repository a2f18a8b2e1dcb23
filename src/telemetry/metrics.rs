//! Prometheus metrics, registered once and rendered in the text exposition format on `GET /metrics`.
//!
//! Names follow Prometheus conventions: counters end in `_total` (added by the encoder), units are in the name.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Labels `{table}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Table name.
    pub table: String,
}

/// A label value whose text came from outside (Flink's answers). The text format escapes only `\`, `"` and line
/// feeds in label values and passes every other control character through raw (prometheus-client 0.26), which
/// would put terminal escapes on the `/metrics` page: this value writes them escaped as the logs do
/// ([`crate::logging::Escaper`], e.g. `\u{1b}`).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct LabelText(String);

impl LabelText {
    /// The text as given (unescaped).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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
pub struct TableJobStateLabels {
    /// Table name.
    pub table: String,
    /// Flink's job state, e.g. `RUNNING`, `RESTARTING`.
    pub state: LabelText,
}

/// Labels `{table, op}`; `op` is a Debezium letter or `unknown`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOpLabels {
    /// Table name.
    pub table: String,
    /// Operation letter, or `unknown` when the record does not say.
    pub op: String,
}

/// Labels `{kind}` of a decoded record (`change`, `tombstone`, `heartbeat`, ..., `invalid`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The decoder's kind.
    pub kind: String,
}

/// Labels `{table, result}` of a start or stop; `result` is `ok` or `failed`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableResultLabels {
    /// Table name.
    pub table: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Every metric the sidecar exports. Cloning a metric handle shares its value, so parts can hold their own.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Completed watermark poll cycles.
    pub polls: Counter,
    /// Duration of one poll cycle over all partitions.
    pub poll_duration: Histogram,
    /// Partitions currently watched.
    pub partitions_watched: Gauge,
    /// New records seen (high-watermark advances), by table.
    pub new_records: Family<TableLabels, Counter>,
    /// Sampled records by table and operation (`unknown` when the record does not say).
    pub activity_records: Family<TableOpLabels, Counter>,
    /// Sampled records by decoder kind.
    pub decoded_records: Family<KindLabels, Counter>,
    /// Job starts by table and result.
    pub job_starts: Family<TableResultLabels, Counter>,
    /// Job stops by table and result.
    pub job_stops: Family<TableResultLabels, Counter>,
    /// Starts that had to wait for the start throttle or the concurrency limit.
    pub starts_throttled: Counter,
    /// Tables whose job Flink reports RUNNING (not RESTARTING, not merely started by the policy).
    pub jobs_running: Gauge,
    /// Flink's state of each table's job: one series at 1 per table that has a job, labelled with the state
    /// Flink last reported; none while the table has no job.
    pub job_state: Family<TableJobStateLabels, Gauge>,
    /// Live jobs named `cdc-<table>` in Flink's last job list whose table this sidecar does not manage (no SQL
    /// template, or left out by `policy.include`/`policy.exclude`): reported, never adopted, stopped or cancelled.
    /// No per-job labels, so however many Flink lists, this is one series.
    pub unmanaged_jobs: Gauge,
    /// Consumer lag of a table's job, in records.
    pub table_lag: Family<TableLabels, Gauge>,
    /// Bytes of record values fetched in samples (the watcher's only record traffic; watermark reads are
    /// a few dozen bytes per partition).
    pub sampled_bytes: Counter,
    /// Record samples that got no answer within `kafka.request_timeout` (their advances are counted from the
    /// watermarks alone).
    pub sample_timeouts: Counter,
    /// What scale-to-zero saves (per-table job time, cycles, running share), rendered on each scrape.
    pub savings: std::sync::Arc<crate::http::savings::Savings>,
    /// Readiness inputs, rendered as `cdc_dependency_up` on each scrape once the run loop hands them over.
    pub health: std::sync::Arc<DependencyGauges>,
}

/// Adds `n` to `counter`, stopping at `u64::MAX` rather than wrapping to a small value: counts fed by a broker's
/// offsets can be as large as the broker says.
pub fn inc_saturating(counter: &Counter, n: u64) {
    use std::sync::atomic::Ordering;
    let _ = counter
        .inner()
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(n)));
}

/// `cdc_dependency_up{dependency="kafka"|"flink"}`: 1 while the dependency counts as up for readiness, so alerts
/// and `/readyz` agree. Nothing is rendered before [`DependencyGauges::watch`].
#[derive(Debug, Default)]
pub struct DependencyGauges {
    health: std::sync::OnceLock<std::sync::Arc<crate::controller::Health>>,
}

/// Labels `{dependency}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: String,
}

impl DependencyGauges {
    /// Renders `health` from now on.
    pub fn watch(&self, health: std::sync::Arc<crate::controller::Health>) {
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
            table_lag: Family::default(),
            sampled_bytes: Counter::default(),
            sample_timeouts: Counter::default(),
            savings: std::sync::Arc::default(),
            health: std::sync::Arc::default(),
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
            table_lag: "table_lag_records", "Consumer lag of a table's job";
            sampled_bytes: "sampled_bytes", "Bytes of record values fetched in samples";
            sample_timeouts: "kafka_sample_timeouts", "Record samples that got no answer within kafka.request_timeout";
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

    /// Counts a start (`ok` = the job is running) for `table`.
    pub fn record_start(&self, table: &str, ok: bool) {
        self.job_starts.get_or_create(&table_result(table, ok)).inc();
    }

    /// Counts a stop for `table`.
    pub fn record_stop(&self, table: &str, ok: bool) {
        self.job_stops.get_or_create(&table_result(table, ok)).inc();
    }

    /// The registry in the Prometheus text format (OpenMetrics flavour, ending in `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only truncate the page.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
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
        m.record_start("faculty", true);
        m.record_start("faculty", true);
        m.record_stop("program", false);
        m.activity_records
            .get_or_create(&TableOpLabels {
                table: "faculty".into(),
                op: "c".into(),
            })
            .inc_by(3);
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
        use std::time::Duration;
        let m = Metrics::new();
        assert!(
            !m.render().contains("cdc_dependency_up"),
            "nothing before the run loop hands health over"
        );
        let health = std::sync::Arc::new(crate::controller::Health::new(
            Duration::from_secs(30),
            Duration::from_secs(90),
        ));
        m.health.watch(health.clone());
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
        health.flink_failed(&crate::flink::FlinkError::Transport {
            endpoint: "GET /jobs/overview".to_owned(),
            reason: "connection refused".to_owned(),
            timed_out: false,
            unreachable: true,
        });
        assert!(m.render().contains("cdc_dependency_up{dependency=\"flink\"} 0"));
    }
}
