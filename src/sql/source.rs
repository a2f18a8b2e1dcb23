//! The Kafka source's options, the same for every table and written here once: the templates say
//! `CREATE TEMPORARY TABLE <source> ( <columns> ) WITH ( {{ source_options }} )`, and `[kafka]` fills them in.
//!
//! The source reads the table's topic (`kafka.topic_template`) from `kafka.bootstrap` as the table's consumer
//! group (`kafka.group_template`, whose lag the sidecar reads). It resumes from the group's committed offsets, and
//! a first run, with none committed, starts at the beginning of the topic. Records are Debezium's envelope
//! (`before`, `after`, `op`) as JSON without schemas, read as a changelog.
//!
//! On a secured cluster the source connects as [`KafkaConfig::jobs_client`] says: `[kafka.jobs]` where set, the
//! sidecar's `kafka.tls` and `kafka.sasl` otherwise. [`security`] turns those settings into Kafka's security
//! protocol, SASL mechanism and JAAS login, the CA file as a PEM trust store and, for mutual TLS, the PEM key
//! store. The passwords and the OAUTHBEARER client secret are credentials ([`Credentials`](super::Credentials)):
//! `<redacted>` wherever statements are shown or logged.
//!
//! Under OAUTHBEARER the jobs get Kafka's own login (kafka-clients 3.4+; the jobs' is 3.9.1): the
//! `OAuthBearerLoginCallbackHandler` makes the same client-credentials grant against
//! `sasl.oauthbearer.token.endpoint.url` as the sidecar, with `clientId`, `clientSecret`, `scope` and one
//! `extension_<name>` per SASL extension from the JAAS options. It reads no audience (Kafka 3.9 has no such
//! client option; its `sasl.oauthbearer.expected.audience` is the broker's check), so `kafka.sasl.oauth.audience`
//! is the sidecar's alone and is not rendered. Kafka 4.0+ clients refuse a token endpoint that the JVM system
//! property `org.apache.kafka.sasl.oauthbearer.allowed.urls` does not list (3.9.1 allows every URL by default).

use minijinja::Value;

use super::credentials::jaas_escape;
use super::with_options;
use crate::config::{Config, JobsClient, KAFKA_JOBS_TLS_KEY_PASSWORD, OauthConfig, SaslConfig, SaslMechanism};

/// The placeholder whose value holds the Kafka source's options.
pub(super) const SOURCE_OPTIONS: &str = "source_options";

/// The source placeholder of `table` under `config`; `secret` gives the value of the `[kafka]` secret set by an
/// environment variable (one of [`KAFKA_SECRETS`](super::KAFKA_SECRETS)). An unknown secret's option is left
/// out: rendering checks first that a template using the options has every one of [`carried_secrets`].
pub(super) fn variables<'a>(
    config: &Config,
    table: &str,
    secret: impl Fn(&str) -> Option<&'a str>,
) -> Vec<(&'static str, Value)> {
    let kafka = &config.kafka;
    let client = kafka.jobs_client();
    let topic = kafka.topic_for(table);
    let bootstrap = client.bootstrap.join(",");
    let group = kafka.group_for(table);
    let mut pairs: Vec<(&str, &str)> = vec![
        ("connector", "kafka"),
        ("topic", &topic),
        ("properties.bootstrap.servers", &bootstrap),
        ("properties.group.id", &group),
    ];
    let security = security(&client, secret);
    pairs.extend(security.iter().map(|(key, value)| (*key, value.as_str())));
    pairs.extend([
        ("scan.startup.mode", "group-offsets"),
        ("properties.auto.offset.reset", "earliest"),
        ("format", "debezium-json"),
        ("debezium-json.schema-include", "false"),
    ]);
    let options = with_options(&pairs);
    // SQL text whose values `with_options` has escaped: marked safe, so the formatter passes it unchanged.
    vec![(SOURCE_OPTIONS, Value::from_safe_string(options))]
}

/// The environment variables of the secrets the options of `client` carry, each of which must be known to render
/// them.
pub(super) fn carried_secrets(client: &JobsClient<'_>) -> Vec<&'static str> {
    let mut variables = Vec::new();
    if let Some(variable) = client
        .sasl
        .and_then(|(origin, sasl)| origin.secret_variable(sasl.mechanism))
    {
        variables.push(variable);
    }
    if client.tls.is_some_and(|tls| tls.key_password) {
        variables.push(KAFKA_JOBS_TLS_KEY_PASSWORD);
    }
    variables
}

/// The Kafka client's security properties for the jobs' effective settings `client`, with the secrets from
/// `secret`; none on a plaintext cluster.
fn security<'a>(client: &JobsClient<'_>, secret: impl Fn(&str) -> Option<&'a str>) -> Vec<(&'static str, String)> {
    let protocol = match (client.tls.is_some(), client.sasl.is_some()) {
        (false, false) => return Vec::new(),
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    let mut properties = vec![("properties.security.protocol", protocol.to_owned())];
    if let Some((origin, sasl)) = client.sasl {
        let secret = origin.secret_variable(sasl.mechanism).and_then(&secret);
        properties.extend(login(sasl, secret, client.class_prefix));
    }
    if let Some(tls) = client.tls {
        if let Some(ca_file) = tls.ca_file {
            // Kafka reads PEM trust stores itself (KIP-651); without a CA file the JVM's default roots apply, as
            // the system roots do for the sidecar.
            properties.push(("properties.ssl.truststore.type", "PEM".to_owned()));
            properties.push(("properties.ssl.truststore.location", ca_file.display().to_string()));
        }
        if let Some(keystore_file) = tls.keystore_file {
            // A PEM key store is one file with the PKCS#8 key and the certificate chain (KIP-651). Kafka refuses a
            // store password for PEM; the key password is for an encrypted key only.
            properties.push(("properties.ssl.keystore.type", "PEM".to_owned()));
            properties.push(("properties.ssl.keystore.location", keystore_file.display().to_string()));
            if tls.key_password
                && let Some(password) = secret(KAFKA_JOBS_TLS_KEY_PASSWORD)
            {
                properties.push(("properties.ssl.key.password", password.to_owned()));
            }
        }
    }
    properties
}

const PLAIN_LOGIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
const SCRAM_LOGIN_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";

/// The name of Kafka's class `class` (one of the `org.apache.kafka` constants here) on Flink's class path: with
/// `kafka.jobs.client_class_prefix` before it, as the fat `flink-sql-connector-kafka` relocates kafka-clients to
/// `org.apache.flink.kafka.shaded.org.apache.kafka`. The one place the prefix is applied; the aws-msk-iam-auth
/// jar's `software.amazon.msk` classes are not Kafka's and never get it.
fn kafka_class(prefix: &str, class: &str) -> String {
    format!("{prefix}{class}")
}

/// The login module and callback handler of the aws-msk-iam-auth jar, which must be on Flink's class path.
const MSK_IAM_LOGIN_MODULE: &str = "software.amazon.msk.auth.iam.IAMLoginModule";
const MSK_IAM_CALLBACK_HANDLER: &str = "software.amazon.msk.auth.iam.IAMClientCallbackHandler";

/// The SASL mechanism's properties, and with `secret` (the password, or the OAUTHBEARER client secret) its JAAS
/// login. AWS MSK IAM carries no secret: the aws-msk-iam-auth jar signs with the credentials of the job's own pod
/// (its default AWS credential chain: IRSA's web identity, the environment, the instance role). Kafka's classes
/// are named with `class_prefix` before them ([`kafka_class`]).
fn login(sasl: &SaslConfig, secret: Option<&str>, class_prefix: &str) -> Vec<(&'static str, String)> {
    let module = match sasl.mechanism {
        SaslMechanism::Plain => PLAIN_LOGIN_MODULE,
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => SCRAM_LOGIN_MODULE,
        SaslMechanism::OAuthBearer => return oauthbearer(sasl.oauth.as_ref(), secret, class_prefix),
        SaslMechanism::AwsMskIam => {
            return vec![
                // The Java client speaks MSK IAM as its own mechanism, AWS_MSK_IAM.
                ("properties.sasl.mechanism", "AWS_MSK_IAM".to_owned()),
                (
                    "properties.sasl.jaas.config",
                    format!("{MSK_IAM_LOGIN_MODULE} required;"),
                ),
                (
                    "properties.sasl.client.callback.handler.class",
                    MSK_IAM_CALLBACK_HANDLER.to_owned(),
                ),
            ];
        }
    };
    let mut properties = vec![("properties.sasl.mechanism", sasl.mechanism.as_str().to_owned())];
    if let Some(password) = secret {
        let jaas = format!(
            r#"{} required username="{}" password="{}";"#,
            kafka_class(class_prefix, module),
            jaas_escape(&sasl.username),
            jaas_escape(password)
        );
        properties.push(("properties.sasl.jaas.config", jaas));
    }
    properties
}

/// Kafka's OIDC client-credentials login (in `org.apache.kafka.common.security.oauthbearer` since Kafka 3.4).
const OAUTH_CALLBACK_HANDLER: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler";
const OAUTH_LOGIN_MODULE: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// OAUTHBEARER's properties: the mechanism, Kafka's login callback handler and the token endpoint, and with the
/// client secret the JAAS login (`clientId`, `clientSecret`, `scope` when set, `extension_<name>` per extension).
fn oauthbearer(oauth: Option<&OauthConfig>, secret: Option<&str>, class_prefix: &str) -> Vec<(&'static str, String)> {
    let mut properties = vec![
        (
            "properties.sasl.mechanism",
            SaslMechanism::OAuthBearer.as_str().to_owned(),
        ),
        (
            "properties.sasl.login.callback.handler.class",
            kafka_class(class_prefix, OAUTH_CALLBACK_HANDLER),
        ),
    ];
    let Some(oauth) = oauth else {
        return properties;
    };
    properties.push((
        "properties.sasl.oauthbearer.token.endpoint.url",
        oauth.token_endpoint.clone(),
    ));
    if let Some(secret) = secret {
        let mut jaas = format!(
            r#"{} required clientId="{}" clientSecret="{}""#,
            kafka_class(class_prefix, OAUTH_LOGIN_MODULE),
            jaas_escape(&oauth.client_id),
            jaas_escape(secret)
        );
        if !oauth.scope.trim().is_empty() {
            jaas.push_str(&format!(r#" scope="{}""#, jaas_escape(oauth.scope.trim())));
        }
        for (name, value) in &oauth.extensions {
            jaas.push_str(&format!(r#" extension_{name}="{}""#, jaas_escape(value)));
        }
        jaas.push(';');
        properties.push(("properties.sasl.jaas.config", jaas));
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_options_name_the_tables_topic_and_group_escaped() {
        let mut config = Config::default();
        config.kafka.bootstrap = vec!["a:9092".to_owned(), "o'b:9093".to_owned()];
        let variables = variables(&config, "room", |_| None);
        let [(name, options)] = variables.as_slice() else {
            panic!("one placeholder: {variables:?}");
        };
        assert_eq!(*name, SOURCE_OPTIONS);
        assert!(options.is_safe());
        let options = options.to_string();
        assert!(options.starts_with("    'connector' = 'kafka',\n"), "{options}");
        assert!(
            options.contains("    'topic' = 'university-server.public.room',\n"),
            "{options}"
        );
        assert!(
            options.contains("    'properties.bootstrap.servers' = 'a:9092,o''b:9093',\n"),
            "{options}"
        );
        assert!(
            options.contains("    'properties.group.id' = 'cdc-room',\n"),
            "{options}"
        );
        assert!(
            options.ends_with("    'debezium-json.schema-include' = 'false'"),
            "{options}"
        );
    }

    use crate::config::{
        KAFKA_JOBS_SASL_PASSWORD, KAFKA_SASL_OAUTH_CLIENT_SECRET, KAFKA_SASL_PASSWORD, KafkaConfig, Secret,
    };

    /// The options of table `room` under `kafka`, rendered with `password` as the sidecar's SASL password.
    fn options_of(kafka: KafkaConfig, password: Option<&str>) -> String {
        options_with(
            kafka,
            &password
                .map(|p| (KAFKA_SASL_PASSWORD, p))
                .into_iter()
                .collect::<Vec<_>>(),
        )
    }

    /// The options of table `room` under `kafka`, rendered with `secrets` by environment variable.
    fn options_with(kafka: KafkaConfig, secrets: &[(&str, &str)]) -> String {
        let config = Config {
            kafka,
            ..Config::default()
        };
        let variables = variables(&config, "room", |variable| {
            secrets.iter().find(|(v, _)| *v == variable).map(|(_, secret)| *secret)
        });
        variables[0].1.to_string()
    }

    fn sasl(mechanism: SaslMechanism, username: &str) -> Option<SaslConfig> {
        Some(SaslConfig {
            mechanism,
            username: username.to_owned(),
            password: Secret::new("unused: the credentials carry the password"),
            aws: None,
            oauth: None,
        })
    }

    fn tls(ca_file: Option<&str>) -> crate::config::TlsConfig {
        crate::config::TlsConfig {
            enabled: true,
            ca_file: ca_file.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn a_plaintext_cluster_gets_exactly_the_options_it_always_had() {
        assert_eq!(
            options_of(KafkaConfig::default(), Some("ignored")),
            "    'connector' = 'kafka',\n    'topic' = 'university-server.public.room',\n    \
             'properties.bootstrap.servers' = '127.0.0.1:9092',\n    'properties.group.id' = 'cdc-room',\n    \
             'scan.startup.mode' = 'group-offsets',\n    'properties.auto.offset.reset' = 'earliest',\n    \
             'format' = 'debezium-json',\n    'debezium-json.schema-include' = 'false'"
        );
    }

    #[test]
    fn tls_alone_is_ssl_trusting_the_ca_file_as_pem() {
        let kafka = KafkaConfig {
            tls: tls(Some("/etc/kafka/ca's.pem")),
            ..KafkaConfig::default()
        };
        let options = options_of(kafka, None);
        assert!(
            options.contains(
                "    'properties.group.id' = 'cdc-room',\n    'properties.security.protocol' = 'SSL',\n    \
                 'properties.ssl.truststore.type' = 'PEM',\n    \
                 'properties.ssl.truststore.location' = '/etc/kafka/ca''s.pem',\n    'scan.startup.mode'"
            ),
            "{options}"
        );
        assert!(!options.contains("sasl"), "{options}");
        // No CA file: the JVM's own roots, as the sidecar uses the system's.
        let system_roots = options_of_tls(tls(None));
        assert!(
            system_roots.contains("'properties.security.protocol' = 'SSL'"),
            "{system_roots}"
        );
        assert!(!system_roots.contains("truststore"), "{system_roots}");
        // A CA file without `enabled` is not TLS, for the jobs as for the sidecar.
        let disabled = options_of_tls(crate::config::TlsConfig {
            enabled: false,
            ..tls(Some("/ca.pem"))
        });
        assert_eq!(disabled, options_of(KafkaConfig::default(), None));
    }

    fn options_of_tls(tls: crate::config::TlsConfig) -> String {
        options_of(
            KafkaConfig {
                tls,
                ..KafkaConfig::default()
            },
            None,
        )
    }

    #[test]
    fn sasl_plain_alone_is_sasl_plaintext_with_the_plain_login() {
        let kafka = KafkaConfig {
            sasl: sasl(SaslMechanism::Plain, "cdc"),
            ..KafkaConfig::default()
        };
        let options = options_of(kafka, Some("pw"));
        assert!(
            options.contains(
                "    'properties.security.protocol' = 'SASL_PLAINTEXT',\n    \
                 'properties.sasl.mechanism' = 'PLAIN',\n    'properties.sasl.jaas.config' = \
                 'org.apache.kafka.common.security.plain.PlainLoginModule required username=\"cdc\" password=\"pw\";',\n"
            ),
            "{options}"
        );
        assert!(!options.contains("ssl."), "{options}");
    }

    #[test]
    fn scram_with_tls_is_sasl_ssl_with_the_scram_login_and_the_trust_store() {
        for (mechanism, name) in [
            (SaslMechanism::ScramSha256, "SCRAM-SHA-256"),
            (SaslMechanism::ScramSha512, "SCRAM-SHA-512"),
        ] {
            let kafka = KafkaConfig {
                tls: tls(Some("/ca.pem")),
                sasl: sasl(mechanism, "cdc"),
                ..KafkaConfig::default()
            };
            let options = options_of(kafka, Some("pw"));
            assert!(
                options.contains(&format!(
                    "    'properties.security.protocol' = 'SASL_SSL',\n    \
                     'properties.sasl.mechanism' = '{name}',\n    'properties.sasl.jaas.config' = \
                     'org.apache.kafka.common.security.scram.ScramLoginModule required username=\"cdc\" password=\"pw\";',\n    \
                     'properties.ssl.truststore.type' = 'PEM',\n    'properties.ssl.truststore.location' = '/ca.pem',\n"
                )),
                "{options}"
            );
        }
    }

    #[test]
    fn quotes_and_backslashes_stay_inside_the_jaas_value_and_the_sql_literal() {
        let kafka = KafkaConfig {
            sasl: sasl(SaslMechanism::ScramSha512, r#"us"er\"#),
            ..KafkaConfig::default()
        };
        let options = options_of(kafka, Some("a\"b\\c'd\ne"));
        // JAAS escapes `"`, `\` and the line break; then SQL doubles the `'`.
        assert!(
            options.contains(
                r#"'properties.sasl.jaas.config' = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="us\"er\\" password="a\"b\\c''d\ne";'"#
            ),
            "{options}"
        );
        let statements = super::super::split_statements(&format!("CREATE TABLE t (x INT) WITH (\n{options}\n);"))
            .expect("closed literals");
        assert_eq!(statements.len(), 1, "{statements:?}");
    }

    #[test]
    fn aws_msk_iam_is_sasl_ssl_with_the_iam_login_module_and_no_secret() {
        let kafka = KafkaConfig {
            tls: tls(Some("/ca.pem")),
            sasl: Some(SaslConfig {
                mechanism: SaslMechanism::AwsMskIam,
                username: String::new(),
                password: Secret::new(""),
                oauth: None,
                aws: Some(crate::config::AwsMskIamConfig {
                    region: "eu-west-1".to_owned(),
                    ..Default::default()
                }),
            }),
            ..KafkaConfig::default()
        };
        // Even handed a password (none exists for this mechanism), the options carry none.
        let options = options_of(kafka, Some("not-a-password"));
        assert!(
            options.contains(
                "    'properties.security.protocol' = 'SASL_SSL',\n    \
                 'properties.sasl.mechanism' = 'AWS_MSK_IAM',\n    \
                 'properties.sasl.jaas.config' = 'software.amazon.msk.auth.iam.IAMLoginModule required;',\n    \
                 'properties.sasl.client.callback.handler.class' = \
                 'software.amazon.msk.auth.iam.IAMClientCallbackHandler',\n    \
                 'properties.ssl.truststore.type' = 'PEM',\n    'properties.ssl.truststore.location' = '/ca.pem',\n"
            ),
            "{options}"
        );
        assert!(!options.contains("not-a-password"), "{options}");
    }

    #[test]
    fn without_the_password_the_login_is_left_out() {
        let kafka = KafkaConfig {
            sasl: sasl(SaslMechanism::Plain, "cdc"),
            ..KafkaConfig::default()
        };
        let options = options_of(kafka, None);
        assert!(options.contains("'properties.sasl.mechanism' = 'PLAIN'"), "{options}");
        assert!(!options.contains("jaas"), "{options}");
    }

    /// A sidecar on SCRAM over TLS with its own CA file, as the jobs' settings start from.
    fn secured_sidecar() -> KafkaConfig {
        KafkaConfig {
            bootstrap: vec!["sidecar-view:9093".to_owned()],
            tls: tls(Some("/sidecar/ca.pem")),
            sasl: sasl(SaslMechanism::ScramSha512, "watcher"),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn the_jobs_settings_replace_the_sidecars_key_by_key() {
        let secrets = [
            (KAFKA_SASL_PASSWORD, "watcher-pw"),
            (KAFKA_JOBS_SASL_PASSWORD, "reader-pw"),
        ];
        // Nothing set for the jobs: the sidecar's brokers, login and CA.
        let same = options_with(secured_sidecar(), &secrets);
        assert!(
            same.contains("'properties.bootstrap.servers' = 'sidecar-view:9093'"),
            "{same}"
        );
        assert!(same.contains(r#"username="watcher" password="watcher-pw";'"#), "{same}");
        assert!(
            same.contains("'properties.ssl.truststore.location' = '/sidecar/ca.pem'"),
            "{same}"
        );
        // The brokers as the TaskManagers reach them.
        let mut kafka = secured_sidecar();
        kafka.jobs.bootstrap = Some(vec!["k0.internal:9094".to_owned(), "k1.internal:9094".to_owned()]);
        let options = options_with(kafka, &secrets);
        assert!(
            options.contains("'properties.bootstrap.servers' = 'k0.internal:9094,k1.internal:9094'"),
            "{options}"
        );
        // Their own login: mechanism, user and the password of its own variable; never the sidecar's.
        let mut kafka = secured_sidecar();
        kafka.jobs.sasl = sasl(SaslMechanism::Plain, "reader");
        let options = options_with(kafka, &secrets);
        assert!(
            options.contains(
                "    'properties.security.protocol' = 'SASL_SSL',\n    'properties.sasl.mechanism' = 'PLAIN',\n    \
                 'properties.sasl.jaas.config' = 'org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"reader\" password=\"reader-pw\";',\n"
            ),
            "{options}"
        );
        assert!(!options.contains("watcher"), "{options}");
        // Their own trust store, as Flink sees it.
        let mut kafka = secured_sidecar();
        kafka.jobs.tls.ca_file = Some("/opt/flink/kafka/ca.pem".into());
        let options = options_with(kafka, &secrets);
        assert!(
            options.contains("'properties.ssl.truststore.location' = '/opt/flink/kafka/ca.pem'"),
            "{options}"
        );
        // TLS off for the jobs (a plaintext listener inside the cluster), or on for them alone.
        let mut kafka = secured_sidecar();
        kafka.jobs.tls.enabled = Some(false);
        let options = options_with(kafka, &secrets);
        assert!(
            options.contains("'properties.security.protocol' = 'SASL_PLAINTEXT'"),
            "{options}"
        );
        assert!(!options.contains("ssl."), "{options}");
        let mut kafka = KafkaConfig::default();
        kafka.jobs.tls.enabled = Some(true);
        kafka.jobs.tls.ca_file = Some("/flink/ca.pem".into());
        let options = options_with(kafka, &secrets);
        assert!(
            options.contains(
                "'properties.security.protocol' = 'SSL',\n    'properties.ssl.truststore.type' = 'PEM',\n    \
                 'properties.ssl.truststore.location' = '/flink/ca.pem',\n"
            ),
            "{options}"
        );
    }

    #[test]
    fn mutual_tls_gives_the_jobs_the_pem_key_store_and_the_key_password_only_when_set() {
        let mut kafka = secured_sidecar();
        kafka.jobs.tls.keystore_file = Some("/opt/flink/kafka/client's.pem".into());
        let options = options_with(kafka.clone(), &[(KAFKA_SASL_PASSWORD, "pw")]);
        assert!(
            options.contains(
                "    'properties.ssl.truststore.location' = '/sidecar/ca.pem',\n    \
                 'properties.ssl.keystore.type' = 'PEM',\n    \
                 'properties.ssl.keystore.location' = '/opt/flink/kafka/client''s.pem',\n    'scan.startup.mode'"
            ),
            "{options}"
        );
        // Kafka refuses a store password with PEM; only an encrypted key has a password.
        assert!(!options.contains("password'"), "{options}");
        kafka.jobs.tls.key_password = Some(Secret::new("unused: the credentials carry it"));
        let secrets = [(KAFKA_SASL_PASSWORD, "pw"), (KAFKA_JOBS_TLS_KEY_PASSWORD, "key'pw")];
        let options = options_with(kafka.clone(), &secrets);
        assert!(
            options.contains(
                "'properties.ssl.keystore.location' = '/opt/flink/kafka/client''s.pem',\n    \
                 'properties.ssl.key.password' = 'key''pw',\n"
            ),
            "{options}"
        );
        assert_eq!(
            carried_secrets(&kafka.jobs_client()),
            [KAFKA_SASL_PASSWORD, KAFKA_JOBS_TLS_KEY_PASSWORD]
        );
        // With the jobs' TLS off, their key store and its password are not carried.
        kafka.jobs.tls.enabled = Some(false);
        assert_eq!(carried_secrets(&kafka.jobs_client()), [KAFKA_SASL_PASSWORD]);
        kafka.jobs.sasl = sasl(SaslMechanism::Plain, "reader");
        assert_eq!(carried_secrets(&kafka.jobs_client()), [KAFKA_JOBS_SASL_PASSWORD]);
        assert!(carried_secrets(&KafkaConfig::default().jobs_client()).is_empty());
    }

    fn oauthbearer_kafka(scope: &str) -> KafkaConfig {
        KafkaConfig {
            sasl: Some(SaslConfig {
                mechanism: SaslMechanism::OAuthBearer,
                username: String::new(),
                password: Secret::default(),
                aws: None,
                oauth: Some(OauthConfig {
                    token_endpoint: "https://idp.example/oauth2/token".to_owned(),
                    client_id: "cdc-jobs".to_owned(),
                    client_secret: Secret::new("unused: the credentials carry it"),
                    scope: scope.to_owned(),
                    audience: "api://not-rendered".to_owned(),
                    extensions: [("logicalCluster".to_owned(), "lkc-1".to_owned())].into(),
                }),
            }),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn oauthbearer_gets_kafkas_own_login_for_the_same_token_endpoint() {
        let options = options_with(
            oauthbearer_kafka("kafka read"),
            &[(KAFKA_SASL_OAUTH_CLIENT_SECRET, "s\"e'c")],
        );
        assert!(
            options.contains(
                "    'properties.security.protocol' = 'SASL_PLAINTEXT',\n    \
                 'properties.sasl.mechanism' = 'OAUTHBEARER',\n    \
                 'properties.sasl.login.callback.handler.class' = \
                 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler',\n    \
                 'properties.sasl.oauthbearer.token.endpoint.url' = 'https://idp.example/oauth2/token',\n    \
                 'properties.sasl.jaas.config' = \
                 'org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required clientId=\"cdc-jobs\" \
                 clientSecret=\"s\\\"e''c\" scope=\"kafka read\" extension_logicalCluster=\"lkc-1\";',\n"
            ),
            "{options}"
        );
        // Kafka's handler reads no audience: none is invented.
        assert!(
            !options.contains("audience") && !options.contains("not-rendered"),
            "{options}"
        );
        // No scope: none sent, as Kafka leaves it out when blank.
        let options = options_with(oauthbearer_kafka(" "), &[(KAFKA_SASL_OAUTH_CLIENT_SECRET, "x")]);
        assert!(
            options.contains(r#"clientSecret="x" extension_logicalCluster="lkc-1";'"#),
            "{options}"
        );
        // Without the secret the login is left out, the handler and endpoint stay.
        let options = options_with(oauthbearer_kafka(""), &[]);
        assert!(
            options.contains("'properties.sasl.oauthbearer.token.endpoint.url'"),
            "{options}"
        );
        assert!(!options.contains("jaas"), "{options}");
    }

    const SHADED: &str = "org.apache.flink.kafka.shaded.";

    fn shaded(mut kafka: KafkaConfig) -> KafkaConfig {
        kafka.jobs.client_class_prefix = SHADED.to_owned();
        kafka
    }

    #[test]
    fn the_class_prefix_goes_before_every_kafka_class_and_no_other() {
        let plain = options_of(
            shaded(KafkaConfig {
                sasl: sasl(SaslMechanism::Plain, "cdc"),
                ..KafkaConfig::default()
            }),
            Some("pw"),
        );
        assert!(
            plain.contains(
                "'properties.sasl.jaas.config' = 'org.apache.flink.kafka.shaded.org.apache.kafka.common.security.plain.\
                 PlainLoginModule required username=\"cdc\" password=\"pw\";'"
            ),
            "{plain}"
        );
        let scram = options_of(
            shaded(KafkaConfig {
                sasl: sasl(SaslMechanism::ScramSha256, "cdc"),
                ..KafkaConfig::default()
            }),
            Some("pw"),
        );
        assert!(
            scram.contains(
                "'properties.sasl.jaas.config' = 'org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.\
                 ScramLoginModule required"
            ),
            "{scram}"
        );
        let oauth = options_with(shaded(oauthbearer_kafka("")), &[(KAFKA_SASL_OAUTH_CLIENT_SECRET, "x")]);
        for class in [
            "'properties.sasl.login.callback.handler.class' = 'org.apache.flink.kafka.shaded.org.apache.kafka.common.\
             security.oauthbearer.OAuthBearerLoginCallbackHandler'",
            "'properties.sasl.jaas.config' = 'org.apache.flink.kafka.shaded.org.apache.kafka.common.security.\
             oauthbearer.OAuthBearerLoginModule required clientId=",
        ] {
            assert!(oauth.contains(class), "{class} in {oauth}");
        }
        // Every Kafka class carries it, and only once.
        for options in [&plain, &scram, &oauth] {
            assert_eq!(
                options.matches("org.apache.kafka").count(),
                options
                    .matches("org.apache.flink.kafka.shaded.org.apache.kafka")
                    .count(),
                "{options}"
            );
        }
        // The aws-msk-iam-auth classes are not Kafka's: they keep their names.
        let mut iam = shaded(KafkaConfig {
            tls: tls(None),
            ..KafkaConfig::default()
        });
        iam.sasl = Some(SaslConfig {
            mechanism: SaslMechanism::AwsMskIam,
            username: String::new(),
            password: Secret::default(),
            oauth: None,
            aws: None,
        });
        let iam = options_of(iam, None);
        assert!(
            iam.contains("'software.amazon.msk.auth.iam.IAMLoginModule required;'")
                && iam.contains("'software.amazon.msk.auth.iam.IAMClientCallbackHandler'")
                && !iam.contains("shaded"),
            "{iam}"
        );
        // Unset, the classes are kafka-clients' own names (the thin connector).
        let thin = options_of(
            KafkaConfig {
                sasl: sasl(SaslMechanism::Plain, "cdc"),
                ..KafkaConfig::default()
            },
            Some("pw"),
        );
        assert!(
            thin.contains("'properties.sasl.jaas.config' = 'org.apache.kafka.common.security.plain.PlainLoginModule"),
            "{thin}"
        );
    }
}
