//! The fixture's own contract: the services it starts are real and usable.

use opsloop_tests::{TestBroker, TestPostgres};

#[tokio::test]
async fn broker_creates_unique_topics_with_the_asked_partitions() {
    let broker = TestBroker::start().await.expect("broker starts");
    let first = broker.create_topic("fixture", 4).await.expect("topic");
    let second = broker.create_topic("fixture", 1).await.expect("topic");
    assert_ne!(first, second);

    assert_eq!(broker.partition_count(&first).await.expect("metadata"), 4);
    assert_eq!(broker.partition_count(&second).await.expect("metadata"), 1);
}

#[tokio::test]
async fn postgres_is_a_real_server_with_pg_stat_statements() {
    let postgres = TestPostgres::start().await.expect("postgres starts");
    let client = postgres.connect().await.expect("connects");
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("query")
        .get(0);
    assert!(version.starts_with("15"), "server version {version}");

    assert!(
        postgres
            .preloaded_libraries()
            .iter()
            .any(|l| l == "pg_stat_statements"),
        "pg_stat_statements is preloaded"
    );
    client
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE t (id int primary key); INSERT INTO t SELECT generate_series(1, 100);",
        )
        .await
        .expect("extension and table");
    let calls: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_statements WHERE query LIKE 'INSERT INTO t%'",
            &[],
        )
        .await
        .expect("pg_stat_statements answers")
        .get(0);
    assert_eq!(calls, 1);
}
