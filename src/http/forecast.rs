//! `/v1/forecast`: stateless forecasts (the window travels in the body),
//! and the response shape shared with the per-group forecast.

use actix_web::{HttpRequest, web};

use super::types::{ExplanationBody, ForecastPoint, ForecastResponse, StatelessForecastRequest};

use super::{ApiError, AppState, ErrorBody, now, read_json, resource};
use crate::app::forecast::{
    ModelSpec, WindowForecast, check_horizon, forecast_window, named_model, pick_model,
};
use crate::domain::{FEATURE_NAMES, N_MEASURED, rfc3339};
use crate::ingest::{ValidationError, parse_batch};
use crate::store::{GridSpec, grid};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/forecast", web::post().to(stateless_forecast)));
}

/// Longest history a stateless request may span, in grid steps (two weeks
/// at 5 minutes): it bounds the memory one request can make us allocate.
const MAX_STATELESS_STEPS: i64 = 4_032;

/// Round for the wire: four decimals are far below any metric's noise.
fn tidy(x: f32) -> f32 {
    (x * 1e4).round() / 1e4
}

fn tidy_rows(m: &[Vec<f32>]) -> Vec<Vec<f32>> {
    m.iter()
        .map(|r| r.iter().map(|x| tidy(*x)).collect())
        .collect()
}

/// The wire shape of a forecast.
pub(super) fn forecast_response(f: WindowForecast) -> ForecastResponse {
    let WindowForecast {
        model,
        end,
        step_seconds: step,
        forecast: fc,
        explanation,
    } = f;
    let explanation = explanation.map(|e| {
        let l = e.step_weights.len() as i64;
        ExplanationBody {
            features: FEATURE_NAMES.to_vec(),
            steps: (0..l).map(|i| rfc3339(end - (l - 1 - i) * step)).collect(),
            feature_weights: e
                .feature_weights
                .iter()
                .map(|r| r.iter().map(|x| tidy(*x)).collect())
                .collect(),
            step_weights: e.step_weights.iter().map(|x| tidy(*x)).collect(),
            known_features: e
                .future_weights
                .as_ref()
                .map(|_| FEATURE_NAMES[N_MEASURED..].to_vec()),
            future_weights: e.future_weights.as_ref().map(|m| tidy_rows(m)),
            attention: e.attention.as_ref().map(|m| tidy_rows(m)),
        }
    });
    let points = (0..fc.horizon())
        .map(|k| ForecastPoint {
            timestamp: rfc3339(end + (k as i64 + 1) * step),
            p10: tidy(fc.p10[k]),
            p50: tidy(fc.p50[k]),
            p90: tidy(fc.p90[k]),
            quantiles: None,
        })
        .collect();
    ForecastResponse {
        group: None,
        model,
        served_model: None,
        reason: None,
        degraded: None,
        step_seconds: step,
        history_end: rfc3339(end),
        points,
        explanation,
    }
}

/// Forecast from a window sent in the body; nothing is stored.
///
/// The samples are validated like an ingest batch and put on the grid
/// (`step_seconds`, default the service's step).
#[utoipa::path(
    post,
    path = "/v1/forecast",
    tag = "forecast",
    request_body(content = StatelessForecastRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ForecastResponse),
        (status = 401, description = "Tokens are configured and the bearer token is missing or wrong", body = ErrorBody),
        (status = 400, description = "Malformed JSON, bad model or horizon", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "A sample is invalid, or too little history", body = ErrorBody),
    )
)]
pub async fn stateless_forecast(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<ForecastResponse>, ApiError> {
    let body = read_json(&req, payload, state.max_body_bytes).await?;
    let samples = parse_batch(
        &body,
        &state.ingest,
        now(),
        &["model", "horizon", "step_seconds"],
    )?;
    let field = |name: &str| body.get(name).filter(|v| !v.is_null());
    let model = match field("model") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| ValidationError::new("model", "must be a string"))?,
        ),
    };
    // A window in a body has no accuracy record: `auto` needs a stored
    // group; by default the global default candidate serves.
    let model = match pick_model(&state, model)? {
        ModelSpec::Fixed(m) => m,
        ModelSpec::Auto if model.is_some() => {
            return Err(ValidationError::new(
                "model",
                "auto chooses per stored group from its accuracy record; name a model here, or use GET /v1/groups/{group}/forecast",
            )
            .into());
        }
        ModelSpec::Auto => named_model(&state, state.ledgers.default_candidate())?,
    };
    let horizon = match field("horizon") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ValidationError::new("horizon", "must be a positive integer"))?
                as usize,
        ),
    };
    let horizon = check_horizon(horizon)?;
    let cfg = state.store.config();
    let step = match field("step_seconds") {
        None => cfg.step,
        Some(v) => v
            .as_i64()
            .filter(|s| (60..=86_400).contains(s))
            .ok_or_else(|| {
                ValidationError::new("step_seconds", "must be an integer from 60 to 86400")
            })?,
    };
    let (lo, hi) = samples.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
        (lo.min(s.timestamp), hi.max(s.timestamp))
    });
    let span_steps = (hi - lo) / step + 1;
    if span_steps > MAX_STATELESS_STEPS {
        return Err(ValidationError::new(
            "samples",
            format!(
                "the samples span {span_steps} steps of {step} s; at most {MAX_STATELESS_STEPS} are accepted"
            ),
        )
        .into());
    }
    let window = grid(
        &samples,
        GridSpec {
            step,
            max_gap_steps: Some(cfg.max_gap_steps),
        },
    );
    let f = forecast_window(&state, model, window, horizon, false, None).await?;
    Ok(web::Json(forecast_response(f)))
}
