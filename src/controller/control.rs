//! The control protocol between the HTTP server and the run loop: an operator command goes in over an `mpsc`
//! channel with a `oneshot` for the answer, and every table's status comes out on a `watch` channel.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::RunLoop;
use crate::flink::Launcher;
pub use crate::policy::ControlCommand;
use crate::policy::{Input, TableStatus};

/// The latest view of every table, published by the run loop.
pub type TablesSnapshot = Arc<BTreeMap<String, TableStatus>>;

/// Why the run loop refused a control command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The table is not managed by this sidecar (no SQL template, excluded, or not a table name).
    #[error("unknown table: {0}")]
    UnknownTable(String),
    /// This replica does not lead: the leader (named when known) takes commands.
    #[error("not the leader{}", match leader { Some(l) => format!(" (the leader is {l})"), None => String::new() })]
    NotLeader {
        /// Who leads, when known.
        leader: Option<String>,
    },
}

/// A control command on its way to the run loop, with the channel for the answer.
#[derive(Debug)]
pub struct ControlRequest {
    /// The table.
    pub table: String,
    /// What to do.
    pub command: ControlCommand,
    /// Where the run loop answers with the table's new status.
    pub reply: oneshot::Sender<Result<TableStatus, ControlError>>,
}

impl<L: Launcher + 'static> RunLoop<L> {
    /// Carries out an operator command through the policy and answers with the table's new status.
    pub(super) fn on_control(&mut self, request: ControlRequest) {
        let ControlRequest { table, command, reply } = request;
        let answer = if !self.term.leading {
            Err(ControlError::NotLeader {
                leader: self.term.leader(),
            })
        } else if !self.managed.contains(&table) {
            Err(ControlError::UnknownTable(table))
        } else {
            let input = Input::Operator {
                table: table.clone(),
                command,
            };
            tracing::info!(%table, ?command, "operator command");
            self.feed(input);
            self.policy
                .status(&table)
                .ok_or_else(|| ControlError::UnknownTable(table.clone()))
        };
        // The requester may have given up (timeout); nothing to do then.
        let _ = reply.send(answer);
    }
}
