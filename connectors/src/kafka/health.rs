//! Whether the brokers answer, as opsloop's Kafka clients see it.
//!
//! librdkafka reports every failed connection attempt of every client: with a wrong or dead
//! broker address that is dozens of errors a second (`AllBrokersDown`, `BrokerTransportFailure`)
//! while it retries with backoff on its own. [`ClientLog`], the context of the clients opsloop
//! creates, turns them into two log lines: one warning when the brokers stop answering, one
//! when they answer again, with how long and how many errors in between. Every error is
//! counted (`opsloop_kafka_broker_errors_total`, registered with the connectors' metrics) and
//! logged at debug level.
//!
//! The state is shared by every client of the process with the same bootstrap list (the
//! sources, the sink, the readers of opsloop's own topics), so a broker that goes away is
//! reported once, not once per client. A client hears of a broker coming back from its
//! statistics (`statistics.interval.ms`, [`STATISTICS_INTERVAL`]): the brokers count as
//! answering again once a client has one up and no client had an error for [`QUIET`], so a
//! cluster with one broker down does not flap between the two messages at every reconnect.
//! Other client errors are logged as warnings as they come (a consumer's, by the code that
//! polls it), librdkafka's own log lines at debug level (target `librdkafka`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaConfig;

/// How often a client reports its statistics: how soon it sees the brokers come back.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

/// How long no client may have had a broker error before the brokers count as answering.
const QUIET: Duration = Duration::from_secs(10);

/// Broker errors of every client of the process.
static BROKER_ERRORS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The state of each bootstrap list, shared by the clients that use it.
static BROKERS: LazyLock<Mutex<HashMap<String, Arc<Brokers>>>> = LazyLock::new(Mutex::default);

/// Registers `opsloop_kafka_broker_errors_total`, the errors of every Kafka client of the
/// process reaching its brokers (refused or dropped connections, no broker up, names that do
/// not resolve).
pub(crate) fn register_broker_metrics(registry: &mut Registry) {
    registry.register(
        "opsloop_kafka_broker_errors",
        "Errors of the Kafka clients reaching the brokers: refused or dropped connections, no \
         broker up, names that do not resolve",
        BROKER_ERRORS.clone(),
    );
}

/// One bootstrap list and whether its brokers answer.
#[derive(Debug)]
struct Brokers {
    bootstrap: String,
    outage: Mutex<Option<Outage>>,
}

/// The brokers have not answered since `since`.
#[derive(Debug)]
struct Outage {
    since: Instant,
    last_error: Instant,
    errors: u64,
}

impl Brokers {
    fn of(bootstrap: &str) -> Arc<Brokers> {
        let mut all = BROKERS.lock().unwrap_or_else(PoisonError::into_inner);
        let brokers = all.entry(bootstrap.to_owned()).or_insert_with(|| {
            Arc::new(Brokers {
                bootstrap: bootstrap.to_owned(),
                outage: Mutex::new(None),
            })
        });
        Arc::clone(brokers)
    }

    /// A client could not reach a broker.
    fn unreachable(&self, error: &dyn fmt::Display) {
        BROKER_ERRORS.inc();
        let now = Instant::now();
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        match outage.as_mut() {
            Some(outage) => {
                outage.errors += 1;
                outage.last_error = now;
                tracing::debug!(brokers = %self.bootstrap, %error, "Kafka brokers still unreachable");
            }
            None => {
                *outage = Some(Outage {
                    since: now,
                    last_error: now,
                    errors: 1,
                });
                tracing::warn!(
                    brokers = %self.bootstrap,
                    %error,
                    "cannot reach the Kafka brokers; the clients retry with backoff (check the \
                     address and that the brokers are up; one more line when they answer)"
                );
            }
        }
    }

    /// A client has a broker up.
    fn answering(&self) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ended) = outage.take_if(|outage| outage.last_error.elapsed() >= QUIET) {
            tracing::info!(
                brokers = %self.bootstrap,
                unreachable_s = ended.since.elapsed().as_secs(),
                errors = ended.errors,
                "the Kafka brokers answer again"
            );
        }
    }
}

/// The context of every Kafka client opsloop creates; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ClientLog {
    brokers: Arc<Brokers>,
}

impl ClientLog {
    /// The context of a client of `kafka` whose settings are `config`, which it tells to
    /// report statistics.
    pub(crate) fn attach(kafka: &KafkaConfig, config: &mut ClientConfig) -> ClientLog {
        config.set(
            "statistics.interval.ms",
            STATISTICS_INTERVAL.as_millis().to_string(),
        );
        ClientLog {
            brokers: Brokers::of(&kafka.brokers),
        }
    }

    /// Counts `error`, which the client reported through its context or (consumers) its poll,
    /// and logs it once per outage, when it is about reaching the brokers; returns whether it
    /// was. Other errors are the caller's to log.
    pub(crate) fn broker_error(&self, error: &KafkaError, reason: &str) -> bool {
        let unreachable = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        );
        if unreachable {
            self.brokers.unreachable(&Reported { error, reason });
        }
        unreachable
    }
}

/// An error and librdkafka's reason for it, when it gave one.
struct Reported<'a> {
    error: &'a KafkaError,
    reason: &'a str,
}

impl fmt::Display for Reported<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            "" => write!(f, "{}", self.error),
            reason => write!(f, "{}: {reason}", self.error),
        }
    }
}

impl ConsumerContext for ClientLog {}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Failures worth a person's attention also come as errors (`error`, `report`).
        match level {
            RDKafkaLogLevel::Debug => tracing::trace!(target: "librdkafka", facility, "{message}"),
            _ => tracing::debug!(target: "librdkafka", ?level, facility, "{message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        if statistics
            .brokers
            .values()
            .any(|broker| broker.state == "UP")
        {
            self.brokers.answering();
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !self.broker_error(&error, reason) {
            let error = Reported {
                error: &error,
                reason,
            };
            tracing::warn!(brokers = %self.brokers.bootstrap, %error, "Kafka client error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outage_errors(brokers: &Brokers) -> Option<u64> {
        let outage = brokers
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        outage.as_ref().map(|outage| outage.errors)
    }

    #[test]
    fn an_outage_is_counted_once_per_bootstrap_list_and_ends_after_a_quiet_spell() {
        let kafka = KafkaConfig::new("health-test-1:9092");
        let mut config = kafka.client_config();
        let first = ClientLog::attach(&kafka, &mut config);
        let second = ClientLog::attach(&kafka, &mut config);
        assert_eq!(config.get("statistics.interval.ms"), Some("5000"));
        let other = ClientLog::attach(&KafkaConfig::new("health-test-2:9092"), &mut config);
        let before = BROKER_ERRORS.get();
        let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
        assert!(first.broker_error(&down, ""));
        assert!(second.broker_error(&down, "1/1 brokers are down"));
        let unknown = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopic);
        assert!(!first.broker_error(&unknown, ""), "the caller's to log");
        assert_eq!(
            outage_errors(&first.brokers),
            Some(2),
            "one outage, both clients"
        );
        assert_eq!(outage_errors(&other.brokers), None);
        assert!(BROKER_ERRORS.get() >= before + 2);

        second.brokers.answering();
        assert_eq!(
            outage_errors(&first.brokers),
            Some(2),
            "not quiet long enough"
        );
        if let Some(outage) = first.brokers.outage.lock().expect("lock").as_mut() {
            outage.last_error = Instant::now().checked_sub(QUIET).expect("uptime");
        }
        second.brokers.answering();
        assert_eq!(outage_errors(&first.brokers), None, "the outage is over");
    }
}
