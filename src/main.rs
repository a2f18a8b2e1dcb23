//! The `cdc-orchestrator` binary: parses the command line and hands over to the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use cdc_orchestrator::cli::replay::{self, ReplayOptions};
use cdc_orchestrator::cli::{healthcheck, status};
use cdc_orchestrator::config::{Config, LauncherKind};
use cdc_orchestrator::flink::listing;
use cdc_orchestrator::kafka::watcher;
use cdc_orchestrator::logging::{self, LogFormat};
use cdc_orchestrator::policy::PolicySettings;
use cdc_orchestrator::sql;
use cdc_orchestrator::{controller, decoder, http, shutdown};
use clap::{Parser, Subcommand};

/// Exit code for a configuration or usage error (clap uses the same for bad arguments).
const EXIT_CONFIG: u8 = 2;

/// Exit code for a failure at run time (an unreadable file).
const EXIT_FAILURE: u8 = 1;

/// Runs a table's Flink CDC job only while that table has changes.
#[derive(Debug, Parser)]
#[command(name = "cdc-orchestrator", version, about, propagate_version = true)]
struct Cli {
    /// TOML configuration file; built-in defaults apply to what it leaves out.
    #[arg(long, global = true, env = "CDC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format.
    #[arg(long, global = true, env = "CDC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter: a default level and `target=level` overrides, e.g. `debug,rskafka=warn`.
    #[arg(long, global = true, env = "CDC_LOG_LEVEL", default_value = logging::DEFAULT_FILTER)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
}

/// Global options are listed once, in the top-level help: in each subcommand's help they would repeat the same
/// three lines, so there they are hidden (still accepted) and named in one line instead.
fn parse_cli() -> Cli {
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

fn main() -> ExitCode {
    let cli = parse_cli();
    if let Err(message) = logging::init(cli.log_format, &cli.log_level) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Jobs { json } => match load_config(&cli) {
            Ok(config) => jobs(&config, json),
            Err(code) => code,
        },
        Command::Run => {
            let config = match load_config(&cli) {
                Ok(config) => config,
                Err(code) => return code,
            };
            match http::raise_open_file_limit() {
                Ok(limit) => tracing::debug!(limit, "open-file limit"),
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
            let done = runtime().map(|rt| rt.block_on(async { controller::run(config, shutdown::on_signals()).await }));
            match done {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    match e {
                        controller::RunError::Credentials(_) | controller::RunError::Listen { .. } => {
                            ExitCode::from(EXIT_CONFIG)
                        }
                        _ => ExitCode::FAILURE,
                    }
                }
                Err(code) => code,
            }
        }
        Command::Healthcheck => {
            let config = match load_config(&cli) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let listen = config.server.listen;
            match runtime().map(|rt| rt.block_on(healthcheck::probe(listen, healthcheck::TIMEOUT))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(reason)) => {
                    eprintln!("unhealthy: {reason}");
                    ExitCode::FAILURE
                }
                Err(code) => code,
            }
        }
        Command::Status {
            ref url,
            watch,
            interval,
        } => run_status(&cli, url.as_deref(), watch.then_some(interval)),
        Command::Decode { file, raw, topic } => run_decode(&file, raw, topic.as_deref()),
        Command::Watch { lag, once } => {
            let config = match load_config(&cli) {
                Ok(config) => config,
                Err(code) => return code,
            };
            let done = runtime().map(|rt| {
                rt.block_on(async {
                    let shutdown = shutdown::on_signals();
                    watcher::watch_command(&config, lag, once, std::io::stdout().lock(), shutdown).await
                })
            });
            match done {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    match e {
                        watcher::WatchError::Unreachable(_) => ExitCode::FAILURE,
                        _ => ExitCode::from(EXIT_CONFIG),
                    }
                }
                Err(code) => code,
            }
        }
        Command::Check => match load_config(&cli) {
            Ok(config) => {
                // `run` would refuse to start without them; `check` says so first.
                if config.flink.launcher != LauncherKind::DryRun
                    && let Err(e) = sql::require_credentials(&config, &sql::Credentials::from_env())
                {
                    eprintln!("error: {e}");
                    return ExitCode::from(match e {
                        sql::SqlError::Read { .. } => EXIT_FAILURE,
                        _ => EXIT_CONFIG,
                    });
                }
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Replay {
            ref trace,
            seed,
            events,
        } => match load_config(&cli) {
            Ok(config) => run_replay(&config, trace.as_ref(), seed, ReplayOptions { events }),
            Err(code) => code,
        },
        Command::Render {
            ref table,
            show_secrets,
        } => match load_config(&cli) {
            Ok(config) => match sql::render_table_with(
                &config,
                table,
                &if show_secrets {
                    sql::Credentials::from_env()
                } else {
                    sql::Credentials::redacted()
                },
            ) {
                Ok(statements) => {
                    print!("{}", sql::to_script(&statements));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(match e {
                        sql::SqlError::Read { .. } => EXIT_FAILURE,
                        _ => EXIT_CONFIG,
                    })
                }
            },
            Err(code) => code,
        },
    }
}

fn run_replay(config: &Config, trace: Option<&PathBuf>, seed: u64, options: ReplayOptions) -> ExitCode {
    let settings = PolicySettings::from_config(config, seed);
    let stdout = BufWriter::new(io::stdout().lock());
    let stderr = io::stderr().lock();
    let result = match trace.filter(|path| path.as_os_str() != "-") {
        Some(path) => match File::open(path) {
            Ok(file) => replay::replay(settings, BufReader::new(file), stdout, stderr, options),
            Err(e) => {
                eprintln!("error: cannot open trace {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => replay::replay(settings, io::stdin().lock(), stdout, stderr, options),
    };
    match result {
        Ok(summary) if summary.bad_lines == 0 => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!(
                "error: {} of {} trace lines were bad and skipped",
                summary.bad_lines, summary.lines
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `jobs`: asks Flink, prints the table or JSON; exit 1 when Flink cannot be asked.
fn jobs(config: &Config, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(listing::list_cdc_jobs(config)) {
        Ok(jobs) => {
            print!(
                "{}",
                if json {
                    listing::render_json(&jobs)
                } else {
                    listing::render_table(&jobs)
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot list Flink jobs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `status`: the URL and token come from the flags and environment, else from the configuration when it loads (a
/// configuration this machine cannot validate, e.g. TLS files of the sidecar's host, must not stop a status read).
fn run_status(cli: &Cli, url: Option<&str>, watch: Option<std::time::Duration>) -> ExitCode {
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => Some(config),
        Err(e) => {
            // Only worth saying when a file was named: without one, the defaults are all there is to read.
            if let Some(file) = &cli.config {
                eprintln!("warning: not using {} for the URL and token: {e}", file.display());
            }
            None
        }
    };
    let url = url.map(str::to_owned).unwrap_or_else(|| {
        let listen = config.as_ref().map_or_else(
            || cdc_orchestrator::config::ServerConfig::default().listen,
            |c| c.server.listen,
        );
        format!("http://{}", healthcheck::probe_address(listen))
    });
    let token = std::env::var(status::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.and_then(|c| c.server.token.map(|t| t.expose().to_owned())));
    let done = runtime()
        .map(|rt| rt.block_on(async { status::status(&url, token.as_deref(), watch, shutdown::on_signals()).await }));
    match done {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(code) => code,
    }
}

fn run_decode(file: &std::path::Path, raw: bool, topic: Option<&str>) -> ExitCode {
    let result = match (raw, topic) {
        (true, Some(topic)) => decoder::decode_raw(topic, std::io::stdin().lock(), std::io::stdout().lock()),
        _ if file.as_os_str() == "-" => decoder::decode_lines(std::io::stdin().lock(), std::io::stdout().lock()),
        _ => match std::fs::File::open(file) {
            Ok(f) => decoder::decode_lines(std::io::BufReader::new(f), std::io::stdout().lock()),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded runtime the long-running commands use.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Loads the configuration, or prints one line per mistake and returns the exit code to use.
fn load_config(cli: &Cli) -> Result<Config, ExitCode> {
    let config = Config::load(cli.config.as_deref()).map_err(|errors| {
        for e in errors.iter() {
            eprintln!("error: invalid configuration: {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })?;
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}
