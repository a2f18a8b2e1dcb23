//! A job's metrics as the JobManager REST API reports them: any vertex's metric values, and what a job's Kafka
//! source has read and committed, which tests compare with the topic's high watermarks to tell that a job
//! caught up. The sidecar itself never reads metrics.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cdc_orchestrator::flink::http_client;
use cdc_orchestrator::model::JobId;
use regex::Regex;
use serde::Deserialize;

#[derive(Deserialize)]
struct Metric {
    id: String,
    #[serde(default)]
    value: Option<String>,
}

/// A job vertex (an operator chain) of `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Vertex {
    /// Vertex id, 32 hex digits.
    pub id: String,
    /// Vertex name; source chains start with `Source:`.
    pub name: String,
}

#[derive(Deserialize)]
struct JobVertices {
    #[serde(default)]
    vertices: Vec<Vertex>,
}

/// The job's vertices, sources first as Flink lists them; `None` when the JobManager does not know the job.
pub async fn job_vertices(jobmanager_url: &str, job_id: &JobId) -> Result<Option<Vec<Vertex>>, String> {
    let url = format!("{}/jobs/{job_id}", jobmanager_url.trim_end_matches('/'));
    let http = http_client(std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    let job: JobVertices = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))?;
    Ok(Some(job.vertices))
}

/// Flink writes metric collections as a bare array; the spec documents `{"metrics": [...]}`. Accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum MetricList {
    Bare(Vec<Metric>),
    Wrapped { metrics: Vec<Metric> },
}

/// Values of the named metrics of one vertex (ids as Flink lists them, e.g. `0.pendingRecords`); every metric
/// the vertex has when `names` is empty.
pub async fn vertex_metrics(
    jobmanager_url: &str,
    job_id: &JobId,
    vertex_id: &str,
    names: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut url = format!(
        "{}/jobs/{job_id}/vertices/{vertex_id}/metrics",
        jobmanager_url.trim_end_matches('/')
    );
    if !names.is_empty() {
        url.push_str("?get=");
        url.push_str(&encode_query(&names.join(",")));
    }
    let http = http_client(std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    let list: MetricList = serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))?;
    let (MetricList::Bare(metrics) | MetricList::Wrapped { metrics }) = list;
    Ok(metrics
        .into_iter()
        .map(|m| (m.id, m.value.unwrap_or_default()))
        .collect())
}

/// Percent-encodes a query value; metric ids are mostly `[A-Za-z0-9._-]`, topics may add a few more.
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b',' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

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
pub async fn source_progress(jobmanager_url: &str, job_id: &JobId) -> Result<SourceProgress, String> {
    let Some(vertices) = job_vertices(jobmanager_url, job_id).await? else {
        return Ok(SourceProgress::default());
    };
    let mut progress = SourceProgress::default();
    for vertex in vertices.iter().filter(|v| v.name.starts_with("Source")) {
        let available = vertex_metrics(jobmanager_url, job_id, &vertex.id, &[]).await?;
        let wanted: Vec<String> = available
            .keys()
            .filter(|id| parse_source_metric(id).is_some())
            .cloned()
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let values = vertex_metrics(jobmanager_url, job_id, &vertex.id, &wanted).await?;
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
