//! Comparing the jobs Flink runs with the tables the sidecar manages.

use std::collections::BTreeMap;

use super::{FlinkError, JobSummary, Launcher};

/// What Flink runs, sorted by what the sidecar must do about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// The live job of each managed table: adopt it (never start a second one).
    pub running: BTreeMap<String, JobSummary>,
    /// Further live jobs of a managed table beyond the newest one. Should never happen: the run loop hands them to
    /// the policy, which keeps one live job as the table's job and stops every other as a duplicate.
    pub duplicates: Vec<JobSummary>,
    /// The latest ended job of each managed table that has no live job: FAILED means the job died (feed it to
    /// the policy); FINISHED is a completed stop-with-savepoint; CANCELED a cancel.
    pub ended: BTreeMap<String, JobSummary>,
    /// Every other ended job of a managed table (older ones, and those of tables with a live job), newest
    /// first: history, except for a job the sidecar still takes for the table's current one.
    pub older_ended: Vec<JobSummary>,
    /// cdc jobs of tables the sidecar does not manage, running or ended: the run loop reports the live ones and
    /// never adopts, stops or cancels any, nor lets them make a table.
    pub unknown: Vec<JobSummary>,
}

/// Sorts `jobs` (as [`Launcher::list_jobs`] gives them) by table; `manages` says whether a table is the
/// sidecar's. A job is the sidecar's only if its table is: the run loop passes its managed tables (a SQL template,
/// and admitted by `policy.include`/`policy.exclude`), never Flink's job names, the one thing an outsider controls.
pub fn reconcile_jobs(jobs: &[JobSummary], manages: impl Fn(&str) -> bool) -> Reconciliation {
    let mut jobs: Vec<&JobSummary> = jobs.iter().collect();
    // Newest first, so the first live job seen for a table is the one to adopt.
    jobs.sort_by(|a, b| {
        b.start_time_ms
            .cmp(&a.start_time_ms)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    let mut out = Reconciliation::default();
    for job in &jobs {
        if !manages(&job.table) {
            out.unknown.push((*job).clone());
        } else if job.state.is_alive() {
            if out.running.contains_key(&job.table) {
                out.duplicates.push((*job).clone());
            } else {
                out.running.insert(job.table.clone(), (*job).clone());
            }
        }
    }
    for job in jobs {
        if !manages(&job.table) || job.state.is_alive() {
            continue;
        }
        if out.running.contains_key(&job.table) || out.ended.contains_key(&job.table) {
            out.older_ended.push(job.clone());
        } else {
            out.ended.insert(job.table.clone(), job.clone());
        }
    }
    out
}

/// Lists the cdc jobs through `launcher` and reconciles them. The run loop calls this at start-up and every
/// `flink.reconcile_interval`, and reports the [`Reconciliation::unknown`] jobs itself (once per job).
pub async fn reconcile<L: Launcher>(
    launcher: &L,
    manages: impl Fn(&str) -> bool,
) -> Result<Reconciliation, FlinkError> {
    let jobs = launcher.list_jobs().await?;
    let out = reconcile_jobs(&jobs, manages);
    for job in &out.duplicates {
        tracing::warn!(table = %job.table, job_id = %job.job_id,
            "second live job for one table; the policy keeps one and stops the other as a duplicate");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flink::job_id_for;
    use crate::model::JobState;

    fn job(table: &str, generation: u64, state: JobState, start: i64) -> JobSummary {
        JobSummary {
            table: table.to_owned(),
            job_id: job_id_for(table, generation),
            state,
            start_time_ms: start,
            end_time_ms: None,
        }
    }

    #[test]
    fn sorts_jobs_into_adopt_ended_unknown() {
        let jobs = vec![
            job("faculty", 1, JobState::Finished, 10),
            job("faculty", 2, JobState::Running, 20),
            job("program", 1, JobState::Failed, 15),
            job("program", 2, JobState::Canceled, 5),
            job("legacy", 1, JobState::Running, 30),
            job("student", 1, JobState::Running, 40),
            job("student", 2, JobState::Restarting, 41),
        ];
        let r = reconcile_jobs(&jobs, |t| t != "legacy");
        assert_eq!(r.running.keys().collect::<Vec<_>>(), vec!["faculty", "student"]);
        assert_eq!(r.running["faculty"].job_id, job_id_for("faculty", 2));
        assert_eq!(
            r.running["student"].job_id,
            job_id_for("student", 2),
            "newest live job is adopted"
        );
        assert_eq!(r.duplicates.len(), 1);
        assert_eq!(r.duplicates[0].job_id, job_id_for("student", 1));
        assert_eq!(
            r.ended.keys().collect::<Vec<_>>(),
            vec!["program"],
            "faculty has a live job"
        );
        assert_eq!(r.ended["program"].state, JobState::Failed, "latest ended job");
        let older: Vec<_> = r.older_ended.iter().map(|j| j.job_id.clone()).collect();
        assert_eq!(older, vec![job_id_for("faculty", 1), job_id_for("program", 2)]);
        assert_eq!(r.unknown.len(), 1);
        assert_eq!(r.unknown[0].table, "legacy");
    }
}
