//! The shared vocabulary: what a table name, a job id, a job state, a listed job, a Debezium operation and a point
//! in time are, and the rules that name a table's topic and job and pin a job's id.
//!
//! Owns: [`TableName`] (the one table-name rule), [`JobId`] and [`JobState`] (with their parsing of Flink's
//! text), [`JobSummary`] (one job of a listing), how a start's job id is pinned ([`job_id_for`],
//! [`launch_generation`]), [`Op`], [`Millis`] and [`now_ms`], and [`naming`]. Every layer (config, policy, kafka,
//! decoder, flink, http, telemetry) imports it; it imports nothing of the crate, only `std`, `serde` and `sha2`,
//! so it can never be part of a circle.

mod drift;
mod generation;
mod job;
pub mod naming;
mod op;
mod table;
mod time;

pub use drift::{OnSchemaDrift, SchemaDrift};
pub use generation::{GENERATION_BITS, job_id_for, launch_generation};
pub use job::{JobId, JobState, JobSummary};
pub use naming::{JOB_NAME_PREFIX, job_name, table_of_job};
pub use op::Op;
pub use table::{InvalidTableName, TableName};
pub use time::{Millis, now_ms};
