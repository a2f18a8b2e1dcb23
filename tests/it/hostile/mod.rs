//! Hostile input, second round (issue 24): fake Kafka brokers and Flink servers on loopback that lie, stall,
//! redirect or answer too much, thrown at the real client code and the real binary. A module per area of attack.

mod control_records;
mod flink_answers;
mod http_surface;
mod job_ownership;
mod kafka_frames;
