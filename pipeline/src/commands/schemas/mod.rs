//! `opsloop schemas`: list, print and export the contract's Avro schemas; round-trip every
//! record kind through every wire format.

mod roundtrip;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use opsloop_schemas::examples::{self, ExampleVisitor};
use opsloop_schemas::{AvroRecord, RecordKind, topics};

#[derive(Debug, Args)]
pub(crate) struct SchemasArgs {
    #[command(subcommand)]
    action: Option<SchemasAction>,
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// List every record kind with its schema id and topic (the default).
    List,
    /// Print one schema's .avsc (by name, e.g. Alert or io.opsloop.ops.Alert).
    Show { kind: String },
    /// Write every .avsc into a directory.
    Export { dir: PathBuf },
    /// Print an example record of every kind as JSON lines.
    Examples,
    /// Encode every kind's example in every wire format, decode it, compare, and time it.
    Roundtrip {
        /// Encode/decode each record this many times to time the codecs.
        #[arg(long, default_value_t = 10_000)]
        iterations: u32,
    },
}

pub(crate) fn run(args: SchemasArgs) -> anyhow::Result<()> {
    match args.action.unwrap_or(SchemasAction::List) {
        SchemasAction::List => {
            println!("{:<4} {:<36} {:<20} file", "id", "record", "topic");
            for spec in topics::CONTRACT {
                let kind = spec.kind;
                println!(
                    "{:<4} {:<36} {:<20} {}",
                    kind.builtin_schema_id(),
                    kind.full_name(),
                    spec.name,
                    kind.file_name()
                );
            }
        }
        SchemasAction::Show { kind } => {
            let kind = RecordKind::from_name(&kind).with_context(|| {
                format!("no record kind named {kind:?}; `opsloop schemas list` shows them")
            })?;
            print!("{}", kind.avsc());
        }
        SchemasAction::Export { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for &kind in RecordKind::ALL {
                let path = dir.join(kind.file_name());
                std::fs::write(&path, kind.avsc())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            eprintln!(
                "wrote {} schemas to {}",
                RecordKind::ALL.len(),
                dir.display()
            );
        }
        SchemasAction::Examples => {
            struct PrintJson(anyhow::Result<()>);
            impl ExampleVisitor for PrintJson {
                fn visit<T: AvroRecord + std::fmt::Debug + PartialEq>(&mut self, example: &T) {
                    if self.0.is_ok() {
                        self.0 = serde_json::to_string(example)
                            .map(|json| println!("{json}"))
                            .map_err(Into::into);
                    }
                }
            }
            let mut printer = PrintJson(Ok(()));
            examples::visit_all(&mut printer);
            printer.0?;
        }
        SchemasAction::Roundtrip { iterations } => roundtrip::run(iterations)?,
    }
    Ok(())
}
