//! Reloading without a restart: SIGHUP or `POST /reload` re-reads the configuration (the same layered load as
//! start-up: file, then `CDC_*` variables) and the SQL templates, checks them exactly as start-up does, and swaps
//! them in at once.
//!
//! What a reload applies:
//! - the SQL templates (`flink.sql_dir`'s `setup.sql` and `tables/*.sql`, over the built-in ones): read and checked
//!   by [`Templates::load`] (and, for a launcher that submits them, [`Templates::require_credentials`]), the start-up
//!   code and messages. A table's next start renders from the new set; a running job keeps the SQL its start
//!   rendered (statements are rendered once, when the start is carried out, and never again for that job).
//! - the `[policy]` keys in [`RELOADABLE_POLICY_KEYS`], defaults and `[policy.tables.<name>]` alike (see
//!   [`crate::policy::Policy::reconfigure`] for when each takes effect).
//!
//! What needs a restart, reported by key and otherwise ignored (the reload still applies the rest): every other
//! key. `policy.include`/`policy.exclude` decide which tables are managed, which the watcher, the savings book and
//! the ownership rule ([`super::managed_tables`]) fix at start: excluding a table with a running job would orphan
//! it (never stopped), including one would need its topic watched. Tables whose template is new are likewise only
//! watched and started after a restart. `kafka.*`, `flink.*`, `iceberg.*`, `sink.*` and `server.*` are what the
//! templates are rendered with and what the clients, the watcher and the HTTP server were built with; a reload
//! keeps the values the process started with, so a new template is rendered with the same connection settings
//! as the old. Secrets are compared redacted, so a changed secret is not seen; it needs a restart too.
//!
//! Refused, leaving the running set as it was: a configuration or template that start-up would refuse, and a
//! set that no longer has the template of a table the process knows (its next start would fail): removing a
//! table needs a restart.
//!
//! One task, the [`Reloader`], takes the requests one at a time, prepares the new set off the run loop (file
//! reads, rendering every table), and hands it to the run loop, which swaps it in between two inputs
//! ([`RunLoop::apply_reload`]); a start renders in the run loop too, so it sees the whole old set or the whole new
//! one, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::RunLoop;
use crate::config::{Config, ConfigErrors, PolicyConfig};
use crate::flink::Launcher;
use crate::logging::chain;
use crate::sql::{Credentials, SqlError, TemplateChanges, TemplateError, Templates};
use crate::telemetry::Metrics;

/// The `[policy]` keys a reload applies (and the same keys under `[policy.tables.<name>]`); any other key's change
/// needs a restart.
pub const RELOADABLE_POLICY_KEYS: &[&str] = &[
    "cooldown",
    "idle_timeout",
    "operations",
    "paused",
    "retry_initial_backoff",
    "retry_max_backoff",
    "failing_after",
    "tables",
];

/// An operator's request to reload (`POST /reload`), with where the answer goes.
#[derive(Debug)]
pub struct ReloadRequest {
    /// The reload's outcome: what changed, or why nothing did.
    pub reply: oneshot::Sender<Result<ReloadReport, ReloadRefused>>,
}

/// What a reload changed (and what it left for a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The templates' changes: tables added, removed, changed, and whether `setup.sql` changed.
    pub templates: TemplateChanges,
    /// The `[policy]` keys applied whose value changed, dotted (e.g. `policy.tables.room.paused`).
    pub policy_keys: Vec<String>,
    /// What changed but is not applied until a restart: dotted keys, and `tables.<name>` for a new template.
    pub needs_restart: Vec<String>,
}

/// Why a reload was refused: the messages start-up would have stopped with, one line each. The running set stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reload refused: {}", .messages.join("; "))]
pub struct ReloadRefused {
    /// One line per mistake, as start-up words it.
    pub messages: Vec<String>,
}

/// Why a reload could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration does not load (the same errors as start-up's).
    #[error("invalid configuration")]
    Config(#[source] ConfigErrors),
    /// A template cannot be read or is wrong.
    #[error(transparent)]
    Templates(TemplateError),
    /// A credential the templates need is missing or unusable.
    #[error(transparent)]
    Credentials(SqlError),
    /// Tables the process knows have no template any more.
    #[error("no template left for table(s) {}: removing a table needs a restart", .0.join(", "))]
    TablesRemoved(Vec<String>),
    /// The run loop is gone (shutting down).
    #[error("the run loop is not accepting reloads (shutting down)")]
    Stopped,
}

impl ReloadError {
    /// One line per mistake, as start-up prints them (`invalid configuration: <key>: ...` per key).
    pub fn messages(&self) -> Vec<String> {
        match self {
            ReloadError::Config(errors) => errors
                .iter()
                .map(|e| format!("invalid configuration: {}", chain(e)))
                .collect(),
            other => vec![chain(other).to_string()],
        }
    }
}

/// The set the run loop swaps in.
#[derive(Debug)]
pub(super) struct Reload {
    /// The new templates, checked.
    pub(super) templates: Arc<Templates>,
    /// The new `[policy]` (with `include`/`exclude` as the process started).
    pub(super) policy: PolicyConfig,
    /// Answered once the set is in use.
    pub(super) done: oneshot::Sender<()>,
}

/// A reload ready to hand to the run loop.
#[derive(Debug)]
struct Prepared {
    config: Config,
    templates: Arc<Templates>,
    report: ReloadReport,
}

/// The task that carries out reloads, one at a time: built by [`RunLoop::reloader`], run by the composition root.
#[derive(Debug)]
pub struct Reloader {
    /// The configuration file the process started with (`--config`), read again at each reload.
    file: Option<PathBuf>,
    /// The configuration in use: the start's, with each reload's reloadable keys.
    running: Config,
    /// The templates in use.
    templates: Arc<Templates>,
    /// What a launcher that submits statements needs: checked as at start-up. `None` for a dry run.
    credentials: Option<Credentials>,
    /// To the run loop.
    apply: mpsc::Sender<Reload>,
    metrics: Arc<Metrics>,
}

impl<L: Launcher + 'static> RunLoop<L> {
    /// The task that reloads this loop's templates and policy settings from `file` (the configuration the process
    /// started with; `None` for the defaults and the environment alone). Call before [`RunLoop::run`].
    pub fn reloader(&mut self, config: &Config, file: Option<PathBuf>) -> Reloader {
        let (apply, reloads) = mpsc::channel(1);
        self.reloads = Some(reloads);
        Reloader {
            file,
            running: config.clone(),
            templates: self.sql.templates.clone(),
            credentials: (!self.launcher.simulated()).then(|| self.sql.credentials.clone()),
            apply,
            metrics: self.telemetry.metrics.clone(),
        }
    }

    /// Swaps a reload's set in, at once, between two inputs. The one place a reload takes effect: what depends
    /// on the templates or the policy settings (e.g. schema drift's declared columns) is re-evaluated here, from
    /// `self.sql.templates` once it is the new set.
    pub(super) fn apply_reload(&mut self, reload: Reload) {
        let Reload {
            templates,
            policy,
            done,
        } = reload;
        // Only what a start renders from: a start carried out before this line rendered the old set whole, any
        // after it renders the new set whole; running jobs' statements were rendered at their start.
        let declared = templates.declared_columns().clone();
        self.sql.templates = templates;
        let actions = self.policy.reconfigure(self.clock.now(), policy);
        for action in actions {
            self.execute(action);
        }
        // The new templates' source columns: a drift they resolve clears at once (and a `pause` it held lifts).
        self.replace_declared_columns(declared);
        // What carrying the actions out fed back, then the tables' new statuses.
        self.feed_all([]);
        let _ = done.send(());
    }
}

impl Reloader {
    /// Carries out reloads asked for by `requests` (answered) or `hangups` (SIGHUP; logged), one at a time, until
    /// `shutdown` or both channels close.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<ReloadRequest>,
        mut hangups: mpsc::Receiver<()>,
        shutdown: CancellationToken,
    ) {
        loop {
            let reply = tokio::select! {
                () = shutdown.cancelled() => return,
                Some(request) = requests.recv() => Some(request.reply),
                Some(()) = hangups.recv() => {
                    tracing::info!("SIGHUP received: reloading templates and policy settings");
                    None
                }
                else => return,
            };
            let outcome = self
                .reload()
                .await
                .map_err(|e| ReloadRefused { messages: e.messages() });
            if let Some(reply) = reply {
                // The requester may have given up (timeout); the reload happened regardless.
                let _ = reply.send(outcome);
            }
        }
    }

    /// One reload: prepared off the runtime's workers, applied by the run loop, counted and logged.
    async fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let (file, running, templates, credentials) = (
            self.file.clone(),
            self.running.clone(),
            self.templates.clone(),
            self.credentials.clone(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let loaded = Config::load(file.as_deref());
            prepare(&running, &templates, loaded, credentials.as_ref())
        })
        .await
        .unwrap_or_else(|_| Err(ReloadError::Stopped));
        let applied = match prepared {
            Ok(prepared) => self.hand_over(prepared).await,
            Err(e) => Err(e),
        };
        match &applied {
            Ok(report) => {
                self.metrics.reload(true);
                log_applied(report);
            }
            Err(e) => {
                self.metrics.reload(false);
                for message in e.messages() {
                    tracing::error!(error = %message, "reload refused; the running templates and settings stay");
                }
            }
        }
        applied
    }

    /// Hands `prepared` to the run loop and waits until it is in use.
    async fn hand_over(&mut self, prepared: Prepared) -> Result<ReloadReport, ReloadError> {
        let Prepared {
            config,
            templates,
            report,
        } = prepared;
        let (done, in_use) = oneshot::channel();
        let reload = Reload {
            templates: templates.clone(),
            policy: config.policy.clone(),
            done,
        };
        self.apply.send(reload).await.map_err(|_| ReloadError::Stopped)?;
        in_use.await.map_err(|_| ReloadError::Stopped)?;
        self.running = config;
        self.templates = templates;
        Ok(report)
    }
}

/// One line for what a reload changed, and one warning naming what needs a restart.
fn log_applied(report: &ReloadReport) {
    let t = &report.templates;
    tracing::info!(
        tables_added = ?t.added,
        tables_removed = ?t.removed,
        tables_changed = ?t.changed,
        setup_changed = t.setup_changed,
        policy_keys = ?report.policy_keys,
        "reloaded: the next start of each table uses the new templates; running jobs keep theirs"
    );
    if !report.needs_restart.is_empty() {
        tracing::warn!(keys = ?report.needs_restart, "changes that need a restart were not applied");
    }
}

/// Checks `loaded` (the configuration as read again) and the templates it names exactly as start-up does, and
/// works out what changes from `running` (and `templates`): the new configuration in use, the new templates, and
/// the report. `credentials` are checked when the launcher submits the statements.
fn prepare(
    running: &Config,
    templates: &Templates,
    loaded: Result<Config, ConfigErrors>,
    credentials: Option<&Credentials>,
) -> Result<Prepared, ReloadError> {
    let loaded = loaded.map_err(ReloadError::Config)?;
    let keys = KeyChanges::between(running, &loaded);
    // Everything but the reloadable keys stays as the process started: the templates are rendered with the
    // same connection settings, read from the same folder.
    let mut config = running.clone();
    config.policy = PolicyConfig {
        include: running.policy.include.clone(),
        exclude: running.policy.exclude.clone(),
        ..loaded.policy
    };
    let new_templates = Templates::load(&config).map_err(ReloadError::Templates)?;
    config
        .check_templated_topics(&new_templates.tables())
        .map_err(ReloadError::Config)?;
    if let Some(credentials) = credentials {
        new_templates
            .require_credentials(credentials)
            .map_err(ReloadError::Credentials)?;
    }
    let changes = templates.changes(&new_templates);
    if !changes.removed.is_empty() {
        return Err(ReloadError::TablesRemoved(changes.removed));
    }
    for warning in config.policy.warnings() {
        tracing::warn!("{warning}");
    }
    let mut needs_restart = keys.needs_restart;
    needs_restart.extend(changes.added.iter().map(|t| format!("tables.{t}")));
    Ok(Prepared {
        config,
        templates: Arc::new(new_templates),
        report: ReloadReport {
            templates: changes,
            policy_keys: keys.applied,
            needs_restart,
        },
    })
}

/// The dotted keys whose value differs between two configurations, split into those a reload applies and those
/// that need a restart.
#[derive(Debug, Default, PartialEq, Eq)]
struct KeyChanges {
    applied: Vec<String>,
    needs_restart: Vec<String>,
}

impl KeyChanges {
    fn between(running: &Config, loaded: &Config) -> Self {
        let (old, new) = (leaves(running), leaves(loaded));
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let mut changes = KeyChanges::default();
        for key in keys.into_iter().filter(|k| old.get(*k) != new.get(*k)) {
            if reloadable(key) {
                changes.applied.push(key.clone());
            } else {
                changes.needs_restart.push(key.clone());
            }
        }
        changes
    }
}

/// Whether a reload applies the dotted `key`: `policy.<k>` for `k` in [`RELOADABLE_POLICY_KEYS`].
fn reloadable(key: &str) -> bool {
    key.strip_prefix("policy.")
        .and_then(|rest| rest.split('.').next())
        .is_some_and(|first| RELOADABLE_POLICY_KEYS.contains(&first))
}

/// Every value of `config` by dotted key (lists are one value; secrets as the configuration shows them, redacted).
fn leaves(config: &Config) -> BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, value: serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let key = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&key, value, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf);
            }
        }
    }
    let mut out = BTreeMap::new();
    // Every field is a plain value, string, list or table (as `Config::to_toml` relies on).
    if let Ok(value) = serde_json::to_value(config) {
        walk("", value, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::TableOverrides;
    use crate::sql::TABLES_DIR;

    fn sql_dir() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(TABLES_DIR)).expect("tables dir");
        let mut config = Config::default();
        config.flink.sql_dir = Some(dir.path().to_owned());
        (dir, config)
    }

    #[test]
    fn policy_keys_apply_and_every_other_key_needs_a_restart() {
        let running = Config::default();
        let mut loaded = running.clone();
        loaded.policy.idle_timeout = Duration::from_secs(5);
        loaded.policy.tables.insert(
            "room".into(),
            TableOverrides {
                paused: Some(true),
                ..TableOverrides::default()
            },
        );
        loaded.policy.exclude = vec!["payment".into()];
        loaded.kafka.bootstrap = vec!["elsewhere:9092".into()];
        loaded.flink.starts_per_minute += 1;
        let changes = KeyChanges::between(&running, &loaded);
        assert_eq!(changes.applied, ["policy.idle_timeout", "policy.tables.room.paused"]);
        assert_eq!(
            changes.needs_restart,
            ["flink.starts_per_minute", "kafka.bootstrap", "policy.exclude"]
        );
        assert_eq!(KeyChanges::between(&running, &running), KeyChanges::default());
    }

    #[test]
    fn a_reload_keeps_what_needs_a_restart_and_takes_the_policy_and_templates() {
        let (dir, running) = sql_dir();
        let templates = Templates::load(&running).expect("templates");
        std::fs::write(dir.path().join(TABLES_DIR).join("room.sql"), "INSERT INTO r SELECT 2;").unwrap();
        std::fs::write(dir.path().join(TABLES_DIR).join("notes.sql"), "INSERT INTO n SELECT 1;").unwrap();
        let mut loaded = running.clone();
        loaded.policy.cooldown = Duration::from_secs(1);
        loaded.policy.include = vec!["room".into()];
        loaded.kafka.bootstrap = vec!["elsewhere:9092".into()];
        loaded.flink.sql_dir = None;
        let prepared = prepare(&running, &templates, Ok(loaded), None).expect("a good set");
        assert_eq!(prepared.config.policy.cooldown, Duration::from_secs(1));
        assert!(prepared.config.policy.include.is_empty(), "include needs a restart");
        assert_eq!(prepared.config.kafka.bootstrap, running.kafka.bootstrap);
        assert_eq!(
            prepared.config.flink.sql_dir, running.flink.sql_dir,
            "read from where it started"
        );
        let report = prepared.report;
        assert_eq!(report.templates.changed, ["room"]);
        assert_eq!(report.templates.added, ["notes"]);
        assert_eq!(report.policy_keys, ["policy.cooldown"]);
        assert_eq!(
            report.needs_restart,
            ["flink.sql_dir", "kafka.bootstrap", "policy.include", "tables.notes"]
        );
        let room = prepared
            .templates
            .render("room", &Credentials::redacted())
            .expect("room");
        assert_eq!(room.last().map(String::as_str), Some("INSERT INTO r SELECT 2"));
    }

    #[test]
    fn a_bad_set_is_refused_with_start_ups_messages() {
        let (dir, running) = sql_dir();
        let templates = Templates::load(&running).expect("templates");
        let file = dir.path().join(TABLES_DIR).join("room.sql");
        std::fs::write(&file, "INSERT INTO r SELECT 1;\nSELECT '{{ topic ';").unwrap();
        let start_up = chain(&Templates::load(&running).expect_err("start-up refuses it")).to_string();
        let refused = prepare(&running, &templates, Ok(running.clone()), None).expect_err("refused");
        assert_eq!(refused.messages(), std::slice::from_ref(&start_up));
        assert!(
            start_up.contains("room.sql") && start_up.contains("line 2"),
            "{start_up}"
        );

        // A configuration start-up refuses: its errors, one line each.
        std::fs::remove_file(&file).unwrap();
        let config_file = dir.path().join("bad.toml");
        std::fs::write(&config_file, "[policy]\nidle_timeout = \"0s\"\nnope = 1\n").unwrap();
        let loaded = Config::load(Some(&config_file));
        let refused = prepare(&running, &templates, loaded, None).expect_err("refused");
        let messages = refused.messages();
        assert!(
            messages.iter().all(|m| m.starts_with("invalid configuration: ")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("nope")), "{messages:?}");
    }

    #[test]
    fn removing_a_table_needs_a_restart() {
        let (dir, running) = sql_dir();
        let file = dir.path().join(TABLES_DIR).join("notes.sql");
        std::fs::write(&file, "INSERT INTO n SELECT 1;").unwrap();
        let templates = Templates::load(&running).expect("templates");
        std::fs::remove_file(&file).unwrap();
        let refused = prepare(&running, &templates, Ok(running.clone()), None).expect_err("refused");
        assert_eq!(
            refused.messages(),
            ["no template left for table(s) notes: removing a table needs a restart"]
        );
    }

    #[test]
    fn a_missing_credential_is_refused_for_a_launcher_that_submits() {
        let (dir, mut running) = sql_dir();
        running.sink.kind = crate::config::SinkKind::Jdbc;
        let templates = Templates::load(&running).expect("templates");
        std::fs::write(
            dir.path().join(TABLES_DIR).join("room.sql"),
            "INSERT INTO r SELECT '{{ jdbc_password }}';",
        )
        .unwrap();
        let refused =
            prepare(&running, &templates, Ok(running.clone()), Some(&Credentials::default())).expect_err("refused");
        assert!(refused.messages()[0].contains("is not set"), "{:?}", refused.messages());
        // A dry run checks no credential, as at start-up.
        assert!(prepare(&running, &templates, Ok(running.clone()), None).is_ok());
    }
}
