//! Scoring on the validation origins: the kept weights and the naive
//! forecast on the same points, pooled and split by dataset, so early
//! stopping and the card compare like with like.

use serde::Serialize;

use super::{Architecture, NormStats, Origin, Prepared, TrainNet, gather, known_inputs};
use crate::eval::AbsErrors;

/// MAE of the median (original scale) over origins, and the median over
/// series of MAE / seasonal scale.
pub(super) fn val_metrics(
    net: &TrainNet,
    arch: &Architecture,
    data: &[Prepared],
    origins: &[Origin],
    stats: &NormStats,
) -> candle_core::Result<(f64, f64)> {
    let dims = (arch.lookback(), arch.horizon(), known_inputs(arch));
    let mut errors = AbsErrors::new(data.len());
    for chunk in origins.chunks(1024) {
        let b = gather(data, stats, chunk, dims, None)?;
        let q = net.forward(&b.x, &b.future, None)?.to_vec3::<f32>()?;
        for ((&(s, t), steps), (shift, unit)) in chunk.iter().zip(&q).zip(&b.scaling) {
            for (k, step) in steps.iter().enumerate() {
                let p50 = if stats.per_window {
                    (shift + unit * step[1]).max(0.0)
                } else {
                    stats.denormalise_target(step[1])
                };
                errors.add(s, f64::from((data[s].y_raw[t + k] - p50).abs()));
            }
        }
    }
    Ok((errors.mae(), errors.median_mase(|s| data[s].scale)))
}

/// The naive forecast (last value) on the same validation origins: the
/// reference a trained network has to beat, printed with the log.
pub(super) fn naive_val_metrics(data: &[Prepared], origins: &[Origin], h: usize) -> (f64, f64) {
    let mut errors = AbsErrors::new(data.len());
    for &(s, t) in origins {
        let last = data[s].y_raw[t - 1];
        for k in 0..h {
            errors.add(s, f64::from((data[s].y_raw[t + k] - last).abs()));
        }
    }
    (errors.mae(), errors.median_mase(|s| data[s].scale))
}

/// One dataset's share of the validation origins.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetVal {
    pub dataset: String,
    pub origins: usize,
    pub mae: f64,
    pub mase_median: f64,
    pub naive_mae: f64,
    pub naive_mase_median: f64,
}

/// The validation scores split by dataset (the part of a series id before
/// its first `/`); empty when every series comes from one dataset.
pub(super) fn val_by_dataset(
    net: &TrainNet,
    arch: &Architecture,
    data: &[Prepared],
    ids: &[&str],
    origins: &[Origin],
    stats: &NormStats,
) -> candle_core::Result<Vec<DatasetVal>> {
    let dataset = |s: usize| ids[s].split_once('/').map(|(d, _)| d);
    let mut names: Vec<&str> = origins.iter().filter_map(|o| dataset(o.0)).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() < 2 {
        return Ok(Vec::new());
    }
    names
        .into_iter()
        .map(|name| {
            let mine: Vec<Origin> = origins
                .iter()
                .copied()
                .filter(|o| dataset(o.0) == Some(name))
                .collect();
            let (mae, mase_median) = val_metrics(net, arch, data, &mine, stats)?;
            let (naive_mae, naive_mase_median) = naive_val_metrics(data, &mine, arch.horizon());
            Ok(DatasetVal {
                dataset: name.to_string(),
                origins: mine.len(),
                mae,
                mase_median,
                naive_mae,
                naive_mase_median,
            })
        })
        .collect()
}
