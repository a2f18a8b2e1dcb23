//! The `CDC_` environment as a figment provider that keeps every value as the text it was written as.

use figment::providers::Env;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

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
    /// The `CDC_` variables, `__` nesting, without the CLI's own (`CDC_CONFIG`, `CDC_LOG_*`).
    pub(super) fn new() -> EnvText {
        EnvText(Env::prefixed(ENV_PREFIX).split("__").ignore(&CLI_ENV_KEYS))
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
