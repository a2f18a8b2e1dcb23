//! A table name, checked once where it enters the process.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// A table name: a Postgres-style unquoted identifier (an ASCII letter or `_`, then letters, digits and `_`, at
/// most 63 bytes), which is what Debezium topics and Flink job names carry.
///
/// The name ends up in topic names, consumer groups, job names, SQL, metric labels and log lines, so it is parsed
/// where it comes in (configuration, topic and job names, the control API) and trusted from then on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TableName(String);

/// Why a text is not a [`TableName`]; its `Display` is the rule, without the text (which came from outside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTableName;

impl InvalidTableName {
    /// What a table name must look like, as errors say it.
    pub const RULE: &'static str =
        "not a valid table name (letters, digits and _, not starting with a digit, at most 63)";
}

impl fmt::Display for InvalidTableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::RULE)
    }
}

impl std::error::Error for InvalidTableName {}

impl TableName {
    /// The longest table name, in bytes (Postgres's identifier limit).
    pub const MAX_LEN: usize = 63;

    /// Parses a table name.
    pub fn parse(text: &str) -> Result<TableName, InvalidTableName> {
        Self::is_valid(text)
            .then(|| TableName(text.to_owned()))
            .ok_or(InvalidTableName)
    }

    /// Whether `text` is a table name: the one rule, for the few places that only ask (parsing is
    /// [`TableName::parse`]).
    pub fn is_valid(text: &str) -> bool {
        let mut chars = text.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && text.len() <= Self::MAX_LEN
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a `String`, for the layers that still carry table names as strings.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<&str> for TableName {
    type Error = InvalidTableName;
    fn try_from(text: &str) -> Result<Self, Self::Error> {
        TableName::parse(text)
    }
}

impl TryFrom<String> for TableName {
    type Error = InvalidTableName;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        if TableName::is_valid(&text) {
            Ok(TableName(text))
        } else {
            Err(InvalidTableName)
        }
    }
}

impl From<TableName> for String {
    fn from(name: TableName) -> String {
        name.0
    }
}

impl Deref for TableName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TableName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TableName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for TableName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TableName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn table_names_are_unquoted_identifiers() {
        for good in ["faculty", "student_detail", "_x", "T1", &"a".repeat(63)] {
            assert_eq!(TableName::parse(good).map(String::from), Ok(good.to_owned()), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "a b", "é", &"x".repeat(64)] {
            assert_eq!(TableName::parse(bad), Err(InvalidTableName), "{bad}");
        }
    }

    #[test]
    fn serde_validates_and_maps_look_up_by_str() {
        let name: TableName = serde_json::from_str("\"faculty\"").expect("valid");
        assert_eq!(serde_json::to_string(&name).expect("serializes"), "\"faculty\"");
        let error = serde_json::from_str::<TableName>("\"bad-name\"").expect_err("invalid");
        assert!(error.to_string().contains(InvalidTableName::RULE), "{error}");
        let map = BTreeMap::from([(name, 1)]);
        assert_eq!(map.get("faculty"), Some(&1));
    }
}
