//! `opsloop demo`: the embedded default, with no broker or any other service to start.
//!
//! The fleet simulator of `opsloop generate` produces database and GPU (DCGM) telemetry with
//! the default fault schedule. Each tick's records cross an in-process transport as the bytes
//! a Kafka topic would carry (Confluent-framed Avro, keyed by entity), are decoded by the
//! sources' decoders into Arrow micro-batches and run through the same [`Engine`] as
//! `opsloop run`:
//! watermarks, the SQL detectors per event-time window, alerts, and the correlator on the
//! watermark, incidents; the predictive cycle every five minutes of event time, over
//! one-minute windows (forecast jobs, proactive plans). The live view prints every alert as its
//! window closes, every incident version, every proactive plan and a status line every five
//! minutes of event time; the summary scores the alerts against the simulator's ground truth,
//! lists the incidents and the last cycle's forecasts. The latency and cost forecasts need two
//! full days of windows: `--duration 49h --tick-delay 0s` runs that flat out in under two
//! minutes (release build).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::record_batch::RecordBatch;
use clap::Args;
use opsloop_connectors::decode::{
    AvroMetricBatchDecoder, AvroRecordDecoder, Decoder, RecordContext, RowBuilder,
    metric_samples_schema, record_schema,
};
use opsloop_connectors::generate::{DEMO_RUN, FaultWindow, Fleet, FleetConfig};
use opsloop_correlator::{Correlator, CorrelatorConfig};
use opsloop_engine::detector::{
    Detector, DetectorOptions, DetectorPlan, StreamTable, load_detectors, session_context,
};
use opsloop_engine::runtime::Engine;
use opsloop_engine::time::{PartitionId, WatermarkConfig};
use opsloop_predict::{CapacityResource, Cycle, Predictor, PredictorConfig};
use opsloop_schemas::ops::{Alert, Incident, IncidentState};
use opsloop_schemas::telemetry::GpuSample;
use opsloop_schemas::{AvroRecord, Codec, SchemaRegistry, WireFormat, topics};

/// The detectors of the repository's `sql/`, built in so the demo runs from anywhere.
const BUILTIN_DETECTORS: &[(&str, &str)] = &[
    (
        "db_connection_saturation",
        include_str!("../../../sql/db_connection_saturation.sql"),
    ),
    (
        "db_error_burst",
        include_str!("../../../sql/db_error_burst.sql"),
    ),
    (
        "db_latency_p99",
        include_str!("../../../sql/db_latency_p99.sql"),
    ),
    (
        "db_latency_spike",
        include_str!("../../../sql/db_latency_spike.sql"),
    ),
    ("gpu_thermal", include_str!("../../../sql/gpu_thermal.sql")),
    (
        "pg_index_bloat",
        include_str!("../../../sql/pg_index_bloat.sql"),
    ),
    (
        "pg_matview_stale",
        include_str!("../../../sql/pg_matview_stale.sql"),
    ),
    (
        "pg_runaway_query",
        include_str!("../../../sql/pg_runaway_query.sql"),
    ),
    (
        "pg_seq_scan_increase",
        include_str!("../../../sql/pg_seq_scan_increase.sql"),
    ),
];

/// The stream tables the detectors read, as `opsloop run`'s default sources name them.
const METRICS_TABLE: &str = "db_metrics";
const GPU_TABLE: &str = "gpu";

/// Event time between two status lines of the live view.
const STATUS_EVERY_US: i64 = 5 * 60 * 1_000_000;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Event time to simulate; the default fault schedule spans the first 30 minutes.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Wall time between ticks (one sample interval of event time each); 0s runs flat out.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    tick_delay: Duration,
    /// A directory of detector .sql files to run instead of the built-in ones.
    #[arg(long)]
    detectors: Option<PathBuf>,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut fleet = Fleet::new(FleetConfig {
        seed: args.seed,
        ..FleetConfig::demo()
    })
    .context("the demo fleet")?;
    let streams = [
        StreamTable::new(METRICS_TABLE, metric_samples_schema(), "time")?,
        StreamTable::new(GPU_TABLE, record_schema::<GpuSample>(), "time_us")?,
    ];
    let watermarks = WatermarkConfig::default();
    let detectors = detectors(args.detectors.as_ref(), &streams, watermarks)?;
    println!(
        "opsloop demo: a simulated fleet ({} databases, {} GPUs, faults on schedule) through \
         the engine",
        fleet.config().databases,
        fleet.config().gpu_hosts * fleet.config().gpus_per_host
    );
    println!(
        "detectors: {}",
        detectors
            .iter()
            .map(|d| format!("{} ({})", d.name(), d.plan().window()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "transport: in process, Confluent-framed Avro as on {} and {}; watermark: {} ms out of \
         order\n",
        topics::METRICS,
        topics::GPU,
        watermarks.max_out_of_orderness_ms
    );

    let mut engine = Engine::new(watermarks, detectors);
    let mut correlator = Correlator::new(CorrelatorConfig::default())?;
    let mut predictor = Predictor::new(predictor_config())?;
    let mut last_cycle: Option<Cycle> = None;
    let mut cycle_times: Vec<Duration> = Vec::new();
    let mut incidents: BTreeMap<String, Incident> = BTreeMap::new();
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut metrics = InProcessTopic::new(
        topics::METRICS,
        codec.clone(),
        AvroMetricBatchDecoder::new(codec.clone()),
    );
    let mut gpus = InProcessTopic::new(
        topics::GPU,
        codec.clone(),
        AvroRecordDecoder::<GpuSample>::new(codec),
    );
    let started_us = fleet.time_us();
    let end_us = started_us.saturating_add(i64::try_from(args.duration.as_micros())?);
    let mut alerts: Vec<Alert> = Vec::new();
    let mut samples = 0usize;
    let mut next_status = started_us + STATUS_EVERY_US;
    let started = Instant::now();
    while fleet.time_us() < end_us {
        let tick = fleet.tick();
        samples += tick.sample_count() - tick.features.len();
        let carried = [
            (METRICS_TABLE, metrics.carry(&tick.metrics, tick.time_us)?),
            (GPU_TABLE, gpus.carry(&tick.gpus, tick.time_us)?),
        ];
        for (table, (rows, partition)) in carried {
            let output = engine.process(table, &rows, &[partition], Instant::now())?;
            predictor.observe_batch(&rows);
            for alert in &output.alerts {
                println!("{}", alert_line(alert));
                correlator.observe(alert);
            }
            alerts.extend(output.alerts);
            if let Some(watermark) = engine.status().watermark_us {
                for incident in correlator.advance(watermark).versions {
                    println!("{}", incident_line(&incident));
                    if incident.state == IncidentState::Open {
                        predictor.incident_opened(&incident.entity, incident.opened_us);
                    }
                    incidents.insert(incident.incident_id.clone(), incident);
                }
                if predictor.due(watermark) {
                    let cycle_started = Instant::now();
                    let cycle = predictor.cycle(watermark).await?;
                    cycle_times.push(cycle_started.elapsed());
                    for event in &cycle.events {
                        println!(
                            "PLAN     {} {:<22} {:<6} {}",
                            clock(watermark),
                            event.template,
                            event.target,
                            event.rationale
                        );
                    }
                    last_cycle = Some(cycle);
                }
            }
        }
        if tick.time_us >= next_status {
            let status = engine.status();
            println!(
                "-- event time {} | watermark {} | {samples} samples | {} windows open, {} \
                 series, {} KiB state | {} alerts | {} incidents open",
                clock(tick.time_us),
                status.watermark_us.map_or_else(|| "-".to_owned(), clock),
                status.open_windows,
                status.active_groups,
                status.state_bytes / 1024,
                alerts.len(),
                correlator.status().open_incidents
            );
            next_status += STATUS_EVERY_US;
        }
        if !args.tick_delay.is_zero() {
            tokio::time::sleep(args.tick_delay).await;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "\n{samples} samples, {} minutes of event time in {:.1} s: {} alerts, {} incidents",
        (end_us - started_us) / 60_000_000,
        elapsed.as_secs_f64(),
        alerts.len(),
        incidents.len()
    );
    if args.duration >= DEMO_RUN {
        print_detections(fleet.ground_truth(), &alerts, started_us);
    }
    print_incidents(&incidents);
    if let Some(slowest) = cycle_times.iter().max() {
        println!(
            "{} predictive cycles: {:.1} ms mean, {:.1} ms the slowest",
            cycle_times.len(),
            cycle_times.iter().sum::<Duration>().as_secs_f64() * 1e3 / cycle_times.len() as f64,
            slowest.as_secs_f64() * 1e3
        );
    }
    match &last_cycle {
        Some(cycle) if cycle.forecasts.is_empty() => println!(
            "\nno forecasts yet: capacity needs a day of one-minute windows, latency and cost \
             two (--duration 49h --tick-delay 0s)"
        ),
        Some(cycle) => print_forecasts(cycle),
        None => {}
    }
    Ok(())
}

/// One-minute windows and a cycle every five minutes, so half an hour shows trends; disks of
/// the simulated fleet (100 GB to 1.5 TB) against a 2 TB limit.
fn predictor_config() -> PredictorConfig {
    PredictorConfig {
        cycle_interval_s: 300,
        window_s: 60,
        season_points: 1440,
        history_points: 3 * 1440,
        capacity: vec![CapacityResource {
            resource: "storage".to_owned(),
            metric: "db_disk_used_bytes".to_owned(),
            limit: 2e12,
        }],
        ..PredictorConfig::default()
    }
}

/// The last cycle's forecasts, one line per entity.
fn print_forecasts(cycle: &Cycle) {
    println!(
        "
forecasts ({}, {}: {} failures, {} proactive plans)",
        cycle.report.cycle_id,
        clock(cycle.report.time_us),
        cycle.report.failures_detected,
        cycle.report.proactive_plans
    );
    for outlook in cycle.outlooks.iter().filter(|o| !o.forecasts.is_empty()) {
        let parts: Vec<String> = outlook
            .forecasts
            .iter()
            .map(|f| {
                let what = f.resource.as_deref().unwrap_or(&f.forecast);
                let value = match f.forecast.as_str() {
                    "capacity_share" => format!("{:.0}% a week out", f.value * 100.0),
                    "latency_p99_ms" => format!("{:.0} ms next hour", f.value),
                    "cost_per_query_usd" => format!("{:.2e} USD a day out", f.value),
                    "cost_usd_per_hour" => format!("{:.2} USD/h a day out", f.value),
                    _ => format!("{:+.3}", f.value),
                };
                let full = f
                    .time_to_exhaustion_s
                    .map(|s| format!(" (full in {:.1} d)", s / 86_400.0))
                    .unwrap_or_default();
                format!("{what} {value}{full}")
            })
            .collect();
        println!("{:<12} {}", outlook.entity, parts.join("; "));
    }
}

fn incident_line(incident: &Incident) -> String {
    format!(
        "INCIDENT {:<12} v{} {:<7} {:?} {:<20} {:<6} severity {:.2}  {}",
        &incident.incident_id[..12.min(incident.incident_id.len())],
        incident.version,
        format!("{:?}", incident.state).to_lowercase(),
        incident.tier,
        incident.pattern,
        incident.entity,
        incident.severity,
        incident.alert_types.join("+")
    )
}

/// Each incident's latest version: tier, pattern, lifecycle and its leading hypothesis.
fn print_incidents(incidents: &BTreeMap<String, Incident>) {
    if incidents.is_empty() {
        return;
    }
    println!("\nincidents (latest version)");
    let mut latest: Vec<&Incident> = incidents.values().collect();
    latest.sort_by_key(|i| (i.opened_us, i.incident_id.clone()));
    for incident in latest {
        let lifetime = match (incident.state, incident.resolved_us) {
            (IncidentState::Resolved, Some(resolved)) => {
                format!(
                    "resolved after {} s",
                    (resolved - incident.opened_us) / 1_000_000
                )
            }
            _ => "open".to_owned(),
        };
        println!(
            "{:?} {:<20} {:<6} opened {}  {lifetime}; {} alert(s)",
            incident.tier,
            incident.pattern,
            incident.entity,
            clock(incident.opened_us),
            incident.alert_ids.len()
        );
        if let Some(hypothesis) = incident.hypotheses.first() {
            println!(
                "   likely cause ({:.0}%): {}",
                hypothesis.confidence * 100.0,
                hypothesis.cause
            );
        }
    }
}

/// The built-in detectors, or those of `dir`.
fn detectors(
    dir: Option<&PathBuf>,
    streams: &[StreamTable],
    watermarks: WatermarkConfig,
) -> anyhow::Result<Vec<Detector>> {
    let context = session_context();
    let options = DetectorOptions {
        allowed_lateness_us: watermarks.allowed_lateness_us(),
    };
    if let Some(dir) = dir {
        return Ok(load_detectors(dir, &context, streams, options)?);
    }
    BUILTIN_DETECTORS
        .iter()
        .map(|(name, sql)| {
            let plan = DetectorPlan::from_sql(name, sql, &context, streams)?;
            Ok(Detector::new(Arc::new(plan), options)?)
        })
        .collect()
}

/// One topic partition in memory: records are encoded as a producer would, then decoded by
/// the Kafka source's decoder into one micro-batch.
struct InProcessTopic<D: Decoder> {
    partition: PartitionId,
    codec: Codec,
    decoder: D,
    rows: D::Rows,
    payload: Vec<u8>,
}

impl<D: Decoder> InProcessTopic<D> {
    fn new(topic: &str, codec: Codec, decoder: D) -> Self {
        InProcessTopic {
            partition: PartitionId::new(topic, 0),
            rows: decoder.new_rows(),
            decoder,
            codec,
            payload: Vec::new(),
        }
    }

    /// The records, produced at `timestamp_us`, as one micro-batch, with the partition and the
    /// largest event time of its rows.
    fn carry<T: AvroRecord>(
        &mut self,
        records: &[T],
        timestamp_us: i64,
    ) -> anyhow::Result<(RecordBatch, (PartitionId, i64))> {
        let mut max_event_time_us = timestamp_us;
        for record in records {
            self.payload.clear();
            self.codec.encode_into(record, &mut self.payload)?;
            let first = self.rows.len();
            let context = RecordContext::new(&self.partition.topic, timestamp_us)
                .with_key(record.partition_key().as_bytes());
            self.decoder
                .decode(&self.payload, &context, &mut self.rows)
                .with_context(|| format!("decoding the record of {}", record.partition_key()))?;
            let newest = self.rows.max_event_time_us(first).unwrap_or(timestamp_us);
            max_event_time_us = max_event_time_us.max(newest);
        }
        let partition = (self.partition.clone(), max_event_time_us);
        Ok((self.rows.finish()?, partition))
    }
}

fn alert_line(alert: &Alert) -> String {
    let evidence = alert
        .evidence
        .iter()
        .map(|(name, value)| format!("{name}={value:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "ALERT {:<24} {:<6} window {}-{}  score {:>6.2}  {evidence}",
        alert.alert_type,
        alert.entity,
        clock(alert.window_start_us),
        clock(alert.window_end_us),
        alert.score
    )
}

/// For each scheduled fault: which alerts fell on its entities while it lasted.
fn print_detections(truth: &[FaultWindow], alerts: &[Alert], started_us: i64) {
    println!("\nfault (ground truth)                       detected by");
    let mut matched = vec![false; alerts.len()];
    let mut detected = 0;
    for fault in truth {
        let mut by: BTreeMap<&str, i64> = BTreeMap::new();
        for (index, alert) in alerts.iter().enumerate() {
            let overlaps =
                alert.window_start_us < fault.end_us && alert.window_end_us > fault.start_us;
            if overlaps && fault.entities.contains(&alert.entity) {
                matched[index] = true;
                let delay = by.entry(&alert.alert_type).or_insert(i64::MAX);
                *delay = (*delay).min(alert.window_end_us - fault.start_us);
            }
        }
        let found = if by.is_empty() {
            "-".to_owned()
        } else {
            detected += 1;
            by.iter()
                .map(|(kind, delay)| format!("{kind} (+{} s)", delay / 1_000_000))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<22} {:<8} +{:>4} s  {found}",
            fault.kind.name(),
            fault.target,
            (fault.start_us - started_us) / 1_000_000,
        );
    }
    println!(
        "\n{detected} of {} faults detected; {} of {} alerts outside any fault",
        truth.len(),
        matched.iter().filter(|hit| !**hit).count(),
        alerts.len()
    );
    println!(
        "(+N s: from the fault's start to the end of the first alerting window; model faults \
         wait for the drift detectors)"
    );
}

/// `HH:MM:SS` of an event time, UTC.
fn clock(time_us: i64) -> String {
    let seconds = time_us.div_euclid(1_000_000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}
