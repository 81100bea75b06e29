//! Every record kind decodes, in every wire format, to one Arrow row in its kind's schema.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use opsloop_connectors::decode::{
    AvroRecordDecoder, Decoder, RecordContext, RecordRows, RowBuilder, record_schema,
};
use opsloop_schemas::examples::{ExampleVisitor, visit_all};
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat};

struct DecodeEveryFormat {
    kinds: usize,
}

impl ExampleVisitor for DecodeEveryFormat {
    fn visit<T: AvroRecord + Debug + PartialEq>(&mut self, example: &T) {
        let registry = Arc::new(SchemaRegistry::builtin());
        for format in WireFormat::ALL {
            let codec = Codec::new(format, Arc::clone(&registry));
            let payload = codec.encode(example).expect("examples encode");
            let mut decoder = AvroRecordDecoder::<T>::new(codec);
            let mut rows: RecordRows<T> = decoder.new_rows();
            let context = RecordContext::new("topic", 0);
            for _ in 0..3 {
                let decoded = decoder
                    .decode(&payload, &context, &mut rows)
                    .expect("an example decodes");
                assert_eq!(decoded, 1);
            }
            assert!(rows.estimated_memory_bytes() >= 3 * payload.len());
            let batch = rows.finish().expect("rows build");
            assert_eq!(batch.num_rows(), 3, "{} in {format:?}", T::KIND.name());
            assert_eq!(batch.schema(), record_schema::<T>());
            assert!(rows.is_empty(), "finish empties the builder");
            for (index, field) in batch.schema().fields().iter().enumerate() {
                let name = field.name();
                assert!(
                    !matches!(
                        field.data_type(),
                        DataType::LargeUtf8 | DataType::Dictionary(..) | DataType::LargeList(_)
                    ),
                    "{}.{name} uses the plain Arrow types of the metric samples: {}",
                    T::KIND.name(),
                    field.data_type()
                );
                if name.ends_with("_us") && !name.ends_with("duration_us") {
                    assert_eq!(
                        field.data_type(),
                        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        "{}.{name} is an event time",
                        T::KIND.name()
                    );
                    let times = batch
                        .column(index)
                        .as_primitive::<TimestampMicrosecondType>();
                    if times.is_valid(0) {
                        assert!(times.value(0) > 1_700_000_000_000_000, "{name} is µs");
                    }
                }
            }
        }
        self.kinds += 1;
    }
}

#[test]
fn every_kind_decodes_to_one_row_per_record_in_every_format() {
    let mut visitor = DecodeEveryFormat { kinds: 0 };
    visit_all(&mut visitor);
    assert_eq!(visitor.kinds, opsloop_schemas::RecordKind::ALL.len());
}

#[test]
fn a_record_that_does_not_decode_appends_nothing() {
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut decoder = AvroRecordDecoder::<opsloop_schemas::telemetry::LogRecord>::new(codec)
        .with_max_record_bytes(64);
    let mut rows = decoder.new_rows();
    let context = RecordContext::new("telemetry.logs", 0);
    let error = decoder
        .decode(&[7, 0, 0, 0, 3, 2, 1], &context, &mut rows)
        .expect_err("bad magic");
    assert_eq!(error.reason_code(), "bad_magic");
    let error = decoder
        .decode(&[0; 65], &context, &mut rows)
        .expect_err("too large");
    assert_eq!(error.reason_code(), "too_large");
    assert_eq!(rows.len(), 0);
    assert_eq!(rows.finish().expect("empty batch").num_rows(), 0);
}
