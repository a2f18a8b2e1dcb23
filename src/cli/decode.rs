//! `cdc-orchestrator decode`: Debezium records in (fixture JSON lines, or one raw value), one JSON answer out per
//! record, as [`crate::decoder::decode`] sees it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::decoder::{self, Decoded, json_error};

/// Decodes `file` (`-`: standard input) as fixture lines, or with `raw` standard input as one value of `topic`:
/// exit 2 when the file cannot be opened, 1 when reading or writing fails.
pub fn command(file: &Path, raw: bool, topic: Option<&str>) -> ExitCode {
    let (stdin, stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
    let result = match (raw, topic) {
        (true, Some(topic)) => decode_raw(topic, stdin, stdout),
        _ if file.as_os_str() == "-" => decode_lines(stdin, stdout),
        _ => match std::fs::File::open(file) {
            Ok(f) => decode_lines(BufReader::new(f), stdout),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn invalid(error: String) -> Decoded {
    Decoded::Invalid { error }
}

/// One line of the fixture format: `{"topic": "...", "key": base64|null, "value": base64|null}`; other fields
/// (such as a fixture's `name` and `expect`) are ignored.
#[derive(Debug, Deserialize)]
struct InputLine {
    topic: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// Decodes every line of `input` (the fixture JSON-lines format) and writes one JSON answer per line to
/// `output`, in order. A line that is not valid input gets an `invalid` answer naming the line; nothing stops
/// the run but an I/O error. Returns how many lines were answered.
pub fn decode_lines(input: impl BufRead, mut output: impl Write) -> std::io::Result<u64> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut answered = 0;
    let mut line = Vec::new();
    let mut input = input;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        answered += 1;
        let decoded = match serde_json::from_slice::<InputLine>(line.trim_ascii()) {
            Err(e) => invalid(format!("input line {answered}: {}", json_error(&e))),
            Ok(record) => {
                let key = record.key.map(|k| b64.decode(k)).transpose();
                let value = record.value.map(|v| b64.decode(v)).transpose();
                match (key, value) {
                    (Ok(key), Ok(value)) => decoder::decode(&record.topic, key.as_deref(), value.as_deref()),
                    (Err(e), _) => invalid(format!("input line {answered}: key is not base64: {e}")),
                    (_, Err(e)) => invalid(format!("input line {answered}: value is not base64: {e}")),
                }
            }
        };
        serde_json::to_writer(&mut output, &decoded)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(answered)
}

/// Decodes one record whose raw value bytes are all of `input`, writing its JSON answer to `output`.
pub fn decode_raw(topic: &str, mut input: impl Read, mut output: impl Write) -> std::io::Result<u64> {
    let mut value = Vec::new();
    input.read_to_end(&mut value)?;
    serde_json::to_writer(&mut output, &decoder::decode(topic, None, Some(&value)))?;
    output.write_all(b"\n")?;
    output.flush()?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_lines_answers_every_line_in_order() {
        let input = concat!(
            r#"{"name":"a","topic":"s.public.faculty","key":null,"value":null,"expect":{}}"#,
            "\n",
            "garbage\n",
            r#"{"topic":"s.public.faculty","value":"!!!"}"#,
            "\n",
            r#"{"topic":"s.public.faculty","value":"eyJvcCI6ImMiLCJzb3VyY2UiOnt9fQ=="}"#,
            "\n"
        );
        let mut out = Vec::new();
        assert_eq!(decode_lines(input.as_bytes(), &mut out).expect("io"), 4);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines[0]["kind"], "tombstone");
        assert_eq!(lines[1]["kind"], "invalid");
        assert!(lines[1]["error"].as_str().expect("error").starts_with("input line 2:"));
        assert!(lines[2]["error"].as_str().expect("error").contains("not base64"));
        assert_eq!(lines[3]["op"], "c");
    }
}
