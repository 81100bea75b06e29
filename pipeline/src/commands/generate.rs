//! `opsloop generate`: a synthetic fleet (databases, GPUs, models) publishing telemetry with
//! scheduled faults, for load tests, benchmarks and trying opsloop without production data.
//!
//! Each tick of the fleet is one sample interval of event time. `--rate` caps the samples
//! published per second of wall time; without it the fleet publishes as fast as the brokers
//! take it, compressing event time. `--realtime` instead paces ticks at the sample interval,
//! with event time starting now, as a live fleet would.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_connectors::generate::{DEMO_RUN, Fleet, FleetConfig};
use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat, topics};

use super::broker::BrokerArgs;
use super::fleet::FleetArgs;

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Event time to generate (e.g. 30m, 2h).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Most samples published per second of wall time; unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Pace ticks at the sample interval with event time starting now.
    #[arg(long, conflicts_with = "rate")]
    realtime: bool,
    #[command(flatten)]
    fleet: FleetArgs,
    /// Print the fault schedule (ground truth) and exit.
    #[arg(long)]
    schedule: bool,
    #[arg(long, default_value = topics::METRICS)]
    metrics_topic: String,
    #[arg(long, default_value = topics::GPU)]
    gpu_topic: String,
    #[arg(long, default_value = topics::FEATURES)]
    features_topic: String,
    #[arg(long, default_value = topics::LOGS)]
    logs_topic: String,
}

impl GenerateArgs {
    fn fleet_config(&self) -> anyhow::Result<FleetConfig> {
        let start = if self.realtime {
            Some(i64::try_from(
                SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros(),
            )?)
        } else {
            None
        };
        Ok(self.fleet.fleet_config(start))
    }
}

pub(crate) async fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let fleet = Fleet::new(args.fleet_config()?).context("invalid fleet")?;
    if args.schedule {
        for window in fleet.ground_truth() {
            println!(
                "{:<22} {:<14} +{:>6}s for {:>5}s  x{}",
                window.kind.name(),
                window.target,
                (window.start_us - fleet.config().start_time_us) / 1_000_000,
                (window.end_us - window.start_us) / 1_000_000,
                window.magnitude
            );
        }
        return Ok(());
    }
    if args.duration > DEMO_RUN && args.fleet.default_schedule() {
        tracing::info!("the demo fault schedule covers the first {DEMO_RUN:?} of event time");
    }
    let interval = args.fleet.interval().max(Duration::from_millis(1));
    let ticks = (args.duration.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
    let mut writer = RecordWriter::new(
        KafkaSink::new(&args.broker.kafka_config()?, SinkConfig::default())?,
        Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin())),
        20_000,
    );
    let progress = ProgressBar::new(ticks).with_style(ProgressStyle::with_template(
        "{spinner} tick {pos}/{len} [{bar:30}] {msg} ({eta} left)",
    )?);
    run_fleet(fleet, &args, ticks, &mut writer, &progress).await
}

async fn run_fleet(
    mut fleet: Fleet,
    args: &GenerateArgs,
    ticks: u64,
    writer: &mut RecordWriter,
    progress: &ProgressBar,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut samples = 0u64;
    let mut records = 0u64;
    for index in 0..ticks {
        let tick = fleet.tick();
        samples += tick.sample_count() as u64;
        for batch in &tick.metrics {
            writer.send(&args.metrics_topic, batch).await?;
        }
        for gpu in &tick.gpus {
            writer.send(&args.gpu_topic, gpu).await?;
        }
        for feature in &tick.features {
            writer.send(&args.features_topic, feature).await?;
        }
        for log in &tick.logs {
            writer.send(&args.logs_topic, log).await?;
        }
        records +=
            (tick.metrics.len() + tick.gpus.len() + tick.features.len() + tick.logs.len()) as u64;
        progress.inc(1);
        let elapsed = started.elapsed().as_secs_f64();
        progress.set_message(format!(
            "{:.0} samples/s",
            samples as f64 / elapsed.max(1e-9)
        ));
        let due = if args.realtime {
            Some(args.fleet.interval().mul_f64((index + 1) as f64))
        } else {
            args.rate
                .map(|rate| Duration::from_secs_f64(samples as f64 / rate.max(1e-9)))
        };
        if let Some(due) = due {
            tokio::select! {
                _ = tokio::time::sleep(due.saturating_sub(started.elapsed())) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    let delivered = writer.finish().await?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {samples} samples in {records} records ({delivered} delivered) in {seconds:.1} s: {:.0} samples/s",
        samples as f64 / seconds.max(1e-9)
    );
    Ok(())
}
