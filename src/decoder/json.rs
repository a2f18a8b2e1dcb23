//! The JSON layer under the decoder: a bound on nesting (serde_json skips ignored values without one), the
//! top-level object's fields, and errors on one line.

use serde::de::IgnoredAny;

use super::MAX_DEPTH;
use super::fields::Fields;

/// Parses the top-level fields of a JSON object; anything but an object is an error (serde would otherwise
/// read a JSON array positionally into the struct).
pub(super) fn parse_object(text: &str) -> Result<Fields<'_>, String> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<Fields<'_>>(text).map_err(|e| json_error(&e)),
        Some(b'[') => Err("expected a JSON object, found an array".to_owned()),
        Some(b'"') => Err("expected a JSON object, found a string".to_owned()),
        Some(b'n') if text.trim() == "null" => Err("expected a JSON object, found null".to_owned()),
        Some(b't' | b'f') if matches!(text.trim(), "true" | "false") => {
            Err("expected a JSON object, found a boolean".to_owned())
        }
        Some(b'-' | b'0'..=b'9') if serde_json::from_str::<IgnoredAny>(text).is_ok() => {
            Err("expected a JSON object, found a number".to_owned())
        }
        Some(_) => serde_json::from_str::<IgnoredAny>(text)
            .map(|_| "expected a JSON object".to_owned())
            .map_err(|e| json_error(&e))
            .and_then(Err),
        None => Err("empty record (only white space)".to_owned()),
    }
}

/// serde_json skips ignored values without a depth limit, so nesting is bounded here, in one pass that also
/// tracks strings (brackets inside strings do not count). Strings are jumped over with `memchr`: they are most
/// of a record's bytes, and a byte-at-a-time scan of them cost as much as the whole parse.
pub(super) fn check_depth(bytes: &[u8]) -> Result<(), String> {
    // Deeper than MAX_DEPTH takes more than MAX_DEPTH opening brackets; most records have fewer, and finding
    // them with `memchr` (explicit SIMD) is several times cheaper than the scan below on schema blocks full of
    // short strings. A plain byte filter is not vectorized at the shipped opt-level "s" and cost 18% of a
    // decode. Brackets inside strings are counted too, which only makes this conservative.
    if memchr::memchr2_iter(b'[', b'{', bytes).nth(MAX_DEPTH).is_none() {
        return Ok(());
    }
    let mut depth = Depth::default();
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        at += 1;
        if b == b'"' {
            match string_rest_len(&bytes[at..]) {
                Some(len) => at += len,
                // Unterminated: the parse reports it.
                None => return Ok(()),
            }
        } else {
            depth.step(b)?;
        }
    }
    Ok(())
}

/// How deep the brackets outside strings nest so far.
#[derive(Debug, Default)]
pub(super) struct Depth(usize);

impl Depth {
    /// Follows one byte outside strings: an opening bracket goes a level deeper (an error beyond [`MAX_DEPTH`]), a
    /// closing one a level back.
    pub(super) fn step(&mut self, b: u8) -> Result<(), String> {
        match b {
            b'[' | b'{' => {
                self.0 += 1;
                if self.0 > MAX_DEPTH {
                    return Err(format!("JSON nested deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => self.0 = self.0.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }
}

/// The length of a string's rest after its opening quote, closing quote included; `None` if it never closes.
fn string_rest_len(rest: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let found = at + memchr::memchr2(b'"', b'\\', rest.get(at..)?)?;
        if rest[found] == b'"' {
            return Some(found + 1);
        }
        // A backslash escapes the byte after it (for `\u`, the four hex digits hold no quote or backslash).
        at = found + 2;
    }
}

/// serde_json's error with what kind of problem it is, on one line.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected JSON shape",
        serde_json::error::Category::Io => "cannot read",
    };
    format!("{what}: {e}")
}
