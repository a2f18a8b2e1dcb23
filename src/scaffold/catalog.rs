//! Reads the captured tables' columns, types, nullability and primary keys from Postgres's catalog, with a
//! connect timeout and a timeout on every query (the server's `statement_timeout` too), over [`super::pg`]'s
//! simple-query client: the schema and table names are inlined as escaped literals. The catalog's answers are
//! outside input: names are bounded and checked before they reach a generated file.

use std::time::Duration;

use postgres_protocol::escape::escape_literal;

use super::ScaffoldError;
use super::pg::{Config, Connection, Rows};
use super::tls::TlsConfig;
use super::types::PgType;

/// Most tables one run reads (a schema can hold many; the files are one per table).
pub const MAX_TABLES: usize = 10_000;

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    /// Its name.
    pub name: String,
    /// Its type.
    pub pg: PgType,
    /// `NOT NULL`.
    pub not_null: bool,
}

/// A table as the catalog describes it.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    /// Its name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<CatalogColumn>,
    /// Primary key columns in key order; empty when it has none.
    pub primary_key: Vec<String>,
}

/// A connection to the catalog.
pub struct Catalog {
    conn: Connection,
    timeout: Duration,
}

// Through one domain to its base type (Debezium maps a domain column as its base type); enums, and arrays of
// enums, flagged.
const COLUMNS: &str = "\
SELECT a.attname::text,
       a.attnotnull,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       (bt.typtype = 'e' OR coalesce(et.typtype = 'e', false)),
       bt.typname::text
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

const PRIMARY_KEY: &str = "\
SELECT a.attname::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)";

const TABLES: &str = "\
SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1";

/// `template` with each `$n` replaced by the escaped string literal of `params[n - 1]`, in one pass (a value
/// holding `$2` is not touched again). The templates hold no other `$`.
fn fill(template: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let digit = after.chars().next().and_then(|c| c.to_digit(10));
        match digit.and_then(|d| params.get((d as usize).wrapping_sub(1))) {
            Some(value) => {
                out.push_str(&escape_literal(value));
                rest = &after[1..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Column `i` of a row as text; a missing column or NULL is the server's fault.
fn text<'r>(row: &'r [Option<String>], i: usize, what: &str) -> Result<&'r str, ScaffoldError> {
    row.get(i)
        .and_then(Option::as_deref)
        .ok_or_else(|| ScaffoldError::Answer {
            what: what.to_owned(),
            reason: format!("column {} missing or NULL", i + 1),
        })
}

/// Postgres's text form of a boolean.
fn boolean(value: &str, what: &str) -> Result<bool, ScaffoldError> {
    match value {
        "t" => Ok(true),
        "f" => Ok(false),
        _ => Err(ScaffoldError::Answer {
            what: what.to_owned(),
            reason: "a boolean that is neither t nor f".into(),
        }),
    }
}

impl Catalog {
    /// Connects with `config` (its password already resolved), within `timeout`.
    pub async fn connect(
        config: &Config,
        tls: &TlsConfig,
        timeout: Duration,
        shown: &str,
    ) -> Result<Self, ScaffoldError> {
        let conn =
            match tokio::time::timeout(timeout, Connection::connect(config, tls, "cdc-orchestrator scaffold")).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(source)) => {
                    return Err(ScaffoldError::Connect {
                        url: shown.to_owned(),
                        source,
                    });
                }
                Err(_) => {
                    return Err(ScaffoldError::Timeout {
                        what: format!("connecting to {shown}"),
                        after: timeout,
                    });
                }
            };
        let mut catalog = Self { conn, timeout };
        let statement_timeout = format!("SET statement_timeout = {}", timeout.as_millis());
        catalog.run("setting statement_timeout", &statement_timeout).await?;
        Ok(catalog)
    }

    async fn run(&mut self, what: &str, sql: &str) -> Result<Rows, ScaffoldError> {
        match tokio::time::timeout(self.timeout, self.conn.query(sql)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(source)) => Err(ScaffoldError::Query {
                what: what.to_owned(),
                source,
            }),
            Err(_) => Err(ScaffoldError::Timeout {
                what: what.to_owned(),
                after: self.timeout,
            }),
        }
    }

    /// Every ordinary or partitioned table of `schema`, sorted.
    pub async fn tables(&mut self, schema: &str) -> Result<Vec<String>, ScaffoldError> {
        let what = "listing the schema's tables";
        let rows = self.run(what, &fill(TABLES, &[schema])).await?;
        if rows.len() > MAX_TABLES {
            return Err(ScaffoldError::TooMany {
                what: format!("tables in schema {schema}"),
                max: MAX_TABLES,
            });
        }
        rows.iter().map(|r| text(r, 0, what).map(str::to_owned)).collect()
    }

    /// `schema.table`'s columns and primary key; `None` when there is no such table.
    pub async fn table(&mut self, schema: &str, table: &str) -> Result<Option<CatalogTable>, ScaffoldError> {
        let what = format!("reading the columns of {schema}.{table}");
        let rows = self.run(&what, &fill(COLUMNS, &[schema, table])).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::with_capacity(rows.len());
        for row in &rows {
            columns.push(CatalogColumn {
                name: text(row, 0, &what)?.to_owned(),
                not_null: boolean(text(row, 1, &what)?, &what)?,
                pg: PgType {
                    formatted: text(row, 2, &what)?.to_owned(),
                    // NULL when the base type is not an array: not an enum.
                    is_enum: match row.get(3).and_then(Option::as_deref) {
                        Some(v) => boolean(v, &what)?,
                        None => false,
                    },
                    type_name: text(row, 4, &what)?.to_owned(),
                },
            });
        }
        let what = format!("reading the primary key of {schema}.{table}");
        let keys = self.run(&what, &fill(PRIMARY_KEY, &[schema, table])).await?;
        let primary_key = keys
            .iter()
            .map(|r| text(r, 0, &what).map(str::to_owned))
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(CatalogTable {
            name: table.to_owned(),
            columns,
            primary_key,
        }))
    }

    /// Ends the session (Terminate), within the timeout; a failure here changes nothing already read.
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.close()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn parameters_are_escaped_literals_filled_in_one_pass() {
        assert_eq!(fill("a = $1 AND b = $2", &["x'y", "$1"]), "a = 'x''y' AND b = '$1'");
        assert_eq!(fill("$1", &["back\\slash"]), " E'back\\\\slash'");
        assert_eq!(fill("$3 $", &["x"]), "$3 $");
    }
}
