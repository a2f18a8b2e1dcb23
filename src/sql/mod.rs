//! The Flink SQL statements of a table's job, rendered from templates.
//!
//! A table's job is the session set-up (`flink-sql/setup.sql`: time zone, the Iceberg catalog
//! and database) followed by the table's own statements (`flink-sql/tables/<table>.sql`: the Kafka source, the
//! Iceberg sink and the INSERT that starts the job). The templates are compiled into the binary, so the sidecar
//! needs no files at run time; `flink.sql_dir` names a folder whose `setup.sql` and `tables/*.sql` replace the
//! built-in files of the same name and add tables.
//!
//! Placeholders (`{{ topic }}`, `{{ bootstrap }}`, ...) are filled from [`Config`] with minijinja. Every value
//! is escaped for a single-quoted SQL string literal, and an unknown placeholder is an error, not an empty
//! string. Credentials never live in the files or the configuration: they are read from the environment when
//! rendering (see [`CREDENTIALS`]), and only the ones a template actually uses are required.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::config::{Config, Secret, SinkKind, is_table_name};

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

/// Template variables that carry credentials, and the environment variable each one is read from.
pub const CREDENTIALS: [(&str, &str); 5] = [
    ("polaris_client_id", "POLARIS_CLIENT_ID"),
    ("polaris_client_secret", "POLARIS_CLIENT_SECRET"),
    ("s3_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("s3_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("jdbc_password", "SINK_JDBC_PASSWORD"),
];

/// The sink whose statements use a credential: the JDBC password is the JDBC sink's, the catalog and S3
/// credentials are Iceberg's. Only the configured sink's credentials are required.
pub fn sink_of(variable: &str) -> SinkKind {
    if variable == "SINK_JDBC_PASSWORD" {
        SinkKind::Jdbc
    } else {
        SinkKind::Iceberg
    }
}

/// What a credential's value is replaced with wherever statements are shown rather than submitted.
pub const REDACTED: &str = "<redacted>";

/// Why a table's statements could not be rendered. Every variant renders as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// A template file in `flink.sql_dir` could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
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
    Template {
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
}

/// Credential values for the templates, looked up by environment variable name.
#[derive(Clone, Default)]
pub struct Credentials {
    values: BTreeMap<&'static str, Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which credentials are present is useful; their values never appear.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Credentials {
    /// Reads the variables of [`CREDENTIALS`] from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables of [`CREDENTIALS`] through `lookup` (tests, or another source of secrets).
    /// An empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let values = CREDENTIALS
            .iter()
            .filter_map(|&(_, variable)| {
                lookup(variable)
                    .filter(|v| !v.is_empty())
                    .map(|v| (variable, Secret::new(v)))
            })
            .collect();
        Self { values }
    }

    /// Every credential as [`REDACTED`]: statements rendered with these can be shown or logged, and a launcher
    /// that submits nothing (dry-run) needs no real credentials at all.
    pub fn redacted() -> Self {
        Self::from_lookup(|_| Some(REDACTED.to_owned()))
    }

    /// `text` with every credential value (as set, and as escaped into a SQL literal) replaced by [`REDACTED`]:
    /// for text that may echo a statement back, such as Flink's error messages.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in self.values.values().map(Secret::expose) {
            if secret == REDACTED {
                continue;
            }
            for form in [secret.replace('\'', "''"), secret.to_owned()] {
                if text.contains(&form) {
                    text = text.replace(&form, REDACTED);
                }
            }
        }
        text
    }

    fn get(&self, variable: &str) -> Option<&str> {
        self.values.get(variable).map(Secret::expose)
    }

    fn check(&self) -> Result<(), SqlError> {
        // Iceberg splits `credential` at its first ':' into client id and secret.
        if self.get("POLARIS_CLIENT_ID").is_some_and(|id| id.contains(':')) {
            return Err(SqlError::InvalidCredential {
                variable: "POLARIS_CLIENT_ID",
                reason: "must not contain ':'",
            });
        }
        Ok(())
    }
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

    fn read(path: &Path) -> Result<Self, SqlError> {
        let text = std::fs::read_to_string(path).map_err(|source| SqlError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            name: path.display().to_string(),
            text,
        })
    }
}

/// The set-up template and every table template: the built-in ones, overridden by `flink.sql_dir`.
#[derive(Debug, Clone)]
pub struct Templates {
    setup: Source,
    tables: BTreeMap<String, Source>,
}

impl Templates {
    /// The built-in templates, overridden and extended by the files in `sql_dir` when given.
    pub fn load(sql_dir: Option<&Path>) -> Result<Self, SqlError> {
        let mut templates = Self {
            setup: Source::builtin("flink-sql/setup.sql", BUILTIN_SETUP),
            tables: BUILTIN_TABLES
                .iter()
                .map(|&(table, text)| {
                    let path = format!("flink-sql/{TABLES_DIR}/{table}.sql");
                    (table.to_owned(), Source::builtin(&path, text))
                })
                .collect(),
        };
        let Some(dir) = sql_dir else {
            return Ok(templates);
        };
        let setup = dir.join(SETUP_FILE);
        if setup.is_file() {
            templates.setup = Source::read(&setup)?;
        }
        let tables_dir = dir.join(TABLES_DIR);
        if !tables_dir.is_dir() {
            return Ok(templates);
        }
        let read_dir = |path: &Path| {
            std::fs::read_dir(path).map_err(|source| SqlError::Read {
                path: path.to_owned(),
                source,
            })
        };
        for entry in read_dir(&tables_dir)? {
            let path = entry
                .map_err(|source| SqlError::Read {
                    path: tables_dir.clone(),
                    source,
                })?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
                continue;
            }
            let table = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if !is_table_name(table) {
                return Err(SqlError::BadFileName { path });
            }
            templates.tables.insert(table.to_owned(), Source::read(&path)?);
        }
        Ok(templates)
    }

    /// Fails with the first credential that a template (the set-up or any table's) uses and `credentials`
    /// lacks for `sink`, so a missing variable is reported at start-up rather than at a table's first start.
    pub fn require_credentials(&self, credentials: &Credentials, sink: SinkKind) -> Result<(), SqlError> {
        credentials.check()?;
        let env = environment();
        for source in std::iter::once(&self.setup).chain(self.tables.values()) {
            // A template that does not parse is reported when its table starts, with the rest of its errors.
            if let Ok(template) = env.template_from_named_str(&source.name, &source.text) {
                require(&template, source, credentials, sink)?;
            }
        }
        Ok(())
    }

    /// Every table that has a template, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    /// The statements of `table`: the set-up's, then the table's; the last one is the INSERT that starts the job.
    pub fn render(&self, config: &Config, table: &str, credentials: &Credentials) -> Result<Vec<String>, SqlError> {
        let Some(table_source) = self.tables.get(table) else {
            return Err(SqlError::UnknownTable {
                table: table.to_owned(),
                known: self.tables(),
            });
        };
        credentials.check()?;
        let env = environment();
        let context = context(config, table, credentials);
        let sink = config.sink.kind;
        let mut statements = render_one(&env, &self.setup, &context, credentials, sink)?;
        let own = render_one(&env, table_source, &context, credentials, sink)?;
        if own.is_empty() {
            return Err(SqlError::Empty {
                template: table_source.name.clone(),
            });
        }
        statements.extend(own);
        Ok(statements)
    }
}

/// The ordered statements the launcher submits for `table`, with credentials from the environment.
pub fn render_table(config: &Config, table: &str) -> Result<Vec<String>, SqlError> {
    render_table_with(config, table, &Credentials::from_env())
}

/// [`render_table`] with explicit credentials.
pub fn render_table_with(config: &Config, table: &str, credentials: &Credentials) -> Result<Vec<String>, SqlError> {
    Templates::load(config.flink.sql_dir.as_deref())?.render(config, table, credentials)
}

/// Fails naming the first credential variable the templates under `config` need and `credentials` lacks.
pub fn require_credentials(config: &Config, credentials: &Credentials) -> Result<(), SqlError> {
    Templates::load(config.flink.sql_dir.as_deref())?.require_credentials(credentials, config.sink.kind)
}

/// Every table that has a template under `config`, sorted.
pub fn known_tables(config: &Config) -> Result<Vec<String>, SqlError> {
    Ok(Templates::load(config.flink.sql_dir.as_deref())?.tables())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Every placeholder sits inside a single-quoted SQL literal (or is a validated identifier): doubling single
    // quotes keeps any value, however odd, inside its literal.
    env.set_formatter(|out, _state, value| {
        let text = value.to_string();
        out.write_str(&text.replace('\'', "''"))
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
        ("bootstrap", Value::from(k.bootstrap.join(","))),
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
    context
}

fn render_one(
    env: &Environment<'static>,
    source: &Source,
    context: &BTreeMap<&'static str, Value>,
    credentials: &Credentials,
    sink: SinkKind,
) -> Result<Vec<String>, SqlError> {
    let template_error = |e: minijinja::Error| SqlError::Template {
        template: source.name.clone(),
        message: describe(&e),
    };
    let template = env
        .template_from_named_str(&source.name, &source.text)
        .map_err(template_error)?;
    require(&template, source, credentials, sink)?;
    let text = template.render(context).map_err(template_error)?;
    split_statements(&text).map_err(|(what, line)| SqlError::Unterminated {
        template: source.name.clone(),
        what,
        line,
    })
}

/// Names the missing environment variable rather than letting minijinja report an undefined placeholder. The
/// templates hold both sinks' statements; only the configured sink's credentials are needed.
fn require(
    template: &minijinja::Template<'_, '_>,
    source: &Source,
    credentials: &Credentials,
    sink: SinkKind,
) -> Result<(), SqlError> {
    let used: BTreeSet<String> = template.undeclared_variables(false).into_iter().collect();
    for &(placeholder, variable) in &CREDENTIALS {
        if used.contains(placeholder) && sink_of(variable) == sink && credentials.get(variable).is_none() {
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

    fn credentials() -> Credentials {
        Credentials::from_lookup(|name| Some(format!("{}-value", name.to_lowercase())))
    }

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
    fn values_are_escaped_into_their_literal() {
        let mut config = Config::default();
        config.iceberg.warehouse = "it's; DROP TABLE x; --".to_owned();
        let statements = render_table_with(&config, "faculty", &credentials()).unwrap();
        let create = statements.iter().find(|s| s.starts_with("CREATE CATALOG")).unwrap();
        assert!(create.contains("'warehouse' = 'it''s; DROP TABLE x; --'"), "{create}");
        // The hostile value did not add statements.
        let plain = render_table_with(&Config::default(), "faculty", &credentials()).unwrap();
        assert_eq!(statements.len(), plain.len());
    }

    #[test]
    fn config_values_reach_the_statements() {
        let mut config = Config::default();
        config.kafka.bootstrap = vec!["k1:9092".into(), "k2:9092".into()];
        config.kafka.topic_template = "srv.public.{table}".into();
        config.kafka.group_template = "grp-{table}".into();
        config.iceberg.database = "campus".into();
        let statements = render_table_with(&config, "room", &credentials()).unwrap();
        let all = statements.join("\n");
        assert!(all.contains("'topic' = 'srv.public.room'"), "{all}");
        assert!(
            all.contains("'properties.bootstrap.servers' = 'k1:9092,k2:9092'"),
            "{all}"
        );
        assert!(all.contains("'properties.group.id' = 'grp-room'"), "{all}");
        assert!(all.contains("`iceberg`.`campus`.`room`"), "{all}");
        // Checkpointing, the job's name and id are the launcher's to set; a template that set them is refused.
        assert_eq!(crate::flink::reserved_key_set(&statements), None, "{all}");
        assert!(all.contains("'credential' = 'polaris_client_id-value:polaris_client_secret-value'"));
        assert!(statements.last().unwrap().starts_with("INSERT INTO"));
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let partial = Credentials::from_lookup(|name| (name != "POLARIS_CLIENT_SECRET").then(|| "x".to_owned()));
        let error = render_table_with(&Config::default(), "faculty", &partial).unwrap_err();
        let message = error.to_string();
        assert!(matches!(
            error,
            SqlError::MissingCredential {
                variable: "POLARIS_CLIENT_SECRET",
                ..
            }
        ));
        assert!(
            message.contains("POLARIS_CLIENT_SECRET") && message.contains("setup.sql"),
            "{message}"
        );
        let empty = Credentials::from_lookup(|_| Some(String::new()));
        assert!(matches!(
            render_table_with(&Config::default(), "faculty", &empty),
            Err(SqlError::MissingCredential { .. })
        ));
        let colon = Credentials::from_lookup(|name| Some(if name == "POLARIS_CLIENT_ID" { "a:b" } else { "x" }.into()));
        assert!(matches!(
            render_table_with(&Config::default(), "faculty", &colon),
            Err(SqlError::InvalidCredential { .. })
        ));
        assert!(!format!("{:?}", credentials()).contains("value"));
    }

    #[test]
    fn redacted_rendering_and_redaction_hide_every_credential() {
        let shown = render_table_with(&Config::default(), "faculty", &Credentials::redacted()).unwrap();
        let all = shown.join("\n");
        assert!(all.contains("'credential' = '<redacted>:<redacted>'"), "{all}");
        assert!(all.contains("'s3.secret-access-key' = '<redacted>'"), "{all}");
        let real = Credentials::from_lookup(|name| Some(format!("it's-{name}")));
        let echoed = "Flink: bad option 's3.secret-access-key'='it''s-AWS_SECRET_ACCESS_KEY' (it's-POLARIS_CLIENT_ID)";
        let redacted = real.redact(echoed);
        assert!(!redacted.contains("it's") && !redacted.contains("it''s"), "{redacted}");
        assert_eq!(real.redact("nothing secret"), "nothing secret");
        assert!(require_credentials(&Config::default(), &Credentials::redacted()).is_ok());
        let missing = Credentials::from_lookup(|name| (name != "AWS_ACCESS_KEY_ID").then(|| "x".to_owned()));
        let error = require_credentials(&Config::default(), &missing).unwrap_err();
        assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
    }

    #[test]
    fn the_start_up_check_asks_only_for_the_configured_sinks_credentials() {
        let mut jdbc = Config::default();
        jdbc.sink.kind = SinkKind::Jdbc;
        let password_only = Credentials::from_lookup(|name| (name == "SINK_JDBC_PASSWORD").then(|| "pw".to_owned()));
        assert!(require_credentials(&jdbc, &password_only).is_ok());
        let error = require_credentials(&jdbc, &Credentials::default()).unwrap_err();
        assert!(error.to_string().contains("SINK_JDBC_PASSWORD"), "{error}");
        let error = require_credentials(&Config::default(), &password_only).unwrap_err();
        assert!(error.to_string().contains("POLARIS_CLIENT_ID"), "{error}");
        let iceberg_only = Credentials::from_lookup(|name| (name != "SINK_JDBC_PASSWORD").then(|| "x".to_owned()));
        assert!(require_credentials(&Config::default(), &iceberg_only).is_ok());
    }

    #[test]
    fn unknown_table_lists_the_known_ones() {
        let error = render_table_with(&Config::default(), "nope", &credentials()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("unknown table `nope`; known tables: class, course, faculty"),
            "{message}"
        );
        assert!(message.ends_with("student_fee, students"), "{message}");
    }

    #[test]
    fn a_folder_overrides_and_adds_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
        std::fs::write(dir.path().join(SETUP_FILE), "SET 'x' = '{{ warehouse }}';").unwrap();
        std::fs::write(
            dir.path().join(TABLES_DIR).join("audit_log.sql"),
            "INSERT INTO t SELECT * FROM s -- {{ topic }}\n;",
        )
        .unwrap();
        std::fs::write(dir.path().join(TABLES_DIR).join("notes.txt"), "ignored").unwrap();
        let mut config = Config::default();
        config.flink.sql_dir = Some(dir.path().to_owned());
        let tables = known_tables(&config).unwrap();
        assert_eq!(tables.len(), 13);
        assert!(tables.contains(&"audit_log".to_owned()));
        // The override's setup needs no credential, so none is required.
        let statements = render_table_with(&config, "audit_log", &Credentials::default()).unwrap();
        assert_eq!(
            statements,
            vec!["SET 'x' = 'polariscatalog'", "INSERT INTO t SELECT * FROM s"]
        );
        let faculty = render_table_with(&config, "faculty", &Credentials::default()).unwrap();
        assert_eq!(faculty[0], "SET 'x' = 'polariscatalog'");
        assert!(faculty.len() > 2);

        std::fs::write(dir.path().join(TABLES_DIR).join("bad-name.sql"), "SELECT 1;").unwrap();
        assert!(matches!(known_tables(&config), Err(SqlError::BadFileName { .. })));
    }

    #[test]
    fn template_mistakes_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TABLES_DIR)).unwrap();
        let mut config = Config::default();
        config.flink.sql_dir = Some(dir.path().to_owned());
        let file = dir.path().join(TABLES_DIR).join("t.sql");
        let cases: [(&str, &str); 4] = [
            ("SELECT '{{ no_such_placeholder }}';", "undefined value"),
            ("SELECT '{{ topic ';", "syntax error"),
            ("SELECT 'open;", "string literal opened on line 1 is never closed"),
            ("-- nothing but a comment;", "renders to no statement"),
        ];
        for (text, needle) in cases {
            std::fs::write(&file, text).unwrap();
            let message = render_table_with(&config, "t", &credentials()).unwrap_err().to_string();
            assert!(
                message.contains(needle) && message.contains("t.sql"),
                "{text}: {message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
