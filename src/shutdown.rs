//! Process signals as a cancellation token: every long-running task takes the token, SIGTERM or SIGINT
//! cancels it, and the tasks wind down on their own terms (mini-redis style). SIGHUP, which a closing terminal or
//! a careless `kill -HUP` sends and whose default action ends the process, is logged and ignored: the
//! configuration is read once at start, so a restart applies changes.

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGTERM or SIGINT; SIGHUP is logged and ignored from now on. Must be called
/// inside a tokio runtime.
pub fn on_signals() -> CancellationToken {
    ignore_hangups();
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        // Without a SIGTERM handler, Ctrl-C still works.
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Replaces SIGHUP's default action (terminate) with a log line. The handler is installed before this returns, so
/// no SIGHUP after it can kill the process.
#[cfg(unix)]
fn ignore_hangups() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::warn!(
                        "SIGHUP received and ignored: the configuration is read only at start; restart to apply changes"
                    );
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP; it will end the process"),
    }
}

#[cfg(not(unix))]
fn ignore_hangups() {}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
