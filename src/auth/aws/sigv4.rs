//! AWS Signature Version 4, query-string form (a presigned URL), on `ring`: the canonical request, the string to
//! sign, the signing key and the signature, as AWS's "Create a signed AWS API request" and its SigV4 test suite
//! define them. Only what a presigned GET needs: the one signed header is `host`, the payload hash is given.

use chrono::{DateTime, Utc};
use ring::{digest, hmac};

/// SHA-256 of the empty payload, hex: what the MSK IAM signers sign for a GET without a body.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The algorithm, as it is named in the query and the string to sign.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What a request is signed with. Borrowed from [`super::credentials::AwsCredentials`], so no copy of a secret
/// outlives the signing.
#[derive(Clone, Copy)]
pub struct SigningKey<'a> {
    /// The access key id (not a secret; it names the key in `X-Amz-Credential`).
    pub access_key_id: &'a str,
    /// The secret access key.
    pub secret_access_key: &'a str,
    /// The session token of temporary credentials, signed as `X-Amz-Security-Token`.
    pub session_token: Option<&'a str>,
}

/// The request to presign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `PUT`...
    pub method: &'a str,
    /// The `host` header's value, the one signed header.
    pub host: &'a str,
    /// The absolute path, URI-encoded as it goes in the canonical request (`/` for MSK).
    pub path: &'a str,
    /// The operation's query parameters, not encoded, in the order they go on the URL.
    pub query: &'a [(&'a str, &'a str)],
    /// The payload's hash as signed: [`EMPTY_PAYLOAD_SHA256`], or `UNSIGNED-PAYLOAD` for S3.
    pub payload_hash: &'a str,
}

/// Where and when a request is signed.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The region, such as `us-east-1`.
    pub region: &'a str,
    /// The service's signing name, such as `kafka-cluster`.
    pub service: &'a str,
    /// The signing time (`X-Amz-Date`, whole seconds).
    pub at: DateTime<Utc>,
    /// How long the URL stays good, in seconds (`X-Amz-Expires`).
    pub expires_secs: u32,
}

/// A presigned request and the steps that made it (the test suite checks each).
#[derive(Debug, Clone)]
pub struct Presigned {
    /// The whole query string: the operation's parameters, then the `X-Amz-*` ones, `X-Amz-Signature` last.
    pub query: String,
    /// Step 1: the canonical request.
    pub canonical_request: String,
    /// Step 2: the string to sign.
    pub string_to_sign: String,
    /// Step 4: the signature, lower-case hex.
    pub signature: String,
}

/// Presigns `request` with `key` in `scope`.
pub fn presign(request: &Request<'_>, key: &SigningKey<'_>, scope: &Scope<'_>) -> Presigned {
    let date_time = scope.at.format("%Y%m%dT%H%M%SZ").to_string();
    let date = scope.at.format("%Y%m%d").to_string();
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let credential = format!("{}/{credential_scope}", key.access_key_id);
    let expires = scope.expires_secs.to_string();
    // botocore's order on the URL; the canonical query sorts them anyway.
    let mut auth: Vec<(&str, &str)> = vec![
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", &credential),
        ("X-Amz-Date", &date_time),
        ("X-Amz-Expires", &expires),
        ("X-Amz-SignedHeaders", "host"),
    ];
    if let Some(token) = key.session_token {
        auth.push(("X-Amz-Security-Token", token));
    }
    let mut encoded: Vec<(String, String)> = request
        .query
        .iter()
        .chain(auth.iter())
        .map(|(name, value)| (uri_encode(name), uri_encode(value)))
        .collect();
    let on_the_url = join_query(&encoded);
    encoded.sort();
    let canonical_request = format!(
        "{}\n{}\n{}\nhost:{}\n\nhost\n{}",
        request.method,
        request.path,
        join_query(&encoded),
        request.host.trim(),
        request.payload_hash
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date_time}\n{credential_scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let signing_key = [scope.region, scope.service, "aws4_request"].iter().fold(
        hmac_sha256(format!("AWS4{}", key.secret_access_key).as_bytes(), date.as_bytes()),
        |key, part| hmac_sha256(&key, part.as_bytes()),
    );
    let signature = hex(&hmac_sha256(&signing_key, string_to_sign.as_bytes()));
    Presigned {
        query: format!("{on_the_url}&X-Amz-Signature={signature}"),
        canonical_request,
        string_to_sign,
        signature,
    }
}

/// `text` URI-encoded as SigV4 wants: every byte but the unreserved `A-Z a-z 0-9 - _ . ~` as `%XX`, upper-case.
pub fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(byte & 0xf)]));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn join_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(HEX_LOWER[usize::from(byte >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, the query-signing variants (source named in the file).
    const SUITE: &str = include_str!("../../../tests/data/aws/sigv4-query-vectors.json");

    #[test]
    fn every_query_vector_of_the_aws_test_suite_signs_alike_step_by_step() {
        let suite: serde_json::Value = serde_json::from_str(SUITE).expect("suite JSON");
        let text = |v: &serde_json::Value| v.as_str().expect("string").to_owned();
        let at = DateTime::parse_from_rfc3339(suite["timestamp"].as_str().expect("timestamp"))
            .expect("time")
            .with_timezone(&Utc);
        let vectors = suite["vectors"].as_array().expect("vectors");
        assert!(vectors.len() >= 7, "{}", vectors.len());
        for vector in vectors {
            let name = text(&vector["name"]);
            let query: Vec<(String, String)> = vector["query"]
                .as_array()
                .expect("query")
                .iter()
                .map(|pair| (text(&pair[0]), text(&pair[1])))
                .collect();
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let path = text(&vector["path"]);
            let token = vector["session_token"].as_str();
            let presigned = presign(
                &Request {
                    method: "GET",
                    host: suite["host"].as_str().expect("host"),
                    path: &path,
                    query: &query,
                    payload_hash: EMPTY_PAYLOAD_SHA256,
                },
                &SigningKey {
                    access_key_id: suite["access_key_id"].as_str().expect("key id"),
                    secret_access_key: suite["secret_access_key"].as_str().expect("secret"),
                    session_token: token,
                },
                &Scope {
                    region: "us-east-1",
                    service: "service",
                    at,
                    expires_secs: 3600,
                },
            );
            assert_eq!(
                presigned.canonical_request,
                text(&vector["canonical_request"]),
                "{name}"
            );
            assert_eq!(presigned.string_to_sign, text(&vector["string_to_sign"]), "{name}");
            assert_eq!(presigned.signature, text(&vector["signature"]), "{name}");
            assert!(
                presigned
                    .query
                    .ends_with(&format!("&X-Amz-Signature={}", presigned.signature)),
                "{name}: {}",
                presigned.query
            );
        }
    }

    /// The presigned URL example of Amazon S3's documentation ("Authenticating Requests: Using Query Parameters
    /// (AWS Signature Version 4)", example "GET test.txt"): S3 signs `UNSIGNED-PAYLOAD`.
    #[test]
    fn the_documented_s3_presigned_url_example_signs_alike() {
        let presigned = presign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                payload_hash: "UNSIGNED-PAYLOAD",
            },
            &SigningKey {
                access_key_id: "AKIAIOSFODNN7EXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session_token: None,
            },
            &Scope {
                region: "us-east-1",
                service: "s3",
                at: DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc),
                expires_secs: 86400,
            },
        );
        assert_eq!(
            presigned.query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F\
             aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&\
             X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn uri_encoding_keeps_only_the_unreserved_characters() {
        assert_eq!(uri_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(uri_encode("a b/c+d=e:f"), "a%20b%2Fc%2Bd%3De%3Af");
        assert_eq!(uri_encode("ሴ"), "%E1%88%B4");
    }
}
