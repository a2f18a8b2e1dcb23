//! What runs before every handler: the body limit, the refusal of state-changing requests a browser page could
//! have sent, and the bearer-token check of the control routes.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::ApiError;
use super::routes::ServerState;

/// Answers 401 unless the request carries the configured bearer token (when one is configured).
pub(super) async fn require_token(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive (RFC 9110 section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// Compares without an early exit, so response time does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses a state-changing request (any method but GET, HEAD, OPTIONS and TRACE) that a web page in a browser
/// could have sent, so that no page a user of the host visits can act on the sidecar (cross-site request forgery,
/// DNS rebinding); see [`cross_site_refusal`] for the rules.
pub(super) async fn refuse_cross_site(State(state): State<ServerState>, request: Request, next: Next) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    match cross_site_refusal(request.headers(), state.token.is_some(), &state.allowed_hosts) {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    }
}

/// Why a state-changing request with these `headers` could come from a web page, if it could:
///
/// - an `Origin` other than the server's own (`http://` and the `Host`): a page of another origin sent it (403);
/// - without a token, a `Host` that is neither an IP literal, `localhost` nor in `allowed_hosts`: a page of the
///   same origin, whose name now resolves to this host, sent it (DNS rebinding; 403);
/// - a `Content-Type` other than `application/json`: a page of another origin can send only form and text types
///   without a CORS preflight, which this server never grants (415).
fn cross_site_refusal(headers: &HeaderMap, token_set: bool, allowed_hosts: &[String]) -> Option<ApiError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host.is_some_and(|host| {
            origin
                .as_bytes()
                .strip_prefix(b"http://")
                .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host.as_bytes()))
        });
        if !own {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: its Origin is not this server's own",
            ));
        }
    }
    if !token_set && !host.is_some_and(|host| is_trusted_host(host, allowed_hosts)) {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "request refused: without server.token, the Host must be an IP address, localhost or one of \
             server.allowed_hosts",
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "state-changing requests need Content-Type: application/json",
        ));
    }
    None
}

/// Whether the `Host` header value `host` (a name or IP literal, maybe with a port) names this server in a way no
/// other site's page can: an IP literal, `localhost`, or a name the operator listed.
fn is_trusted_host(host: &str, allowed_hosts: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal, `[::1]` or `[::1]:8080`.
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) => {
                return ip.parse::<IpAddr>().is_ok();
            }
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
}

/// A port number's digits.
fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Reads the whole body, at most `limit` bytes of it, before the handler runs: a request whose body is too big
/// (declared, or chunked and counted as it arrives) is answered 413 and never acts.
pub(super) async fn limit_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )
        .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
        Ok(collected) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => too_large(),
        Err(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {}", crate::logging::chain(&*e)),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer 007"), Some("007"));
        assert_eq!(bearer_token("bearer 007"), Some("007"));
        assert_eq!(bearer_token("BEARER  007"), Some("007"));
        assert_eq!(bearer_token("Basic 007"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("a header value")))
            .collect()
    }

    #[test]
    fn only_a_json_request_of_this_origin_and_a_trusted_host_may_change_state() {
        let json = (header::CONTENT_TYPE, "application/json");
        let allowed = ["sidecar.internal".to_owned()];
        let refusal = |pairs: &[(header::HeaderName, &str)], token_set: bool| {
            cross_site_refusal(&headers(pairs), token_set, &allowed).map(|e| e.into_response().status().as_u16())
        };
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "[::1]",
            "LocalHost:80",
            "Sidecar.Internal:8080",
        ] {
            assert_eq!(refusal(&[(header::HOST, host), json.clone()], false), None, "{host}");
        }
        let same_origin = [
            (header::HOST, "127.0.0.1:8080"),
            (header::ORIGIN, "http://127.0.0.1:8080"),
            json.clone(),
        ];
        assert_eq!(refusal(&same_origin, false), None);
        let charset = (header::CONTENT_TYPE, "Application/JSON; charset=utf-8");
        assert_eq!(refusal(&[(header::HOST, "localhost"), charset], false), None);

        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1:x",
            "[::1]x",
            "",
        ] {
            assert_eq!(
                refusal(&[(header::HOST, host), json.clone()], false),
                Some(403),
                "{host}"
            );
            assert_eq!(
                refusal(&[(header::HOST, host), json.clone()], true),
                None,
                "with a token: {host}"
            );
        }
        assert_eq!(refusal(std::slice::from_ref(&json), false), Some(403), "no Host");
        for origin in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
        ] {
            let pairs = [(header::HOST, "127.0.0.1:8080"), (header::ORIGIN, origin), json.clone()];
            assert_eq!(refusal(&pairs, true), Some(403), "{origin}");
        }
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/jsonx",
        ] {
            let pairs = [(header::HOST, "127.0.0.1"), (header::CONTENT_TYPE, content_type)];
            assert_eq!(refusal(&pairs, true), Some(415), "{content_type}");
        }
        assert_eq!(
            refusal(&[(header::HOST, "127.0.0.1")], true),
            Some(415),
            "no Content-Type"
        );
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
