//! `opsloop approve|reject <action-id>`: a signed decision onto `ops.approvals`, keyed by
//! action id, bound to the content of the action decided on.
//!
//! The decision names the digest of the action's content (template, target, parameters,
//! incident, attempt), found in the actuator's PLANNED entry on `ops.actions` and printed
//! before signing, so the approver sees what they approve; an actuator runs an approved action
//! only if the event it holds has that digest. The signature is HMAC-SHA256 under the key
//! approvers and actuators share (`--key`, or `OPSLOOP_APPROVAL_KEY`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use opsloop_actions::seal::sign_approval;
use opsloop_connectors::kafka::{
    KafkaSink, RecordConsumer, RecordConsumerConfig, RecordStart, RecordWriter, SinkConfig,
};
use opsloop_connectors::metrics::SourceMetrics;
use opsloop_schemas::ops::{ActionOutcome, ActionStep, Approval, Decision};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat, topics};

use super::broker::BrokerArgs;

#[derive(Debug, Args)]
pub(crate) struct DecisionArgs {
    /// The action to decide on (its `action_id` on ops.remediation and ops.actions).
    action_id: String,
    /// Who decides; recorded in the audit trail.
    #[arg(long, env = "USER", default_value = "operator")]
    approver: String,
    #[arg(long, default_value = "")]
    reason: String,
    /// The shared approval key.
    #[arg(long, env = "OPSLOOP_APPROVAL_KEY", hide_env_values = true)]
    key: String,
    #[arg(long, default_value = topics::APPROVALS)]
    topic: String,
    /// Where the actuators record actions (the PLANNED entry names what is approved).
    #[arg(long, default_value = topics::ACTIONS)]
    actions_topic: String,
    /// How far back to look for the action on the actions topic.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    within: Duration,
    /// Give up looking when no record of the actions topic came for this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    quiet: Duration,
    /// The digest of the content to decide on, instead of looking the action up.
    #[arg(long)]
    digest: Option<String>,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

pub(crate) async fn run(args: DecisionArgs, decision: Decision) -> anyhow::Result<()> {
    anyhow::ensure!(!args.key.is_empty(), "an empty approval key signs nothing");
    let kafka = args.broker.kafka_config()?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let action_digest = match &args.digest {
        Some(digest) => digest.clone(),
        None => {
            let planned = planned_entry(&args, &kafka, &codec).await?;
            println!(
                "{} {} on {} with {:?} (incident {}, attempt {})",
                planned.action_id,
                planned.template,
                planned.target,
                planned.params,
                planned.incident_id,
                planned.attempt
            );
            planned.digest
        }
    };
    let approval = sign_approval(
        args.key.as_bytes(),
        Approval {
            action_id: args.action_id.clone(),
            decision,
            approver: args.approver.clone(),
            reason: args.reason.clone(),
            time_us: now_us(),
            signature: String::new(),
            action_digest,
        },
    );
    let sink = KafkaSink::new(&kafka, SinkConfig::default())?;
    let mut writer = RecordWriter::new(sink, codec, 1);
    writer.send(&args.topic, &approval).await?;
    writer.finish().await?;
    println!(
        "{:?} of {} by {} sent to {}",
        decision, args.action_id, args.approver, args.topic
    );
    Ok(())
}

/// The PLANNED entry of the action on the actions topic.
async fn planned_entry(
    args: &DecisionArgs,
    kafka: &opsloop_connectors::kafka::KafkaConfig,
    codec: &Codec,
) -> anyhow::Result<ActionOutcome> {
    let mut reader = RecordConsumer::start(
        kafka,
        RecordConsumerConfig {
            group_id: "opsloop-approve".to_owned(),
            topics: vec![args.actions_topic.clone()],
            start: RecordStart::Since(args.within),
        },
        codec.clone(),
        None,
        SourceMetrics::unregistered("approve"),
    )?;
    loop {
        let Ok(message) = tokio::time::timeout(args.quiet, reader.next()).await else {
            anyhow::bail!(
                "no PLANNED entry of {} on {} in the last {}: is it an action an actuator is \
                 holding for approval? (--digest decides on a known digest)",
                args.action_id,
                args.actions_topic,
                humantime::format_duration(args.within)
            );
        };
        if let Some(outcome) = reader.decode::<ActionOutcome>(&message).await
            && outcome.action_id == args.action_id
            && outcome.step == ActionStep::Planned
        {
            return Ok(outcome);
        }
    }
}
