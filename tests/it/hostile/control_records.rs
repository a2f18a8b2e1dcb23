//! Transaction markers in the lag (issue 24, "transactional producers"). A transactional producer ends each
//! transaction with a commit marker, a control record with an offset of its own that no consumer receives; Flink's
//! Kafka source commits the offset after its last record (FLINK-33484), one below the marker. The lag of such a
//! group must read zero once the job has caught up, or the idle stop never comes; a real record after the committed
//! offset must keep it above zero.
//!
//! Against the real tansu broker, which speaks the transactional protocol (InitProducerId, AddPartitionsToTxn,
//! transactional Produce, EndTxn) and writes commit markers into the log as control batches. The producer here
//! speaks it over the sidecar's own connection layer, as kafka-clients' transactional producer does.

use std::error::Error;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cdc_orchestrator::config::KafkaConfig;
use cdc_orchestrator::kafka::connection::{Pool, Security};
use cdc_orchestrator::kafka::lag::{LagReader, PartitionOffsets};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

use crate::support;
use crate::support::kafka_admin::{AddPartitionsToTxn, EndTxn, InitProducerId, Produce};

type Failure = Box<dyn Error + Send + Sync>;

const LIMIT: Duration = Duration::from_secs(5);

/// A transactional producer of one partition, as kafka-clients' is: one producer id, a sequence per record, each
/// record its own batch (tansu mishandles multi-record batches, see the broker notes).
struct TxnProducer {
    pool: Pool,
    broker: String,
    transactional_id: TransactionalId,
    producer_id: ProducerId,
    epoch: i16,
    sequence: i32,
}

impl TxnProducer {
    async fn init(broker: &str, id: &str) -> Result<TxnProducer, Failure> {
        let mut pool = Pool::new(Security::default());
        let transactional_id = TransactionalId(StrBytes::from_string(id.to_owned()));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(transactional_id.clone()))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let answer = pool.call(broker, &InitProducerId(request), LIMIT).await?;
        if let Some(error) = answer.error_code.err() {
            return Err(format!("init producer id: {error}").into());
        }
        Ok(TxnProducer {
            pool,
            broker: broker.to_owned(),
            transactional_id,
            producer_id: answer.producer_id,
            epoch: answer.producer_epoch,
            sequence: 0,
        })
    }

    /// One committed transaction of `values`, each its own record batch, on partition 0 of `topic`.
    async fn commit(&mut self, topic: &str, values: &[&'static [u8]]) -> Result<(), Failure> {
        let name = TopicName(StrBytes::from_string(topic.to_owned()));
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.transactional_id.clone())
            .with_v3_and_below_producer_id(self.producer_id)
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(name.clone())
                    .with_partitions(vec![0]),
            ]);
        let added = self.pool.call(&self.broker, &AddPartitionsToTxn(add), LIMIT).await?;
        let codes = added
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| &t.results_by_partition);
        for code in codes {
            if let Some(error) = code.partition_error_code.err() {
                return Err(format!("add partitions to txn: {error}").into());
            }
        }
        for value in values {
            let record = Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: self.producer_id.0,
                producer_epoch: self.epoch,
                timestamp_type: TimestampType::Creation,
                offset: 0,
                sequence: self.sequence,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(value)),
                headers: IndexMap::new(),
            };
            self.sequence += 1;
            let mut batch = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            };
            RecordBatchEncoder::encode(&mut batch, [&record], &options)?;
            let produce = ProduceRequest::default()
                .with_transactional_id(Some(self.transactional_id.clone()))
                .with_acks(-1)
                .with_timeout_ms(5_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name.clone())
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.freeze())),
                        ]),
                ]);
            let produced = self.pool.call(&self.broker, &Produce(produce), LIMIT).await?;
            for p in produced.responses.iter().flat_map(|t| &t.partition_responses) {
                if let Some(error) = p.error_code.err() {
                    return Err(format!("produce: {error}").into());
                }
            }
        }
        let end = EndTxnRequest::default()
            .with_transactional_id(self.transactional_id.clone())
            .with_producer_id(self.producer_id)
            .with_producer_epoch(self.epoch)
            .with_committed(true);
        let ended = self.pool.call(&self.broker, &EndTxn(end), LIMIT).await?;
        if let Some(error) = ended.error_code.err() {
            return Err(format!("end txn: {error}").into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_lag_of_only_commit_markers_is_zero_and_a_real_record_is_not() {
    let broker = support::Broker::start();
    let client = support::client(&broker).await;
    let topic = "university-server.public.faculty";
    support::create_topic(&client, topic, 1).await;
    let config = KafkaConfig {
        bootstrap: vec![broker.bootstrap()],
        request_timeout: LIMIT,
        ..KafkaConfig::default()
    };
    let group = config.group_for("faculty");
    let partition = client
        .partition_client(topic, 0, UnknownTopicHandling::Error)
        .await
        .expect("partition client");
    let mut producer = TxnProducer::init(&broker.bootstrap(), "debezium-txn")
        .await
        .expect("tansu gives a transactional producer id");
    let mut reader = LagReader::default();
    let mut pool = Pool::new(Security::for_config(&config).expect("plaintext config"));

    // Records at 0, 1 and 2, the commit marker at 3.
    producer
        .commit(topic, &[b"{\"op\":\"c\"}", b"{\"op\":\"u\"}", b"{\"op\":\"d\"}"])
        .await
        .expect("a committed transaction");
    let high = partition.get_offset(OffsetAt::Latest).await.expect("high watermark");
    // rskafka 0.6 cannot fetch across a marker (it reads the control record's key where the record's length is:
    // "Unknown control batch record version: 8192", influxdata/rskafka#297), so the watermark shows it.
    assert_eq!(
        high, 4,
        "three records and a commit marker, which takes an offset of its own"
    );
    let offsets_of = |high| {
        vec![PartitionOffsets {
            topic: topic.to_owned(),
            partition: 0,
            high,
            start: 0,
        }]
    };
    // The job processed all three records and committed the offset after the last one, below the marker.
    support::kafka_admin::commit_offsets(&config, &group, &[(topic.to_owned(), 0, 3)])
        .await
        .expect("commit");
    let lag = reader
        .lag_from(&mut pool, &config, "faculty", &offsets_of(high))
        .await
        .expect("lag");
    assert_eq!(lag, 0, "a lag of only a commit marker is no lag");

    // A second transaction: a record at 4, its marker at 5. Committed 3: the marker at 3 and the record at 4 lie
    // ahead, and the record is real work.
    producer
        .commit(topic, &[b"{\"op\":\"c\"}"])
        .await
        .expect("a second transaction");
    let high = partition.get_offset(OffsetAt::Latest).await.expect("high watermark");
    assert_eq!(high, 6);
    let lag = reader
        .lag_from(&mut pool, &config, "faculty", &offsets_of(high))
        .await
        .expect("lag");
    assert_eq!(lag, 1, "the unprocessed record counts, the markers do not");
    // Nothing committed at all: every record counts from the log start, markers again not.
    let lag = reader
        .lag_from(&mut pool, &config, "payment", &offsets_of(high))
        .await
        .expect("lag");
    assert_eq!(
        lag, 4,
        "an uncommitted group: its four records count, its two markers do not"
    );

    support::kafka_admin::commit_offsets(&config, &group, &[(topic.to_owned(), 0, 5)])
        .await
        .expect("commit");
    let lag = reader
        .lag_from(&mut pool, &config, "faculty", &offsets_of(high))
        .await
        .expect("lag");
    assert_eq!(lag, 0, "caught up again");
}
