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
            eprintln!("error: {}", crate::logging::chain(&e));
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
    let mut answer = Answer::new();
    // Lines that arrived whole in the reader's buffer are read there; one across the buffer's end (or the last
    // one, without a newline) is copied into `line`. Copying every line cost a few percent of a run.
    let mut line = Vec::new();
    loop {
        let buffered = input.fill_buf()?;
        if buffered.is_empty() {
            break;
        }
        answered += 1;
        if let Some(end) = memchr::memchr(b'\n', buffered) {
            let decoded = answer.line(&buffered[..end], answered);
            input.consume(end + 1);
            decoded.write_json(output)?;
        } else {
            line.clear();
            input.read_until(b'\n', &mut line)?;
            answer.line(&line, answered).write_json(output)?;
        }
        output.write_all(b"\n")?;
    }
    Ok(answered)
}

/// What answers lines, with what it reuses from line to line: the base64 engine and the decoded key and value.
struct Answer {
    base64: Base64,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Answer {
    fn new() -> Answer {
        Answer {
            base64: Base64::new(),
            key: Vec::new(),
            value: Vec::new(),
        }
    }

    /// The answer to `line`, the `number`th (its newline included or not).
    fn line(&mut self, line: &[u8], number: u64) -> Decoded {
        let line = line.trim_ascii();
        if let Some(plain) = PlainLine::parse(line) {
            let key = self.base64.decode_into(plain.key, &mut self.key);
            let value = self.base64.decode_into(plain.value, &mut self.value);
            if let (Ok(key), Ok(value)) = (key, value) {
                return decoder::decode(plain.topic, key, value);
            }
        }
        self.serde_line(line, number)
    }

    /// The answer to `line` (trimmed) as serde reads it: the reference for every line, and the reader of all
    /// but plain ones.
    fn serde_line(&mut self, line: &[u8], number: u64) -> Decoded {
        match serde_json::from_slice::<InputLine<'_>>(line) {
            Err(e) => invalid(format!("input line {number}: {}", json_error(&e))),
            Ok(record) => {
                let key = self
                    .base64
                    .decode_into(record.key.as_deref().map(str::as_bytes), &mut self.key);
                let value = self
                    .base64
                    .decode_into(record.value.as_deref().map(str::as_bytes), &mut self.value);
                match (key, value) {
                    (Ok(key), Ok(value)) => decoder::decode(&record.topic, key, value),
                    (Err(e), _) => invalid(format!("input line {number}: key is not base64: {e}")),
                    (_, Err(e)) => invalid(format!("input line {number}: value is not base64: {e}")),
                }
            }
        }
    }
}

/// A line in the plain form the format's writers produce: an object of `topic`, `key` and `value` alone, each
/// once, in any order, strings without escapes, `key` and `value` base64 or `null`.
///
/// Read by hand because serde's reading of [`InputLine`] was 6-7% of a run (perf, 200,000 benchmark lines): it
/// checks the ~1.2 KB of base64 eight bytes a step for escapes and control characters, and base64 decoding
/// checks every byte again.
/// Here the strings' ends are found with `memchr` (SIMD), and a key or value string is only ever used once it
/// decoded as base64, which admits no escape, control character or non-ASCII byte. Every other line, and every
/// line whose key or value is not base64, goes to serde as before: the same answers, errors included.
#[derive(Debug, PartialEq)]
struct PlainLine<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

impl<'a> PlainLine<'a> {
    /// `line` (trimmed) as a plain line, or `None` when it is anything else.
    fn parse(line: &'a [u8]) -> Option<PlainLine<'a>> {
        let mut at = Cursor { line, offset: 0 };
        at.expect(b'{')?;
        // Each: not seen yet, or seen with a string or `null`.
        let (mut topic, mut key, mut value) = (None, None, None);
        loop {
            at.skip_space();
            let slot = match at.string()? {
                b"topic" => &mut topic,
                b"key" => &mut key,
                b"value" => &mut value,
                // Another field (a fixture's `name` or `expect`): for serde.
                _ => return None,
            };
            at.skip_space();
            at.expect(b':')?;
            at.skip_space();
            let field = if at.rest().starts_with(b"null") {
                at.offset += 4;
                None
            } else {
                Some(at.string()?)
            };
            if slot.replace(field).is_some() {
                // A duplicate field, an error serde reports.
                return None;
            }
            at.skip_space();
            match at.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        if !at.rest().is_empty() {
            return None;
        }
        // Serde rejects control characters in strings, and needs UTF-8.
        let topic = topic??;
        if topic.iter().any(|&b| b < 0x20) {
            return None;
        }
        Some(PlainLine {
            topic: std::str::from_utf8(topic).ok()?,
            key: key.flatten(),
            value: value.flatten(),
        })
    }
}

/// A position in a line being read by [`PlainLine::parse`].
struct Cursor<'a> {
    line: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.line.get(self.offset..).unwrap_or_default()
    }

    fn next(&mut self) -> Option<u8> {
        let b = *self.line.get(self.offset)?;
        self.offset += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// Skips JSON's white space.
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.line.get(self.offset) {
            self.offset += 1;
        }
    }

    /// A string without escapes, between its quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = self.rest();
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.offset += end + 1;
        Some(&rest[..end])
    }
}

/// The base64 engine of the input lines: standard alphabet, canonical padding (`STANDARD`'s configuration).
///
/// base64's `Simd` engine decodes 32 characters per step with AVX2 (NEON on ARM) when the CPU has it, detected
/// once here, and leaves the rest, and every error, to the same scalar code as `STANDARD`: the same bytes out
/// and the same errors, at a fraction of the cost (the values are ~1.2 KB of base64 each, and `STANDARD` was 14%
/// of a run at the shipped opt-level "s"). Other targets keep `STANDARD` itself.
struct Base64 {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
    engine: base64::engine::Simd,
    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon"))))]
    engine: base64::engine::GeneralPurpose,
}

impl Base64 {
    fn new() -> Base64 {
        Base64 {
            #[cfg(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon")))]
            engine: base64::engine::Simd::standard(base64::engine::general_purpose::PAD),
            #[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_feature = "neon"))))]
            engine: base64::engine::general_purpose::STANDARD,
        }
    }

    /// Decodes `text`, when there is one, into `buffer` (cleared first) and borrows the result from it.
    fn decode_into<'b>(
        &self,
        text: Option<&[u8]>,
        buffer: &'b mut Vec<u8>,
    ) -> Result<Option<&'b [u8]>, base64::DecodeError> {
        use base64::Engine as _;
        let Some(text) = text else { return Ok(None) };
        buffer.clear();
        self.engine.decode_vec(text, buffer)?;
        Ok(Some(buffer.as_slice()))
    }
}

/// Decodes one record whose raw value bytes are all of `input`, writing its JSON answer to `output`.
pub fn decode_raw(topic: &str, mut input: impl Read, mut output: impl Write) -> std::io::Result<u64> {
    let mut value = Vec::new();
    input.read_to_end(&mut value)?;
    decoder::decode(topic, None, Some(&value)).write_json(&mut output)?;
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

    /// Base64 of `text` (standard alphabet, padded).
    fn b64(text: &str) -> String {
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text)
    }

    #[test]
    fn plain_lines_are_read_by_hand() {
        let value = b64(r#"{"op":"c","source":{"table":"t"}}"#);
        let line = format!(r#"{{"topic": "s.public.t", "key": "eyJpZCI6MX0=", "value": "{value}"}}"#);
        assert_eq!(
            PlainLine::parse(line.as_bytes()),
            Some(PlainLine {
                topic: "s.public.t",
                key: Some(b"eyJpZCI6MX0=".as_slice()),
                value: Some(value.as_bytes()),
            })
        );
        let line = b"{ \"value\" :null ,\t\"topic\":\"t\"\r}";
        assert_eq!(
            PlainLine::parse(line),
            Some(PlainLine {
                topic: "t",
                key: None,
                value: None,
            })
        );
    }

    #[test]
    fn every_line_answers_as_serde_reads_it() {
        let value = b64(r#"{"op":"u","source":{"table":"t","schema":"public"},"after":{}}"#);
        let escaped = b64("{\"op\":\"c\",\"source\":{\"table\":\"tab?\"}}").replace('/', "\\/");
        let plain = [
            format!(r#"{{"topic":"s.public.t","key":"eyJpZCI6MX0=","value":"{value}"}}"#),
            format!(r#"{{"value":"{value}","topic":"s.public.t"}}"#),
            r#"{"topic":"s.public.t","key":null,"value":null}"#.to_owned(),
            r#"{"topic":"s.public.t","value":""}"#.to_owned(),
            r#"{"topic":"s.p.t","value":"AAAAAAE="}"#.to_owned(),
            r#"{"topic":"__debezium-heartbeat.s","value":"e30="}"#.to_owned(),
            // Plain, but not base64: serde's path names the error.
            r#"{"topic":"t","value":"!!!"}"#.to_owned(),
            r#"{"topic":"t","key":"e30","value":"e30="}"#.to_owned(),
            r#"{"topic":"t","value":"e3 0="}"#.to_owned(),
            "{\"topic\":\"t\",\"value\":\"e30=\u{1}\"}".to_owned(),
            "{\"topic\":\"t\",\"value\":\"e30=\u{e9}\"}".to_owned(),
            r#"{"topic":"t","value":"e30=="}"#.to_owned(),
            r#"{"topic":"t","value":"e31="}"#.to_owned(),
        ];
        let not_plain = [
            format!(r#"{{"topic":"s.public.t","value":"{escaped}"}}"#),
            r#"{"topic":"s\u002epublic.t","value":null}"#.to_owned(),
            "{\"topic\":\"s.\u{1}t\",\"value\":null}".to_owned(),
            r#"{"topic":"t","topic":"u","value":null}"#.to_owned(),
            r#"{"topic":"t","value":null,"value":null}"#.to_owned(),
            r#"{"key":null,"value":null}"#.to_owned(),
            r#"{"topic":null,"value":null}"#.to_owned(),
            r#"{"topic":1,"value":null}"#.to_owned(),
            r#"{"topic":"t","value":1}"#.to_owned(),
            r#"{"topic":"t","value":nul}"#.to_owned(),
            r#"{"topic":"t","value":nullx}"#.to_owned(),
            r#"{"topic":"t","value":null,}"#.to_owned(),
            r#"{"topic":"t","value":null}x"#.to_owned(),
            r#"{"topic":"t","value":null}}"#.to_owned(),
            r#"{"topic":"t","value":null"#.to_owned(),
            r#"{"topic":"t,"value":null}"#.to_owned(),
            r#"{"name":"n","topic":"t","value":null,"expect":{}}"#.to_owned(),
            r#"{"topic":"t" "value":null}"#.to_owned(),
            r#"["topic","t"]"#.to_owned(),
            "{}".to_owned(),
            "{".to_owned(),
            String::new(),
            "garbage".to_owned(),
        ];
        let mut answer = Answer::new();
        let mut non_utf8 = br#"{"topic":"t"#.to_vec();
        non_utf8.extend_from_slice(b"\xff\",\"value\":null}");
        let not_plain = not_plain.iter().map(String::as_bytes).chain([non_utf8.as_slice()]);
        for line in plain.iter().map(String::as_bytes) {
            assert!(PlainLine::parse(line).is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(answer.line(line, 3), answer.serde_line(line, 3));
        }
        for line in not_plain {
            assert_eq!(PlainLine::parse(line), None, "{}", String::from_utf8_lossy(line));
            assert_eq!(answer.line(line, 3), answer.serde_line(line, 3));
        }
    }

    #[test]
    fn the_simd_engine_decodes_as_standard_does() {
        // Long enough for the vector steps (64 characters and more), short, invalid, and one buffer for all.
        use base64::Engine as _;
        let engine = Base64::new();
        let mut buffer = Vec::new();
        let long = b64(&"0123456789".repeat(30));
        // An invalid byte, and padding, inside a vector step: the scalar code reports where.
        let (invalid, padded) = (
            format!("{}!{}", &long[..100], &long[101..]),
            format!("{}={}", &long[..99], &long[100..]),
        );
        let texts = [
            invalid.as_str(),
            padded.as_str(),
            long.as_str(),
            "eyJpZCI6MX0=",
            "",
            long.as_str(),
            "!!!",
            "e30",
            "e31=",
            "eyJpZCI6MX0=",
            &long[..long.len() - 1],
            "AAAAAAE=",
        ];
        for text in texts {
            let expected = base64::engine::general_purpose::STANDARD.decode(text);
            let decoded = engine.decode_into(Some(text.as_bytes()), &mut buffer);
            assert_eq!(decoded.map(|d| d.map(<[u8]>::to_vec)), expected.map(Some), "{text}");
        }
        assert_eq!(engine.decode_into(None, &mut buffer), Ok(None));
    }

    #[test]
    fn lines_across_the_reader_buffer_answer_as_whole_ones() {
        // No table in the record: the answer names the topic's.
        let value = b64(r#"{"op":"c","source":{}}"#);
        let mut input = String::new();
        for n in 0..20 {
            input.push_str(&format!(
                "{{\"topic\":\"s.public.t{n}\",\"value\":\"{value}\"}}\r\n\ngarbage\n"
            ));
        }
        // The last line without its newline.
        input.push_str(r#"{"topic":"s.public.last","value":null}"#);
        let answers = |capacity| {
            let mut out = Vec::new();
            let read = BufReader::with_capacity(capacity, input.as_bytes());
            assert_eq!(decode_lines(read, &mut out).expect("io"), 61);
            String::from_utf8(out).expect("utf-8")
        };
        let whole = answers(64 * 1024);
        assert!(
            whole.ends_with("{\"kind\":\"tombstone\",\"table\":\"last\"}\n"),
            "{whole}"
        );
        assert!(whole.contains(r#""table":"t19""#), "{whole}");
        for capacity in [1, 7, 50, 64] {
            assert_eq!(answers(capacity), whole, "capacity {capacity}");
        }
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
