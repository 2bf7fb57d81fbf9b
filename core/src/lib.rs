//! Everything the AntCode planes share and nothing that belongs to one of them.
//!
//! * [`model`]: the domain types (projects, tasks, runs, leases, workers) and their wire form.
//! * The three storage seams of the design: [`store::Store`] (SQL, the source of truth),
//!   [`broker::Broker`] (queues, leases, events, live logs, signals, the leader lock) and
//!   [`blob::BlobStore`] (project bundles and log archives). Each has an embedded
//!   implementation and a scale-out one, and one conformance suite in `tests/`.
//! * [`dispatch`]: the one path by which a run's job reaches the broker, its secrets opened.
//! * [`bundle`]: safe inspection and extraction of uploaded project archives, used by control
//!   (to validate an upload) and the runner (to unpack it) so both enforce the same rules.
//! * [`telemetry`]: tracing and Prometheus set-up, [`shutdown`]: the cancellation token every
//!   plane's `run(config, shutdown)` takes.
//!
//! This crate depends on nothing of ours but `antcode-proto`; planes depend on it and never on
//! each other.

pub mod alerting;
pub mod blob;
pub mod broker;
pub mod bundle;
pub mod dispatch;
pub mod flow;
pub mod fsutil;
pub mod git;
pub mod hooks;
pub mod ids;
pub mod model;
pub mod params;
pub mod retention;
pub mod schedule;
pub mod seams;
pub mod secrets;
pub mod shutdown;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod time;

pub use shutdown::Shutdown;
