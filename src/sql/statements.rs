//! Rendered SQL as statements: splitting a script at its `;`s, and what the launcher needs of a table's
//! statements (one that submits a job, none that sets the keys the launcher sets for every job).

use std::sync::OnceLock;

use regex::Regex;

/// The session keys the launcher sets for every job (its name, checkpointing and pinned id); a table's SQL
/// must not set them.
pub const LAUNCHER_KEYS: [&str; 3] = [
    "pipeline.name",
    "execution.checkpointing.interval",
    "$internal.pipeline.job-id",
];

/// The key of a `SET 'key' = 'value'` statement.
fn set_key(code: &str) -> Option<String> {
    static SET: OnceLock<Option<Regex>> = OnceLock::new();
    let set = SET
        .get_or_init(|| Regex::new(r"(?is)^SET\s+'([^']+)'\s*=").ok())
        .as_ref()?;
    Some(set.captures(code)?.get(1)?.as_str().to_owned())
}

/// The first launcher-owned key (see [`LAUNCHER_KEYS`]) that `statements` set, if any.
pub fn reserved_key_set(statements: &[String]) -> Option<String> {
    statements
        .iter()
        .filter_map(|s| set_key(&code_of(s)))
        .find(|key| LAUNCHER_KEYS.contains(&key.as_str()))
}

/// A statement without comment lines, on one line.
fn code_of(statement: &str) -> String {
    statement
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a statement submits a job: an INSERT, or a statement set.
pub fn submits_job(statement: &str) -> bool {
    let code = code_of(statement).to_ascii_uppercase();
    code.starts_with("INSERT ") || code.starts_with("EXECUTE ") || code.starts_with("BEGIN STATEMENT SET")
}

/// Splits SQL text into statements at `;` outside string literals, quoted identifiers and comments.
///
/// `--` comments are dropped (they end at the line's end); `/* */` comments are kept, because Flink reads hints
/// (`/*+ OPTIONS(...) */`) from them. Each statement is trimmed, blank lines inside it are removed, and empty
/// statements are skipped. An unclosed quote or block comment is an error with what is open and its line.
pub fn split_statements(text: &str) -> Result<Vec<String>, (&'static str, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Quoted(char, &'static str, usize),
        LineComment,
        BlockComment(usize),
    }
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut state = State::Code;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                ';' => {
                    finish(&mut current, &mut statements);
                }
                '\'' | '"' | '`' => {
                    let what = match c {
                        '\'' => "string literal",
                        _ => "quoted identifier",
                    };
                    state = State::Quoted(c, what, line);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    chars.next();
                    state = State::LineComment;
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    current.push_str("/*");
                    state = State::BlockComment(line);
                }
                _ => current.push(c),
            },
            State::Quoted(quote, _, _) => {
                current.push(c);
                if c == quote {
                    // A doubled quote is an escaped quote, not the end.
                    if chars.peek() == Some(&quote) {
                        chars.next();
                        current.push(quote);
                    } else {
                        state = State::Code;
                    }
                }
            }
            State::LineComment => {
                if c == '\n' {
                    current.push('\n');
                    state = State::Code;
                }
            }
            State::BlockComment(_) => {
                current.push(c);
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    current.push('/');
                    state = State::Code;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        State::Quoted(_, what, opened) => Err((what, opened)),
        State::BlockComment(opened) => Err(("block comment", opened)),
        State::Code | State::LineComment => {
            finish(&mut current, &mut statements);
            Ok(statements)
        }
    }
}

fn finish(current: &mut String, statements: &mut Vec<String>) {
    let statement = current
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if !statement.is_empty() {
        statements.push(statement);
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_respects_quotes_comments_and_hints() {
        let sql = "SET 'a' = 'x;y';\n-- comment; with semicolon\nSELECT `we;ird`, \"q;\" FROM t /*+ OPTIONS('k'='v;') */;\n\n;  ;\nSELECT 'it''s; fine'";
        let statements = split_statements(sql).unwrap();
        assert_eq!(
            statements,
            vec![
                "SET 'a' = 'x;y'",
                "SELECT `we;ird`, \"q;\" FROM t /*+ OPTIONS('k'='v;') */",
                "SELECT 'it''s; fine'",
            ]
        );
    }

    #[test]
    fn splitter_reports_what_is_left_open() {
        assert_eq!(split_statements("SELECT 1;\nSELECT 'oops;"), Err(("string literal", 2)));
        assert_eq!(split_statements("SELECT `x;"), Err(("quoted identifier", 1)));
        assert_eq!(split_statements("\n\nSELECT /* x;"), Err(("block comment", 3)));
        assert_eq!(split_statements("SELECT 1 -- trailing").unwrap(), vec!["SELECT 1"]);
    }

    #[test]
    fn launcher_keys_are_reserved() {
        let statements = vec!["SET 'table.exec.sink.upsert-materialize' = 'NONE'".to_owned()];
        assert_eq!(reserved_key_set(&statements), None);
        let sneaky = vec!["SET 'pipeline.name' = 'mine'".to_owned()];
        assert_eq!(reserved_key_set(&sneaky).as_deref(), Some("pipeline.name"));
    }

    #[test]
    fn job_statements_are_recognised() {
        assert!(submits_job("INSERT INTO sink SELECT * FROM src"));
        assert!(submits_job("-- copy\n  insert into sink\nselect 1"));
        assert!(submits_job("EXECUTE STATEMENT SET BEGIN INSERT INTO a SELECT 1; END"));
        assert!(!submits_job("CREATE TABLE src (id INT) WITH ('connector' = 'kafka')"));
        assert!(!submits_job("SET 'a' = 'b'"));
    }
}
