//! Online calibration of one model's quantiles for one group: quantile
//! tracking (the "P" part of conformal PID control, Angelopoulos, Candès
//! and Tibshirani 2023; adaptive conformal inference applied to the
//! quantile itself rather than to its level).
//!
//! The score of a point is its distance from the model's median in units
//! of the model's own half-band at that step (`p50 - p10` below,
//! `p90 - p50` above). For each horizon step and each level of
//! [`LEVELS`] a multiplier `m` places the calibrated quantile at
//! `p50 -/+ m * half-band`, and each actual nudges it:
//! `m += rate * (miss - share)`, where `miss` says the actual fell outside
//! that quantile and `share` is how often it should (0.1 for p90). Over
//! any long run the share of misses then converges to the level, whatever
//! the model gets wrong, and the tracker follows regime changes at the
//! speed `rate` sets. A fresh calibrator reproduces the model's p10 and
//! p90 and extends them to other levels as a normal distribution would.
//! The median is the model's own: calibration shapes the band, not the
//! point forecast.

use serde::{Deserialize, Serialize};

use crate::forecast::QuantileForecast;

/// The levels tracked; any level in between is interpolated.
pub const LEVELS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.75, 0.9, 0.95, 0.975, 0.99];
/// Lowest and highest level a caller may ask for.
pub const MIN_LEVEL: f64 = 0.01;
pub const MAX_LEVEL: f64 = 0.99;
/// Largest multiplier: a band 50 times the model's is not a forecast.
const MAX_MULT: f32 = 50.0;
/// Default step of the trackers, in multiples of the model's half-band.
pub const DEFAULT_RATE: f32 = 0.1;

/// z-score of a level under the standard normal.
fn z(level: f64) -> f64 {
    distrs::Normal::ppf(level, 0.0, 1.0)
}

/// The multiplier a fresh calibrator gives `level`: the model's band
/// read as a normal 80 % interval.
fn prior(level: f64) -> f32 {
    (z(level).abs() / z(0.9)) as f32
}

/// Quantile trackers of one model for one group, per horizon step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// `mult[h][i]`: multiplier of level `LEVELS[i]` at step `h`.
    mult: Vec<[f32; LEVELS.len()]>,
    /// Actuals seen per step.
    updates: Vec<u32>,
    rate: f32,
}

/// The half-bands of a forecast at step `h`, floored so that a model
/// that claims certainty still has a band to scale.
fn half_bands(fc: &QuantileForecast, h: usize) -> (f32, f32) {
    let floor = 1e-3 + 0.01 * fc.p50[h].abs();
    (
        (fc.p50[h] - fc.p10[h]).max(floor),
        (fc.p90[h] - fc.p50[h]).max(floor),
    )
}

impl Calibrator {
    pub fn new(horizon: usize, rate: f32) -> Self {
        let row = LEVELS.map(prior);
        Self {
            mult: vec![row; horizon],
            updates: vec![0; horizon],
            rate,
        }
    }

    pub fn horizon(&self) -> usize {
        self.mult.len()
    }

    /// Actuals seen at each step.
    pub fn updates(&self) -> &[u32] {
        &self.updates
    }

    /// The multiplier of `level` at step `h`, interpolated in z between
    /// the tracked levels (0 at the median).
    fn mult_at(&self, h: usize, level: f64) -> f32 {
        let row = &self.mult[h];
        let zl = z(level);
        // The tracked levels on the same side as `level`, from the median out.
        let (side, zs): (Vec<usize>, f64) = if level < 0.5 {
            ((0..5).rev().collect(), -1.0)
        } else {
            ((5..LEVELS.len()).collect(), 1.0)
        };
        let target = zs * zl;
        let (mut z0, mut m0) = (0.0, 0.0f32);
        for i in side {
            let (zi, mi) = (zs * z(LEVELS[i]), row[i]);
            if target <= zi {
                let w = ((target - z0) / (zi - z0)) as f32;
                return m0 + w * (mi - m0);
            }
            (z0, m0) = (zi, mi);
        }
        m0
    }

    /// The calibrated quantile `level` (within [`MIN_LEVEL`, `MAX_LEVEL`])
    /// of `fc` at step `h`, at least 0.
    pub fn quantile(&self, fc: &QuantileForecast, h: usize, level: f64) -> f32 {
        let (lo, hi) = half_bands(fc, h);
        let m = self.mult_at(h, level.clamp(MIN_LEVEL, MAX_LEVEL));
        let q = if level < 0.5 {
            fc.p50[h] - lo * m
        } else {
            fc.p50[h] + hi * m
        };
        q.max(0.0)
    }

    /// `fc` with its p10 and p90 calibrated (the median kept).
    pub fn apply(&self, fc: &QuantileForecast) -> QuantileForecast {
        let h = fc.horizon().min(self.horizon());
        let mut out = fc.clone();
        out.truncate(h);
        for k in 0..h {
            out.p10[k] = self.quantile(fc, k, 0.1).min(fc.p50[k]);
            out.p90[k] = self.quantile(fc, k, 0.9).max(fc.p50[k]);
        }
        out
    }

    /// Learn from the actual `y` of the raw forecast `fc` at step `h`.
    pub fn update(&mut self, fc: &QuantileForecast, h: usize, y: f32) {
        if h >= self.horizon() || !y.is_finite() {
            return;
        }
        let (lo, hi) = half_bands(fc, h);
        let rate = self.rate;
        let row = &mut self.mult[h];
        for (i, level) in LEVELS.iter().enumerate() {
            let (miss, share) = if *level < 0.5 {
                (y < fc.p50[h] - lo * row[i], *level)
            } else {
                (y > fc.p50[h] + hi * row[i], 1.0 - *level)
            };
            row[i] =
                (row[i] + rate * (f32::from(u8::from(miss)) - share as f32)).clamp(0.0, MAX_MULT);
        }
        // Quantiles must not cross: multipliers grow from the median out.
        for i in (0..4).rev() {
            row[i] = row[i].max(row[i + 1]);
        }
        for i in 6..LEVELS.len() {
            row[i] = row[i].max(row[i - 1]);
        }
        self.updates[h] = self.updates[h].saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(p10: f32, p50: f32, p90: f32) -> QuantileForecast {
        QuantileForecast {
            p10: vec![p10],
            p50: vec![p50],
            p90: vec![p90],
        }
    }

    #[test]
    fn a_fresh_calibrator_keeps_the_model_band() {
        let c = Calibrator::new(1, DEFAULT_RATE);
        let f = fc(8.0, 10.0, 13.0);
        assert_eq!(c.apply(&f), f);
        // Other levels: the band read as a normal 80 % interval.
        let q99 = c.quantile(&f, 0, 0.99);
        let expected = 10.0 + 3.0 * (2.326_348 / 1.281_552);
        assert!((q99 - expected).abs() < 1e-3, "{q99} vs {expected}");
        assert_eq!(c.quantile(&f, 0, 0.5), 10.0);
        // Levels between tracked ones are monotone.
        let qs: Vec<f32> = [0.01, 0.03, 0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 0.93, 0.99]
            .iter()
            .map(|l| c.quantile(&f, 0, *l))
            .collect();
        assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
    }

    /// A deterministic stream of standard normal draws (Box-Muller on an
    /// LCG), enough for a calibration check.
    fn normals(n: usize) -> Vec<f32> {
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut u = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (a, b) = (u(), u());
                ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn an_overconfident_model_gets_a_band_that_covers_80_percent() {
        // The model claims a band of +-1 around 50; the truth has sd 3, so
        // its own band covers about 26 % of points.
        let mut c = Calibrator::new(1, DEFAULT_RATE);
        let f = fc(49.0, 50.0, 51.0);
        let ys: Vec<f32> = normals(20_000).iter().map(|e| 50.0 + 3.0 * e).collect();
        let (mut covered, mut below99) = (0usize, 0usize);
        let scored = &ys[2_000..];
        for y in &ys[..2_000] {
            c.update(&f, 0, *y);
        }
        for y in scored {
            let band = c.apply(&f);
            covered += usize::from(band.p10[0] <= *y && *y <= band.p90[0]);
            below99 += usize::from(*y <= c.quantile(&f, 0, 0.99));
            c.update(&f, 0, *y);
        }
        let cov = covered as f64 / scored.len() as f64;
        let q99 = below99 as f64 / scored.len() as f64;
        assert!((0.77..=0.83).contains(&cov), "coverage {cov}");
        assert!((0.975..=0.995).contains(&q99), "p99 holds {q99}");
        assert_eq!(c.updates()[0], 20_000);
    }

    #[test]
    fn a_model_that_is_right_stays_close_to_itself() {
        let mut c = Calibrator::new(1, DEFAULT_RATE);
        let f = fc(50.0 - 1.281_552, 50.0, 50.0 + 1.281_552);
        for e in normals(5_000) {
            c.update(&f, 0, 50.0 + e);
        }
        let band = c.apply(&f);
        assert!((band.p90[0] - f.p90[0]).abs() < 0.4, "{band:?}");
        assert!((band.p10[0] - f.p10[0]).abs() < 0.4, "{band:?}");
    }

    #[test]
    fn quantiles_never_cross_and_never_go_negative() {
        let mut c = Calibrator::new(1, 0.5);
        let f = fc(0.5, 1.0, 1.5);
        for y in [100.0, 0.0, 100.0, 0.0, 0.0, 0.0, 50.0] {
            c.update(&f, 0, y);
            let qs: Vec<f32> = LEVELS.iter().map(|l| c.quantile(&f, 0, *l)).collect();
            assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
            assert!(qs.iter().all(|q| *q >= 0.0));
        }
        // A non-finite actual or a step beyond the horizon teaches nothing.
        let before = c.clone();
        c.update(&f, 0, f32::NAN);
        c.update(&f, 3, 1.0);
        assert_eq!(c, before);
    }
}
