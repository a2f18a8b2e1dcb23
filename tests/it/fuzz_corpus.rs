//! Replays the fuzz seed corpus and every saved fuzz crash on stable, so CI keeps them fixed without nightly.

use std::path::{Path, PathBuf};

use cdc_orchestrator::decoder::{Decoded, decode};

#[path = "../../fuzz/input.rs"]
mod input;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// The same checks as the fuzz target, plus that the answer is one JSON object with a `kind`.
fn replay(path: &Path) -> Decoded {
    let data = std::fs::read(path).expect("read corpus file");
    let (topic, value) = input::split(&data);
    let decoded = decode(topic, None, value);
    let line = serde_json::to_string(&decoded).expect("serializes");
    assert!(!line.contains('\n'), "{}: answer spans lines: {line}", path.display());
    let answer: serde_json::Value = serde_json::from_str(&line).expect("answer is JSON");
    assert_eq!(answer["kind"], decoded.kind(), "{}", path.display());
    decoded
}

#[test]
fn every_seed_decodes_without_panic() {
    let corpus = files("fuzz/corpus/decode");
    assert!(corpus.len() >= 30, "seed corpus has only {} files", corpus.len());
    let kinds: std::collections::BTreeSet<&str> = corpus.iter().map(|path| replay(path).kind()).collect();
    // The seeds exercise every kind but `tombstone`, which needs no value at all.
    for kind in [
        "change",
        "heartbeat",
        "transaction",
        "message",
        "schema_change",
        "opaque",
        "invalid",
    ] {
        assert!(kinds.contains(kind), "no seed decodes to {kind}: {kinds:?}");
    }
}

#[test]
fn every_saved_crash_decodes_without_panic() {
    for path in files("fuzz/artifacts/decode") {
        replay(&path);
    }
}
