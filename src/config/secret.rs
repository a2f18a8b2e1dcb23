//! [`Secret`]: a configured value that never appears in logs, `Debug` output or `check`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::de::lenient_string;

/// What a secret is shown as wherever it is shown at all: `check`'s TOML, a URL's password, statements that are
/// logged rather than submitted.
pub const REDACTED: &str = "<redacted>";

/// A string that never appears in logs, `Debug` output or `check`.
/// The default is empty, which the checks of a key that needs one report as unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_string(deserializer).map(Secret)
    }
}
