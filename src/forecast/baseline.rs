//! Naive and seasonal-naive forecasts with empirical-residual quantiles.
//! `y` is the target history, oldest first, NaN where missing.

use super::{ForecastError, QuantileForecast};

/// Fewest residuals from which quantiles are read; with fewer, the interval
/// collapses to the point forecast (there is nothing honest to say).
const MIN_RESIDUALS: usize = 8;

/// The q-quantile (linear interpolation between order statistics) of
/// `xs`, which is reordered. `None` for an empty slice.
pub fn quantile(xs: &mut [f32], q: f64) -> Option<f32> {
    if xs.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (xs.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = (pos - lo as f64) as f32;
    let (_, a, rest) = xs.select_nth_unstable_by(lo, f32::total_cmp);
    let a = *a;
    if frac == 0.0 || rest.is_empty() {
        return Some(a);
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
    Some(a + (b - a) * frac)
}

/// The 10 % and 90 % residual quantiles, or (0, 0) with too few residuals.
fn residual_bounds(residuals: &mut [f32]) -> (f32, f32) {
    if residuals.len() < MIN_RESIDUALS {
        return (0.0, 0.0);
    }
    (
        quantile(residuals, 0.1).unwrap_or(0.0),
        quantile(residuals, 0.9).unwrap_or(0.0),
    )
}

fn band(point: f32, (lo, hi): (f32, f32)) -> (f32, f32, f32) {
    let p50 = point.max(0.0);
    let p10 = (point + lo).max(0.0).min(p50);
    let p90 = (point + hi).max(p50);
    (p10, p50, p90)
}

fn last_observed(y: &[f32]) -> Option<f32> {
    y.iter().rev().copied().find(|v| !v.is_nan())
}

pub(super) fn naive(y: &[f32], horizon: usize) -> Result<QuantileForecast, ForecastError> {
    let last = last_observed(y).ok_or(ForecastError::NotEnoughHistory {
        model: "naive",
        have: 0,
        need: 1,
    })?;
    let mut out = QuantileForecast {
        p10: Vec::with_capacity(horizon),
        p50: Vec::with_capacity(horizon),
        p90: Vec::with_capacity(horizon),
    };
    let mut res = Vec::with_capacity(y.len());
    for h in 1..=horizon {
        res.clear();
        res.extend(
            y.windows(h + 1)
                .map(|w| w[h] - w[0])
                .filter(|r| !r.is_nan()),
        );
        let (a, b, c) = band(last, residual_bounds(&mut res));
        out.p10.push(a);
        out.p50.push(b);
        out.p90.push(c);
    }
    Ok(out)
}

pub(super) fn seasonal_naive(
    y: &[f32],
    period: usize,
    horizon: usize,
) -> Result<QuantileForecast, ForecastError> {
    let have = y.iter().filter(|v| !v.is_nan()).count();
    if y.len() < period || have == 0 {
        return Err(ForecastError::NotEnoughHistory {
            model: "snaive",
            have: y.len(),
            need: period,
        });
    }
    let mut res: Vec<f32> = (period..y.len())
        .map(|t| y[t] - y[t - period])
        .filter(|r| !r.is_nan())
        .collect();
    let n = y.len();
    let fallback = last_observed(y).unwrap_or(0.0);
    let mut out = QuantileForecast {
        p10: Vec::with_capacity(horizon),
        p50: Vec::with_capacity(horizon),
        p90: Vec::with_capacity(horizon),
    };
    let bounds = residual_bounds(&mut res);
    for h in 0..horizon {
        // Step n + h is forecast by step n + h - period; past one season
        // ahead, by the same time of the day the season repeats.
        let src = n + h - period * (1 + h / period);
        let v = y[src];
        let point = if v.is_nan() { fallback } else { v };
        let (a, b, c) = band(point, bounds);
        out.p10.push(a);
        out.p50.push(b);
        out.p90.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        let mut xs = vec![4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&mut xs, 0.5), Some(3.0));
        assert_eq!(quantile(&mut xs, 0.0), Some(1.0));
        assert_eq!(quantile(&mut xs, 1.0), Some(5.0));
        let mut ys = vec![0.0, 10.0];
        assert_eq!(quantile(&mut ys, 0.25), Some(2.5));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn naive_repeats_last_value_with_ordered_band() {
        let y: Vec<f32> = (0..100).map(|i| (i % 7) as f32 * 3.0).collect();
        let f = naive(&y, 12).unwrap();
        assert_eq!(f.horizon(), 12);
        assert!(f.p50.iter().all(|v| *v == y[99]));
        for h in 0..12 {
            assert!(f.p10[h] <= f.p50[h] && f.p50[h] <= f.p90[h]);
            assert!(f.p10[h] >= 0.0);
        }
        assert!(f.p90[0] > f.p50[0], "band should be non-degenerate");
    }

    #[test]
    fn naive_skips_missing_tail() {
        let y = [1.0, 2.0, f32::NAN];
        assert_eq!(naive(&y, 1).unwrap().p50, vec![2.0]);
        assert!(naive(&[f32::NAN], 1).is_err());
    }

    #[test]
    fn seasonal_naive_copies_yesterday() {
        let y: Vec<f32> = (0..600).map(|i| (i % 288) as f32).collect();
        let f = seasonal_naive(&y, 288, 12).unwrap();
        for h in 0..12 {
            assert_eq!(f.p50[h], ((600 + h) % 288) as f32);
            // The pattern repeats exactly: residuals are 0, the band is tight.
            assert_eq!(f.p10[h], f.p50[h]);
            assert_eq!(f.p90[h], f.p50[h]);
        }
        assert!(seasonal_naive(&y[..100], 288, 12).is_err());
    }
}
