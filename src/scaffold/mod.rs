//! `scaffold`: a table's Flink SQL generated from Postgres's catalog, so that a table needs no hand-written SQL and
//! a CI job can tell when the templates and the database have drifted apart.
//!
//! - [`catalog`] reads the captured tables' columns, types, nullability and primary keys (over [`pg`], a small
//!   client on rust-postgres's protocol crate, with timeouts);
//! - [`types`] maps each Postgres type to what Debezium's JSON carries under the connector's settings, the sink's
//!   Flink type and the INSERT's conversion (pure, unit-tested per setting);
//! - [`render`] writes the template in the form of the shipped flink-sql/tables/*.sql, and the JDBC sink's table;
//! - [`declared`] reads what a template declares (columns, types, keys, conversions) so that `--check` compares
//!   declarations, not text.
//!
//! Layer: imports `config` (the connector file's reading shares nothing with it, but URLs are shown through its
//! rule), `sql` (statement splitting), `model` (the table-name rule) and `logging`; only `cli` imports it.

pub mod catalog;
pub mod declared;
pub mod evolve;
pub mod pg;
pub mod render;
pub mod tls;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::TableName;

use self::render::{Column, Table};
use self::types::{DebeziumSettings, map_type};

/// Longest column name accepted from the catalog (Postgres's identifier limit is 63 bytes).
const MAX_COLUMN_NAME: usize = 63;

/// Largest connector config file read.
const MAX_CONNECTOR_FILE: u64 = 1024 * 1024;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// `--postgres` is not a connection URL. The text is not repeated: it may hold the password.
    #[error("--postgres is not a Postgres URL (postgres://user[:password]@host[:port]/database): {reason}")]
    Url {
        /// What the URL parser said (it never repeats the value).
        reason: String,
    },
    /// The connector config cannot be read or is not a JSON object of strings.
    #[error("connector config {}: {reason}", path.display())]
    Connector {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No connection.
    #[error("cannot connect to {url}")]
    Connect {
        /// The URL without its password.
        url: String,
        /// The client's error.
        #[source]
        source: pg::PgError,
    },
    /// A catalog query failed.
    #[error("{what} failed")]
    Query {
        /// Which query.
        what: String,
        /// The client's error.
        #[source]
        source: pg::PgError,
    },
    /// The catalog's answer is not what its query asks for (a missing column, a bad boolean).
    #[error("{what}: unexpected answer: {reason}")]
    Answer {
        /// Which query.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Postgres did not answer in time.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// More than this command handles at once.
    #[error("more than {max} {what}")]
    TooMany {
        /// What was counted.
        what: String,
        /// The bound.
        max: usize,
    },
    /// The tables cannot be generated: one line per table or column, naming it and why.
    #[error("cannot generate the tables:\n  {}", .0.join("\n  "))]
    Refused(Vec<String>),
    /// The TLS set-up (`--ca-file`) is unusable.
    #[error("TLS: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// A file cannot be written or read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ScaffoldError {
    /// 2 for what the operator must change (the URL, the connector settings, the tables, the schema); 1 for a
    /// failure at run time (no connection, a timeout, a file).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Url { .. } | Self::Connector { .. } | Self::Tls { .. } | Self::Refused(_) | Self::TooMany { .. } => 2,
            Self::Connect { .. }
            | Self::Query { .. }
            | Self::Answer { .. }
            | Self::Timeout { .. }
            | Self::File { .. } => 1,
        }
    }
}

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The connection URL (`postgres://user[:password]@host:port/db`).
    pub url: String,
    /// `PGPASSWORD`, used when the URL has no password (a password in the URL wins, as with libpq).
    pub env_password: Option<String>,
    /// `--tables`; else the connector's `table.include.list`; else every table of the schema.
    pub tables: Option<Vec<String>>,
    /// `--schema`; else the connector's `schema.include.list` when it names one schema; else `public`.
    pub schema: Option<String>,
    /// The Debezium connector config (JSON).
    pub connector: PathBuf,
    /// Where the Flink templates go (`flink-sql/tables`).
    pub out: PathBuf,
    /// Where the JDBC sink's CREATE TABLEs go.
    pub jdbc_out: PathBuf,
    /// Compare instead of writing.
    pub check: bool,
    /// Connect and query timeout.
    pub timeout: Duration,
    /// CAs to verify the server's certificate against (PEM); else the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The Iceberg database (`[iceberg] database`) the `ALTER TABLE` statements name.
    pub iceberg_database: String,
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// Files written, and the Iceberg sink's evolution from the files they replaced ([`evolve::lines`]).
    Written {
        /// The files.
        files: Vec<PathBuf>,
        /// `ALTER TABLE` statements, and a comment line for each change that has none.
        iceberg: Vec<String>,
    },
    /// `--check`: the differences found, one line each (none: the files match the catalog).
    Checked(Vec<String>),
}

/// The connection URL as it may be shown: user, host, port and database, never the password (wherever the URL
/// carried it: userinfo or a `password=` parameter).
pub fn shown_url(config: &pg::Config) -> String {
    let host = if config.host.contains(':') {
        format!("[{}]", config.host)
    } else {
        config.host.clone()
    };
    let shown = format!("postgres://{}@{host}:{}/{}", config.user, config.port, config.dbname);
    crate::config::redact_url(&shown).into_owned()
}

/// Parses the URL and resolves the password: the URL's, else `env_password`.
pub fn connection(url: &str, env_password: Option<&str>) -> Result<pg::Config, ScaffoldError> {
    // The parser's messages name the part or key, never its value; the URL's text itself is not repeated.
    let mut config = pg::Config::parse(url).map_err(|reason| ScaffoldError::Url { reason })?;
    if config.password.is_none() {
        config.password = env_password.map(str::to_owned);
    }
    Ok(config)
}

/// Reads the connector config: a JSON object; its string values by key.
pub fn read_connector(path: &Path) -> Result<BTreeMap<String, String>, ScaffoldError> {
    let bad = |reason: String| ScaffoldError::Connector {
        path: path.to_owned(),
        reason,
    };
    let size = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?.len();
    if size > MAX_CONNECTOR_FILE {
        return Err(bad(format!("larger than {MAX_CONNECTOR_FILE} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    // Either the flat form or the REST API's {"name", "config": {...}}.
    let object = value
        .get("config")
        .and_then(|c| c.as_object())
        .or_else(|| value.as_object())
        .ok_or_else(|| bad("not a JSON object".into()))?;
    Ok(object
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect())
}

/// The tables and schema to read: `--tables`, else the connector's include list, else `None` (every table).
fn captured(
    options: &Options,
    connector: &BTreeMap<String, String>,
) -> Result<(String, Option<Vec<String>>), ScaffoldError> {
    let plain = |name: &str| TableName::is_valid(name);
    let schema = match (&options.schema, connector.get("schema.include.list")) {
        (Some(schema), _) => schema.clone(),
        (None, Some(list)) if plain(list.trim()) => list.trim().to_owned(),
        _ => "public".to_owned(),
    };
    let refuse = |line: String| ScaffoldError::Refused(vec![line]);
    if let Some(tables) = &options.tables {
        for t in tables {
            if !plain(t) {
                return Err(refuse(format!(
                    "--tables: {t:?} is not a table name ({})",
                    crate::model::InvalidTableName
                )));
            }
        }
        return Ok((schema, Some(tables.clone())));
    }
    let Some(list) = connector.get("table.include.list") else {
        return Ok((schema, None));
    };
    let mut tables = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // Debezium's entries are regular expressions on `schema.table`; literal names only here.
        let name = match entry.split_once('.') {
            Some((s, t)) if s == schema => t,
            Some(_) => continue,
            None => entry,
        };
        if !plain(name) {
            return Err(refuse(format!(
                "table.include.list: {entry:?} is a pattern, not a table name; name the tables with --tables"
            )));
        }
        tables.push(name.to_owned());
    }
    Ok((schema, Some(tables)))
}

/// Whether a column name can be written into the generated SQL: no quote of either dialect, no control character.
fn column_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_COLUMN_NAME
        && !name.contains(['`', '"'])
        && !name.chars().any(char::is_control)
}

/// Maps a catalog table, or the lines that say why it cannot be.
fn map_table(schema: &str, table: catalog::CatalogTable, settings: &DebeziumSettings) -> Result<Table, Vec<String>> {
    let name = &table.name;
    let mut problems = Vec::new();
    if table.primary_key.is_empty() {
        // Without a key the sink cannot upsert or delete, and the Kafka source's changelog has no identity.
        problems.push(format!(
            "table `{name}`: has no primary key; the sink upserts and deletes by key, so add one \
             (ALTER TABLE {schema}.{name} ADD PRIMARY KEY (...)) or write its SQL by hand"
        ));
    }
    let mut columns = Vec::with_capacity(table.columns.len());
    for c in table.columns {
        if !column_name_ok(&c.name) {
            problems.push(format!(
                "table `{name}`, column {:?}: a name this command does not quote (a quote, a control character, or \
                 longer than {MAX_COLUMN_NAME} bytes)",
                c.name
            ));
            continue;
        }
        match map_type(&c.pg, settings) {
            Ok(mapped) => columns.push(Column {
                name: c.name,
                mapped,
                not_null: c.not_null,
            }),
            // The type's name comes from the catalog: escaped (a quoted type name may hold anything).
            Err(why) => problems.push(format!(
                "table `{name}`, column `{}` ({}): {}",
                c.name,
                c.pg.formatted.escape_debug(),
                why.0
            )),
        }
    }
    if problems.is_empty() {
        Ok(Table {
            schema: schema.to_owned(),
            name: table.name,
            columns,
            primary_key: table.primary_key,
        })
    } else {
        Err(problems)
    }
}

/// The captured tables, mapped; or every reason one cannot be.
async fn read_tables(
    catalog: &mut catalog::Catalog,
    schema: &str,
    wanted: Option<Vec<String>>,
    shown: &str,
    settings: &DebeziumSettings,
) -> Result<Vec<Table>, ScaffoldError> {
    let names = match wanted {
        Some(names) => names,
        None => catalog.tables(schema).await?,
    };
    if names.len() > catalog::MAX_TABLES {
        return Err(ScaffoldError::TooMany {
            what: "tables".into(),
            max: catalog::MAX_TABLES,
        });
    }
    let mut tables = Vec::new();
    let mut problems = Vec::new();
    for name in &names {
        match catalog.table(schema, name).await? {
            None => problems.push(format!("table `{name}`: no such table in schema {schema} of {shown}")),
            Some(t) if !TableName::is_valid(&t.name) => {
                problems.push(format!("table {:?}: not a name the sidecar accepts", t.name));
            }
            Some(t) => match map_table(schema, t, settings) {
                Ok(table) => tables.push(table),
                Err(lines) => problems.extend(lines),
            },
        }
    }
    if !problems.is_empty() {
        return Err(ScaffoldError::Refused(problems));
    }
    Ok(tables)
}

/// Generates (or with `check`, compares) every captured table's files.
pub async fn run(options: &Options) -> Result<Outcome, ScaffoldError> {
    let config = connection(&options.url, options.env_password.as_deref())?;
    let connector = read_connector(&options.connector)?;
    let settings = DebeziumSettings::from_config(&connector).map_err(|(key, value)| ScaffoldError::Connector {
        path: options.connector.clone(),
        reason: format!("{key} = {value:?} is not a value this command knows"),
    })?;
    let (schema, wanted) = captured(options, &connector)?;
    let shown = shown_url(&config);
    let tls = tls::TlsConfig::new(options.ca_file.as_deref()).map_err(|reason| ScaffoldError::Tls { reason })?;
    let mut catalog = catalog::Catalog::connect(&config, &tls, options.timeout, &shown).await?;
    let read = read_tables(&mut catalog, &schema, wanted, &shown, &settings).await;
    // Terminate whatever the reading's outcome: the server then logs no broken connection.
    catalog.close().await;
    let tables = read?;
    let connector_file = options.connector.display().to_string();
    if options.check {
        return Ok(Outcome::Checked(check(
            &tables,
            &settings,
            &connector_file,
            &options.out,
        )));
    }
    let mut written = Vec::new();
    let mut iceberg = Vec::new();
    for dir in [&options.out, &options.jdbc_out] {
        std::fs::create_dir_all(dir).map_err(|source| ScaffoldError::File {
            path: dir.clone(),
            source,
        })?;
    }
    for table in &tables {
        let template_path = options.out.join(format!("{}.sql", table.name));
        let template = render::template(table, &settings, &connector_file);
        iceberg.extend(evolution(table, &template_path, &template, &options.iceberg_database));
        for (path, text) in [
            (template_path, template),
            (
                options.jdbc_out.join(format!("{}.sql", table.name)),
                render::jdbc_table(table),
            ),
        ] {
            std::fs::write(&path, text).map_err(|source| ScaffoldError::File {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
    }
    Ok(Outcome::Written {
        files: written,
        iceberg,
    })
}

/// What the Iceberg sink's table needs to follow the template at `path` being replaced by `template`: nothing
/// for a new file; a comment line when the old file cannot be read (the table is then the operator's to check).
fn evolution(table: &Table, path: &Path, template: &str, database: &str) -> Vec<String> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![format!(
                "-- table `{}`: cannot compare with {}: {e}",
                table.name,
                path.display()
            )];
        }
    };
    let (old, new) = match (declared::parse(&old), declared::parse(template)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(why), _) | (_, Err(why)) => {
            return vec![format!(
                "-- table `{}`: cannot compare with {}: {}",
                table.name,
                path.display(),
                why.0
            )];
        }
    };
    let steps = evolve::iceberg_steps(&evolve::sink_table(database, &table.name), &old, &new);
    evolve::lines(&table.name, &steps)
}

fn check(tables: &[Table], settings: &DebeziumSettings, connector_file: &str, out: &Path) -> Vec<String> {
    let mut differences = Vec::new();
    for table in tables {
        let path = out.join(format!("{}.sql", table.name));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                differences.push(format!("table `{}`: {}: {e}", table.name, path.display()));
                continue;
            }
        };
        let file = match declared::parse(&text) {
            Ok(file) => file,
            Err(why) => {
                differences.push(format!("table `{}`: {}: {}", table.name, path.display(), why.0));
                continue;
            }
        };
        // Generated text always parses; a failure would be this command's bug, reported as a difference.
        match declared::parse(&render::template(table, settings, connector_file)) {
            Ok(generated) => differences.extend(declared::differences(&table.name, &file, &generated)),
            Err(why) => differences.push(format!(
                "table `{}`: the generated SQL does not parse: {}",
                table.name, why.0
            )),
        }
    }
    differences
}
