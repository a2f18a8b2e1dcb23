//! The `cdc-orchestrator` binary: parses the command line and hands over to the library.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::flink::listing;
use cdc_orchestrator::logging::{self, LogFormat};
use cdc_orchestrator::policy::PolicySettings;
use cdc_orchestrator::replay::{self, ReplayOptions};
use clap::{Parser, Subcommand};

/// Exit code for a configuration or usage error (clap uses the same for bad arguments).
const EXIT_CONFIG: u8 = 2;

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
    /// Log filter, e.g. `info` or `cdc_orchestrator=debug,rskafka=warn`.
    #[arg(long, global = true, env = "CDC_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and print it resolved, as TOML, secrets redacted.
    Check,
    /// List the cdc jobs Flink knows (named `cdc-<table>`): table, job id, state, since.
    Jobs {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the version.
    Version,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Check => match load_config(&cli) {
            Ok(config) => {
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

/// Loads the configuration, or prints the one-line reason and returns the exit code to use.
fn load_config(cli: &Cli) -> Result<Config, ExitCode> {
    Config::load(cli.config.as_deref()).map_err(|e| {
        eprintln!("error: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}
