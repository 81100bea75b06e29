//! The streaming engine: telemetry micro-batches in, windowed detector results out.
//!
//! [`time`] tracks event time: per-partition watermarks with bounded out-of-orderness, idle
//! partitions that stop holding the watermark back, and the classification of records as on
//! time, late but allowed, or too late (routed to a side output and counted). [`detector`]
//! plans each SQL detector file once with DataFusion and evaluates it per event-time window,
//! aggregating incrementally so state grows with the number of series, not events.
//! [`checkpoint`] saves window state and source offsets together; [`runtime`] joins them into
//! the [`Engine`](runtime::Engine) that any transport feeds. [`sql_files`] reads a folder of
//! query files.

pub mod checkpoint;
pub mod detector;
pub mod runtime;
pub mod sql_files;
pub mod time;
