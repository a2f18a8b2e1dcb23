//! `cargo +nightly fuzz run decode`: any bytes on any kind of topic decode to an answer that serializes to
//! exactly one JSON line; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../input.rs"]
mod input;

fuzz_target!(|data: &[u8]| {
    let (topic, value) = input::split(data);
    let decoded = cdc_orchestrator::decoder::decode(topic, None, value);
    let line = serde_json::to_string(&decoded).expect("an answer always serializes");
    assert!(!line.contains('\n'), "answer spans lines: {line}");
});
