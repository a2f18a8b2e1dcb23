//! IRSA's web identity: the token file Kubernetes projects into the pod (`AWS_WEB_IDENTITY_TOKEN_FILE`), exchanged
//! for temporary credentials of `AWS_ROLE_ARN` by STS `AssumeRoleWithWebIdentity`, an unsigned call (the token is
//! the proof). The answer is XML; the few fields needed are taken out of it by a bounded search, not a parser.

use std::path::PathBuf;
use std::time::SystemTime;

use tokio::io::AsyncReadExt;

use super::credentials::{AwsCredentials, parse_time, show_time};
use super::sigv4::uri_encode;
use crate::auth::TokenError;
use crate::config::{REDACTED, Secret};

/// The longest STS answer read: a real one is about 2 KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The longest web-identity token read: a Kubernetes service-account token is about 1 KiB.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// How much of STS's own error message a report quotes.
const MAX_QUOTED_CHARS: usize = 300;

/// The exchange of a web-identity token for a role's credentials.
#[derive(Debug)]
pub struct WebIdentity {
    /// The projected token file; read again at each exchange (the kubelet rotates it).
    pub token_file: PathBuf,
    /// The role to assume.
    pub role_arn: String,
    /// The name of the role session (it appears in CloudTrail).
    pub session_name: String,
    /// STS's endpoint.
    pub endpoint: reqwest::Url,
    /// No redirects, a timeout on every request.
    pub client: reqwest::Client,
}

impl WebIdentity {
    /// What this source is, for messages.
    pub fn describe(&self) -> String {
        format!(
            "web identity (role {}, token file {})",
            self.role_arn,
            self.token_file.display()
        )
    }

    /// Fresh credentials of the role. Every failure may heal (STS down, a token being rotated), so all are
    /// [`TokenError::Unavailable`], with the web-identity token and any key redacted from the text.
    pub async fn assume_role(&self, now: SystemTime) -> Result<AwsCredentials, TokenError> {
        let token = self.read_token().await?;
        let body = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("Version", "2011-06-15"),
            ("WebIdentityToken", token.expose()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let what = self.describe();
        let unavailable =
            |text: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| TokenError::Unavailable {
                what: redact(&format!("{what}: {text}"), &[token.expose()]),
                source,
            };
        // POST, so that the token travels in the body and never in a URL a proxy or an error might log.
        let response = self
            .client
            .post(self.endpoint.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let text = format!("STS at {} unreachable: {}", self.endpoint, crate::logging::chain(&e));
                unavailable(text, None)
            })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(unavailable(
                format!(
                    "STS at {} answered HTTP {} (a redirect, not followed: it would re-send the token)",
                    self.endpoint,
                    status.as_u16()
                ),
                None,
            ));
        }
        let answer = read_bounded(response)
            .await
            .map_err(|text| unavailable(format!("STS at {}: {text}", self.endpoint), None))?;
        let answer = String::from_utf8_lossy(&answer);
        if !status.is_success() {
            let code = element(&answer, "Code").map(unescape);
            let message = element(&answer, "Message").map(unescape);
            let detail = match (code, message) {
                (Some(code), Some(message)) => format!("{code}: {}", shorten(&message)),
                (Some(code), None) => code,
                _ => "no STS error in the answer".to_owned(),
            };
            return Err(unavailable(
                format!(
                    "STS refused AssumeRoleWithWebIdentity: HTTP {}: {detail}",
                    status.as_u16()
                ),
                None,
            ));
        }
        let credentials = parse_answer(&answer, &self.role_arn, now)
            .map_err(|why| unavailable(format!("STS answered HTTP {} but {why}", status.as_u16()), None))?;
        Ok(credentials)
    }

    /// The current web-identity token, bounded.
    async fn read_token(&self) -> Result<Secret, TokenError> {
        let unavailable = |text: String| TokenError::Unavailable {
            what: format!("{}: {text}", self.describe()),
            source: None,
        };
        let file = tokio::fs::File::open(&self.token_file)
            .await
            .map_err(|e| unavailable(format!("cannot read the token file: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| unavailable(format!("cannot read the token file: {e}")))?;
        if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(unavailable(format!(
                "the token file is longer than {MAX_TOKEN_FILE_BYTES} bytes"
            )));
        }
        let token = String::from_utf8(bytes).map_err(|_| unavailable("the token file is not UTF-8".to_owned()))?;
        let token = token.trim();
        if token.is_empty() {
            return Err(unavailable("the token file is empty".to_owned()));
        }
        Ok(Secret::new(token))
    }
}

/// The body of `response`, refused past [`MAX_ANSWER_BYTES`] (read chunk by chunk, so a huge answer is never held).
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the answer broke off: {}", crate::logging::chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer is longer than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The credentials of an `AssumeRoleWithWebIdentityResponse`, checked: all four fields, signable, not expired.
pub fn parse_answer(xml: &str, role_arn: &str, now: SystemTime) -> Result<AwsCredentials, String> {
    let block = element(xml, "Credentials")
        .ok_or("its answer has no <Credentials> (not an AssumeRoleWithWebIdentity result)")?;
    let field = |name: &'static str| {
        element(block, name)
            .map(unescape)
            .filter(|v| !v.trim().is_empty())
            .ok_or(format!("its <Credentials> have no <{name}>"))
    };
    let expiration_text = field("Expiration")?;
    let expiration = parse_time(&expiration_text).ok_or("its <Expiration> is not an RFC 3339 time")?;
    let principal = element(xml, "AssumedRoleUser")
        .and_then(|user| element(user, "Arn"))
        .map(unescape)
        .filter(|arn| !arn.is_empty() && arn.len() <= 2048 && !arn.chars().any(char::is_control))
        .unwrap_or_else(|| role_arn.to_owned());
    let credentials = AwsCredentials {
        access_key_id: field("AccessKeyId")?.trim().to_owned(),
        secret_access_key: Secret::new(field("SecretAccessKey")?.trim()),
        session_token: Some(Secret::new(field("SessionToken")?.trim())),
        expiration: Some(expiration),
        principal,
    };
    if let Some(reason) = credentials.unsignable() {
        return Err(format!("its credentials cannot sign: {reason}"));
    }
    if expiration <= now {
        return Err(format!(
            "its credentials expired at {} (is a clock wrong?)",
            show_time(expiration)
        ));
    }
    Ok(credentials)
}

/// The text between the first `<name>` and the `</name>` after it. The answer is bounded, so is this search.
pub fn element<'x>(xml: &'x str, name: &str) -> Option<&'x str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let length = xml.get(start..)?.find(&close)?;
    xml.get(start..start + length)
}

/// XML's five predefined entities decoded (STS uses no others); anything else is left as it is.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `text` with every one of `secrets` replaced by [`REDACTED`].
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, REDACTED);
    }
    text
}

/// At most [`MAX_QUOTED_CHARS`] characters of `text`.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of STS's documented answer (API reference, AssumeRoleWithWebIdentity, "Example").
    pub(crate) fn answer(expiration: &str) -> String {
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
             <AssumeRoleWithWebIdentityResult>\n\
             <SubjectFromWebIdentityToken>system:serviceaccount:cdc:sidecar</SubjectFromWebIdentityToken>\n\
             <AssumedRoleUser>\n<Arn>arn:aws:sts::123456789012:assumed-role/cdc/app1</Arn>\n\
             <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>\n</AssumedRoleUser>\n\
             <Credentials>\n<SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>\n\
             <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n\
             <Expiration>{expiration}</Expiration>\n<AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>\n\
             </Credentials>\n<Audience>sts.amazonaws.com</Audience>\n</AssumeRoleWithWebIdentityResult>\n\
             <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>\n\
             </AssumeRoleWithWebIdentityResponse>"
        )
    }

    #[test]
    fn a_good_answer_gives_the_four_fields_and_the_assumed_role() {
        let credentials = parse_answer(&answer("2099-10-24T23:00:23Z"), "arn:role", SystemTime::now()).expect("good");
        assert_eq!(credentials.access_key_id, "ASgeIAIOSFODNN7EXAMPLE");
        assert_eq!(
            credentials.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            credentials.session_token.as_ref().map(Secret::expose),
            Some("AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE")
        );
        assert_eq!(credentials.expiration, parse_time("2099-10-24T23:00:23Z"));
        assert_eq!(credentials.principal, "arn:aws:sts::123456789012:assumed-role/cdc/app1");
    }

    #[test]
    fn a_bad_answer_says_what_is_missing_and_quotes_no_secret() {
        let expired = parse_answer(&answer("2001-01-01T00:00:00Z"), "r", SystemTime::now())
            .map(|_| ())
            .expect_err("expired");
        assert_eq!(
            expired,
            "its credentials expired at 2001-01-01T00:00:00Z (is a clock wrong?)"
        );
        let bad_time = parse_answer(&answer("soon"), "r", SystemTime::now())
            .map(|_| ())
            .expect_err("bad time");
        assert_eq!(bad_time, "its <Expiration> is not an RFC 3339 time");
        let no_key = answer("2099-01-01T00:00:00Z").replace("<AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>", "");
        let no_key = parse_answer(&no_key, "r", SystemTime::now())
            .map(|_| ())
            .expect_err("no key");
        assert_eq!(no_key, "its <Credentials> have no <AccessKeyId>");
        let garbage = parse_answer("<html>hello</html>", "r", SystemTime::now())
            .map(|_| ())
            .expect_err("garbage");
        assert!(garbage.contains("no <Credentials>"), "{garbage}");
        let unclosed = parse_answer("<Credentials><AccessKeyId>A", "r", SystemTime::now())
            .map(|_| ())
            .expect_err("unclosed");
        assert!(unclosed.contains("no <Credentials>"), "{unclosed}");
    }

    #[test]
    fn entities_are_decoded_and_secrets_redacted() {
        assert_eq!(unescape("a&amp;lt;b &lt;c&gt; &quot;&apos;"), "a&lt;b <c> \"'");
        assert_eq!(
            redact("token abc and abc", &["abc", ""]),
            "token <redacted> and <redacted>"
        );
        assert_eq!(shorten(&"x".repeat(400)).chars().count(), MAX_QUOTED_CHARS + 1);
    }
}
