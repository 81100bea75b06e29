//! Bounded scans of a topic: every partition from a start position up to the high watermark
//! read when the scan began. The scan assigns the partitions itself (no consumer group,
//! nothing committed), so it never disturbs the pipeline's groups, and records published
//! after it began are not read. `opsloop sql` builds its tables from scans.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::lookup::{offsets_at, partition_ids};
use crate::ConnectorError;
use crate::decode::parse_rfc3339_us;

const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the scan of every partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest retained record.
    Earliest,
    /// The last N records of every partition.
    Latest(i64),
    /// The first record whose timestamp is at or after this time (µs since the Unix epoch).
    Time(i64),
}

impl FromStr for StartPosition {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "earliest" {
            return Ok(StartPosition::Earliest);
        }
        if let Some(count) = text.strip_prefix("latest-") {
            return count
                .parse::<u32>()
                .map(|count| StartPosition::Latest(i64::from(count)))
                .map_err(|_| format!("{text:?}: the N of latest-N is not a record count"));
        }
        parse_rfc3339_us(text)
            .map(StartPosition::Time)
            .ok_or_else(|| {
                format!(
                    "{text:?} is not earliest, latest-N or an RFC 3339 time (2024-05-01T12:00:00Z)"
                )
            })
    }
}

/// Reads topics from a start position to the high watermarks they have when asked.
#[derive(Debug, Clone)]
pub struct TopicScan {
    kafka: KafkaConfig,
    start: StartPosition,
    /// Wait for a metadata or offset request, and for a partition that stops delivering.
    timeout: Duration,
}

fn scan_error(topic: &str, reason: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Scan {
        topic: topic.to_owned(),
        reason: reason.to_string(),
    }
}

impl TopicScan {
    pub fn new(kafka: KafkaConfig, start: StartPosition, timeout: Duration) -> Self {
        TopicScan {
            kafka,
            start,
            timeout,
        }
    }

    /// Hands every record of `topic` in the bounds to `read`, partition by partition in
    /// offset order; the number of partitions, `None` when the topic does not exist. It
    /// blocks: call it off the async runtime.
    pub fn scan(
        &self,
        topic: &str,
        mut read: impl FnMut(&BorrowedMessage<'_>) -> Result<(), ConnectorError>,
    ) -> Result<Option<usize>, ConnectorError> {
        let consumer = self.consumer()?;
        let Some(partitions) = self.partitions(&consumer, topic)? else {
            return Ok(None);
        };
        let mut assignment = TopicPartitionList::new();
        let mut ends: HashMap<i32, i64> = HashMap::new();
        for (partition, start, end) in self.bounds(&consumer, topic, &partitions)? {
            tracing::debug!(topic, partition, start, end, "partition bounds");
            if start < end {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(ConnectorError::Kafka)?;
                ends.insert(partition, end);
            }
        }
        if ends.is_empty() {
            return Ok(Some(partitions.len()));
        }
        consumer
            .assign(&assignment)
            .map_err(ConnectorError::Kafka)?;
        let mut last_record = Instant::now();
        while !ends.is_empty() {
            let message = match consumer.poll(POLL_INTERVAL) {
                None => {
                    if last_record.elapsed() > self.timeout {
                        return Err(scan_error(
                            topic,
                            format!(
                                "no record for {}s while partitions {ends:?} are short of their \
                                 end offsets",
                                self.timeout.as_secs()
                            ),
                        ));
                    }
                    continue;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ends.remove(&partition);
                    continue;
                }
                Some(Err(error)) => return Err(ConnectorError::Kafka(error)),
                Some(Ok(message)) => message,
            };
            last_record = Instant::now();
            let partition = message.partition();
            let Some(&end) = ends.get(&partition) else {
                continue;
            };
            let offset = message.offset();
            if offset >= end {
                ends.remove(&partition);
                continue;
            }
            read(&message)?;
            if offset + 1 >= end {
                ends.remove(&partition);
            }
        }
        Ok(Some(partitions.len()))
    }

    fn consumer(&self) -> Result<BaseConsumer, ConnectorError> {
        // librdkafka wants a group id even to assign partitions by hand; the group is never
        // joined (nothing subscribes) and nothing is committed to it.
        self.kafka
            .client_config()
            .set("group.id", "opsloop-scan")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(ConnectorError::Config)
    }

    /// The partition ids of `topic`, `None` when it does not exist.
    fn partitions(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
    ) -> Result<Option<Vec<i32>>, ConnectorError> {
        partition_ids(consumer, topic, self.timeout)
            .map_err(|reason| scan_error(topic, format!("{reason} (from {})", self.kafka.brokers)))
    }

    /// Per partition: the first offset to read and the high watermark, the end (exclusive).
    fn bounds(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64, i64)>, ConnectorError> {
        let mut watermarks = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, self.timeout)
                .map_err(|error| {
                    scan_error(
                        topic,
                        format!("fetching the watermarks of {partition}: {error}"),
                    )
                })?;
            watermarks.push((partition, low, high));
        }
        let bounds = match self.start {
            StartPosition::Earliest => watermarks,
            StartPosition::Latest(count) => watermarks
                .into_iter()
                .map(|(partition, low, high)| (partition, (high - count).max(low), high))
                .collect(),
            StartPosition::Time(time_us) => {
                let found = offsets_at(consumer, topic, partitions, time_us, self.timeout)
                    .map_err(|reason| scan_error(topic, reason))?;
                watermarks
                    .into_iter()
                    .zip(found)
                    // No record at or after the time: the partition is read from its end.
                    .map(|((partition, low, high), (_, start))| {
                        (partition, start.map_or(high, |s| s.clamp(low, high)), high)
                    })
                    .collect()
            }
        };
        Ok(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!("earliest".parse(), Ok(StartPosition::Earliest));
        assert_eq!("latest-25".parse(), Ok(StartPosition::Latest(25)));
        assert_eq!(
            "2024-05-01T00:00:01Z".parse(),
            Ok(StartPosition::Time(1_714_521_601_000_000))
        );
        assert!("latest".parse::<StartPosition>().is_err());
        assert!("latest--1".parse::<StartPosition>().is_err());
        assert!("yesterday".parse::<StartPosition>().is_err());
    }
}
