//! `cdc-orchestrator scaffold`: the tables' Flink SQL generated from Postgres's catalog ([`crate::scaffold`]), or
//! with `--check` the differences between the files and the catalog (exit 1 when there is one).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::cli::args::ScaffoldArgs;
use crate::logging::chain;
use crate::model::TableName;
use crate::scaffold::{self, Options, Outcome};

/// Runs the command; prints the files written, or each difference, on stdout, and errors on stderr.
pub fn command(args: ScaffoldArgs) -> ExitCode {
    let jdbc_out = args.jdbc_out.unwrap_or_else(|| {
        args.out
            .parent()
            .map_or_else(|| PathBuf::from("jdbc-sink"), |p| p.join("jdbc-sink"))
    });
    let options = Options {
        url: args.postgres,
        env_password: std::env::var("PGPASSWORD").ok(),
        tables: args.tables,
        schema: args.schema,
        connector: args.connector,
        out: args.out,
        jdbc_out,
        check: args.check,
        timeout: args.timeout,
        ca_file: args.ca_file,
        iceberg_database: args.iceberg_database,
    };
    // The name goes into the printed statements: the same rule as `[iceberg] database`.
    if !TableName::is_valid(&options.iceberg_database) {
        eprintln!(
            "error: --iceberg-database {:?}: not a valid database name (letters, digits and _, not starting with a \
             digit, at most 63)",
            options.iceberg_database
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(scaffold::run(&options));
    runtime.shutdown_background();
    match result {
        Ok(Outcome::Written { files, iceberg }) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            if !iceberg.is_empty() {
                // Statements on stdout as they are (a script for the Iceberg catalog's session), the rest as
                // comments; docs/operations.md, "Iceberg sink: evolving the table", says when to run them.
                println!("-- Iceberg sink: run these before the tables' next start (with setup.sql's catalog):");
                for line in iceberg {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Ok(Outcome::Checked(differences)) if differences.is_empty() => {
            println!("the templates in {} match the catalog", options.out.display());
            ExitCode::SUCCESS
        }
        Ok(Outcome::Checked(differences)) => {
            for line in &differences {
                println!("{line}");
            }
            eprintln!(
                "error: {} difference(s) between {} and the catalog; regenerate with `cdc-orchestrator scaffold`",
                differences.len(),
                options.out.display()
            );
            ExitCode::from(EXIT_FAILURE)
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            let code = e.exit_code();
            ExitCode::from(if code == 2 { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}
