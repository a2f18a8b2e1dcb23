//! Log output: human-readable text by default, one JSON object per line for log shippers.

use std::str::FromStr;

use clap::ValueEnum;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum LogFormat {
    /// `2026-11-25T10:00:00Z  INFO Detected c/u operation on table: faculty ...`
    Text,
    /// `{"timestamp":..,"level":"INFO","fields":{"message":..},..}`
    Json,
}

/// The default `--log-level`: rskafka logs every connection it opens at `info`, which at thousands of partitions
/// is noise.
pub const DEFAULT_FILTER: &str = "info,rskafka=warn";

/// Installs the global subscriber. `level` is a comma-separated list of `level` and `target=level` directives,
/// such as `info` or `info,rskafka=warn,cdc_orchestrator::watcher=debug`. (A `Targets` filter rather than
/// `EnvFilter`: no span or field matching, and no regex engine in the binary for it.)
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = Targets::from_str(level).map_err(|e| format!("--log-level: {e} (got {level:?})"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            )
            .with(filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .with(filter)
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_filter_is_a_one_line_error_naming_the_option_and_the_value() {
        let error = init(LogFormat::Text, "rskafka=loud").err().unwrap_or_default();
        assert!(error.starts_with("--log-level: "), "{error}");
        assert!(error.contains("\"rskafka=loud\""), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn the_default_filter_and_a_per_module_one_parse() {
        assert!(Targets::from_str(DEFAULT_FILTER).is_ok());
        assert!(Targets::from_str("debug,rskafka=warn,cdc_orchestrator::watcher=trace").is_ok());
    }
}
