//! Why an attempt to read or write the Lease failed.

use std::path::PathBuf;

/// Why the Lease could not be read or written, or the elector not built. Every variant renders as one line; text
/// from the API server is bounded and stripped of control characters; the token is never part of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// A service account file is missing: not running in a pod, or no service account mounted.
    #[error(
        "cannot read {} (no Kubernetes service account mounted?); mount one, set the leader_election keys that \
         name the files, or set leader_election.enabled = false to run without leader election",
        path.display()
    )]
    NoServiceAccount {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A credential file is there but unusable.
    #[error("{}: {reason}", path.display())]
    Credential {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting could not be resolved (the identity, the namespace, the API server's address).
    #[error("{key}: {reason}")]
    Setting {
        /// The configuration key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the Kubernetes API client")]
    Client(#[source] reqwest::Error),
    /// 409: another replica wrote first (a lost race, not a failure).
    #[error("the Lease changed under us (HTTP 409): {message}")]
    Conflict {
        /// The API server's message.
        message: String,
    },
    /// 404: the Lease does not exist.
    #[error("the Lease does not exist (HTTP 404)")]
    NotFound,
    /// 401: the token was refused.
    #[error("the API server refused the token of {} (HTTP 401): expired or not this cluster's", token_file.display())]
    Unauthorized {
        /// The token's file.
        token_file: PathBuf,
    },
    /// 403: the service account may not do this.
    #[error(
        "the API server forbids it (HTTP 403; the service account needs a Role allowing get, create and update on \
         leases in coordination.k8s.io): {message}"
    )]
    Forbidden {
        /// The API server's message.
        message: String,
    },
    /// Another error status.
    #[error("the API server answered HTTP {code} {reason}: {message}")]
    Status {
        /// The HTTP status.
        code: u16,
        /// The Status body's reason.
        reason: String,
        /// Its message, or the start of the body.
        message: String,
    },
    /// A redirect, which is never followed (it would send the token elsewhere).
    #[error("the API server answered a redirect (HTTP {code}), which is not followed")]
    Redirect {
        /// The HTTP status.
        code: u16,
    },
    /// No answer: refused, reset, timed out, TLS failed.
    #[error("cannot reach the Kubernetes API server")]
    Transport(#[source] reqwest::Error),
    /// No answer within the time left (the renew deadline for a leader).
    #[error("the Kubernetes API server did not answer in time")]
    Timeout,
    /// An answer that is not what the API server writes.
    #[error("the API server answered garbage: {what}")]
    Garbage {
        /// What came.
        what: String,
    },
}
