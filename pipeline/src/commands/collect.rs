//! `opsloop collect`: pull telemetry from what users already run and publish it onto the
//! telemetry topics.
//!
//! `collect prometheus` scrapes any Prometheus text endpoint (node-exporter, postgres_exporter,
//! NVIDIA dcgm-exporter, ...) on an interval. `DCGM_FI_*` series become one `GpuSample` per
//! GPU on `telemetry.gpu`, keyed by GPU UUID; every other series goes to `telemetry.metrics` as
//! one `MetricBatch` per entity, keyed by entity. A failed scrape or a malformed page is logged
//! and counted, and the next scrape goes ahead.
//!
//! `collect postgres` queries a PostgreSQL server's statistics views on an interval
//! ([`opsloop_connectors::collect::postgres`] lists the metrics) and publishes one
//! `MetricBatch` per collection to `telemetry.metrics`, keyed by entity (`host:port/dbname`
//! unless `--entity` names one). A failed collection (server down, query error, broker error)
//! is logged and counted, and the next goes ahead; a lost connection is reopened. Only a
//! connection string that cannot work (it does not parse, the password or database is wrong,
//! the server's certificate fails its `sslmode` check) stops it.
//!
//! Either counts a scrape or collection as published only once the brokers acknowledged its
//! records (within `--delivery-timeout`). One that is not delivered is said so and counted, its
//! records dropped, and the next attempt waits: the interval, doubled for each further failure
//! in a row, at most five minutes. A run that delivered nothing ends with an error.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use opsloop_connectors::collect::postgres::{
    Collections, PostgresCollectError, PostgresCollector, PostgresCollectorConfig,
};
use opsloop_connectors::decode::{DCGM_FIELD_PREFIX, DcgmGpuDecoder, PrometheusTextDecoder};
use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_connectors::{ConnectorError, Retry};
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
    /// Collect a PostgreSQL server's statistics (connections, long queries and lock waits,
    /// tables, indexes, materialized views, pg_stat_statements, replication) onto the
    /// metrics topic.
    Postgres(PostgresArgs),
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
    #[command(flatten)]
    delivery: DeliveryArgs,
}

#[derive(Debug, Args)]
struct PostgresArgs {
    /// The server, as a libpq connection string ("host=db-1 user=opsloop dbname=app") or URL
    /// (postgres://opsloop@db-1:5432/app); TLS as libpq's sslmode, sslrootcert, sslcert and
    /// sslkey say ("...?sslmode=verify-full&sslrootcert=/etc/opsloop/db-ca.crt"). The role
    /// needs pg_monitor to see every backend.
    #[arg(long, env = "OPSLOOP_POSTGRES_DSN", hide_env_values = true)]
    dsn: String,
    /// Time between collections (e.g. 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Stop after this many collections; by default run until interrupted.
    #[arg(long)]
    collections: Option<u64>,
    /// Collect only these groups: connections, activity, tables, indexes, matviews,
    /// statements, replication (comma-separated); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Entity of the samples; by default host:port/dbname of the connection string.
    #[arg(long)]
    entity: Option<String>,
    #[arg(long, default_value = topics::METRICS)]
    metrics_topic: String,
    #[command(flatten)]
    broker: BrokerArgs,
    #[command(flatten)]
    delivery: DeliveryArgs,
}

/// How long a collector's records may take to be delivered.
#[derive(Debug, Args)]
struct DeliveryArgs {
    /// How long the brokers have to acknowledge the records of a collection or scrape before
    /// it counts as not delivered (e.g. 10s).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    delivery_timeout: Duration,
}

impl DeliveryArgs {
    /// The sink: one attempt per record, bounded by the timeout; the collector retries with
    /// its next collection, after a backoff.
    fn sink(&self, broker: &BrokerArgs) -> anyhow::Result<KafkaSink> {
        let config = SinkConfig {
            max_attempts: 1,
            attempt_timeout: self.delivery_timeout,
            ..SinkConfig::default()
        };
        Ok(KafkaSink::new(&broker.kafka_config()?, config)?)
    }
}

/// The longest wait between attempts while deliveries keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A collector's failed attempts (collections or scrapes), those among them whose records were
/// not delivered, and the backoff while the brokers do not take its records.
#[derive(Debug, Default)]
struct Tally {
    failed: u64,
    undelivered: u64,
    undelivered_in_a_row: u32,
}

impl Tally {
    fn delivered(&mut self) {
        self.undelivered_in_a_row = 0;
    }

    /// Counts a failed attempt; when its records were not delivered, returns the wait before
    /// the next one: `interval`, doubled for each further such failure in a row.
    fn failed(&mut self, error: &anyhow::Error, interval: Duration) -> Option<Duration> {
        self.failed += 1;
        error.downcast_ref::<ConnectorError>()?;
        self.undelivered += 1;
        self.undelivered_in_a_row += 1;
        let factor = 2u32.saturating_pow(self.undelivered_in_a_row - 1);
        Some(interval.saturating_mul(factor).min(MAX_BACKOFF))
    }

    /// `(F failed)`, or `(F failed, U not delivered)`, for the summary line.
    fn counts(&self) -> String {
        match self.undelivered {
            0 => format!("({} failed)", self.failed),
            undelivered => format!("({} failed, {undelivered} not delivered)", self.failed),
        }
    }

    /// An error when attempts were made to deliver and none got through: a collector whose
    /// records never reached the brokers did not work.
    fn check(&self, delivered: u64, broker: &BrokerArgs) -> anyhow::Result<()> {
        anyhow::ensure!(
            delivered > 0 || self.undelivered == 0,
            "nothing was delivered: the brokers {} acknowledged none of the {} attempts (check \
             --brokers and that a broker is up there)",
            broker.brokers,
            self.undelivered
        );
        Ok(())
    }
}

/// Waits `wait` (the backoff after a failed delivery), then lets the next attempt start at
/// once; `true` when Ctrl-C came first.
async fn back_off(ticks: &mut tokio::time::Interval, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {
            ticks.reset_immediately();
            false
        }
        _ = tokio::signal::ctrl_c() => true,
    }
}

pub(crate) async fn run(args: CollectArgs) -> anyhow::Result<()> {
    match args.source {
        CollectSource::Prometheus(args) => prometheus(args).await,
        CollectSource::Postgres(args) => postgres(args).await,
    }
}

async fn postgres(args: PostgresArgs) -> anyhow::Result<()> {
    let config = PostgresCollectorConfig {
        dsn: args.dsn.clone(),
        entity: args.entity.clone(),
        interval_ms: u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX),
        collections: if args.only.is_empty() {
            Collections::default()
        } else {
            Collections::only(&args.only)?
        },
    };
    let sink = args.delivery.sink(&args.broker)?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut writer = RecordWriter::new(sink, codec, 1_000);
    let mut collector: Option<PostgresCollector> = None;
    let entity = config.entity()?;
    let mut ticks = tokio::time::interval(config.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tally = Tally::default();
    let mut collection = 0u64;
    while args.collections.is_none_or(|limit| collection < limit) {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        collection += 1;
        let started = Instant::now();
        let collected = collect_postgres(&config, &mut collector, &mut writer, &args).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match collected {
            Ok(samples) => {
                tally.delivered();
                tracing::debug!(collection, samples, elapsed_ms, %entity, "collected");
                println!(
                    "collection {collection}: {samples} samples from {entity} delivered in \
                     {elapsed_ms} ms"
                );
            }
            Err(error) => {
                // A connection string that never worked will not start working: stop.
                let hopeless = collector.is_none()
                    && error
                        .downcast_ref::<PostgresCollectError>()
                        .is_some_and(|e| e.retry() == Retry::Never);
                if hopeless {
                    return Err(error);
                }
                let backoff = tally.failed(&error, config.interval());
                let failures = tally.failed;
                tracing::warn!(collection, failures, %entity, "collection failed: {error:#}");
                println!(
                    "collection {collection} of {entity} failed ({failures} so far): {error:#}"
                );
                if let Some(wait) = backoff {
                    println!("next collection in {}", humantime::format_duration(wait));
                    if back_off(&mut ticks, wait).await {
                        break;
                    }
                }
            }
        }
    }
    // Every collection was awaited: this only counts what was delivered.
    let delivered = writer.finish().await?;
    println!(
        "{collection} collections of {entity} {}, {delivered} records published",
        tally.counts()
    );
    tally.check(delivered, &args.broker)
}

/// One collection: connects first when there is no collector yet, then publishes the batch
/// and waits for the brokers to acknowledge it; returns the number of samples.
async fn collect_postgres(
    config: &PostgresCollectorConfig,
    collector: &mut Option<PostgresCollector>,
    writer: &mut RecordWriter,
    args: &PostgresArgs,
) -> anyhow::Result<usize> {
    let collector = match collector {
        Some(collector) => collector,
        None => collector.insert(PostgresCollector::connect(config).await?),
    };
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
    let batch = collector.collect_once(now_us).await?;
    writer.send(&args.metrics_topic, &batch).await?;
    writer
        .finish()
        .await
        .context("its records were not delivered")?;
    Ok(batch.samples.len())
}

async fn prometheus(args: PrometheusArgs) -> anyhow::Result<()> {
    let entity = match &args.entity {
        Some(entity) => entity.clone(),
        None => instance_of(&args.url)?,
    };
    let sink = args.delivery.sink(&args.broker)?;
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
    let mut tally = Tally::default();
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
            Ok(counts) => {
                tally.delivered();
                tracing::info!(
                    scrape,
                    samples = counts.samples,
                    gpus = counts.gpus,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "scraped {} and delivered",
                    args.url
                );
            }
            Err(error) => {
                let backoff = tally.failed(&error, args.interval);
                let failures = tally.failed;
                tracing::warn!(
                    scrape,
                    failures,
                    ?backoff,
                    "scrape of {} failed: {error:#}",
                    args.url
                );
                if let Some(wait) = backoff
                    && back_off(&mut ticks, wait).await
                {
                    break;
                }
            }
        }
    }
    // Every scrape was awaited: this only counts what was delivered.
    let delivered = scraper.writer.finish().await?;
    println!(
        "{scrape} scrapes of {} {}, {delivered} records published",
        args.url,
        tally.counts()
    );
    tally.check(delivered, &args.broker)
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
        self.writer
            .finish()
            .await
            .context("its records were not delivered")?;
        Ok(Published {
            samples,
            gpus: gpus.len(),
        })
    }
}
