//! Process signals as a cancellation token: every long-running task takes the token, SIGTERM or SIGINT
//! cancels it, and the tasks wind down on their own terms (mini-redis style), within a bound. SIGHUP, whose default
//! action ends the process, never does: `run` takes it as a request to reload ([`on_signals_and_hangups`]), every
//! other command logs and ignores it. Handlers work for PID 1 too (a container's only process): the kernel drops
//! only the signals PID 1 has no handler for.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exit status of a process ended by a second signal or by the end of its grace period: not a clean shutdown.
pub const EXIT_ABANDONED: i32 = 1;

/// A token cancelled by the first SIGTERM or SIGINT; SIGHUP is logged and ignored from now on. After the first
/// signal the process has `grace` to wind down: a second SIGTERM or SIGINT, or the end of `grace`, exits at once
/// with [`EXIT_ABANDONED`] and one log line saying why, whatever is still in flight (an operator who signals twice
/// wants the process gone; an orchestrator's kill timeout should not be what ends it). Must be called inside a
/// tokio runtime.
pub fn on_signals(grace: Duration) -> CancellationToken {
    ignore_hangups(None);
    cancel_on_signals(grace)
}

/// As [`on_signals`], but each SIGHUP is sent on the returned channel (a reload request) rather than ignored.
/// The channel holds one: SIGHUPs that arrive while a reload waits to be taken are that reload. Must be called
/// inside a tokio runtime.
pub fn on_signals_and_hangups(grace: Duration) -> (CancellationToken, tokio::sync::mpsc::Receiver<()>) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    ignore_hangups(Some(tx));
    (cancel_on_signals(grace), rx)
}

fn cancel_on_signals(grace: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
        tokio::select! {
            () = wait_for_signal() => {
                tracing::warn!("second shutdown signal received: exiting now, abandoning what is in flight");
            }
            () = tokio::time::sleep(grace) => {
                tracing::warn!(
                    grace = ?grace,
                    "shutdown did not finish within its grace period: exiting now, abandoning what is in flight"
                );
            }
        }
        std::process::exit(EXIT_ABANDONED);
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
            tracing::warn!(error = %crate::logging::chain(&e), "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Replaces SIGHUP's default action (terminate) with a send on `reloads` or, without it (or once its receiver is
/// gone), a log line. The handler is installed before this returns, so no SIGHUP after it can kill the process.
#[cfg(unix)]
fn ignore_hangups(reloads: Option<tokio::sync::mpsc::Sender<()>>) {
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::sync::mpsc::error::TrySendError;
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    match reloads.as_ref().map(|r| r.try_send(())) {
                        Some(Ok(())) => {}
                        Some(Err(TrySendError::Full(()))) => {
                            tracing::info!("SIGHUP received: a reload is already waiting");
                        }
                        Some(Err(TrySendError::Closed(()))) | None => tracing::warn!(
                            "SIGHUP received and ignored: this command reads its configuration only at start"
                        ),
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %crate::logging::chain(&e), "cannot listen for SIGHUP; it will end the process")
        }
    }
}

#[cfg(not(unix))]
fn ignore_hangups(_reloads: Option<tokio::sync::mpsc::Sender<()>>) {}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
