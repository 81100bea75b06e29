//! What the tests run on a [`TestPostgres`]: the tables they fill, the queries of their
//! workloads and the faults they provoke.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::{HarnessError, TestPostgres};

/// Orders of 1000 customers, analyzed, with no index on `customer_id`.
pub const ORDERS: &str =
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, note text);
     INSERT INTO orders SELECT g, g % 1000, 'n' || g FROM generate_series(1, 100000) g;
     ANALYZE orders;";

/// The table [`TestPostgres::lock_contention`] contends on: three accounts, ids 1 to 3.
pub const ACCOUNTS: &str = "CREATE TABLE accounts (id int PRIMARY KEY, balance int);
     INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 3) g;";

/// Selective lookups on `orders.customer_id`, each a sequential scan while no index helps,
/// sampled by pg_qualstats, about 40 a second until the connection fails; with
/// `full_scans`, three queries in four are counts that no index can help.
pub fn orders_lookups(client: Client, full_scans: bool) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ = client
            .batch_execute("SET pg_qualstats.sample_rate = 1")
            .await;
        let mut i = 0i64;
        loop {
            let query = if full_scans && i % 4 != 0 {
                "SELECT count(*) FROM orders WHERE note <> 'zzz'".to_owned()
            } else {
                format!("SELECT * FROM orders WHERE customer_id = {}", i % 1000)
            };
            if client.batch_execute(&query).await.is_err() {
                return;
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
}

/// Lock contention as an application left in a transaction causes it: the blockers sit idle
/// holding rows, the victims wait for them.
#[derive(Debug)]
pub struct LockContention {
    /// Three sessions that each updated one account (+1) and stay idle in their transaction.
    pub blockers: Vec<Client>,
    /// Four updates (-1) waiting for those rows; each resolves to the rows it updated.
    pub victims: Vec<JoinHandle<Result<u64, tokio_postgres::Error>>>,
}

impl TestPostgres {
    /// Blocks the [`ACCOUNTS`] table (created beforehand) with [`LockContention`].
    pub async fn lock_contention(&self) -> Result<LockContention, HarnessError> {
        let mut blockers = Vec::new();
        for id in 1..=3 {
            let blocker = self.connect().await?;
            blocker
                .batch_execute(&format!(
                    "BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id = {id}"
                ))
                .await?;
            blockers.push(blocker);
        }
        let mut victims = Vec::new();
        for i in 0..4i32 {
            let victim = self.connect().await?;
            victims.push(tokio::spawn(async move {
                victim
                    .execute(
                        "UPDATE accounts SET balance = balance - 1 WHERE id = $1",
                        &[&(i % 3 + 1)],
                    )
                    .await
            }));
        }
        Ok(LockContention { blockers, victims })
    }
}
