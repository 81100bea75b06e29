//! The `opsloop` command line.

mod commands;
mod config;
mod signals;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// opsloop keeps the databases behind AI/ML products healthy: telemetry in through Kafka,
/// windowed SQL detectors, incidents, governed remediation.
#[derive(Debug, Parser)]
#[command(name = "opsloop", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded default: the simulated fleet through the engine, no broker needed.
    Demo(commands::demo::DemoArgs),
    /// Print, export or round-trip the Avro schemas of the topic contract.
    Schemas(commands::schemas::SchemasArgs),
    /// Show or create the contract's Kafka topics.
    Topics(commands::topics::TopicsArgs),
    /// Publish JSON-lines, CSV or Avro files onto a topic.
    Publish(commands::publish::PublishArgs),
    /// Scrape telemetry endpoints onto the telemetry topics.
    Collect(commands::collect::CollectArgs),
    /// Publish a synthetic fleet's telemetry with scheduled faults.
    Generate(commands::generate::GenerateArgs),
    /// Run the engine: Kafka sources, SQL detectors per window, alerts to ops.alerts,
    /// correlated incidents to ops.incidents.
    Run(commands::run::RunArgs),
    /// Query the ops topics (alerts, incidents, remediation, actions) and KPI views with SQL.
    Sql(commands::sql::SqlArgs),
    /// Act on ops.remediation under governance; every step to ops.actions and the audit log.
    Actuate(commands::actuate::ActuateArgs),
    /// Approve a gated action (a signed decision onto ops.approvals).
    Approve(commands::approve::DecisionArgs),
    /// Reject a gated action (a signed decision onto ops.approvals).
    Reject(commands::approve::DecisionArgs),
    /// Check the actuator's hash-chained audit log.
    Audit(commands::audit::AuditArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo prints its own live view: the log says only what goes wrong.
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("OPSLOOP_LOG")
                .unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => async_main(commands::demo::run(args)),
        Command::Schemas(args) => commands::schemas::run(args),
        Command::Topics(args) => async_main(commands::topics::run(args)),
        Command::Publish(args) => async_main(commands::publish::run(args)),
        Command::Collect(args) => async_main(commands::collect::run(args)),
        Command::Generate(args) => async_main(commands::generate::run(args)),
        Command::Run(args) => async_main(commands::run::run(args)),
        Command::Actuate(args) => async_main(commands::actuate::run(args)),
        Command::Approve(args) => async_main(commands::approve::run(
            args,
            opsloop_schemas::ops::Decision::Approve,
        )),
        Command::Reject(args) => async_main(commands::approve::run(
            args,
            opsloop_schemas::ops::Decision::Reject,
        )),
        Command::Audit(args) => commands::audit::run(args),
        Command::Sql(args) => async_main(commands::sql::run(args)),
    }
}

fn async_main(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(command)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// Every `opsloop ...` command line of the README's and the docs' shell blocks, its
    /// environment assignments and quotes taken off.
    fn documented_commands() -> Vec<(String, Vec<String>)> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut pages = vec![format!("{root}/README.md")];
        let docs = std::fs::read_dir(format!("{root}/docs")).expect("docs/");
        pages.extend(
            docs.filter_map(Result::ok)
                .map(|entry| entry.path().display().to_string())
                .filter(|path| path.ends_with(".md")),
        );
        let mut commands = Vec::new();
        for page in pages {
            let text = std::fs::read_to_string(&page).expect("page");
            let mut in_shell = false;
            let mut pending = String::new();
            for line in text.lines() {
                if line.starts_with("```") {
                    in_shell = line == "```sh";
                    continue;
                }
                if !in_shell {
                    continue;
                }
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    continue;
                }
                let whole = std::mem::take(&mut pending) + line;
                let line = whole.split(" #").next().unwrap_or_default();
                let words: Vec<String> = shell_words(line)
                    .into_iter()
                    .skip_while(|word| word.contains('=') && !word.starts_with('-'))
                    .collect();
                // `opsloop ARGS`, or `cargo run ... --bin opsloop -- ARGS`.
                let after = match words.first().map(String::as_str) {
                    Some("opsloop") => 1,
                    Some("cargo") => match words.iter().position(|w| w == "--") {
                        Some(at) => at + 1,
                        None => continue,
                    },
                    _ => continue,
                };
                let args: Vec<String> = std::iter::once("opsloop".to_owned())
                    .chain(words[after..].iter().cloned())
                    .collect();
                commands.push((format!("{page}: {line}"), args));
            }
        }
        commands
    }

    /// The words of a shell command line: split at blanks, quotes keep blanks and go.
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut started = false;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    started = true;
                }
                (None, c) if c.is_whitespace() => {
                    if started || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                (None, c) => word.push(c),
            }
        }
        if started || !word.is_empty() {
            words.push(word);
        }
        words
    }

    #[test]
    fn every_documented_command_parses() {
        let commands = documented_commands();
        assert!(commands.len() > 15, "{commands:#?}");
        for (place, args) in commands {
            if let Err(error) = Cli::try_parse_from(&args) {
                panic!("{place}\n{error}");
            }
        }
    }
}
