//! Lag made only of control records.
//!
//! A transactional producer (Debezium with exactly-once source support, Kafka Connect's `transaction.boundary`)
//! ends every transaction with a commit or abort marker in each partition it wrote: a control record, which takes
//! an offset of its own but which no consumer ever receives. Flink's Kafka source commits the offset after the last
//! record it processed (FLINK-33484), so a job that has read everything leaves its group one offset below the high
//! watermark per trailing marker: its lag never reaches zero, and an idle stop that waits for zero lag never comes.
//!
//! So when a partition's lag is small, the records in `[committed, high)` are fetched and only those that are not
//! control records count. Anything that cannot be shown to be a control record counts as a real one: a data batch,
//! an offset no fetched batch covers (the answer cut short, a compacted gap), a batch that does not decode or whose
//! checksum is wrong. Real unprocessed records therefore never count as zero.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, FetchRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::kafka::connection::{Pool, WireError};
use crate::kafka::lag::LagError;

/// A lag of at most this many records is checked for control records. A job that has caught up trails by one
/// marker per transaction since its last commit (usually one); a larger lag is real work, and reading it would cost
/// a fetch of real records every lag read.
pub const MAX_CHECKED_LAG: u64 = 16;
/// At most this much is fetched for one check: a marker batch is 70 bytes, and a data batch in the range already
/// decides the answer (it counts), so an answer cut at this size loses nothing but certainty about the rest, which
/// then counts as real.
const FETCH_MAX_BYTES: i32 = 64 * 1024;
/// The records exist (they are below the high watermark), so the broker answers at once; tansu answers a zero
/// wait with an empty response, hence a few milliseconds rather than 0.
const FETCH_MAX_WAIT_MS: i32 = 10;
/// The high watermarks the lag is measured against are last stable offsets; the fetch reads the same view.
const READ_COMMITTED: i8 = 1;
/// Record batch layout (magic 2): base offset (8), length (4), leader epoch (4), magic (1), CRC (4), attributes (2),
/// last offset delta (4), then timestamps, producer and the records. The length counts from the leader epoch on.
const BATCH_LENGTH_AT: usize = 8;
const BATCH_OVERHEAD: usize = 12;
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
/// The fixed part of a magic 2 batch: nothing shorter is one.
const BATCH_HEADER_BYTES: usize = 61;
/// Attribute bit of a control batch.
const CONTROL_FLAG: i16 = 1 << 5;

/// How many of the records in `[from, high)` of `topic`'s `partition` are not control records: the partition's
/// leader (from a Metadata request to `bootstrap`) is asked for them in one bounded fetch, within `limit` per
/// request. A broker that cannot say is an error; the caller then keeps the plain difference.
pub(crate) async fn unprocessed(
    pool: &mut Pool,
    bootstrap: &[String],
    limit: Duration,
    topic: &str,
    partition: i32,
    from: i64,
    high: i64,
) -> Result<u64, LagError> {
    let Some(leader) = leader(pool, bootstrap, limit, topic, partition).await? else {
        return Ok(span(from, high));
    };
    let answer = pool.call(&leader, &fetch(topic, partition, from), limit).await?;
    if let Some(error) = answer.error_code.err() {
        return Err(LagError::Kafka { what: "fetch", error });
    }
    let data = answer
        .responses
        .into_iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition);
    let Some(data) = data else {
        return Ok(span(from, high));
    };
    if let Some(error) = data.error_code.err() {
        return Err(LagError::Kafka { what: "fetch", error });
    }
    Ok(count_unprocessed(&data.records.unwrap_or_default(), from, high))
}

/// The address of `partition`'s leader, from the first of `bootstrap` that answers; `None` when it names none.
async fn leader(
    pool: &mut Pool,
    bootstrap: &[String],
    limit: Duration,
    topic: &str,
    partition: i32,
) -> Result<Option<String>, LagError> {
    let mut last = LagError::Wire(WireError::NoBroker);
    for address in bootstrap {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.to_owned())))),
            ]))
            .with_allow_auto_topic_creation(false);
        let answer = match pool.call(address, &request, limit).await {
            Ok(answer) => answer,
            Err(e) => {
                last = e.into();
                continue;
            }
        };
        let leader = answer
            .topics
            .iter()
            .filter(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition)
            .map(|p| p.leader_id);
        let address = leader.and_then(|id| {
            answer
                .brokers
                .iter()
                .find(|b| b.node_id == id)
                .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        });
        return Ok(address);
    }
    Err(last)
}

/// A Fetch of `partition` from `from`, at most [`FETCH_MAX_BYTES`], the same in every version asked.
fn fetch(topic: &str, partition: i32, from: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(from)
                        .with_partition_max_bytes(FETCH_MAX_BYTES),
                ]),
        ])
}

/// The offsets in `[from, high)`, as a count.
fn span(from: i64, high: i64) -> u64 {
    u64::try_from(high.saturating_sub(from)).unwrap_or(0)
}

/// How many offsets of `[from, high)` are not shown by `records` (a Fetch answer's record batches) to hold control
/// records. Offsets of a data batch count, and so does every offset no batch covers; a batch that cannot be read
/// ends the walk (it and the rest count).
pub(crate) fn count_unprocessed(records: &Bytes, from: i64, high: i64) -> u64 {
    let mut real = 0u64;
    // Offsets below `covered` are accounted for.
    let mut covered = from;
    let mut rest = records.clone();
    while covered < high && rest.len() >= BATCH_HEADER_BYTES {
        let Some(batch) = next_batch(&mut rest) else { break };
        if batch.last < covered {
            continue;
        }
        if batch.base > covered {
            // Offsets no batch holds: nothing shows they are markers.
            real = real.saturating_add(span(covered, batch.base.min(high)));
        }
        let first = batch.base.max(covered);
        let end = batch.last.saturating_add(1).min(high);
        if !batch.control {
            real = real.saturating_add(span(first, end));
        }
        covered = covered.max(end);
    }
    real.saturating_add(span(covered, high))
}

/// One record batch's offsets and whether it holds control records.
struct Batch {
    base: i64,
    last: i64,
    control: bool,
}

/// The batch at the start of `rest`, which is advanced past it; `None` when it is cut short, not magic 2, or does
/// not check out (length, checksum).
fn next_batch(rest: &mut Bytes) -> Option<Batch> {
    let length = usize::try_from(read_i32(rest, BATCH_LENGTH_AT)?).ok()?;
    let total = length.checked_add(BATCH_OVERHEAD)?;
    if total < BATCH_HEADER_BYTES || total > rest.len() || rest.get(MAGIC_AT).copied() != Some(2) {
        return None;
    }
    let batch = rest.split_to(total);
    // The checksum and the header's own sanity, as the record decoder checks them.
    let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).ok()?;
    let [header] = info.as_slice() else { return None };
    let attributes = i16::from_be_bytes(batch.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2)?.try_into().ok()?);
    let delta = read_i32(&batch, LAST_OFFSET_DELTA_AT)?;
    let last = header.min_offset.checked_add(i64::from(delta.max(0)))?;
    Some(Batch {
        base: header.min_offset,
        last,
        control: header.control && attributes & CONTROL_FLAG != 0,
    })
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    use super::*;

    fn batch(offset: i64, count: i64, control: bool) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: true,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: offset + i,
                sequence: i32::try_from(offset + i).unwrap_or(0),
                timestamp: 0,
                key: control.then(|| Bytes::from_static(&[0, 0, 0, 1])),
                value: Some(Bytes::from_static(b"v")),
                headers: IndexMap::new(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut out, &records, &options).expect("encodes");
        out.freeze()
    }

    fn log(batches: &[Bytes]) -> Bytes {
        batches.concat().into()
    }

    #[test]
    fn only_markers_after_the_committed_offset_count_as_zero() {
        // Records 0-2, the commit marker at 3: a job that read all three committed 3.
        let records = log(&[batch(0, 3, false), batch(3, 1, true)]);
        assert_eq!(count_unprocessed(&records, 3, 4), 0);
        // Two transactions' markers behind the committed offset.
        let records = log(&[batch(3, 1, true), batch(4, 1, false), batch(5, 1, true)]);
        assert_eq!(count_unprocessed(&records, 5, 6), 0);
    }

    #[test]
    fn real_records_after_the_committed_offset_always_count() {
        let records = log(&[batch(3, 1, true), batch(4, 2, false), batch(6, 1, true)]);
        assert_eq!(count_unprocessed(&records, 3, 7), 2);
        // The fetch answer starts at the batch holding the committed offset.
        let records = log(&[batch(0, 5, false), batch(5, 1, true)]);
        assert_eq!(count_unprocessed(&records, 4, 6), 1);
        // The answer cut short: the rest counts.
        let whole = log(&[batch(3, 1, true), batch(4, 1, true)]);
        let cut = whole.slice(..whole.len() - 5);
        assert_eq!(count_unprocessed(&cut, 3, 5), 1);
        // Nothing at all, a hole between batches, a corrupted checksum.
        assert_eq!(count_unprocessed(&Bytes::new(), 3, 5), 2);
        assert_eq!(
            count_unprocessed(&log(&[batch(3, 1, true), batch(6, 1, true)]), 3, 7),
            2
        );
        let mut corrupt = batch(3, 1, true).to_vec();
        if let Some(last) = corrupt.last_mut() {
            *last ^= 0xff;
        }
        assert_eq!(count_unprocessed(&Bytes::from(corrupt), 3, 4), 1);
    }
}
