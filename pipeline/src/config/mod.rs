//! Loading configuration: embedded defaults (`default.toml` for `opsloop run`, `actuate.toml`
//! for `opsloop actuate`) overridden by a TOML file and `OPSLOOP_*` environment variables.

mod layers;

use std::path::Path;

use opsloop_correlator::DEFAULT_CORRELATOR_CONFIG;
use opsloop_runtime::config::RunConfig;

/// The embedded defaults, also printed by `opsloop run --print-default-config`.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// `opsloop run`'s configuration: the defaults, overridden by `file` and the process
/// environment, checked.
pub(crate) fn load_run(file: Option<&Path>) -> anyhow::Result<RunConfig> {
    let config: RunConfig = layers::load(&default_config_text(), file, std::env::vars())?;
    config.validate()?;
    Ok(config)
}

/// Any command's configuration: `defaults`, overridden by `file` and the process
/// environment (`OPSLOOP_<SECTION>__<KEY>`).
pub(crate) fn load_layered<T: serde::de::DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
) -> anyhow::Result<T> {
    layers::load(defaults, file, std::env::vars())
}

/// The whole default configuration: `default.toml` with the correlator's defaults as its
/// `[correlator]` section.
pub(crate) fn default_config_text() -> String {
    let mut correlator = toml::Table::new();
    // Both embedded files are tested to parse.
    if let Ok(defaults) = DEFAULT_CORRELATOR_CONFIG.parse::<toml::Table>() {
        correlator.insert("correlator".to_owned(), toml::Value::Table(defaults));
    }
    format!(
        "{DEFAULT_CONFIG}\n# The correlator (opsloop-correlator's default.toml documents each key).\n{}",
        toml::to_string(&correlator).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use opsloop_connectors::registry::SourceFormat;
    use opsloop_correlator::CorrelatorConfig;
    use opsloop_engine::time::WatermarkConfig;

    use super::*;

    #[test]
    fn the_embedded_defaults_load() {
        let config: RunConfig =
            layers::load(&default_config_text(), None, []).expect("the defaults are valid");
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[0].format, SourceFormat::MetricBatch);
        assert_eq!(config.sources[0].table, "db_metrics");
        assert_eq!(config.sources[1].format, SourceFormat::GpuSample);
        assert_eq!(config.sources[1].table, "gpu");
        assert_eq!(config.engine.watermark, WatermarkConfig::default());
        assert_eq!(config.alerts.topic, opsloop_schemas::topics::ALERTS);
        assert_eq!(config.incidents.topic, opsloop_schemas::topics::INCIDENTS);
        assert_eq!(config.deadletter.topic, opsloop_schemas::topics::DEADLETTER);
        assert_eq!(config.correlator, CorrelatorConfig::default());
        assert_eq!(config.predict, opsloop_predict::PredictorConfig::default());
        assert!(config.notifications.alertmanager.is_none());
    }

    #[test]
    fn kafka_properties_from_the_environment_are_text_as_written() {
        let env = [
            ("OPSLOOP_KAFKA__PROPERTIES__SASL_PASSWORD", "1e5"),
            ("OPSLOOP_KAFKA__PROPERTIES__LINGER_MS", "007"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let config: RunConfig = layers::load(&default_config_text(), None, env).expect("valid");
        let kafka = config.kafka.kafka_config();
        let property = |key: &str| kafka.properties.get(key).map(String::as_str);
        assert_eq!(property("sasl.password"), Some("1e5"));
        assert_eq!(property("linger.ms"), Some("007"));
    }

    #[test]
    fn notifications_and_correlator_settings_come_from_the_environment() {
        let env = [
            (
                "OPSLOOP_NOTIFICATIONS__ALERTMANAGER__URL".to_owned(),
                "http://alertmanager:9093".to_owned(),
            ),
            (
                "OPSLOOP_CORRELATOR__GROUP_WAIT".to_owned(),
                "10s".to_owned(),
            ),
        ];
        let config: RunConfig = layers::load(&default_config_text(), None, env).expect("valid");
        let alertmanager = config.notifications.alertmanager.expect("alertmanager");
        assert_eq!(alertmanager.url, "http://alertmanager:9093");
        assert_eq!(alertmanager.retries, 3);
        assert_eq!(
            config.correlator.group_wait,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(config.correlator.patterns.len(), 8);
    }

    #[test]
    fn a_source_whose_format_and_encoding_do_not_go_together_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("run.toml");
        let sources = |format: &str, encoding: &str| {
            format!(
                "[[sources]]\nname = \"logs\"\ntopic = \"otlp_logs\"\nformat = \"{format}\"\n\
                 encoding = \"{encoding}\"\ntable = \"logs\"\n"
            )
        };
        std::fs::write(&file, sources("otlp_logs", "confluent")).expect("write");
        let config: RunConfig =
            layers::load(&default_config_text(), Some(&file), []).expect("parses");
        let error = config.validate().expect_err("refused");
        assert_eq!(
            error.to_string(),
            "configuration: source logs: format otlp_logs comes in otlp_proto, otlp_json, not confluent"
        );
        std::fs::write(&file, sources("otlp_logs", "otlp_json")).expect("write");
        let config: RunConfig =
            layers::load(&default_config_text(), Some(&file), []).expect("parses");
        assert!(config.validate().is_ok());
        assert_eq!(
            config.sources.len(),
            1,
            "a file's sources replace the defaults'"
        );
    }

    #[test]
    fn a_bad_source_is_named_by_file_line_and_its_place_in_the_list() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "[[sources]]\nname = \"logs\"\ntopic = \"otlp_logs\"\nformat = \"otlp_log\"\n\
             encoding = \"otlp_json\"\ntable = \"logs\"\n",
        )
        .expect("write");
        let error = layers::load::<RunConfig>(&default_config_text(), Some(&file), [])
            .expect_err("no such format");
        let message = format!("{error:#}");
        assert!(
            message.starts_with(&format!(
                "invalid configuration: {}:4:10: sources[0].format: unknown variant `otlp_log`",
                file.display()
            )),
            "{message}"
        );
    }
}
