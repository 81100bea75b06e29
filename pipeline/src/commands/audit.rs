//! `opsloop audit verify [--log FILE]`: checks the actuator's hash-chained audit log and says
//! where it breaks (an edited, dropped or reordered entry); exits non-zero if it does.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain.
    Verify {
        #[arg(long, default_value = "opsloop-audit.jsonl")]
        log: PathBuf,
    },
}

pub(crate) fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { log } => {
            let entries = opsloop_actuator::audit::verify(&log)?;
            println!("{}: {entries} entries, hash chain intact", log.display());
            Ok(())
        }
    }
}
