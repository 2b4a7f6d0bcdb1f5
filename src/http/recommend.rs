//! `/v1/groups/{group}/recommendation`: the capacity the policy wants now
//! and for the next hour, with the reason and the guardrails that fired.

use actix_web::web;

use super::types::{
    FleetError, FleetQuery, FleetResponse, GroupSettingsResponse, PlanPoint,
    RecommendationExplanation, RecommendationQuery, RecommendationResponse,
};
use super::{ApiError, AppState, ErrorBody, now, resource};
use crate::app::decision::{Decision, DecisionSettings, GroupRequest, decide};
use crate::app::forecast::pick_model;
use crate::domain::{ScalingGroup, rfc3339};
use crate::policy::GuardrailSettings;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(
        "/v1/groups/{group}/recommendation",
        web::get().to(group_recommendation),
    ))
    .service(resource(
        "/v1/recommendations",
        web::get().to(fleet_recommendations),
    ))
    .service(resource(
        "/v1/groups/{group}/settings",
        web::get().to(group_settings),
    ));
}

/// The guardrail settings of a group: min and max size, step limits,
/// scale-in cooldown and the emergency scale-out, from the service's
/// `--group-settings` file or the defaults. A recommendation's `min` and
/// `max` query parameters override min and max for that request.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/settings",
    tag = "policy",
    params(("group" = String, Path, description = "Auto Scaling group name")),
    responses(
        (status = 200, body = GroupSettingsResponse),
        (status = 400, description = "Bad group name", body = ErrorBody),
    )
)]
pub async fn group_settings(
    state: web::Data<AppState>,
    group: web::Path<String>,
) -> Result<web::Json<GroupSettingsResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let configured = state.group_settings.get(&group);
    Ok(web::Json(GroupSettingsResponse {
        group: group.to_string(),
        configured: configured.is_some(),
        guardrails: configured.cloned().unwrap_or_default(),
    }))
}

/// One group's guardrails: its configured settings (or the defaults),
/// with the query's min and max over them.
fn group_guardrails(
    state: &AppState,
    group: &ScalingGroup,
    min: Option<u32>,
    max: Option<u32>,
    sla_target: Option<f64>,
) -> Result<GuardrailSettings, ApiError> {
    let base = state.guardrails(group);
    let g = GuardrailSettings {
        min: min.unwrap_or(base.min),
        max: max.unwrap_or(base.max),
        sla_target: sla_target.unwrap_or(base.sla_target),
        ..base
    };
    if g.min > g.max {
        let (field, which) = if min.is_some() {
            ("min", "max")
        } else {
            ("max", "min")
        };
        return Err(bad(
            field,
            format!(
                "group {group}: min {} is above max {} (its {which} comes from the group's settings)",
                g.min, g.max
            ),
        ));
    }
    Ok(g)
}

pub use crate::app::decision::MAX_GROUP_SIZE;
/// Groups one fleet request may name.
const MAX_FLEET_GROUPS: usize = 20_000;

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::BadParameter {
        field: field.into(),
        message: message.into(),
    }
}

/// The capacity to run now and for the next hour.
///
/// The SLA planner provisions for the quantile of the group's recent
/// forecast errors that meets its SLA target over the launch delay
/// (`--scaling-policy rl`: the trained scaling policy reads the forecast
/// quantiles instead); the guardrails then apply (min/max, step limits, emergency scale-out, no
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
        (status = 400, description = "Bad group name, model, capacity, min, max or sla_target", body = ErrorBody),
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
    let spec = pick_model(&state, query.model.as_deref())?;
    check_limits(query.min, query.max, query.sla_target)?;
    if let Some(c) = query.capacity
        && !(1..=MAX_GROUP_SIZE).contains(&c)
    {
        return Err(bad(
            "capacity",
            format!("must be from 1 to {MAX_GROUP_SIZE}"),
        ));
    }
    let guardrails = Some(group_guardrails(
        &state,
        &group,
        query.min,
        query.max,
        query.sla_target,
    )?);
    let req = GroupRequest {
        group,
        capacity: query.capacity,
        guardrails,
    };
    let (mut out, _) = decide(
        &state,
        &spec,
        vec![req],
        &DecisionSettings::default(),
        now(),
    )
    .await;
    let d = out
        .pop()
        .ok_or_else(|| bad("group", "no decision was made"))??;
    Ok(web::Json(response(d)))
}

/// The query's min and max, checked before any group's settings apply.
fn check_limits(
    min: Option<u32>,
    max: Option<u32>,
    sla_target: Option<f64>,
) -> Result<(), ApiError> {
    if let Some(t) = sla_target {
        crate::policy::sla::check_target(t).map_err(|e| bad("sla_target", e))?;
    }
    let min = min.unwrap_or(1);
    let max = max.unwrap_or(100);
    if !(1..=MAX_GROUP_SIZE).contains(&max) {
        return Err(bad("max", format!("must be from 1 to {MAX_GROUP_SIZE}")));
    }
    if min > max {
        return Err(bad("min", format!("{min} is above max ({max})")));
    }
    Ok(())
}

fn response(d: Decision) -> RecommendationResponse {
    let r = d.recommendation;
    let (end, step) = (d.history_end, d.step_seconds);
    RecommendationResponse {
        group: d.group.to_string(),
        policy: r.policy.into(),
        policy_version: r.policy_version,
        model: d.model,
        step_seconds: step,
        history_end: rfc3339(end),
        capacity_now: d.capacity_now,
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
            stale_data: d.stale,
            model_reason: d.model_reason.map(str::to_owned),
            forecast_degraded: d.model_reason.map(|_| d.degraded),
            sla_target: r.sla.map(|s| s.target),
            provisioned_quantile: r.sla.map(|s| (s.quantile * 1e4).round() / 1e4),
            achieved_sla: r
                .sla
                .and_then(|s| s.achieved_recent)
                .map(|a| (a * 1e4).round() / 1e4),
        },
    }
}

/// One decision cycle over many groups: their forecasts run as one batch.
///
/// Every group's window is read, the encoder outputs found in the cache
/// are reused and the rest are computed in one batch; then the policy and
/// guardrails decide per group. Groups without a decision (no samples,
/// too little history, no capacity in the data) are listed in `errors`
/// with the code a single-group request would have returned.
#[utoipa::path(
    get,
    path = "/v1/recommendations",
    tag = "policy",
    params(FleetQuery),
    responses(
        (status = 200, body = FleetResponse),
        (status = 400, description = "Bad group name, model, min, max or sla_target", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn fleet_recommendations(
    state: web::Data<AppState>,
    query: web::Query<FleetQuery>,
) -> Result<web::Json<FleetResponse>, ApiError> {
    let spec = pick_model(&state, query.model.as_deref())?;
    check_limits(query.min, query.max, query.sla_target)?;
    let groups: Vec<ScalingGroup> = match query.groups.as_deref().filter(|s| !s.is_empty()) {
        Some(list) => list
            .split(',')
            .map(|g| {
                ScalingGroup::parse(g.trim()).map_err(|e| bad("groups", format!("{g:?}: {e}")))
            })
            .collect::<Result<_, _>>()?,
        None => state
            .store
            .groups()
            .await?
            .into_iter()
            .map(|g| g.group)
            .collect(),
    };
    if groups.len() > MAX_FLEET_GROUPS {
        return Err(bad(
            "groups",
            format!(
                "{} groups; at most {MAX_FLEET_GROUPS} per request",
                groups.len()
            ),
        ));
    }
    let requests = groups
        .into_iter()
        .map(|group| {
            let guardrails = Some(group_guardrails(
                &state,
                &group,
                query.min,
                query.max,
                query.sla_target,
            )?);
            Ok(GroupRequest {
                group,
                capacity: None,
                guardrails,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let names: Vec<String> = requests.iter().map(|r| r.group.to_string()).collect();
    let (out, stats) = decide(&state, &spec, requests, &DecisionSettings::default(), now()).await;
    let mut recommendations = Vec::with_capacity(out.len());
    let mut errors = Vec::new();
    for (name, r) in names.into_iter().zip(out) {
        match r {
            Ok(d) => recommendations.push(response(d)),
            Err(e) => {
                let e = ApiError::from(e);
                errors.push(FleetError {
                    group: name,
                    error: e.code().into(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(web::Json(FleetResponse {
        stats,
        recommendations,
        errors,
    }))
}
