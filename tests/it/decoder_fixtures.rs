//! The shared Debezium fixtures (copied to tests/data) through the library and through the real `decode` command.

use std::io::Write;
use std::process::Stdio;

use base64::Engine as _;
use cdc_orchestrator::decoder::decode;
use serde_json::Value;

use crate::support::sidecar::command;

const FIXTURES: &str = include_str!("../data/debezium-cases.jsonl");

fn cases() -> Vec<Value> {
    FIXTURES
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    v.as_str().map(|s| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("fixture base64")
    })
}

/// `expect` is a subset of the answer: every key it names must match.
fn assert_subset(name: &str, answer: &Value, expect: &Value) {
    for (key, want) in expect.as_object().expect("expect is an object") {
        assert_eq!(&answer[key], want, "{name}: field {key} of {answer}");
    }
}

#[test]
fn every_shared_fixture_decodes_as_expected() {
    let cases = cases();
    assert!(cases.len() >= 15);
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let topic = case["topic"].as_str().expect("topic");
        let decoded = decode(topic, bytes(&case["key"]).as_deref(), bytes(&case["value"]).as_deref());
        let answer = serde_json::to_value(&decoded).expect("serializes");
        assert_subset(name, &answer, &case["expect"]);
    }
}

#[test]
fn the_decode_command_answers_every_line_in_order() {
    let mut input = FIXTURES.to_owned();
    input.push_str("this line is not JSON\n");
    let mut child = command(&["decode"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn decode");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let cases = cases();
    assert_eq!(answers.len(), cases.len() + 1);
    for (case, answer) in cases.iter().zip(&answers) {
        assert_subset(case["name"].as_str().expect("name"), answer, &case["expect"]);
    }
    assert_eq!(answers[cases.len()]["kind"], "invalid");
}

#[test]
fn the_decode_command_reads_one_raw_record() {
    let run = |topic: &str, value: &[u8]| {
        let mut child = command(&["decode", "--raw", "--topic", topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn decode --raw");
        child.stdin.take().expect("stdin").write_all(value).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout).expect("one JSON answer")
    };
    let answer = run("university-server.public.students", br#"{"id":"S1","__op":"u"}"#);
    assert_eq!(
        (answer["kind"].as_str(), answer["table"].as_str(), answer["op"].as_str()),
        (Some("change"), Some("students"), Some("u"))
    );
    let answer = run("university-server.public.students", b"\x00\x00\x00\x00\x01avro");
    assert_eq!(answer["kind"], "opaque");
    let missing = command(&["decode", "/nonexistent/x.jsonl"]).output().expect("run");
    assert_eq!(missing.status.code(), Some(2));
}
