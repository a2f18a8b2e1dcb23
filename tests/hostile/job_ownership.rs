//! Issue 24: job_ownership.
