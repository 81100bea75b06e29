//! Every contract record kind through a real broker: produced as Avro with Confluent framing,
//! consumed, decoded and compared.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use opsloop_schemas::examples::{self, ExampleVisitor};
use opsloop_schemas::{AvroRecord, Codec, RecordKind, SchemaRegistry, WireFormat};
use opsloop_tests::TestBroker;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The examples, encoded: kind and framed bytes.
struct Encoded {
    codec: Codec,
    records: Vec<(RecordKind, Vec<u8>)>,
}

impl ExampleVisitor for Encoded {
    fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
        let bytes = self.codec.encode(example).expect("encodes");
        self.records.push((T::KIND, bytes));
    }
}

/// Decodes consumed bytes as the kind they were produced as and compares with the example.
struct Check<'a> {
    codec: &'a Codec,
    consumed: &'a [(RecordKind, Vec<u8>)],
    checked: usize,
}

impl ExampleVisitor for Check<'_> {
    fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
        let (_, bytes) = self
            .consumed
            .iter()
            .find(|(kind, _)| *kind == T::KIND)
            .unwrap_or_else(|| panic!("no {} record came back", T::KIND));
        let decoded: T = self.codec.decode(bytes).expect("decodes");
        assert_eq!(&decoded, example, "{}", T::KIND);
        self.checked += 1;
    }
}

#[tokio::test]
async fn every_kind_round_trips_through_the_broker_with_confluent_framing() {
    let broker = TestBroker::start().await.expect("broker");
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut encoded = Encoded {
        codec: codec.clone(),
        records: Vec::new(),
    };
    examples::visit_all(&mut encoded);

    // One topic per kind, as in the contract.
    let mut topics = Vec::new();
    for (kind, _) in &encoded.records {
        topics.push(broker.create_topic(kind.name(), 1).await.expect("topic"));
    }

    let producer: FutureProducer = broker
        .kafka_config()
        .client_config()
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for ((kind, bytes), topic) in encoded.records.iter().zip(&topics) {
        producer
            .send(
                FutureRecord::to(topic).key(kind.name()).payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("delivered");
    }

    let consumer: StreamConsumer = broker
        .kafka_config()
        .client_config()
        .set("group.id", opsloop_tests::unique_name("roundtrip"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).expect("subscribe");

    let mut consumed = Vec::new();
    while consumed.len() < encoded.records.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a record within 30 s")
            .expect("consume");
        let index = topics
            .iter()
            .position(|t| t == message.topic())
            .expect("one of our topics");
        let kind = encoded.records[index].0;
        assert_eq!(message.key(), Some(kind.name().as_bytes()));
        consumed.push((kind, message.payload().expect("payload").to_vec()));
    }

    let mut check = Check {
        codec: &codec,
        consumed: &consumed,
        checked: 0,
    };
    examples::visit_all(&mut check);
    assert_eq!(check.checked, RecordKind::ALL.len());
}
