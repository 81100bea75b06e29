//! `opsloop collect`: pull telemetry from what users already run and publish it onto the
//! telemetry topics.
//!
//! `collect prometheus` scrapes any Prometheus text endpoint (node-exporter, postgres_exporter,
//! NVIDIA dcgm-exporter, ...) on an interval. `DCGM_FI_*` series become one `GpuSample` per
//! GPU on `telemetry.gpu`, keyed by GPU UUID; every other series goes to `telemetry.metrics` as
//! one `MetricBatch` per entity, keyed by entity. A failed scrape or a malformed page is logged
//! and counted, and the next scrape goes ahead.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use opsloop_connectors::decode::{DCGM_FIELD_PREFIX, DcgmGpuDecoder, PrometheusTextDecoder};
use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat, topics};

use super::broker::BrokerArgs;

#[derive(Debug, Args)]
pub(crate) struct CollectArgs {
    #[command(subcommand)]
    source: CollectSource,
}

#[derive(Debug, Subcommand)]
enum CollectSource {
    /// Scrape a Prometheus endpoint (dcgm-exporter, node-exporter, ...) onto the telemetry
    /// topics.
    Prometheus(PrometheusArgs),
}

#[derive(Debug, Args)]
struct PrometheusArgs {
    /// The endpoint, e.g. http://gpu-node-1:9400/metrics.
    #[arg(long)]
    url: String,
    /// Time between scrapes (e.g. 15s, 1m).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Give up on a scrape after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Stop after this many scrapes; by default run until interrupted.
    #[arg(long)]
    scrapes: Option<u64>,
    /// Entity of series whose labels name none (Hostname, hostname, instance); by default the
    /// URL's host:port, as Prometheus's `instance` label would be.
    #[arg(long)]
    entity: Option<String>,
    #[arg(long, default_value = topics::METRICS)]
    metrics_topic: String,
    #[arg(long, default_value = topics::GPU)]
    gpu_topic: String,
    #[command(flatten)]
    broker: BrokerArgs,
}

pub(crate) async fn run(args: CollectArgs) -> anyhow::Result<()> {
    match args.source {
        CollectSource::Prometheus(args) => prometheus(args).await,
    }
}

async fn prometheus(args: PrometheusArgs) -> anyhow::Result<()> {
    let entity = match &args.entity {
        Some(entity) => entity.clone(),
        None => instance_of(&args.url)?,
    };
    let sink = KafkaSink::new(&args.broker.kafka_config()?, SinkConfig::default())?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(args.timeout))
        .build()
        .into();
    let mut scraper = Scraper {
        writer: RecordWriter::new(sink, codec, 10_000),
        metrics: PrometheusTextDecoder::new(),
        gpus: DcgmGpuDecoder::new(),
    };
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u64;
    let mut scrape = 0u64;
    while args.scrapes.is_none_or(|limit| scrape < limit) {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        scrape += 1;
        let started = Instant::now();
        let page = fetch(&agent, &args.url).await;
        let published = match page {
            Ok(page) => {
                scraper
                    .publish(&page, &entity, &args.metrics_topic, &args.gpu_topic)
                    .await
            }
            Err(error) => Err(error),
        };
        match published {
            Ok(counts) => tracing::info!(
                scrape,
                samples = counts.samples,
                gpus = counts.gpus,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scraped {}",
                args.url
            ),
            Err(error) => {
                failures += 1;
                tracing::warn!(scrape, failures, "scrape of {} failed: {error:#}", args.url);
            }
        }
    }
    let delivered = scraper.writer.finish().await?;
    println!(
        "{scrape} scrapes of {} ({failures} failed), {delivered} records published",
        args.url
    );
    Ok(())
}

/// `host:port` of `url`, the entity of series that name none.
fn instance_of(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!authority.is_empty(), "--url {url:?} names no host");
    Ok(authority.to_owned())
}

async fn fetch(agent: &ureq::Agent, url: &str) -> anyhow::Result<String> {
    let agent = agent.clone();
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut response = agent.get(&url).call().context("HTTP request")?;
        response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .context("reading the page")
    })
    .await?
}

struct Scraper {
    writer: RecordWriter,
    metrics: PrometheusTextDecoder,
    gpus: DcgmGpuDecoder,
}

struct Published {
    samples: usize,
    gpus: usize,
}

impl Scraper {
    async fn publish(
        &mut self,
        page: &str,
        entity: &str,
        metrics_topic: &str,
        gpu_topic: &str,
    ) -> anyhow::Result<Published> {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
        let gpus = self.gpus.decode(page, now_us)?;
        let mut batches = self.metrics.metric_batches(page, now_us, entity)?;
        if !gpus.is_empty() {
            for batch in &mut batches {
                batch
                    .samples
                    .retain(|sample| !sample.name.starts_with(DCGM_FIELD_PREFIX));
            }
            batches.retain(|batch| !batch.samples.is_empty());
        }
        let samples = batches.iter().map(|b| b.samples.len()).sum::<usize>()
            + gpus.iter().map(|g| g.fields.len()).sum::<usize>();
        for gpu in &gpus {
            self.writer.send(gpu_topic, gpu).await?;
        }
        for batch in &batches {
            self.writer.send(metrics_topic, batch).await?;
        }
        Ok(Published {
            samples,
            gpus: gpus.len(),
        })
    }
}
