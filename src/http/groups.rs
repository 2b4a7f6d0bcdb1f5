//! `/v1/groups`: ingest, list, forecast for a stored group.

use actix_web::{HttpRequest, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::forecast::{ForecastResponse, run_forecast};
use super::openapi::IngestRequest;
use super::{ApiError, AppState, ErrorBody, now, read_json, resource};
use crate::domain::ScalingGroup;
use crate::forecast::{ForecastError, Forecaster, MAX_HORIZON};
use crate::ingest::parse_batch;
use crate::store::GroupSummary;

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

/// Answer to an accepted batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// Samples stored (a sample replacing one at the same timestamp counts).
    pub accepted: usize,
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
        Ok::<_, ApiError>(state.store.append(&group, samples).await?)
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

/// Groups known to the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
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

/// Query of a forecast.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// Model name: `naive`, `snaive`, or a trained model (`bilstm`, `lstm`, `tft`).
    /// Default: the service's default model (`bilstm` when it is loaded).
    pub model: Option<String>,
    /// Steps ahead: 1 to 288 for the baselines, 1 to the model's horizon
    /// (12) for trained models. Default 12.
    #[param(minimum = 1, maximum = 288)]
    pub horizon: Option<usize>,
    /// Add the trained model's attention weights (per feature, per step).
    pub explain: Option<bool>,
}

pub(super) fn pick_model(state: &AppState, name: Option<&str>) -> Result<Forecaster, ApiError> {
    let name = name.unwrap_or(&state.default_model);
    state
        .models
        .get(name)
        .ok_or_else(|| ApiError::BadParameter {
            field: "model".into(),
            message: format!(
                "unknown model {name:?}; available: {}",
                state.models.names().join(", ")
            ),
        })
}

/// The horizon asked for (default 12), checked before any work is sized by it.
pub(super) fn check_horizon(h: Option<usize>) -> Result<usize, ApiError> {
    let h = h.unwrap_or(12);
    if h == 0 || h > MAX_HORIZON {
        return Err(ForecastError::BadHorizon {
            got: h,
            max: MAX_HORIZON,
        }
        .into());
    }
    Ok(h)
}

/// A stored group's forecast for the control loop: the default model, the
/// cache, the same checks as `GET /v1/groups/{group}/forecast`.
#[derive(Debug, Clone)]
pub struct StoredForecast {
    pub model: String,
    /// Start of the newest bucket, Unix seconds.
    pub end: i64,
    pub step_seconds: i64,
    pub p50: Vec<f32>,
    /// Capacity in service in the newest row that has one.
    pub capacity_now: Option<u32>,
}

pub async fn forecast_stored(
    state: &AppState,
    group: &ScalingGroup,
    horizon: usize,
) -> Result<StoredForecast, ApiError> {
    let model = pick_model(state, None)?;
    let horizon = check_horizon(Some(horizon))?;
    let window = state
        .store
        .window(group, model.lookback(horizon))
        .await?
        .ok_or_else(|| ApiError::GroupNotFound(group.to_string()))?;
    let end = window.end().unwrap_or_default();
    let capacity_now = window
        .rows
        .iter()
        .rev()
        .find_map(|r| r.capacity)
        .map(|c| c.round().max(0.0) as u32);
    let resp = run_forecast(state, model, window, horizon, false, Some(group)).await?;
    Ok(StoredForecast {
        model: resp.model,
        end,
        step_seconds: resp.step_seconds,
        p50: resp.points.iter().map(|p| p.p50).collect(),
        capacity_now,
    })
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
    let model = pick_model(&state, query.model.as_deref())?;
    let horizon = check_horizon(query.horizon)?;
    let window = state
        .store
        .window(&group, model.lookback(horizon))
        .await?
        .ok_or_else(|| ApiError::GroupNotFound(group.to_string()))?;
    let explain = query.explain.unwrap_or(false);
    let mut resp = run_forecast(&state, model, window, horizon, explain, Some(&group)).await?;
    resp.group = Some(group.to_string());
    Ok(web::Json(resp))
}
