//! The wire types: every request, query and answer body of the API, as
//! the OpenAPI document describes them. Request bodies are validated by
//! hand (`crate::ingest`), so the request types exist to document the
//! format; their bounds match `domain::FEATURE_BOUNDS` (a test checks it).

#![allow(dead_code)] // request fields are read by the schema derive only

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::actuator::AuditEntry;
use crate::app::decision::CycleStats;
use crate::policy::GuardrailSettings;
use crate::store::GroupSummary;

/// The audit of a group's scheduled-action writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionsResponse {
    pub group: String,
    /// False when the service manages no groups (no actuator at all).
    pub actuator_configured: bool,
    /// True when writes are enabled for this group and the kill switch is off.
    pub writes_enabled: bool,
    pub kill_switch: bool,
    /// Name prefix of the actions the service owns.
    pub prefix: Option<String>,
    /// Newest first: writes (`put`, `delete`) and held-back writes (`dry_run`).
    pub entries: Vec<AuditEntry>,
}

/// Query of the audit.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActionsQuery {
    /// Most entries returned (1-500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// State of the kill switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct KillSwitchResponse {
    pub kill_switch: bool,
    pub actuator_configured: bool,
}

/// One forecast step.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastPoint {
    /// Start of the step, RFC 3339 UTC, on the step grid.
    pub timestamp: String,
    pub p10: f32,
    pub p50: f32,
    pub p90: f32,
    /// With `quantiles=`: the calibrated quantile of each level asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<LevelValue>>,
}

/// A quantile level and its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelValue {
    pub level: f64,
    pub value: f32,
}

/// A quantile forecast of `cpu_usage_pct`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastResponse {
    /// The group (absent for stateless forecasts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub model: String,
    /// With `model=auto`: the candidate that served this group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// With `model=auto`: why that candidate (`no_evidence`, `best`,
    /// `switched`, `dwell`; see `/v1/groups/{group}/accuracy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With `model=auto`: the served model has been worse than naive over
    /// the last day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
    pub step_seconds: i64,
    /// Last step of history the forecast was made from, RFC 3339.
    pub history_end: String,
    pub points: Vec<ForecastPoint>,
    /// With `explain=true`: the network's attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationBody>,
}

/// Attention of a trained model over its look-back window.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplanationBody {
    /// The 23 feature names, the columns of `feature_weights`.
    pub features: Vec<&'static str>,
    /// Start of each look-back step, RFC 3339, oldest first.
    pub steps: Vec<String>,
    /// [steps][features]: feature attention at each step (rows sum to 1).
    pub feature_weights: Vec<Vec<f32>>,
    /// [steps]: temporal attention (sums to 1). For the TFT: the attention
    /// of the forecast steps on the look-back, averaged over forecast steps
    /// and heads, renormalised over the look-back.
    pub step_weights: Vec<f32>,
    /// TFT only: the known future inputs (the calendar features), the
    /// columns of `future_weights`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_features: Option<Vec<&'static str>>,
    /// TFT only, [forecast steps][known features]: variable-selection
    /// weights of the known future inputs (rows sum to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub future_weights: Option<Vec<Vec<f32>>>,
    /// TFT only, [forecast steps][look-back steps + forecast steps]: each
    /// forecast step's attention (heads averaged; a step sees the look-back
    /// and the forecast steps up to itself; rows sum to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<Vec<Vec<f32>>>,
}

/// Answer to an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Samples stored (a sample replacing one at the same timestamp counts).
    pub accepted: usize,
}

/// Groups known to the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

/// Query of a forecast.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// Model name: `naive`, `snaive`, `ets`, `mstl`, a trained model
    /// (`bilstm`, `lstm`, `tft`), or `auto` (stored groups only: the
    /// candidate with the best recent accuracy for the group, its
    /// quantiles calibrated to the group's errors; at most 12 steps).
    /// Default: the service's default model (`auto`).
    pub model: Option<String>,
    /// Steps ahead: 1 to 288 for the baselines, 1 to the model's horizon
    /// (12) for trained models. Default 12.
    #[param(minimum = 1, maximum = 288)]
    pub horizon: Option<usize>,
    /// Add the trained model's attention weights (per feature, per step).
    pub explain: Option<bool>,
    /// With `model=auto`: more quantile levels, calibrated to the group's
    /// own errors, comma-separated, each between 0.01 and 0.99, at most 9
    /// (for example `0.05,0.95,0.99`).
    pub quantiles: Option<String>,
}

/// Health or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness), `ready` or `degraded` (readiness).
    pub status: &'static str,
    /// Store backend: `memory` or `redis`.
    pub store: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A group's guardrail settings as recommendations use them.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupSettingsResponse {
    pub group: String,
    /// Named in the service's `--group-settings` file; otherwise these
    /// are the defaults.
    pub configured: bool,
    pub guardrails: GuardrailSettings,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    /// Instances in service now. Default: the newest `capacity` in the
    /// group's samples.
    pub capacity: Option<u32>,
    /// The group's minimum size (default: its `--group-settings` entry,
    /// else 1).
    pub min: Option<u32>,
    /// The group's maximum size (default: its `--group-settings` entry,
    /// else 100).
    pub max: Option<u32>,
    /// Forecaster whose quantiles the policy reads, or `auto` (the
    /// candidate the group's accuracy ledger chose, calibrated). Default:
    /// the service's default model (`auto`).
    pub model: Option<String>,
    /// SLA target: the share of 5-minute steps with utilisation at or
    /// under 90 %, from 0.5 to 0.999 (default: the group's
    /// `--group-settings` entry, else 0.99).
    pub sla_target: Option<f64>,
}

/// One planned step.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanPoint {
    /// Start of the step, RFC 3339 UTC.
    pub timestamp: String,
    pub desired_capacity: u32,
}

/// Why the recommendation is what it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationExplanation {
    /// What the policy provisioned for, e.g. "p90 of the next 3 steps +10 %".
    pub reason: String,
    /// The policy's choice before guardrails.
    pub proposed_capacity: u32,
    /// Guardrails that changed it: stale_data, emergency, max_step_up,
    /// max_step_down, scale_in_cooldown, min, max.
    pub guardrails_fired: Vec<String>,
    /// Forecast p50 load of the next step over the desired capacity.
    pub expected_utilisation: f64,
    /// The newest data is older than 3 steps (no scale-in on it).
    pub stale_data: bool,
    /// With `model=auto`: why `model` served (`no_evidence`, `best`,
    /// `switched`, `dwell`, or `degraded_fallback`: the chosen model was
    /// worse than naive over the last day, so the fallback planned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_reason: Option<String>,
    /// With `model=auto`: the group's chosen model has been worse than
    /// naive over the last day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_degraded: Option<bool>,
    /// With the SLA planner (policy `sla`): the target it provisions for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla_target: Option<f64>,
    /// With the SLA planner: the quantile of the group's recent forecast
    /// errors provisioned for (the target, moved by the service level the
    /// group achieved; above 1 is past the largest error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_quantile: Option<f64>,
    /// With the SLA planner: share of the recent steps (up to two days)
    /// within the SLA, measured from the group's utilisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_sla: Option<f64>,
}

/// The recommended capacity now and the plan for the next steps.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationResponse {
    pub group: String,
    /// `sla` (the chance-constrained planner for the group's SLA target,
    /// the default), `rl` (the trained policy, `--scaling-policy rl`) or
    /// `predictive` (`rl` asked for but none is shipped).
    pub policy: String,
    /// Version of the trained policy that decided (`models/policy`'s
    /// `policy.json`; one more at each promotion by `forescale retrain`);
    /// absent for predictive scaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<u32>,
    /// The forecaster read (with `auto`, the one that served the group).
    pub model: String,
    pub step_seconds: i64,
    /// Last step of history used, RFC 3339.
    pub history_end: String,
    pub capacity_now: u32,
    /// Desired capacity now, after guardrails.
    pub desired_capacity: u32,
    pub plan: Vec<PlanPoint>,
    pub explanation: RecommendationExplanation,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetQuery {
    /// Comma-separated group names. Default: every group in the store.
    pub groups: Option<String>,
    /// Minimum size applied to every group (default: each group's
    /// `--group-settings` entry, else 1).
    pub min: Option<u32>,
    /// Maximum size applied to every group (default: each group's
    /// `--group-settings` entry, else 100).
    pub max: Option<u32>,
    /// Forecaster whose quantiles the policy reads, or `auto` (per group).
    /// Default: the service's default model (`auto`).
    pub model: Option<String>,
    /// SLA target applied to every group, 0.5 to 0.999 (default: each
    /// group's `--group-settings` entry, else 0.99).
    pub sla_target: Option<f64>,
}

/// A group the cycle could not decide for.
#[derive(Debug, Serialize, ToSchema)]
pub struct FleetError {
    pub group: String,
    /// The error code a single-group request would have returned.
    pub error: String,
    pub message: String,
}

/// One decision cycle over many groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct FleetResponse {
    pub stats: CycleStats,
    pub recommendations: Vec<RecommendationResponse>,
    pub errors: Vec<FleetError>,
}

/// A time: RFC 3339 string or Unix seconds (fractions are dropped).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Timestamp {
    Rfc3339(String),
    UnixSeconds(i64),
}

/// Measured features of one sample (docs/features.md). Only `cpu_usage_pct` is
/// required; absent or `null` features are recorded as absent. Calendar
/// features are computed by the service and must not be sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleFeatures {
    /// % of provisioned CPU.
    #[schema(minimum = 0, maximum = 150)]
    pub cpu_usage_pct: f64,
    /// GHz.
    #[schema(minimum = 0, maximum = 10)]
    pub cpu_freq_ghz: Option<f64>,
    /// Degrees C.
    #[schema(minimum = -50, maximum = 150)]
    pub cpu_temp_c: Option<f64>,
    /// Std-dev of per-core usage, %.
    #[schema(minimum = 0, maximum = 100)]
    pub cpu_core_std_pct: Option<f64>,
    /// %.
    #[schema(minimum = 0, maximum = 150)]
    pub mem_used_pct: Option<f64>,
    /// Thousands / s.
    #[schema(minimum = 0, maximum = 1e9)]
    pub cache_miss_kps: Option<f64>,
    /// GB.
    #[schema(minimum = 0, maximum = 1e6)]
    pub swap_used_gb: Option<f64>,
    /// Per second.
    #[schema(minimum = 0, maximum = 1e10)]
    pub page_faults_ps: Option<f64>,
    /// MB / s.
    #[schema(minimum = 0, maximum = 1e6)]
    pub disk_read_mbps: Option<f64>,
    /// MB / s.
    #[schema(minimum = 0, maximum = 1e6)]
    pub disk_write_mbps: Option<f64>,
    /// Operations / s.
    #[schema(minimum = 0, maximum = 1e9)]
    pub disk_iops: Option<f64>,
    /// ms.
    #[schema(minimum = 0, maximum = 1e6)]
    pub disk_latency_ms: Option<f64>,
    /// Mbit / s.
    #[schema(minimum = 0, maximum = 1e7)]
    pub net_in_mbps: Option<f64>,
    /// Mbit / s.
    #[schema(minimum = 0, maximum = 1e7)]
    pub net_out_mbps: Option<f64>,
    /// %.
    #[schema(minimum = 0, maximum = 100)]
    pub packet_loss_pct: Option<f64>,
    /// Per second.
    #[schema(minimum = 0, maximum = 1e9)]
    pub tcp_errors_ps: Option<f64>,
    /// W.
    #[schema(minimum = 0, maximum = 1e7)]
    pub power_w: Option<f64>,
    /// Per second.
    #[schema(minimum = 0, maximum = 1e10)]
    pub ctx_switches_ps: Option<f64>,
    /// Per second.
    #[schema(minimum = 0, maximum = 1e10)]
    pub interrupts_ps: Option<f64>,
    /// Run-queue length.
    #[schema(minimum = 0, maximum = 1e6)]
    pub load_avg_1m: Option<f64>,
}

/// One metric sample.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestSample {
    pub timestamp: Timestamp,
    pub features: SampleFeatures,
    /// In-service capacity (instances or weighted units).
    #[schema(minimum = 0, maximum = 1e6)]
    pub capacity: Option<f64>,
}

/// A batch of samples for one group (1 to the batch limit, default 10,000).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    #[schema(min_items = 1)]
    pub samples: Vec<IngestSample>,
}

/// A stateless forecast: the history travels in the body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatelessForecastRequest {
    /// History, any order; gridded like stored samples.
    #[schema(min_items = 1)]
    pub samples: Vec<IngestSample>,
    /// `naive`, `snaive`, `ets`, `mstl` or a trained model; default: the service's default model.
    pub model: Option<String>,
    /// Steps ahead, 1 to 288; default 12.
    #[schema(minimum = 1, maximum = 288)]
    pub horizon: Option<u32>,
    /// Grid step, 60 to 86400 s; default the service's step (300).
    #[schema(minimum = 60, maximum = 86400)]
    pub step_seconds: Option<i64>,
}
