//! Forecasts for a replay, computed once per trace and forecaster and
//! reused by every policy that reads them.

use std::sync::Arc;

use crate::domain::{N_MEASURED, TARGET};
use crate::forecast::{ModelError, NeuralModel};
use crate::store::{RowState, WindowRow};

use super::traces::{PEAK, Trace};

/// Season of the seasonal-naive forecaster: one day of 5-minute steps.
pub const SEASON: usize = 288;

/// Where a replay's forecasts come from.
#[derive(Debug, Clone)]
pub enum SimForecaster {
    /// The last value for every step.
    Naive,
    /// The value one day before each step.
    SeasonalNaive,
    /// A trained network; the trace's load is fed to it as CPU percent of
    /// the trace's peak (d / 20 * 100).
    Neural(Arc<NeuralModel>),
}

impl SimForecaster {
    /// `naive`, `snaive`, or a trained model of `models` by name.
    pub fn by_name(name: &str, models: &crate::forecast::ModelRegistry) -> Option<Self> {
        match name {
            "naive" => Some(Self::Naive),
            "snaive" => Some(Self::SeasonalNaive),
            m => models
                .neural()
                .find(|n| n.name() == m)
                .cloned()
                .map(Self::Neural),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Naive => "naive".into(),
            Self::SeasonalNaive => "snaive".into(),
            Self::Neural(m) => m.name().to_owned(),
        }
    }

    /// Forecasts made at every decision step from `from` to the trace's
    /// end, `horizon` steps each.
    pub fn table(
        &self,
        trace: &Trace,
        from: usize,
        horizon: usize,
    ) -> Result<ForecastTable, ModelError> {
        let d = &trace.load;
        let n = d.len().saturating_sub(from);
        let mut q = Vec::with_capacity(n * horizon);
        match self {
            Self::Naive => {
                for t in from..d.len() {
                    let v = d[t - 1] as f32;
                    q.extend(std::iter::repeat_n([v; 3], horizon));
                }
            }
            Self::SeasonalNaive => {
                for t in from..d.len() {
                    for k in 0..horizon {
                        let s = t + k;
                        let v = if s >= SEASON { d[s - SEASON] } else { d[t - 1] } as f32;
                        q.push([v; 3]);
                    }
                }
            }
            Self::Neural(m) => {
                let scale = 100.0 / PEAK;
                let rows: Vec<WindowRow> = d
                    .iter()
                    .enumerate()
                    .map(|(t, v)| {
                        let mut values = [None; N_MEASURED];
                        values[TARGET] = Some((v * scale) as f32);
                        WindowRow {
                            timestamp: trace.timestamp(t),
                            values,
                            capacity: None,
                            state: RowState::Observed,
                        }
                    })
                    .collect();
                let h = horizon.min(m.horizon());
                // Chunks bound the memory of the inputs.
                for chunk in (from..d.len()).collect::<Vec<_>>().chunks(4096) {
                    let inputs: Vec<_> = chunk.iter().map(|t| m.input(&rows[..*t])).collect();
                    let out = m.forecast_batch(&inputs)?;
                    for f in out.iter() {
                        for k in 0..horizon {
                            let k = k.min(h - 1);
                            let s = |v: f32| (f64::from(v) / scale).max(0.0) as f32;
                            q.push([s(f.p10[k]), s(f.p50[k]), s(f.p90[k])]);
                        }
                    }
                }
            }
        }
        Ok(ForecastTable { from, horizon, q })
    }
}

/// Quantiles (p10, p50, p90) of `horizon` steps for each decision step.
#[derive(Debug, Clone)]
pub struct ForecastTable {
    pub from: usize,
    pub horizon: usize,
    pub q: Vec<[f32; 3]>,
}

impl ForecastTable {
    /// The forecast made at decision step t, for steps t.. .
    pub fn at(&self, t: usize) -> Option<&[[f32; 3]]> {
        let i = t.checked_sub(self.from)?;
        self.q.get(i * self.horizon..(i + 1) * self.horizon)
    }
}
