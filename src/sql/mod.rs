//! The Flink SQL statements of a table's job, rendered from templates.
//!
//! A table's job is the session set-up (`flink-sql/setup.sql`: time zone, the Iceberg catalog
//! and database) followed by the table's own statements (`flink-sql/tables/<table>.sql`: the Kafka source, the
//! sink and the INSERT that starts the job). The templates are compiled into the binary, so the sidecar
//! needs no files at run time; `flink.sql_dir` names a folder whose `setup.sql` and `tables/*.sql` replace the
//! built-in files of the same name and add tables.
//!
//! [`Templates::load`] reads every template at start-up (and again at a reload, `controller::reload`, which uses
//! the same checks), and checks it by rendering each table's job
//! with the configuration (and redacted credentials): a template that does not parse, names an unknown
//! placeholder, leaves a quote open, submits no job or sets a key the launcher owns stops the start-up. Starts
//! then render from memory.
//!
//! Placeholders (`{{ topic }}`, `{{ bootstrap }}`, ...) are filled from [`Config`] with minijinja. Every value
//! is escaped for a single-quoted SQL string literal, and an unknown placeholder is an error, not an empty
//! string. The Kafka source's options (`source.rs`) and the sink's statement, options and name (`sink.rs`) are
//! the same for every table and written once.
//! Credentials never live in the files or the configuration: they are read from the environment when
//! rendering (see [`CREDENTIALS`]), and only the ones a template actually uses are required.
//!
//! Owns the templates, their placeholders and the credentials they may use. May import [`crate::config`] (what
//! fills the placeholders), [`crate::model`] and [`crate::logging`]; the Flink layer, the controller and the CLI
//! import it.

mod columns;
mod credentials;
mod sink;
mod source;
mod statements;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

pub use crate::config::{
    KAFKA_JOBS_SASL_OAUTH_CLIENT_SECRET, KAFKA_JOBS_SASL_PASSWORD, KAFKA_JOBS_TLS_KEY_PASSWORD,
    KAFKA_SASL_OAUTH_CLIENT_SECRET, KAFKA_SASL_PASSWORD,
};
pub use credentials::{CREDENTIALS, Credentials, KAFKA_SECRETS, sink_of};
pub use statements::{LAUNCHER_KEYS, reserved_key_set, split_statements, submits_job};

use crate::config::Config;
use crate::model::TableName;

/// File name of the session and catalog set-up template, inside `flink.sql_dir`.
pub const SETUP_FILE: &str = "setup.sql";

/// Folder of the per-table templates, inside `flink.sql_dir`.
pub const TABLES_DIR: &str = "tables";

/// The templates compiled into the binary: the set-up, then one per table of the example database.
const BUILTIN_SETUP: &str = include_str!("../../flink-sql/setup.sql");
const BUILTIN_TABLES: [(&str, &str); 12] = [
    ("class", include_str!("../../flink-sql/tables/class.sql")),
    ("course", include_str!("../../flink-sql/tables/course.sql")),
    ("faculty", include_str!("../../flink-sql/tables/faculty.sql")),
    ("lecturer", include_str!("../../flink-sql/tables/lecturer.sql")),
    ("payment", include_str!("../../flink-sql/tables/payment.sql")),
    ("program", include_str!("../../flink-sql/tables/program.sql")),
    ("registration", include_str!("../../flink-sql/tables/registration.sql")),
    ("room", include_str!("../../flink-sql/tables/room.sql")),
    (
        "student_detail",
        include_str!("../../flink-sql/tables/student_detail.sql"),
    ),
    (
        "student_enrollment",
        include_str!("../../flink-sql/tables/student_enrollment.sql"),
    ),
    ("student_fee", include_str!("../../flink-sql/tables/student_fee.sql")),
    ("students", include_str!("../../flink-sql/tables/students.sql")),
];

/// Why the templates cannot be used; found when they are loaded, at start-up. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template file in `flink.sql_dir` could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file in `flink.sql_dir/tables` is not named after a table.
    #[error("{}: file name is not a table name (letters, digits and _, not starting with a digit)", .path.display())]
    BadFileName {
        /// The offending file.
        path: PathBuf,
    },
    /// A template does not parse or render (unknown placeholder, bad syntax).
    #[error("{template}: {message}")]
    Syntax {
        /// The template.
        template: String,
        /// minijinja's description, with the line number.
        message: String,
    },
    /// The rendered text does not split into statements: a quote or comment is never closed.
    #[error("{template}: {what} opened on line {line} is never closed")]
    Unterminated {
        /// The template.
        template: String,
        /// What is open: a string literal, a quoted identifier or a block comment.
        what: &'static str,
        /// 1-based line of the opening character in the rendered text.
        line: usize,
    },
    /// A table template renders to no statement at all.
    #[error("{template}: renders to no statement")]
    Empty {
        /// The template.
        template: String,
    },
    /// A table's statements cannot run as its job.
    #[error("{template}")]
    Job {
        /// The template.
        template: String,
        /// What is wrong with the statements.
        #[source]
        source: JobSqlError,
    },
}

/// Why a table's statements cannot run as its job, whoever wrote them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobSqlError {
    /// No statement submits a job, so none would start.
    #[error("submits no job (no INSERT or EXECUTE STATEMENT SET)")]
    NoJob,
    /// A statement sets one of [`LAUNCHER_KEYS`].
    #[error("sets '{key}', which the launcher sets for every job")]
    ReservedKey {
        /// The key.
        key: String,
    },
}

/// Fails when `statements` cannot run as a job: none submits one, or one sets a key of [`LAUNCHER_KEYS`].
pub fn check_job(statements: &[String]) -> Result<(), JobSqlError> {
    if !statements.iter().any(|s| submits_job(s)) {
        return Err(JobSqlError::NoJob);
    }
    match reserved_key_set(statements) {
        Some(key) => Err(JobSqlError::ReservedKey { key }),
        None => Ok(()),
    }
}

/// Why a table's statements could not be rendered. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// No template exists for the table.
    #[error("unknown table `{table}`; known tables: {}", .known.join(", "))]
    UnknownTable {
        /// The table asked for.
        table: String,
        /// Every table that has a template, sorted.
        known: Vec<String>,
    },
    /// A template uses a credential whose environment variable is unset or empty.
    #[error("environment variable {variable} is not set; {template} needs it for {{{{ {placeholder} }}}}")]
    MissingCredential {
        /// The environment variable to set.
        variable: &'static str,
        /// The template placeholder it fills.
        placeholder: &'static str,
        /// The template that uses it.
        template: String,
    },
    /// A credential is set but unusable.
    #[error("environment variable {variable}: {reason}")]
    InvalidCredential {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The templates cannot be used.
    #[error(transparent)]
    Templates(#[from] TemplateError),
}

/// One template's text and the name errors show for it.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    text: String,
}

impl Source {
    fn builtin(path: &str, text: &str) -> Self {
        Self {
            name: format!("{path} (built-in)"),
            text: text.to_owned(),
        }
    }

    fn read(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            name: path.display().to_string(),
            text,
        })
    }
}

/// The set-up template and every table template (the built-in ones, overridden by `flink.sql_dir`), read and
/// checked once, with the configuration they are rendered with. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Templates {
    config: Config,
    setup: Source,
    tables: BTreeMap<String, Source>,
    /// The columns each table's Kafka source declares, found once when the templates are loaded.
    declared: DeclaredColumns,
}

/// The physical columns each table's Kafka source declares (the fields Flink reads from a record's row), by
/// table; a table whose source is not recognised is absent (its drift is not judged).
pub type DeclaredColumns = BTreeMap<String, BTreeSet<String>>;

impl Templates {
    /// Reads the templates of `config` (the built-in ones, overridden and extended by `flink.sql_dir`) and
    /// checks every table's job: each renders, splits into statements and submits a job.
    pub fn load(config: &Config) -> Result<Self, TemplateError> {
        let mut templates = Self::read(config)?;
        let redacted = Credentials::redacted();
        let mut declared = DeclaredColumns::new();
        for (table, source) in &templates.tables {
            let statements = templates.render(table, &redacted).map_err(|e| match e {
                SqlError::Templates(e) => e,
                // Every credential is present (redacted) and the table exists: only a template error is left.
                other => TemplateError::Syntax {
                    template: source.name.clone(),
                    message: other.to_string(),
                },
            })?;
            check_job(&statements).map_err(|source| TemplateError::Job {
                template: source_name(&templates.tables, table),
                source,
            })?;
            match columns::source_columns(&statements) {
                Some(columns) => {
                    declared.insert(table.clone(), columns);
                }
                None => tracing::info!(template = %source.name,
                    "no Kafka source with the sidecar's options found: this table's schema drift is not watched"),
            }
        }
        templates.declared = declared;
        Ok(templates)
    }

    /// The built-in templates alone, unchecked, for callers that render no job (the `jobs` listing).
    pub fn builtin(config: &Config) -> Self {
        Self {
            config: config.clone(),
            setup: Source::builtin("flink-sql/setup.sql", BUILTIN_SETUP),
            tables: BUILTIN_TABLES
                .iter()
                .map(|&(table, text)| {
                    let path = format!("flink-sql/{TABLES_DIR}/{table}.sql");
                    (table.to_owned(), Source::builtin(&path, text))
                })
                .collect(),
            declared: DeclaredColumns::new(),
        }
    }

    fn read(config: &Config) -> Result<Self, TemplateError> {
        let mut templates = Self::builtin(config);
        let Some(dir) = config.flink.sql_dir.as_deref() else {
            return Ok(templates);
        };
        let setup = dir.join(SETUP_FILE);
        if setup.is_file() {
            templates.setup = Source::read(&setup)?;
        }
        for (table, path) in table_files(dir)? {
            templates.tables.insert(table, Source::read(&path)?);
        }
        Ok(templates)
    }

    /// Fails with the first credential that a template (the set-up or any table's) uses and `credentials`
    /// lacks for the configured sink, so a missing variable is reported at start-up rather than at a table's
    /// first start.
    pub fn require_credentials(&self, credentials: &Credentials) -> Result<(), SqlError> {
        credentials.check()?;
        let env = environment();
        for source in std::iter::once(&self.setup).chain(self.tables.values()) {
            let template = env
                .template_from_named_str(&source.name, &source.text)
                .map_err(|e| syntax(source, &e))?;
            require(&template, source, credentials, &self.config)?;
        }
        Ok(())
    }

    /// The columns each table's Kafka source declares ([`DeclaredColumns`]); empty for unchecked templates
    /// ([`Templates::builtin`]). What the controller judges schema drift against: a reload hands the new set
    /// to the run loop.
    pub fn declared_columns(&self) -> &DeclaredColumns {
        &self.declared
    }

    /// Every table that has a template, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    /// The statements of `table`: the set-up's, then the table's; the last one is the INSERT that starts the job.
    pub fn render(&self, table: &str, credentials: &Credentials) -> Result<Vec<String>, SqlError> {
        let Some(table_source) = self.tables.get(table) else {
            return Err(SqlError::UnknownTable {
                table: table.to_owned(),
                known: self.tables(),
            });
        };
        credentials.check()?;
        let env = environment();
        let context = context(&self.config, table, credentials);
        let mut statements = render_one(&env, &self.setup, &context, credentials, &self.config)?;
        let own = render_one(&env, table_source, &context, credentials, &self.config)?;
        if own.is_empty() {
            return Err(TemplateError::Empty {
                template: table_source.name.clone(),
            }
            .into());
        }
        statements.extend(own);
        Ok(statements)
    }
}

/// What differs between two sets of templates, table by table (see [`Templates::changes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateChanges {
    /// Tables only the new set has, sorted.
    pub added: Vec<String>,
    /// Tables only the old set has, sorted.
    pub removed: Vec<String>,
    /// Tables both have whose text differs, sorted.
    pub changed: Vec<String>,
    /// Whether the set-up template (every table's first statements) differs.
    pub setup_changed: bool,
}

impl TemplateChanges {
    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && !self.setup_changed
    }
}

impl Templates {
    /// What `new` changes from these templates: tables added, removed, and changed (by their text; a file that
    /// replaces a built-in one with the same text is no change).
    pub fn changes(&self, new: &Templates) -> TemplateChanges {
        let added = new
            .tables
            .keys()
            .filter(|t| !self.tables.contains_key(*t))
            .cloned()
            .collect();
        let removed = self
            .tables
            .keys()
            .filter(|t| !new.tables.contains_key(*t))
            .cloned()
            .collect();
        let changed = self
            .tables
            .iter()
            .filter(|(table, old)| new.tables.get(*table).is_some_and(|n| n.text != old.text))
            .map(|(table, _)| table.clone())
            .collect();
        TemplateChanges {
            added,
            removed,
            changed,
            setup_changed: self.setup.text != new.setup.text,
        }
    }
}

fn source_name(tables: &BTreeMap<String, Source>, table: &str) -> String {
    tables.get(table).map(|s| s.name.clone()).unwrap_or_default()
}

/// The `tables/*.sql` files of `dir`, by table; none when the folder does not exist.
fn table_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, TemplateError> {
    let tables_dir = dir.join(TABLES_DIR);
    if !tables_dir.is_dir() {
        return Ok(Vec::new());
    }
    let read_error = |source| TemplateError::Read {
        path: tables_dir.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&tables_dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
            continue;
        }
        let Ok(table) = TableName::parse(path.file_stem().and_then(|s| s.to_str()).unwrap_or_default()) else {
            return Err(TemplateError::BadFileName { path });
        };
        files.push((table.into_string(), path));
    }
    Ok(files)
}

/// The ordered statements the launcher submits for `table`, with explicit credentials; loads the templates
/// first (see [`Templates::load`]), for callers that render once.
pub fn render_table_with(config: &Config, table: &str, credentials: &Credentials) -> Result<Vec<String>, SqlError> {
    Templates::load(config)?.render(table, credentials)
}

/// Fails naming the first credential variable the templates under `config` need and `credentials` lacks.
pub fn require_credentials(config: &Config, credentials: &Credentials) -> Result<(), SqlError> {
    Templates::load(config)?.require_credentials(credentials)
}

/// Every table that has a template under `config`, sorted: the built-in ones and the files of
/// `flink.sql_dir/tables`, by name only (their text is neither read nor checked).
pub fn known_tables(config: &Config) -> Result<Vec<String>, TemplateError> {
    let mut tables: BTreeSet<String> = BUILTIN_TABLES.iter().map(|&(t, _)| t.to_owned()).collect();
    if let Some(dir) = config.flink.sql_dir.as_deref() {
        tables.extend(table_files(dir)?.into_iter().map(|(table, _)| table));
    }
    Ok(tables.into_iter().collect())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Every placeholder sits inside a single-quoted SQL literal (or is a validated identifier): doubling single
    // quotes keeps any value, however odd, inside its literal.
    // The source's and sink's options are SQL text whose values are escaped already (see `with_options`): marked
    // safe, passed as is.
    env.set_formatter(|out, _state, value| {
        let text = value.to_string();
        let text = if value.is_safe() {
            text
        } else {
            text.replace('\'', "''")
        };
        out.write_str(&text)
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write rendered SQL"))
    });
    env
}

fn context(config: &Config, table: &str, credentials: &Credentials) -> BTreeMap<&'static str, Value> {
    let k = &config.kafka;
    let i = &config.iceberg;
    let mut context: BTreeMap<&'static str, Value> = BTreeMap::from([
        ("table", Value::from(table)),
        ("topic", Value::from(k.topic_for(table))),
        ("group_id", Value::from(k.group_for(table))),
        // The brokers as the jobs reach them, for templates that write the source's options out themselves.
        ("bootstrap", Value::from(k.jobs_client().bootstrap.join(","))),
        ("database", Value::from(i.database.as_str())),
        ("catalog_uri", Value::from(i.catalog_uri.as_str())),
        ("warehouse", Value::from(i.warehouse.as_str())),
        ("scope", Value::from(i.scope.as_str())),
        ("s3_endpoint", Value::from(i.s3_endpoint.as_str())),
        ("s3_region", Value::from(i.s3_region.as_str())),
        ("s3_path_style_access", Value::from(i.s3_path_style_access.to_string())),
        ("sink", Value::from(config.sink.kind.as_str())),
        ("jdbc_url", Value::from(config.sink.jdbc.url.as_str())),
        ("jdbc_table", Value::from(config.sink.jdbc.table_for(table))),
        ("jdbc_username", Value::from(config.sink.jdbc.username.as_str())),
    ]);
    for &(placeholder, variable) in &CREDENTIALS {
        if let Some(value) = credentials.get(variable) {
            context.insert(placeholder, Value::from(value));
        }
    }
    context.extend(source::variables(config, table, |variable| credentials.get(variable)));
    context.extend(sink::variables(config, table, |p| credentials.placeholder(p)));
    context
}

/// `'key' = 'value'` lines of a WITH clause, indented, each value escaped for its literal.
fn with_options(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("    '{key}' = '{}'", value.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(",\n")
}

fn syntax(source: &Source, error: &minijinja::Error) -> TemplateError {
    TemplateError::Syntax {
        template: source.name.clone(),
        message: describe(error),
    }
}

fn render_one(
    env: &Environment<'static>,
    source: &Source,
    context: &BTreeMap<&'static str, Value>,
    credentials: &Credentials,
    config: &Config,
) -> Result<Vec<String>, SqlError> {
    let template = env
        .template_from_named_str(&source.name, &source.text)
        .map_err(|e| syntax(source, &e))?;
    require(&template, source, credentials, config)?;
    let text = template.render(context).map_err(|e| syntax(source, &e))?;
    let statements = split_statements(&text).map_err(|(what, line)| TemplateError::Unterminated {
        template: source.name.clone(),
        what,
        line,
    })?;
    Ok(statements)
}

/// Names the missing environment variable rather than letting minijinja report an undefined placeholder. The
/// templates may hold both sinks' statements; only the configured sink's credentials are needed, and the jobs'
/// Kafka secrets only where the source's options are used with settings that carry them.
fn require(
    template: &minijinja::Template<'_, '_>,
    source: &Source,
    credentials: &Credentials,
    config: &Config,
) -> Result<(), SqlError> {
    let sink = config.sink.kind;
    let mut used: BTreeSet<String> = template.undeclared_variables(false).into_iter().collect();
    if used.contains(source::SOURCE_OPTIONS)
        && let Some(variable) = source::carried_secrets(&config.kafka.jobs_client())
            .into_iter()
            .find(|variable| credentials.get(variable).is_none())
    {
        return Err(SqlError::MissingCredential {
            variable,
            placeholder: source::SOURCE_OPTIONS,
            template: source.name.clone(),
        });
    }
    if used.contains(sink::SINK_OPTIONS) {
        used.extend(sink::carried_credentials(sink).iter().map(|&p| p.to_owned()));
    }
    for &(placeholder, variable) in &CREDENTIALS {
        if used.contains(placeholder) && sink_of(variable) == sink && credentials.get(variable).is_none() {
            if credentials.is_not_utf8(variable) {
                return Err(SqlError::InvalidCredential {
                    variable,
                    reason: "is not valid UTF-8",
                });
            }
            return Err(SqlError::MissingCredential {
                variable,
                placeholder,
                template: source.name.clone(),
            });
        }
    }
    Ok(())
}

/// minijinja's error on one line: its description and, when known, the line.
fn describe(error: &minijinja::Error) -> String {
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message = format!("{message}: {detail}");
    }
    if let Some(line) = error.line() {
        message = format!("line {line}: {message}");
    }
    message.replace('\n', " ")
}
