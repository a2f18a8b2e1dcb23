//! Bounded samples: when a partition's watermark advances, the newest few of its new records are fetched (through
//! rskafka, at most `kafka.sample_records` and about `kafka.sample_bytes`) and decoded to learn which table changed
//! and how. The stream itself is never consumed.
//!
//! rskafka stays behind this file: its client (`SampleClient`), partition clients (`PartitionSampler`), errors
//! ([`ClientError`]) and credentials ([`rskafka_sasl`]) are used nowhere else in the sidecar.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, OauthBearerCredentials, OauthCallback};

use crate::config::KafkaConfig;
use crate::decoder::{self, Change, Decoded, SeenFields};
use crate::kafka::connection::{Security, max_response_bytes};
use crate::kafka::routing::Routing;
use crate::kafka::sasl::{Login, PasswordMechanism};
use crate::kafka::watcher::{BrokerError, TableActivity, now_unix_ms};
use crate::kafka::watermarks::TopicPartition;

/// Fetch wait for a sample. The records are known to exist, so the broker answers at once; tansu answers a
/// zero wait with an empty (malformed) response, hence 10 ms rather than 0.
const SAMPLE_MAX_WAIT_MS: i32 = 10;
/// Characters of a record's table name shown in a warning: enough to recognise it, never a flood.
const NAME_EXCERPT_CHARS: usize = 256;

/// Why an rskafka call failed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ClientError(rskafka::client::error::Error);

/// An rskafka call bounded by `limit`.
async fn timed<T>(
    limit: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, rskafka::client::error::Error>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(BrokerError::Client {
            what,
            source: ClientError(source),
        }),
        Err(_) => Err(BrokerError::Timeout { what, limit }),
    }
}

/// rskafka's form of `kafka.sasl`'s login. A token login hands rskafka a callback into the same
/// [`crate::kafka::token::TokenCache`] our own connections use, so both send the same token and the token endpoint
/// is asked once for both.
pub fn rskafka_sasl(login: &Login) -> rskafka::client::SaslConfig {
    use rskafka::client::SaslConfig as Rskafka;
    match login {
        Login::Password(login) => {
            let credentials = Credentials::new(login.username.clone(), login.password.expose().to_owned());
            match login.mechanism {
                PasswordMechanism::Plain => Rskafka::Plain(credentials),
                PasswordMechanism::ScramSha256 => Rskafka::ScramSha256(credentials),
                PasswordMechanism::ScramSha512 => Rskafka::ScramSha512(credentials),
            }
        }
        Login::Bearer(cache) => {
            let cache = cache.clone();
            let callback: OauthCallback = Arc::new(move || {
                let cache = cache.clone();
                Box::pin(async move {
                    cache
                        .token()
                        .await
                        .map(|token| token.expose().to_owned())
                        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
                })
            });
            Rskafka::Oauthbearer(OauthBearerCredentials {
                callback,
                authz_id: None,
                bearer_kvs: login_extensions(login),
            })
        }
    }
}

fn login_extensions(login: &Login) -> Vec<(String, String)> {
    login.token_cache().map(|c| c.extensions().to_vec()).unwrap_or_default()
}

/// rskafka's client, which makes the partition clients that fetch samples.
#[derive(Debug)]
pub(crate) struct SampleClient(Client);

/// rskafka's client of one partition (and its connection to the partition's leader), kept between samples.
#[derive(Debug)]
pub(crate) struct PartitionSampler(PartitionClient);

impl SampleClient {
    /// Connects to `config`'s brokers with the TLS and SASL settings of our own connections (`security`), within
    /// `kafka.request_timeout`.
    pub(crate) async fn connect(config: &KafkaConfig, security: &Security) -> Result<SampleClient, BrokerError> {
        let limit = config.request_timeout;
        let mut builder = ClientBuilder::new(config.bootstrap.clone())
            .client_id("cdc-orchestrator")
            // rskafka's default (100 MB) is what a lying broker could make each partition's connection hold.
            .max_message_size(max_response_bytes(config))
            // rskafka retries forever by default; a deadline turns a dead broker into an error we can report.
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
                deadline: Some(limit),
            });
        if let Some(tls) = security.tls() {
            builder = builder.tls_config(Arc::clone(tls));
        }
        if let Some(login) = security.login() {
            builder = builder.sasl_config(rskafka_sasl(login));
        }
        Ok(SampleClient(timed(limit, "connect", builder.build()).await?))
    }

    /// The client of `key`'s partition (a metadata request and a connection to its leader), within `limit`.
    pub(crate) async fn partition(
        &self,
        key: &TopicPartition,
        limit: Duration,
    ) -> Result<PartitionSampler, BrokerError> {
        let call = self
            .0
            .partition_client(key.0.to_string(), key.1, UnknownTopicHandling::Error);
        Ok(PartitionSampler(timed(limit, "partition client", call).await?))
    }
}

/// Fetches the newest records of `[from, high)` of `partition`, at most `want` and about `kafka.sample_bytes`.
pub(crate) async fn fetch(
    config: &KafkaConfig,
    partition: &PartitionSampler,
    from: i64,
    high: i64,
    want: u32,
) -> Result<Vec<Record>, BrokerError> {
    let want = i64::from(want);
    let start = from.max(high.saturating_sub(want));
    let max_bytes = i32::try_from(config.sample_bytes).unwrap_or(i32::MAX);
    let mut records = Vec::new();
    let mut next = start;
    // A fetch may return fewer records than asked (batch boundaries); a few rounds fill the sample.
    for _ in 0..4 {
        if next >= high {
            break;
        }
        let fetch = partition.0.fetch_records(next, 1..max_bytes, SAMPLE_MAX_WAIT_MS);
        let (batch, _) = timed(config.request_timeout, "fetch", fetch).await?;
        let before = records.len();
        for r in batch {
            if r.offset >= start && r.offset < high && r.offset >= next {
                next = r.offset.saturating_add(1);
                records.push(Record {
                    key: r.record.key,
                    value: r.record.value,
                });
            }
        }
        if records.len() == before {
            break;
        }
    }
    Ok(records)
}

/// A fetched record, owned.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) value: Option<Vec<u8>>,
}

/// A change that was not counted where its record said, for a rate-limited warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untrusted {
    /// The table the record named, if any.
    pub(crate) named: Option<String>,
    /// The table it was counted for instead; `None`: dropped.
    pub(crate) counted_as: Option<String>,
}

/// What one partition's sample says.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) activity: Vec<TableActivity>,
    pub(crate) sampled: usize,
    pub(crate) bytes: usize,
    /// The first invalid record's error.
    pub(crate) invalid: Option<String>,
    /// The first change not counted where its record said.
    pub(crate) untrusted: Option<Untrusted>,
}

/// The start of a record's table name, for a warning.
pub(crate) fn excerpt(name: &str) -> String {
    match name.char_indices().nth(NAME_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_owned(),
    }
}

/// Turns a decoded sample into per-table activity. An advance whose sample holds only heartbeats, transaction
/// markers, messages or schema changes is no table activity; records beyond the sample count for the topic's
/// table, since a table topic carries nothing but changes and tombstones. Which table a change counts for is
/// [`Routing::resolve`]'s answer: a record's own table name matters only on routed topics.
pub(crate) fn summarize(
    config: &KafkaConfig,
    routing: &Routing,
    topic: &str,
    partition: i32,
    records: u64,
    sample: &Result<Vec<Record>, BrokerError>,
    kinds: &mut BTreeMap<&'static str, u64>,
) -> Summary {
    let observed_at_ms = now_unix_ms();
    let blank = |table: &str| TableActivity {
        table: table.to_owned(),
        topic: topic.to_owned(),
        partition,
        records: 0,
        ops: BTreeMap::new(),
        unknown_ops: 0,
        newest_ts_ms: None,
        observed_at_ms,
        fields: None,
    };
    let topic_table = config.table_of_topic(topic);
    let no_table = || Untrusted {
        named: None,
        counted_as: None,
    };
    let mut summary = Summary::default();
    let fetched = match sample {
        Ok(fetched) => fetched,
        Err(e) => {
            // No sample, but the watermark moved: still a change of the topic's table, operation unknown.
            tracing::warn!(%topic, partition, error = %e, "sample fetch failed");
            match topic_table.map(blank) {
                Some(a) => summary.activity.push(TableActivity {
                    records,
                    unknown_ops: records,
                    ..a
                }),
                None => summary.untrusted = Some(no_table()),
            }
            return summary;
        }
    };
    let mut tables: BTreeMap<String, TableActivity> = BTreeMap::new();
    let mut not_table_data = 0u64;
    for record in fetched {
        summary.bytes += record.value.as_ref().map_or(0, Vec::len);
        let (decoded, row) = decoder::decode_row(topic, record.key.as_deref(), record.value.as_deref());
        *kinds.entry(decoded.kind()).or_default() += 1;
        let (table, change) = match classify(routing, topic, topic_table, &decoded, &mut summary) {
            Some(counted) => counted,
            None if matches!(decoded, Decoded::Tombstone { .. }) => continue,
            None => {
                not_table_data += 1;
                continue;
            }
        };
        let Some(table) = table else {
            summary.untrusted.get_or_insert_with(no_table);
            continue;
        };
        let a = tables.entry(table.to_owned()).or_insert_with(|| blank(table));
        count(a, change);
        // The row's field names, for schema drift: only a change's (an invalid record's row is not one), and
        // only one counted for the table it names (an untrusted name's row is no row of the table counted).
        if let Some(change) = change
            && (!change.table_from_record || change.table == table)
            && let Some(row) = &row
        {
            a.fields.get_or_insert_with(SeenFields::default).add(row);
        }
    }
    summary.sampled = fetched.len();
    let unsampled = records.saturating_sub(u64::try_from(summary.sampled).unwrap_or(u64::MAX));
    if not_table_data == 0
        && unsampled > 0
        && let Some(table) = topic_table
    {
        let a = tables.entry(table.to_owned()).or_insert_with(|| blank(table));
        a.records = a.records.saturating_add(unsampled);
    }
    // A single-table topic: every new record is the table's, sampled or not.
    if tables.len() == 1
        && let Some(table) = topic_table
        && let Some(a) = tables.get_mut(table)
    {
        a.records = a.records.max(records.saturating_sub(not_table_data));
    }
    summary.activity = tables.into_values().collect();
    summary
}

/// The table a decoded record counts for (if any) and its change (if it is one); `None` for a tombstone or a
/// record that is no table data. Notes the first invalid record and the first untrusted table name in `summary`.
fn classify<'a>(
    routing: &Routing,
    topic: &str,
    topic_table: Option<&'a str>,
    decoded: &'a Decoded,
    summary: &mut Summary,
) -> Option<(Option<&'a str>, Option<&'a Change>)> {
    // Opaque and invalid records are changes of the topic's table, operation unknown.
    match decoded {
        Decoded::Change(change) => {
            let named = change.table_from_record.then_some(change.table.as_str());
            let resolved = routing.resolve(topic, topic_table, named);
            if let Some(named) = resolved.untrusted()
                && summary.untrusted.is_none()
            {
                summary.untrusted = Some(Untrusted {
                    named: Some(named.to_owned()),
                    counted_as: resolved.table().map(str::to_owned),
                });
            }
            Some((resolved.table(), Some(change)))
        }
        Decoded::Opaque { .. } => Some((topic_table, None)),
        Decoded::Invalid { error } => {
            summary.invalid.get_or_insert_with(|| error.clone());
            Some((topic_table, None))
        }
        _ => None,
    }
}

/// Counts one sampled record of `a`'s table: a change with its operation, or a record of unknown operation.
fn count(a: &mut TableActivity, change: Option<&Change>) {
    a.records = a.records.saturating_add(1);
    match change {
        Some(change) => {
            match change.op {
                Some(op) => *a.ops.entry(op).or_default() += 1,
                None => a.unknown_ops += 1,
            }
            a.newest_ts_ms = a.newest_ts_ms.max(change.ts_ms);
        }
        None => a.unknown_ops += 1,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Op;

    fn rec(value: &str) -> Record {
        Record {
            key: None,
            value: Some(value.as_bytes().to_vec()),
        }
    }

    const TOPIC: &str = "university-server.public.faculty";

    fn routing(routed: &[&str]) -> Routing {
        let kafka = KafkaConfig {
            routed_topics: routed.iter().map(|s| (*s).to_owned()).collect(),
            ..KafkaConfig::default()
        };
        Routing::new(&kafka, ["faculty".to_owned(), "program".to_owned()]).expect("valid")
    }

    /// `summarize` with no routed topics: activity, sampled count, invalid error.
    fn plain(
        topic: &str,
        partition: i32,
        records: u64,
        sample: &Result<Vec<Record>, BrokerError>,
        kinds: &mut BTreeMap<&'static str, u64>,
    ) -> (Vec<TableActivity>, usize, usize, Option<String>) {
        let s = summarize(
            &KafkaConfig::default(),
            &routing(&[]),
            topic,
            partition,
            records,
            sample,
            kinds,
        );
        (s.activity, s.sampled, s.bytes, s.invalid)
    }

    #[test]
    fn a_sample_of_changes_is_activity_of_the_topic_table() {
        let sample = Ok(vec![
            rec(r#"{"op":"c","source":{"table":"faculty"},"after":{},"ts_ms":5}"#),
            rec(r#"{"op":"u","source":{"table":"faculty","ts_ms":9},"after":{}}"#),
        ]);
        let (found, sampled, _, _) = plain(TOPIC, 0, 10, &sample, &mut BTreeMap::new());
        assert_eq!(sampled, 2);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].table, "faculty");
        assert_eq!(found[0].records, 10, "unsampled records count for the topic's table");
        assert_eq!(found[0].ops, BTreeMap::from([(Op::Create, 1), (Op::Update, 1)]));
        assert_eq!(found[0].newest_ts_ms, Some(9));
    }

    #[test]
    fn heartbeats_and_transactions_are_not_activity() {
        let sample = Ok(vec![rec(r#"{"status":"BEGIN","id":"1","data_collections":null}"#)]);
        let (found, _, _, _) = plain("university-server.transaction", 0, 1, &sample, &mut BTreeMap::new());
        assert!(found.is_empty());
        let (found, _, _, _) = plain(
            "__debezium-heartbeat.university-server",
            0,
            3,
            &Ok(vec![rec("{}")]),
            &mut BTreeMap::new(),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn routed_topics_report_each_startable_table_and_drop_the_rest() {
        let sample = Ok(vec![
            rec(r#"{"op":"c","source":{"table":"faculty"},"after":{}}"#),
            rec(r#"{"op":"d","source":{"table":"program"},"before":{}}"#),
            rec(r#"{"op":"d","source":{"table":"junk"},"before":{}}"#),
        ]);
        let s = summarize(
            &KafkaConfig::default(),
            &routing(&[r"university-server\.all"]),
            "university-server.all",
            0,
            3,
            &sample,
            &mut BTreeMap::new(),
        );
        let tables: Vec<_> = s.activity.iter().map(|a| (a.table.as_str(), a.records)).collect();
        assert_eq!(tables, [("faculty", 1), ("program", 1)]);
        assert_eq!(
            s.untrusted,
            Some(Untrusted {
                named: Some("junk".into()),
                counted_as: None
            })
        );
        // The same records on a topic that is not routed: nothing is believed, and the topic has no table.
        let s = summarize(
            &KafkaConfig::default(),
            &routing(&[]),
            "university-server.all",
            0,
            3,
            &sample,
            &mut BTreeMap::new(),
        );
        assert!(s.activity.is_empty(), "{:?}", s.activity);
    }

    #[test]
    fn record_table_names_do_not_create_tables_on_a_table_topic() {
        let sample = Ok((0..16)
            .map(|i| rec(&format!(r#"{{"op":"c","source":{{"table":"junk_{i}"}},"after":{{}}}}"#)))
            .collect());
        let course = "university-server.public.course";
        let (found, _, _, _) = plain(course, 0, 640, &sample, &mut BTreeMap::new());
        let tables: Vec<_> = found.iter().map(|a| (a.table.as_str(), a.records)).collect();
        assert_eq!(tables, [("course", 640)]);
        let s = summarize(
            &KafkaConfig::default(),
            &routing(&[course]),
            course,
            0,
            640,
            &sample,
            &mut BTreeMap::new(),
        );
        let tables: Vec<_> = s.activity.iter().map(|a| (a.table.as_str(), a.records)).collect();
        assert_eq!(
            tables,
            [("course", 640)],
            "routed, but junk is no table the sidecar can start"
        );
        assert_eq!(s.untrusted.and_then(|u| u.counted_as).as_deref(), Some("course"));
    }

    #[test]
    fn a_failed_sample_still_reports_the_advance() {
        let (found, _, _, _) = plain(
            TOPIC,
            2,
            4,
            &Err(BrokerError::Timeout {
                what: "fetch",
                limit: Duration::from_secs(5),
            }),
            &mut BTreeMap::new(),
        );
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].records, found[0].unknown_ops), (4, 4));
    }

    #[test]
    fn invalid_and_binary_records_are_changes_of_unknown_operation() {
        let sample = Ok(vec![
            rec("garbage"),
            Record {
                key: None,
                value: Some(vec![0, 0, 0, 0, 1, 9]),
            },
        ]);
        let mut kinds = BTreeMap::new();
        let (found, _, _, invalid) = plain(TOPIC, 0, 2, &sample, &mut kinds);
        assert_eq!(found[0].unknown_ops, 2);
        assert!(invalid.is_some_and(|e| e.starts_with("not JSON")));
        assert_eq!(kinds, BTreeMap::from([("invalid", 1), ("opaque", 1)]));
        assert!(found[0].ops.is_empty());
    }

    #[test]
    fn tombstones_alone_are_not_activity_but_their_deletes_are() {
        let tombstone = Record {
            key: Some(b"{}".to_vec()),
            value: None,
        };
        let (found, _, _, _) = plain(TOPIC, 0, 1, &Ok(vec![tombstone]), &mut BTreeMap::new());
        assert!(found.is_empty());
    }

    #[test]
    fn sampled_rows_give_their_tables_field_names_and_untrusted_ones_give_none() {
        let sample = Ok(vec![
            rec(r#"{"op":"c","source":{"table":"faculty"},"after":{"id":1,"new_col":2}}"#),
            rec(r#"{"op":"d","source":{"table":"faculty"},"before":{"id":1}}"#),
            rec(r#"{"op":"c","source":{"table":"junk"},"after":{"junk_col":1}}"#),
            rec("garbage"),
        ]);
        let (found, _, _, _) = plain(TOPIC, 0, 4, &sample, &mut BTreeMap::new());
        let fields = found[0].fields.as_ref().expect("fields of the sampled rows");
        let names: Vec<&str> = fields.names.keys().map(String::as_str).collect();
        assert_eq!(names, ["id", "new_col"], "junk's row is not faculty's");
        assert_eq!((fields.rows, fields.full_rows), (2, 1));
        // An advance without a sample has no fields.
        let failed = Err(BrokerError::Timeout {
            what: "fetch",
            limit: Duration::from_secs(1),
        });
        let (found, _, _, _) = plain(TOPIC, 0, 4, &failed, &mut BTreeMap::new());
        assert_eq!(found[0].fields, None);
    }
}
