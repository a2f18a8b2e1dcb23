//! What a table template declares, read from its text: the source's columns and key, the sink's columns and key,
//! and each column's INSERT expression. `--check` compares these, never the text, so that comments, alignment and
//! the order of WITH options may differ.

use std::collections::BTreeMap;

use crate::sql::split_statements;

/// A template's declarations.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Declared {
    /// Source columns and Flink types, in order.
    pub source: Vec<(String, String)>,
    /// Source primary key.
    pub source_key: Vec<String>,
    /// Sink columns and Flink types (with `NOT NULL`), in order.
    pub sink: Vec<(String, String)>,
    /// Sink primary key.
    pub sink_key: Vec<String>,
    /// Each sink column's INSERT expression, whitespace collapsed.
    pub select: BTreeMap<String, String>,
}

/// Why a template could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

fn unquote(identifier: &str) -> String {
    identifier.trim().trim_matches(|c| c == '`' || c == '"').to_owned()
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits at commas outside parentheses and angle brackets (`MAP<STRING, STRING>`).
fn top_level_items(body: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = items.last_mut() {
            last.push(c);
        }
    }
    items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The text between the first `(` and the parenthesis that closes it.
fn parenthesised(statement: &str) -> Option<&str> {
    let open = statement.find('(')?;
    let mut depth = 0;
    for (i, c) in statement[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return statement.get(open + 1..open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A column list: columns with their types, and the primary key.
type ColumnList = (Vec<(String, String)>, Vec<String>);

fn columns(statement: &str) -> Result<ColumnList, Unreadable> {
    let body = parenthesised(statement).ok_or_else(|| Unreadable("a column list without its `)`".into()))?;
    let mut columns = Vec::new();
    let mut key = Vec::new();
    for item in top_level_items(body) {
        let upper = item.to_uppercase();
        if upper.starts_with("PRIMARY KEY") {
            let inner = parenthesised(&item).unwrap_or_default();
            key = inner.split(',').map(unquote).collect();
            continue;
        }
        let (name, ty) = item
            .split_once(char::is_whitespace)
            .ok_or_else(|| Unreadable(format!("a column without a type: {item}")))?;
        columns.push((unquote(name), collapse(ty).to_uppercase().replace(", ", ",")));
    }
    Ok((columns, key))
}

/// Statement text without its comment lines.
fn code(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads a template's declarations.
pub fn parse(text: &str) -> Result<Declared, Unreadable> {
    let statements =
        split_statements(text).map_err(|(what, line)| Unreadable(format!("an unterminated {what} at line {line}")))?;
    let mut declared = Declared::default();
    let (mut source, mut sink, mut insert) = (false, false, false);
    for statement in &statements {
        let statement = code(statement);
        let head = collapse(&statement).to_uppercase();
        if head.starts_with("CREATE TEMPORARY TABLE") && !source {
            (declared.source, declared.source_key) = columns(&statement)?;
            source = true;
        } else if head.starts_with("{{ SINK_CREATE }}") && !sink {
            (declared.sink, declared.sink_key) = columns(&statement)?;
            sink = true;
        } else if head.starts_with("INSERT INTO") && !insert {
            declared.select = select(&statement)?;
            insert = true;
        }
    }
    for (found, what) in [
        (source, "the Kafka source's CREATE TEMPORARY TABLE"),
        (sink, "the sink's {{ sink_create }}"),
        (insert, "the INSERT"),
    ] {
        if !found {
            return Err(Unreadable(format!("no {what}")));
        }
    }
    Ok(declared)
}

fn select(statement: &str) -> Result<BTreeMap<String, String>, Unreadable> {
    let upper = statement.to_uppercase();
    let start = upper
        .find("SELECT")
        .ok_or_else(|| Unreadable("an INSERT without SELECT".into()))?
        + "SELECT".len();
    let end = upper
        .rfind("FROM")
        .ok_or_else(|| Unreadable("an INSERT without FROM".into()))?;
    let body = statement.get(start..end).unwrap_or_default();
    let mut out = BTreeMap::new();
    for item in top_level_items(body) {
        let item = collapse(&item);
        // `expr AS `alias``, or a bare column.
        let (expression, alias) = match item.rfind(" AS `").or_else(|| item.rfind(" as `")) {
            Some(at) => (item[..at].to_owned(), unquote(&item[at + 4..])),
            None => (item.clone(), unquote(&item)),
        };
        out.insert(alias, expression);
    }
    Ok(out)
}

/// Differences between what a file declares and what the catalog generates, one line each, naming the column.
pub fn differences(table: &str, file: &Declared, catalog: &Declared) -> Vec<String> {
    let mut out = Vec::new();
    compare_columns(table, "source", &file.source, &catalog.source, &mut out);
    compare_columns(table, "sink", &file.sink, &catalog.sink, &mut out);
    if file.source_key != catalog.source_key || file.sink_key != catalog.sink_key {
        out.push(format!(
            "table `{table}`: primary key ({}) in the file, ({}) in the catalog",
            file.sink_key.join(", "),
            catalog.sink_key.join(", ")
        ));
    }
    for (column, expected) in &catalog.select {
        match file.select.get(column) {
            Some(found) if found == expected => {}
            Some(found) => out.push(format!(
                "table `{table}`, column `{column}`: the INSERT reads `{found}`, the catalog needs `{expected}`"
            )),
            None => out.push(format!("table `{table}`, column `{column}`: not written by the INSERT")),
        }
    }
    for column in file.select.keys().filter(|c| !catalog.select.contains_key(*c)) {
        out.push(format!(
            "table `{table}`, column `{column}`: written by the INSERT but not in the catalog"
        ));
    }
    out
}

fn compare_columns(
    table: &str,
    side: &str,
    file: &[(String, String)],
    catalog: &[(String, String)],
    out: &mut Vec<String>,
) {
    let in_file: BTreeMap<&str, &str> = file.iter().map(|(c, t)| (c.as_str(), t.as_str())).collect();
    let in_catalog: BTreeMap<&str, &str> = catalog.iter().map(|(c, t)| (c.as_str(), t.as_str())).collect();
    for (column, ty) in catalog {
        match in_file.get(column.as_str()) {
            None => out.push(format!(
                "table `{table}`, column `{column}`: in the catalog ({side} type {ty}) but not in the file's {side}"
            )),
            Some(found) if found != ty => out.push(format!(
                "table `{table}`, column `{column}`: {side} type {found} in the file, {ty} from the catalog"
            )),
            Some(_) => {}
        }
    }
    for (column, _) in file {
        if !in_catalog.contains_key(column.as_str()) {
            out.push(format!(
                "table `{table}`, column `{column}`: in the file's {side} but not in the catalog"
            ));
        }
    }
    let order = |cols: &[(String, String)]| -> Vec<String> {
        cols.iter()
            .filter(|(c, _)| in_file.contains_key(c.as_str()) && in_catalog.contains_key(c.as_str()))
            .map(|(c, _)| c.clone())
            .collect()
    };
    if out.is_empty() && order(file) != order(catalog) {
        out.push(format!(
            "table `{table}`: the {side}'s columns are in another order than the catalog's"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../flink-sql/tables/payment.sql");

    #[test]
    fn reads_a_shipped_template() {
        let d = parse(SHIPPED).unwrap();
        assert_eq!(d.source.first(), Some(&("payment_id".to_owned(), "STRING".to_owned())));
        assert_eq!(
            d.sink.first(),
            Some(&("payment_id".to_owned(), "STRING NOT NULL".to_owned()))
        );
        assert_eq!(d.source_key, vec!["payment_id"]);
        assert_eq!(d.sink_key, vec!["payment_id"]);
        assert_eq!(d.select.len(), d.sink.len());
        assert_eq!(
            d.select["due_date"],
            "CAST(TO_TIMESTAMP_LTZ(CAST(`due_date` AS BIGINT) * 86400000, 3) AS DATE)"
        );
        assert_eq!(d.select["bank_name"], "`bank_name`");
    }

    #[test]
    fn differences_name_table_and_column() {
        let file = parse(SHIPPED).unwrap();
        let mut catalog = file.clone();
        catalog.source.push(("nickname".into(), "STRING".into()));
        catalog.sink.push(("nickname".into(), "STRING".into()));
        catalog.select.insert("nickname".into(), "`nickname`".into());
        let diff = differences("payment", &file, &catalog);
        assert_eq!(diff.len(), 3, "{diff:?}");
        assert!(
            diff.iter().all(|d| d.contains("table `payment`, column `nickname`")),
            "{diff:?}"
        );
        assert!(differences("payment", &file, &file).is_empty());
    }
}
