//! `opsloop approve|reject <action-id>`: a signed decision onto `ops.approvals`, keyed by
//! action id. The signature is HMAC-SHA256 under the key the actuators share
//! (`--key`, or `OPSLOOP_APPROVAL_KEY`); an actuator refuses a decision it cannot verify.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use opsloop_actuator::approvals::sign;
use opsloop_connectors::kafka::{KafkaSink, RecordWriter, SinkConfig};
use opsloop_schemas::ops::{Approval, Decision};
use opsloop_schemas::{Codec, SchemaRegistry, WireFormat, topics};

use super::broker::BrokerArgs;

#[derive(Debug, Args)]
pub(crate) struct DecisionArgs {
    /// The action to decide on (its `action_id` on ops.remediation).
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
    #[command(flatten)]
    broker: BrokerArgs,
}

pub(crate) async fn run(args: DecisionArgs, decision: Decision) -> anyhow::Result<()> {
    anyhow::ensure!(!args.key.is_empty(), "an empty approval key signs nothing");
    let time_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    let approval = sign(
        args.key.as_bytes(),
        Approval {
            action_id: args.action_id.clone(),
            decision,
            approver: args.approver.clone(),
            reason: args.reason.clone(),
            time_us,
            signature: String::new(),
        },
    );
    let sink = KafkaSink::new(&args.broker.kafka_config()?, SinkConfig::default())?;
    let codec = Codec::new(WireFormat::Confluent, Arc::new(SchemaRegistry::builtin()));
    let mut writer = RecordWriter::new(sink, codec, 1);
    writer.send(&args.topic, &approval).await?;
    writer.finish().await?;
    println!(
        "{:?} of {} by {} sent to {}",
        decision, args.action_id, args.approver, args.topic
    );
    Ok(())
}
