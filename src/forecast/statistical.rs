//! Statistical forecasters from grafana's `augurs` crates (ports of
//! statsforecast), refitted on every call on the window's recent target:
//!
//! - `ets`: AutoETS, non-seasonal with additive errors (statsforecast's
//!   "AZN" search), on the last day.
//! - `mstl`: MSTL with a daily season and an AutoETS trend, on the last
//!   week, when the periodogram (`augurs-seasons`) finds a period within
//!   5 % of a day in it; otherwise the `ets` forecast.
//!
//! Quantiles: the point forecast is the median, p10 / p90 the model's own
//! 80 % prediction interval; all clamped at 0 and sorted. These are the
//! strong simple references that a learned model has to beat on data it
//! never fitted; they need no training and transfer by construction.

use augurs_core::{Fit, Predict};
use augurs_ets::AutoETS;
use augurs_ets::trend::AutoETSTrendModel;
use augurs_mstl::MSTLModel;
use augurs_seasons::PeriodogramDetector;

use super::{DAY_STEPS, ForecastError, QuantileForecast};

/// Steps `ets` fits on: one day.
pub const ETS_LOOKBACK: usize = DAY_STEPS;
/// Steps `mstl` fits on: one week.
pub const MSTL_LOOKBACK: usize = 7 * DAY_STEPS;
/// Fewest observed steps `ets` fits on.
const MIN_ETS: usize = 24;
/// Fewest steps on which a daily season is looked for (three days).
const MIN_SEASONAL: usize = 3 * DAY_STEPS;

/// The observed values of `y`, a gap carried forward from the last
/// observation (leading gaps dropped).
fn observed(y: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    let mut last: Option<f64> = None;
    for v in y {
        if v.is_finite() {
            last = Some(f64::from(*v));
        }
        if let Some(l) = last {
            out.push(l);
        }
    }
    out
}

fn model_err(e: impl std::fmt::Display) -> ForecastError {
    ForecastError::Model(e.to_string())
}

fn quantiles(f: &augurs_core::Forecast, horizon: usize) -> Result<QuantileForecast, ForecastError> {
    let iv = f
        .intervals
        .as_ref()
        .ok_or_else(|| ForecastError::Model("no prediction interval".into()))?;
    let mut out = QuantileForecast {
        p10: Vec::with_capacity(horizon),
        p50: Vec::with_capacity(horizon),
        p90: Vec::with_capacity(horizon),
    };
    for k in 0..horizon {
        let mut q = [iv.lower[k], f.point[k], iv.upper[k]].map(|v| {
            if v.is_finite() {
                v.max(0.0) as f32
            } else {
                f32::NAN
            }
        });
        if q.iter().any(|v| v.is_nan()) {
            return Err(ForecastError::Model("non-finite forecast".into()));
        }
        q.sort_by(f32::total_cmp);
        out.p10.push(q[0]);
        out.p50.push(q[1]);
        out.p90.push(q[2]);
    }
    Ok(out)
}

/// The model search: additive errors, any additive or damped trend, no
/// season (statsforecast's "AZN"). Multiplicative errors were left out:
/// on near-idle CPU series their intervals exploded (p90 in the millions
/// on NAB's EC2 traces).
fn auto_ets() -> Result<AutoETS, ForecastError> {
    AutoETS::new(1, "AZN").map_err(model_err)
}

/// AutoETS on the last [`ETS_LOOKBACK`] steps of `y`.
pub fn ets(y: &[f32], horizon: usize) -> Result<QuantileForecast, ForecastError> {
    let y = observed(&y[y.len().saturating_sub(ETS_LOOKBACK)..]);
    if y.len() < MIN_ETS {
        return Err(ForecastError::NotEnoughHistory {
            model: "ets",
            have: y.len(),
            need: MIN_ETS,
        });
    }
    let fitted = auto_ets()?.fit(&y).map_err(model_err)?;
    let f = fitted.predict(horizon, 0.8).map_err(model_err)?;
    quantiles(&f, horizon)
}

/// Smallest autocorrelation at a lag of one day that confirms a season.
const MIN_DAILY_ACF: f64 = 0.3;

/// True when `y` has a daily season: a peak of its periodogram
/// (`augurs-seasons`, Welch's method) whose frequency bin holds the
/// one-day period, confirmed by an autocorrelation of at least
/// 0.3 at a lag of one day. The periodogram's bins are
/// coarse at these lengths (one bin spans 255-510 steps on a week), so
/// it proposes and the autocorrelation decides.
pub fn has_daily_season(y: &[f64]) -> bool {
    if y.len() < MIN_SEASONAL {
        return false;
    }
    let y = &detrended(y);
    let day = DAY_STEPS as u32;
    let proposed = PeriodogramDetector::builder()
        .max_period(2 * day)
        .build()
        .periodogram(y)
        .peaks(0.5)
        .any(|p| {
            let longest = if p.prev_period == 0 {
                u32::MAX
            } else {
                p.prev_period
            };
            p.next_period <= day && day <= longest
        });
    proposed && autocorrelation(y, DAY_STEPS) >= MIN_DAILY_ACF
}

/// `y` less its least-squares line, so a trend is not taken for a season.
fn detrended(y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    let tm = (n - 1.0) / 2.0;
    let ym = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in y.iter().enumerate() {
        let dt = t as f64 - tm;
        sxy += dt * (v - ym);
        sxx += dt * dt;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    y.iter()
        .enumerate()
        .map(|(t, v)| v - ym - slope * (t as f64 - tm))
        .collect()
}

/// Sample autocorrelation of `y` at `lag` (0 for a constant series).
fn autocorrelation(y: &[f64], lag: usize) -> f64 {
    if y.len() <= lag {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let var: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    if var <= 1e-9 * y.len() as f64 {
        return 0.0;
    }
    let cov: f64 = (lag..y.len())
        .map(|t| (y[t] - mean) * (y[t - lag] - mean))
        .sum();
    cov / var
}

/// MSTL (daily season, AutoETS trend) on the last [`MSTL_LOOKBACK`] steps
/// of `y` when a daily season is found there; otherwise [`ets`].
pub fn mstl(y: &[f32], horizon: usize) -> Result<QuantileForecast, ForecastError> {
    let obs = observed(&y[y.len().saturating_sub(MSTL_LOOKBACK)..]);
    if !has_daily_season(&obs) {
        return ets(y, horizon);
    }
    let trend = AutoETSTrendModel::from(auto_ets()?);
    let fitted = MSTLModel::new(vec![DAY_STEPS], trend)
        .fit(&obs)
        .map_err(model_err)?;
    let f = fitted.predict(horizon, 0.8).map_err(model_err)?;
    quantiles(&f, horizon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(days: usize, noise: f32) -> Vec<f32> {
        (0..days * DAY_STEPS)
            .map(|t| {
                let phase = (t % DAY_STEPS) as f32 / DAY_STEPS as f32 * std::f32::consts::TAU;
                40.0 + 20.0 * phase.sin() + noise * ((t * 7919 % 13) as f32 - 6.0)
            })
            .collect()
    }

    #[test]
    fn ets_follows_a_level_and_its_band_holds_the_point() {
        let y: Vec<f32> = (0..300)
            .map(|t| 30.0 + ((t * 31 % 7) as f32 - 3.0))
            .collect();
        let f = ets(&y, 12).unwrap();
        assert_eq!(f.horizon(), 12);
        for k in 0..12 {
            assert!(f.p10[k] <= f.p50[k] && f.p50[k] <= f.p90[k]);
            assert!((f.p50[k] - 30.0).abs() < 3.0, "{}", f.p50[k]);
            assert!(f.p90[k] > f.p10[k], "a noisy series has a band");
        }
        assert!(matches!(
            ets(&[1.0; 10], 12),
            Err(ForecastError::NotEnoughHistory { .. })
        ));
    }

    #[test]
    fn mstl_finds_the_daily_season_and_forecasts_its_shape() {
        let y = daily(7, 0.5);
        let obs: Vec<f64> = y.iter().map(|v| f64::from(*v)).collect();
        assert!(has_daily_season(&obs));
        let f = mstl(&y, 12).unwrap();
        // The next 12 steps rise from the mean (the sine's first hour).
        let want: Vec<f32> = daily(8, 0.0)[7 * DAY_STEPS..7 * DAY_STEPS + 12].to_vec();
        for (k, (got, want)) in f.p50.iter().zip(&want).enumerate() {
            assert!((got - want).abs() < 2.0, "{k}: {got} vs {want}");
        }
        // A flat series, or a steady ramp, has no season: the ETS forecast.
        let flat: Vec<f64> = vec![10.0; 7 * DAY_STEPS];
        assert!(!has_daily_season(&flat));
        let ramp: Vec<f64> = (0..7 * DAY_STEPS).map(|t| t as f64 * 0.01).collect();
        assert!(!has_daily_season(&ramp));
        // Noise alone has none either.
        let noise: Vec<f64> = (0..7 * DAY_STEPS)
            .map(|t| ((t * 7919) % 101) as f64)
            .collect();
        assert!(!has_daily_season(&noise));
    }
}
