//! What scale-to-zero saves: per table, how long its job existed against how long the sidecar has watched it.
//!
//! The book is pure: it is fed the policy's table snapshots with the policy's own `now` (the run loop's clock),
//! and takes a job's start from the timestamps the policy already keeps (`job_since` of a starting job), so it
//! has no clock of its own. The [`Savings`] handle shares the book with the HTTP server and renders it as
//! metrics on each scrape, extrapolated to the scrape time with the same clock the policy is fed from.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Serialize;

use super::metrics::TableLabels;
use crate::model::Millis;

/// One table's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Account {
    /// Milliseconds of finished job lifetimes.
    job_ms: u64,
    /// When the current job was started, while one exists.
    job_since: Option<Millis>,
    /// Jobs that came to exist (started or adopted).
    cycles: u64,
    /// When a job last appeared or went away.
    changed_at: Option<Millis>,
    /// The policy reported the table (it saw a change or a job); seeded quiet tables are not.
    reported: bool,
}

/// The per-table accounts, as of the latest snapshot.
#[derive(Debug, Clone, Default)]
pub struct SavingsBook {
    /// When the sidecar started watching: every table's time is counted from here, since the always-on
    /// alternative runs each table's job for the sidecar's whole life.
    started_at: Option<Millis>,
    /// The time of the latest snapshot.
    as_of: Millis,
    tables: BTreeMap<String, Account>,
}

/// What the book needs of one table's status (the run loop reads it off the policy's).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The table.
    pub table: &'a str,
    /// A job exists: starting, running or stopping (each holds Flink resources).
    pub has_job: bool,
    /// The policy's timestamp of the job's current state (a starting job's is its start).
    pub job_since: Option<Millis>,
}

/// One table's savings as `/tables` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSavings {
    /// Seconds the table's job existed (starting, running or stopping) since the sidecar started.
    pub job_seconds: f64,
    /// Seconds since the sidecar started (the always-on job's cost).
    pub tracked_seconds: f64,
    /// `job_seconds / tracked_seconds`, 0 before any time passed.
    pub running_share: f64,
    /// Jobs started or adopted since the sidecar started.
    pub job_cycles: u64,
    /// When the table's job last started or went away (milliseconds since the Unix epoch).
    pub job_changed_at: Option<Millis>,
    /// Whether the policy ever reported the table (else it is a known table that stayed quiet).
    #[serde(skip)]
    pub reported: bool,
}

impl SavingsBook {
    /// Starts counting at `now`, for `tables` (known tables that may never see a change, and so never appear
    /// in a snapshot, but would still cost an always-on job).
    pub fn new(now: Millis, tables: impl IntoIterator<Item = String>) -> Self {
        SavingsBook {
            started_at: Some(now),
            as_of: now,
            tables: tables.into_iter().map(|t| (t, Account::default())).collect(),
        }
    }

    /// Takes in the policy's snapshot at `now`: a table whose job appeared is charged from the job's start as the
    /// policy recorded it, one whose job went away stops being charged at `now`.
    pub fn observe<'a>(&mut self, now: Millis, seen: impl IntoIterator<Item = Seen<'a>>) {
        let started_at = *self.started_at.get_or_insert(now);
        let now = now.max(self.as_of);
        self.as_of = now;
        for status in seen {
            let account = self.tables.entry(status.table.to_owned()).or_default();
            account.reported = true;
            match (status.has_job, account.job_since) {
                (true, None) => {
                    // A start published in the same step carries its issue time; an adopted job is charged
                    // from when the policy first reports it. Never before the sidecar started, never ahead.
                    let since = status.job_since.unwrap_or(now).clamp(started_at, now);
                    account.job_since = Some(since);
                    account.cycles += 1;
                    account.changed_at = Some(since);
                }
                (false, Some(since)) => {
                    account.job_ms = account.job_ms.saturating_add(now.0.saturating_sub(since.0));
                    account.job_since = None;
                    account.changed_at = Some(now);
                }
                _ => {}
            }
        }
    }

    /// One table's figures at `now` (not before the latest snapshot); `None` for a table never seen.
    pub fn table(&self, table: &str, now: Millis) -> Option<TableSavings> {
        let account = self.tables.get(table)?;
        let now = now.max(self.as_of);
        let tracked_ms = now.0.saturating_sub(self.started_at.unwrap_or(now).0);
        let job_ms = account.job_ms + account.job_since.map_or(0, |since| now.0.saturating_sub(since.0));
        Some(TableSavings {
            job_seconds: job_ms as f64 / 1000.0,
            tracked_seconds: tracked_ms as f64 / 1000.0,
            running_share: share(job_ms, tracked_ms),
            job_cycles: account.cycles,
            job_changed_at: account.changed_at,
            reported: account.reported,
        })
    }

    /// Every table's figures at `now`.
    pub fn tables(&self, now: Millis) -> Vec<(String, TableSavings)> {
        self.tables
            .keys()
            .filter_map(|t| self.table(t, now).map(|s| (t.clone(), s)))
            .collect()
    }

    /// The fraction of table-time with a job, over every table: what the always-on alternative would cost is
    /// 1.0.
    pub fn running_share(&self, now: Millis) -> f64 {
        let (job, tracked) = self.tables(now).iter().fold((0.0, 0.0), |(job, tracked), (_, s)| {
            (job + s.job_seconds, tracked + s.tracked_seconds)
        });
        if tracked > 0.0 { job / tracked } else { 0.0 }
    }
}

fn share(part_ms: u64, whole_ms: u64) -> f64 {
    if whole_ms == 0 {
        0.0
    } else {
        (part_ms as f64 / whole_ms as f64).min(1.0)
    }
}

/// The clock the book is read with between snapshots: the run loop's, so scrapes and snapshots agree.
type Now = Box<dyn Fn() -> Millis + Send + Sync>;

/// The shared book: written by the run loop, read by `/tables` and by every scrape of `/metrics`.
#[derive(Default)]
pub struct Savings {
    book: Mutex<Option<SavingsBook>>,
    now: OnceLock<Now>,
    /// Base of the Flink web UI links (no trailing slash).
    web_ui: OnceLock<String>,
}

impl std::fmt::Debug for Savings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Savings").finish_non_exhaustive()
    }
}

impl Savings {
    /// Starts the book at the run loop's `now`, for the known `tables`, and reads it with `clock` from then on.
    pub fn start(
        &self,
        clock: impl Fn() -> Millis + Send + Sync + 'static,
        tables: impl IntoIterator<Item = String>,
        web_ui: &str,
    ) {
        let book = SavingsBook::new(clock(), tables);
        *self.lock() = Some(book);
        let _ = self.now.set(Box::new(clock));
        let _ = self.web_ui.set(web_ui.trim_end_matches('/').to_owned());
    }

    /// Takes in a snapshot the policy published at `now`.
    pub fn observe<'a>(&self, now: Millis, seen: impl IntoIterator<Item = Seen<'a>>) {
        self.lock()
            .get_or_insert_with(|| SavingsBook::new(now, []))
            .observe(now, seen);
    }

    /// One table's figures now.
    pub fn table(&self, table: &str) -> Option<TableSavings> {
        let book = self.lock();
        let book = book.as_ref()?;
        book.table(table, self.now(book))
    }

    /// The Flink web UI page of a job, when the sidecar knows where the UI is.
    pub fn job_url(&self, job_id: &str) -> Option<String> {
        let base = self.web_ui.get().filter(|b| !b.is_empty())?;
        // Job ids are 32 hex digits (the policy only keeps parsed ones); anything else gets no link.
        job_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| format!("{base}/#/job/running/{job_id}/overview"))
    }

    fn now(&self, book: &SavingsBook) -> Millis {
        self.now.get().map_or(book.as_of, |now| now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SavingsBook>> {
        self.book.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Collector for Savings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (tables, share) = {
            let book = self.lock();
            match book.as_ref() {
                Some(book) => {
                    let now = self.now(book);
                    (book.tables(now), book.running_share(now))
                }
                None => (Vec::new(), 0.0),
            }
        };
        let tracked_seconds = tables.first().map_or(0.0, |(_, s)| s.tracked_seconds);
        let gauge = ConstGauge::new(share);
        gauge.encode(encoder.encode_descriptor(
            "job_running_share",
            "Fraction of table-time with a job (starting, running or stopping) since the sidecar started; an \
             always-on job per table is 1",
            None,
            gauge.metric_type(),
        )?)?;
        let tracked = ConstCounter::new(tracked_seconds);
        tracked.encode(encoder.encode_descriptor(
            "tracked_seconds",
            "Seconds every table has been watched since the sidecar started (an always-on job's cost per table)",
            None,
            tracked.metric_type(),
        )?)?;
        let count = ConstGauge::new(i64::try_from(tables.len()).unwrap_or(i64::MAX));
        count.encode(encoder.encode_descriptor(
            "tables_tracked",
            "Tables counted in the running share (managed tables with a SQL template, and any seen)",
            None,
            count.metric_type(),
        )?)?;
        // Only tables the policy reported get a series, so the series count follows real activity; quiet tables
        // are in the share and the count above. Start/stop cycles are `cdc_job_starts_total{result="ok"}`.
        let mut family = encoder.encode_descriptor(
            "table_job_seconds",
            "Seconds a table's job existed (starting, running or stopping) since the sidecar started",
            None,
            ConstCounter::new(0.0).metric_type(),
        )?;
        for (table, savings) in tables.iter().filter(|(_, s)| s.reported) {
            let labels = TableLabels { table: table.clone() };
            ConstCounter::new(savings.job_seconds).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job exists (the policy's state is starting, running or stopping).
    const JOB: bool = true;
    /// No job (idle, or any other state without one).
    const NO_JOB: bool = false;

    fn status(table: &str, has_job: bool, job_since: Option<u64>) -> Seen<'_> {
        Seen {
            table,
            has_job,
            job_since: job_since.map(Millis),
        }
    }

    #[test]
    fn charges_jobs_from_their_start_to_their_end() {
        let mut book = SavingsBook::new(Millis(1_000), ["quiet".to_owned()]);
        book.observe(Millis(2_000), [status("busy", JOB, Some(2_000))]);
        book.observe(Millis(3_000), [status("busy", JOB, Some(2_500))]);
        book.observe(Millis(5_000), [status("busy", JOB, Some(4_900))]);
        book.observe(Millis(6_000), [status("busy", NO_JOB, None)]);
        // A second cycle, still running at the end.
        book.observe(Millis(9_000), [status("busy", JOB, Some(9_000))]);
        let busy = book.table("busy", Millis(11_000)).expect("busy is known");
        assert_eq!(busy.job_seconds, 6.0, "4 s of the first job, 2 s of the second");
        assert_eq!(busy.tracked_seconds, 10.0);
        assert_eq!(busy.running_share, 0.6);
        assert_eq!(busy.job_cycles, 2);
        assert_eq!(busy.job_changed_at, Some(Millis(9_000)));
        let quiet = book.table("quiet", Millis(11_000)).expect("seeded tables are known");
        assert_eq!(
            (quiet.job_seconds, quiet.job_cycles, quiet.running_share),
            (0.0, 0, 0.0)
        );
        assert_eq!(book.running_share(Millis(11_000)), 0.3, "6 of 20 table-seconds");
        assert!(book.table("other", Millis(11_000)).is_none());
    }

    #[test]
    fn an_adopted_job_is_charged_from_when_it_is_seen_and_never_before_the_start() {
        let mut book = SavingsBook::new(Millis(10_000), []);
        // Flink's RUNNING since long before the sidecar started: only the sidecar's time counts.
        book.observe(Millis(12_000), [status("t", JOB, Some(1))]);
        let t = book.table("t", Millis(14_000)).expect("t");
        assert_eq!((t.job_seconds, t.tracked_seconds), (4.0, 4.0));
        // A time behind the latest snapshot reads as the snapshot's.
        assert_eq!(book.table("t", Millis(0)).expect("t").job_seconds, 2.0);
    }

    #[test]
    fn renders_metrics_and_links() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let clock = std::sync::Arc::new(AtomicU64::new(1_000));
        let savings = Savings::default();
        let now = clock.clone();
        savings.start(
            move || Millis(now.load(Ordering::Relaxed)),
            ["a".to_owned()],
            "http://flink:8081/",
        );
        savings
            .lock()
            .as_mut()
            .expect("started")
            .observe(Millis(1_000), [status("b", JOB, Some(1_000))]);
        // Scrapes between snapshots read the clock: b's job has run 3 of 3 seconds, a's none.
        clock.store(4_000, Ordering::Relaxed);
        let mut registry = prometheus_client::registry::Registry::with_prefix("cdc");
        let savings = std::sync::Arc::new(savings);
        registry.register_collector(Box::new(savings.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            "cdc_job_running_share 0.5",
            "cdc_table_job_seconds_total{table=\"b\"} 3.0",
            "cdc_tracked_seconds_total 3.0",
            "cdc_tables_tracked 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("table=\"a\""), "a quiet table has no series:\n{text}");
        assert_eq!(
            savings.job_url("0123456789abcdef0123456789abcdef").as_deref(),
            Some("http://flink:8081/#/job/running/0123456789abcdef0123456789abcdef/overview")
        );
        assert_eq!(savings.job_url("../x"), None);
    }
}
