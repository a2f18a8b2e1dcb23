//! The command line as clap reads it: global options and one variant per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::{self, LogFormat};

/// Runs a table's Flink CDC job only while that table has changes.
#[derive(Debug, Parser)]
#[command(name = "cdc-orchestrator", version, about, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file; built-in defaults apply to what it leaves out.
    #[arg(long, global = true, env = "CDC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, env = "CDC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter: a default level and `target=level` overrides, e.g. `debug,rskafka=warn`.
    #[arg(long, global = true, env = "CDC_LOG_LEVEL", default_value = logging::DEFAULT_FILTER)]
    pub log_level: String,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, one file each in [`crate::cli`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: watch the CDC topics, start and stop each table's Flink job, serve HTTP.
    Run,
    /// Validate the configuration and print it resolved, as TOML, secrets redacted.
    Check,
    /// Exit 0 when the running sidecar's /healthz answers 200 (the container HEALTHCHECK; scratch has no curl).
    Healthcheck,
    /// List the cdc jobs Flink knows (named `cdc-<table>`): table, job id, state, since.
    Jobs {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode Debezium records (fixture JSON lines: topic, base64 key and value) into one JSON answer per line.
    Decode {
        /// Input file, or `-` for stdin.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// Read one record's raw value bytes from stdin instead of JSON lines.
        #[arg(long, requires = "topic", conflicts_with = "file")]
        raw: bool,
        /// The topic of the raw record (decides the table and heartbeat topics).
        #[arg(long, requires = "raw")]
        topic: Option<String>,
    },
    /// Watch the CDC topics and print table activity as JSON lines (for operators and tests).
    Watch {
        /// Also print each table's consumer lag (high watermark minus the job group's committed offset).
        #[arg(long)]
        lag: bool,
        /// Watch for one poll interval, print what changed in it, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print the version.
    Version,
    /// Print the running sidecar's tables: state, job, running since, last change, lag, running share, next step.
    ///
    /// Reads `GET /tables` of the sidecar at --url (default: the configured `server.listen`, on loopback when it
    /// is a wildcard address), presenting the API token from CDC_SERVER__TOKEN when set.
    Status {
        /// Base URL of the sidecar's HTTP API, e.g. `http://cdc-orchestrator:8080`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Refresh the table until interrupted.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
        interval: std::time::Duration,
    },
    /// Ask the running sidecar to reload its SQL templates and policy settings (as SIGHUP does).
    ///
    /// Sends `POST /reload` to the sidecar at --url (default: the configured `server.listen`, on loopback when it
    /// is a wildcard address), presenting the API token from CDC_SERVER__TOKEN when set; prints what changed, or
    /// the messages of a refused set (exit 1).
    Reload {
        /// Base URL of the sidecar's HTTP API, e.g. `http://cdc-orchestrator:8080`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Feed a JSON-lines trace of inputs to the trigger policy and print its start/stop actions as JSON lines.
    ///
    /// Policy settings come from the configuration. Bad trace lines are reported on stderr with their line
    /// number and skipped; the exit code is then 1.
    Replay {
        /// The trace file; `-` or nothing reads standard input.
        #[arg(value_name = "FILE|-")]
        trace: Option<PathBuf>,
        /// Seed of the retry-jitter RNG; the same seed and trace always give the same output.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print the policy's events (deferred, throttled, queued, failing, ...) as well.
        #[arg(long)]
        events: bool,
    },
    /// Print the Flink SQL statements the launcher submits for a table, each ending with `;`.
    ///
    /// Credentials are printed as `<redacted>` unless `--show-secrets` is given; then they come from
    /// POLARIS_CLIENT_ID, POLARIS_CLIENT_SECRET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, as they will be
    /// submitted.
    Render {
        /// The table, e.g. `faculty`; an unknown table lists the known ones.
        table: String,
        /// Print the credentials themselves (read from the environment) instead of `<redacted>`.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Generate the tables' Flink SQL (and the JDBC sink's CREATE TABLEs) from Postgres's catalog, or with
    /// `--check` compare the existing files with it.
    ///
    /// The password comes from the URL or, when the URL has none, from PGPASSWORD (the URL's wins, as with
    /// libpq); it is never printed. Exit codes: 0 written or no difference, 1 a difference (with `--check`) or a
    /// failure (connection, timeout, file), 2 a table or column that cannot be generated, or bad input.
    Scaffold(ScaffoldArgs),
}

/// The values of `scaffold`, as the command line gives them.
#[derive(Debug, clap::Args)]
pub struct ScaffoldArgs {
    /// The source database, e.g. `postgres://postgres@localhost:5432/sourcedb`.
    #[arg(long, value_name = "URL")]
    pub postgres: String,
    /// The tables, comma-separated; default: the connector's `table.include.list`, else every table of the
    /// schema.
    #[arg(long, value_delimiter = ',', value_name = "TABLES")]
    pub tables: Option<Vec<String>>,
    /// The schema; default: the connector's `schema.include.list` when it names one schema, else `public`.
    #[arg(long)]
    pub schema: Option<String>,
    /// The Debezium connector config whose settings decide each field's JSON form.
    #[arg(long, value_name = "FILE", default_value = "debezium/university-connector.json")]
    pub connector: PathBuf,
    /// Where the Flink SQL templates go, one `<table>.sql` each.
    #[arg(long, value_name = "DIR", default_value = "flink-sql/tables")]
    pub out: PathBuf,
    /// Where the JDBC sink database's CREATE TABLEs go; default: `jdbc-sink` next to `--out`.
    #[arg(long, value_name = "DIR")]
    pub jdbc_out: Option<PathBuf>,
    /// Write nothing: compare the files in `--out` with the catalog, exit 1 naming each difference.
    #[arg(long)]
    pub check: bool,
    /// Connect and query timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: std::time::Duration,
    /// CA certificates (PEM) to verify Postgres's TLS certificate against; default: the system's roots. TLS
    /// is used when the server offers it (`sslmode=prefer`, the default) or required (`sslmode=require`);
    /// `sslmode=disable` never asks.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The Iceberg database (`[iceberg] database`) named in the `ALTER TABLE` statements printed for the
    /// Iceberg sink when a regenerated template changes its table.
    #[arg(long, value_name = "NAME", default_value = "university")]
    pub iceberg_database: String,
}

/// Global options are listed once, in the top-level help: in each subcommand's help they would repeat the same
/// three lines, so there they are hidden (still accepted) and named in one line instead.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let globals: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .map(|a| a.clone().hide(true))
        .collect();
    let names: Vec<String> = command.get_subcommands().map(|sc| sc.get_name().to_owned()).collect();
    for name in names {
        // A subcommand that has the argument already is skipped when clap propagates globals, so these hidden
        // copies are what it shows; values still reach the top-level matches, as for any global.
        command = command.mut_subcommand(name, |sc| {
            sc.args(globals.clone())
                .after_help("Global options: --config, --log-format, --log-level (see `cdc-orchestrator --help`)")
        });
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
