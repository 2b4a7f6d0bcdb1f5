//! Forecast: history rows -> a [`QuantileForecast`] (p10, p50, p90 for each
//! of H future steps). Pure and synchronous.
//!
//! The models are variants of one enum, [`Forecaster`]. The baselines:
//! - `naive`: p50 = the last observed value.
//! - `snaive`: p50 = the value one season (288 steps, a day) earlier.
//!
//! Their p10/p90 come from empirical residuals over the last `calibration`
//! steps of the history: for naive, the h-step changes `y[t+h] - y[t]` for
//! each horizon h; for seasonal naive, `y[t] - y[t-288]`. Quantiles are
//! clamped at 0 (CPU cannot be negative) and sorted, so p10 <= p50 <= p90
//! always holds.
//!
//! The statistical models `ets` (AutoETS) and `mstl` (MSTL with a daily
//! season where one is detected) come from `augurs` ([`statistical`]);
//! the trained networks from `models/` ([`neural`]).

pub mod baseline;
pub mod bilstm_attention;
pub mod fast;
pub mod neural;
pub mod statistical;
pub mod tft;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::WindowRow;

pub use baseline::quantile;
pub use neural::{Embedding, Explanation, ModelError, NeuralModel};

/// Quantiles forecast for each of `horizon` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileForecast {
    pub p10: Vec<f32>,
    pub p50: Vec<f32>,
    pub p90: Vec<f32>,
}

impl QuantileForecast {
    pub fn horizon(&self) -> usize {
        self.p50.len()
    }

    /// Keep the first `h` steps.
    pub fn truncate(&mut self, h: usize) {
        self.p10.truncate(h);
        self.p50.truncate(h);
        self.p90.truncate(h);
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
    #[error("the model failed: {0}")]
    Model(String),
}

/// Longest horizon served (a day at 5-minute steps).
pub const MAX_HORIZON: usize = 288;
/// Season of the seasonal naive baseline: one day of 5-minute steps.
pub const DAY_STEPS: usize = 288;
/// Residual history used for the baselines' quantiles: one week.
pub const DEFAULT_CALIBRATION: usize = 2016;

/// A forecasting model.
#[derive(Debug, Clone)]
pub enum Forecaster {
    Naive {
        calibration: usize,
    },
    SeasonalNaive {
        period: usize,
        calibration: usize,
    },
    /// AutoETS, refitted on the last day at every call (`ets`).
    Ets,
    /// MSTL with a daily season where one is detected, else AutoETS
    /// (`mstl`).
    Mstl,
    /// A trained network (`bilstm`, `lstm`).
    Neural(Arc<NeuralModel>),
}

impl Forecaster {
    /// Names of the models that need no weights, always available.
    pub const NAMES: [&'static str; 4] = ["naive", "snaive", "ets", "mstl"];

    /// The baseline of that name with default settings.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "naive" => Some(Self::Naive {
                calibration: DEFAULT_CALIBRATION,
            }),
            "snaive" => Some(Self::SeasonalNaive {
                period: DAY_STEPS,
                calibration: DEFAULT_CALIBRATION,
            }),
            "ets" => Some(Self::Ets),
            "mstl" => Some(Self::Mstl),
            _ => None,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Naive { .. } => "naive",
            Self::SeasonalNaive { .. } => "snaive",
            Self::Ets => "ets",
            Self::Mstl => "mstl",
            Self::Neural(m) => m.name(),
        }
    }

    /// Longest horizon the model forecasts.
    pub fn max_horizon(&self) -> usize {
        match self {
            Self::Naive { .. } | Self::SeasonalNaive { .. } | Self::Ets | Self::Mstl => MAX_HORIZON,
            Self::Neural(m) => m.horizon(),
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
            Self::Ets => statistical::ETS_LOOKBACK,
            Self::Mstl => statistical::MSTL_LOOKBACK,
            Self::Neural(m) => m.lookback(),
        }
    }

    /// The attention behind a forecast; `None` for models without one (the
    /// baselines).
    pub fn explain(&self, history: &[WindowRow]) -> Option<Result<Explanation, ForecastError>> {
        match self {
            Self::Neural(m) => Some(
                m.explain(history)
                    .map_err(|e| ForecastError::Model(e.to_string())),
            ),
            Self::Naive { .. } | Self::SeasonalNaive { .. } | Self::Ets | Self::Mstl => None,
        }
    }

    /// Forecast the `horizon` steps after the last row of `history`.
    pub fn forecast(
        &self,
        history: &[WindowRow],
        horizon: usize,
    ) -> Result<QuantileForecast, ForecastError> {
        if horizon == 0 || horizon > self.max_horizon() {
            return Err(ForecastError::BadHorizon {
                got: horizon,
                max: self.max_horizon(),
            });
        }
        if let Self::Neural(m) = self {
            return m.forecast(history, horizon);
        }
        let start = history.len().saturating_sub(self.lookback(horizon));
        let y: Vec<f32> = history[start..].iter().map(WindowRow::target).collect();
        match self {
            Self::Naive { .. } => baseline::naive(&y, horizon),
            Self::SeasonalNaive { period, .. } => baseline::seasonal_naive(&y, *period, horizon),
            Self::Ets => statistical::ets(&y, horizon),
            Self::Mstl => statistical::mstl(&y, horizon),
            Self::Neural(_) => unreachable!("handled above"),
        }
    }
}

/// The models a process can serve: the baselines and every trained model
/// found in the models folder.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    neural: BTreeMap<String, Arc<NeuralModel>>,
}

impl ModelRegistry {
    /// Load every sub-folder of `dir` that has a `config.json`. A missing
    /// folder is an empty registry (the baselines still serve).
    pub fn load_dir(dir: &Path) -> Result<Self, ModelError> {
        let mut neural = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(Self { neural });
        };
        let mut dirs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file())
            .collect();
        dirs.sort();
        for d in dirs {
            let m = NeuralModel::load(&d)?;
            neural.insert(m.name().to_owned(), Arc::new(m));
        }
        Ok(Self { neural })
    }

    /// A model by name: a baseline or a loaded network.
    pub fn get(&self, name: &str) -> Option<Forecaster> {
        Forecaster::by_name(name).or_else(|| self.neural.get(name).cloned().map(Forecaster::Neural))
    }

    /// Every name `get` answers, baselines first.
    pub fn names(&self) -> Vec<String> {
        Forecaster::NAMES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(self.neural.keys().cloned())
            .collect()
    }

    pub fn neural(&self) -> impl Iterator<Item = &Arc<NeuralModel>> {
        self.neural.values()
    }
}
