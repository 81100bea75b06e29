//! `PostgresCollector` against a real PostgreSQL: every fault the `sql/pg_*.sql` detectors look
//! for (sequential scans after an index is dropped, a bloated index, a long query holding a
//! lock, a materialized view behind its tables) shows in the collected metrics, and so do
//! connections, statements and a lost connection's recovery.
//!
//! Statistics counters reach the views only when a backend flushes them, so every workload
//! ends with `pg_stat_force_next_flush()` (PostgreSQL 15+) before the collector looks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsloop_connectors::Retry;
use opsloop_connectors::collect::postgres::{
    Collections, PostgresCollectError, PostgresCollector, PostgresCollectorConfig,
};
use opsloop_schemas::telemetry::MetricBatch;
use opsloop_tests::TestPostgres;

const SECOND_US: i64 = 1_000_000;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

async fn collector(postgres: &TestPostgres) -> PostgresCollector {
    PostgresCollector::connect(&PostgresCollectorConfig::new(postgres.connection_string()))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn collect(collector: &mut PostgresCollector, time_us: i64) -> MetricBatch {
    tokio::time::timeout(Duration::from_secs(5), collector.collect_once(time_us))
        .await
        .expect("a collection never waits on the workload's locks")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the sample `name` whose labels include `labels`, if exactly one matches.
fn value(batch: &MetricBatch, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = batch
        .samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
        })
        .map(|s| s.value)
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} twice: {matching:?}");
    matching.first().copied()
}

fn expect(batch: &MetricBatch, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(batch, name, labels).unwrap_or_else(|| {
        let names: std::collections::BTreeSet<&str> =
            batch.samples.iter().map(|s| s.name.as_str()).collect();
        panic!("no {name} {labels:?} in the batch; it has {names:?}")
    })
}

/// Returns once a session waits for another's lock (a loaded machine may take a while to get
/// there), or after five seconds.
async fn until_a_session_waits_for_a_lock(postgres: &TestPostgres) {
    let observer = postgres.connect().await.expect("connect");
    for _ in 0..50 {
        let waits: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if waits > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no session waited for a lock within 5 s");
}

async fn flush(client: &tokio_postgres::Client) {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .expect("flush statistics");
}

#[tokio::test]
async fn scans_of_maintenance_and_ddl_are_not_counted_as_the_workloads() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let client = postgres.connect().await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE events (id serial PRIMARY KEY, kind int);
             INSERT INTO events (kind) SELECT i % 7 FROM generate_series(1, 20000) i;",
        )
        .await
        .expect("schema");
    flush(&client).await;
    let table = [("table", "public.events")];
    let mut collector = collector(&postgres).await;
    let t0 = now_us();
    collect(&mut collector, t0).await;

    // A refresh that scans the table while it runs for about two seconds.
    client
        .batch_execute(
            "CREATE FUNCTION slowly(int) RETURNS int LANGUAGE sql AS
                 'SELECT $1 FROM pg_sleep(0.0001)';
             CREATE MATERIALIZED VIEW slow_counts AS
                 SELECT kind, count(*), max(slowly(id)) FILTER (WHERE id <= 1500) FROM events
                 GROUP BY kind WITH NO DATA;",
        )
        .await
        .expect("a slow view");
    let refresher = postgres.connect().await.expect("connect");
    let refresh = tokio::spawn(async move {
        refresher
            .batch_execute("REFRESH MATERIALIZED VIEW slow_counts")
            .await
            .expect("refresh");
        flush(&refresher).await;
    });
    let observer = postgres.connect().await.expect("connect");
    for _ in 0..50 {
        let running: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'REFRESH%' \
                 AND state = 'active'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if running > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = collect(&mut collector, t0 + 5 * SECOND_US).await;
    assert_eq!(expect(&during, "pg_maintenance_sessions", &[]), 1.0);
    assert!(value(&during, "pg_table_seq_scan_rate", &table).is_none());
    refresh.await.expect("refresh task");

    // The refresh's scan lands in the next interval, which it overlapped: still no rate.
    let after = collect(&mut collector, t0 + 10 * SECOND_US).await;
    assert_eq!(expect(&after, "pg_maintenance_sessions", &[]), 0.0);
    assert!(
        value(&after, "pg_table_seq_scan_rate", &table).is_none(),
        "the refresh's own scan is not the workload's"
    );

    // An interval without maintenance has its rates again.
    client
        .query_one("SELECT count(*) FROM events WHERE kind = 3", &[])
        .await
        .expect("scan");
    flush(&client).await;
    let clean = collect(&mut collector, t0 + 15 * SECOND_US).await;
    assert_eq!(expect(&clean, "pg_table_seq_scan_rate", &table), 0.2);
}

#[tokio::test]
async fn seq_scan_rate_rises_once_the_index_is_dropped() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let client = postgres.connect().await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, customer int, amount float8);
             INSERT INTO orders (customer, amount)
                 SELECT i % 1000, i FROM generate_series(1, 50000) i;
             CREATE INDEX orders_customer ON orders (customer);
             ANALYZE orders;",
        )
        .await
        .expect("schema");
    flush(&client).await;
    let table = [("table", "public.orders")];
    let index = [
        ("table", "public.orders"),
        ("index", "public.orders_customer"),
    ];
    let mut collector = collector(&postgres).await;
    let t0 = now_us();
    let first = collect(&mut collector, t0).await;
    assert_eq!(first.source, "postgres");
    assert_eq!(
        first.entity,
        format!("127.0.0.1:{}/postgres", postgres.port())
    );
    assert!(first.samples.iter().all(|s| s.time_us == t0));
    assert_eq!(expect(&first, "pg_table_live_tuples", &table), 50_000.0);
    assert!(
        value(&first, "pg_table_seq_scan_rate", &table).is_none(),
        "no rate before a second collection"
    );
    let seq_scans_at_start = expect(&first, "pg_table_seq_scan_total", &table);

    let lookup = "SELECT count(*) FROM orders WHERE customer = $1";
    for customer in 0..20 {
        let row = client.query_one(lookup, &[&customer]).await.expect("query");
        assert_eq!(row.get::<_, i64>(0), 50);
    }
    flush(&client).await;
    let indexed = collect(&mut collector, t0 + 5 * SECOND_US).await;
    assert_eq!(expect(&indexed, "pg_table_seq_scan_rate", &table), 0.0);
    assert_eq!(
        expect(&indexed, "pg_table_seq_scan_total", &table),
        seq_scans_at_start
    );
    assert!(expect(&indexed, "pg_index_scan_total", &index) >= 20.0);
    assert!(expect(&indexed, "pg_table_idx_scan_total", &table) >= 20.0);

    client
        .batch_execute("DROP INDEX orders_customer")
        .await
        .expect("drop");
    for customer in 0..20 {
        client.query_one(lookup, &[&customer]).await.expect("query");
    }
    flush(&client).await;
    let scanned = collect(&mut collector, t0 + 10 * SECOND_US).await;
    // 20 scans of 50,000 rows in 5 s of the collector's clock.
    assert_eq!(expect(&scanned, "pg_table_seq_scan_rate", &table), 4.0);
    assert_eq!(
        expect(&scanned, "pg_table_seq_tup_read_rate", &table),
        200_000.0
    );
    assert_eq!(
        expect(&scanned, "pg_table_seq_scan_total", &table) - seq_scans_at_start,
        20.0
    );
    assert!(
        value(&scanned, "pg_index_scan_total", &index).is_none(),
        "a dropped index is no longer reported"
    );
}

#[tokio::test]
async fn a_bloated_index_has_a_higher_bloat_ratio_than_a_fresh_one() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let client = postgres.connect().await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE events (id int, payload text);
             INSERT INTO events SELECT i, 'event ' || i FROM generate_series(1, 100000) i;
             CREATE INDEX events_bloated ON events (id);
             DELETE FROM events WHERE id % 20 <> 0;",
        )
        .await
        .expect("schema");
    // VACUUM leaves the old index's pages (a twentieth full) and counts its entries.
    client
        .batch_execute("VACUUM ANALYZE events")
        .await
        .expect("vacuum");
    client
        .batch_execute("CREATE INDEX events_fresh ON events (id)")
        .await
        .expect("fresh index");
    // A unique index built concurrently over duplicates fails and stays, invalid.
    let failed = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY events_broken ON events ((id % 2))")
        .await;
    assert!(failed.is_err(), "duplicates fail the unique index");
    flush(&client).await;
    let mut collector = collector(&postgres).await;
    let batch = collect(&mut collector, now_us()).await;
    let labels = |index: &'static str| [("table", "public.events"), ("index", index)];
    let bloated = expect(
        &batch,
        "pg_index_bloat_ratio",
        &labels("public.events_bloated"),
    );
    let fresh = expect(
        &batch,
        "pg_index_bloat_ratio",
        &labels("public.events_fresh"),
    );
    assert!((0.8..1.3).contains(&fresh), "fresh index ratio {fresh}");
    // A twentieth of the entries left in the old pages.
    assert!(bloated > 10.0, "bloated {bloated} vs fresh {fresh}");
    let bloated_bytes = expect(
        &batch,
        "pg_index_size_bytes",
        &labels("public.events_bloated"),
    );
    let fresh_bytes = expect(
        &batch,
        "pg_index_size_bytes",
        &labels("public.events_fresh"),
    );
    assert!(
        bloated_bytes > 10.0 * fresh_bytes && bloated_bytes >= 1_048_576.0,
        "{bloated_bytes} vs {fresh_bytes}"
    );
    assert_eq!(
        expect(&batch, "pg_index_valid", &labels("public.events_bloated")),
        1.0
    );
    assert_eq!(
        expect(&batch, "pg_index_valid", &labels("public.events_broken")),
        0.0
    );
}

#[tokio::test]
async fn a_long_query_holding_a_lock_shows_until_it_ends() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let setup = postgres.connect().await.expect("connect");
    setup
        .batch_execute(
            "CREATE TABLE jobs (id int); CREATE INDEX jobs_id ON jobs (id);
             INSERT INTO jobs VALUES (1)",
        )
        .await
        .expect("schema");
    let mut collector = collector(&postgres).await;
    let quiet = collect(&mut collector, now_us()).await;
    assert!(expect(&quiet, "pg_longest_query_seconds", &[]) < 1.0);
    assert_eq!(expect(&quiet, "pg_blocked_backends", &[]), 0.0);
    assert!(value(&quiet, "pg_query_age_seconds", &[]).is_none());

    // The runaway: a transaction that locks the table, then sleeps.
    let holder = postgres.connect().await.expect("connect");
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    let sleeping = tokio::spawn(async move {
        holder
            .batch_execute(
                "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8); COMMIT;",
            )
            .await
    });
    // A reader that waits for the lock.
    let reader = postgres.connect().await.expect("connect");
    let waiting =
        tokio::spawn(async move { reader.query_one("SELECT count(*) FROM jobs", &[]).await });
    until_a_session_waits_for_a_lock(&postgres).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let busy = collect(&mut collector, now_us()).await;
    let longest = expect(&busy, "pg_longest_query_seconds", &[]);
    assert!((2.0..8.0).contains(&longest), "longest query {longest} s");
    let transaction = expect(&busy, "pg_longest_transaction_seconds", &[]);
    assert!(transaction >= longest - 0.01, "{transaction} vs {longest}");
    assert_eq!(expect(&busy, "pg_blocked_backends", &[]), 1.0);
    let pid = holder_pid.to_string();
    let age = expect(
        &busy,
        "pg_query_age_seconds",
        &[("pid", &pid), ("usename", "postgres")],
    );
    assert!(age > 2.0, "the sleeper's age {age}");
    let running = busy
        .samples
        .iter()
        .filter(|s| s.name == "pg_query_age_seconds")
        .count();
    assert_eq!(
        running, 1,
        "the sleeper; the reader waiting for its lock is a victim, not a running query"
    );
    assert_eq!(expect(&busy, "pg_lock_blockers", &[]), 1.0);
    assert_eq!(
        expect(&busy, "pg_idle_blocker_seconds", &[]),
        0.0,
        "the blocker is busy, not idle"
    );
    // The sleeper, the waiting reader and the collector itself.
    assert_eq!(expect(&busy, "pg_connections", &[("state", "active")]), 3.0);

    sleeping
        .await
        .expect("joined")
        .expect("the sleeper commits");
    let count = waiting.await.expect("joined").expect("the reader reads");
    assert_eq!(count.get::<_, i64>(0), 1);
    let after = collect(&mut collector, now_us()).await;
    assert!(expect(&after, "pg_longest_query_seconds", &[]) < 1.0);
    assert_eq!(expect(&after, "pg_blocked_backends", &[]), 0.0);
}

#[tokio::test]
async fn matview_staleness_counts_base_changes_until_a_refresh() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let client = postgres.connect().await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE sales (id serial, amount int);
             INSERT INTO sales (amount) SELECT i FROM generate_series(1, 100) i;
             CREATE MATERIALIZED VIEW sales_by_bucket AS
                 SELECT id % 10 AS bucket, count(*) AS n, sum(amount) AS total
                 FROM sales GROUP BY 1;
             CREATE UNIQUE INDEX ON sales_by_bucket (bucket);
             CREATE MATERIALIZED VIEW never_filled AS SELECT * FROM sales WITH NO DATA;
             CREATE MATERIALIZED VIEW refunds AS SELECT * FROM sales WHERE amount < 0;",
        )
        .await
        .expect("schema");
    flush(&client).await;
    let view = [("matview", "public.sales_by_bucket")];
    let unfilled = [("matview", "public.never_filled")];
    let refunds = [("matview", "public.refunds")];
    let mut collector = collector(&postgres).await;
    let first = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&first, "pg_matview_staleness_rows", &view), 0.0);
    assert_eq!(expect(&first, "pg_matview_populated", &view), 1.0);
    assert_eq!(expect(&first, "pg_matview_populated", &unfilled), 0.0);

    client
        .batch_execute(
            "INSERT INTO sales (amount) SELECT i FROM generate_series(1, 500) i;
             UPDATE sales SET amount = amount + 1 WHERE id <= 100;
             DELETE FROM sales WHERE id > 550;",
        )
        .await
        .expect("changes");
    flush(&client).await;
    let changed = collect(&mut collector, now_us()).await;
    // 500 inserted + 100 updated + 50 deleted.
    assert_eq!(expect(&changed, "pg_matview_staleness_rows", &view), 650.0);
    assert_eq!(
        expect(&changed, "pg_matview_staleness_rows", &unfilled),
        650.0
    );

    assert_eq!(
        expect(&changed, "pg_matview_staleness_rows", &refunds),
        650.0
    );

    // A plain refresh writes a new file; one of no rows is seen by that alone.
    client
        .batch_execute(
            "REFRESH MATERIALIZED VIEW sales_by_bucket; REFRESH MATERIALIZED VIEW refunds",
        )
        .await
        .expect("refresh");
    flush(&client).await;
    let refreshed = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&refreshed, "pg_matview_staleness_rows", &view), 0.0);
    assert_eq!(
        expect(&refreshed, "pg_matview_staleness_rows", &refunds),
        0.0
    );
    assert_eq!(
        expect(&refreshed, "pg_matview_staleness_rows", &unfilled),
        650.0,
        "the other view was not refreshed"
    );

    // A concurrent refresh keeps the view's file and writes the difference into it.
    client
        .batch_execute("INSERT INTO sales (amount) SELECT i FROM generate_series(1, 10) i")
        .await
        .expect("insert");
    flush(&client).await;
    let behind = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&behind, "pg_matview_staleness_rows", &view), 10.0);
    client
        .batch_execute("REFRESH MATERIALIZED VIEW CONCURRENTLY sales_by_bucket")
        .await
        .expect("refresh concurrently");
    flush(&client).await;
    let caught_up = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&caught_up, "pg_matview_staleness_rows", &view), 0.0);
}

#[tokio::test]
async fn statements_give_the_mean_latency_of_the_calls_between_collections() {
    let postgres = TestPostgres::start().await.expect("postgres");
    assert!(
        postgres
            .preloaded_libraries()
            .iter()
            .any(|l| l == "pg_stat_statements"),
        "the fixture preloads pg_stat_statements"
    );
    let client = postgres.connect().await.expect("connect");
    let mut collector = collector(&postgres).await;
    // Without the extension the group is skipped, not failed.
    let without = collect(&mut collector, now_us()).await;
    assert!(
        !without
            .samples
            .iter()
            .any(|s| s.name.starts_with("pg_statement") || s.name == "db_query_latency_ms"),
        "no statement metrics without the extension"
    );
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .expect("extension");
    let baseline = collect(&mut collector, now_us()).await;
    assert!(value(&baseline, "db_query_latency_ms", &[]).is_none());

    for _ in 0..5 {
        client
            .batch_execute("SELECT pg_sleep(0.05)")
            .await
            .expect("sleep");
    }
    let batch = collect(&mut collector, now_us()).await;
    // Five calls of ~50 ms; the collector's own queries are left out (it runs as superuser).
    let mean = expect(&batch, "db_query_latency_ms", &[]);
    assert!((45.0..300.0).contains(&mean), "mean latency {mean} ms");
    assert_eq!(expect(&batch, "pg_query_latency_mean_ms", &[]), mean);
    // No calls since: no latency sample rather than a made-up one.
    let idle = collect(&mut collector, now_us()).await;
    assert!(value(&idle, "db_query_latency_ms", &[]).is_none());

    let queryid: i64 = client
        .query_one(
            "SELECT queryid FROM pg_stat_statements WHERE query LIKE 'SELECT pg_sleep%'",
            &[],
        )
        .await
        .expect("queryid")
        .get(0);
    let queryid = queryid.to_string();
    let labels = [("queryid", queryid.as_str())];
    assert_eq!(expect(&batch, "pg_statement_calls_total", &labels), 5.0);
    let statement_mean = expect(&batch, "pg_statement_mean_ms", &labels);
    assert!((45.0..300.0).contains(&statement_mean), "{statement_mean}");
    let statements = batch
        .samples
        .iter()
        .filter(|s| s.name == "pg_statement_calls_total")
        .count();
    assert!((1..=20).contains(&statements), "{statements} statements");
}

#[tokio::test]
async fn connections_are_counted_by_state_and_a_lost_connection_is_reopened() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let admin = postgres.connect().await.expect("connect");
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(postgres.connect().await.expect("connect"));
    }
    let in_transaction = postgres.connect().await.expect("connect");
    in_transaction
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("begin");
    let max: String = admin
        .query_one("SHOW max_connections", &[])
        .await
        .expect("show")
        .get(0);
    let reserved: String = admin
        .query_one("SHOW superuser_reserved_connections", &[])
        .await
        .expect("show")
        .get(0);
    let mut collector = collector(&postgres).await;
    let batch = collect(&mut collector, now_us()).await;
    // admin, three idle, one in a transaction, and the collector itself (running).
    assert!(expect(&batch, "pg_connections", &[("state", "idle")]) >= 4.0);
    assert_eq!(
        expect(
            &batch,
            "pg_connections",
            &[("state", "idle in transaction")]
        ),
        1.0
    );
    assert_eq!(
        expect(
            &batch,
            "pg_connections",
            &[("state", "idle in transaction (aborted)")]
        ),
        0.0
    );
    assert_eq!(
        expect(&batch, "pg_connections", &[("state", "active")]),
        1.0
    );
    let total: f64 = batch
        .samples
        .iter()
        .filter(|s| s.name == "pg_connections")
        .map(|s| s.value)
        .sum();
    assert_eq!(expect(&batch, "db_connections_active", &[]), total);
    assert_eq!(total, 6.0);
    let max: f64 = max.parse().expect("number");
    assert_eq!(expect(&batch, "pg_max_connections", &[]), max);
    let reserved: f64 = reserved.parse().expect("number");
    assert!(
        reserved > 0.0,
        "PostgreSQL keeps superuser slots by default"
    );
    assert_eq!(expect(&batch, "db_connections_max", &[]), max - reserved);
    assert!(
        value(&batch, "pg_replication_lag_bytes", &[]).is_none(),
        "a standalone server has no standbys"
    );

    // The collector's backend is killed; the next collections reconnect.
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'opsloop collect'",
        )
        .await
        .expect("terminate");
    let t = now_us();
    let mut outcomes = Vec::new();
    for attempt in 1..=3 {
        let outcome = collector.collect_once(t + attempt * SECOND_US).await;
        let ok = outcome.is_ok();
        if let Err(error) = &outcome {
            assert_eq!(error.retry(), Retry::WithBackoff, "{error}");
        }
        outcomes.push(outcome);
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failures = outcomes.iter().filter(|o| o.is_err()).count();
    assert!(failures <= 1, "at most the first collection fails");
    let Some(Ok(recovered)) = outcomes.pop() else {
        panic!("no collection succeeded after the connection was lost")
    };
    assert_eq!(expect(&recovered, "pg_max_connections", &[]), max);
    drop(idle);
}

#[tokio::test]
async fn only_the_chosen_groups_are_collected_and_bad_settings_are_typed_errors() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let mut config = PostgresCollectorConfig::new(postgres.connection_string());
    config.collections = Collections::only(&["connections"]).expect("known");
    config.entity = Some("orders-db".to_owned());
    let mut collector = PostgresCollector::connect(&config).await.expect("connect");
    let batch = collect(&mut collector, now_us()).await;
    assert_eq!(batch.entity, "orders-db");
    assert!(
        batch
            .samples
            .iter()
            .all(|s| s.name.starts_with("pg_connections")
                || s.name.ends_with("max_connections")
                || s.name.starts_with("db_connections")),
        "{:?}",
        batch.samples
    );

    let bad = PostgresCollectorConfig::new("host=127.0.0.1 port=notaport");
    let error = PostgresCollector::connect(&bad).await.expect_err("bad dsn");
    assert!(matches!(error, PostgresCollectError::Dsn { .. }), "{error}");
    assert_eq!(error.retry(), Retry::Never);

    let wrong_db = PostgresCollectorConfig::new(format!(
        "host=127.0.0.1 port={} user=postgres dbname=no_such_db",
        postgres.port()
    ));
    let error = PostgresCollector::connect(&wrong_db)
        .await
        .expect_err("no such database");
    assert!(
        error.to_string().contains("no_such_db") && error.to_string().contains("3D000"),
        "{error}"
    );
    assert_eq!(error.retry(), Retry::Never);

    let down = PostgresCollectorConfig::new("host=127.0.0.1 port=1 user=postgres");
    let error = PostgresCollector::connect(&down)
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(error, PostgresCollectError::Connect { .. }),
        "{error}"
    );
    assert_eq!(error.retry(), Retry::WithBackoff);
}

#[tokio::test]
async fn a_session_idle_in_its_transaction_shows_as_the_blocker_and_its_victim_is_no_runaway() {
    let postgres = TestPostgres::start().await.expect("postgres");
    let setup = postgres.connect().await.expect("connect");
    setup
        .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 100)")
        .await
        .expect("schema");
    let mut collector = collector(&postgres).await;
    let holder = postgres.connect().await.expect("connect");
    holder
        .batch_execute("BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        .await
        .expect("holder");
    let victim = postgres.connect().await.expect("connect");
    let waiting = tokio::spawn(async move {
        victim
            .execute(
                "UPDATE accounts SET balance = balance - 1 WHERE id = 1",
                &[],
            )
            .await
    });
    until_a_session_waits_for_a_lock(&postgres).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let batch = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&batch, "pg_blocked_backends", &[]), 1.0);
    assert_eq!(expect(&batch, "pg_lock_blockers", &[]), 1.0);
    let idle = expect(&batch, "pg_idle_blocker_seconds", &[]);
    assert!(idle >= 1.0, "the holder's idle time {idle}");
    assert!(
        expect(&batch, "pg_longest_query_seconds", &[]) < 1.0,
        "the waiting update is a victim, not a runaway query"
    );
    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(waiting.await.expect("task").expect("the victim goes on"), 1);
    let after = collect(&mut collector, now_us()).await;
    assert_eq!(expect(&after, "pg_lock_blockers", &[]), 0.0);
    assert_eq!(expect(&after, "pg_idle_blocker_seconds", &[]), 0.0);
}
