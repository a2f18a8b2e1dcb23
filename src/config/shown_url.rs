//! How a configured URL is shown: the one rule every display of a URL key goes through (`check`, errors, logs),
//! so that a password written into a URL (`http://user:pass@host`) never leaves the process except to the host
//! it is for.

use std::borrow::Cow;

use serde::Serializer;

use super::REDACTED;

/// `url` as it may be shown: the password of its userinfo replaced by [`REDACTED`], everything else as written
/// (like Go's `URL.Redacted`; the user name stays, it says which account is used).
///
/// A URL that does not parse is redacted more widely: everything between `://` and its last `@` that follows a
/// `:` is taken for a password, since a broken URL cannot say where its userinfo ends.
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = url.get(start..).unwrap_or_default();
    let at = if reqwest::Url::parse(url).is_ok() {
        // As the URL parser finds the userinfo: before the last '@' of the authority, which ends at the first
        // '/', '\', '?' or '#'.
        let authority_end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        rest.get(..authority_end).and_then(|authority| authority.rfind('@'))
    } else {
        rest.rfind('@')
    };
    let Some(at) = at else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = rest.get(..at).and_then(|userinfo| userinfo.find(':')) else {
        return Cow::Borrowed(url);
    };
    let (Some(head), Some(tail)) = (url.get(..start + colon + 1), url.get(start + at..)) else {
        return Cow::Borrowed(url);
    };
    Cow::Owned(format!("{head}{REDACTED}{tail}"))
}

/// `url` as a link for a browser: without any userinfo at all, which a browser must not be handed (the page
/// would carry the password, and browsers refuse or warn about such links). A URL that does not parse is only
/// redacted, as [`redact_url`] does.
pub fn link_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.has_authority() => {
            // Both only fail for URLs without a host, which `has_authority` excludes.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => redact_url(url).into_owned(),
    }
}

/// Serializes a URL key as [`redact_url`] shows it (`serialize_with` of the URL keys).
pub(super) fn serialize<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

/// [`serialize`] of an optional URL key; `None` is skipped by the TOML writer, as for any other field.
pub(super) fn serialize_option<S: Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_some(&redact_url(url)),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted_and_nothing_else_changes() {
        let cases = [
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            (
                "http://user:pass@host:8081/flink",
                "http://user:<redacted>@host:8081/flink",
            ),
            ("https://user@host/", "https://user@host/"),
            ("http://us:er:p@ss@host/", "http://us:<redacted>@host/"),
            ("http://host/a:b@c", "http://host/a:b@c"),
            ("http://:secret@host", "http://:<redacted>@host"),
            // Not a URL (bad port): the widest reading of the userinfo.
            ("http://user:pa/ss@host:99999", "http://user:<redacted>@host:99999"),
            ("user:pass@host", "user:<redacted>@host"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn links_carry_no_userinfo() {
        assert_eq!(link_url("http://user:pass@host:8081/ui"), "http://host:8081/ui");
        assert_eq!(link_url("http://host:8081"), "http://host:8081/");
        assert_eq!(
            link_url("http://user:pa/ss@host:99999"),
            "http://user:<redacted>@host:99999"
        );
    }
}
