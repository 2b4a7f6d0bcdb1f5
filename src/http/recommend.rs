//! `/v1/groups/{group}/recommendation`: the capacity the policy wants now
//! and for the next hour, with the reason and the guardrails that fired.

use actix_web::web;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::forecast::run_forecast;
use super::groups::pick_model;
use super::{ApiError, AppState, ErrorBody, now, resource};
use crate::domain::{ScalingGroup, rfc3339};
use crate::policy::GuardrailSettings;
use crate::policy::recommend::{Decider, Situation, recommend};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(
        "/v1/groups/{group}/recommendation",
        web::get().to(group_recommendation),
    ));
}

/// Largest group size a recommendation accepts.
pub const MAX_GROUP_SIZE: u32 = 10_000;
/// Steps planned ahead.
const PLAN_STEPS: usize = 12;
/// History older than this many steps is stale: no scale-in on it.
const STALE_STEPS: i64 = 3;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    /// Instances in service now. Default: the newest `capacity` in the
    /// group's samples.
    pub capacity: Option<u32>,
    /// The group's minimum size (default 1).
    pub min: Option<u32>,
    /// The group's maximum size (default 100).
    pub max: Option<u32>,
    /// Forecaster whose quantiles the policy reads (default: the
    /// service's default model).
    pub model: Option<String>,
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
}

/// The recommended capacity now and the plan for the next steps.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationResponse {
    pub group: String,
    /// `rl` (the trained policy) or `predictive` (when none is shipped).
    pub policy: String,
    /// The forecaster read.
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

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        field: field.into(),
        message: message.into(),
    }
}

/// The capacity to run now and for the next hour.
///
/// The trained scaling policy (or, without one, AWS-style predictive
/// scaling) reads the group's forecast quantiles and recent load; the
/// guardrails then apply (min/max, step limits, emergency scale-out, no
/// scale-in on stale data). Load is CPU utilisation times capacity: one
/// instance at 100 % is one unit.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/recommendation",
    tag = "policy",
    params(
        ("group" = String, Path, description = "Auto Scaling group name"),
        RecommendationQuery
    ),
    responses(
        (status = 200, body = RecommendationResponse),
        (status = 400, description = "Bad group name, model, capacity, min or max", body = ErrorBody),
        (status = 404, description = "No samples for the group", body = ErrorBody),
        (status = 422, description = "Too little history", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn group_recommendation(
    state: web::Data<AppState>,
    group: web::Path<String>,
    query: web::Query<RecommendationQuery>,
) -> Result<web::Json<RecommendationResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let model = pick_model(&state, query.model.as_deref())?;
    let min = query.min.unwrap_or(1);
    let max = query.max.unwrap_or(100);
    if !(1..=MAX_GROUP_SIZE).contains(&max) {
        return Err(bad("max", format!("must be from 1 to {MAX_GROUP_SIZE}")));
    }
    if min > max {
        return Err(bad("min", format!("{min} is above max ({max})")));
    }
    let window = state
        .store
        .window(&group, model.lookback(PLAN_STEPS))
        .await?
        .ok_or_else(|| ApiError::GroupNotFound(group.to_string()))?;
    let capacity_now = match query.capacity {
        Some(c) if (1..=MAX_GROUP_SIZE).contains(&c) => c,
        Some(_) => {
            return Err(bad(
                "capacity",
                format!("must be from 1 to {MAX_GROUP_SIZE}"),
            ));
        }
        None => window
            .rows
            .iter()
            .rev()
            .find_map(|r| r.capacity)
            .filter(|c| *c >= 0.5)
            .map(|c| (c.round() as u32).min(MAX_GROUP_SIZE))
            .ok_or_else(|| {
                bad(
                    "capacity",
                    "the group's samples carry no capacity; pass ?capacity=<instances in service>",
                )
            })?,
    };
    let end = window.end().unwrap_or_default();
    let step = window.step;
    let cap = f64::from(capacity_now);
    let history: Vec<f64> = window
        .rows
        .iter()
        .map(|r| f64::from(r.target()) / 100.0 * r.capacity.map_or(cap, f64::from))
        .collect();
    let fc = run_forecast(&state, model, window, PLAN_STEPS, false, Some(&group)).await?;
    let quantiles: Vec<[f32; 3]> = fc
        .points
        .iter()
        .map(|p| {
            let u = |x: f32| (f64::from(x.max(0.0)) / 100.0 * cap) as f32;
            [u(p.p10), u(p.p50), u(p.p90)]
        })
        .collect();
    let stale = now() - end > STALE_STEPS * step;
    let decider = match &state.policy {
        Some(p) => Decider::Rl(p.clone()),
        None => Decider::Predictive,
    };
    let settings = GuardrailSettings {
        min,
        max,
        ..GuardrailSettings::default()
    };
    let r = recommend(
        &decider,
        &Situation {
            history: &history,
            forecast: &quantiles,
            capacity_now,
            stale,
        },
        &settings,
    );
    state.metrics.recommendation_served(r.policy);
    Ok(web::Json(RecommendationResponse {
        group: group.to_string(),
        policy: r.policy.into(),
        model: fc.model,
        step_seconds: step,
        history_end: rfc3339(end),
        capacity_now,
        desired_capacity: r.desired_now,
        plan: r
            .plan
            .iter()
            .enumerate()
            .map(|(k, c)| PlanPoint {
                timestamp: rfc3339(end + (k as i64 + 1) * step),
                desired_capacity: *c,
            })
            .collect(),
        explanation: RecommendationExplanation {
            reason: r.reason,
            proposed_capacity: r.proposed_now,
            guardrails_fired: r
                .guardrails_fired
                .iter()
                .map(|g| {
                    serde_json::to_value(g)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect(),
            expected_utilisation: (r.expected_utilisation * 1e4).round() / 1e4,
            stale_data: stale,
        },
    }))
}
