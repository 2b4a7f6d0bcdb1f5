//! The OpenAPI document: every path and wire type (`super::types`); the
//! committed `openapi/openapi.json` is checked against it.

use utoipa::OpenApi;

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
        super::accuracy::group_accuracy,
        super::accuracy::forecast_history,
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
        super::types::IngestRequest,
        super::types::IngestSample,
        super::types::SampleFeatures,
        super::types::Timestamp,
        super::types::StatelessForecastRequest,
        super::types::IngestResponse,
        super::types::GroupList,
        crate::store::GroupSummary,
        super::types::ForecastResponse,
        super::types::ForecastPoint,
        super::types::LevelValue,
        super::types::ExplanationBody,
        super::accuracy::AccuracyResponse,
        super::accuracy::ModelAccuracy,
        super::accuracy::WindowScores,
        super::accuracy::SwitchBody,
        super::accuracy::HistoryResponse,
        super::accuracy::PastForecastPoint,
        super::types::RecommendationResponse,
        super::types::FleetResponse,
        super::types::FleetError,
        crate::app::decision::CycleStats,
        super::types::RecommendationExplanation,
        super::types::PlanPoint,
        super::types::GroupSettingsResponse,
        crate::policy::GuardrailSettings,
        super::types::Health,
        super::types::ActionsResponse,
        super::types::KillSwitchResponse,
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
