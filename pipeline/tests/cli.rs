//! The `opsloop` binary as a user runs it.

use opsloop_schemas::{RecordKind, topics};
use opsloop_tests::{TestBroker, unique_name};
use std::process::{Command, Output};

fn opsloop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(args)
        .output()
        .expect("opsloop runs")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "opsloop failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn schemas_roundtrip_covers_every_record_kind() {
    let out = stdout_of(&opsloop(&["schemas", "roundtrip", "--iterations", "10"]));
    for &kind in RecordKind::ALL {
        assert!(out.contains(kind.name()), "demo shows {kind}");
    }
    assert!(out.contains("all records round-tripped unchanged in every format"));
}

#[test]
fn demo_runs_the_simulated_fleet_through_the_loop_and_closes_it_on_the_twin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = dir.path().join("demo.json");
    let out = stdout_of(&opsloop(&[
        "demo",
        "--tick-delay",
        "0s",
        "--report",
        report_path.to_str().expect("utf-8 path"),
    ]));
    let summary_of = |fault: &str| {
        out.lines()
            .find(|line| line.starts_with(fault))
            .unwrap_or_else(|| panic!("no summary line for {fault}:\n{out}"))
            .to_owned()
    };
    assert!(
        summary_of("latency_spike").contains("query_latency_spike (+"),
        "{out}"
    );
    assert!(
        summary_of("gpu_thermal").contains("gpu_thermal (+"),
        "{out}"
    );
    let exhausted = summary_of("connection_exhaustion");
    assert!(
        exhausted.contains("connection_saturation (+")
            && exhausted.contains("pg.terminate_idle_sessions")
            && exhausted.contains("VERIFIED"),
        "the loop closes on the twin: {out}"
    );
    assert!(out.contains("ALERT    query_latency_spike"), "{out}");
    assert!(out.contains("PLAN     pg.terminate_idle_sessions"), "{out}");
    assert!(
        out.contains("0 alerts and 0 incidents outside any fault"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("JSON");
    let faults = report["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 14);
    let exhausted = faults
        .iter()
        .find(|f| f["kind"] == "connection_exhaustion")
        .expect("the fault");
    assert_eq!(exhausted["outcome"], "VERIFIED");
    assert!(exhausted["recovered_s"].as_f64().expect("a recovery") > 0.0);
    for key in [
        "alerts_outside_faults",
        "incidents_outside_faults",
        "samples",
        "series",
        "state_bytes_per_series",
        "wall_s",
    ] {
        assert!(report[key].is_number(), "{key}: {report}");
    }
}

#[test]
fn schemas_export_writes_every_avsc() {
    let dir = tempfile::tempdir().expect("tempdir");
    stdout_of(&opsloop(&[
        "schemas",
        "export",
        dir.path().to_str().expect("utf-8 path"),
    ]));
    for &kind in RecordKind::ALL {
        let written = std::fs::read_to_string(dir.path().join(kind.file_name())).expect("file");
        assert_eq!(written, kind.avsc());
    }
    let shown = stdout_of(&opsloop(&["schemas", "show", "io.opsloop.ops.Incident"]));
    assert_eq!(shown, RecordKind::Incident.avsc());
    let unknown = opsloop(&["schemas", "show", "NoSuchRecord"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no record kind named"));
}

#[tokio::test]
async fn topics_create_makes_every_contract_topic_with_chosen_partitions() {
    let broker = TestBroker::start().await.expect("broker");
    let prefix = format!("{}.", unique_name("cli"));
    let args = [
        "topics",
        "create",
        "--brokers",
        broker.bootstrap(),
        "--prefix",
        &prefix,
        "--partitions",
        "2",
        "--topic-partitions",
        "ops.approvals=1",
    ];
    let first = stdout_of(&opsloop(&args));
    assert_eq!(
        first.matches("created").count(),
        topics::CONTRACT.len(),
        "{first}"
    );
    let again = stdout_of(&opsloop(&args));
    assert_eq!(
        again.matches("already existed").count(),
        topics::CONTRACT.len(),
        "{again}"
    );

    let mut partitions = Vec::new();
    for spec in topics::CONTRACT {
        let name = format!("{prefix}{}", spec.name);
        let count = broker.partition_count(&name).await.expect("metadata");
        partitions.push((spec.name, count));
    }
    for (name, count) in partitions {
        let expected = if name == topics::APPROVALS { 1 } else { 2 };
        assert_eq!(count, expected, "{name}");
    }
}

#[test]
fn topics_create_refuses_an_unknown_topic_override() {
    let out = opsloop(&[
        "topics",
        "create",
        "--brokers",
        "127.0.0.1:1",
        "--topic-partitions",
        "telemetry.nope=3",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a contract topic"));
}
