//! The columns a table's Kafka source declares, for schema drift: the fields Flink's `debezium-json` format reads
//! from each record's `before`/`after`; a field the records carry that is not among them is dropped silently.
//!
//! The source is the table's `CREATE [TEMPORARY] TABLE <name> ( <columns> ) WITH ( {{ source_options }} )`: among the
//! rendered statements, the one whose options are the sidecar's Kafka source (`'connector' = 'kafka'` and
//! `'format' = 'debezium-json'`, as [`super::source`] writes them). Of its elements, physical columns count;
//! computed columns (`name AS expr`), metadata columns (`... METADATA ...`) and constraints (`PRIMARY KEY`,
//! `WATERMARK`, ...) read no field of the row.

use std::collections::BTreeSet;

/// The declared physical columns of the Kafka source among `statements` (a table's rendered statements), or
/// `None` when no statement is recognised as that source.
pub(super) fn source_columns(statements: &[String]) -> Option<BTreeSet<String>> {
    let source = statements.iter().find(|s| is_kafka_source(s))?;
    let list = column_list(source)?;
    Some(elements(list).iter().filter_map(|e| physical_column(e)).collect())
}

/// Whether `statement` creates a table read by the sidecar's Kafka source options.
fn is_kafka_source(statement: &str) -> bool {
    let code = statement.trim_start();
    let head: String = code.chars().take(40).collect::<String>().to_ascii_uppercase();
    let head: Vec<&str> = head.split_whitespace().collect();
    let creates = matches!(
        head.as_slice(),
        ["CREATE", "TABLE", ..] | ["CREATE", "TEMPORARY", "TABLE", ..]
    );
    creates && statement.contains("'connector' = 'kafka'") && statement.contains("'format' = 'debezium-json'")
}

/// The text between the first `(` outside quotes and its matching `)`.
fn column_list(statement: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut start = None;
    let mut quote: Option<char> = None;
    for (at, c) in statement.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '`' | '"' => quote = Some(c),
                '(' => {
                    depth += 1;
                    if depth == 1 {
                        start = Some(at + 1);
                    }
                }
                ')' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return statement.get(start?..at);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

/// The comma-separated elements of a column list, split outside quotes, parentheses (`DECIMAL(10, 2)`) and the
/// angle brackets of a type (`ROW<a INT, b INT>`, `MAP<STRING, INT>`); a `<` anywhere else is a comparison.
fn elements(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut parens, mut angles) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut from = 0;
    for (at, c) in list.char_indices() {
        match quote {
            // A doubled quote reads as a close and a reopen: the same state either way.
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '`' | '"' => quote = Some(c),
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                '<' if opens_type(&list[from..at]) => angles += 1,
                '>' if angles > 0 => angles -= 1,
                ',' if parens == 0 && angles == 0 => {
                    out.push(&list[from..at]);
                    from = at + 1;
                }
                _ => {}
            },
        }
    }
    out.push(&list[from..]);
    out
}

/// Whether a `<` after `before` opens a type's parameters: it follows ROW, ARRAY, MAP or MULTISET.
fn opens_type(before: &str) -> bool {
    let word: String = before
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(word.as_str(), "WOR" | "YARRA" | "PAM" | "TESITLUM")
}

/// The name of a physical column element; `None` for a constraint, a computed or a metadata column.
fn physical_column(element: &str) -> Option<String> {
    let element = strip_comments(element);
    let element = element.trim();
    let (name, rest) = if let Some(quoted) = element.strip_prefix('`') {
        // `` `a``b` `` is the name a`b.
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '`' {
                if chars.peek().is_some_and(|(_, n)| *n == '`') {
                    chars.next();
                    name.push('`');
                } else {
                    end = Some(at + 1);
                    break;
                }
            } else {
                name.push(c);
            }
        }
        (name, &quoted[end?..])
    } else {
        let len = element
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(element.len());
        let word = &element[..len];
        if word.is_empty()
            || matches!(
                word.to_ascii_uppercase().as_str(),
                "PRIMARY" | "WATERMARK" | "CONSTRAINT" | "LIKE" | "PERIOD" | "UNIQUE"
            )
        {
            return None;
        }
        (word.to_owned(), &element[len..])
    };
    let rest = rest.trim_start().to_ascii_uppercase();
    let computed = rest.starts_with("AS ") || rest.starts_with("AS(");
    let metadata = rest
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "METADATA");
    (!computed && !metadata).then_some(name)
}

/// `element` without `/* */` comments (the splitter keeps them for hints).
fn strip_comments(element: &str) -> String {
    let mut out = String::with_capacity(element.len());
    let mut rest = element;
    while let Some(open) = rest.find("/*") {
        out.push_str(&rest[..open]);
        match rest[open..].find("*/") {
            Some(close) => rest = &rest[open + close + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(statement: &str) -> Option<Vec<String>> {
        source_columns(&[statement.to_owned()]).map(|c| c.into_iter().collect())
    }

    const OPTIONS: &str = "'connector' = 'kafka',\n    'topic' = 't',\n    'format' = 'debezium-json'";

    #[test]
    fn physical_columns_count_and_the_rest_does_not() {
        let sql = format!(
            "CREATE TEMPORARY TABLE `c`.`d`.`cdc_source_x(1)` (\n  `id` INT,\n  name STRING COMMENT 'a, b',\n  \
             `amount` DECIMAL(10, 2),\n  `we``ird` ROW<a INT, b MAP<STRING, INT>>,\n  /* note */ `tags` ARRAY<STRING>,\n  \
             `total` AS CASE WHEN id < 3 THEN 1 ELSE 2 END,\n  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,\n  \
             `kept` BIGINT,\n  WATERMARK FOR ts AS ts,\n  PRIMARY KEY (`id`) NOT ENFORCED\n) WITH (\n{OPTIONS}\n)"
        );
        assert_eq!(
            columns(&sql).expect("the source"),
            ["amount", "id", "kept", "name", "tags", "we`ird"]
        );
    }

    #[test]
    fn only_the_kafka_debezium_source_is_the_source() {
        let sink = "CREATE TABLE s (`id` INT) WITH ('connector' = 'jdbc')".to_owned();
        let source = format!("create temporary table src (`id` INT, `v` STRING) with ({OPTIONS})");
        assert_eq!(source_columns(std::slice::from_ref(&sink)), None);
        let found = source_columns(&[sink, source]).expect("found");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["id", "v"]);
    }

    #[test]
    fn every_shipped_template_declares_its_source_columns() {
        let config = crate::config::Config::default();
        let templates = super::super::Templates::load(&config).expect("built-in templates");
        let declared = templates.declared_columns();
        assert_eq!(declared.len(), 12, "{:?}", declared.keys());
        let faculty: Vec<&str> = declared["faculty"].iter().map(String::as_str).collect();
        assert_eq!(faculty, ["created_at", "faculty_code", "faculty_name", "id"]);
    }
}
