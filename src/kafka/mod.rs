//! The Kafka side: connections and protocol, partition watermarks, consumer lag, record samples, TLS/SASL, and
//! which table a sampled change counts for.
//!
//! - [`watcher`] drives it: every poll it reads watermarks ([`watermarks`]), samples the partitions that advanced
//!   ([`samples`], through rskafka), and now and then reads lag ([`lag`]); it reports [`watcher::WatchEvent`]s.
//! - [`connection`] is our own Kafka connection (ApiVersions negotiation, [`sasl`], [`tls`]) for watermarks and lag;
//!   rskafka's connections, with the same TLS and SASL settings, fetch the samples.
//! - [`control`] tells a small lag made only of transaction markers (control records) from real unprocessed records.
//! - [`routing`] decides which table a sampled change counts for; a topic's own table is
//!   [`crate::config::KafkaConfig::table_of_topic`]'s answer, the one rule between topics and tables.

pub mod connection;
pub mod control;
pub mod lag;
pub mod requests;
pub mod routing;
pub mod samples;
pub mod sasl;
pub mod tls;
pub mod watcher;
pub mod watermarks;
