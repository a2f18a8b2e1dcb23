//! What a listing of Flink's jobs means: which of the policy's jobs are gone, and which listed jobs are a table's
//! live job, a second live job, its latest end, or history.

use std::collections::{BTreeMap, HashSet};

use super::{Action, Event, JobObservation, Policy};
use crate::model::{JobId, JobState, JobSummary, Millis};

impl Policy {
    /// Takes the jobs Flink listed, asked for at `requested_at`, as reports, in an order that lets each mean one
    /// thing. First the end of each table's current job, if the listing shows it ended or no longer shows it at
    /// all, so that a live job of the table listed next is adopted rather than taken for a second one; then each
    /// table's newest live job, its other live jobs, and, for a table without one, its latest ended job. Every
    /// other ended job is history: not reported (a late report of it could only mislead), but remembered as ended.
    pub(super) fn on_listing(
        &mut self,
        now: Millis,
        jobs: Vec<JobSummary>,
        requested_at: Millis,
        out: &mut Vec<Action>,
    ) {
        let policy = &self.settings.policy;
        let mut jobs: Vec<JobSummary> = jobs.into_iter().filter(|job| policy.manages(&job.table)).collect();
        // Newest first, so the first live job of a table is the one to keep; the id breaks ties, so the outcome
        // never depends on the order Flink listed the jobs in.
        jobs.sort_by(|a, b| {
            b.start_time_ms
                .cmp(&a.start_time_ms)
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        let mut newest_live: BTreeMap<&str, &JobSummary> = BTreeMap::new();
        let mut other_live: Vec<&JobSummary> = Vec::new();
        for job in jobs.iter().filter(|job| job.state.is_alive()) {
            if newest_live.contains_key(job.table.as_str()) {
                other_live.push(job);
            } else {
                newest_live.insert(&job.table, job);
            }
        }
        let mut latest_ended: BTreeMap<&str, &JobSummary> = BTreeMap::new();
        let mut older_ended: Vec<&JobSummary> = Vec::new();
        for job in jobs.iter().filter(|job| job.state.is_terminal()) {
            if newest_live.contains_key(job.table.as_str()) || latest_ended.contains_key(job.table.as_str()) {
                older_ended.push(job);
            } else {
                latest_ended.insert(&job.table, job);
            }
        }
        for job in &other_live {
            out.push(Action::Event(Event::SecondLiveJob {
                table: job.table.clone(),
                job_id: job.job_id.clone(),
            }));
        }

        // A job the policy learned of before the listing was asked for existed in Flink then; absent from the
        // listing, it is gone (a session cluster restarted without HA, an expired job store). Left alone, the
        // policy would hold on to it for ever.
        let listed: HashSet<(&str, &JobId)> = jobs.iter().map(|job| (job.table.as_str(), &job.job_id)).collect();
        let mut current: BTreeMap<&str, &JobId> = BTreeMap::new();
        let mut missing: Vec<(String, JobId)> = Vec::new();
        for (table, t) in &self.tables {
            let Some(job_id) = t.job.job_id() else { continue };
            let known_before = t.job.since().is_some_and(|since| since < requested_at);
            if known_before && !listed.contains(&(table.as_str(), job_id)) {
                missing.push((table.clone(), job_id.clone()));
            } else {
                current.insert(table, job_id);
            }
        }
        let (current_ended, history): (Vec<&JobSummary>, Vec<&JobSummary>) = older_ended
            .into_iter()
            .partition(|job| current.get(job.table.as_str()) == Some(&&job.job_id));
        // History is remembered as ended, so that a report taken before it ended (a stale listing, a late answer)
        // cannot bring it back: a job that ended never runs again.
        let history: Vec<(String, JobId)> = history
            .into_iter()
            .map(|job| (job.table.clone(), job.job_id.clone()))
            .collect();
        let reports: Vec<JobObservation> = current_ended
            .into_iter()
            .chain(newest_live.into_values())
            .chain(other_live)
            .chain(latest_ended.into_values())
            .map(|job| JobObservation {
                table: job.table.clone(),
                job_id: job.job_id.clone(),
                // Its own pins tell the policy which start a listed job belongs to.
                generation: None,
                state: job.state.clone(),
            })
            .collect();

        for (table, job_id) in history {
            let t = self.table_mut(&table);
            if t.job.job_id() != Some(&job_id) {
                t.retire(job_id);
            }
        }
        for (table, job_id) in missing {
            out.push(Action::Event(Event::JobMissing {
                table: table.clone(),
                job_id: job_id.clone(),
            }));
            let gone = JobObservation {
                table,
                job_id,
                generation: None,
                state: JobState::Canceled,
            };
            self.on_job_state(now, gone, out);
        }
        for report in reports {
            self.on_job_state(now, report, out);
        }
    }
}
