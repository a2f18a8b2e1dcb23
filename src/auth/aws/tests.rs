use super::*;

/// MSK IAM tokens made by AWS's Python signer at a fixed clock (how: tests/data/aws/msk_iam_token.py).
const SIGNER_TOKENS: &str = include_str!("../../../tests/data/aws/msk-iam-tokens.json");

fn at(rfc3339: &str) -> SystemTime {
    credentials::parse_time(rfc3339).expect("time")
}

fn keys(id: &str, secret: &str, token: Option<&str>, expiration: Option<SystemTime>) -> AwsCredentials {
    AwsCredentials {
        access_key_id: id.to_owned(),
        secret_access_key: Secret::new(secret),
        session_token: token.map(Secret::new),
        expiration,
        principal: "test".to_owned(),
    }
}

fn decode(token: &str) -> String {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("base64url without padding");
    String::from_utf8(bytes).expect("UTF-8")
}

#[test]
fn a_fixed_clock_token_is_byte_for_byte_the_aws_python_signers() {
    let expected: serde_json::Value = serde_json::from_str(SIGNER_TOKENS).expect("fixture");
    let field = |name: &str| expected[name].as_str().expect(name).to_owned();
    let now = at(&field("timestamp"));
    let cases = expected["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let credentials = keys(
            &field("access_key_id"),
            &field("secret_access_key"),
            case["session_token"].as_str(),
            None,
        );
        let (value, expires_at) = token(&field("region"), &credentials, now, &field("user_agent")).expect("token");
        assert_eq!(value, case["token"].as_str().expect("token"), "{}", decode(&value));
        let expiry_ms = case["expiry_ms"].as_u64().expect("expiry");
        assert_eq!(expires_at, SystemTime::UNIX_EPOCH + Duration::from_millis(expiry_ms));
    }
}

#[test]
fn our_token_is_the_presigned_connect_url_with_our_user_agent_and_no_padding() {
    let credentials = keys("AKIAIOSFODNN7EXAMPLE", "secret", Some("tok/en+=="), None);
    let now = at("2024-02-29T23:59:59.750Z");
    let (value, expires_at) = token("eu-central-1", &credentials, now, USER_AGENT).expect("token");
    assert!(!value.contains(['=', '+', '/']), "{value}");
    let url = decode(&value);
    assert!(
        url.starts_with(
            "https://kafka.eu-central-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240229%2Feu-central-1%2Fkafka-cluster%2Faws4_request\
             &X-Amz-Date=20240229T235959Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Security-Token=tok%2Fen%2B%3D%3D&X-Amz-Signature="
        ),
        "{url}"
    );
    assert!(
        url.ends_with(&format!("&User-Agent=cdc-orchestrator%2F{}", env!("CARGO_PKG_VERSION"))),
        "{url}"
    );
    // 900 s after the signing second, which drops the fraction as X-Amz-Date does.
    assert_eq!(expires_at, at("2024-03-01T00:14:59Z"));
}

#[test]
fn a_token_expires_with_its_credentials_when_they_expire_first() {
    let now = at("2024-01-01T00:00:00Z");
    let soon = now + Duration::from_secs(120);
    let (_, expires_at) = token("us-east-1", &keys("AKIAX", "s", Some("t"), Some(soon)), now, "ua").expect("token");
    assert_eq!(expires_at, soon);
    let later = now + Duration::from_secs(3600);
    let (_, expires_at) = token("us-east-1", &keys("AKIAX", "s", Some("t"), Some(later)), now, "ua").expect("token");
    assert_eq!(expires_at, now + TOKEN_LIFETIME);
}

#[test]
fn credentials_are_renewed_a_token_lifetime_before_they_expire_and_used_to_their_last_minute() {
    let now = at("2024-01-01T00:00:00Z");
    assert!(!needs_refresh(None, now), "long-term keys are never renewed");
    assert!(!needs_refresh(
        Some(now + REFRESH_BEFORE_EXPIRY + Duration::from_secs(1)),
        now
    ));
    assert!(needs_refresh(Some(now + REFRESH_BEFORE_EXPIRY), now));
    assert!(needs_refresh(Some(now - Duration::from_secs(1)), now));
    assert!(still_usable(None, now));
    assert!(still_usable(Some(now + LAST_USABLE + Duration::from_secs(1)), now));
    assert!(!still_usable(Some(now + LAST_USABLE), now));
}

fn env(pairs: &[(&str, &str)]) -> AwsEnv {
    AwsEnv::from_pairs(pairs.iter().copied())
}

fn fixed(time: SystemTime) -> Clock {
    Arc::new(move || time)
}

fn provider(aws: &AwsMskIamConfig, pairs: &[(&str, &str)], now: SystemTime) -> Result<MskIamTokenProvider, TokenError> {
    MskIamTokenProvider::with_clock(aws, &env(pairs), Duration::from_secs(5), fixed(now))
}

fn error_of(aws: &AwsMskIamConfig, pairs: &[(&str, &str)]) -> String {
    match provider(aws, pairs, at("2024-01-01T00:00:00Z")) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e @ TokenError::Config { .. }) => e.to_string(),
        Err(e) => panic!("not a configuration error: {e}"),
    }
}

const ENV_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIAENVENVENVENV"),
    ("AWS_SECRET_ACCESS_KEY", "env-secret"),
];

#[test]
fn the_region_is_the_configured_one_then_aws_region_then_aws_default_region() {
    let now = at("2024-01-01T00:00:00Z");
    let configured = AwsMskIamConfig {
        region: "eu-west-1".to_owned(),
        ..Default::default()
    };
    let all = [
        ENV_KEYS[0],
        ENV_KEYS[1],
        ("AWS_REGION", "us-west-2"),
        ("AWS_DEFAULT_REGION", "ap-south-1"),
    ];
    assert_eq!(provider(&configured, &all, now).expect("ok").region(), "eu-west-1");
    assert_eq!(
        provider(&Default::default(), &all, now).expect("ok").region(),
        "us-west-2"
    );
    assert_eq!(
        provider(&Default::default(), &[all[0], all[1], all[3]], now)
            .expect("ok")
            .region(),
        "ap-south-1"
    );
    let missing = error_of(&Default::default(), &ENV_KEYS);
    assert!(
        missing.starts_with("kafka.sasl.aws.region: unset, and so are AWS_REGION"),
        "{missing}"
    );
    let bad = error_of(
        &Default::default(),
        &[ENV_KEYS[0], ENV_KEYS[1], ("AWS_REGION", "evil.com/x")],
    );
    assert!(
        bad.starts_with("AWS_REGION: \"evil.com/x\" is not an AWS region"),
        "{bad}"
    );
}

fn in_region() -> AwsMskIamConfig {
    AwsMskIamConfig {
        region: "us-east-1".to_owned(),
        ..Default::default()
    }
}

#[test]
fn sources_are_tried_in_the_sdks_order_and_each_names_what_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "jwt").expect("token");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = AKIAFILEFILEFILE\naws_secret_access_key = file-secret\n\
         [other]\naws_access_key_id = AKIAOTHEROTHEROT\naws_secret_access_key = other-secret\n",
    )
    .expect("file");
    let token_file = token_file.to_str().expect("path");
    let file = file.to_str().expect("path");
    let now = at("2024-01-01T00:00:00Z");
    let web = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/cdc"),
    ];
    let shared = ("AWS_SHARED_CREDENTIALS_FILE", file);
    let source_of = |pairs: &[(&str, &str)]| provider(&in_region(), pairs, now).expect("source").source();
    assert_eq!(
        source_of(&[ENV_KEYS[0], ENV_KEYS[1], web[0], web[1], shared]),
        "the environment (AWS_ACCESS_KEY_ID)"
    );
    assert_eq!(
        source_of(&[web[0], web[1], shared]),
        format!("web identity (role arn:aws:iam::1:role/cdc, token file {token_file})")
    );
    assert_eq!(
        source_of(&[shared]),
        format!("the shared credentials file {file}, profile [default]")
    );
    assert_eq!(
        source_of(&[shared, ("AWS_PROFILE", "other")]),
        format!("the shared credentials file {file}, profile [other]")
    );
    let configured_profile = AwsMskIamConfig {
        profile: "other".to_owned(),
        ..in_region()
    };
    let chosen = provider(&configured_profile, &[shared, ("AWS_PROFILE", "default")], now).expect("profile");
    assert!(chosen.source().ends_with("profile [other]"), "{}", chosen.source());

    let no_role = error_of(&in_region(), &[web[0]]);
    assert_eq!(
        no_role,
        "AWS_ROLE_ARN: unset while AWS_WEB_IDENTITY_TOKEN_FILE is set (IRSA sets both)"
    );
    let bad_session = error_of(&in_region(), &[web[0], web[1], ("AWS_ROLE_SESSION_NAME", "a b")]);
    assert!(
        bad_session.starts_with("AWS_ROLE_SESSION_NAME: \"a b\""),
        "{bad_session}"
    );
    let gone = dir.path().join("gone");
    let no_file = error_of(
        &in_region(),
        &[("AWS_WEB_IDENTITY_TOKEN_FILE", gone.to_str().expect("path")), web[1]],
    );
    assert!(
        no_file.starts_with("AWS_WEB_IDENTITY_TOKEN_FILE: ") && no_file.contains("not found"),
        "{no_file}"
    );
    let no_profile = error_of(&in_region(), &[shared, ("AWS_PROFILE", "prod")]);
    assert!(
        no_profile.starts_with("AWS_SHARED_CREDENTIALS_FILE: ") && no_profile.ends_with("no profile [prod]"),
        "{no_profile}"
    );
    let nothing = error_of(&in_region(), &[("HOME", dir.path().to_str().expect("path"))]);
    assert!(
        nothing.starts_with("AWS_ACCESS_KEY_ID: no AWS credentials for AWS_MSK_IAM"),
        "{nothing}"
    );
    assert!(nothing.contains(".aws/credentials does not exist"), "{nothing}");
    for message in [&no_role, &bad_session, &no_file, &no_profile, &nothing] {
        assert!(!message.contains("secret"), "{message}");
    }
}

#[tokio::test]
async fn environment_keys_sign_until_their_expiry_then_fail_naming_the_variable() {
    let expiry = at("2024-01-01T01:00:00Z");
    let pairs = [
        ENV_KEYS[0],
        ENV_KEYS[1],
        ("AWS_SESSION_TOKEN", "env-token"),
        ("AWS_CREDENTIAL_EXPIRATION", "2024-01-01T01:00:00Z"),
    ];
    let now = Arc::new(std::sync::Mutex::new(at("2024-01-01T00:00:00Z")));
    let clock_now = Arc::clone(&now);
    let clock: Clock = Arc::new(move || *clock_now.lock().expect("clock"));
    let provider =
        MskIamTokenProvider::with_clock(&in_region(), &env(&pairs), Duration::from_secs(5), clock).expect("provider");
    let token = provider.fetch().await.expect("token");
    assert_eq!(token.principal.as_deref(), Some("access key AKIA…VENV"));
    assert_eq!(token.expires_at, at("2024-01-01T00:15:00Z"));
    assert!(decode(token.value.expose()).contains("X-Amz-Security-Token=env-token&"));
    // Within the last token lifetime: the token ends with the credentials.
    *now.lock().expect("clock") = at("2024-01-01T00:50:00Z");
    assert_eq!(provider.fetch().await.expect("token").expires_at, expiry);
    // Past it: a configuration error that names the source, and no secret.
    *now.lock().expect("clock") = expiry;
    let error = provider.fetch().await.expect_err("expired");
    assert!(
        matches!(
            error,
            TokenError::Config {
                key: "AWS_CREDENTIAL_EXPIRATION",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("the environment (AWS_ACCESS_KEY_ID) expired at 2024-01-01T01:00:00Z"),
        "{message}"
    );
    assert!(
        !message.contains("env-secret") && !message.contains("env-token"),
        "{message}"
    );
}

#[test]
fn kafka_sasl_aws_credentials_forces_one_source_on_a_pod_that_has_several() {
    // A pod with the sink's S3 keys in its environment, IRSA's token file and a credentials file.
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "jwt").expect("token");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = AKIAFILEFILEFILE\naws_secret_access_key = file-secret\n",
    )
    .expect("file");
    let token_file = token_file.to_str().expect("path");
    let file = file.to_str().expect("path");
    let web = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/cdc"),
    ];
    let shared = ("AWS_SHARED_CREDENTIALS_FILE", file);
    let everything = [ENV_KEYS[0], ENV_KEYS[1], web[0], web[1], shared];
    let now = at("2024-01-01T00:00:00Z");
    let with = |credentials: AwsCredentialSource| AwsMskIamConfig {
        credentials,
        ..in_region()
    };
    let source_of =
        |credentials, pairs: &[(&str, &str)]| provider(&with(credentials), pairs, now).expect("source").source();
    assert_eq!(
        source_of(AwsCredentialSource::Auto, &everything),
        "the environment (AWS_ACCESS_KEY_ID)"
    );
    assert_eq!(
        source_of(AwsCredentialSource::Environment, &everything),
        "the environment (AWS_ACCESS_KEY_ID)"
    );
    assert_eq!(
        source_of(AwsCredentialSource::WebIdentity, &everything),
        format!("web identity (role arn:aws:iam::1:role/cdc, token file {token_file})")
    );
    assert_eq!(
        source_of(AwsCredentialSource::Profile, &everything),
        format!("the shared credentials file {file}, profile [default]")
    );

    // A forced source that is not set up is a configuration error naming the key and what is missing, even where
    // another source would have signed.
    let forced_error = |credentials, pairs: &[(&str, &str)]| error_of(&with(credentials), pairs);
    assert_eq!(
        forced_error(AwsCredentialSource::Environment, &[web[0], web[1], shared]),
        "kafka.sasl.aws.credentials: is \"environment\", but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are unset"
    );
    assert_eq!(
        forced_error(AwsCredentialSource::WebIdentity, &[ENV_KEYS[0], ENV_KEYS[1], shared]),
        "kafka.sasl.aws.credentials: is \"web_identity\", but AWS_WEB_IDENTITY_TOKEN_FILE is unset (IRSA sets it, \
         with AWS_ROLE_ARN)"
    );
    let home = dir.path().to_str().expect("path");
    let no_file = forced_error(
        AwsCredentialSource::Profile,
        &[ENV_KEYS[0], ENV_KEYS[1], web[0], web[1], ("HOME", home)],
    );
    assert!(
        no_file.starts_with("kafka.sasl.aws.credentials: is \"profile\", but there is no shared credentials file: ")
            && no_file.contains(".aws/credentials does not exist"),
        "{no_file}"
    );
    // A forced source keeps its own checks: web identity still needs its role.
    assert_eq!(
        forced_error(AwsCredentialSource::WebIdentity, &[web[0]]),
        "AWS_ROLE_ARN: unset while AWS_WEB_IDENTITY_TOKEN_FILE is set (IRSA sets both)"
    );
    assert!(!no_file.contains("secret"), "{no_file}");
}
