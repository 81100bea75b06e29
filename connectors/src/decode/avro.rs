//! `MetricBatch` records in the codec formats: plain Avro, Confluent-framed Avro, JSON.

use opsloop_schemas::Codec;
use opsloop_schemas::telemetry::MetricBatch;

use super::{
    DEFAULT_MAX_RECORD_BYTES, DecodeError, Decoder, MetricSamplesBuilder, RecordContext,
    check_size, key_entity,
};

/// Decodes one [`MetricBatch`] per record with a [`Codec`] (whose format is usually
/// [`WireFormat::Confluent`](opsloop_schemas::WireFormat::Confluent)), one row per sample.
///
/// The entity is the batch's, or the record key when the batch leaves it empty. A NaN or
/// infinite value fails the record.
#[derive(Debug, Clone)]
pub struct AvroMetricBatchDecoder {
    codec: Codec,
    max_record_bytes: usize,
}

impl AvroMetricBatchDecoder {
    pub fn new(codec: Codec) -> Self {
        AvroMetricBatchDecoder {
            codec,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// Rejects records over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        AvroMetricBatchDecoder {
            max_record_bytes: max,
            ..self
        }
    }
}

impl Decoder for AvroMetricBatchDecoder {
    type Rows = MetricSamplesBuilder;

    fn decode(
        &mut self,
        payload: &[u8],
        context: &RecordContext<'_>,
        out: &mut MetricSamplesBuilder,
    ) -> Result<usize, DecodeError> {
        check_size(payload, self.max_record_bytes)?;
        let batch: MetricBatch = self.codec.decode(payload)?;
        if let Some(sample) = batch.samples.iter().find(|s| !s.value.is_finite()) {
            return Err(DecodeError::NonFiniteValue {
                metric: sample.name.clone(),
                value: sample.value,
                line: None,
            });
        }
        let entity = if batch.entity.is_empty() {
            key_entity(context.key)?
        } else {
            &batch.entity
        };
        for sample in &batch.samples {
            out.append_sample(entity, &batch.source, sample);
        }
        Ok(batch.samples.len())
    }
}
