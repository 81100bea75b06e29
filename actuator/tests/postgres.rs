//! The actuator against a real PostgreSQL 15: each fault remediated and verified, a fix that
//! does not help rolled back, and the governance gates (allow-list, approvals, concurrency,
//! no second execution after a crash or by a second actuator, the planner's signature,
//! approvals bound to content, blockers ended and their victims left alone).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsloop_actions::{TemplateId, advised_index_name, seal};
use opsloop_actuator::audit::AuditLog;
use opsloop_actuator::{Actuator, ActuatorConfig, Handled, VerifyConfig, claims};
use opsloop_schemas::ops::{
    ActionOutcome, ActionStep, Approval, Decision, ParamValue, RemediationEvent,
};
use opsloop_tests::{
    ACCOUNTS, LockContention, ORDERS, TestPostgres, orders_lookups, remediation_event,
};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_postgres::Client;

const KEY: &str = "test approval key";
const PLANNER_KEY: &str = "test planner key";

/// An unsigned event on db-1; [`signed`] makes it the planner's.
fn unsigned(action_id: &str, template: &str, params: &[(&str, ParamValue)]) -> RemediationEvent {
    remediation_event(action_id, template, "db-1", params)
}

fn signed(event: RemediationEvent) -> RemediationEvent {
    seal::sign_event(PLANNER_KEY.as_bytes(), event)
}

fn event(action_id: &str, template: &str, params: &[(&str, ParamValue)]) -> RemediationEvent {
    signed(unsigned(action_id, template, params))
}

fn approval(event: &RemediationEvent, decision: Decision, approver: &str) -> Approval {
    seal::sign_approval(
        KEY.as_bytes(),
        Approval {
            action_id: event.action_id.clone(),
            decision,
            approver: approver.to_owned(),
            reason: String::new(),
            time_us: 1,
            signature: String::new(),
            action_digest: seal::digest(event),
        },
    )
}

fn name(value: &str) -> ParamValue {
    ParamValue::String(value.to_owned())
}

struct Setup {
    postgres: TestPostgres,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        Setup {
            postgres: TestPostgres::start().await.expect("postgres"),
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn config(&self) -> ActuatorConfig {
        ActuatorConfig {
            default_dsn: Some(self.postgres.connection_string()),
            approval_key: KEY.to_owned(),
            planner_key: PLANNER_KEY.to_owned(),
            audit_log: self.dir.path().join("audit.jsonl"),
            rate_per_s: 100.0,
            verify: VerifyConfig {
                // Past PostgreSQL 15's lazy statistics flush (see VerifyConfig::settle_ms).
                settle_ms: 2_000,
                window_ms: 1_500,
                min_improvement: 0.5,
                // No correlator here: the probe alone judges (one test feeds verdicts).
                symptom: false,
                ..VerifyConfig::default()
            },
            ..ActuatorConfig::default()
        }
    }

    fn actuator(
        &self,
        config: ActuatorConfig,
    ) -> (Arc<Actuator>, UnboundedReceiver<ActionOutcome>) {
        let (sender, receiver) = unbounded_channel();
        (
            Arc::new(Actuator::new(config, sender).expect("actuator")),
            receiver,
        )
    }

    async fn client(&self) -> Client {
        self.postgres.connect().await.expect("connect")
    }
}

fn drain(receiver: &mut UnboundedReceiver<ActionOutcome>) -> Vec<ActionOutcome> {
    let mut all = Vec::new();
    while let Ok(outcome) = receiver.try_recv() {
        all.push(outcome);
    }
    all
}

fn steps(outcomes: &[ActionOutcome], action: &str) -> Vec<ActionStep> {
    outcomes
        .iter()
        .filter(|o| o.action_id == action)
        .map(|o| o.step)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_remediated_and_verified() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, note text);
         INSERT INTO orders SELECT g, g % 1000, repeat('x', 50) FROM generate_series(1, 200000) g;
         CREATE INDEX orders_note_idx ON orders (note, id);
         DELETE FROM orders WHERE id % 10 <> 0;
         CREATE MATERIALIZED VIEW order_counts AS SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id;
         CREATE UNIQUE INDEX ON order_counts (customer_id);
         INSERT INTO orders SELECT g, 5000 + g, 'new' FROM generate_series(300000, 300100) g;",
    )
    .await
    .expect("fixtures");
    let runaway = setup.client().await;
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(120)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let (actuator, mut outcomes) = setup.actuator(setup.config());
    let started = Instant::now();
    // The runaway query first: REINDEX CONCURRENTLY waits for every older snapshot to end.
    let events = [
        event(
            "cancel",
            "pg.cancel_long_queries",
            &[("min_age_s", ParamValue::Long(1))],
        ),
        event(
            "reindex",
            "pg.reindex_concurrently",
            &[("index", name("orders_note_idx"))],
        ),
        event(
            "refresh",
            "pg.refresh_materialized_view",
            &[("matview", name("order_counts"))],
        ),
    ];
    for event in events {
        actuator.handle(event).await.expect("handled");
    }
    let all = drain(&mut outcomes);
    for action in ["reindex", "cancel", "refresh"] {
        assert_eq!(
            steps(&all, action),
            [
                ActionStep::Planned,
                ActionStep::Executed,
                ActionStep::Verified
            ],
            "{action}: {all:#?}"
        );
    }
    let verified = |action: &str| {
        all.iter()
            .find(|o| o.action_id == action && o.step == ActionStep::Verified)
            .expect("verified")
    };
    let reindex = verified("reindex");
    assert!(
        reindex.after["index_bytes"] < reindex.before["index_bytes"] * 0.5,
        "{reindex:?}"
    );
    assert_eq!(verified("cancel").after["long_queries"], 0.0);
    assert_eq!(
        verified("refresh").before["stale_rows"],
        101.0,
        "the 101 new customers"
    );
    assert_eq!(verified("refresh").after["stale_rows"], 0.0);
    let sleep_result = sleeping.await.expect("task");
    assert!(sleep_result.is_err(), "the runaway query was cancelled");
    eprintln!(
        "three faults remediated and verified in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(opsloop_actuator::audit::verify(&setup.config().audit_log).expect("chain") >= 9);

    // Handling a finished action again does nothing.
    actuator
        .handle(event(
            "refresh",
            "pg.refresh_materialized_view",
            &[("matview", name("order_counts"))],
        ))
        .await
        .expect("handled");
    assert!(drain(&mut outcomes).is_empty());
}

async fn index_exists(client: &Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .expect("query")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_index_is_created_and_a_useless_one_rolled_back() {
    let setup = Setup::start().await;
    if !setup
        .postgres
        .preloaded_libraries()
        .iter()
        .any(|l| l == "pg_qualstats")
    {
        panic!("pg_qualstats is not installed; scripts/install-test-services.sh installs it");
    }
    let db = setup.client().await;
    db.batch_execute(ORDERS).await.expect("fixtures");
    let (actuator, mut outcomes) = setup.actuator(setup.config());

    // Lookups only: the advised index ends the sequential scans.
    let load = orders_lookups(setup.client().await, false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let create = event(
        "create",
        "pg.create_index_advised",
        &[("table", name("orders"))],
    );
    actuator.handle(create).await.expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "create"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Verified
        ],
        "{all:#?}"
    );
    let executed = all
        .iter()
        .find(|o| o.step == ActionStep::Executed)
        .expect("executed");
    assert!(
        executed.detail.contains("on (customer_id)"),
        "{}",
        executed.detail
    );
    assert!(
        executed.before["estimated_cost_reduction"] >= 0.3,
        "{executed:?}"
    );
    let created = advised_index_name("create");
    assert!(index_exists(&db, &created).await);
    load.abort();

    // Drop it again; now three scans in four are counts the index cannot help: the share of
    // sequential scans falls by a quarter, short of the 50% this test asks for: rolled back.
    db.batch_execute(&format!(
        "DROP INDEX {created}; SELECT pg_qualstats_reset(); SELECT pg_stat_reset();"
    ))
    .await
    .expect("reset");
    let load = orders_lookups(setup.client().await, true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let useless = event(
        "useless",
        "pg.create_index_advised",
        &[("table", name("orders"))],
    );
    actuator.handle(useless).await.expect("handled");
    load.abort();
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "useless"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::RolledBack
        ],
        "{all:#?}"
    );
    let rolled_back = all
        .iter()
        .find(|o| o.step == ActionStep::RolledBack)
        .expect("rolled back");
    assert!(
        rolled_back.detail.contains("DROP INDEX CONCURRENTLY"),
        "{}",
        rolled_back.detail
    );
    assert!(!index_exists(&db, &advised_index_name("useless")).await);
}

/// Tables `<prefix>0..<count>` of 100 rows each, never analyzed, their statistics visible to
/// other sessions (PostgreSQL 15 flushes a session's lazily).
async fn tables_to_analyze(db: &Client, prefix: &str, count: usize) {
    let mut tables = String::new();
    for i in 0..count {
        tables.push_str(&format!(
            "CREATE TABLE {prefix}{i} (x int); INSERT INTO {prefix}{i} SELECT generate_series(1, 100);"
        ));
    }
    db.batch_execute(&tables).await.expect("tables");
    db.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .expect("flush");
    db.batch_execute("SELECT 1").await.expect("flush");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_gates_hold() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    tables_to_analyze(&db, "t", 6).await;

    // Not on the allow-list: skipped, never run.
    let mut config = setup.config();
    config.allow = vec![TemplateId::PgAnalyze, TemplateId::PgCancelLongQueries];
    let (actuator, mut outcomes) = setup.actuator(config.clone());
    actuator
        .handle(event("vacuum", "pg.vacuum", &[("table", name("t0"))]))
        .await
        .expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(steps(&all, "vacuum"), [ActionStep::Skipped]);
    assert!(all[0].detail.contains("allow-list"), "{}", all[0].detail);

    // Six ANALYZEs on six locked tables: five run (and wait on their locks), the sixth waits
    // for a slot.
    let locker = setup.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE t0, t1, t2, t3, t4, t5 IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locks");
    let mut running = Vec::new();
    for i in 0..6 {
        let actuator = Arc::clone(&actuator);
        running.push(tokio::spawn(async move {
            actuator
                .handle(event(
                    &format!("analyze{i}"),
                    "pg.analyze",
                    &[("table", name(&format!("t{i}")))],
                ))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(actuator.running(), 5, "five slots taken");
    let waiting: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opsloop-actuator' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .expect("activity")
        .get(0);
    assert_eq!(
        waiting, 5,
        "five operations in the database, the sixth not started"
    );
    locker.batch_execute("COMMIT").await.expect("unlock");
    for task in running {
        task.await.expect("task").expect("handled");
    }
    let all = drain(&mut outcomes);
    for i in 0..6 {
        assert_eq!(
            steps(&all, &format!("analyze{i}")).last(),
            Some(&ActionStep::Verified),
            "{all:#?}"
        );
    }

    // A gated action: a forged approval changes nothing, a signed one runs it.
    let runaway = setup.client().await;
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(120)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut gated = unsigned(
        "gated",
        "pg.cancel_long_queries",
        &[("min_age_s", ParamValue::Long(1))],
    );
    gated.approval_required = true;
    let gated = signed(gated);
    actuator.handle(gated.clone()).await.expect("handled");
    let unsigned_approval = Approval {
        signature: String::new(),
        ..approval(&gated, Decision::Approve, "mallory")
    };
    let forged = seal::sign_approval(b"a guessed key", unsigned_approval.clone());
    for approval in [&unsigned_approval, &forged] {
        assert!(matches!(
            actuator.decide(approval).await.expect("decide"),
            opsloop_actuator::DecisionOutcome::Refused(refusal) if refusal.code() == "forged_approval"
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        actuator.steps("gated"),
        [ActionStep::Planned],
        "nothing ran without a valid approval"
    );
    assert!(!sleeping.is_finished(), "the runaway query still runs");
    let approved = approval(&gated, Decision::Approve, "alice");
    assert_eq!(
        actuator.decide(&approved).await.expect("decide"),
        opsloop_actuator::DecisionOutcome::Applied
    );
    assert_eq!(
        actuator.steps("gated"),
        [
            ActionStep::Planned,
            ActionStep::Approved,
            ActionStep::Executed,
            ActionStep::Verified
        ]
    );
    let all = drain(&mut outcomes);
    let approval_step = all
        .iter()
        .find(|o| o.step == ActionStep::Approved)
        .expect("approved");
    assert!(!approval_step.automated, "a person stepped in");
    assert!(
        sleeping.await.expect("task").is_err(),
        "cancelled after approval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_execution_verifies_and_never_runs_the_action_again() {
    let setup = Setup::start().await;
    let runaway = setup.client().await;
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cancel = event(
        "crashed",
        "pg.cancel_long_queries",
        &[("min_age_s", ParamValue::Long(1))],
    );
    // What a process that died right after recording EXECUTED leaves behind.
    let config = setup.config();
    {
        let mut log = AuditLog::open(&config.audit_log).expect("log");
        for step in [ActionStep::Planned, ActionStep::Executed] {
            log.append(ActionOutcome {
                action_id: cancel.action_id.clone(),
                incident_id: cancel.incident_id.clone(),
                step,
                template: cancel.template.clone(),
                target: cancel.target.clone(),
                time_us: 1,
                detail: String::new(),
                automated: true,
                before: BTreeMap::from([("long_queries".to_owned(), 1.0)]),
                after: BTreeMap::new(),
                prev_hash: String::new(),
                hash: String::new(),
                params: cancel.params.clone(),
                digest: seal::digest(&cancel),
                attempt: 1,
            })
            .expect("append");
        }
    }
    let (actuator, mut outcomes) = setup.actuator(config.clone());
    actuator.handle(cancel).await.expect("handled");
    let all = drain(&mut outcomes);
    // Verified only: the query still runs, so no improvement and no rollback -> FAILED.
    assert_eq!(steps(&all, "crashed"), [ActionStep::Failed], "{all:#?}");
    assert!(
        !sleeping.is_finished(),
        "the cancel did not run a second time"
    );
    assert_eq!(
        opsloop_actuator::audit::verify(&config.audit_log).expect("chain"),
        3
    );
    sleeping.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_runs_first_and_a_failed_one_stops_the_rest() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    db.batch_execute(
        "CREATE TABLE c0 (x int); CREATE TABLE c1 (x int); CREATE TABLE c2 (x int);
         INSERT INTO c0 SELECT generate_series(1, 100); INSERT INTO c1 SELECT generate_series(1, 100);
         INSERT INTO c2 SELECT generate_series(1, 100);
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .expect("tables");
    db.batch_execute("SELECT 1").await.expect("flush");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let mut config = setup.config();
    // Target "broken" points at a port nobody listens on.
    config.postgres.insert(
        "broken".to_owned(),
        "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
    );
    let (actuator, mut outcomes) = setup.actuator(config);
    let on = |action: &str, incident: &str, target: &str, table: &str| {
        let mut event = unsigned(action, "pg.analyze", &[("table", name(table))]);
        event.incident_id = incident.to_owned();
        event.target = target.to_owned();
        signed(event)
    };

    // The canary on db-1 verifies; then db-2 and db-3 run.
    let first = tokio::spawn({
        let actuator = Arc::clone(&actuator);
        let event = on("good-1", "fleet-a", "db-1", "c0");
        async move { actuator.handle(event).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rest = Vec::new();
    for (action, target, table) in [("good-2", "db-2", "c1"), ("good-3", "db-3", "c2")] {
        let actuator = Arc::clone(&actuator);
        let event = on(action, "fleet-a", target, table);
        rest.push(tokio::spawn(async move { actuator.handle(event).await }));
    }
    first.await.expect("task").expect("canary");
    for task in rest {
        task.await.expect("task").expect("follower");
    }
    let all = drain(&mut outcomes);
    let executed: Vec<&str> = all
        .iter()
        .filter(|o| o.step == ActionStep::Executed)
        .map(|o| o.action_id.as_str())
        .collect();
    assert_eq!(
        executed.first(),
        Some(&"good-1"),
        "the canary went first: {executed:?}"
    );
    for action in ["good-1", "good-2", "good-3"] {
        assert_eq!(
            steps(&all, action).last(),
            Some(&ActionStep::Verified),
            "{action}: {all:#?}"
        );
    }

    // The canary on "broken" fails: the others are skipped, never executed.
    actuator
        .handle(on("bad-1", "fleet-b", "broken", "c0"))
        .await
        .expect("canary");
    for (action, target) in [("bad-2", "db-2"), ("bad-3", "db-3")] {
        actuator
            .handle(on(action, "fleet-b", target, "c1"))
            .await
            .expect("follower");
    }
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "bad-1"),
        [ActionStep::Planned, ActionStep::Failed],
        "{all:#?}"
    );
    for action in ["bad-2", "bad-3"] {
        assert_eq!(
            steps(&all, action),
            [ActionStep::Planned, ActionStep::Skipped]
        );
        let skipped = all
            .iter()
            .find(|o| o.action_id == action && o.step == ActionStep::Skipped)
            .expect("skipped");
        assert!(
            skipped.detail.contains("canary on broken failed"),
            "{}",
            skipped.detail
        );
    }
}

/// A session of `role` (trust auth) that stays open.
async fn session_as(setup: &Setup, role: &str) -> Client {
    let dsn = format!(
        "host=127.0.0.1 port={} user={role} dbname=postgres",
        setup.postgres.port()
    );
    let (client, connection) = opsloop_connectors::postgres::connect(&dsn)
        .await
        .expect("connect as role");
    tokio::spawn(connection);
    client
}

async fn sessions_of(db: &Client, role: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
        &[&role],
    )
    .await
    .expect("activity")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_signed_events_run_and_an_approval_runs_only_what_it_approved() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    db.batch_execute("CREATE ROLE app_a LOGIN; CREATE ROLE app_b LOGIN;")
        .await
        .expect("roles");
    let _a = session_as(&setup, "app_a").await;
    let _b = session_as(&setup, "app_b").await;
    let (actuator, mut outcomes) = setup.actuator(setup.config());
    let role = |role: &str| [("role", name(role))];

    // A hand-made event that says it needs no approval: unsigned, refused, nothing runs.
    let mut forged = unsigned("end-a", "pg.terminate_role_sessions", &role("app_a"));
    forged.approval_required = false;
    assert!(matches!(
        actuator.handle(forged.clone()).await.expect("handled"),
        Handled::Refused(refusal) if refusal.code() == "unsigned_event"
    ));
    // Signed by the planner, then altered: refused.
    let mut altered = signed(forged.clone());
    altered.params.insert("role".into(), name("app_b"));
    assert!(matches!(
        actuator.handle(altered).await.expect("handled"),
        Handled::Refused(refusal) if refusal.code() == "altered_event"
    ));
    assert!(actuator.steps("end-a").is_empty(), "refusals spend no id");

    // The planner's own event, even saying it needs no approval, waits for one: the catalog
    // says this template always does.
    let genuine = signed(forged);
    assert_eq!(
        actuator.handle(genuine.clone()).await.expect("handled"),
        Handled::AwaitingApproval
    );
    // The same id naming another role is refused, even signed.
    let swapped = event("end-a", "pg.terminate_role_sessions", &role("app_b"));
    assert!(matches!(
        actuator.handle(swapped.clone()).await.expect("handled"),
        Handled::Refused(refusal) if refusal.code() == "reused_action_id"
    ));
    // An approval of the swapped content does not run the waiting one.
    assert!(matches!(
        actuator
            .decide(&approval(&swapped, Decision::Approve, "alice"))
            .await
            .expect("decide"),
        opsloop_actuator::DecisionOutcome::Refused(refusal)
            if refusal.code() == "mismatched_approval"
    ));
    assert_eq!(sessions_of(&db, "app_a").await, 1);
    assert_eq!(sessions_of(&db, "app_b").await, 1);
    // The approval of what was planned ends app_a's session, and only it.
    assert_eq!(
        actuator
            .decide(&approval(&genuine, Decision::Approve, "alice"))
            .await
            .expect("decide"),
        opsloop_actuator::DecisionOutcome::Applied
    );
    assert_eq!(
        actuator.steps("end-a"),
        [
            ActionStep::Planned,
            ActionStep::Approved,
            ActionStep::Executed,
            ActionStep::Verified
        ]
    );
    assert_eq!(sessions_of(&db, "app_a").await, 0);
    assert_eq!(
        sessions_of(&db, "app_b").await,
        1,
        "the other role untouched"
    );
    let all = drain(&mut outcomes);
    let refused: Vec<&ActionOutcome> = all
        .iter()
        .filter(|o| o.step == ActionStep::Refused)
        .collect();
    assert_eq!(refused.len(), 4, "every refusal audited: {all:#?}");
    let planned = all
        .iter()
        .find(|o| o.step == ActionStep::Planned)
        .expect("planned");
    assert_eq!(
        planned.params["role"],
        name("app_a"),
        "entries carry parameters"
    );
    assert_eq!(planned.digest, seal::digest(&genuine));
    assert!(opsloop_actuator::audit::verify(&setup.config().audit_log).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_to_two_actuators_execute_once() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    db.batch_execute(
        "CREATE TABLE events (id bigint PRIMARY KEY, kind int);
         INSERT INTO events SELECT g, g % 10 FROM generate_series(1, 1000) g;
         CREATE MATERIALIZED VIEW event_counts AS SELECT kind, count(*) AS n FROM events GROUP BY kind;
         INSERT INTO events SELECT g, 10 + g % 5 FROM generate_series(1001, 2000) g;",
    )
    .await
    .expect("fixtures");
    let first_config = ActuatorConfig {
        instance: Some("actuator-1".to_owned()),
        ..setup.config()
    };
    let second_config = ActuatorConfig {
        instance: Some("actuator-2".to_owned()),
        audit_log: setup.dir.path().join("audit-2.jsonl"),
        ..setup.config()
    };
    let (first, mut first_outcomes) = setup.actuator(first_config);
    let (second, mut second_outcomes) = setup.actuator(second_config);
    let refresh = event(
        "refresh.1",
        "pg.refresh_materialized_view",
        &[("matview", name("event_counts"))],
    );
    // Two deliveries to each actuator at once.
    let mut deliveries = Vec::new();
    for actuator in [&first, &second, &first, &second] {
        let actuator = Arc::clone(actuator);
        let refresh = refresh.clone();
        deliveries.push(tokio::spawn(async move { actuator.handle(refresh).await }));
    }
    for delivery in deliveries {
        assert_eq!(
            delivery.await.expect("task").expect("handled"),
            Handled::Done
        );
    }
    let mut all = drain(&mut first_outcomes);
    all.extend(drain(&mut second_outcomes));
    let executed = steps(&all, "refresh.1")
        .iter()
        .filter(|s| **s == ActionStep::Executed)
        .count();
    assert_eq!(executed, 1, "{all:#?}");
    assert_eq!(
        steps(&all, "refresh.1")
            .iter()
            .filter(|s| **s == ActionStep::Verified)
            .count(),
        1
    );
    let skipped = all
        .iter()
        .find(|o| o.step == ActionStep::Skipped)
        .expect("the other actuator's verdict");
    assert!(
        skipped.detail.contains("already run by actuator-"),
        "{}",
        skipped.detail
    );
    let claims: i64 = db
        .query_one(
            "SELECT count(*) FROM opsloop.action_claims WHERE action_id = 'refresh.1' AND outcome = 'Verified'",
            &[],
        )
        .await
        .expect("claims")
        .get(0);
    assert_eq!(claims, 1);
    // A late redelivery, after a restart of either, runs nothing.
    drop(first);
    let (restarted, mut restarted_outcomes) = setup.actuator(ActuatorConfig {
        instance: Some("actuator-1".to_owned()),
        ..setup.config()
    });
    restarted.handle(refresh).await.expect("handled");
    assert!(drain(&mut restarted_outcomes).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_waits_for_the_holder_longer_than_a_statement_may_run() {
    let setup = Setup::start().await;
    let holder = setup.client().await;
    claims::lock(&holder, "held.1").await.expect("lock");
    let waiter = setup.client().await;
    waiter
        .batch_execute("SET statement_timeout = 300")
        .await
        .expect("timeout");
    let waiting = tokio::spawn(async move {
        let locked = claims::lock(&waiter, "held.1").await;
        (waiter, locked)
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        !waiting.is_finished(),
        "the duplicate waits while the holder works, past its statement timeout"
    );
    drop(holder);
    let (waiter, locked) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the lock passes on when its holder's session ends")
        .expect("task");
    locked.expect("locked");
    let timeout: String = waiter
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "300ms", "the session keeps its statement timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_action_that_errs_ends_failed_and_its_id_runs_nothing_else() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    tables_to_analyze(&db, "e", 2).await;
    // The settle wait outlasts the operation timeout: the action errs after its claim.
    let first_config = ActuatorConfig {
        instance: Some("actuator-1".to_owned()),
        operation_timeout_s: 1,
        ..setup.config()
    };
    let (first, mut first_outcomes) = setup.actuator(first_config);
    let analyze = |table: &str| event("analyze.1", "pg.analyze", &[("table", name(table))]);
    first.handle(analyze("e0")).await.expect("handled");
    let all = drain(&mut first_outcomes);
    assert_eq!(
        steps(&all, "analyze.1"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Failed
        ],
        "{all:#?}"
    );
    let outcome: Option<String> = db
        .query_one(
            "SELECT outcome FROM opsloop.action_claims WHERE action_id = 'analyze.1'",
            &[],
        )
        .await
        .expect("claim")
        .get(0);
    assert_eq!(outcome.as_deref(), Some("Failed"));

    // Other actuators, with audit logs of their own, learn of it from the claim alone.
    let other = |instance: &str| {
        setup.actuator(ActuatorConfig {
            instance: Some(instance.to_owned()),
            audit_log: setup.dir.path().join(format!("audit-{instance}.jsonl")),
            ..setup.config()
        })
    };
    // The same content: the failure stands, nothing runs again.
    let (second, mut second_outcomes) = other("actuator-2");
    second.handle(analyze("e0")).await.expect("handled");
    let all = drain(&mut second_outcomes);
    assert_eq!(
        steps(&all, "analyze.1"),
        [ActionStep::Planned, ActionStep::Skipped],
        "{all:#?}"
    );
    assert!(all[1].detail.contains("ended Failed"), "{}", all[1].detail);
    // The same id for other content: refused.
    let (third, mut third_outcomes) = other("actuator-3");
    third.handle(analyze("e1")).await.expect("handled");
    let all = drain(&mut third_outcomes);
    let refused = all
        .iter()
        .find(|o| o.step == ActionStep::Refused)
        .unwrap_or_else(|| panic!("refused: {all:#?}"));
    assert!(
        refused.detail.contains("already taken by other content"),
        "{}",
        refused.detail
    );
    assert!(!all.iter().any(|o| o.step == ActionStep::Executed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_blockers_are_terminated_and_their_victims_left_alone() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    db.batch_execute(ACCOUNTS).await.expect("fixtures");
    let LockContention {
        blockers: holders,
        victims,
    } = setup
        .postgres
        .lock_contention()
        .await
        .expect("lock contention");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (actuator, mut outcomes) = setup.actuator(setup.config());

    // Cancelling long queries would hit only the victims: there is nothing for it to do.
    actuator
        .handle(event(
            "cancel",
            "pg.cancel_long_queries",
            &[("min_age_s", ParamValue::Long(1))],
        ))
        .await
        .expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "cancel"),
        [ActionStep::Planned, ActionStep::Skipped],
        "{all:#?}"
    );
    assert!(
        victims.iter().all(|v| !v.is_finished()),
        "no victim cancelled"
    );

    actuator
        .handle(event(
            "blockers",
            "pg.terminate_blockers",
            &[("min_idle_s", ParamValue::Long(1))],
        ))
        .await
        .expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "blockers"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Verified
        ],
        "{all:#?}"
    );
    let verified = all
        .iter()
        .find(|o| o.step == ActionStep::Verified)
        .expect("verified");
    assert_eq!(verified.before["blocked_backends"], 4.0);
    assert_eq!(verified.before["idle_blockers"], 3.0);
    assert_eq!(verified.after["blocked_backends"], 0.0);
    for victim in victims {
        let updated = victim
            .await
            .expect("task")
            .expect("the victim's update went through");
        assert_eq!(updated, 1);
    }
    for holder in holders {
        assert!(
            holder.batch_execute("COMMIT").await.is_err(),
            "the blocker was ended"
        );
    }
    let balances: i64 = db
        .query_one("SELECT sum(balance)::int8 FROM accounts", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(
        balances,
        300 - 4,
        "the victims' work done, the blockers' rolled back"
    );
}

fn verdict(
    event: &RemediationEvent,
    recovered_us: Option<i64>,
    recurred_us: Option<i64>,
) -> opsloop_schemas::ops::Incident {
    opsloop_schemas::ops::Incident {
        version: 3,
        state: opsloop_schemas::ops::IncidentState::Acknowledged,
        action_id: Some(event.action_id.clone()),
        recovered_us,
        recurred_us,
        ..opsloop_schemas::ops::Incident::new(
            event.incident_id.clone(),
            event.target.clone(),
            "standalone",
            "cache_stale",
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_clear_symptom_verifies() {
    let setup = Setup::start().await;
    let db = setup.client().await;
    tables_to_analyze(&db, "s", 3).await;
    let mut config = setup.config();
    config.verify.symptom = true;
    config.verify.symptom_timeout_s = 20;
    let (actuator, mut outcomes) = setup.actuator(config);
    let analyze = |i: usize| {
        event(
            &format!("analyze-s{i}"),
            "pg.analyze",
            &[("table", name(&format!("s{i}")))],
        )
    };

    // The alerts stay clear: VERIFIED. They come back: no rollback for ANALYZE, FAILED.
    for (i, recovered, recurred, expected) in [
        (0, Some(5), None, ActionStep::Verified),
        (1, None, Some(7), ActionStep::Failed),
    ] {
        let event = analyze(i);
        let running = tokio::spawn({
            let actuator = Arc::clone(&actuator);
            let event = event.clone();
            async move { actuator.handle(event).await }
        });
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!running.is_finished(), "waits for the verdict");
        actuator.observe_incident(&verdict(&event, recovered, recurred));
        running.await.expect("task").expect("handled");
        let all = drain(&mut outcomes);
        assert_eq!(
            steps(&all, &event.action_id).last(),
            Some(&expected),
            "{all:#?}"
        );
    }
    // No verdict within the timeout: not verified.
    let mut config = setup.config();
    config.verify.symptom = true;
    config.verify.symptom_timeout_s = 1;
    config.audit_log = setup.dir.path().join("audit-timeout.jsonl");
    let (impatient, mut outcomes) = setup.actuator(config);
    impatient.handle(analyze(2)).await.expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "analyze-s2").last(),
        Some(&ActionStep::Failed),
        "{all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_runs_over_verify_full_tls_and_a_server_the_ca_did_not_sign_fails_it() {
    let setup = Setup {
        postgres: TestPostgres::start_tls().await.expect("TLS postgres"),
        dir: tempfile::tempdir().expect("dir"),
    };
    let tls = setup.postgres.tls().expect("certificates").clone();
    let runaway = setup.client().await;
    let sleeping = tokio::spawn(async move { runaway.batch_execute("SELECT pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The CA of another deployment: the actuator must not act on this server.
    let mut config = setup.config();
    config.default_dsn = Some(format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        setup.postgres.port(),
        tls.other_ca_cert().display()
    ));
    let (actuator, mut outcomes) = setup.actuator(config);
    let refused = event(
        "cancel-wrong-ca",
        "pg.cancel_long_queries",
        &[("min_age_s", ParamValue::Long(1))],
    );
    actuator.handle(refused).await.expect("handled");
    let all = drain(&mut outcomes);
    let failed = all
        .iter()
        .find(|o| o.action_id == "cancel-wrong-ca" && o.step == ActionStep::Failed)
        .unwrap_or_else(|| panic!("failed: {all:#?}"));
    assert!(
        failed.detail.contains("not signed by a CA in")
            && failed.detail.contains("other-ca.crt")
            && !all.iter().any(|o| o.step == ActionStep::Executed),
        "{all:#?}"
    );
    assert!(!sleeping.is_finished(), "nothing ran");

    // The right CA: verify-full, then the usual life of the action.
    let mut config = setup.config();
    config.audit_log = setup.dir.path().join("audit-tls.jsonl");
    config.default_dsn = setup.postgres.tls_connection_string();
    let (actuator, mut outcomes) = setup.actuator(config);
    let cancel = event(
        "cancel-over-tls",
        "pg.cancel_long_queries",
        &[("min_age_s", ParamValue::Long(1))],
    );
    actuator.handle(cancel).await.expect("handled");
    let all = drain(&mut outcomes);
    assert_eq!(
        steps(&all, "cancel-over-tls"),
        [
            ActionStep::Planned,
            ActionStep::Executed,
            ActionStep::Verified
        ],
        "{all:#?}"
    );
    assert!(
        sleeping.await.expect("task").is_err(),
        "the runaway query was cancelled"
    );
    // Every session the actuator opened (its claim table among them) went over TLS.
    let db = setup.client().await;
    let plaintext: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.backend_type = 'client backend' AND NOT s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(plaintext, 0);
}
