//! `cdc-orchestrator watch`: table activity (and with `--lag`, lag snapshots) as JSON lines, for operators and
//! tests.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EXIT_CONFIG, EXIT_FAILURE, block_on, load_config};
use crate::config::Config;
use crate::kafka::watcher::{WatchError, WatchEvent, Watcher};
use crate::shutdown;

/// Watches until SIGTERM or SIGINT (with `once`, for one poll interval): exit 1 when `once` finds no broker or
/// gets no SASL token, 2 when the watcher cannot be set up from the configuration.
pub fn command(file: Option<&Path>, lag: bool, once: bool) -> ExitCode {
    let config = match load_config(file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let work = async {
        // A poll in progress ends within the request timeout.
        let shutdown = shutdown::on_signals(config.kafka.request_timeout);
        watch(&config, lag, once, std::io::stdout().lock(), shutdown).await
    };
    block_on(work, "error", |e| match e {
        WatchError::Unreachable(_) | WatchError::Token(_) => EXIT_FAILURE,
        _ => EXIT_CONFIG,
    })
}

/// Prints activity (and with `lag`, lag snapshots) as JSON lines to `out` until `shutdown`; with `once`, watches
/// for one poll interval and returns. Broker outages are logged and retried.
pub async fn watch(
    config: &Config,
    lag: bool,
    once: bool,
    mut out: impl Write,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let mut watcher = watcher_for(config)?;
    if !lag {
        // Nothing would print it, so no broker is asked for it.
        watcher = watcher.without_lag();
    }
    if once {
        return watch_once(&mut watcher, config, lag, &mut out).await;
    }
    let (tx, mut rx) = mpsc::channel(1024);
    let task = tokio::spawn(watcher.run(tx, shutdown.clone()));
    while let Some(event) = rx.recv().await {
        match &event {
            WatchEvent::Activity(_) => print_json(&mut out, &event),
            WatchEvent::Lag { .. } if lag => print_json(&mut out, &event),
            _ => {}
        }
    }
    let _ = task.await;
    Ok(())
}

/// The watcher `run` would build for `config` ([`crate::controller::watcher_for`]), so that `watch` shows what the
/// sidecar sees. The tables with a SQL template are listed without rendering them: templates that cannot be read
/// count as none here (`run` refuses to start on them; `check` and `render` say why).
fn watcher_for(config: &Config) -> Result<Watcher, WatchError> {
    Watcher::new(config, crate::sql::known_tables(config).unwrap_or_default())
}

/// A baseline, one poll interval, and what changed in it. Under a token mechanism the token comes first, so that
/// a token endpoint that fails is the error, rather than every broker's refusal of a connection without a token.
async fn watch_once(watcher: &mut Watcher, config: &Config, lag: bool, out: &mut impl Write) -> Result<(), WatchError> {
    if let Some(Some(failure)) = watcher.refresh_token().await {
        return Err(WatchError::Token(failure));
    }
    let first = async {
        watcher.refresh().await?;
        watcher.poll().await?;
        tokio::time::sleep(config.kafka.poll_interval).await;
        watcher.poll().await
    };
    let (activity, _) = first.await.map_err(WatchError::Unreachable)?;
    for a in activity {
        print_json(out, &WatchEvent::Activity(a));
    }
    if lag {
        for (table, lag) in watcher.lags().await {
            print_json(out, &WatchEvent::Lag { table, lag });
        }
    }
    Ok(())
}

fn print_json(out: &mut impl Write, event: &WatchEvent) {
    // A closed stdout (e.g. `| head`) is not worth a crash; the watcher keeps its own state either way.
    if serde_json::to_writer(&mut *out, event).is_ok() {
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::TableOverrides;
    use crate::model::Op;
    use crate::sql::Templates;

    #[test]
    fn watch_samples_as_run_does() {
        let mut config = Config::default();
        config.kafka.routed_topics = vec![r"university-server\.all".to_owned()];
        config.policy.include = vec!["faculty".to_owned(), "not_templated".to_owned()];
        config.policy.operations = vec![Op::Create, Op::Update, Op::Delete];
        config.policy.tables.insert(
            "faculty".to_owned(),
            TableOverrides {
                operations: Some(vec![Op::Delete, Op::Create]),
                ..TableOverrides::default()
            },
        );
        let templates = Templates::load(&config).expect("built-in templates");
        let run = crate::app::watcher_for(&config, &templates).expect("run's watcher");
        let watch = watcher_for(&config).expect("watch's watcher");
        assert_eq!(format!("{watch:?}"), format!("{run:?}"));
        // And both took the configuration in: the trusted tables and the operations that count everywhere.
        let shown = format!("{run:?}");
        for expected in ["\"not_templated\"", "\"course\"", "counted_ops: {Create, Delete}"] {
            assert!(shown.contains(expected), "{expected} not in {shown}");
        }
    }
}
