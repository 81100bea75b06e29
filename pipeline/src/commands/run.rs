//! `opsloop run`: the loop over Kafka (`opsloop_runtime::kafka`), configured from the embedded
//! defaults, a file and the environment; SIGINT or SIGTERM ends it with a final checkpoint.

use std::path::PathBuf;

use clap::Args;
use opsloop_runtime::kafka::KafkaRun;

use crate::config::{default_config_text, load_run};
use crate::signals;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A TOML file overriding the embedded defaults (see --print-default-config); any key can
    /// also be set as OPSLOOP_<SECTION>__<KEY>.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{}", default_config_text());
        return Ok(());
    }
    let config = load_run(args.config.as_deref())?;
    let run = KafkaRun::start(&config).await?;
    println!("metrics on http://{}/metrics", run.metrics_address());
    let totals = run.run(signals::terminate()).await?;
    println!(
        "stopped: {} alerts, {} incident versions and {} remediation events emitted, checkpoint {} written",
        totals.alerts, totals.incident_versions, totals.remediation_events, totals.checkpoint_id
    );
    Ok(())
}
