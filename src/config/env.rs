//! The `CDC_` environment as a figment provider that keeps every value as the text it was written as.

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::{ConfigError, ConfigErrors};

/// Prefix of the environment variables that override the file; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "CDC_";

/// Environment variables with the prefix that belong to the CLI, not to the configuration tree.
const CLI_ENV_KEYS: [&str; 3] = ["config", "log_format", "log_level"];

/// The `CDC_` environment variables with every value kept as its text.
///
/// figment's own [`Env`] parses each value as TOML-ish data, so `007` became the number 7 and `[x` an error, even
/// for a key that is a string (a token, a user name). Here every value stays a string; the typed deserializers
/// ([`figment::Figment::extract_lossy`], [`super::de::whole_u32`], [`super::de::list`], humantime) parse it where the key is not a string.
pub(super) struct EnvText(Env);

impl EnvText {
    /// The `CDC_` variables, `__` nesting, without the CLI's own (`CDC_CONFIG`, `CDC_LOG_*`); an error naming
    /// each of them whose name or value is not UTF-8.
    pub(super) fn new() -> Result<EnvText, ConfigErrors> {
        // figment would read such a value with its invalid bytes replaced (a secret silently changed) and such a
        // name as some other key.
        let errors: Vec<_> = std::env::vars_os()
            .filter(|(name, value)| {
                is_config_variable(name.as_encoded_bytes()) && (name.to_str().is_none() || value.to_str().is_none())
            })
            .map(|(name, _)| ConfigError::EnvNotUtf8 {
                name: name.to_string_lossy().into_owned(),
            })
            .collect();
        ConfigErrors::check(errors)?;
        Ok(EnvText(Env::prefixed(ENV_PREFIX).split("__").ignore(&CLI_ENV_KEYS)))
    }
}

impl Provider for EnvText {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in self.0.iter() {
            let path: Vec<&str> = key.as_str().split('.').collect();
            insert_nested(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Whether the variable named `name` is one [`EnvText`] reads: the prefix in any case (as figment matches it),
/// and not one of the CLI's own.
fn is_config_variable(name: &[u8]) -> bool {
    let Some((prefix, rest)) = name.split_at_checked(ENV_PREFIX.len()) else {
        return false;
    };
    prefix.eq_ignore_ascii_case(ENV_PREFIX.as_bytes())
        && !CLI_ENV_KEYS.iter().any(|key| rest.eq_ignore_ascii_case(key.as_bytes()))
}

/// Puts `value` at the dotted `path` of `dict`, creating the tables on the way.
fn insert_nested(dict: &mut Dict, path: &[&str], value: String) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), Value::from(value));
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}
