//! Log output: human-readable text by default, one JSON object per line for log shippers.
//!
//! Log lines carry values from outside (table and topic names, record excerpts, error texts from brokers and
//! Flink). Neither format lets one forge a line: the JSON format escapes control characters in its strings, and
//! the text format writes every field, the message included, through [`EscapedFields`], which escapes line
//! breaks and other control characters. Call sites therefore need no care of their own.
//!
//! An error is shown with its causes, `outer: cause: root cause`, through [`chain`]: the program's errors name
//! their cause as [`Error::source`] rather than in their own message, so every place that shows an error (a log
//! field, `error:` on stderr, `/readyz`, `GET /tables`) shows it through [`chain`] and nothing is lost.

use std::error::Error;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2026-11-25T10:00:00Z  INFO Detected c/u operation on table: faculty ...`
    Text,
    /// `{"timestamp":..,"level":"INFO","fields":{"message":..},..}`
    Json,
}

/// The default `--log-level`: rskafka logs every connection it opens at `info`, which at thousands of partitions
/// is noise.
pub const DEFAULT_FILTER: &str = "info,rskafka=warn";

/// Why the logger could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `--log-level` is not a list of `level` and `target=level` directives.
    #[error("--log-level: cannot use {level:?}")]
    Level {
        /// The filter as given.
        level: String,
        /// What the parser found wrong.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber is installed already.
    #[error("cannot install the logger")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber. `level` is a comma-separated list of `level` and `target=level` directives,
/// such as `info` or `info,rskafka=warn,cdc_orchestrator::kafka::watcher=debug`. (A `Targets` filter rather than
/// `EnvFilter`: no span or field matching, and no regex engine in the binary for it.)
pub fn init(format: LogFormat, level: &str) -> Result<(), LogError> {
    let filter = Targets::from_str(level).map_err(|source| LogError::Level {
        level: level.to_owned(),
        source,
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(EscapedFields)
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
    result.map_err(LogError::Install)
}

/// The text format's field formatter: `message name=value ...` like tracing-subscriber's default, with every
/// value (the message too) written through [`Escaper`], so a value holding a line break or a terminal escape
/// cannot start a forged log line or restyle the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    empty: bool,
    result: fmt::Result,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Like the default: the message as it is, other strings quoted.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let separator = if std::mem::take(&mut self.empty) { "" } else { " " };
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
        } else {
            write!(self.writer, "{separator}{name}=")
        }
        .and_then(|()| write!(Escaper(&mut self.writer), "{value:?}"));
    }
}

/// `error` and its causes on one line, `outer: cause: root cause`, as `{}` shows it: `error = %chain(&e)` in a
/// log line, `{}` in a message.
pub fn chain<'e>(error: &'e (dyn Error + 'static)) -> Chain<'e> {
    Chain(error)
}

/// An error with its causes; see [`chain`].
#[derive(Debug, Clone, Copy)]
pub struct Chain<'e>(&'e (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            // Some errors of other crates (rskafka's, io::Error wrapping another) repeat their cause in their own
            // message: a cause already shown is not shown again.
            let text = error.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            cause = error.source();
        }
        Ok(())
    }
}

/// A writer that passes text through with line breaks and other control characters escaped (`\n`, `\r`, `\t`,
/// `\u{1b}`, and the Unicode line and paragraph separators).
pub struct Escaper<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaper<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "{}", other.escape_unicode())?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_of(log: impl FnOnce()) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn outside_values_cannot_start_a_line_in_the_text_format() {
        let table = "faculty\n2026-01-01T00:00:00.000000Z  INFO cdc_orchestrator::controller: Successfully triggered \
                     job for: payment job_id=FORGED";
        let error = "broker said:\r\n\u{1b}[31mred\u{2028}done";
        let out = text_of(|| {
            tracing::info!(%table, error = %error, quoted = table, "Detected c operation on table: {table}");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with('\n'), "{out}");
        assert!(
            out.contains("Detected c operation on table: faculty\\n2026-01-01T00:00:00.000000Z  INFO"),
            "{out}"
        );
        assert!(out.contains(" table=faculty\\n2026"), "{out}");
        assert!(
            out.contains(r#"error=broker said:\r\n\u{1b}[31mred\u{2028}done"#),
            "{out}"
        );
        assert!(out.contains(r#"quoted="faculty\n2026"#), "{out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\u{2028}'), "{out}");
    }

    #[test]
    fn ordinary_lines_read_as_before() {
        let out = text_of(|| tracing::info!(table = "faculty", records = 3, "Successfully triggered job for: x"));
        assert!(
            out.trim_end()
                .ends_with(r#"Successfully triggered job for: x table="faculty" records=3"#),
            "{out}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    enum Layer {
        #[error("outer")]
        Outer(#[source] Box<Layer>),
        #[error("middle says: {0}")]
        Repeats(#[source] std::io::Error),
    }

    #[test]
    fn an_error_is_shown_with_each_cause_once() {
        let root = std::io::Error::other("root cause");
        let error = Layer::Outer(Box::new(Layer::Repeats(root)));
        assert_eq!(chain(&error).to_string(), "outer: middle says: root cause");
        let plain = std::io::Error::other("alone");
        assert_eq!(chain(&plain).to_string(), "alone");
        let out = text_of(|| tracing::warn!(error = %chain(&error), "failed"));
        assert!(
            out.trim_end().ends_with("failed error=outer: middle says: root cause"),
            "{out}"
        );
    }

    #[test]
    fn a_bad_filter_is_a_one_line_error_naming_the_option_and_the_value() {
        let error = init(LogFormat::Text, "rskafka=loud")
            .err()
            .map(|e| chain(&e).to_string())
            .unwrap_or_default();
        assert!(error.starts_with("--log-level: "), "{error}");
        assert!(error.contains("\"rskafka=loud\""), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn the_default_filter_and_a_per_module_one_parse() {
        assert!(Targets::from_str(DEFAULT_FILTER).is_ok());
        assert!(Targets::from_str("debug,rskafka=warn,cdc_orchestrator::kafka::watcher=trace").is_ok());
    }
}
