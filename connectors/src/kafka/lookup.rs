//! The lookups of a reader that assigns partitions itself instead of joining a group: a
//! topic's partitions, and where its records from some time on start. Both block (up to
//! `timeout`): call them off the async threads.

use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// The partition ids of `topic`; `None` while it does not exist. The error is a sentence.
pub(crate) fn partition_ids<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|error| format!("fetching its metadata: {error}"))?;
    let Some(entry) = metadata.topics().iter().find(|entry| entry.name() == topic) else {
        return Ok(None);
    };
    if let Some(error) = entry.error() {
        let code = RDKafkaErrorCode::from(error);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            return Ok(None);
        }
        return Err(format!(
            "the broker answered the metadata request with: {code}"
        ));
    }
    let partitions: Vec<i32> = entry.partitions().iter().map(|p| p.id()).collect();
    Ok((!partitions.is_empty()).then_some(partitions))
}

/// Per partition of `topic`, the offset of its first record stamped at or after `time_us`
/// (record timestamps are milliseconds: the first whole one at or after it); `None` where
/// there is none. The error is a sentence.
pub(crate) fn offsets_at<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partitions: &[i32],
    time_us: i64,
    timeout: Duration,
) -> Result<Vec<(i32, Option<i64>)>, String> {
    let time_ms = time_us.div_euclid(1000) + i64::from(time_us.rem_euclid(1000) > 0);
    let mut query = TopicPartitionList::new();
    for &partition in partitions {
        query
            .add_partition_offset(topic, partition, Offset::Offset(time_ms))
            .map_err(|error| format!("asking for partition {partition}: {error}"))?;
    }
    let found = consumer
        .offsets_for_times(query, timeout)
        .map_err(|error| format!("looking up offsets by time: {error}"))?;
    partitions
        .iter()
        .map(|&partition| match found.find_partition(topic, partition) {
            Some(entry) => {
                entry
                    .error()
                    .map_err(|error| format!("looking up {partition} by time: {error}"))?;
                Ok((
                    partition,
                    match entry.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    },
                ))
            }
            None => Ok((partition, None)),
        })
        .collect()
}
