//! AWS credentials and the sources that need no network: the environment (`AWS_ACCESS_KEY_ID`...) and the shared
//! credentials file (`~/.aws/credentials`). The web identity of IRSA, which asks STS, is in [`super::sts`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use crate::auth::TokenError;
use crate::config::Secret;

/// The environment variables the provider reads, taken once: from the process ([`AwsEnv::from_process`]) or
/// from pairs (tests, which must not change the process's environment). An empty value counts as unset.
#[derive(Clone, Default)]
pub struct AwsEnv(BTreeMap<String, String>);

impl AwsEnv {
    /// Every variable the provider may read.
    pub const VARIABLES: [&'static str; 13] = [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "HOME",
    ];

    /// The [`AwsEnv::VARIABLES`] of the process (a value that is not UTF-8 counts as unset).
    pub fn from_process() -> Self {
        Self::from_pairs(
            Self::VARIABLES
                .iter()
                .filter_map(|&name| std::env::var(name).ok().map(|value| (name, value))),
        )
    }

    /// The variables `pairs` names.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl fmt::Debug for AwsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Which variables are set is useful; their values (keys, tokens) never appear.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A set of AWS credentials and where they came from.
#[derive(Clone)]
pub struct AwsCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
    /// When temporary credentials stop working; `None`: long-term keys.
    pub expiration: Option<SystemTime>,
    /// Who they are, for logs (a role's ARN, or the key id shortened): never a secret.
    pub principal: String,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("principal", &self.principal)
            .field("session_token", &self.session_token.is_some())
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// Why these credentials cannot sign, if they cannot: an empty key, or characters SigV4 cannot carry (the
    /// key id goes into `X-Amz-Credential` between '/'s). Never quotes a value.
    pub fn unsignable(&self) -> Option<&'static str> {
        let id = &self.access_key_id;
        if id.is_empty() {
            return Some("the access key id is empty");
        }
        if !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
            return Some("the access key id has characters an access key id never has");
        }
        let secret = self.secret_access_key.expose();
        if secret.is_empty() {
            return Some("the secret access key is empty");
        }
        if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Some("the secret access key has white space or control characters");
        }
        if let Some(token) = &self.session_token
            && token.expose().chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Some("the session token has white space or control characters");
        }
        None
    }

    /// The key id as logs may show it: its first and last four characters.
    pub fn short_key_id(id: &str) -> String {
        match (id.get(..4), id.len().checked_sub(4).and_then(|start| id.get(start..))) {
            (Some(head), Some(tail)) if id.len() > 8 => format!("access key {head}…{tail}"),
            _ => "access key (short id)".to_owned(),
        }
    }
}

/// The environment's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, and botocore's
/// `AWS_CREDENTIAL_EXPIRATION`), if `AWS_ACCESS_KEY_ID` or `AWS_SECRET_ACCESS_KEY` is set.
pub fn from_environment(env: &AwsEnv, now: SystemTime) -> Option<Result<AwsCredentials, TokenError>> {
    let (id, secret) = match (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        (None, None) => return None,
        (Some(_), None) => {
            return Some(Err(config(
                "AWS_SECRET_ACCESS_KEY",
                "unset while AWS_ACCESS_KEY_ID is set",
            )));
        }
        (None, Some(_)) => {
            return Some(Err(config(
                "AWS_ACCESS_KEY_ID",
                "unset while AWS_SECRET_ACCESS_KEY is set",
            )));
        }
        (Some(id), Some(secret)) => (id, secret),
    };
    Some((|| {
        let expiration = match env.get("AWS_CREDENTIAL_EXPIRATION") {
            None => None,
            Some(text) => Some(parse_time(text).ok_or_else(|| {
                config(
                    "AWS_CREDENTIAL_EXPIRATION",
                    "expected an RFC 3339 time such as 2025-01-31T12:00:00Z",
                )
            })?),
        };
        let credentials = AwsCredentials {
            access_key_id: id.to_owned(),
            secret_access_key: Secret::new(secret),
            session_token: env.get("AWS_SESSION_TOKEN").map(Secret::new),
            expiration,
            principal: AwsCredentials::short_key_id(id),
        };
        if let Some(reason) = credentials.unsignable() {
            return Err(config(
                "AWS_ACCESS_KEY_ID",
                format!("the environment's credentials cannot sign: {reason}"),
            ));
        }
        still_good_static(
            credentials,
            "AWS_CREDENTIAL_EXPIRATION",
            "the environment's credentials",
            now,
        )
    })())
}

/// `credentials` from a source that cannot renew them, if they have not expired at `now`; `key` names the source.
pub fn still_good_static(
    credentials: AwsCredentials,
    key: &'static str,
    what: &str,
    now: SystemTime,
) -> Result<AwsCredentials, TokenError> {
    match credentials.expiration {
        Some(expiration) if expiration <= now => Err(config(
            key,
            format!(
                "{what} expired at {}; give the sidecar fresh ones",
                show_time(expiration)
            ),
        )),
        _ => Ok(credentials),
    }
}

/// The most a credentials file may hold: a real one is a few hundred bytes a profile.
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 1024 * 1024;

/// The credentials of `profile` in the shared credentials file at `path` (read once, at start: keys written in a
/// file do not expire).
pub fn from_file(path: &Path, profile: &str) -> Result<AwsCredentials, TokenError> {
    const KEY: &str = "AWS_SHARED_CREDENTIALS_FILE";
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| config(KEY, format!("{shown}: {e}")))?;
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| config(KEY, format!("{shown}: {e}")))?;
    if text.len() as u64 > MAX_CREDENTIALS_FILE_BYTES {
        return Err(config(
            KEY,
            format!("{shown}: longer than {MAX_CREDENTIALS_FILE_BYTES} bytes"),
        ));
    }
    let credentials = parse_profile(&text, profile).map_err(|e| config(KEY, format!("{shown}: {e}")))?;
    if let Some(reason) = credentials.unsignable() {
        return Err(config(
            KEY,
            format!("{shown}: profile [{profile}] cannot sign: {reason}"),
        ));
    }
    Ok(credentials)
}

/// The credentials of `profile` in a credentials file's text (INI: `[profile]` sections of `key = value` lines,
/// `#` and `;` comments). A malformed line is an error naming its number, never its text (it may hold a key).
pub fn parse_profile(text: &str, profile: &str) -> Result<AwsCredentials, String> {
    let mut section: Option<&str> = None;
    let mut values: BTreeMap<String, &str> = BTreeMap::new();
    let mut found = false;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: a section header without its ']'", number + 1))?
                .trim();
            section = Some(name);
            found |= name == profile;
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            // A nested value of the line above (`s3 =` then indented lines): not a credential.
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected key = value", number + 1));
        };
        match section {
            None => return Err(format!("line {}: a value before any [profile]", number + 1)),
            Some(name) if name == profile => {
                values.insert(key.trim().to_ascii_lowercase(), value.trim());
            }
            Some(_) => {}
        }
    }
    if !found {
        return Err(format!("no profile [{profile}]"));
    }
    let id = values.get("aws_access_key_id").copied().unwrap_or_default();
    let secret = values.get("aws_secret_access_key").copied().unwrap_or_default();
    if id.is_empty() || secret.is_empty() {
        let missing = if id.is_empty() {
            "aws_access_key_id"
        } else {
            "aws_secret_access_key"
        };
        return Err(format!(
            "profile [{profile}] has no {missing} (profiles of role_arn, source_profile, credential_process or SSO \
             are not supported: use IRSA's web identity or keys)"
        ));
    }
    let token = values
        .get("aws_session_token")
        .or_else(|| values.get("aws_security_token"))
        .filter(|t| !t.is_empty());
    Ok(AwsCredentials {
        access_key_id: id.to_owned(),
        secret_access_key: Secret::new(secret),
        session_token: token.map(|t| Secret::new(*t)),
        expiration: None,
        principal: AwsCredentials::short_key_id(id),
    })
}

/// A configuration error of `key`.
pub fn config(key: &'static str, reason: impl Into<String>) -> TokenError {
    TokenError::Config {
        key,
        reason: reason.into(),
    }
}

/// An RFC 3339 time (STS's `Expiration`, `AWS_CREDENTIAL_EXPIRATION`).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// `time` as RFC 3339 UTC, for messages.
pub fn show_time(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FILE: &str = "\
# a comment
; another
[default]
aws_access_key_id = AKIADEFAULTDEFAULT
aws_secret_access_key=default/secret+key

[dev]
AWS_ACCESS_KEY_ID = AKIADEVDEVDEVDEV
aws_secret_access_key = dev-secret
aws_session_token = dev-token
s3 =
    max_concurrent_requests = 20
[keyless]
role_arn = arn:aws:iam::123456789012:role/r
source_profile = default
";

    #[test]
    fn a_profile_is_found_among_comments_nested_values_and_other_profiles() {
        let default = parse_profile(FILE, "default").expect("default");
        assert_eq!(default.access_key_id, "AKIADEFAULTDEFAULT");
        assert_eq!(default.secret_access_key.expose(), "default/secret+key");
        assert!(default.session_token.is_none() && default.expiration.is_none());
        let dev = parse_profile(FILE, "dev").expect("dev");
        assert_eq!(dev.access_key_id, "AKIADEVDEVDEVDEV");
        assert_eq!(dev.session_token.as_ref().map(Secret::expose), Some("dev-token"));
        assert_eq!(dev.principal, "access key AKIA…VDEV");
    }

    #[test]
    fn a_missing_or_keyless_profile_and_a_bad_line_are_errors_that_quote_no_value() {
        assert_eq!(
            parse_profile(FILE, "prod").map(|_| ()),
            Err("no profile [prod]".to_owned())
        );
        let keyless = parse_profile(FILE, "keyless").map(|_| ()).expect_err("no keys");
        assert!(keyless.contains("has no aws_access_key_id"), "{keyless}");
        let bad = "[default]\naws_access_key_id = AKIAAAAAAAAAAAAA\nwJalrXUtnFEMI-the-secret-without-a-key\n";
        assert_eq!(
            parse_profile(bad, "default").map(|_| ()),
            Err("line 3: expected key = value".to_owned())
        );
        assert_eq!(
            parse_profile("aws_access_key_id = x\n[default]\n", "default").map(|_| ()),
            Err("line 1: a value before any [profile]".to_owned())
        );
        assert_eq!(
            parse_profile("[default\n", "default").map(|_| ()),
            Err("line 1: a section header without its ']'".to_owned())
        );
        let no_secret = parse_profile("[default]\naws_access_key_id = AKIAAAAAAAAAAAAA\n", "default")
            .map(|_| ())
            .expect_err("no secret");
        assert!(no_secret.contains("has no aws_secret_access_key"), "{no_secret}");
    }

    #[test]
    fn the_file_source_names_the_variable_the_path_and_the_cause() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("credentials");
        let message = from_file(&path, "default").expect_err("absent").to_string();
        assert!(
            message.starts_with("AWS_SHARED_CREDENTIALS_FILE: ") && message.contains("credentials"),
            "{message}"
        );
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKIA/SLASH\naws_secret_access_key = s3cr3t\n",
        )
        .expect("write");
        let message = from_file(&path, "default").expect_err("unsignable").to_string();
        assert!(
            message.contains("cannot sign: the access key id has characters"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
        std::fs::write(&path, vec![b'#'; MAX_CREDENTIALS_FILE_BYTES as usize + 1]).expect("write");
        let message = from_file(&path, "default").expect_err("huge").to_string();
        assert!(message.contains("longer than"), "{message}");
        std::fs::write(&path, FILE).expect("write");
        assert_eq!(from_file(&path, "dev").expect("dev").access_key_id, "AKIADEVDEVDEVDEV");
    }

    fn env(pairs: &[(&str, &str)]) -> AwsEnv {
        AwsEnv::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_environment_gives_keys_a_session_token_and_an_expiry_or_says_what_is_missing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(from_environment(&env(&[("AWS_PROFILE", "x")]), now).is_none());
        let credentials = from_environment(
            &env(&[
                ("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENV"),
                ("AWS_SECRET_ACCESS_KEY", "env-secret"),
                ("AWS_SESSION_TOKEN", "env-token"),
                ("AWS_CREDENTIAL_EXPIRATION", "2023-11-14T22:13:20Z"),
            ]),
            now - Duration::from_secs(60),
        )
        .expect("set")
        .expect("good");
        assert_eq!(
            credentials.session_token.as_ref().map(Secret::expose),
            Some("env-token")
        );
        assert_eq!(credentials.expiration, Some(now));
        let error = |pairs: &[(&str, &str)]| {
            from_environment(&env(pairs), now)
                .expect("set")
                .map(|_| ())
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            error(&[("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENV")]),
            "AWS_SECRET_ACCESS_KEY: unset while AWS_ACCESS_KEY_ID is set"
        );
        assert_eq!(
            error(&[("AWS_SECRET_ACCESS_KEY", "env-secret")]),
            "AWS_ACCESS_KEY_ID: unset while AWS_SECRET_ACCESS_KEY is set"
        );
        let expired = error(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_CREDENTIAL_EXPIRATION", "2023-11-14T22:13:20Z"),
        ]);
        assert_eq!(
            expired,
            "AWS_CREDENTIAL_EXPIRATION: the environment's credentials expired at 2023-11-14T22:13:20Z; give the \
             sidecar fresh ones"
        );
        let unsignable = error(&[
            ("AWS_ACCESS_KEY_ID", "AKIA ENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ]);
        assert!(
            unsignable.starts_with("AWS_ACCESS_KEY_ID: the environment's credentials cannot sign"),
            "{unsignable}"
        );
        assert!(!unsignable.contains("env-secret"), "{unsignable}");
        let bad_time = error(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_CREDENTIAL_EXPIRATION", "tomorrow"),
        ]);
        assert!(
            bad_time.starts_with("AWS_CREDENTIAL_EXPIRATION: expected an RFC 3339"),
            "{bad_time}"
        );
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let env = env(&[("AWS_SECRET_ACCESS_KEY", "env-secret")]);
        assert!(!format!("{env:?}").contains("env-secret"));
        let credentials = parse_profile(FILE, "dev").expect("dev");
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("dev-secret") && !shown.contains("dev-token"), "{shown}");
    }
}
