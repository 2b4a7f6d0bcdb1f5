//! `/v1/forecast`: stateless forecasts (the window travels in the body),
//! and the response shape shared with the per-group forecast.

use actix_web::{HttpRequest, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::groups::{check_horizon, pick_model};
use super::openapi::StatelessForecastRequest;
use super::{ApiError, AppState, ErrorBody, now, read_json, resource};
use crate::cache::{CacheKey, Tier};
use crate::domain::{FEATURE_NAMES, N_MEASURED, ScalingGroup, rfc3339};
use crate::forecast::{ForecastError, Forecaster};
use crate::ingest::{ValidationError, parse_batch};
use crate::store::{GridSpec, MetricWindow, grid};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/forecast", web::post().to(stateless_forecast)));
}

/// One forecast step.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastPoint {
    /// Start of the step, RFC 3339 UTC, on the step grid.
    pub timestamp: String,
    pub p10: f32,
    pub p50: f32,
    pub p90: f32,
}

/// A quantile forecast of `cpu_usage_pct`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastResponse {
    /// The group (absent for stateless forecasts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub model: String,
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

/// Run a model off the async workers and shape the answer.
pub(super) async fn run_forecast(
    state: &AppState,
    model: Forecaster,
    window: MetricWindow,
    horizon: usize,
    explain: bool,
    group: Option<&ScalingGroup>,
) -> Result<ForecastResponse, ApiError> {
    let end = window.end().unwrap_or_default();
    let step = window.step;
    let name = model.name().to_owned();
    if explain
        && matches!(
            model,
            Forecaster::Naive { .. } | Forecaster::SeasonalNaive { .. }
        )
    {
        return Err(ApiError::BadParameter {
            field: "explain".into(),
            message: format!(
                "{name} has no attention to explain; use a trained model (bilstm, lstm, tft)"
            ),
        });
    }
    let (fc, explanation) = match (&model, group) {
        // A stored group's window: the encoder output may be cached.
        (Forecaster::Neural(m), Some(g)) if !explain => {
            m.check(&window.rows, horizon)?;
            let input = m.input(&window.rows);
            let key = CacheKey::new(m.name(), &m.file.version, g, end, &input);
            let emb = match state.cache.get(&key).await {
                Some((tier, e)) => {
                    state.metrics.cache_lookup(match tier {
                        Tier::Memory => "hit_memory",
                        Tier::Redis => "hit_redis",
                    });
                    e
                }
                None => {
                    state.metrics.cache_lookup("miss");
                    let m2 = m.clone();
                    let e = web::block(move || m2.encode_input(&input))
                        .await?
                        .map_err(|e| ForecastError::Model(e.to_string()))?;
                    state.metrics.encoder_run(&name);
                    state.cache.put(key, e.clone()).await;
                    e
                }
            };
            (m.forecast_from(&emb, horizon)?, None)
        }
        _ => {
            let neural = matches!(model, Forecaster::Neural(_));
            let out = web::block(move || {
                let fc = model.forecast(&window.rows, horizon)?;
                let ex = if explain {
                    model.explain(&window.rows).transpose()?
                } else {
                    None
                };
                Ok::<_, ForecastError>((fc, ex))
            })
            .await??;
            if neural {
                state.metrics.encoder_run(&name);
            }
            out
        }
    };
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
    state.metrics.forecast_served(&name);
    let points = (0..fc.horizon())
        .map(|k| ForecastPoint {
            timestamp: rfc3339(end + (k as i64 + 1) * step),
            p10: tidy(fc.p10[k]),
            p50: tidy(fc.p50[k]),
            p90: tidy(fc.p90[k]),
        })
        .collect();
    Ok(ForecastResponse {
        group: None,
        model: name,
        step_seconds: step,
        history_end: rfc3339(end),
        points,
        explanation,
    })
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
    let model = pick_model(&state, model)?;
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
    Ok(web::Json(
        run_forecast(&state, model, window, horizon, false, None).await?,
    ))
}
