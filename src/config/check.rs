//! The checks the sections share: each pushes a [`ConfigError::Invalid`] naming the key and the value, and goes on,
//! so that one load reports every mistake.

use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::ConfigError;
use super::shown_url::redact_url;
use crate::model::{InvalidTableName, TableName};

/// Runs one of the [`Checks`] on each named field of a section, under the key `<section>.<field>`, e.g.
/// `check_fields!(errors.positive, "kafka", self: poll_interval, topic_refresh)`.
macro_rules! check_fields {
    ($errors:ident . $check:ident, $section:literal, $value:ident : $($field:ident),+ $(,)?) => {
        $($errors.$check(concat!($section, ".", stringify!($field)), &$value.$field);)+
    };
}
pub(super) use check_fields;

/// What a table name must look like, as the error says it.
pub(super) const TABLE_NAME_RULE: &str = InvalidTableName::RULE;

/// An invalid value of `key`, shown as the user wrote it (`Debug`, so strings are quoted).
pub(super) fn invalid(key: impl Into<String>, value: &dyn fmt::Debug, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

/// The shared checks, as methods on the list of errors found so far.
pub(super) trait Checks {
    /// Records that `key` has an unacceptable `value`.
    fn invalid(&mut self, key: impl Into<String>, value: &dyn fmt::Debug, reason: impl Into<String>);

    /// A duration that must not be zero.
    fn positive(&mut self, key: &str, value: &Duration) {
        if value.is_zero() {
            let shown = humantime::format_duration(*value).to_string();
            self.invalid(key, &shown, "must be greater than 0");
        }
    }

    /// A count that must not be zero.
    fn at_least_one(&mut self, key: &str, value: &u32) {
        if *value == 0 {
            self.invalid(key, value, "must be at least 1");
        }
    }

    /// Text that must not be empty or only white space.
    fn not_blank(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.invalid(key, &value, "must not be empty");
        }
    }

    /// An `http://` or `https://` URL; shown in the error as [`redact_url`] shows it.
    fn http_url(&mut self, key: &str, url: &str) {
        let shown = redact_url(url);
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(_) => self.invalid(key, &shown, "expected an http:// or https:// URL"),
            Err(e) => self.invalid(key, &shown, e.to_string()),
        }
    }

    /// A regex `pattern` that must compile as `compiled` (the pattern, or an anchored form of it).
    fn regex(&mut self, key: &str, pattern: &str, compiled: &str) {
        if let Err(e) = Regex::new(compiled) {
            self.invalid(key, &pattern, one_line(&e.to_string()));
        }
    }

    /// Every name in `names` must be a table name.
    fn table_names<'a>(&mut self, key: &str, names: impl IntoIterator<Item = &'a String>) {
        for name in names.into_iter().filter(|n| TableName::parse(n).is_err()) {
            self.invalid(key, name, TABLE_NAME_RULE);
        }
    }
}

impl Checks for Vec<ConfigError> {
    fn invalid(&mut self, key: impl Into<String>, value: &dyn fmt::Debug, reason: impl Into<String>) {
        self.push(invalid(key, value, reason));
    }
}

/// Collapses a multi-line error (regex errors draw a caret diagram) to its last meaningful line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(message)
        .trim_start_matches("error: ")
        .to_owned()
}
