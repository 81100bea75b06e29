//! Real services for opsloop's tests, started by the tests themselves.
//!
//! - [`TestBroker`]: the broker named by `OPSLOOP_TEST_BROKERS` when set (Apache Kafka,
//!   Redpanda, ...); otherwise, with the `docker` feature and a Docker engine that answers, an
//!   Apache Kafka container; otherwise a tansu broker on a free loopback port. Topics get unique
//!   names so tests never collide.
//! - [`TestPostgres`]: a throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir);
//!   [`TestPostgres::start_tls`] one that takes TLS only, with [`TestTls`]'s certificates.
//! - [`TestAlertmanager`]: a throwaway Prometheus Alertmanager with a route grouping as asked.
//! - [`TestWebhook`]: an HTTP server that records what is POSTed to it.
//!
//! Every service stops when its handle is dropped. [`remediation_event`] makes events as the
//! planner does, for the suites of what acts on them; [`ORDERS`], [`orders_lookups`] and
//! [`TestPostgres::lock_contention`] are the tables, workloads and faults they run.

mod actions;
mod alertmanager;
mod broker;
mod error;
mod http;
mod postgres;
mod process;
mod tls;
mod workload;

pub use actions::remediation_event;
pub use alertmanager::TestAlertmanager;
pub use broker::{BrokerBackend, TestBroker};
pub use error::HarnessError;
pub use http::{ReceivedRequest, TestWebhook, http_get};
pub use postgres::TestPostgres;
pub use tls::TestTls;
pub use workload::{ACCOUNTS, LockContention, ORDERS, orders_lookups};

/// A name no other test run uses: `base` plus a random suffix.
pub fn unique_name(base: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{base}-{}", &suffix[..12])
}
