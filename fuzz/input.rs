//! How a fuzz input becomes a record, shared by the fuzz target and the stable replay test
//! (`tests/it/fuzz_corpus.rs`), so both run the very same call.

/// The topics a record can arrive on, one per way `decode` looks at the topic.
pub const TOPICS: [&str; 4] = [
    "university-server.public.faculty",
    "__debezium-heartbeat.university-server",
    "university-server.transaction",
    "university-server",
];

/// The first byte picks the topic (modulo [`TOPICS`]), the rest is the value. An empty input is a tombstone.
pub fn split(data: &[u8]) -> (&'static str, Option<&[u8]>) {
    match data.split_first() {
        Some((&selector, value)) => (TOPICS[usize::from(selector) % TOPICS.len()], Some(value)),
        None => (TOPICS[0], None),
    }
}
