//! The step grid: raw samples -> one row per step.
//!
//! Rule (EVAL.md (docs/forecast-evaluation.md)): bucket = floor(t / step) * step; several samples in a
//! bucket are averaged feature by feature (over the samples that carry the
//! feature); empty buckets between two observed ones are linearly
//! interpolated when the gap is short, and marked missing when it is long.
//! The dataset loaders use the same code with no gap limit.

use std::collections::BTreeMap;

use crate::domain::{MetricSample, N_MEASURED, TARGET};

/// How a grid row came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// At least one sample fell in the bucket.
    Observed,
    /// Filled by linear interpolation across a short gap.
    Interpolated,
    /// Inside a gap too long to interpolate: every value is absent.
    Missing,
}

/// One step of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Start of the bucket, Unix seconds (a multiple of the step).
    pub timestamp: i64,
    pub values: [Option<f32>; N_MEASURED],
    pub capacity: Option<f32>,
    pub state: RowState,
}

impl WindowRow {
    pub fn missing(timestamp: i64) -> Self {
        Self {
            timestamp,
            values: [None; N_MEASURED],
            capacity: None,
            state: RowState::Missing,
        }
    }

    /// The forecast target, NaN when absent.
    pub fn target(&self) -> f32 {
        self.values[TARGET].unwrap_or(f32::NAN)
    }
}

/// A run of consecutive steps of one group, oldest first, no holes in time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricWindow {
    pub step: i64,
    pub rows: Vec<WindowRow>,
}

impl MetricWindow {
    /// Timestamp of the last row.
    pub fn end(&self) -> Option<i64> {
        self.rows.last().map(|r| r.timestamp)
    }

    /// Rows filled by interpolation.
    pub fn interpolated(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.state == RowState::Interpolated)
            .count()
    }
}

/// Grid settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridSpec {
    pub step: i64,
    /// Longest run of empty buckets that is interpolated; `None` = any.
    pub max_gap_steps: Option<usize>,
}

/// Bucket start of a timestamp (floor, also for negative times).
pub fn bucket(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

#[derive(Default)]
struct Acc {
    sum: [f64; N_MEASURED],
    n: [u32; N_MEASURED],
    cap_sum: f64,
    cap_n: u32,
}

impl Acc {
    fn row(&self, timestamp: i64) -> WindowRow {
        let mut values = [None; N_MEASURED];
        for (j, v) in values.iter_mut().enumerate() {
            if self.n[j] > 0 {
                *v = Some((self.sum[j] / f64::from(self.n[j])) as f32);
            }
        }
        WindowRow {
            timestamp,
            values,
            capacity: (self.cap_n > 0).then(|| (self.cap_sum / f64::from(self.cap_n)) as f32),
            state: RowState::Observed,
        }
    }
}

/// Put samples (any order) on the grid.
pub fn grid(samples: &[MetricSample], spec: GridSpec) -> MetricWindow {
    let mut buckets: BTreeMap<i64, Acc> = BTreeMap::new();
    for s in samples {
        let acc = buckets.entry(bucket(s.timestamp, spec.step)).or_default();
        for (j, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                acc.sum[j] += f64::from(*v);
                acc.n[j] += 1;
            }
        }
        if let Some(c) = s.capacity {
            acc.cap_sum += f64::from(c);
            acc.cap_n += 1;
        }
    }
    let mut rows: Vec<WindowRow> = Vec::with_capacity(buckets.len());
    for (ts, acc) in &buckets {
        let row = acc.row(*ts);
        if let Some(prev) = rows.last() {
            let gap = ((ts - prev.timestamp) / spec.step - 1) as usize;
            if gap > 0 {
                let short = spec.max_gap_steps.is_none_or(|m| gap <= m);
                let prev = prev.clone();
                for k in 1..=gap {
                    let t = prev.timestamp + k as i64 * spec.step;
                    rows.push(if short {
                        interpolate(&prev, &row, k as f32 / (gap + 1) as f32, t)
                    } else {
                        WindowRow::missing(t)
                    });
                }
            }
        }
        rows.push(row);
    }
    MetricWindow {
        step: spec.step,
        rows,
    }
}

fn lerp(a: Option<f32>, b: Option<f32>, w: f32) -> Option<f32> {
    Some(a? + (b? - a?) * w)
}

fn interpolate(a: &WindowRow, b: &WindowRow, w: f32, timestamp: i64) -> WindowRow {
    let mut values = [None; N_MEASURED];
    for (j, v) in values.iter_mut().enumerate() {
        *v = lerp(a.values[j], b.values[j], w);
    }
    WindowRow {
        timestamp,
        values,
        capacity: lerp(a.capacity, b.capacity, w),
        state: RowState::Interpolated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_gap: Option<usize>) -> GridSpec {
        GridSpec {
            step: 300,
            max_gap_steps: max_gap,
        }
    }

    #[test]
    fn averages_within_a_bucket_and_interpolates_short_gaps() {
        let s = [
            MetricSample::cpu_only(1, 10.0),
            MetricSample::cpu_only(299, 20.0),
            MetricSample::cpu_only(1200, 45.0), // three empty buckets (300..900) before it
        ];
        let w = grid(&s, spec(Some(3)));
        let ts: Vec<i64> = w.rows.iter().map(|r| r.timestamp).collect();
        assert_eq!(ts, [0, 300, 600, 900, 1200]);
        assert_eq!(w.rows[0].target(), 15.0);
        assert_eq!(w.rows[1].state, RowState::Interpolated);
        assert_eq!(w.rows[1].target(), 22.5);
        assert_eq!(w.rows[3].target(), 37.5);
        assert_eq!(w.interpolated(), 3);
        // One step longer than allowed: missing instead.
        let w = grid(&s, spec(Some(2)));
        assert_eq!(w.rows[1].state, RowState::Missing);
    }

    #[test]
    fn long_gaps_are_missing_not_invented() {
        let s = [
            MetricSample::cpu_only(0, 10.0),
            MetricSample::cpu_only(3000, 20.0),
        ];
        let w = grid(&s, spec(Some(3)));
        assert_eq!(w.rows.len(), 11);
        assert!(w.rows[1..10].iter().all(|r| r.state == RowState::Missing));
        assert!(w.rows[5].target().is_nan());
        let all = grid(&s, spec(None));
        assert!((all.rows[5].target() - 15.0).abs() < 1e-5);
    }

    #[test]
    fn feature_absent_on_one_side_stays_absent() {
        let mut a = MetricSample::cpu_only(0, 10.0);
        a.values[4] = Some(50.0);
        let b = MetricSample::cpu_only(600, 20.0);
        let w = grid(&[a, b], spec(None));
        assert_eq!(w.rows[1].values[4], None);
        assert_eq!(w.rows[1].target(), 15.0);
    }
}
