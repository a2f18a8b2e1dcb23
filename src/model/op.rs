//! The Debezium operation vocabulary shared by the config, the decoder and the policy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A row-level operation as Debezium writes it in `op` (or `__op` when unwrapped).
///
/// `m` (logical-decoding message) is not a row operation: the decoder reports it as its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Op {
    /// `c`: a row was inserted.
    #[serde(rename = "c")]
    Create,
    /// `u`: a row was updated.
    #[serde(rename = "u")]
    Update,
    /// `d`: a row was deleted.
    #[serde(rename = "d")]
    Delete,
    /// `r`: a row was read by an initial or incremental snapshot.
    #[serde(rename = "r")]
    Read,
    /// `t`: the table was truncated.
    #[serde(rename = "t")]
    Truncate,
}

impl Op {
    /// Every operation, in Debezium's documentation order.
    pub const ALL: [Op; 5] = [Op::Create, Op::Update, Op::Delete, Op::Read, Op::Truncate];

    /// Parses Debezium's one-letter code.
    pub fn from_code(code: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.code() == code)
    }

    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        // `ALL` and `CODES` are in the same order, the order of the variants.
        CODES[self as usize]
    }
}

/// Debezium's one-letter codes, in the order of [`Op::ALL`] (and of the `serde` renames above).
const CODES: [&str; 5] = ["c", "u", "d", "r", "t"];

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_rejected() {
        for op in Op::ALL {
            assert_eq!(Op::from_code(op.code()), Some(op));
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(json, format!("\"{}\"", op.code()));
        }
        assert_eq!(Op::from_code("m"), None);
        assert_eq!(Op::from_code("C"), None);
        assert_eq!(Op::from_code(""), None);
    }
}
