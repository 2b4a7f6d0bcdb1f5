//! Features: a grid window -> the model input `[L, 23]` plus an
//! availability mask. Pure and synchronous.
//!
//! - Measured features are z-scored with [`NormStats`] that travel with a
//!   model (fit on its training split only), or, for models trained with
//!   window inputs, scaled by the window itself ([`normalise_rows`]), so
//!   that no absolute level (memory at 90 %, a group ten times larger)
//!   decides a forecast.
//! - An absent value (never sent, or in a missing row) gets the neutral
//!   value, the training mean, i.e. 0 after normalisation, and mask 0.
//! - Calendar features come from the row's timestamp (UTC) and are always
//!   available: `hour_of_day` = (h + m/60) / 24, `day_of_week` = Monday 0 ..
//!   Sunday 6, / 7, `minute_of_hour` = m / 60, each in [0, 1) and wrapping.
//!   They are z-scored like the rest.
//! - A window shorter than L is left-padded with absent rows (mask 0).

use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};

use crate::domain::{N_FEATURES, N_MEASURED, TARGET};
use crate::store::{MetricWindow, WindowRow};

/// Per-feature mean and standard deviation, in model order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The target (CPU %) is modelled as log(1 + cpu): `mean`/`std` of the
    /// target are then those of the log, and forecasts go back through
    /// exp(v) - 1. Quantiles survive a monotone map, so the model still
    /// predicts the quantiles of CPU itself; what changes is the weight of
    /// errors: relative, so a near-idle series counts as much as a busy
    /// one. Off (older models): CPU as it is.
    #[serde(default)]
    pub log_target: bool,
    /// Scale every measured feature by its own window instead of `mean` /
    /// `std` ([`normalise_rows`]): no absolute level reaches the network,
    /// and a forecast is equivariant to the scale of a group's load. The
    /// calendar keeps the global statistics. Off (older models): global.
    #[serde(default)]
    pub per_window: bool,
}

/// Smallest standard deviation used; a constant feature is divided by 1.
const MIN_STD: f64 = 1e-6;

impl NormStats {
    /// No scaling: mean 0, std 1.
    pub fn identity() -> Self {
        Self {
            mean: vec![0.0; N_FEATURES],
            std: vec![1.0; N_FEATURES],
            log_target: false,
            per_window: false,
        }
    }

    /// A raw value of feature `j` before z-scoring (the log for the
    /// target when `log_target`).
    pub fn transform(&self, j: usize, x: f32) -> f32 {
        if self.log_target && j == TARGET {
            x.max(0.0).ln_1p()
        } else {
            x
        }
    }

    /// Raw value of feature `j` -> model scale.
    pub fn normalise(&self, j: usize, x: f32) -> f32 {
        (self.transform(j, x) - self.mean[j]) / self.std[j]
    }

    /// A normalised target back to CPU % under the global statistics,
    /// clamped at 0 (monotone, so the order of quantiles is kept).
    pub fn denormalise_target(&self, z: f32) -> f32 {
        let v = z * self.std[TARGET] + self.mean[TARGET];
        if self.log_target { v.exp_m1() } else { v }.max(0.0)
    }

    /// Fit on rows (typically every training row of every series). A feature
    /// never seen keeps mean 0 and std 1.
    pub fn fit<'a>(rows: impl IntoIterator<Item = &'a WindowRow>) -> Self {
        Self::fit_with(rows, false)
    }

    /// Fit, with the target as log(1 + cpu) when `log_target`.
    pub fn fit_with<'a>(rows: impl IntoIterator<Item = &'a WindowRow>, log_target: bool) -> Self {
        let t = Self {
            log_target,
            ..Self::identity()
        };
        // Welford, in f64.
        let mut n = [0u64; N_FEATURES];
        let mut mean = [0f64; N_FEATURES];
        let mut m2 = [0f64; N_FEATURES];
        for row in rows {
            for (j, v) in row_features(row).iter().enumerate() {
                if let Some(x) = v {
                    let x = f64::from(t.transform(j, *x));
                    n[j] += 1;
                    let d = x - mean[j];
                    mean[j] += d / n[j] as f64;
                    m2[j] += d * (x - mean[j]);
                }
            }
        }
        let mut out = t;
        for j in 0..N_FEATURES {
            if n[j] > 0 {
                out.mean[j] = mean[j] as f32;
                let sd = (m2[j] / n[j] as f64).sqrt();
                out.std[j] = if sd > MIN_STD { sd as f32 } else { 1.0 };
            }
        }
        out
    }

    /// Check the shape and that every number is finite and usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.mean.len() != N_FEATURES || self.std.len() != N_FEATURES {
            return Err(format!(
                "normalisation statistics must have {N_FEATURES} entries"
            ));
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
        {
            return Err("normalisation statistics must be finite with std > 0".into());
        }
        Ok(())
    }
}

/// The three calendar features of a timestamp (UTC), each in [0, 1).
pub fn calendar(ts: i64) -> [f32; 3] {
    let Some(t) = chrono::DateTime::from_timestamp(ts, 0) else {
        return [0.0; 3];
    };
    let (h, m) = (t.hour() as f32, t.minute() as f32);
    [
        (h + m / 60.0) / 24.0,
        t.weekday().num_days_from_monday() as f32 / 7.0,
        m / 60.0,
    ]
}

/// All 23 features of one row, absent ones `None`.
pub fn row_features(row: &WindowRow) -> [Option<f32>; N_FEATURES] {
    let mut out = [None; N_FEATURES];
    out[..N_MEASURED].copy_from_slice(&row.values);
    for (k, c) in calendar(row.timestamp).into_iter().enumerate() {
        out[N_MEASURED + k] = Some(c);
    }
    out
}

/// A normalised model input, row-major `[steps, 23]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub steps: usize,
    pub values: Vec<f32>,
    /// 1 where the value was available, 0 where it got the neutral value.
    pub mask: Vec<f32>,
    /// Known future inputs, row-major `[H, 3]`: the normalised calendar of
    /// the forecast steps (models that read them: the TFT); empty otherwise.
    pub future: Vec<f32>,
    /// The target's window scaling: CPU = `shift + unit * z` for a
    /// normalised value z. (0, 1) under global statistics.
    pub shift: f32,
    pub unit: f32,
}

/// Relative floor of the target's unit in a window: a flat window of
/// level m gets 2 % of |m|, so the unit scales with the load.
pub const WINDOW_REL_FLOOR: f32 = 0.02;
/// Floor of a covariate's unit in a window, as a share of its global
/// standard deviation: a near-constant covariate's noise is not blown up,
/// and its level never enters.
pub const COVARIATE_FLOOR: f32 = 0.1;
/// Absolute floor of every unit (a window of zeros).
pub const WINDOW_ABS_FLOOR: f32 = 1e-3;

/// Normalise `steps` raw rows, row-major `[steps][23]` with NaN where
/// absent (calendar columns raw), per window: each measured feature minus
/// the mean of its present values in the window, over their standard
/// deviation plus a floor: [`WINDOW_REL_FLOOR`] x |mean| for the target
/// (scale-equivariant), [`COVARIATE_FLOOR`] x the global standard
/// deviation for a covariate (shift-invariant), and [`WINDOW_ABS_FLOOR`];
/// the calendar by the global statistics. Returns the values, the mask
/// and the target's (shift, unit).
pub fn normalise_rows(raw: &[f32], stats: &NormStats) -> (Vec<f32>, Vec<f32>, f32, f32) {
    let steps = raw.len() / N_FEATURES;
    let mut values = vec![0.0; raw.len()];
    let mut mask = vec![0.0; raw.len()];
    let (mut shift, mut unit) = (0.0, 1.0);
    for j in 0..N_FEATURES {
        let col = (0..steps).map(|i| raw[i * N_FEATURES + j]);
        if j >= N_MEASURED {
            for (i, x) in col.enumerate().filter(|(_, x)| !x.is_nan()) {
                values[i * N_FEATURES + j] = stats.normalise(j, x);
                mask[i * N_FEATURES + j] = 1.0;
            }
            continue;
        }
        let (mut n, mut sum) = (0usize, 0f64);
        for x in col.clone().filter(|x| !x.is_nan()) {
            n += 1;
            sum += f64::from(x);
        }
        if n == 0 {
            continue;
        }
        let m = sum / n as f64;
        let var = col
            .clone()
            .filter(|x| !x.is_nan())
            .map(|x| (f64::from(x) - m).powi(2))
            .sum::<f64>()
            / n as f64;
        let floor = if j == TARGET {
            f64::from(WINDOW_REL_FLOOR) * m.abs()
        } else {
            f64::from(COVARIATE_FLOOR) * f64::from(stats.std[j])
        };
        let u = (var.sqrt() + floor + f64::from(WINDOW_ABS_FLOOR)) as f32;
        let m = m as f32;
        for (i, x) in col.enumerate().filter(|(_, x)| !x.is_nan()) {
            values[i * N_FEATURES + j] = (x - m) / u;
            mask[i * N_FEATURES + j] = 1.0;
        }
        if j == TARGET {
            (shift, unit) = (m, u);
        }
    }
    (values, mask, shift, unit)
}

/// The raw rows of `rows`, left-padded to `steps`: row-major `[steps][23]`,
/// NaN where absent, the calendar as computed from the timestamps.
pub fn raw_rows(rows: &[WindowRow], steps: usize) -> Vec<f32> {
    let rows = &rows[rows.len().saturating_sub(steps)..];
    let pad = steps - rows.len();
    let mut raw = vec![f32::NAN; steps * N_FEATURES];
    for (i, row) in rows.iter().enumerate() {
        let base = (pad + i) * N_FEATURES;
        for (j, v) in row_features(row).iter().enumerate() {
            if let Some(x) = v {
                raw[base + j] = *x;
            }
        }
    }
    raw
}

/// Encode the last `steps` rows of a window.
pub fn encode(window: &MetricWindow, stats: &NormStats, steps: usize) -> ModelInput {
    if stats.per_window {
        let (values, mask, shift, unit) = normalise_rows(&raw_rows(&window.rows, steps), stats);
        return ModelInput {
            steps,
            values,
            mask,
            future: Vec::new(),
            shift,
            unit,
        };
    }
    let rows = &window.rows[window.rows.len().saturating_sub(steps)..];
    let pad = steps - rows.len();
    let mut values = vec![0.0; steps * N_FEATURES];
    let mut mask = vec![0.0; steps * N_FEATURES];
    for (i, row) in rows.iter().enumerate() {
        let base = (pad + i) * N_FEATURES;
        for (j, v) in row_features(row).iter().enumerate() {
            if let Some(x) = v {
                values[base + j] = stats.normalise(j, *x);
                mask[base + j] = 1.0;
            }
        }
    }
    ModelInput {
        steps,
        values,
        mask,
        future: Vec::new(),
        shift: 0.0,
        unit: 1.0,
    }
}

/// The normalised calendar of the `horizon` steps after `last` (Unix
/// seconds), `step` seconds apart: row-major `[horizon, 3]`.
pub fn future_calendar(last: i64, step: i64, horizon: usize, stats: &NormStats) -> Vec<f32> {
    (1..=horizon as i64)
        .flat_map(|k| {
            calendar(last + k * step)
                .into_iter()
                .enumerate()
                .map(|(j, v)| stats.normalise(N_MEASURED + j, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FEATURE_BOUNDS;
    use crate::store::RowState;
    use proptest::prelude::*;

    fn row(ts: i64, values: [Option<f32>; N_MEASURED]) -> WindowRow {
        WindowRow {
            timestamp: ts,
            values,
            capacity: None,
            state: RowState::Observed,
        }
    }

    /// Parity with an independent implementation of the window scaling
    /// (`notebooks/window_inputs_reference.py`, plain Python): a level far
    /// from any training mean, a constant covariate, a column never sent,
    /// gaps, and a flat target.
    #[test]
    fn window_inputs_match_the_reference() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parity/window-inputs.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let floats = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32))
                .collect()
        };
        let rows = |v: &serde_json::Value| -> Vec<f32> {
            v.as_array().unwrap().iter().flat_map(&floats).collect()
        };
        let cases = fixture["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 3);
        for (k, c) in cases.iter().enumerate() {
            let stats = NormStats {
                mean: floats(&c["mean"]),
                std: floats(&c["std"]),
                log_target: false,
                per_window: true,
            };
            let (values, mask, shift, unit) = normalise_rows(&rows(&c["raw"]), &stats);
            let (want_values, want_mask) = (rows(&c["values"]), rows(&c["mask"]));
            assert_eq!(values.len(), want_values.len(), "case {k}");
            assert_eq!(mask, want_mask, "case {k}");
            for (i, (g, w)) in values.iter().zip(&want_values).enumerate() {
                assert!((g - w).abs() < 1e-5, "case {k}, value {i}: {g} vs {w}");
            }
            let close =
                |g: f32, w: &serde_json::Value| (g - w.as_f64().unwrap() as f32).abs() < 1e-5;
            assert!(
                close(shift, &c["shift"]) && close(unit, &c["unit"]),
                "case {k}: ({shift}, {unit})"
            );
        }
    }

    #[test]
    fn calendar_of_a_known_time() {
        // 2013-08-01T14:30:00Z was a Thursday.
        let c = calendar(1_375_367_400);
        assert!((c[0] - 14.5 / 24.0).abs() < 1e-6);
        assert!((c[1] - 3.0 / 7.0).abs() < 1e-6);
        assert!((c[2] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn absent_values_are_neutral_and_masked_and_short_windows_padded() {
        let mut v = [None; N_MEASURED];
        v[0] = Some(30.0);
        let w = MetricWindow {
            step: 300,
            rows: vec![row(0, v), WindowRow::missing(300)],
        };
        let mut stats = NormStats::identity();
        stats.mean[0] = 10.0;
        stats.std[0] = 5.0;
        let x = encode(&w, &stats, 3);
        assert_eq!(x.values.len(), 3 * N_FEATURES);
        assert!(x.mask[..N_FEATURES].iter().all(|m| *m == 0.0)); // padding
        assert_eq!(x.values[N_FEATURES], 4.0); // (30 - 10) / 5
        assert_eq!(x.mask[N_FEATURES + 1], 0.0); // cpu_freq absent
        assert_eq!(x.values[2 * N_FEATURES], 0.0); // missing row: neutral
        assert_eq!(x.mask[2 * N_FEATURES + N_MEASURED], 1.0); // calendar known
    }

    #[test]
    fn window_inputs_scale_with_the_load_and_ignore_levels() {
        let raw = |cpu_scale: f32, mem_shift: f32| -> Vec<f32> {
            let mut r = vec![f32::NAN; 6 * N_FEATURES];
            for i in 0..6 {
                r[i * N_FEATURES] = cpu_scale * (10.0 + i as f32);
                r[i * N_FEATURES + 4] = mem_shift + 30.0 + (i % 2) as f32;
                r[i * N_FEATURES + N_MEASURED] = 0.5;
            }
            r
        };
        let mut stats = NormStats::identity();
        stats.per_window = true;
        stats.std[4] = 10.0;
        let (a, mask, shift, unit) = normalise_rows(&raw(1.0, 0.0), &stats);
        let (b, _, shift_b, unit_b) = normalise_rows(&raw(7.0, 0.0), &stats);
        let (c, _, _, _) = normalise_rows(&raw(1.0, 55.0), &stats);
        assert!((shift - 12.5).abs() < 1e-5);
        assert!((shift_b - 7.0 * shift).abs() < 1e-4);
        assert!((unit_b - 7.0 * unit).abs() < 1e-3 * unit_b);
        for i in 0..6 {
            let at = i * N_FEATURES;
            assert!((a[at] - b[at]).abs() < 1e-3, "CPU shape kept at any scale");
            assert_eq!(a[at + 4], c[at + 4], "memory level never enters");
            assert_eq!(a[at + N_MEASURED], 0.5, "calendar by the global statistics");
            assert_eq!((mask[at + 1], a[at + 1]), (0.0, 0.0), "absent: neutral");
        }
        // CPU back: shift + unit * z.
        assert!((shift + unit * a[5 * N_FEATURES] - 15.0).abs() < 1e-4);
    }

    #[test]
    fn fit_uses_only_present_values() {
        let mut a = [None; N_MEASURED];
        a[0] = Some(1.0);
        let mut b = [None; N_MEASURED];
        b[0] = Some(3.0);
        let rows = [row(0, a), row(300, b), WindowRow::missing(600)];
        let s = NormStats::fit(&rows);
        assert_eq!(s.mean[0], 2.0);
        assert_eq!(s.std[0], 1.0);
        assert_eq!((s.mean[5], s.std[5]), (0.0, 1.0));
        s.validate().unwrap();
    }

    fn arb_value(j: usize) -> impl Strategy<Value = Option<f32>> {
        let (lo, hi) = FEATURE_BOUNDS[j];
        prop_oneof![Just(None), (lo..=hi).prop_map(|x| Some(x as f32))]
    }

    fn arb_row() -> impl Strategy<Value = WindowRow> {
        let vals: Vec<_> = (0..N_MEASURED).map(arb_value).collect();
        (0i64..4_000_000_000, vals).prop_map(|(ts, v)| {
            let mut values = [None; N_MEASURED];
            values.copy_from_slice(&v);
            row(ts, values)
        })
    }

    proptest! {
        #[test]
        fn encoding_is_always_finite(rows in prop::collection::vec(arb_row(), 0..40), steps in 1usize..48) {
            let stats = NormStats::fit(&rows);
            prop_assert!(stats.validate().is_ok());
            let w = MetricWindow { step: 300, rows };
            let x = encode(&w, &stats, steps);
            prop_assert_eq!(x.values.len(), steps * N_FEATURES);
            prop_assert!(x.values.iter().all(|v| v.is_finite()));
            prop_assert!(x.mask.iter().all(|m| *m == 0.0 || *m == 1.0));
            let per_window = NormStats { per_window: true, ..stats };
            let y = encode(&w, &per_window, steps);
            prop_assert!(y.values.iter().all(|v| v.is_finite()));
            prop_assert!(y.shift.is_finite() && y.unit > 0.0);
        }
    }
}
