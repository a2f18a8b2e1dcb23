//! Deserializers shared by the sections: lists that also come as comma-separated text, numbers that also come as
//! whole floats or text, and strings that also come as other scalars (every environment value is text).

use std::net::SocketAddr;

use figment::value::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A list: `["a", "b"]` in TOML; in an environment variable either the same bracketed form or `a,b`.
pub(super) fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(deserializer: D) -> Result<Vec<T>, D::Error> {
    let value = match <Value as Deserialize>::deserialize(deserializer)? {
        Value::String(_, text) if text.trim_start().starts_with('[') => {
            text.parse::<Value>().map_err(serde::de::Error::custom)?
        }
        Value::String(_, text) => Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        other => other,
    };
    Vec::<T>::deserialize(&value).map_err(|e| serde::de::Error::custom(e.kind))
}

/// [`list`] for an optional key.
pub(super) fn optional_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Option<Vec<T>>, D::Error> {
    list(deserializer).map(Some)
}

/// A socket address; the error shows the value and the expected form.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = lenient_string(deserializer)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected ip:port such as 0.0.0.0:8080 or [::]:8080 (a host name is not accepted), got {text:?}"
        ))
    })
}

/// A `u32`, also when written as a whole float: helm's `toToml` renders every YAML number as a float (`8.0`).
pub(super) fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
        // Environment values arrive as text.
        Text(String),
    }
    let out_of_range = |shown: String| {
        serde::de::Error::custom(format!("expected a whole number from 0 to {}, got {shown}", u32::MAX))
    };
    let number = match Number::deserialize(deserializer)? {
        Number::Text(text) => {
            let text = text.trim();
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(i), _) => Number::Int(i),
                (_, Ok(f)) if f.is_finite() => Number::Float(f),
                _ => return Err(out_of_range(format!("{text:?}"))),
            }
        }
        number => number,
    };
    match number {
        Number::Int(i) => u32::try_from(i).map_err(|_| out_of_range(i.to_string())),
        Number::Float(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => Ok(f as u32),
        Number::Float(f) => Err(out_of_range(f.to_string())),
        Number::Text(text) => Err(out_of_range(text)),
    }
}

/// Accepts any scalar as a string: environment values like `12345` reach serde as numbers.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Str(String),
        Int(i64),
        Uint(u64),
        Float(f64),
        Bool(bool),
    }
    Ok(match Scalar::deserialize(deserializer)? {
        Scalar::Str(s) => s,
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
    })
}
