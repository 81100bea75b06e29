//! Layered TOML configuration: embedded defaults, then a file, then `OPSLOOP_*` environment
//! variables, each layer overriding the keys it sets.
//!
//! An environment variable names a key path with double underscores between levels and is
//! matched case-insensitively: `OPSLOOP_KAFKA__BROKERS=kafka-1:9092` sets `kafka.brokers`,
//! `OPSLOOP_ENGINE__WATERMARK__IDLE_TIMEOUT_MS=60000` sets `engine.watermark.idle_timeout_ms`.
//! Values are read as TOML (`5`, `true`, `[1, 2]`) when they parse as such, else as strings;
//! librdkafka properties (`OPSLOOP_KAFKA__PROPERTIES__<KEY>`) are always strings as written.
//! Variables without a double underscore (`OPSLOOP_LOG`, `OPSLOOP_BROKERS`) are not config keys.
//!
//! An error says where the bad value came from: `FILE:LINE:COLUMN` and the key for the file
//! (and for the embedded defaults), the variable for the environment, e.g.
//! `invalid configuration: opsloop.toml:3:25: engine.watermark.idle_timeout_ms: invalid type:
//! string "soon", expected u64`. To know it, the layers are laid end to end in one text — the
//! defaults, the file, one `NAME=value` line per variable — and each is parsed into toml's
//! spanned tree with its spans moved to where it lies in that text; the merged tree is
//! deserialized with its spans, and an error's span leads back to its layer, line and key.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context;
use opsloop_runtime::config::KAFKA_PROPERTY_ENV_PREFIX;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};

/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "OPSLOOP_";

/// Reads `defaults`, overlays `file` and the `OPSLOOP_*` variables of `env`, and deserializes
/// the result.
pub(crate) fn load<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T> {
    let file = file
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| (path.to_path_buf(), text))
                .with_context(|| format!("reading the configuration file {}", path.display()))
        })
        .transpose()?;
    let mut variables: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name.contains("__"))
        .collect();
    variables.sort();
    let layers = Layers::new(defaults, file, variables);
    let root = layers.merged()?;
    let whole = 0..layers.text.len();
    T::deserialize(Deserializer::from(Spanned::new(whole, root.clone())))
        .map_err(|error| layers.error(error.span(), error.message(), Some(&root)))
}

/// Where a stretch of the layers' text came from.
enum Origin {
    Defaults,
    File(PathBuf),
    /// The line `NAME=value` of one variable.
    Variable(String),
}

/// The layers laid end to end in one text, each with the stretch it occupies.
struct Layers {
    text: String,
    layers: Vec<(Origin, Range<usize>)>,
}

impl Layers {
    fn new(
        defaults: &str,
        file: Option<(PathBuf, String)>,
        variables: Vec<(String, String)>,
    ) -> Self {
        let mut layers = Layers {
            text: String::new(),
            layers: Vec::new(),
        };
        layers.push(Origin::Defaults, defaults);
        if let Some((path, text)) = file {
            layers.push(Origin::File(path), &text);
        }
        for (name, value) in variables {
            // The line is `NAME=value`: the value's stretch starts after the `=`.
            layers.push(Origin::Variable(name.clone()), &format!("{name}={value}"));
        }
        layers
    }

    fn push(&mut self, origin: Origin, text: &str) {
        let start = self.text.len();
        self.text.push_str(text);
        self.layers.push((origin, start..self.text.len()));
        self.text.push('\n');
    }

    /// Every layer parsed and merged over the ones before it.
    fn merged(&self) -> anyhow::Result<DeTable<'_>> {
        let mut root = DeTable::new();
        for (origin, range) in &self.layers {
            let text = &self.text[range.clone()];
            match origin {
                Origin::Defaults | Origin::File(_) => {
                    let table = DeTable::parse(text).map_err(|error| {
                        let span = error.span().map(|span| shift(span, range.start));
                        self.error(span, error.message(), None)
                    })?;
                    merge(&mut root, shifted_table(table.into_inner(), range.start));
                }
                Origin::Variable(name) => {
                    let value_start = range.start + name.len() + 1;
                    let value = &self.text[value_start..range.end];
                    // A librdkafka property is text as written (a password `1e5`).
                    let as_toml = !name
                        .to_ascii_uppercase()
                        .starts_with(KAFKA_PROPERTY_ENV_PREFIX);
                    let value = as_toml
                        .then(|| DeValue::parse(value).ok())
                        .flatten()
                        .map(|parsed| shifted(parsed, value_start))
                        .unwrap_or_else(|| {
                            Spanned::new(
                                value_start..range.end,
                                DeValue::String(Cow::Borrowed(value)),
                            )
                        });
                    let path: Vec<String> = name[ENV_PREFIX.len()..]
                        .split("__")
                        .map(str::to_ascii_lowercase)
                        .collect();
                    let name_span = range.start..value_start - 1;
                    set(&mut root, &path, name_span, value)
                        .map_err(|message| self.error(Some(range.clone()), &message, None))?;
                }
            }
        }
        Ok(root)
    }

    /// An error about the text at `span`: where it lies (file, line and column, or variable),
    /// the key of `root` there, and `message`.
    fn error(
        &self,
        span: Option<Range<usize>>,
        message: &str,
        root: Option<&DeTable<'_>>,
    ) -> anyhow::Error {
        let Some(at) = span.map(|span| span.start) else {
            return anyhow::anyhow!("invalid configuration: {message}");
        };
        let Some((origin, range)) = self
            .layers
            .iter()
            .find(|(_, range)| range.start <= at && at <= range.end)
        else {
            return anyhow::anyhow!("invalid configuration: {message}");
        };
        let line_column = || {
            let before = self.text.get(range.start..at).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let line_start = before.rsplit('\n').next().unwrap_or_default();
            format!("{line}:{}", line_start.chars().count() + 1)
        };
        let place = match origin {
            Origin::Variable(name) => format!("the environment variable {name}"),
            Origin::File(path) => format!("{}:{}", path.display(), line_column()),
            Origin::Defaults => format!("the embedded defaults:{}", line_column()),
        };
        let key = root
            .and_then(|root| key_at(root, at))
            .map(|key| format!(" {key}:"))
            .unwrap_or_default();
        anyhow::anyhow!("invalid configuration: {place}:{key} {message}")
    }
}

fn shift(span: Range<usize>, by: usize) -> Range<usize> {
    span.start + by..span.end + by
}

/// `table` with every span in it moved `by` bytes on.
fn shifted_table(table: DeTable<'_>, by: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(key, value)| {
            let key_span = shift(key.span(), by);
            (Spanned::new(key_span, key.into_inner()), shifted(value, by))
        })
        .collect()
}

/// `value` with every span in it moved `by` bytes on.
fn shifted(value: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let span = shift(value.span(), by);
    let value = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(shifted_table(table, by)),
        DeValue::Array(mut items) => {
            for item in items.iter_mut() {
                let placeholder = Spanned::new(0..0, DeValue::Boolean(false));
                *item = shifted(std::mem::replace(item, placeholder), by);
            }
            DeValue::Array(items)
        }
        other => other,
    };
    Spanned::new(span, value)
}

/// Overlays `overlay` onto `base`: tables merge key by key, anything else replaces (key and
/// value both, so spans point at the layer that set them).
fn merge<'i>(base: &mut DeTable<'i>, overlay: DeTable<'i>) {
    for (key, value) in overlay {
        let span = value.span();
        match (
            base.get_mut(key.get_ref().as_ref()).map(Spanned::get_mut),
            value.into_inner(),
        ) {
            (Some(DeValue::Table(existing)), DeValue::Table(overlay)) => merge(existing, overlay),
            (_, value) => {
                base.remove(key.get_ref().as_ref());
                base.insert(key, Spanned::new(span, value));
            }
        }
    }
}

/// Sets the key at `path` to `value`, creating the tables above it; `name` is the span of the
/// variable's name, which new keys and tables point at.
fn set<'i>(
    table: &mut DeTable<'i>,
    path: &[String],
    name: Range<usize>,
    value: Spanned<DeValue<'i>>,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("the variable names no key".to_owned());
    };
    let key = |key: &String| Spanned::new(name.clone(), Cow::Owned(key.clone()));
    let mut current = table;
    for (depth, parent) in parents.iter().enumerate() {
        let entry = current
            .entry(key(parent))
            .or_insert_with(|| Spanned::new(name.clone(), DeValue::Table(DeTable::new())));
        current = match entry.get_mut() {
            DeValue::Table(inner) => inner,
            _ => return Err(format!("{} is not a table", path[..=depth].join("."))),
        };
    }
    current.remove(last.as_str());
    current.insert(key(last), value);
    Ok(())
}

/// The key path (`engine.watermark.idle_timeout_ms`, `sources[1].format`) of the innermost key
/// or value of `table` at byte `at`.
fn key_at(table: &DeTable<'_>, at: usize) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = key.get_ref().to_string();
        if key.span().contains(&at) {
            return Some(name);
        }
        within(name, value, at)
    })
}

/// `path`, the path of `value`, extended by the key path inside it at `at`; `None` when `at`
/// is not in `value`.
fn within(path: String, value: &Spanned<DeValue<'_>>, at: usize) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => key_at(table, at).map(|key| format!("{path}.{key}")),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| within(format!("{path}[{index}]"), item, at)),
        _ => None,
    };
    inner.or_else(|| value.span().contains(&at).then_some(path))
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
    #[serde(deny_unknown_fields)]
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

        let variable = "OPSLOOP_ENGINE__CHECKPOINT_INTERVAL_MS";
        assert_eq!(
            format!("{error:#}"),
            format!(
                "invalid configuration: the environment variable {variable}: \
                 engine.checkpoint_interval_ms: invalid type: string \"soon\", expected u64"
            )
        );

        let missing = Path::new("/nonexistent/opsloop.toml");
        let error = load::<Config>(DEFAULTS, Some(missing), []).expect_err("no file");
        assert!(
            format!("{error:#}").contains("/nonexistent/opsloop.toml"),
            "{error:#}"
        );
    }

    /// The error of loading `DEFAULTS` under a file holding `text`, and the file's path.
    fn file_error(text: &str) -> (String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("opsloop.toml");
        std::fs::write(&file, text).expect("file");
        let error = load::<Config>(DEFAULTS, Some(&file), []).expect_err("refused");
        (format!("{error:#}"), file.display().to_string())
    }

    #[test]
    fn a_bad_value_in_the_file_is_named_by_file_line_column_and_key() {
        let (error, file) = file_error(
            "[kafka]\nbrokers = \"kafka-1:9092\"\n\n[engine]\ncheckpoint_interval_ms = \"soon\"\n",
        );
        assert_eq!(
            error,
            format!(
                "invalid configuration: {file}:5:26: engine.checkpoint_interval_ms: invalid \
                 type: string \"soon\", expected u64"
            )
        );

        let (error, file) = file_error("[kafka]\nbrokers = \"kafka-1:9092\"\nbrokrs = \"x\"\n");
        assert_eq!(
            error,
            format!(
                "invalid configuration: {file}:3:1: kafka.brokrs: unknown field `brokrs`, \
                 expected `brokers` or `group`"
            )
        );

        let (error, file) = file_error("[engine]\ndetectors = [\"sql\", 5]\n");
        assert!(
            error.starts_with(&format!(
                "invalid configuration: {file}:2:21: engine.detectors[1]: invalid type: integer"
            )),
            "{error}"
        );

        let (error, file) = file_error("[kafka\nbrokers = 1\n");
        assert!(
            error.starts_with(&format!("invalid configuration: {file}:1:")),
            "a syntax error has its place too: {error}"
        );
    }
}
