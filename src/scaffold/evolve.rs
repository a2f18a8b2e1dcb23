//! The Iceberg sink's table evolved from what a table's template declared before to what it declares now.
//!
//! The sink statement is `CREATE TABLE IF NOT EXISTS`: once the Iceberg table exists, a regenerated template
//! changes nothing in it, and the job's `INSERT INTO <table> SELECT ...` (columns by position) fails on the
//! first difference. These are the `ALTER TABLE` statements that bring the table along, limited to what the
//! Iceberg Flink runtime the compose stack pins (iceberg-flink-runtime-1.18, Iceberg 1.5.2) accepts through
//! Flink SQL, read from its source, not run here (no package registry ships the runtime):
//! `FlinkCatalog.alterTable(.., List<TableChange>, ..)` hands the changes to
//! `FlinkAlterTableUtil.applySchemaChanges`, which calls Iceberg's `SchemaUpdate` without
//! `allowIncompatibleChanges()`. So:
//! - an added nullable column is accepted (`addColumn`, appended last: the position Flink passes is ignored);
//! - a type change is accepted only as `TypeUtil.isPromotionAllowed` says: int -> long, float -> double,
//!   decimal(P,S) -> decimal(P',S) with P' >= P; the other changes fail ("Cannot change column type");
//! - a required column cannot be added, an optional one not made required, and identifier fields (the primary
//!   key) must be required columns: a key over other columns fails; `DROP PRIMARY KEY` is unsupported;
//! - `DROP` and `RENAME` are accepted, but neither is generated: a column missing from the new template may be a
//!   drop or a rename in Postgres, and dropping is the operator's decision (each line says what to run).
//!
//! docs/operations.md, "Iceberg sink: evolving the table", cites the files and the tag.

use super::declared::Declared;

/// One step: a statement to run, or what cannot be done with one and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A Flink SQL statement for the Iceberg catalog (run it in a session with `setup.sql`'s catalog).
    Alter(String),
    /// A change the runtime refuses, or that needs the operator's decision.
    Cannot {
        /// The column (or `primary key`).
        column: String,
        /// Why no statement is generated.
        why: String,
        /// What the operator does instead.
        todo: String,
    },
}

/// The sink's Iceberg table name as the sidecar renders `{{ sink_table }}` for the Iceberg sink.
pub fn sink_table(database: &str, table: &str) -> String {
    format!("`iceberg`.`{database}`.`{table}`")
}

/// A Flink type without its `NOT NULL`, and whether it had one.
fn split_null(ty: &str) -> (&str, bool) {
    match ty.strip_suffix(" NOT NULL") {
        Some(base) => (base.trim_end(), true),
        None => (ty, false),
    }
}

/// What Iceberg stores a Flink type as (FlinkTypeToType), in Iceberg's spelling: two Flink types with the same
/// Iceberg type need no change in the table. Types this does not know stay as Flink spells them.
fn iceberg_type(flink: &str) -> String {
    let upper = flink.to_uppercase();
    let base = upper.split('(').next().unwrap_or_default().trim();
    match base {
        "TINYINT" | "SMALLINT" | "INT" | "INTEGER" => "int".into(),
        "BIGINT" => "long".into(),
        "FLOAT" | "REAL" => "float".into(),
        "DOUBLE" => "double".into(),
        "BOOLEAN" => "boolean".into(),
        "DATE" => "date".into(),
        "STRING" | "VARCHAR" | "CHAR" => "string".into(),
        "BYTES" | "VARBINARY" => "binary".into(),
        "TIMESTAMP_LTZ" => "timestamptz".into(),
        "TIMESTAMP" if upper.contains("LOCAL TIME ZONE") => "timestamptz".into(),
        "TIMESTAMP" => "timestamp".into(),
        "TIME" => "time".into(),
        "DECIMAL" | "NUMERIC" => match decimal(&upper) {
            Some((p, s)) => format!("decimal({p},{s})"),
            None => upper,
        },
        _ => upper,
    }
}

/// `DECIMAL(P,S)`'s precision and scale (Flink's `DECIMAL` alone is `DECIMAL(10,0)`).
fn decimal(upper: &str) -> Option<(u32, u32)> {
    let Some(args) = upper.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')) else {
        return Some((10, 0));
    };
    let mut parts = args.split(',').map(|p| p.trim().parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(p)), Some(Ok(s)), None) => Some((p, s)),
        (Some(Ok(p)), None, None) => Some((p, 0)),
        _ => None,
    }
}

/// Iceberg's `TypeUtil.isPromotionAllowed`, on Iceberg type names.
fn promotion_allowed(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    match (from, to) {
        ("int", "long") | ("float", "double") => true,
        _ => match (decimal_of(from), decimal_of(to)) {
            (Some((p, s)), Some((p2, s2))) => s == s2 && p <= p2,
            _ => false,
        },
    }
}

fn decimal_of(iceberg: &str) -> Option<(u32, u32)> {
    let args = iceberg.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (p, s) = args.split_once(',')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

/// How to rebuild the table when no statement can change it: the remedy every refused change shares.
const REWRITE: &str = "rewrite the table: stop the table's job, recreate the Iceberg table under the new \
template (DROP TABLE it, or create it under a new name and rename), reset the job's consumer group to the \
topic's start (or re-snapshot the table with Debezium) so that every row is written again, then start the job";

/// The steps that take the Iceberg sink table `sink` (as [`sink_table`] names it) from `old`'s sink
/// declaration to `new`'s. Empty when the sink's columns, types and key are the same for Iceberg.
pub fn iceberg_steps(sink: &str, old: &Declared, new: &Declared) -> Vec<Step> {
    let mut steps = Vec::new();
    let old_of = |name: &str| old.sink.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
    let in_new = |name: &str| new.sink.iter().any(|(n, _)| n == name);

    if old.sink_key != new.sink_key {
        steps.push(Step::Cannot {
            column: "primary key".into(),
            why: format!(
                "the key changes from ({}) to ({}); Iceberg's identifier fields must be required columns, the \
                 runtime makes no optional column required and does not support DROP PRIMARY KEY, and the rows \
                 already written are keyed the old way",
                old.sink_key.join(", "),
                new.sink_key.join(", ")
            ),
            todo: REWRITE.into(),
        });
    }

    // Kept columns, in the old order: the new template must list them first and in that order, since Iceberg
    // appends an added column last and the INSERT writes by position.
    let kept: Vec<&str> = old.sink.iter().map(|(n, _)| n.as_str()).filter(|n| in_new(n)).collect();
    let new_kept: Vec<&str> = new
        .sink
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| old_of(n).is_some())
        .collect();
    let first_added = new.sink.iter().position(|(n, _)| old_of(n).is_none());
    let last_kept = new.sink.iter().rposition(|(n, _)| old_of(n).is_some());
    let appended = match (first_added, last_kept) {
        (Some(added), Some(kept)) => added > kept,
        _ => true,
    };
    if kept != new_kept {
        steps.push(Step::Cannot {
            column: "column order".into(),
            why: "the kept columns come in another order than the table's, and the INSERT writes by position".into(),
            todo: format!(
                "move each column with `ALTER TABLE {sink} MODIFY (`<column>` <type> AFTER `<column before>`);` \
                 (the runtime passes it to Iceberg as a move), or {REWRITE}"
            ),
        });
    }

    for (name, new_type) in &new.sink {
        let (new_base, new_required) = split_null(new_type);
        match old_of(name) {
            None if new_required => steps.push(Step::Cannot {
                column: name.clone(),
                why: "a NOT NULL column: Iceberg refuses to add a required column".into(),
                todo: format!(
                    "add it nullable: `ALTER TABLE {sink} ADD (`{name}` {new_base});` (a key column needs {REWRITE})"
                ),
            }),
            None if !appended => steps.push(Step::Cannot {
                column: name.clone(),
                why: "added between existing columns: Iceberg appends an added column last and the INSERT writes \
                      by position"
                    .into(),
                todo: format!(
                    "run `ALTER TABLE {sink} ADD (`{name}` {new_base});` and then move it with \
                     `ALTER TABLE {sink} MODIFY (`{name}` {new_base} AFTER `<column before>`);`"
                ),
            }),
            None => steps.push(Step::Alter(format!("ALTER TABLE {sink} ADD (`{name}` {new_base});"))),
            Some(old_type) => {
                let (old_base, _) = split_null(old_type);
                let (from, to) = (iceberg_type(old_base), iceberg_type(new_base));
                if from == to {
                    continue;
                }
                if promotion_allowed(&from, &to) {
                    // MODIFY also sets the nullability: keep a key column required, or Iceberg's identifier
                    // fields check fails; a nullable column stays nullable.
                    let null = if new_required { " NOT NULL" } else { "" };
                    steps.push(Step::Alter(format!(
                        "ALTER TABLE {sink} MODIFY (`{name}` {new_base}{null});"
                    )));
                } else {
                    steps.push(Step::Cannot {
                        column: name.clone(),
                        why: format!(
                            "its type changes from {old_base} to {new_base} ({from} -> {to} in Iceberg), which \
                             Iceberg does not promote (only int -> long, float -> double, and a decimal's precision \
                             up at the same scale)"
                        ),
                        todo: format!(
                            "either add the new type as a new column in Postgres and backfill it (the old column \
                             keeps its values), or {REWRITE}"
                        ),
                    });
                }
            }
        }
    }

    for (name, old_type) in &old.sink {
        if in_new(name) || old.sink_key.contains(name) {
            continue;
        }
        let (old_base, _) = split_null(old_type);
        steps.push(Step::Cannot {
            column: name.clone(),
            why: "no longer in Postgres (dropped, or renamed: the catalog cannot tell); the regenerated INSERT no \
                  longer writes it and Flink refuses an INSERT whose columns differ from the table's"
                .into(),
            todo: format!(
                "if renamed, run `ALTER TABLE {sink} RENAME `{name}` TO `<new name>`;` instead of adding the new \
                 name; if dropped, run `ALTER TABLE {sink} DROP (`{name}`);` (its values stay readable in earlier \
                 snapshots until they expire), or keep it by writing `CAST(NULL AS {old_base}) AS `{name}`` in the \
                 template's INSERT and sink, by hand"
            ),
        });
    }
    steps
}

/// The steps as lines for the command's output, each naming the table: statements as they are, the rest as
/// `-- table `t`: cannot evolve `c`: <why>; do: <what>` (comments, so that the output can be run as it is).
pub fn lines(table: &str, steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|step| match step {
            Step::Alter(statement) => statement.clone(),
            Step::Cannot { column, why, todo } => {
                format!("-- table `{table}`: cannot evolve `{column}`: {why}; do: {todo}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(sink: &[(&str, &str)], key: &[&str]) -> Declared {
        Declared {
            sink: sink.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect(),
            sink_key: key.iter().map(|k| (*k).to_owned()).collect(),
            ..Declared::default()
        }
    }

    const T: &str = "`iceberg`.`university`.`room`";

    fn room() -> Vec<(&'static str, &'static str)> {
        vec![
            ("id", "INT NOT NULL"),
            ("capacity", "INT"),
            ("price", "DECIMAL(10,2)"),
            ("ratio", "FLOAT"),
            ("name", "STRING"),
        ]
    }

    #[test]
    fn the_same_declaration_needs_nothing() {
        let old = declared(&room(), &["id"]);
        assert!(iceberg_steps(T, &old, &old).is_empty());
    }

    #[test]
    fn an_added_nullable_column_is_added() {
        let old = declared(&room(), &["id"]);
        let mut cols = room();
        cols.push(("floor", "SMALLINT"));
        cols.push(("opened", "TIMESTAMP(3)"));
        let new = declared(&cols, &["id"]);
        assert_eq!(
            iceberg_steps(T, &old, &new),
            vec![
                Step::Alter(format!("ALTER TABLE {T} ADD (`floor` SMALLINT);")),
                Step::Alter(format!("ALTER TABLE {T} ADD (`opened` TIMESTAMP(3));")),
            ]
        );
    }

    #[test]
    fn allowed_widenings_are_modified_and_a_key_column_stays_required() {
        let old = declared(&room(), &["id"]);
        let new = declared(
            &[
                ("id", "BIGINT NOT NULL"),
                ("capacity", "BIGINT"),
                ("price", "DECIMAL(14,2)"),
                ("ratio", "DOUBLE"),
                ("name", "VARCHAR(40)"),
            ],
            &["id"],
        );
        assert_eq!(
            iceberg_steps(T, &old, &new),
            vec![
                Step::Alter(format!("ALTER TABLE {T} MODIFY (`id` BIGINT NOT NULL);")),
                Step::Alter(format!("ALTER TABLE {T} MODIFY (`capacity` BIGINT);")),
                Step::Alter(format!("ALTER TABLE {T} MODIFY (`price` DECIMAL(14,2));")),
                Step::Alter(format!("ALTER TABLE {T} MODIFY (`ratio` DOUBLE);")),
            ],
            "STRING -> VARCHAR is string in Iceberg: nothing to do"
        );
    }

    #[test]
    fn a_type_iceberg_keeps_the_same_needs_no_statement() {
        let old = declared(
            &[("id", "INT NOT NULL"), ("n", "SMALLINT"), ("at", "TIMESTAMP(3)")],
            &["id"],
        );
        let new = declared(&[("id", "INT NOT NULL"), ("n", "INT"), ("at", "TIMESTAMP(6)")], &["id"]);
        assert!(iceberg_steps(T, &old, &new).is_empty());
    }

    fn cannot(steps: &[Step]) -> Vec<(String, String)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Cannot { column, why, .. } => Some((column.clone(), why.clone())),
                Step::Alter(_) => None,
            })
            .collect()
    }

    #[test]
    fn narrowing_scale_change_and_other_types_cannot_evolve() {
        let old = declared(&room(), &["id"]);
        let new = declared(
            &[
                ("id", "INT NOT NULL"),
                ("capacity", "STRING"),
                ("price", "DECIMAL(12,3)"),
                ("ratio", "INT"),
                ("name", "STRING"),
            ],
            &["id"],
        );
        let steps = iceberg_steps(T, &old, &new);
        let refused = cannot(&steps);
        let columns: Vec<&str> = refused.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["capacity", "price", "ratio"], "{steps:?}");
        assert!(refused[0].1.contains("int -> string"), "{}", refused[0].1);
        assert!(
            refused[1].1.contains("decimal(10,2) -> decimal(12,3)"),
            "{}",
            refused[1].1
        );
        assert_eq!(steps.len(), 3, "no statement for a refused change");
        // Narrowing back: long -> int.
        let wide = declared(&[("id", "INT NOT NULL"), ("capacity", "BIGINT")], &["id"]);
        let narrow = declared(&[("id", "INT NOT NULL"), ("capacity", "INT")], &["id"]);
        assert_eq!(cannot(&iceberg_steps(T, &wide, &narrow)).len(), 1);
    }

    #[test]
    fn a_dropped_column_is_left_to_the_operator_with_the_statements() {
        let old = declared(&room(), &["id"]);
        let new = declared(
            &[("id", "INT NOT NULL"), ("capacity", "INT"), ("price", "DECIMAL(10,2)")],
            &["id"],
        );
        let steps = iceberg_steps(T, &old, &new);
        assert_eq!(steps.len(), 2, "{steps:?}");
        let text = lines("room", &steps).join("\n");
        assert!(text.contains("cannot evolve `ratio`"), "{text}");
        assert!(text.contains(&format!("ALTER TABLE {T} DROP (`name`);")), "{text}");
        assert!(text.contains(&format!("ALTER TABLE {T} RENAME `name` TO")), "{text}");
        assert!(text.lines().all(|l| l.starts_with("-- table `room`: ")), "{text}");
    }

    #[test]
    fn a_key_change_or_a_required_column_cannot_evolve() {
        let old = declared(&room(), &["id"]);
        let mut cols = room();
        cols.push(("campus", "INT NOT NULL"));
        let new = declared(&cols, &["id", "campus"]);
        let refused = cannot(&iceberg_steps(T, &old, &new));
        let columns: Vec<&str> = refused.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(columns, ["primary key", "campus"]);
        assert!(refused[1].1.contains("required column"), "{}", refused[1].1);
    }

    #[test]
    fn a_column_added_between_others_is_not_added_blindly() {
        let old = declared(&[("id", "INT NOT NULL"), ("b", "INT")], &["id"]);
        let new = declared(&[("id", "INT NOT NULL"), ("a", "STRING"), ("b", "INT")], &["id"]);
        let steps = iceberg_steps(T, &old, &new);
        assert_eq!(cannot(&steps).len(), 1, "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::Alter(_))), "{steps:?}");
    }
}
