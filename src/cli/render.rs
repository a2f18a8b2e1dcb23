//! `cdc-orchestrator render`: the Flink SQL statements the launcher submits for a table, as a script.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_FAILURE, load_config};
use crate::sql::{self, Credentials, SqlError, TemplateError};

/// Prints `table`'s statements, each ending with `;`. Credentials are `<redacted>` unless `show_secrets`, then
/// read from the environment as they will be submitted.
pub fn command(file: Option<&Path>, table: &str, show_secrets: bool) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let credentials = if show_secrets {
        Credentials::from_env(&config.kafka)
    } else {
        Credentials::redacted()
    };
    match sql::render_table_with(&config, table, &credentials) {
        Ok(statements) => {
            print!("{}", to_script(&statements));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::chain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 1 when a template cannot be read; 2 for what the configuration, the templates or the environment must fix.
pub(super) fn exit_code(error: &SqlError) -> u8 {
    match error {
        SqlError::Templates(TemplateError::Read { .. }) => EXIT_FAILURE,
        _ => EXIT_CONFIG,
    }
}

/// Statements as a script: each one followed by `;`, separated by blank lines.
pub fn to_script(statements: &[String]) -> String {
    let mut script = String::new();
    for statement in statements {
        // Writing to a String cannot fail.
        let _ = writeln!(script, "{statement};\n");
    }
    script.truncate(script.trim_end().len());
    script.push('\n');
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_form_ends_every_statement_with_a_semicolon() {
        let script = to_script(&["SELECT 1".to_owned(), "SELECT\n  2".to_owned()]);
        assert_eq!(script, "SELECT 1;\n\nSELECT\n  2;\n");
    }
}
