//! `opsloop topics`: the topic contract, and creating its topics on a broker.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use opsloop_connectors::kafka::{TopicCreated, TopicRequest, create_topics};
use opsloop_schemas::topics;

use super::broker::BrokerArgs;

#[derive(Debug, Args)]
pub(crate) struct TopicsArgs {
    #[command(subcommand)]
    action: TopicsAction,
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Print the topic contract: name, key, record kind, default partitions.
    List,
    /// Create every contract topic on a broker; existing topics are left as they are.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Partitions for every topic, replacing each topic's default.
    #[arg(long)]
    partitions: Option<i32>,
    /// Partitions for one topic, as NAME=COUNT; repeatable; wins over --partitions.
    #[arg(long = "topic-partitions", value_name = "NAME=COUNT")]
    topic_partitions: Vec<String>,
    /// Replication factor of every topic.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Prefix put before every topic name (e.g. "staging." gives staging.ops.alerts).
    #[arg(long, default_value = "")]
    prefix: String,
    /// How long to wait for the broker.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
}

pub(crate) async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    match args.action {
        TopicsAction::List => {
            println!(
                "{:<20} {:<12} {:<18} {:>10}  value",
                "topic", "key", "record", "partitions"
            );
            for spec in topics::CONTRACT {
                println!(
                    "{:<20} {:<12} {:<18} {:>10}  {}",
                    spec.name,
                    spec.key,
                    spec.kind.name(),
                    spec.default_partitions,
                    spec.description
                );
            }
            Ok(())
        }
        TopicsAction::Create(args) => create(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let overrides = parse_overrides(&args.topic_partitions)?;
    let requests: Vec<TopicRequest> = topics::CONTRACT
        .iter()
        .map(|spec| TopicRequest {
            name: format!("{}{}", args.prefix, spec.name),
            partitions: overrides
                .get(spec.name)
                .copied()
                .or(args.partitions)
                .unwrap_or(spec.default_partitions),
            replication_factor: args.replication_factor,
        })
        .collect();
    if let Some(bad) = requests.iter().find(|r| r.partitions < 1) {
        bail!("{} needs at least one partition", bad.name);
    }
    let kafka = args.broker.kafka_config()?;
    let results = create_topics(&kafka, &requests, Duration::from_secs(args.timeout_s))
        .await
        .with_context(|| format!("creating topics on {}", args.broker.brokers))?;
    for (request, (name, outcome)) in requests.iter().zip(results) {
        let what = match outcome {
            TopicCreated::Created => "created",
            TopicCreated::AlreadyExisted => "already existed",
        };
        println!("{name:<28} {:>3} partitions  {what}", request.partitions);
    }
    Ok(())
}

fn parse_overrides(pairs: &[String]) -> anyhow::Result<BTreeMap<String, i32>> {
    pairs
        .iter()
        .map(|pair| {
            let (name, count) = pair
                .split_once('=')
                .with_context(|| format!("--topic-partitions {pair:?} is not NAME=COUNT"))?;
            if topics::spec(name).is_none() {
                bail!("--topic-partitions names {name:?}, which is not a contract topic");
            }
            let count: i32 = count
                .parse()
                .with_context(|| format!("--topic-partitions {pair:?}: COUNT is not a number"))?;
            Ok((name.to_owned(), count))
        })
        .collect()
}
