//! Datasets: loaders for the shared traces and for the generic long CSV,
//! and EVAL.md (docs/forecast-evaluation.md)'s grid and chronological split.
//!
//! Every loader returns raw [`Series`] of [`MetricSample`]s; [`prepare`]
//! puts them on the EVAL.md grid (every gap interpolated) and splits them.
//! Values outside a feature's physical bounds become absent (a target out
//! of bounds drops the sample); [`LoadReport`] counts both.

mod long_csv;
mod shared;

use std::path::{Path, PathBuf};

pub use long_csv::{read_long_csv, write_long_csv};
pub use shared::SharedDataset;

use crate::domain::{FEATURE_BOUNDS, MetricSample, N_MEASURED, TARGET};
use crate::store::grid::{GridSpec, MetricWindow, grid};

/// One raw series (a VM, a task, a group), samples sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub id: String,
    pub samples: Vec<MetricSample>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error(
        "{0:?} is neither a dataset name ({names}) nor an existing CSV file",
        names = SharedDataset::NAMES.join(", ")
    )]
    UnknownDataset(String),
    #[error("{0}")]
    Empty(String),
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, line: u64, message: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// Where a dataset comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// One of the shared traces, under a data root (`../shared/data`).
    Shared {
        dataset: SharedDataset,
        root: PathBuf,
    },
    /// A file in the generic long CSV format.
    LongCsv(PathBuf),
}

impl DatasetSource {
    /// A dataset name (`bitbrains-rnd`, ...) or a path to a long CSV file.
    pub fn parse(spec: &str, data_root: &Path) -> Result<Self, DataError> {
        if let Some(dataset) = SharedDataset::by_name(spec) {
            return Ok(Self::Shared {
                dataset,
                root: data_root.to_owned(),
            });
        }
        let p = Path::new(spec);
        if p.is_file() {
            return Ok(Self::LongCsv(p.to_owned()));
        }
        Err(DataError::UnknownDataset(spec.to_owned()))
    }

    pub fn name(&self) -> String {
        match self {
            Self::Shared { dataset, .. } => dataset.name().to_owned(),
            Self::LongCsv(p) => p.display().to_string(),
        }
    }
}

/// What loading dropped or blanked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Samples dropped: target missing or out of bounds.
    pub dropped_samples: u64,
    /// Values (not target) made absent: out of bounds.
    pub blanked_values: u64,
}

/// Load every series of a source.
pub fn load(source: &DatasetSource) -> Result<(Vec<Series>, LoadReport), DataError> {
    let mut report = LoadReport::default();
    let series = match source {
        DatasetSource::Shared { dataset, root } => dataset.load(root, &mut report)?,
        DatasetSource::LongCsv(p) => read_long_csv(p, &mut report)?,
    };
    if series.is_empty() {
        return Err(DataError::Empty(format!("{} has no series", source.name())));
    }
    Ok((series, report))
}

/// Build a sample from raw values, enforcing bounds: a target out of bounds
/// drops the sample (`None`), another value out of bounds becomes absent.
pub(crate) fn bounded_sample(
    timestamp: i64,
    raw: [Option<f64>; N_MEASURED],
    capacity: Option<f64>,
    report: &mut LoadReport,
) -> Option<MetricSample> {
    let mut values = [None; N_MEASURED];
    for (j, v) in raw.iter().enumerate() {
        let Some(x) = *v else { continue };
        let (lo, hi) = FEATURE_BOUNDS[j];
        if x.is_finite() && (lo..=hi).contains(&x) {
            values[j] = Some(x as f32);
        } else if j != TARGET {
            report.blanked_values += 1;
        }
    }
    if values[TARGET].is_none() {
        report.dropped_samples += 1;
        return None;
    }
    Some(MetricSample {
        timestamp,
        values,
        capacity: capacity
            .filter(|c| c.is_finite() && *c >= 0.0)
            .map(|c| c as f32),
    })
}

/// Where EVAL.md's train split ends, % of a series (floor).
pub const TRAIN_END_PCT: usize = 70;
/// Where its validation split ends (the test split starts), % (floor).
pub const VAL_END_PCT: usize = 85;

/// EVAL.md's chronological split of a gridded series of `len` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// First validation step (= train length): floor(0.7 len).
    pub train_end: usize,
    /// First test step: floor(0.85 len).
    pub val_end: usize,
    pub len: usize,
}

impl Split {
    pub fn of_len(len: usize) -> Self {
        Self {
            train_end: len * TRAIN_END_PCT / 100,
            val_end: len * VAL_END_PCT / 100,
            len,
        }
    }
}

/// A series on the EVAL.md grid, with its split.
#[derive(Debug, Clone)]
pub struct GriddedSeries {
    pub id: String,
    pub window: MetricWindow,
    /// Empty buckets filled by interpolation.
    pub filled: usize,
    pub split: Split,
}

impl GriddedSeries {
    /// The target, one value per step.
    pub fn target(&self) -> Vec<f32> {
        self.window.rows.iter().map(|r| r.target()).collect()
    }
}

/// Grid every series (EVAL.md: mean per bucket, every gap interpolated)
/// and split it.
pub fn prepare(series: &[Series], step: i64) -> Vec<GriddedSeries> {
    let spec = GridSpec {
        step,
        max_gap_steps: None,
    };
    series
        .iter()
        .map(|s| {
            let window = grid(&s.samples, spec);
            GriddedSeries {
                id: s.id.clone(),
                filled: window.interpolated(),
                split: Split::of_len(window.rows.len()),
                window,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_uses_floor() {
        let s = Split::of_len(8627);
        assert_eq!((s.train_end, s.val_end), (6038, 7332));
        let s = Split::of_len(10);
        assert_eq!((s.train_end, s.val_end), (7, 8));
    }

    #[test]
    fn bounds_blank_values_and_drop_bad_targets() {
        let mut r = LoadReport::default();
        let mut raw = [None; N_MEASURED];
        raw[0] = Some(50.0);
        raw[4] = Some(153_600.0);
        let s = bounded_sample(0, raw, None, &mut r).unwrap();
        assert_eq!(s.values[4], None);
        raw[0] = Some(-1.0);
        assert!(bounded_sample(0, raw, None, &mut r).is_none());
        assert_eq!(
            r,
            LoadReport {
                dropped_samples: 1,
                blanked_values: 2
            }
        );
    }
}
