//! The Kafka side: connections and protocol, partition watermarks, consumer lag, record samples, TLS/SASL, and the
//! rule that names a topic's table.

pub mod connection;
pub mod lag;
pub mod naming;
pub mod routing;
pub mod samples;
pub mod sasl;
pub mod tls;
pub mod watcher;
pub mod watermarks;
