//! `cdc-orchestrator decode`: Debezium records in (fixture JSON lines, or one raw value), one JSON answer out per
//! record, as [`crate::decoder::decode`] sees it.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::decoder::{self, Decoded, json_error};

/// Decodes `file` (`-`: standard input) as fixture lines, or with `raw` standard input as one value of `topic`:
/// exit 2 when the file cannot be opened, 1 when reading or writing fails.
pub fn command(file: &Path, raw: bool, topic: Option<&str>) -> ExitCode {
    // Standard output is line-buffered: unbuffered, every answer was a `write` of its own, a quarter of the run.
    let stdout = BufWriter::with_capacity(OUTPUT_BUFFER, std::io::stdout().lock());
    let stdin = std::io::stdin().lock();
    let result = match (raw, topic) {
        (true, Some(topic)) => decode_raw(topic, stdin, stdout),
        _ if file.as_os_str() == "-" => decode_lines(stdin, stdout),
        _ => match std::fs::File::open(file) {
            Ok(f) => decode_lines(BufReader::with_capacity(INPUT_BUFFER, f), stdout),
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

/// Bytes of answers collected before one `write`.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// Bytes of input read at a time: fixture lines of a kilobyte or more would otherwise take a `read` per few lines.
const INPUT_BUFFER: usize = 64 * 1024;

fn invalid(error: String) -> Decoded {
    Decoded::Invalid { error }
}

/// One line of the fixture format: `{"topic": "...", "key": base64|null, "value": base64|null}`; other fields
/// (such as a fixture's `name` and `expect`) are ignored. Borrowed from the line unless a string holds escapes.
#[derive(Debug, Deserialize)]
struct InputLine<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(default, borrow)]
    key: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    value: Option<Cow<'a, str>>,
}

/// Decodes every line of `input` (the fixture JSON-lines format) and writes one JSON answer per line to
/// `output`, in order. A line that is not valid input gets an `invalid` answer naming the line; nothing stops
/// the run but an I/O error. Returns how many lines were answered. `output` is flushed also when reading or
/// writing fails, so that the answers before the failure are not lost in a buffer.
pub fn decode_lines(input: impl BufRead, mut output: impl Write) -> std::io::Result<u64> {
    let answered = answer_lines(input, &mut output);
    let flushed = output.flush();
    let answered = answered?;
    flushed?;
    Ok(answered)
}

/// [`decode_lines`] without the final flush.
fn answer_lines(mut input: impl BufRead, output: &mut impl Write) -> std::io::Result<u64> {
    let mut answered = 0;
    // Reused from line to line: the line read, and the decoded key and value.
    let (mut line, mut key, mut value) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        answered += 1;
        let decoded = match serde_json::from_slice::<InputLine<'_>>(line.trim_ascii()) {
            Err(e) => invalid(format!("input line {answered}: {}", json_error(&e))),
            Ok(record) => {
                let key = base64_into(record.key.as_deref(), &mut key);
                let value = base64_into(record.value.as_deref(), &mut value);
                match (key, value) {
                    (Ok(key), Ok(value)) => decoder::decode(&record.topic, key, value),
                    (Err(e), _) => invalid(format!("input line {answered}: key is not base64: {e}")),
                    (_, Err(e)) => invalid(format!("input line {answered}: value is not base64: {e}")),
                }
            }
        };
        serde_json::to_writer(&mut *output, &decoded)?;
        output.write_all(b"\n")?;
    }
    Ok(answered)
}

/// Decodes `text`, when there is one, into `buffer` (cleared first) and borrows the result from it.
fn base64_into<'b>(text: Option<&str>, buffer: &'b mut Vec<u8>) -> Result<Option<&'b [u8]>, base64::DecodeError> {
    use base64::Engine as _;
    let Some(text) = text else { return Ok(None) };
    buffer.clear();
    base64::engine::general_purpose::STANDARD.decode_vec(text, buffer)?;
    Ok(Some(buffer.as_slice()))
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

    #[test]
    fn escaped_strings_in_a_line_decode_as_their_plain_form() {
        // `\/` in base64 and `\u002e` in the topic: JSON escapes, which a borrowed field could not hold.
        let value = r#"{"op":"c","source":{"table":"tab?"}}"#;
        let plain = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, value);
        assert!(plain.contains('/'), "{plain}");
        let escaped = plain.replace('/', "\\/");
        let lines = format!(
            "{{\"topic\":\"s.public.faculty\",\"value\":\"{plain}\"}}\n{{\"topic\":\"s\\u002epublic.faculty\",\"value\":\"{escaped}\"}}\n"
        );
        let mut out = Vec::new();
        assert_eq!(decode_lines(lines.as_bytes(), &mut out).expect("io"), 2);
        let out = String::from_utf8(out).expect("utf-8");
        let answers: Vec<&str> = out.lines().collect();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], answers[1]);
        assert!(answers[0].contains(r#""table":"tab?""#), "{}", answers[0]);
    }

    /// A writer whose bytes count only once flushed, like a buffer in front of standard output.
    #[derive(Default)]
    struct Flushed {
        pending: Vec<u8>,
        flushed: Vec<u8>,
    }

    impl Write for Flushed {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.pending.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushed.append(&mut self.pending);
            Ok(())
        }
    }

    #[test]
    fn answers_before_a_read_error_are_flushed() {
        let first = "{\"topic\":\"s.public.faculty\",\"value\":null}\n";
        let failing = first.as_bytes().chain(FailingRead);
        let mut out = Flushed::default();
        let error = decode_lines(BufReader::new(failing), &mut out).expect_err("the read fails");
        assert_eq!(error.kind(), std::io::ErrorKind::Other);
        assert_eq!(
            String::from_utf8(out.flushed).expect("utf-8"),
            "{\"kind\":\"tombstone\",\"table\":\"faculty\"}\n"
        );
    }

    struct FailingRead;

    impl Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk gone"))
        }
    }
}
