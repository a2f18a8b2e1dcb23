//! Reads the captured tables' columns, types, nullability and primary keys from Postgres's catalog, with a
//! connect timeout and a timeout on every query (the server's `statement_timeout` too). The catalog's answers are
//! outside input: names are bounded and checked before they reach a generated file.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::SslMode;

use super::ScaffoldError;
use super::tls::MakeRustls;
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
    client: Client,
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

impl Catalog {
    /// Connects with `config` (its password already resolved), within `timeout`.
    pub async fn connect(
        mut config: tokio_postgres::Config,
        tls: MakeRustls,
        timeout: Duration,
        shown: &str,
    ) -> Result<Self, ScaffoldError> {
        config.connect_timeout(timeout);
        config.application_name("cdc-orchestrator scaffold");
        // The connection's I/O runs on its own task; it ends when the client is dropped.
        let connected = if config.get_ssl_mode() == SslMode::Disable {
            tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls))
                .await
                .map(|r| r.map(|(client, connection)| (client, tokio::spawn(connection))))
        } else {
            tokio::time::timeout(timeout, config.connect(tls))
                .await
                .map(|r| r.map(|(client, connection)| (client, tokio::spawn(connection))))
        };
        let client = match connected {
            Ok(Ok((client, _connection))) => client,
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
        let catalog = Self { client, timeout };
        let statement_timeout = format!("SET statement_timeout = {}", timeout.as_millis());
        catalog
            .run(
                "setting statement_timeout",
                catalog.client.batch_execute(&statement_timeout),
            )
            .await?;
        Ok(catalog)
    }

    async fn run<T>(
        &self,
        what: &str,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ScaffoldError> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(value)) => Ok(value),
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
    pub async fn tables(&self, schema: &str) -> Result<Vec<String>, ScaffoldError> {
        let rows = self
            .run("listing the schema's tables", self.client.query(TABLES, &[&schema]))
            .await?;
        if rows.len() > MAX_TABLES {
            return Err(ScaffoldError::TooMany {
                what: format!("tables in schema {schema}"),
                max: MAX_TABLES,
            });
        }
        rows.iter()
            .map(|r| {
                r.try_get::<_, String>(0).map_err(|source| ScaffoldError::Query {
                    what: "listing tables".into(),
                    source,
                })
            })
            .collect()
    }

    /// `schema.table`'s columns and primary key; `None` when there is no such table.
    pub async fn table(&self, schema: &str, table: &str) -> Result<Option<CatalogTable>, ScaffoldError> {
        let what = format!("reading the columns of {schema}.{table}");
        let rows = self.run(&what, self.client.query(COLUMNS, &[&schema, &table])).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let bad = |source| ScaffoldError::Query {
            what: what.clone(),
            source,
        };
        let mut columns = Vec::with_capacity(rows.len());
        for row in &rows {
            columns.push(CatalogColumn {
                name: row.try_get(0).map_err(bad)?,
                not_null: row.try_get(1).map_err(bad)?,
                pg: PgType {
                    formatted: row.try_get(2).map_err(bad)?,
                    is_enum: row.try_get::<_, Option<bool>>(3).map_err(bad)?.unwrap_or(false),
                    type_name: row.try_get(4).map_err(bad)?,
                },
            });
        }
        let what = format!("reading the primary key of {schema}.{table}");
        let keys = self
            .run(&what, self.client.query(PRIMARY_KEY, &[&schema, &table]))
            .await?;
        let primary_key = keys
            .iter()
            .map(|r| {
                r.try_get(0).map_err(|source| ScaffoldError::Query {
                    what: what.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(CatalogTable {
            name: table.to_owned(),
            columns,
            primary_key,
        }))
    }
}
