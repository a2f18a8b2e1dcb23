//! The `cdc-orchestrator` binary: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use cdc_orchestrator::config::Config;
use cdc_orchestrator::logging::{self, LogFormat};
use cdc_orchestrator::sql;
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
    /// Print the version.
    Version,
    /// Print the Flink SQL statements the launcher submits for a table, each ending with `;`.
    ///
    /// Credentials come from POLARIS_CLIENT_ID, POLARIS_CLIENT_SECRET, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY, and are printed as they will be submitted.
    Render {
        /// The table, e.g. `faculty`; an unknown table lists the known ones.
        table: String,
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
        Command::Check => match load_config(&cli) {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Render { ref table } => match load_config(&cli) {
            Ok(config) => match sql::render_table(&config, table) {
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

/// Loads the configuration, or prints the one-line reason and returns the exit code to use.
fn load_config(cli: &Cli) -> Result<Config, ExitCode> {
    Config::load(cli.config.as_deref()).map_err(|e| {
        eprintln!("error: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}
