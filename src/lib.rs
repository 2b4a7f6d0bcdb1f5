//! forescale: workload forecasting and predictive scaling for AWS Auto
//! Scaling groups.
//!
//! # Layout
//! A one-way pipeline, each stage importing only what is upstream of it:
//!
//! - [`domain`]: group names, the 23 features and their bounds, a sample,
//!   utilisation, the horizon.
//! - [`ingest`]: validates pushed batches into samples (all or nothing);
//!   `ingest::cloudwatch` pulls them from CloudWatch.
//! - [`store`]: durable samples per group (in-process log or Redis) and
//!   windows on the step grid.
//! - [`features`]: window -> normalised `[L, 23]` model input + mask.
//! - [`forecast`]: models behind one enum, quantile forecasts; [`simd`]:
//!   the SIMD kernels its fast path and the policy share.
//! - [`accuracy`]: per group, every candidate's forecasts scored against
//!   the actuals, the served model (`auto`), calibrated quantiles.
//! - [`policy`]: reference policies, the learned policy, guardrails,
//!   recommendations, the versioned policy folder.
//! - [`actuator`]: capacity plan -> the group's scheduled actions (Auto
//!   Scaling), forecast-only by default; [`aws`]: SDK settings.
//!
//! Beside the pipeline: [`cache`] (the embedding cache), [`metrics`]
//! (Prometheus), [`data`] and [`eval`] (datasets and the forecast
//! benchmark), [`sim`] (the policy simulator), [`train`] (fitting
//! forecasters, PPO, retraining).
//!
//! [`app`] is the use-case layer (a cached forecast, a decision cycle, a
//! control-loop tick, a retrain round); [`http`] and [`cli`] are the
//! edges that call it.

pub mod accuracy;
pub mod actuator;
pub mod app;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod data;
pub mod domain;
pub mod eval;
pub mod features;
pub mod forecast;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod policy;
pub mod sim;
pub mod simd;
pub mod store;
pub mod train;
