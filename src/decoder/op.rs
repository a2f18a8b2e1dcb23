//! The Debezium operation vocabulary shared by the config, the decoder and the policy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A row-level operation as Debezium writes it in `op` (or `__op` when unwrapped).
///
/// `m` (logical-decoding message) is not a row operation: the decoder reports it as its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
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
        match code {
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "r" => Some(Op::Read),
            "t" => Some(Op::Truncate),
            _ => None,
        }
    }

    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

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
