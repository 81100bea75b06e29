//! `opsloop publish`: JSON-lines, CSV or Avro files onto a topic, with a progress bar.
//!
//! Records are read as the topic's record kind (the contract's, or `--kind`), encoded in the
//! chosen wire format (Confluent-framed Avro by default) and keyed as the contract says (the
//! entity id on the metric topics), so one entity's records stay in one partition. Every
//! record is acknowledged by the brokers before the command reports success.
//!
//! * JSON lines: one record per line in the codec's JSON form (`opsloop schemas examples`
//!   prints one of each kind). With `--encoding raw` the lines are published unchanged, for
//!   topics read by the JSON-lines decoder.
//! * CSV: metric samples with a header naming `entity`, `name`, `value`, and `time_us` (µs)
//!   or `timestamp` (RFC 3339); optional `source`; every other column is a label. Consecutive
//!   rows of one entity are published as one `MetricBatch`.
//! * Avro: an Avro object container file whose records have the kind's schema.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use opsloop_connectors::decode::parse_rfc3339_us;
use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::telemetry::{MetricBatch, MetricSample};
use opsloop_schemas::with_record_type;
use opsloop_schemas::{AvroRecord, Codec, RecordKind, SchemaRegistry, WireFormat, topics};

use super::broker::BrokerArgs;

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Files to publish, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The topic to publish to.
    #[arg(long)]
    topic: String,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Record kind of the files (e.g. MetricBatch); defaults to the contract kind of --topic.
    #[arg(long)]
    kind: Option<String>,
    /// Input format; by default from each file's extension (.jsonl/.ndjson/.json, .csv, .avro).
    #[arg(long, value_enum)]
    format: Option<InputFormat>,
    /// Wire format of the published records.
    #[arg(long, value_enum, default_value_t = Encoding::Confluent)]
    encoding: Encoding,
    /// Most samples per MetricBatch built from CSV rows.
    #[arg(long, default_value_t = 500)]
    batch_samples: usize,
    /// Deliveries awaited at most at once.
    #[arg(long, default_value_t = 10_000)]
    in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    Jsonl,
    Csv,
    Avro,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Encoding {
    /// Avro with the Confluent header (magic byte + schema id).
    Confluent,
    /// Plain Avro datum.
    Avro,
    /// The codec's JSON form.
    Json,
    /// JSON lines as they are, unkeyed (only with JSON-lines input).
    Raw,
}

pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let kind = match &args.kind {
        Some(name) => RecordKind::from_name(name)
            .with_context(|| format!("--kind {name:?} is not a record kind"))?,
        None => topics::spec(&args.topic)
            .map(|spec| spec.kind)
            .with_context(|| {
                format!(
                    "{} is not a contract topic: name the record kind with --kind",
                    args.topic
                )
            })?,
    };
    let sink = KafkaSink::new(&args.broker.kafka_config()?, SinkConfig::default())?;
    let total_bytes = args
        .files
        .iter()
        .map(|path| std::fs::metadata(path).map(|m| m.len()))
        .sum::<Result<u64, _>>()
        .context("reading the input files' sizes")?;
    let progress = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {msg} ({eta} left)",
        )?
        .progress_chars("=> "),
    );
    let mut publisher = Publisher {
        topic: &args.topic,
        writer: RecordWriter::new(sink, codec(args.encoding), args.in_flight),
        progress: &progress,
    };
    let started = Instant::now();
    for path in &args.files {
        let format = match args.format {
            Some(format) => format,
            None => format_of(path)?,
        };
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let reader = BufReader::new(progress.wrap_read(file));
        let read = match (format, args.encoding) {
            (InputFormat::Jsonl, Encoding::Raw) => publisher.raw_lines(reader).await,
            (_, Encoding::Raw) => bail!("--encoding raw publishes JSON lines only"),
            (InputFormat::Jsonl, _) => {
                with_record_type!(kind, T => publisher.json_lines::<T>(reader).await)
            }
            (InputFormat::Avro, _) => {
                with_record_type!(kind, T => publisher.avro_container::<T>(reader).await)
            }
            (InputFormat::Csv, _) if kind == RecordKind::MetricBatch => {
                publisher.csv_samples(reader, args.batch_samples).await
            }
            (InputFormat::Csv, _) => {
                bail!(
                    "CSV files hold metric samples, but {} holds {kind}",
                    args.topic
                )
            }
        };
        read.with_context(|| format!("publishing {}", path.display()))?;
    }
    let delivered = publisher.writer.finish().await?;
    let (_, bytes) = publisher.writer.sent();
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "published {delivered} {kind} records ({} bytes) to {} in {seconds:.1} s ({:.0} records/s)",
        bytes,
        args.topic,
        delivered as f64 / seconds.max(1e-9)
    );
    Ok(())
}

fn codec(encoding: Encoding) -> Codec {
    let format = match encoding {
        Encoding::Confluent | Encoding::Raw => WireFormat::Confluent,
        Encoding::Avro => WireFormat::Avro,
        Encoding::Json => WireFormat::Json,
    };
    Codec::new(format, Arc::new(SchemaRegistry::builtin()))
}

fn format_of(path: &Path) -> anyhow::Result<InputFormat> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson" | "json") => Ok(InputFormat::Jsonl),
        Some("csv") => Ok(InputFormat::Csv),
        Some("avro") => Ok(InputFormat::Avro),
        _ => bail!(
            "cannot tell the format of {} from its extension: pass --format",
            path.display()
        ),
    }
}

struct Publisher<'a> {
    topic: &'a str,
    writer: RecordWriter,
    progress: &'a ProgressBar,
}

impl Publisher<'_> {
    fn sent_one(&self) {
        let (records, _) = self.writer.sent();
        if records % 1024 == 0 {
            self.progress.set_message(format!("{records} records"));
        }
    }

    async fn send_record<T: AvroRecord>(&mut self, record: &T) -> anyhow::Result<()> {
        self.writer.send(self.topic, record).await?;
        self.sent_one();
        Ok(())
    }

    async fn raw_lines(&mut self, reader: impl BufRead) -> anyhow::Result<()> {
        for line in reader.lines() {
            let line = line?;
            if !line.trim().is_empty() {
                self.writer
                    .send_bytes(self.topic, None, line.as_bytes())
                    .await?;
                self.sent_one();
            }
        }
        Ok(())
    }

    async fn json_lines<T: AvroRecord>(&mut self, reader: impl BufRead) -> anyhow::Result<()> {
        for (index, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let record: T = serde_json::from_str(&line)
                .with_context(|| format!("line {} is not a {} JSON object", index + 1, T::KIND))?;
            self.send_record(&record).await?;
        }
        Ok(())
    }

    async fn avro_container<T: AvroRecord>(&mut self, reader: impl BufRead) -> anyhow::Result<()> {
        let mut container =
            serde_avro_fast::object_container_file_encoding::Reader::from_reader(reader)
                .context("not an Avro object container file")?;
        let mut index = 0usize;
        while let Some(record) = container
            .deserialize_next::<T>()
            .with_context(|| format!("record {} does not match {}", index + 1, T::KIND))?
        {
            self.send_record(&record).await?;
            index += 1;
        }
        Ok(())
    }

    async fn csv_samples(&mut self, reader: impl Read, batch_samples: usize) -> anyhow::Result<()> {
        let mut csv = csv::Reader::from_reader(reader);
        let columns = CsvColumns::from_header(csv.headers()?)?;
        let mut batch: Option<MetricBatch> = None;
        for (index, row) in csv.records().enumerate() {
            let row = row?;
            let (entity, source, sample) = columns
                .sample(&row)
                .with_context(|| format!("CSV row {}", index + 2))?;
            let same_batch = batch.as_ref().is_some_and(|b| {
                b.entity == entity && b.source == source && b.samples.len() < batch_samples
            });
            if !same_batch && let Some(full) = batch.take() {
                self.send_record(&full).await?;
            }
            batch
                .get_or_insert_with(|| MetricBatch {
                    entity: entity.to_owned(),
                    source: source.to_owned(),
                    samples: Vec::new(),
                })
                .samples
                .push(sample);
        }
        if let Some(last) = batch {
            self.send_record(&last).await?;
        }
        Ok(())
    }
}

/// Where each field of a metric sample is in a CSV row.
struct CsvColumns {
    entity: usize,
    name: usize,
    value: usize,
    time: (usize, bool),
    source: Option<usize>,
    labels: Vec<(usize, String)>,
}

impl CsvColumns {
    fn from_header(header: &csv::StringRecord) -> anyhow::Result<CsvColumns> {
        let find = |name: &str| header.iter().position(|column| column == name);
        let required = |name: &str| {
            find(name).with_context(|| {
                format!("the CSV header has no {name:?} column (it needs entity, name, value and time_us or timestamp)")
            })
        };
        let time = match (find("time_us"), find("timestamp")) {
            (Some(column), None) => (column, true),
            (None, Some(column)) => (column, false),
            (Some(_), Some(_)) => bail!("the CSV header has both time_us and timestamp"),
            (None, None) => bail!("the CSV header has neither time_us nor timestamp"),
        };
        let known = ["entity", "name", "value", "time_us", "timestamp", "source"];
        Ok(CsvColumns {
            entity: required("entity")?,
            name: required("name")?,
            value: required("value")?,
            time,
            source: find("source"),
            labels: header
                .iter()
                .enumerate()
                .filter(|(_, column)| !known.contains(column))
                .map(|(index, column)| (index, column.to_owned()))
                .collect(),
        })
    }

    fn sample<'r>(
        &self,
        row: &'r csv::StringRecord,
    ) -> anyhow::Result<(&'r str, &'r str, MetricSample)> {
        let field = |index: usize| row.get(index).unwrap_or_default();
        let value: f64 = field(self.value)
            .parse()
            .with_context(|| format!("value {:?} is not a number", field(self.value)))?;
        if !value.is_finite() {
            bail!("value {value} is not finite");
        }
        let (time_column, micros) = self.time;
        let time_us = if micros {
            field(time_column)
                .parse()
                .with_context(|| format!("time_us {:?} is not an integer", field(time_column)))?
        } else {
            parse_rfc3339_us(field(time_column))
                .with_context(|| format!("timestamp {:?} is not RFC 3339", field(time_column)))?
        };
        let sample = MetricSample {
            name: field(self.name).to_owned(),
            labels: self
                .labels
                .iter()
                .filter(|(index, _)| !field(*index).is_empty())
                .map(|(index, name)| (name.clone(), field(*index).to_owned()))
                .collect(),
            value,
            time_us,
        };
        Ok((field(self.entity), self.source.map_or("", field), sample))
    }
}
