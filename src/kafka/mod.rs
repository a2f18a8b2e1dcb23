//! The Kafka side: connections and protocol, partition watermarks, consumer lag, record samples, TLS/SASL, and
//! which table a sampled change counts for.
//!
//! - [`watcher`] drives it: every poll it reads watermarks ([`watermarks`]), samples the partitions that advanced
//!   ([`samples`]), and now and then reads lag ([`lag`]); it reports [`watcher::WatchEvent`]s. It is built one
//!   way, [`watcher::Watcher::new`], by `run` and `watch` alike.
//! - [`connection`] is our own Kafka connection (ApiVersions negotiation, [`sasl`], [`tls`], every answer bounded by
//!   `kafka.max_response_bytes`, a connection dropped after any failed request) and its [`connection::Pool`], one
//!   per watcher, shared by watermarks, lag and [`control`]. Each request it sends is a [`requests::Request`]
//!   (API key, versions, response type).
//! - [`token`] caches and refreshes the SASL OAUTHBEARER token both kinds of connection send, from the
//!   [`crate::auth::TokenProvider`] that `kafka.sasl` names.
//! - [`samples`] is the only file that uses rskafka, which fetches the record samples with the same TLS, SASL and
//!   size bound.
//! - [`control`] tells a small lag made only of transaction markers (control records) from real unprocessed records.
//! - [`routing`] decides which table a sampled change counts for; a topic's own table is
//!   [`crate::config::KafkaConfig::table_of_topic`]'s answer, which applies the one rule between topics and tables
//!   ([`crate::model::naming`]).
//!
//! May import: [`crate::config`] (its settings), [`crate::auth`] (the SASL token providers), [`crate::decoder`]
//! (what a record is), [`crate::backoff`], and the shared vocabulary and telemetry leaves; never the policy, the controller, Flink, SQL, HTTP or the CLI, which
//! import it.

pub mod connection;
pub mod control;
pub mod lag;
pub mod requests;
pub mod routing;
pub mod samples;
pub mod sasl;
pub mod tls;
pub mod token;
pub mod watcher;
pub mod watermarks;
