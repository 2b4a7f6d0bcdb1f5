//! forescale: workload forecasting and predictive scaling for AWS Auto
//! Scaling groups.
//!
//! # Layout
//! Data flows one way; each stage imports only what is upstream of it.
//!
//! - [`domain`]: group names, the 23 features and their bounds, a sample.
//! - [`ingest`]: validates pushed batches into samples (all or nothing).
//! - [`store`]: durable samples per group (in-process log or Redis) and
//!   windows on the step grid.
//! - [`features`]: window -> normalised `[L, 23]` model input + mask.
//! - [`forecast`]: models behind one enum, quantile forecasts.
//! - [`data`]: dataset loaders (shared traces, generic long CSV), EVAL.md
//!   grid and split. [`eval`]: EVAL.md metrics and reports.
//! - [`cache`]: the embedding cache (in process, and Redis when configured).
//! - [`http`]: the thin actix-web layer and the OpenAPI document;
//!   [`metrics`]: Prometheus counters.
//! - [`actuator`]: capacity plan -> the group's scheduled actions (Auto
//!   Scaling), forecast-only by default; [`control`]: the loop ingest ->
//!   forecast -> plan -> actuator per managed group; [`aws`]: SDK settings.
//! - [`decision`]: windows -> forecasts (cache, misses encoded as one
//!   batch) -> policy + guardrails, for one group or a whole fleet.
//! - [`improve`]: the optional background retrain of the policy
//!   (`serve --retrain-every-hours`; `sim::retrain` does the work).
//! - [`cli`]: commands (`serve`, `evaluate`, `import`, `replay`);
//!   [`replay`]: streams a trace into a running service; [`loadgen`]: the
//!   open-loop load generator (`forescale loadtest`).

pub mod actuator;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod control;
pub mod data;
pub mod decision;
pub mod domain;
pub mod eval;
pub mod features;
pub mod forecast;
pub mod http;
pub mod improve;
pub mod ingest;
pub mod loadgen;
pub mod metrics;
pub mod plots;
pub mod policy;
pub mod replay;
pub mod sim;
pub mod store;
pub mod train;
