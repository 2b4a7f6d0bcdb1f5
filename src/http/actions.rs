//! The actuator's audit log and kill switch.

use actix_web::web;

use super::types::{ActionsQuery, ActionsResponse, KillSwitchResponse};
use super::{ApiError, AppState, ErrorBody, resource};
use crate::domain::ScalingGroup;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(
        "/v1/groups/{group}/actions",
        web::get().to(group_actions),
    ))
    .service(resource(
        "/v1/actuator/kill-switch",
        web::post().to(engage_kill_switch),
    ));
}

/// The actuator's audit log for a group: every write and its reason.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/actions",
    tag = "actuator",
    params(("group" = String, Path, description = "Auto Scaling group name"), ActionsQuery),
    responses(
        (status = 200, body = ActionsResponse),
        (status = 400, description = "Bad group name or limit", body = ErrorBody),
    )
)]
pub async fn group_actions(
    state: web::Data<AppState>,
    group: web::Path<String>,
    query: web::Query<ActionsQuery>,
) -> Result<web::Json<ActionsResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadParameter {
            field: "limit".into(),
            message: format!("{limit} is outside 1-500"),
        });
    }
    Ok(web::Json(match &state.actuator {
        None => ActionsResponse {
            group: group.to_string(),
            actuator_configured: false,
            writes_enabled: false,
            kill_switch: false,
            prefix: None,
            entries: Vec::new(),
        },
        Some(a) => ActionsResponse {
            group: group.to_string(),
            actuator_configured: true,
            writes_enabled: a.policy.writes(&group),
            kill_switch: a
                .policy
                .kill_switch
                .load(std::sync::atomic::Ordering::SeqCst),
            prefix: Some(a.settings.prefix.clone()),
            entries: a.audit.for_group(group.as_str(), limit),
        },
    }))
}

/// Engage the kill switch: nothing is written for any group from now on,
/// and after a restart, until the operator removes
/// `<data dir>/actuator-kill-switch`. It cannot be released over HTTP.
#[utoipa::path(
    post,
    path = "/v1/actuator/kill-switch",
    tag = "actuator",
    security(("bearer" = [])),
    responses(
        (status = 200, body = KillSwitchResponse),
        (status = 401, description = "Tokens are configured and the bearer token is missing or wrong", body = ErrorBody),
        (status = 503, description = "Could not persist the switch (it is engaged in memory)", body = ErrorBody),
    )
)]
pub async fn engage_kill_switch(
    state: web::Data<AppState>,
) -> Result<web::Json<KillSwitchResponse>, ApiError> {
    let Some(a) = &state.actuator else {
        return Ok(web::Json(KillSwitchResponse {
            kill_switch: true,
            actuator_configured: false,
        }));
    };
    a.policy
        .engage_kill_switch()
        .map_err(|e| ApiError::Store(crate::store::StoreError::Io(e)))?;
    Ok(web::Json(KillSwitchResponse {
        kill_switch: true,
        actuator_configured: true,
    }))
}
