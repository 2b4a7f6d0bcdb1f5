//! `/v1/groups`: ingest, list, forecast for a stored group.

use actix_web::{HttpRequest, web};

use super::forecast::forecast_response;
use super::types::{
    ForecastQuery, ForecastResponse, GroupList, IngestRequest, IngestResponse, LevelValue,
};

use super::{ApiError, AppState, ErrorBody, now, read_json, resource};
use crate::app::AppError;
use crate::app::accuracy::{forecast_auto, parse_levels};
use crate::app::forecast::{ModelSpec, check_horizon, forecast_group, pick_model};
use crate::domain::ScalingGroup;
use crate::ingest::parse_batch;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/groups", web::get().to(list_groups)))
        .service(resource(
            "/v1/groups/{group}/samples",
            web::post().to(ingest),
        ))
        .service(resource(
            "/v1/groups/{group}/forecast",
            web::get().to(group_forecast),
        ));
}

/// Push samples for one group.
///
/// All or nothing: a batch with any invalid sample is refused whole, with an
/// error naming the sample index, its timestamp and the feature. A sample at
/// the timestamp of one already stored replaces it (re-sending is
/// idempotent); out-of-order samples are accepted inside the retention
/// window. The answer comes after the samples are durable.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/samples",
    tag = "ingest",
    params(("group" = String, Path, description = "Auto Scaling group name (1-255 printable ASCII, no ':')")),
    request_body(content = IngestRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored", body = IngestResponse),
        (status = 401, description = "Tokens are configured and the bearer token is missing or wrong", body = ErrorBody),
        (status = 400, description = "Malformed JSON or group name", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A sample is invalid", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn ingest(
    state: web::Data<AppState>,
    group: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<IngestResponse>, ApiError> {
    let result = async {
        let group = ScalingGroup::parse(&group)?;
        let body = read_json(&req, payload, state.max_body_bytes).await?;
        let samples = parse_batch(&body, &state.ingest, now(), &[])?;
        let accepted = state.store.append(&group, samples).await?;
        state.ledgers.mark(&group);
        Ok::<_, ApiError>(accepted)
    }
    .await;
    match result {
        Ok(accepted) => {
            state.metrics.batch_accepted(accepted);
            Ok(web::Json(IngestResponse { accepted }))
        }
        Err(e) => {
            state.metrics.batch_rejected();
            Err(e)
        }
    }
}

/// List the groups that have samples, with counts and time span.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "ingest",
    responses(
        (status = 200, body = GroupList),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn list_groups(state: web::Data<AppState>) -> Result<web::Json<GroupList>, ApiError> {
    Ok(web::Json(GroupList {
        groups: state.store.groups().await?,
    }))
}

/// Forecast a stored group's CPU from its window on the step grid.
///
/// Points start one step after the group's newest bucket. p10 <= p50 <= p90.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/forecast",
    tag = "forecast",
    params(("group" = String, Path, description = "Auto Scaling group name"), ForecastQuery),
    responses(
        (status = 200, body = ForecastResponse),
        (status = 400, description = "Bad group name, model or horizon", body = ErrorBody),
        (status = 404, description = "No samples for the group", body = ErrorBody),
        (status = 422, description = "Not enough history for the model", body = ErrorBody),
        (status = 503, description = "Storage unavailable", body = ErrorBody),
    )
)]
pub async fn group_forecast(
    state: web::Data<AppState>,
    group: web::Path<String>,
    query: web::Query<ForecastQuery>,
) -> Result<web::Json<ForecastResponse>, ApiError> {
    let group = ScalingGroup::parse(&group)?;
    let explain = query.explain.unwrap_or(false);
    let spec = pick_model(&state, query.model.as_deref())?;
    if let ModelSpec::Auto = spec {
        let horizon = check_horizon(query.horizon)?;
        if explain {
            return Err(AppError::bad(
                "explain",
                "auto serves several models; explain the served one by name",
            )
            .into());
        }
        let levels = query
            .quantiles
            .as_deref()
            .map(parse_levels)
            .transpose()?
            .unwrap_or_default();
        let auto = forecast_auto(&state, &group, horizon, &levels).await?;
        let mut resp = forecast_response(auto.forecast);
        resp.group = Some(group.to_string());
        resp.served_model = Some(auto.served);
        resp.reason = Some(auto.reason.to_owned());
        resp.degraded = Some(auto.degraded);
        if !levels.is_empty() {
            for (k, p) in resp.points.iter_mut().enumerate() {
                p.quantiles = Some(
                    auto.quantiles
                        .iter()
                        .map(|(level, q)| LevelValue {
                            level: *level,
                            value: q.get(k).map_or(f32::NAN, |v| (v * 1e4).round() / 1e4),
                        })
                        .collect(),
                );
            }
        }
        return Ok(web::Json(resp));
    }
    if query.quantiles.is_some() {
        return Err(AppError::bad(
            "quantiles",
            "calibrated quantiles come from the group's accuracy ledger: use model=auto",
        )
        .into());
    }
    let ModelSpec::Fixed(model) = spec else {
        unreachable!("auto answered above")
    };
    let horizon = check_horizon(query.horizon)?;
    let (f, _) = forecast_group(&state, &group, model, horizon, explain).await?;
    let mut resp = forecast_response(f);
    resp.group = Some(group.to_string());
    Ok(web::Json(resp))
}
