//! The OpenAPI document. Request bodies are validated by hand (see
//! `ingest`), so the request types here exist to document the format; the
//! bounds match `domain::FEATURE_BOUNDS` (a test checks it).

#![allow(dead_code)] // fields are read by the schema derive only

use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

/// A time: RFC 3339 string or Unix seconds (fractions are dropped).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Timestamp {
    Rfc3339(String),
    UnixSeconds(i64),
}

/// Measured features of one sample (FEATURES.md). Only `cpu_usage_pct` is
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
    /// `naive`, `snaive` or a trained model; default: the service's default model.
    pub model: Option<String>,
    /// Steps ahead, 1 to 288; default 12.
    #[schema(minimum = 1, maximum = 288)]
    pub horizon: Option<u32>,
    /// Grid step, 60 to 86400 s; default the service's step (300).
    #[schema(minimum = 60, maximum = 86400)]
    pub step_seconds: Option<i64>,
}

/// The bearer scheme of the write endpoints.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed by every POST when the service runs with API tokens \
                         (FORESCALE_API_TOKENS or FORESCALE_API_TOKENS_FILE); \
                         reads never need one.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "forescale",
        description = "Workload forecasting and predictive scaling for AWS Auto Scaling groups.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::groups::ingest,
        super::groups::list_groups,
        super::groups::group_forecast,
        super::forecast::stateless_forecast,
        super::recommend::group_recommendation,
        super::recommend::fleet_recommendations,
        super::recommend::group_settings,
        super::actions::group_actions,
        super::actions::engage_kill_switch,
        super::ops::healthz,
        super::ops::readyz,
        super::ops::metrics,
    ),
    components(schemas(
        IngestRequest,
        IngestSample,
        SampleFeatures,
        Timestamp,
        StatelessForecastRequest,
        super::groups::IngestResponse,
        super::groups::GroupList,
        crate::store::GroupSummary,
        super::forecast::ForecastResponse,
        super::forecast::ForecastPoint,
        super::forecast::ExplanationBody,
        super::recommend::RecommendationResponse,
        super::recommend::FleetResponse,
        super::recommend::FleetError,
        crate::decision::CycleStats,
        super::recommend::RecommendationExplanation,
        super::recommend::PlanPoint,
        super::recommend::GroupSettingsResponse,
        crate::policy::GuardrailSettings,
        super::ops::Health,
        super::actions::ActionsResponse,
        super::actions::KillSwitchResponse,
        crate::actuator::AuditEntry,
        crate::actuator::audit::AuditAction,
        super::ErrorBody,
    )),
    tags(
        (name = "ingest", description = "Push metric samples; list groups"),
        (name = "forecast", description = "Quantile forecasts of CPU"),
        (name = "policy", description = "Capacity recommendations from the scaling policy"),
        (name = "actuator", description = "Scheduled-action audit log and kill switch"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FEATURE_BOUNDS, FEATURE_NAMES, N_MEASURED};

    #[test]
    fn documented_bounds_match_the_validator() {
        let doc: serde_json::Value =
            serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
        let props = &doc["components"]["schemas"]["SampleFeatures"]["properties"];
        for j in 0..N_MEASURED {
            let p = &props[FEATURE_NAMES[j]];
            let (lo, hi) = FEATURE_BOUNDS[j];
            assert_eq!(p["minimum"].as_f64(), Some(lo), "{}", FEATURE_NAMES[j]);
            assert_eq!(p["maximum"].as_f64(), Some(hi), "{}", FEATURE_NAMES[j]);
        }
    }
}
