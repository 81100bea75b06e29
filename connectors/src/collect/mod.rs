//! Collectors: query the systems users already run for their own statistics and hand them
//! over as telemetry records, ready to publish.
//!
//! [`postgres`] reads PostgreSQL's statistics views (`pg_stat_activity`,
//! `pg_stat_user_tables`, `pg_stat_user_indexes`, `pg_stat_statements`, ...) into one
//! [`MetricBatch`](opsloop_schemas::telemetry::MetricBatch) per collection, for `opsloop
//! collect postgres` and the detectors of `sql/pg_*.sql`.

pub mod postgres;
