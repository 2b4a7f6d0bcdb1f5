//! Forecasts of windows and stored groups through the embedding cache:
//! the one path the forecast endpoint, the decision cycle and the control
//! loop share. A trained model's encoder output is looked up by
//! (model, version, group, window end, input fingerprint); only misses run
//! the encoder, as one batch off the async workers.

use std::sync::Arc;

use crate::accuracy::{Calibrator, Reason};
use crate::cache::{CacheKey, Tier};
use crate::domain::{HORIZON, ScalingGroup};
use crate::features::ModelInput;
use crate::forecast::{
    Embedding, Explanation, ForecastError, Forecaster, MAX_HORIZON, NeuralModel, QuantileForecast,
};
use crate::store::MetricWindow;

use super::accuracy::OnDegraded;
use super::{AppError, AppState};

/// What a request asks to be served by: one model for every group, or
/// per group the candidate its accuracy ledger chose (`auto`).
#[derive(Debug, Clone)]
pub enum ModelSpec {
    Fixed(Forecaster),
    Auto,
}

/// The model named (`auto` included), or the service's default.
pub fn pick_model(state: &AppState, name: Option<&str>) -> Result<ModelSpec, AppError> {
    let name = name.unwrap_or(&state.default_model);
    if name == AUTO {
        return Ok(ModelSpec::Auto);
    }
    named_model(state, name).map(ModelSpec::Fixed)
}

/// The loaded model called `name` (not `auto`).
pub fn named_model(state: &AppState, name: &str) -> Result<Forecaster, AppError> {
    state.models.get(name).ok_or_else(|| {
        AppError::bad(
            "model",
            format!(
                "unknown model {name:?}; available: {}, {AUTO}",
                state.models.names().join(", ")
            ),
        )
    })
}

/// The name of the per-group choice.
pub const AUTO: &str = "auto";

/// The model serving one group, and why.
#[derive(Debug, Clone)]
pub struct Served {
    pub model: Forecaster,
    /// With `auto`: the served model's calibration for the group.
    pub calibrator: Option<Calibrator>,
    /// With `auto`: why this model (`no_evidence`, `best`, `switched`,
    /// `dwell`, or `degraded_fallback` when the chosen model was degraded
    /// and the fallback planned).
    pub reason: Option<&'static str>,
    /// With `auto`: the chosen model has been worse than naive over the
    /// last day.
    pub degraded: bool,
}

impl Served {
    /// Calibrate a forecast of the served model (a no-op without `auto`).
    pub fn calibrate(&self, fc: QuantileForecast) -> QuantileForecast {
        match &self.calibrator {
            Some(c) => c.apply(&fc),
            None => fc,
        }
    }
}

/// Resolve `spec` for `group`. `planning`: a plan will be made from the
/// forecast, so a degraded group gets what `--on-degraded` says.
pub async fn serve(
    state: &AppState,
    spec: &ModelSpec,
    group: &ScalingGroup,
    planning: bool,
) -> Result<Served, AppError> {
    if let ModelSpec::Fixed(model) = spec {
        return Ok(Served {
            model: model.clone(),
            calibrator: None,
            reason: None,
            degraded: false,
        });
    }
    let book = &state.ledgers;
    let choice = book.choice(group).await;
    let Some(c) = choice.filter(|c| state.models.get(&c.served).is_some()) else {
        return Ok(Served {
            model: named_model(state, book.default_candidate())?,
            calibrator: None,
            reason: Some(Reason::NoEvidence.code()),
            degraded: false,
        });
    };
    if planning
        && c.degraded
        && let OnDegraded::Fallback(name) = book.on_degraded()
    {
        return Ok(Served {
            model: named_model(state, name)?,
            calibrator: None,
            reason: Some("degraded_fallback"),
            degraded: true,
        });
    }
    Ok(Served {
        model: named_model(state, &c.served)?,
        calibrator: Some(c.calibrator.clone()),
        reason: Some(c.reason.code()),
        degraded: c.degraded,
    })
}

/// The horizon asked for (default [`HORIZON`]), checked before any work is
/// sized by it.
pub fn check_horizon(h: Option<usize>) -> Result<usize, AppError> {
    let h = h.unwrap_or(HORIZON);
    if h == 0 || h > MAX_HORIZON {
        return Err(ForecastError::BadHorizon {
            got: h,
            max: MAX_HORIZON,
        }
        .into());
    }
    Ok(h)
}

/// A window the encoder has yet to run on.
#[derive(Debug, Clone)]
pub struct Miss {
    pub key: CacheKey,
    pub input: ModelInput,
}

/// The answer of the cache for one window.
#[derive(Debug)]
pub enum Lookup {
    Hit(Embedding),
    Miss(Miss),
}

/// Look a stored group's window up in the embedding cache (counted in
/// `/metrics`).
pub async fn lookup(
    state: &AppState,
    m: &NeuralModel,
    group: &ScalingGroup,
    window: &MetricWindow,
) -> Lookup {
    let input = m.input(&window.rows);
    let end = window.end().unwrap_or_default();
    let key = CacheKey::new(m.name(), &m.file.version, group, end, &input);
    match state.cache.get(&key).await {
        Some((tier, e)) => {
            state.metrics.cache_lookup(match tier {
                Tier::Memory => "hit_memory",
                Tier::Redis => "hit_redis",
            });
            Lookup::Hit(e)
        }
        None => {
            state.metrics.cache_lookup("miss");
            Lookup::Miss(Miss { key, input })
        }
    }
}

/// Run the encoder once over every miss (one batch, off the async
/// workers; both cores for large batches) and cache the outputs. The
/// outputs come in the order of `misses`.
pub async fn encode(
    state: &AppState,
    m: &Arc<NeuralModel>,
    misses: Vec<Miss>,
) -> Result<Vec<Embedding>, ForecastError> {
    if misses.is_empty() {
        return Ok(Vec::new());
    }
    let (keys, inputs): (Vec<CacheKey>, Vec<ModelInput>) =
        misses.into_iter().map(|x| (x.key, x.input)).unzip();
    let m2 = m.clone();
    let embs = tokio::task::spawn_blocking(move || {
        let refs: Vec<&ModelInput> = inputs.iter().collect();
        m2.encode_batch(&refs)
    })
    .await
    .map_err(|e| ForecastError::Model(format!("encoder task: {e}")))?
    .map_err(|e| ForecastError::Model(e.to_string()))?;
    for (key, e) in keys.into_iter().zip(&embs) {
        state.metrics.encoder_run(m.name());
        state.cache.put(key, e.clone()).await;
    }
    Ok(embs)
}

/// A forecast of one window.
#[derive(Debug, Clone)]
pub struct WindowForecast {
    pub model: String,
    /// Start of the newest bucket, Unix seconds.
    pub end: i64,
    pub step_seconds: i64,
    pub forecast: QuantileForecast,
    /// With `explain`: the trained model's attention.
    pub explanation: Option<Explanation>,
}

/// Forecast a window. With a group (a stored group's window) a trained
/// model's encoder output may come from the cache; an explanation always
/// runs the whole network.
pub async fn forecast_window(
    state: &AppState,
    model: Forecaster,
    window: MetricWindow,
    horizon: usize,
    explain: bool,
    group: Option<&ScalingGroup>,
) -> Result<WindowForecast, AppError> {
    let end = window.end().unwrap_or_default();
    let step_seconds = window.step;
    let name = model.name().to_owned();
    if explain
        && matches!(
            model,
            Forecaster::Naive { .. }
                | Forecaster::SeasonalNaive { .. }
                | Forecaster::Ets
                | Forecaster::Mstl
        )
    {
        return Err(AppError::bad(
            "explain",
            format!("{name} has no attention to explain; use a trained model (bilstm, lstm, tft)"),
        ));
    }
    let (forecast, explanation) = match (&model, group) {
        (Forecaster::Neural(m), Some(g)) if !explain => {
            m.check(&window.rows, horizon)?;
            let emb = match lookup(state, m, g, &window).await {
                Lookup::Hit(e) => e,
                Lookup::Miss(miss) => encode(state, m, vec![miss])
                    .await?
                    .pop()
                    .ok_or_else(|| AppError::model("the encoder returned nothing"))?,
            };
            (m.forecast_from(&emb, horizon)?, None)
        }
        _ => {
            let neural = matches!(model, Forecaster::Neural(_));
            let out = tokio::task::spawn_blocking(move || {
                let fc = model.forecast(&window.rows, horizon)?;
                let ex = if explain {
                    model.explain(&window.rows).transpose()?
                } else {
                    None
                };
                Ok::<_, ForecastError>((fc, ex))
            })
            .await
            .map_err(|e| AppError::Internal(e.to_string()))??;
            if neural {
                state.metrics.encoder_run(&name);
            }
            out
        }
    };
    state.metrics.forecast_served(&name);
    Ok(WindowForecast {
        model: name,
        end,
        step_seconds,
        forecast,
        explanation,
    })
}

/// Forecast a stored group from its window on the step grid
/// ([`AppError::GroupNotFound`] when it has no samples); also the capacity
/// in service in its newest row that has one.
pub async fn forecast_group(
    state: &AppState,
    group: &ScalingGroup,
    model: Forecaster,
    horizon: usize,
    explain: bool,
) -> Result<(WindowForecast, Option<u32>), AppError> {
    let window = state
        .store
        .window(group, model.lookback(horizon))
        .await?
        .ok_or_else(|| AppError::GroupNotFound(group.to_string()))?;
    // Capacity in service in the newest row that has one.
    let capacity_now = window
        .rows
        .iter()
        .rev()
        .find_map(|r| r.capacity)
        .map(|c| c.round().max(0.0) as u32);
    let f = forecast_window(state, model, window, horizon, explain, Some(group)).await?;
    Ok((f, capacity_now))
}

/// A stored group's forecast by the service's default model (with `auto`,
/// as planning serves it: see [`serve`]): what the control loop plans
/// from.
#[derive(Debug, Clone)]
pub struct StoredForecast {
    pub model: String,
    /// With `auto`: why `model` served.
    pub reason: Option<&'static str>,
    /// With `auto`: the group's chosen model is degraded.
    pub degraded: bool,
    /// Start of the newest bucket, Unix seconds.
    pub end: i64,
    pub step_seconds: i64,
    pub p50: Vec<f32>,
    /// Capacity in service in its newest row that has one.
    pub capacity_now: Option<u32>,
}

/// The default model's forecast of a stored group, with the same checks as
/// `GET /v1/groups/{group}/forecast`.
pub async fn forecast_stored(
    state: &AppState,
    group: &ScalingGroup,
    horizon: usize,
) -> Result<StoredForecast, AppError> {
    let spec = pick_model(state, None)?;
    let horizon = check_horizon(Some(horizon))?;
    let served = serve(state, &spec, group, true).await?;
    let (f, capacity_now) =
        forecast_group(state, group, served.model.clone(), horizon, false).await?;
    Ok(StoredForecast {
        model: f.model,
        reason: served.reason,
        degraded: served.degraded,
        end: f.end,
        step_seconds: f.step_seconds,
        // Four decimals, as the forecast endpoint answers: the loop plans
        // from the numbers the API shows (the median is never calibrated).
        p50: f
            .forecast
            .p50
            .iter()
            .map(|x| (x * 1e4).round() / 1e4)
            .collect(),
        capacity_now,
    })
}
