//! `opsloop actuate`: the actuator service (`opsloop_runtime::actuate`), configured from the
//! embedded defaults (`actuate.toml`), a file and the environment.

use std::path::PathBuf;

use clap::Args;
use opsloop_runtime::actuate::{ActuateConfig, ActuateService};

use crate::config::load_layered;
use crate::signals;

const DEFAULT_CONFIG: &str = include_str!("../config/actuate.toml");

#[derive(Debug, Args)]
pub(crate) struct ActuateArgs {
    /// A TOML file overriding the embedded defaults (see --print-default-config).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    print_default_config: bool,
}

pub(crate) async fn run(args: ActuateArgs) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let config: ActuateConfig = load_layered(DEFAULT_CONFIG, args.config.as_deref())?;
    let service = ActuateService::start(config.clone()).await?;
    println!("metrics on http://{}/metrics", service.metrics_address());
    println!(
        "actuating {} (approvals on {}, verdicts from {}), audit log {}",
        config.topics.remediation,
        config.topics.approvals,
        config.topics.incidents,
        config.actuator.audit_log.display()
    );
    service.run(signals::terminate()).await?;
    Ok(())
}
