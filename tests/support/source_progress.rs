//! What a job's Kafka source has read and committed, from its JobManager metrics: tests compare it with the
//! topic's high watermarks to tell that a job caught up.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cdc_orchestrator::flink::jobmanager::JobManager;
use cdc_orchestrator::flink::{FlinkError, JobId};
use regex::Regex;

/// What the Kafka source of a job has read, from its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceProgress {
    /// Records the source knows of but has not read (FLIP-33 `pendingRecords`, summed over subtasks); absent
    /// when the connector does not report it.
    pub pending_records: Option<i64>,
    /// Per `(topic, partition)`: the offset read up to, and the offset committed to the consumer group.
    pub partitions: BTreeMap<(String, i32), PartitionProgress>,
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionProgress {
    /// `KafkaSourceReader.topic.<t>.partition.<p>.currentOffset`.
    pub current_offset: Option<i64>,
    /// `KafkaSourceReader.topic.<t>.partition.<p>.committedOffset`.
    pub committed_offset: Option<i64>,
}

impl SourceProgress {
    /// Whether the source has read and committed everything up to the given high watermarks (the next offset
    /// to be written, per `(topic, partition)`). `None` when the metrics do not cover every partition.
    pub fn caught_up(&self, high_watermarks: &BTreeMap<(String, i32), i64>) -> Option<bool> {
        if self.pending_records.is_some_and(|p| p > 0) {
            return Some(false);
        }
        let mut all = true;
        for (key, &high) in high_watermarks {
            let progress = self.partitions.get(key)?;
            // Kafka's committed offset is the next offset to read, like the high watermark.
            let committed = progress.committed_offset?;
            all &= committed >= high;
        }
        Some(all)
    }
}

/// What the job's Kafka sources have read and committed, from their metrics.
pub async fn source_progress(jobmanager: &JobManager, job_id: &JobId) -> Result<SourceProgress, FlinkError> {
    let Some(detail) = jobmanager.job(job_id).await? else {
        return Ok(SourceProgress::default());
    };
    let mut progress = SourceProgress::default();
    for vertex in detail.vertices.iter().filter(|v| v.name.starts_with("Source")) {
        let available = jobmanager.vertex_metrics(job_id, &vertex.id, &[]).await?;
        let wanted: Vec<String> = available
            .keys()
            .filter(|id| parse_source_metric(id).is_some())
            .cloned()
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let values = jobmanager.vertex_metrics(job_id, &vertex.id, &wanted).await?;
        for (id, value) in values {
            let Some(metric) = parse_source_metric(&id) else {
                continue;
            };
            // Flink reports gauges as strings; a value that is not a whole number (e.g. "NaN" before the first
            // read) means unknown.
            let Ok(value) = value.parse::<f64>().map(|v| v as i64) else {
                continue;
            };
            match metric {
                SourceMetric::Pending => *progress.pending_records.get_or_insert(0) += value.max(0),
                SourceMetric::Current(topic, partition) => {
                    progress
                        .partitions
                        .entry((topic, partition))
                        .or_default()
                        .current_offset = Some(value)
                }
                SourceMetric::Committed(topic, partition) => {
                    progress
                        .partitions
                        .entry((topic, partition))
                        .or_default()
                        .committed_offset = Some(value)
                }
            }
        }
    }
    Ok(progress)
}

/// One source metric the progress is made of.
#[derive(Debug)]
pub enum SourceMetric {
    /// `pendingRecords`.
    Pending,
    /// A partition's `currentOffset`.
    Current(String, i32),
    /// A partition's `committedOffset`.
    Committed(String, i32),
}

/// Recognises `<subtask>[.<operator>].pendingRecords` and
/// `<subtask>[.<operator>].KafkaSourceReader.topic.<t>.partition.<p>.{currentOffset,committedOffset}`.
pub fn parse_source_metric(id: &str) -> Option<SourceMetric> {
    static OFFSET: OnceLock<Option<Regex>> = OnceLock::new();
    let offset = OFFSET
        .get_or_init(|| {
            Regex::new(
                r"^\d+\.(?:.*\.)?KafkaSourceReader\.topic\.(.+)\.partition\.(\d+)\.(currentOffset|committedOffset)$",
            )
            .ok()
        })
        .as_ref()?;
    if let Some(c) = offset.captures(id) {
        let topic = c.get(1)?.as_str().to_owned();
        let partition = c.get(2)?.as_str().parse().ok()?;
        return Some(match c.get(3)?.as_str() {
            "currentOffset" => SourceMetric::Current(topic, partition),
            _ => SourceMetric::Committed(topic, partition),
        });
    }
    // Operator-scoped metrics carry the operator's name between the subtask and the metric:
    // `0.Source__faculty_src.pendingRecords`.
    let (subtask, rest) = id.split_once('.')?;
    let pending = rest == "pendingRecords" || rest.ends_with(".pendingRecords");
    (!subtask.is_empty() && subtask.bytes().all(|b| b.is_ascii_digit()) && pending).then_some(SourceMetric::Pending)
}
