//! Schema drift: how each table's sampled records differ from the columns its template declares for the Kafka
//! source. Postgres's logical decoding sends no DDL, so the records are the only signal: a column added in
//! Postgres arrives as a field Flink's `debezium-json` source drops silently; a dropped one reads as NULL.
//!
//! The judgement is one pure function, [`evaluate`]; [`DriftBook`] keeps each table's recent samples and its
//! current drift, and re-judges every table when new templates bring new declared columns
//! ([`DriftBook::replace_declared`]), so a drift the new templates resolve clears itself. The run loop reports
//! each change of a table's drift once (a log line, the metric, a policy input), never per record.

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::decoder::SeenFields;
use crate::model::{Millis, SchemaDrift};
use crate::sql::DeclaredColumns;

/// Samples per table whose fields make up its drift: a field seen in any of them counts as carried, and a
/// column absent from the newest full row of them counts as missing. A few, so that one sample of a single record
/// does not decide alone, and an old shape leaves the window after a few new samples.
pub const DRIFT_WINDOW: usize = 4;

/// Names a log line shows of one list; the rest are counted.
const NAMES_SHOWN: usize = 16;

/// What a table's records and its declared source columns disagree on (no time: see [`SchemaDrift`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Fields seen that are not declared, sorted.
    pub added: Vec<String>,
    /// Declared columns absent from the newest full row (`after`), sorted.
    pub missing: Vec<String>,
    /// Fields seen whose names were too long to keep (no Postgres column is that long): added.
    pub unnamed_added: u32,
}

impl Drift {
    /// Whether there is any drift.
    pub fn is_drift(&self) -> bool {
        !self.added.is_empty() || !self.missing.is_empty() || self.unnamed_added > 0
    }
}

/// How the fields `seen` in a table's recent records differ from the columns its source `declared`.
///
/// - added: every field seen (in `after`, or a delete's `before`) that is not declared, and every name too long
///   to keep;
/// - missing: every declared column absent from the newest full row (`after`): the rows written before a column
///   was added lack it (they are older), so only the newest row's shape is the table's now; a column dropped is
///   absent from every row written since. A delete's `before` is not
///   judged: under `REPLICA IDENTITY DEFAULT` Postgres logs only the key of a deleted row, so its other columns
///   are absent from `before` without being gone. Nor is anything judged missing when more distinct names came
///   than are kept ([`crate::decoder::MAX_FIELD_NAMES`]): a declared column may be among those not kept.
pub fn evaluate(declared: &BTreeSet<String>, seen: &SeenFields) -> Drift {
    let added = seen
        .names
        .keys()
        .filter(|name| !declared.contains(name.as_str()))
        .cloned()
        .collect();
    let missing = if seen.overflow == 0 && seen.full_rows > 0 {
        declared
            .iter()
            .filter(|column| !seen.in_newest_full_row(column))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    Drift {
        added,
        missing,
        unnamed_added: seen.too_long,
    }
}

/// A change of one table's drift: what it was and what it is now (`None`: no drift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftChange {
    /// The table.
    pub table: String,
    /// The drift before.
    pub before: Option<SchemaDrift>,
    /// The drift now.
    pub now: Option<SchemaDrift>,
}

impl DriftChange {
    /// Logs the change: one warning naming the fields (escaped, a bounded number of them) when the table has
    /// drift, one line when it is resolved.
    pub fn log(&self) {
        let table = &self.table;
        match &self.now {
            Some(drift) => tracing::warn!(
                %table,
                added = %names(&drift.added, drift.unnamed_added),
                missing = %names(&drift.missing, 0),
                "schema drift: this table's records differ from the columns its SQL template declares for the \
                 Kafka source (added fields are dropped by Flink, missing columns read as NULL); regenerate or \
                 edit the template and reload (docs/operations.md, \"Schema drift\")"
            ),
            None => tracing::info!(%table, "schema drift resolved: the records match the template's source columns"),
        }
    }
}

/// `names` for a log line: quoted and escaped (`Debug`), at most [`NAMES_SHOWN`], and how many more there are.
fn names(names: &[String], unnamed: u32) -> String {
    let shown: Vec<String> = names.iter().take(NAMES_SHOWN).map(|n| format!("{n:?}")).collect();
    let mut text = format!("[{}]", shown.join(", "));
    let hidden = names.len().saturating_sub(NAMES_SHOWN);
    if hidden > 0 {
        text.push_str(&format!(" and {hidden} more"));
    }
    if unnamed > 0 {
        text.push_str(&format!(" and {unnamed} with names too long to show"));
    }
    text
}

/// One table's recent samples and current drift.
#[derive(Debug, Default)]
struct TableDrift {
    /// The fields of its last [`DRIFT_WINDOW`] samples, oldest first.
    window: VecDeque<SeenFields>,
    /// Its drift, while it has one.
    current: Option<SchemaDrift>,
}

impl TableDrift {
    /// The union of the window's samples.
    fn seen(&self) -> SeenFields {
        let mut seen = SeenFields::default();
        for sample in &self.window {
            seen.merge(sample);
        }
        seen
    }

    /// Judges the window against `declared` at `now`; the change, if the drift changed.
    fn judge(&mut self, table: &str, declared: Option<&BTreeSet<String>>, now: Millis) -> Option<DriftChange> {
        let drift = declared
            .map(|declared| evaluate(declared, &self.seen()))
            .filter(Drift::is_drift);
        let unchanged = match (&self.current, &drift) {
            (Some(old), Some(new)) => {
                old.added == new.added && old.missing == new.missing && old.unnamed_added == new.unnamed_added
            }
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return None;
        }
        let now = drift.map(|d| SchemaDrift {
            added: d.added,
            missing: d.missing,
            unnamed_added: d.unnamed_added,
            since: now,
        });
        let before = std::mem::replace(&mut self.current, now.clone());
        Some(DriftChange {
            table: table.to_owned(),
            before,
            now,
        })
    }
}

/// Every table's schema drift, judged against the declared source columns of the templates in use.
#[derive(Debug, Default)]
pub struct DriftBook {
    /// The columns each table's source declares; a table without an entry is not judged.
    declared: DeclaredColumns,
    /// The tables with declared columns that have been sampled.
    tables: HashMap<String, TableDrift>,
}

impl DriftBook {
    /// A book judging against `declared`.
    pub fn new(declared: DeclaredColumns) -> Self {
        Self {
            declared,
            tables: HashMap::new(),
        }
    }

    /// Whether `table`'s drift is judged (its template's source columns are known).
    pub fn is_watched(&self, table: &str) -> bool {
        self.declared.contains_key(table)
    }

    /// `table`'s drift, while it has one.
    pub fn current(&self, table: &str) -> Option<&SchemaDrift> {
        self.tables.get(table)?.current.as_ref()
    }

    /// Takes in one sample of `table`'s fields at `now`; the change of its drift, if any. Tables without
    /// declared columns keep nothing.
    pub fn observe(&mut self, table: &str, fields: SeenFields, now: Millis) -> Option<DriftChange> {
        let declared = self.declared.get(table)?;
        let t = self.tables.entry(table.to_owned()).or_default();
        if t.window.len() == DRIFT_WINDOW {
            t.window.pop_front();
        }
        t.window.push_back(fields);
        t.judge(table, Some(declared), now)
    }

    /// Judges every sampled table again against `declared` (new templates), at `now`: the changes, sorted by
    /// table. A drift the new columns resolve is cleared; a table that no longer declares columns has none.
    pub fn replace_declared(&mut self, declared: DeclaredColumns, now: Millis) -> Vec<DriftChange> {
        self.declared = declared;
        let mut changes: Vec<DriftChange> = self
            .tables
            .iter_mut()
            .filter_map(|(table, t)| t.judge(table, self.declared.get(table), now))
            .collect();
        changes.sort_by(|a, b| a.table.cmp(&b.table));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::decode_row;

    fn declared(columns: &[&str]) -> BTreeSet<String> {
        columns.iter().map(|c| (*c).to_owned()).collect()
    }

    fn sample(rows: &[&str]) -> SeenFields {
        let mut seen = SeenFields::default();
        for row in rows {
            let record = format!(r#"{{"op":"c","source":{{"table":"t"}},"after":{row}}}"#);
            if let (_, Some(row)) = decode_row("p.public.t", None, Some(record.as_bytes())) {
                seen.add(&row);
            }
        }
        seen
    }

    #[test]
    fn evaluate_finds_added_and_missing_fields() {
        let cols = declared(&["id", "name", "dropped"]);
        let d = evaluate(&cols, &sample(&[r#"{"id":1,"name":"a","new_col":2}"#]));
        assert_eq!(d.added, ["new_col"]);
        assert_eq!(d.missing, ["dropped"]);
        assert!(evaluate(&cols, &sample(&[r#"{"id":1,"name":"a","dropped":null}"#])) == Drift::default());
        // A column absent from the newest row (dropped since the older one) is missing.
        let d = evaluate(
            &cols,
            &sample(&[r#"{"id":1,"name":"a","dropped":1}"#, r#"{"id":2,"name":"b"}"#]),
        );
        assert_eq!(d.missing, ["dropped"]);
    }

    #[test]
    fn a_column_added_is_not_missing_because_older_rows_lack_it() {
        // Rows written before `ALTER TABLE ... ADD COLUMN floor` lack it, in the same sample and in older samples
        // of the window; templates that declare it (a reload after scaffold) see no drift.
        let cols = declared(&["id", "floor"]);
        assert_eq!(
            evaluate(&cols, &sample(&[r#"{"id":1}"#, r#"{"id":2,"floor":3}"#])),
            Drift::default()
        );
        let mut book = DriftBook::new([("t".to_owned(), declared(&["id"]))].into_iter().collect());
        assert_eq!(book.observe("t", sample(&[r#"{"id":1}"#]), Millis(1)), None);
        assert_eq!(book.observe("t", sample(&[r#"{"id":1}"#]), Millis(2)), None);
        let change = book.observe("t", sample(&[r#"{"id":1}"#, r#"{"id":2,"floor":3}"#]), Millis(3));
        assert_eq!(
            change.and_then(|c| c.now).map(|d| d.added),
            Some(vec!["floor".to_owned()])
        );
        let changes = book.replace_declared([("t".to_owned(), cols)].into_iter().collect(), Millis(4));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].now, None, "resolved: {changes:?}");
        // A column dropped afterwards is missing from the next sample on, although older rows carry it.
        let change = book.observe("t", sample(&[r#"{"id":3}"#]), Millis(5));
        assert_eq!(
            change.and_then(|c| c.now).map(|d| d.missing),
            Some(vec!["floor".to_owned()])
        );
    }

    #[test]
    fn a_deletes_key_only_before_reports_no_missing_column() {
        let mut seen = SeenFields::default();
        let record = br#"{"op":"d","source":{"table":"t"},"before":{"id":1},"after":null}"#;
        let (_, row) = decode_row("p.public.t", None, Some(record));
        seen.add(&row.expect("before"));
        assert_eq!(evaluate(&declared(&["id", "name"]), &seen), Drift::default());
    }

    #[test]
    fn with_too_many_names_nothing_is_judged_missing_and_long_names_are_added() {
        let many: Vec<String> = (0..300).map(|i| format!("\"c{i}\":0")).collect();
        let long = "z".repeat(200);
        let row = format!("{{{},\"{long}\":1}}", many.join(","));
        let d = evaluate(&declared(&["c299", "c0"]), &sample(&[&row]));
        assert!(d.missing.is_empty(), "c299 may be among the names not kept");
        assert_eq!(d.unnamed_added, 1);
        assert_eq!(d.added.len(), 255, "the kept names but c0");
    }

    fn book() -> DriftBook {
        DriftBook::new(DeclaredColumns::from([("t".to_owned(), declared(&["id", "name"]))]))
    }

    #[test]
    fn a_change_is_reported_once_and_its_end_once() {
        let mut book = book();
        assert_eq!(book.observe("t", sample(&[r#"{"id":1,"name":"a"}"#]), Millis(1)), None);
        let change = book
            .observe("t", sample(&[r#"{"id":1,"name":"a","x":1}"#]), Millis(2))
            .expect("drift begins");
        assert_eq!(
            change.now.as_ref().map(|d| (d.added.clone(), d.since)),
            Some((vec!["x".to_owned()], Millis(2)))
        );
        for at in 3..20 {
            assert_eq!(
                book.observe("t", sample(&[r#"{"id":1,"name":"a","x":1}"#]), Millis(at)),
                None
            );
        }
        // Another added field is a new drift, reported once.
        let change = book.observe("t", sample(&[r#"{"id":1,"name":"a","x":1,"y":2}"#]), Millis(20));
        assert_eq!(
            change.and_then(|c| c.now).map(|d| d.added),
            Some(vec!["x".to_owned(), "y".to_owned()])
        );
        // Tables without declared columns are not judged.
        assert_eq!(book.observe("other", sample(&[r#"{"q":1}"#]), Millis(21)), None);
    }

    #[test]
    fn new_declared_columns_resolve_a_drift_and_an_old_shape_leaves_the_window() {
        let mut book = book();
        book.observe("t", sample(&[r#"{"id":1,"name":"a","x":1}"#]), Millis(1))
            .expect("drift");
        // The new templates declare x: the drift clears itself.
        let with_x = DeclaredColumns::from([("t".to_owned(), declared(&["id", "name", "x"]))]);
        let changes = book.replace_declared(with_x.clone(), Millis(2));
        assert_eq!(changes.len(), 1);
        assert_eq!((changes[0].before.is_some(), changes[0].now.clone()), (true, None));
        assert!(
            book.replace_declared(with_x, Millis(3)).is_empty(),
            "no change, nothing reported"
        );
        // x is dropped in Postgres: missing at once, and after the window's worth of new samples nothing else.
        let change = book.observe("t", sample(&[r#"{"id":1,"name":"a"}"#]), Millis(4));
        assert_eq!(
            change.and_then(|c| c.now).map(|d| d.missing),
            Some(vec!["x".to_owned()])
        );
        // The template drops x too: the old rows still in the window hold x, so it shows as added until they
        // leave it.
        let without_x = DeclaredColumns::from([("t".to_owned(), declared(&["id", "name"]))]);
        let changes = book.replace_declared(without_x, Millis(5));
        assert_eq!(
            changes[0].now.as_ref().map(|d| d.added.clone()),
            Some(vec!["x".to_owned()])
        );
        let mut last = None;
        for at in 6..6 + DRIFT_WINDOW as u64 {
            if let Some(change) = book.observe("t", sample(&[r#"{"id":1,"name":"a"}"#]), Millis(at)) {
                last = Some(change);
            }
        }
        assert_eq!(
            last.map(|c| c.now),
            Some(None),
            "resolved once the window holds only new rows"
        );
    }

    #[test]
    fn log_lines_bound_and_escape_the_names() {
        let many: Vec<String> = (0..40).map(|i| format!("n{i}\n")).collect();
        let text = names(&many, 2);
        assert!(text.contains("\"n0\\n\""), "{text}");
        assert!(
            text.ends_with(" and 24 more and 2 with names too long to show"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
