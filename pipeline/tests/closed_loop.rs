//! The closed loop on a real PostgreSQL 15 and the real broker, at the shipped defaults but for
//! the topics (collection every 5 s, event time, grouping, verification): `opsloop collect
//! postgres` publishes the database's statistics, `opsloop run` detects (the repository's
//! `sql/`), correlates and plans, `opsloop actuate` acts under governance and verifies by the
//! probe and by the incident's alerts staying clear. Faults injected — a runaway query holding
//! a lock; three sessions idle in a transaction holding row locks four others wait for; then
//! together a dropped index that turns a hot lookup into sequential scans, a bloated index and
//! a stale materialized view; then the view going stale again — and each must end VERIFIED on
//! `ops.actions`: the blockers ended and their victims done, the stale view refreshed a second
//! time, nothing executed outside the allow-list or twice. Prints the fault-to-verified-recovery
//! time per fault, the operation success rate and the manual intervention rate.

#[path = "support/actuate.rs"]
mod actuate_support;
#[path = "support/closed_loop.rs"]
mod loop_support;

use std::collections::BTreeMap;
use std::time::Duration;

use loop_support::{
    LoopSetup, TopicReader, dump_logs, now_us, spawn, spawn_collector, write_configs,
};
use opsloop_actions::{Executor, TemplateId};
use opsloop_schemas::ops::{ActionOutcome, ActionStep};
use opsloop_tests::{LockContention, orders_lookups, unique_name};

/// Detection (30 s windows), the group's first wait (30 s), the action, and the windows after
/// it that verification waits for.
const WAIT_PER_FAULT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_a_real_postgres_are_detected_remediated_verified_and_audited() {
    let LoopSetup {
        postgres,
        broker,
        topics,
        dir,
        db,
    } = LoopSetup::start().await;
    let dsn = postgres.connection_string();
    let (run_config, actuate_config) =
        write_configs(&broker, &topics, dir.path(), &unique_name("loop"), &dsn);
    let logs = dir.path();
    let _collector = spawn_collector(&broker, &topics, &dsn, "pg-main", &logs.join("collect.log"));
    let _engine = spawn(
        &["run", "--config", run_config.to_str().expect("path")],
        &logs.join("run.log"),
    );
    let _actuator = spawn(
        &[
            "actuate",
            "--config",
            actuate_config.to_str().expect("path"),
        ],
        &logs.join("actuate.log"),
    );
    let load = orders_lookups(postgres.connect().await.expect("connect"), false);
    // Let the collector see the healthy state (and the view's refresh point) first.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut outcomes = TopicReader::<ActionOutcome>::new(&broker, topics.get("actions"));
    let mut recovery: BTreeMap<&str, f64> = BTreeMap::new();
    let dump_logs = || dump_logs(logs, &["collect.log", "run.log", "actuate.log"]);

    // 1. A runaway query holding a lock on jobs.
    let runaway = postgres.connect().await.expect("connect");
    let injected = now_us();
    let holding = tokio::spawn(async move {
        runaway
            .batch_execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(600)")
            .await
    });
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT, |o| {
            o.step == ActionStep::Verified && o.template.ends_with("_long_queries")
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the runaway query is cancelled and verified");
    recovery.insert("runaway query", (verified.time_us - injected) as f64 / 1e6);
    assert!(
        holding.await.expect("task").is_err(),
        "the runaway query was ended"
    );

    // 2. Three sessions idle in a transaction after updating a row each; four others wait.
    let injected = now_us();
    let LockContention {
        blockers: holders,
        victims,
    } = postgres.lock_contention().await.expect("lock contention");
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT, |o| {
            o.step == ActionStep::Verified && o.template == "pg.terminate_blockers"
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the idle blockers are ended and verified");
    recovery.insert(
        "idle-in-transaction blockers",
        (verified.time_us - injected) as f64 / 1e6,
    );
    for victim in victims {
        assert_eq!(
            victim
                .await
                .expect("task")
                .expect("the victims are not cancelled"),
            1,
            "each victim's update went through"
        );
    }
    for holder in holders {
        assert!(
            holder.batch_execute("COMMIT").await.is_err(),
            "a blocker was ended"
        );
    }
    assert!(
        !outcomes.seen.iter().any(|o| o.step == ActionStep::Executed
            && o.template.ends_with("_long_queries")
            && o.time_us > injected),
        "no victim was cancelled as a runaway query"
    );

    // 3-5 together: drop the hot index, bloat another, make the view stale.
    let injected = now_us();
    // One statement per call: VACUUM cannot run in the implicit transaction of a batch.
    for fault in [
        "DROP INDEX orders_customer_idx",
        "DELETE FROM items WHERE id % 10 <> 0",
        "VACUUM ANALYZE items",
        "INSERT INTO events SELECT g, g % 10 FROM generate_series(1001, 5000) g",
    ] {
        db.batch_execute(fault).await.expect("fault");
    }
    for (fault, template) in [
        ("dropped index", "pg.create_index_advised"),
        ("bloated index", "pg.reindex_concurrently"),
        ("stale materialized view", "pg.refresh_materialized_view"),
    ] {
        let verified = outcomes
            .wait_for(WAIT_PER_FAULT, |o| {
                o.step == ActionStep::Verified && o.template == template
            })
            .await;
        if verified.is_none() {
            dump_logs();
        }
        let verified = verified.unwrap_or_else(|| panic!("{fault}: {template} verified"));
        recovery.insert(fault, (verified.time_us - injected) as f64 / 1e6);
    }

    // 6. The view goes stale again: refreshed again, by another action.
    let first_refresh = outcomes
        .seen
        .iter()
        .find(|o| o.step == ActionStep::Verified && o.template == "pg.refresh_materialized_view")
        .map(|o| o.action_id.clone())
        .expect("the first refresh");
    let injected = now_us();
    db.batch_execute("INSERT INTO events SELECT g, g % 10 FROM generate_series(5001, 9000) g")
        .await
        .expect("stale again");
    let verified = outcomes
        .wait_for(WAIT_PER_FAULT * 2, |o| {
            o.step == ActionStep::Verified
                && o.template == "pg.refresh_materialized_view"
                && o.action_id != first_refresh
        })
        .await;
    if verified.is_none() {
        dump_logs();
    }
    let verified = verified.expect("the view stale again is refreshed again");
    recovery.insert(
        "stale view again",
        (verified.time_us - injected) as f64 / 1e6,
    );
    load.abort();
    outcomes.read_until_quiet(Duration::from_secs(5)).await;

    // Nothing outside the allow-list ran; the audit chain holds.
    let allowed: Vec<&str> = TemplateId::ALL
        .iter()
        .filter(|t| t.spec().executor == Executor::Postgres)
        .map(|t| t.as_str())
        .collect();
    let executed: Vec<&ActionOutcome> = outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Executed)
        .collect();
    assert!(
        executed
            .iter()
            .all(|o| allowed.contains(&o.template.as_str())),
        "{executed:#?}"
    );
    let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in &executed {
        *runs.entry(outcome.action_id.as_str()).or_default() += 1;
    }
    assert!(
        runs.values().all(|&n| n == 1),
        "an action ran twice: {runs:?}"
    );
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_opsloop"))
        .args(["audit", "verify", "--log"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .expect("audit verify");
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );

    let verified = outcomes
        .seen
        .iter()
        .filter(|o| o.step == ActionStep::Verified)
        .count();
    let manual = outcomes.seen.iter().filter(|o| !o.automated).count();
    eprintln!("fault -> verified recovery (s): {recovery:?}");
    eprintln!(
        "operations executed {}, verified {verified}: success rate {:.2}; manual steps {manual} of {} outcomes",
        executed.len(),
        verified as f64 / executed.len().max(1) as f64,
        outcomes.seen.len()
    );
}
