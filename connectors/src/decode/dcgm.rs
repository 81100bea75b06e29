//! NVIDIA dcgm-exporter pages as one [`GpuSample`] per GPU, for `telemetry.gpu`.

use std::collections::hash_map::{Entry, HashMap};

use opsloop_schemas::telemetry::GpuSample;

use super::batch::Staging;
use super::prometheus::parse_page;
use super::{DEFAULT_MAX_RECORD_BYTES, DecodeError, FallbackEntity, check_size};

/// Prefix of DCGM field series; other series on the page are not GPU fields.
pub const DCGM_FIELD_PREFIX: &str = "DCGM_FI_";

/// Labels that become `GpuSample`'s own fields rather than entries of its `labels`.
const IDENTITY_LABELS: [&str; 6] = [
    "UUID",
    "gpu",
    "pci_bus_id",
    "modelName",
    "Hostname",
    "hostname",
];

/// Groups the `DCGM_FI_*` series of a dcgm-exporter page by GPU.
///
/// * One [`GpuSample`] per GPU UUID (per GPU instance under MIG: UUID and `GPU_I_ID`), in the
///   order the GPUs first appear; `fields` maps series name to value.
/// * `gpu_index` from label `gpu` (-1 when it is missing or not an integer, in which case
///   the label is kept in `labels`), `hostname` from `Hostname` or `hostname`, `model_name`
///   from `modelName`, `pci_bus_id` from `pci_bus_id`.
/// * `labels` holds the other labels that every series of the GPU carries with the same
///   value (`device`, `DCGM_FI_DRIVER_VERSION`, `container`, `namespace`, `pod`, MIG's
///   `GPU_I_PROFILE`). Labels of single series, such as `err_code` and `err_msg` on
///   `DCGM_FI_DEV_XID_ERRORS`, do not describe the GPU and stay on the metric rows that
///   [`PrometheusTextDecoder`](super::PrometheusTextDecoder) makes of the same page.
/// * `time_us` is the latest sample timestamp of the GPU's series, or the default time when
///   they carry none (dcgm-exporter writes none).
/// * Series with a non-finite value, and `DCGM_FI_*` series without a `UUID` label (NVSwitch
///   and NVLink series, for example), are skipped and counted. A field seen twice for one GPU
///   fails the page: a GPU sample holds one value per field.
#[derive(Debug)]
pub struct DcgmGpuDecoder {
    max_record_bytes: usize,
    skipped_non_finite: u64,
    skipped_without_uuid: u64,
    staging: Staging,
}

impl Default for DcgmGpuDecoder {
    fn default() -> Self {
        DcgmGpuDecoder {
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            skipped_non_finite: 0,
            skipped_without_uuid: 0,
            staging: Staging::default(),
        }
    }
}

impl DcgmGpuDecoder {
    pub fn new() -> Self {
        DcgmGpuDecoder::default()
    }

    /// Rejects pages over `max` bytes ([`DEFAULT_MAX_RECORD_BYTES`] by default).
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        DcgmGpuDecoder {
            max_record_bytes: max,
            ..self
        }
    }

    /// Series skipped for a NaN or infinite value, over every page decoded without error.
    pub fn skipped_non_finite(&self) -> u64 {
        self.skipped_non_finite
    }

    /// `DCGM_FI_*` series skipped for lack of a `UUID` label, over every page decoded without
    /// error.
    pub fn skipped_without_uuid(&self) -> u64 {
        self.skipped_without_uuid
    }

    /// One GPU sample per GPU on `page`; series without a timestamp take `default_time_us`.
    pub fn decode(
        &mut self,
        page: &str,
        default_time_us: i64,
    ) -> Result<Vec<GpuSample>, DecodeError> {
        check_size(page.as_bytes(), self.max_record_bytes)?;
        let staging = &mut self.staging;
        staging.clear();
        let skipped_non_finite = parse_page(
            page,
            default_time_us,
            "dcgm",
            &mut FallbackEntity::new(None),
            staging,
        )?;

        let staging = &self.staging;
        let mut gpus: Vec<GpuSample> = Vec::new();
        let mut slots: HashMap<(&str, &str), usize> = HashMap::new();
        let mut skipped_without_uuid = 0;
        for row in staging.rows() {
            let field = staging.get(row.name, page);
            if !field.starts_with(DCGM_FIELD_PREFIX) {
                continue;
            }
            let labels = || {
                staging
                    .labels(row.labels)
                    .iter()
                    .map(|&(key, value)| (staging.get(key, page), staging.get(value, page)))
            };
            let label = |name: &str| {
                labels()
                    .find(|&(key, value)| key == name && !value.is_empty())
                    .map(|(_, value)| value)
            };
            let Some(uuid) = label("UUID") else {
                skipped_without_uuid += 1;
                continue;
            };
            let gpu = match slots.entry((uuid, label("GPU_I_ID").unwrap_or(""))) {
                Entry::Occupied(slot) => {
                    let gpu = &mut gpus[*slot.get()];
                    gpu.labels
                        .retain(|key, value| labels().any(|(k, v)| k == key && v == value));
                    gpu.time_us = gpu.time_us.max(row.time_us);
                    gpu
                }
                Entry::Vacant(slot) => {
                    slot.insert(gpus.len());
                    let gpu_index = label("gpu").and_then(|gpu| gpu.parse().ok());
                    gpus.push(GpuSample {
                        gpu_uuid: uuid.to_owned(),
                        gpu_index: gpu_index.unwrap_or(-1),
                        hostname: label("Hostname")
                            .or_else(|| label("hostname"))
                            .unwrap_or("")
                            .to_owned(),
                        model_name: label("modelName").unwrap_or("").to_owned(),
                        pci_bus_id: label("pci_bus_id").unwrap_or("").to_owned(),
                        time_us: row.time_us,
                        fields: Default::default(),
                        labels: labels()
                            .filter(|&(key, _)| {
                                !IDENTITY_LABELS.contains(&key)
                                    || (key == "gpu" && gpu_index.is_none())
                            })
                            .map(|(key, value)| (key.to_owned(), value.to_owned()))
                            .collect(),
                    });
                    let last = gpus.len() - 1;
                    &mut gpus[last]
                }
            };
            if gpu.fields.insert(field.to_owned(), row.value).is_some() {
                return Err(DecodeError::DuplicateGpuField {
                    gpu_uuid: uuid.to_owned(),
                    field: field.to_owned(),
                    line: row.line,
                });
            }
        }
        self.skipped_non_finite += skipped_non_finite;
        self.skipped_without_uuid += skipped_without_uuid;
        Ok(gpus)
    }
}

/// One [`GpuSample`] per GPU on a dcgm-exporter `page`, grouped as [`DcgmGpuDecoder`]
/// describes; series without a timestamp take `default_time_us`. Use a [`DcgmGpuDecoder`]
/// directly to read how many series were skipped.
pub fn dcgm_gpu_samples(page: &str, default_time_us: i64) -> Result<Vec<GpuSample>, DecodeError> {
    DcgmGpuDecoder::new().decode(page, default_time_us)
}
