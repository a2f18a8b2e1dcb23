//! An AWS MSK IAM verifier for the SASL front ([`super::sasl_proxy::SaslProxy::start_msk_iam`]): it checks an
//! OAUTHBEARER token as MSK's IAM access control does, by recomputing the SigV4 signature of the presigned
//! `kafka-cluster:Connect` URL with the secret key it knows.
//!
//! SigV4 is written here again, on `ring::hmac` and `ring::digest`, from AWS's documentation ("Create a signed AWS
//! API request", the query-string variant), independently of the crate's `auth::aws::sigv4`: a test that verified
//! the crate's tokens with the crate's own signer would pass whatever that signer got wrong. The query is decoded
//! and encoded again from its parts, so an encoding the signer got wrong does not survive either.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

/// What MSK's IAM access control accepts, at most, as `X-Amz-Expires` (15 minutes).
const MAX_EXPIRES_SECS: u64 = 900;

/// How far in the future a signing time may lie (clock skew between client and broker), as AWS allows.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The one principal a verifier lets in: its region and AWS credentials.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The cluster's region: the token's host and scope must name it.
    pub region: String,
    /// The access key id the token must be signed with.
    pub access_key_id: String,
    /// The secret access key that signs it.
    pub secret_access_key: String,
    /// The session token temporary credentials come with (`X-Amz-Security-Token`); `None`: there must be none.
    pub session_token: Option<String>,
}

impl Verifier {
    /// The access key id of a good `token` at `now`, or why it is refused.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<String, String> {
        let url = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|e| format!("not base64url without padding: {e}"))?;
        let url = String::from_utf8(url).map_err(|_| "the URL is not UTF-8".to_owned())?;
        let rest = url.strip_prefix("https://").ok_or("not an https:// URL")?;
        let (host, query) = rest.split_once("/?").ok_or("expected https://<host>/?<query>")?;
        let expected_host = format!("kafka.{}.amazonaws.com", self.region);
        if host != expected_host {
            return Err(format!(
                "wrong region: the token is for {host}, the cluster is {expected_host}"
            ));
        }
        let params = parse_query(query)?;
        let param = |name: &str| params.get(name).map(String::as_str).ok_or_else(|| format!("no {name}"));
        if param("Action")? != "kafka-cluster:Connect" {
            return Err(format!("Action is {:?}", param("Action")?));
        }
        if param("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
            return Err("X-Amz-Algorithm is not AWS4-HMAC-SHA256".to_owned());
        }
        if param("X-Amz-SignedHeaders")? != "host" {
            return Err("X-Amz-SignedHeaders is not host".to_owned());
        }
        let amz_date = param("X-Amz-Date")?;
        let signed_at = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
            .map_err(|_| format!("X-Amz-Date {amz_date:?} is not yyyymmddThhmmssZ"))?
            .and_utc();
        let date = &amz_date[..8];
        let scope = format!("{date}/{}/kafka-cluster/aws4_request", self.region);
        let credential = param("X-Amz-Credential")?;
        let (key_id, token_scope) = credential.split_once('/').ok_or("X-Amz-Credential has no scope")?;
        if key_id != self.access_key_id {
            return Err(format!("unknown access key {key_id}"));
        }
        if token_scope != scope {
            return Err(format!(
                "wrong region or date: the credential scope is {token_scope}, expected {scope}"
            ));
        }
        match (params.get("X-Amz-Security-Token"), &self.session_token) {
            (None, None) => {}
            (Some(sent), Some(expected)) if sent == expected => {}
            _ => return Err("the session token does not belong to the access key".to_owned()),
        }
        let expires: u64 = param("X-Amz-Expires")?
            .parse()
            .map_err(|_| "X-Amz-Expires is not a number".to_owned())?;
        if !(1..=MAX_EXPIRES_SECS).contains(&expires) {
            return Err(format!("X-Amz-Expires {expires} is outside 1..=900"));
        }
        let signed_at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(signed_at.timestamp()).map_err(|_| "signed before 1970")?);
        if signed_at > now + MAX_SKEW {
            return Err("signed in the future".to_owned());
        }
        if now >= signed_at + Duration::from_secs(expires) {
            return Err(format!("expired: signed at {amz_date}, good for {expires} s"));
        }
        // The canonical request of a presigned GET: every query parameter but the signature (and the User-Agent,
        // which the signer libraries append after signing), sorted, each name and value encoded again.
        let mut canonical_query: Vec<(String, String)> = params
            .iter()
            .filter(|(name, _)| name.as_str() != "X-Amz-Signature" && name.as_str() != "User-Agent")
            .map(|(name, value)| (uri_encode(name), uri_encode(value)))
            .collect();
        canonical_query.sort();
        let canonical_query = canonical_query
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{}",
            hex(digest::digest(&digest::SHA256, b"").as_ref())
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
        );
        let key = signing_key(&self.secret_access_key, date, &self.region, "kafka-cluster");
        let expected = signature(&key, &string_to_sign);
        if param("X-Amz-Signature")? != expected {
            return Err("the signature does not match".to_owned());
        }
        Ok(key_id.to_owned())
    }
}

/// SigV4's signing key: `AWS4<secret>` HMAC'd with the date, the region, the service and `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [date, region, service, "aws4_request"] {
        key = sign(&key, part.as_bytes());
    }
    key
}

/// The hex signature of `string_to_sign` under `key`.
pub fn signature(key: &[u8], string_to_sign: &str) -> String {
    hex(&sign(key, string_to_sign.as_bytes()))
}

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The query's parameters, decoded. Strict, as a canonical SigV4 query is: only unreserved characters and `%XX`
/// escapes, every parameter once.
pub fn parse_query(query: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for pair in query.split('&') {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("a parameter without '=': {pair:?}"))?;
        let (name, value) = (percent_decode(name)?, percent_decode(value)?);
        if params.insert(name.clone(), value).is_some() {
            return Err(format!("{name} twice"));
        }
    }
    Ok(params)
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3).ok_or("a cut-off %-escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("a bad %-escape %{hex}"))?);
                i += 3;
            }
            b if is_unreserved(b) => {
                out.push(b);
                i += 1;
            }
            b => return Err(format!("{:?} is not encoded", char::from(b))),
        }
    }
    String::from_utf8(out).map_err(|_| "a parameter is not UTF-8".to_owned())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// SigV4's URI encoding: every byte but the unreserved ones as `%XX`, upper-case.
pub fn uri_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if is_unreserved(b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
