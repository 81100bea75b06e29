//! Layered TOML configuration: embedded defaults, then a file, then `OPSLOOP_*` environment
//! variables, each layer overriding the keys it sets.
//!
//! An environment variable names a key path with double underscores between levels and is
//! matched case-insensitively: `OPSLOOP_KAFKA__BROKERS=kafka-1:9092` sets `kafka.brokers`,
//! `OPSLOOP_ENGINE__WATERMARK__IDLE_TIMEOUT_MS=60000` sets `engine.watermark.idle_timeout_ms`.
//! Values are read as TOML (`5`, `true`, `[1, 2]`) when they parse as such, else as strings.
//! Variables without a double underscore (`OPSLOOP_LOG`, `OPSLOOP_BROKERS`) are not config keys.

use std::path::Path;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "OPSLOOP_";

/// Reads `defaults`, overlays `file` and the `OPSLOOP_*` variables of `env`, and deserializes
/// the result.
pub(crate) fn load<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let mut table: Table = defaults
        .parse()
        .context("the embedded default configuration is not valid TOML")?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let overlay: Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        merge(&mut table, overlay);
    }
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    overrides.sort();
    for (name, value) in overrides {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        set(&mut table, &path, env_value(&value))
            .with_context(|| format!("applying the environment variable {name}"))?;
    }
    T::deserialize(table).context("invalid configuration")
}

/// Overlays `overlay` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(overlay)) => merge(existing, overlay),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set(table: &mut Table, path: &[String], value: Value) -> anyhow::Result<()> {
    let Some((last, parents)) = path.split_last() else {
        bail!("the variable names no key");
    };
    let mut current = table;
    for (depth, key) in parents.iter().enumerate() {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(inner) => inner,
            _ => bail!("{} is not a table", path[..=depth].join(".")),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// An environment value as TOML when it is a valid TOML value, else as a string.
fn env_value(text: &str) -> Value {
    format!("value = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut parsed| parsed.remove("value"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Config {
        kafka: Kafka,
        engine: Engine,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Kafka {
        brokers: String,
        group: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Engine {
        checkpoint_interval_ms: u64,
        detectors: Vec<String>,
    }

    const DEFAULTS: &str = r#"
        [kafka]
        brokers = "127.0.0.1:9092"
        group = "opsloop"
        [engine]
        checkpoint_interval_ms = 10000
        detectors = ["sql"]
    "#;

    #[test]
    fn file_and_environment_override_the_defaults_key_by_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("opsloop.toml");
        std::fs::write(&file, "[kafka]\nbrokers = \"kafka-1:9092\"\n").expect("file");
        let env = [
            ("OPSLOOP_ENGINE__CHECKPOINT_INTERVAL_MS", "2500"),
            ("OPSLOOP_ENGINE__DETECTORS", r#"["a", "b"]"#),
            ("OPSLOOP_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let config: Config = load(DEFAULTS, Some(&file), env).expect("loads");
        assert_eq!(config.kafka.brokers, "kafka-1:9092", "the file wins");
        assert_eq!(
            config.kafka.group, "opsloop",
            "untouched keys keep defaults"
        );
        assert_eq!(
            config.engine.checkpoint_interval_ms, 2500,
            "the environment wins"
        );
        assert_eq!(config.engine.detectors, vec!["a", "b"]);

        let env = [(
            "OPSLOOP_KAFKA__GROUP".to_owned(),
            "not toml: a string".to_owned(),
        )];
        let config: Config = load(DEFAULTS, None, env).expect("loads");
        assert_eq!(config.kafka.group, "not toml: a string");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let env = [("OPSLOOP_KAFKA__BROKERS__HOST".to_owned(), "x".to_owned())];
        let error = load::<Config>(DEFAULTS, None, env).expect_err("brokers is not a table");
        assert!(
            format!("{error:#}").contains("kafka.brokers is not a table"),
            "{error:#}"
        );

        let env = [(
            "OPSLOOP_ENGINE__CHECKPOINT_INTERVAL_MS".to_owned(),
            "soon".to_owned(),
        )];
        let error = load::<Config>(DEFAULTS, None, env).expect_err("not a number");
        assert!(
            format!("{error:#}").contains("invalid configuration"),
            "{error:#}"
        );

        let missing = Path::new("/nonexistent/opsloop.toml");
        let error = load::<Config>(DEFAULTS, Some(missing), []).expect_err("no file");
        assert!(
            format!("{error:#}").contains("/nonexistent/opsloop.toml"),
            "{error:#}"
        );
    }
}
