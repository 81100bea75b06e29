//! Errors a user meets, as the `opsloop` binary reports them: a detector that cannot alert, a
//! configuration value of the wrong type or under a misspelt key, a statement `opsloop sql`
//! will not run, a broker that is not there. Each must be said at once, with what to fix, and
//! where a broker is involved, without waiting on it: the broker address is a port nobody
//! listens on.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A broker address where nothing answers.
const NO_BROKER: &str = "127.0.0.1:1";

/// Runs `opsloop args` with `env`, killing it after `limit`; its output and how long it ran.
fn opsloop(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("opsloop starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).map(|_| text)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().expect("kill");
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let output = Output {
        status,
        stdout: out.join().expect("joined").expect("stdout"),
        stderr: err.join().expect("joined").expect("stderr"),
    };
    (output, elapsed)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Settings under which `opsloop run` finds everything it needs but a broker.
fn run_env<'a>(detectors: &'a str, checkpoints: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("OPSLOOP_KAFKA__BROKERS", NO_BROKER),
        ("OPSLOOP_ENGINE__DETECTORS_DIR", detectors),
        ("OPSLOOP_CHECKPOINT__DIR", checkpoints),
        ("OPSLOOP_METRICS__LISTEN", "127.0.0.1:0"),
        (
            "OPSLOOP_PREDICT__JOBS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../sql/forecast"),
        ),
    ]
}

#[test]
fn a_detector_without_entity_stops_run_at_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let detectors = dir.path().join("detectors");
    std::fs::create_dir(&detectors).expect("dir");
    let file = detectors.join("no_entity.sql");
    std::fs::write(
        &file,
        "SELECT count(*) AS samples FROM db_metrics GROUP BY tumble(interval '1 minute')",
    )
    .expect("write");
    let checkpoints = dir.path().join("checkpoints");
    let env = run_env(
        detectors.to_str().expect("utf-8"),
        checkpoints.to_str().expect("utf-8"),
    );
    let (output, elapsed) = opsloop(&["run"], &env, Duration::from_secs(60));
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "detector {}: the output has no entity column",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("AS entity"), "says how to fix it: {stderr}");
}

#[test]
fn a_config_value_of_the_wrong_type_or_under_an_unknown_key_is_named_by_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("opsloop.toml");
    let config_arg = config.to_str().expect("utf-8");
    let refused = |toml: &str| {
        std::fs::write(&config, toml).expect("write");
        let (output, _) = opsloop(
            &["run", "--config", config_arg],
            &[],
            Duration::from_secs(60),
        );
        assert!(!output.status.success());
        text(&output.stderr)
    };
    let stderr = refused("[kafka]\nbrokers = \"127.0.0.1:1\"\n\n[checkpoint]\nretain = \"many\"\n");
    assert!(
        stderr.contains(&format!(
            "invalid configuration: {config_arg}:5:10: checkpoint.retain: invalid type: string \
             \"many\", expected usize"
        )),
        "{stderr}"
    );
    let stderr = refused("[checkpoint]\nretian = 3\n");
    assert!(
        stderr.contains(&format!(
            "invalid configuration: {config_arg}:2:1: checkpoint.retian: unknown field `retian`"
        )),
        "{stderr}"
    );

    let (output, _) = opsloop(
        &["run"],
        &[("OPSLOOP_CHECKPOINT__RETAIN", "many")],
        Duration::from_secs(60),
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "invalid configuration: the environment variable OPSLOOP_CHECKPOINT__RETAIN: \
             checkpoint.retain: invalid type"
        ),
        "{stderr}"
    );
}

/// `opsloop sql QUERY` with a timeout that would show if it read any topic.
fn sql(query: &str) -> (Output, Duration) {
    let args = ["sql", "--brokers", NO_BROKER, "--timeout-s", "30", query];
    opsloop(&args, &[], Duration::from_secs(90))
}

#[test]
fn sql_refuses_a_statement_that_is_not_a_query_without_contacting_the_broker() {
    for statement in [
        "DROP TABLE alerts",
        "INSERT INTO alerts SELECT * FROM alerts",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (output, elapsed) = sql(statement);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{statement}: {stderr}");
        assert!(
            elapsed < Duration::from_secs(10),
            "{statement}: {elapsed:?}"
        );
        assert!(
            stderr.contains(&format!("{statement:?} is not a query"))
                && stderr.contains("opsloop sql only reads the ops topics"),
            "{stderr}"
        );
        assert!(!stderr.contains("reading the"), "no topic read: {stderr}");
    }
}

#[test]
fn sql_reports_a_syntax_error_or_an_unknown_column_before_reading_any_topic() {
    for (query, expected) in [
        ("SELEC * FROM alerts", "found: SELEC"),
        (
            "SELECT no_such_column FROM incidents_latest",
            "no_such_column",
        ),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ] {
        let (output, elapsed) = sql(query);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{query}: {stderr}");
        assert!(elapsed < Duration::from_secs(10), "{query}: {elapsed:?}");
        assert!(
            stderr.contains(&format!("the query {query:?} is invalid"))
                && stderr.contains(expected),
            "{stderr}"
        );
    }
}

#[test]
fn topics_create_gives_up_after_its_timeout_when_no_broker_answers() {
    let args = [
        "topics",
        "create",
        "--brokers",
        NO_BROKER,
        "--timeout-s",
        "5",
    ];
    let (output, elapsed) = opsloop(&args, &[], Duration::from_secs(90));
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    // The flag's 5 s, not librdkafka's 60 s socket timeout; generous for a loaded machine.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "no answer from the brokers {NO_BROKER} within 5 s"
        )),
        "{stderr}"
    );
}

#[test]
fn run_with_an_unreachable_broker_warns_once_not_at_every_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let detectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql");
    let checkpoints = dir.path().join("checkpoints");
    let mut env = run_env(
        detectors.to_str().expect("utf-8"),
        checkpoints.to_str().expect("utf-8"),
    );
    env.push(("OPSLOOP_LOG", "warn"));
    let (output, elapsed) = opsloop(&["run"], &env, Duration::from_secs(8));
    let stderr = text(&output.stderr);
    assert!(
        elapsed >= Duration::from_secs(8),
        "it keeps running: {stderr}"
    );
    let unreachable = stderr.matches("cannot reach the Kafka brokers").count();
    assert_eq!(unreachable, 1, "{stderr}");
    // Before: two consumer errors every 50 ms or so, ~39 warnings a second.
    let warnings = stderr.matches("WARN").count();
    assert!(
        warnings <= 3,
        "{warnings} warnings in {elapsed:?}:\n{stderr}"
    );
}
