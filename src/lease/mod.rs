//! Leader election: which of two replicas may act on Flink.
//!
//! With `[leader_election]` on, replicas compete for a Kubernetes `coordination.k8s.io/v1` Lease with client-go's
//! semantics; the one holding it leads. Everything that changes Flink asks a [`LeaseGuard`] first, which answers
//! from the leader's own monotonic clock (the lease it last renewed, and when), so a paused or cut-off leader stops
//! acting before the lease can expire for the others. Without election a replica is always the leader.
//!
//! Owns the Lease client, the elector and the role it publishes. May import [`crate::config`], [`crate::model`],
//! [`crate::logging`], [`crate::backoff`], [`crate::shutdown`], [`crate::http_client`] and [`crate::telemetry`];
//! [`crate::flink`] (the guard before each call that changes something), [`crate::http`] (the role it reports) and
//! the layers above import it.

mod elector;
mod error;
pub mod kube;

use std::sync::{Arc, Mutex, PoisonError};

pub use elector::{Elector, LeaseApi, MAX_LEASE_SECONDS, Timings, VERSION_ANNOTATION};
pub use error::LeaseError;
pub use kube::KubeClient;

use tokio::sync::watch;
use tokio::time::Instant;

/// What this replica is, as the elector last decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// It holds the lease and may act.
    Leader,
    /// Another replica holds the lease (named when known), or nobody does yet: this one watches and waits.
    Standby {
        /// The holder's identity, as the Lease names it.
        leader: Option<String>,
    },
}

impl Role {
    /// `leader` or `standby`, as `/tables`, `status` and the logs name it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby { .. } => "standby",
        }
    }

    /// Whether this is [`Role::Leader`].
    pub fn is_leader(&self) -> bool {
        matches!(self, Role::Leader)
    }
}

/// The answer of a [`LeaseGuard`] that may not act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not the leader{}", match leader { Some(l) => format!(" (the lease is held by {l})"), None => String::new() })]
pub struct NotLeader {
    /// Who leads, when known.
    pub leader: Option<String>,
}

#[derive(Debug)]
struct Held {
    /// Until when this replica may act: the start of its last successful acquire or renew plus the lease
    /// duration, by its own monotonic clock; `None` while it does not lead.
    valid_until: Option<Instant>,
    /// Who leads, as last seen, for [`NotLeader`].
    leader: Option<String>,
}

/// Asked immediately before every Flink call that changes something. Cheap and cloneable.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    held: Option<Arc<Mutex<Held>>>,
}

impl LeaseGuard {
    /// A guard that always allows: a sidecar without leader election.
    pub fn always() -> LeaseGuard {
        LeaseGuard { held: None }
    }

    /// `Ok` while this replica holds an unexpired lease by its own clock.
    pub fn check(&self) -> Result<(), NotLeader> {
        let Some(held) = &self.held else { return Ok(()) };
        let held = held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.valid_until {
            Some(until) if Instant::now() < until => Ok(()),
            _ => Err(NotLeader {
                leader: held.leader.clone(),
            }),
        }
    }
}

/// This replica's identity, role and guard, shared by the parts that act or report.
#[derive(Debug, Clone)]
pub struct Leadership {
    identity: Arc<str>,
    role: watch::Receiver<Role>,
    guard: LeaseGuard,
}

impl Leadership {
    /// A replica without leader election: always the leader, its guard always allows.
    pub fn always_leader(identity: &str) -> Leadership {
        let (_, role) = watch::channel(Role::Leader);
        Leadership {
            identity: identity.into(),
            role,
            guard: LeaseGuard::always(),
        }
    }

    /// A leadership set by hand through the returned [`LeadershipControl`] (the elector drives one; tests too).
    /// It starts as a standby with no known leader.
    pub fn controlled(identity: &str) -> (Leadership, LeadershipControl) {
        let held = Arc::new(Mutex::new(Held {
            valid_until: None,
            leader: None,
        }));
        let (tx, role) = watch::channel(Role::Standby { leader: None });
        let leadership = Leadership {
            identity: identity.into(),
            role,
            guard: LeaseGuard {
                held: Some(held.clone()),
            },
        };
        let control = LeadershipControl {
            identity: identity.into(),
            held,
            role: tx,
        };
        (leadership, control)
    }

    /// This replica's identity (the pod's name by default).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// A receiver of every change of role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The guard to ask before acting.
    pub fn guard(&self) -> LeaseGuard {
        self.guard.clone()
    }
}

/// Sets a [`Leadership`]'s role and lease: the elector's side.
#[derive(Debug)]
pub struct LeadershipControl {
    identity: Arc<str>,
    held: Arc<Mutex<Held>>,
    role: watch::Sender<Role>,
}

impl LeadershipControl {
    /// This replica holds the lease until `valid_until` (by its own clock): leader, its guard allows until then.
    pub fn lead_until(&self, valid_until: Instant) {
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.valid_until = Some(valid_until);
            held.leader = Some(self.identity.to_string());
        }
        self.role.send_if_modified(|role| {
            let changed = *role != Role::Leader;
            *role = Role::Leader;
            changed
        });
    }

    /// This replica does not lead (`leader` does, when known): its guard refuses from now on.
    pub fn stand_by(&self, leader: Option<String>) {
        {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            held.valid_until = None;
            held.leader.clone_from(&leader);
        }
        let standby = Role::Standby { leader };
        self.role.send_if_modified(|role| {
            let changed = *role != standby;
            *role = standby;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_guard_allows_only_until_the_lease_runs_out_by_the_replicas_own_clock() {
        let (leadership, control) = Leadership::controlled("pod-a");
        let guard = leadership.guard();
        assert_eq!(guard.check(), Err(NotLeader { leader: None }));
        control.lead_until(Instant::now() + Duration::from_secs(15));
        assert_eq!(leadership.role(), Role::Leader);
        assert_eq!(guard.check(), Ok(()));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(
            guard.check().is_err(),
            "expired by its own clock, though nobody said so"
        );
        control.stand_by(Some("pod-b".into()));
        assert_eq!(
            guard.check().map_err(|e| e.to_string()),
            Err("not the leader (the lease is held by pod-b)".to_owned())
        );
        assert_eq!(leadership.role().as_str(), "standby");
        assert_eq!(LeaseGuard::always().check(), Ok(()));
    }
}
