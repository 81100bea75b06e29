//! The running loop of opsloop, whatever carries its records: sources -> engine (watermarks,
//! SQL detectors) -> correlator -> planner -> predictor -> sinks, with checkpoints.
//!
//! - [`Runtime`]: the loop over any [`Transport`](transport::Transport), driving the
//!   [`Stages`] and coordinating checkpoints;
//! - [`kafka`]: the loop over Kafka, `opsloop run` ([`kafka::KafkaRun`]);
//! - [`demo`]: the loop in process over the simulated fleet, whose actions a digital twin
//!   carries out under the same governance (`opsloop demo`);
//! - [`actuate`]: the actuator service over Kafka (`opsloop actuate`);
//! - [`config`]: what `opsloop run` is configured with; [`notify`]: Alertmanager and webhooks;
//!   [`http`]: `/metrics` and `/healthz`; [`events`]: every event the loop logs and counts.

pub mod actuate;
pub mod config;
pub mod demo;
mod error;
pub mod events;
pub mod http;
pub mod kafka;
pub mod notify;
mod runtime;
pub mod transport;

pub use error::RuntimeError;
pub use runtime::{Checkpoints, Runtime, Stages, Totals};
