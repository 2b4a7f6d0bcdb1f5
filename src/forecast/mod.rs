//! Forecast: history rows -> a [`QuantileForecast`] (p10, p50, p90 for each
//! of H future steps). Pure and synchronous.
//!
//! The models are variants of one enum, [`Forecaster`]. The baselines:
//! - `naive`: p50 = the last observed value.
//! - `snaive`: p50 = the value one season (288 steps, a day) earlier.
//!
//! Their p10/p90 come from empirical residuals over the last `calibration`
//! steps of the history: for naive, the h-step changes y[t+h] - y[t] for
//! each horizon h; for seasonal naive, y[t] - y[t-288]. Quantiles are
//! clamped at 0 (CPU cannot be negative) and sorted, so p10 <= p50 <= p90
//! always holds.

mod baseline;

use serde::Serialize;

use crate::store::WindowRow;

pub use baseline::quantile;

/// Quantiles forecast for each of `horizon` steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantileForecast {
    pub p10: Vec<f32>,
    pub p50: Vec<f32>,
    pub p90: Vec<f32>,
}

impl QuantileForecast {
    pub fn horizon(&self) -> usize {
        self.p50.len()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("the window has {have} usable steps of history; {model} needs at least {need}")]
    NotEnoughHistory {
        model: &'static str,
        have: usize,
        need: usize,
    },
    #[error("horizon must be between 1 and {max}, got {got}")]
    BadHorizon { got: usize, max: usize },
}

/// Longest horizon served (a day at 5-minute steps).
pub const MAX_HORIZON: usize = 288;
/// Season of the seasonal naive baseline: one day of 5-minute steps.
pub const DAY_STEPS: usize = 288;
/// Residual history used for the baselines' quantiles: one week.
pub const DEFAULT_CALIBRATION: usize = 2016;

/// A forecasting model.
#[derive(Debug, Clone, PartialEq)]
pub enum Forecaster {
    Naive { calibration: usize },
    SeasonalNaive { period: usize, calibration: usize },
}

impl Forecaster {
    /// Names accepted by `?model=` and `--models`.
    pub const NAMES: [&'static str; 2] = ["naive", "snaive"];

    /// The model of that name with default settings.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "naive" => Some(Self::Naive {
                calibration: DEFAULT_CALIBRATION,
            }),
            "snaive" => Some(Self::SeasonalNaive {
                period: DAY_STEPS,
                calibration: DEFAULT_CALIBRATION,
            }),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Naive { .. } => "naive",
            Self::SeasonalNaive { .. } => "snaive",
        }
    }

    /// Rows of history the model reads at most (older rows are ignored).
    pub fn lookback(&self, horizon: usize) -> usize {
        match self {
            Self::Naive { calibration } => calibration + horizon,
            Self::SeasonalNaive {
                period,
                calibration,
            } => calibration + period,
        }
    }

    /// Forecast the `horizon` steps after the last row of `history`.
    pub fn forecast(
        &self,
        history: &[WindowRow],
        horizon: usize,
    ) -> Result<QuantileForecast, ForecastError> {
        if horizon == 0 || horizon > MAX_HORIZON {
            return Err(ForecastError::BadHorizon {
                got: horizon,
                max: MAX_HORIZON,
            });
        }
        let start = history.len().saturating_sub(self.lookback(horizon));
        let y: Vec<f32> = history[start..].iter().map(WindowRow::target).collect();
        match self {
            Self::Naive { .. } => baseline::naive(&y, horizon),
            Self::SeasonalNaive { period, .. } => baseline::seasonal_naive(&y, *period, horizon),
        }
    }
}
