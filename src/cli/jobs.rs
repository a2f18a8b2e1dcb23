//! `cdc-orchestrator jobs`: the cdc jobs Flink knows, as an aligned table or JSON.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::{EXIT_FAILURE, block_on, load_config};
use crate::flink::{FlinkError, listing};
use crate::model::JobSummary;

/// Asks Flink through the configured launcher and prints the jobs; exit 1 when Flink cannot be asked.
pub fn command(file: Option<&Path>, json: bool) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let work = async {
        let jobs = listing::list_cdc_jobs(&config).await?;
        print!("{}", if json { render_json(&jobs) } else { render_table(&jobs) });
        Ok(())
    };
    block_on(work, "error: cannot list Flink jobs", |_: &FlinkError| EXIT_FAILURE)
}

/// One line of `jobs --json`.
#[derive(Debug, Serialize)]
struct JobLine<'a> {
    table: &'a str,
    job_id: &'a str,
    state: &'a str,
    /// RFC 3339, UTC: the start for a live job, the end for one that ended.
    since: String,
    start_time_ms: i64,
    end_time_ms: Option<i64>,
}

fn since_ms(job: &JobSummary) -> i64 {
    match job.end_time_ms {
        Some(end) if !job.state.is_alive() => end,
        _ => job.start_time_ms,
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The jobs as an aligned text table with a header line.
pub fn render_table(jobs: &[JobSummary]) -> String {
    let rows: Vec<[String; 4]> = jobs
        .iter()
        .map(|j| {
            [
                j.table.clone(),
                j.job_id.to_string(),
                j.state.to_string(),
                rfc3339(since_ms(j)),
            ]
        })
        .collect();
    let header = ["TABLE", "JOB ID", "STATE", "SINCE"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The jobs as a JSON array.
pub fn render_json(jobs: &[JobSummary]) -> String {
    let lines: Vec<JobLine<'_>> = jobs
        .iter()
        .map(|j| JobLine {
            table: &j.table,
            job_id: j.job_id.as_str(),
            state: j.state.as_str(),
            since: rfc3339(since_ms(j)),
            start_time_ms: j.start_time_ms,
            end_time_ms: j.end_time_ms,
        })
        .collect();
    // Plain strings and numbers only: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(&lines).unwrap_or_else(|_| "[]".to_owned());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobState, job_id_for};

    #[test]
    fn table_is_aligned_and_since_follows_the_state() {
        let jobs = vec![
            JobSummary {
                table: "faculty".into(),
                job_id: job_id_for("faculty", 1),
                state: JobState::Running,
                start_time_ms: 1_764_000_000_000,
                end_time_ms: None,
            },
            JobSummary {
                table: "program".into(),
                job_id: job_id_for("program", 1),
                state: JobState::Failed,
                start_time_ms: 1_764_000_000_000,
                end_time_ms: Some(1_764_000_060_000),
            },
        ];
        let text = render_table(&jobs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TABLE    JOB ID"), "{text}");
        assert!(
            lines[1].contains("RUNNING") && lines[1].ends_with("2025-11-24T16:00:00Z"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("2025-11-24T16:01:00Z"),
            "ended job: since its end: {text}"
        );
        let column = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("RUNNING"), Some(column));
        let json: serde_json::Value = serde_json::from_str(&render_json(&jobs)).unwrap();
        assert_eq!(json[1]["state"], "FAILED");
        assert_eq!(json[1]["job_id"], job_id_for("program", 1).as_str());
        assert_eq!(json[0]["end_time_ms"], serde_json::Value::Null);
    }
}
