//! EVAL.md (docs/forecast-evaluation.md): rolling-origin evaluation of forecasters on gridded series, and
//! the CSV + Markdown report.
//!
//! Origins are t = test_start, test_start + H, ... while t + H <= len; at
//! each the model reads rows [0, t) and forecasts t .. t+H-1. Metrics are on
//! the original scale (CPU %), over all series, origins and horizon steps.

pub mod auto;
pub mod plots;
pub mod run;
pub mod suite;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::data::GriddedSeries;
use crate::forecast::{Forecaster, QuantileForecast, quantile};

/// A model an evaluation scores: one forecaster, or `auto` (the
/// service's per-group choice among candidates, replayed).
#[derive(Debug, Clone)]
pub enum EvalModel {
    One(Forecaster),
    Auto(auto::AutoSpec),
}

impl EvalModel {
    pub fn name(&self) -> &str {
        match self {
            Self::One(f) => f.name(),
            Self::Auto(_) => "auto",
        }
    }

    /// The forecaster, unless this is `auto`.
    pub fn forecaster(&self) -> Option<&Forecaster> {
        match self {
            Self::One(f) => Some(f),
            Self::Auto(_) => None,
        }
    }
}

impl From<Forecaster> for EvalModel {
    fn from(f: Forecaster) -> Self {
        Self::One(f)
    }
}

/// The evaluation settings (EVAL.md defaults).
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    pub horizon: usize,
    /// Season of the MASE scale (288 = a day of 5-minute steps).
    pub season: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            horizon: crate::domain::HORIZON,
            season: crate::forecast::DAY_STEPS,
        }
    }
}

/// Every EVAL.md metric of one model on one dataset.
#[derive(Debug, Clone, Serialize)]
pub struct ModelScores {
    pub model: String,
    pub series: usize,
    pub origins: usize,
    pub points: usize,
    pub mae: f64,
    pub rmse: f64,
    /// Median over series of test MAE / train seasonal-naive scale.
    pub mase_median: f64,
    pub mase_mean: f64,
    /// Series with a usable (non-zero) MASE scale.
    pub mase_series: usize,
    /// Mean pinball loss over the three quantiles.
    pub pinball: f64,
    pub pinball_q10: f64,
    pub pinball_q50: f64,
    pub pinball_q90: f64,
    /// Mean over the three quantiles of 2 * sum(pinball) / sum(|y|).
    pub wql: f64,
    /// Share of points with p10 <= y <= p90.
    pub coverage: f64,
    /// Share of points at or below each quantile (calibration: ideally
    /// 0.1, 0.5, 0.9).
    pub below_p10: f64,
    pub below_p50: f64,
    pub below_p90: f64,
    pub mean_width: f64,
    pub r2: f64,
    /// Median wall time of one forecast call (batch 1), microseconds.
    pub latency_batch1_us: f64,
    /// Origins the model could not forecast (too little history).
    pub skipped: usize,
}

const QS: [f64; 3] = [0.1, 0.5, 0.9];

fn pinball(q: f64, y: f64, f: f64) -> f64 {
    let d = y - f;
    (q * d).max((q - 1.0) * d)
}

/// Receives every forecast an evaluation makes.
pub trait ForecastSink {
    /// `y`: the actual values of the forecast steps.
    fn record(
        &mut self,
        series: &str,
        origin: usize,
        y: &[f32],
        fc: &QuantileForecast,
    ) -> csv::Result<()>;
}

/// Writes every forecast point: `series_id,origin_index,h,y,q10,q50,q90`
/// (origin_index: index in the gridded series of the first forecast step;
/// h: 1..H).
#[derive(Debug)]
pub struct ForecastDump<W: Write> {
    out: csv::Writer<W>,
}

impl<W: Write> ForecastDump<W> {
    pub fn new(out: W) -> csv::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(["series_id", "origin_index", "h", "y", "q10", "q50", "q90"])?;
        Ok(Self { out })
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> ForecastSink for ForecastDump<W> {
    fn record(
        &mut self,
        series: &str,
        origin: usize,
        y: &[f32],
        fc: &QuantileForecast,
    ) -> csv::Result<()> {
        for (k, yk) in y.iter().enumerate() {
            self.out.write_record([
                series.to_owned(),
                origin.to_string(),
                (k + 1).to_string(),
                yk.to_string(),
                fc.p10[k].to_string(),
                fc.p50[k].to_string(),
                fc.p90[k].to_string(),
            ])?;
        }
        Ok(())
    }
}

/// Score one model over every series. `progress` is called after each
/// series; every sink receives every forecast.
pub fn evaluate(
    model: &Forecaster,
    series: &[GriddedSeries],
    opts: EvalOptions,
    progress: impl FnMut(),
    sinks: &mut [&mut dyn ForecastSink],
) -> csv::Result<ModelScores> {
    let h = opts.horizon;
    evaluate_with(
        model.name(),
        series,
        opts,
        |_, s, t| model.forecast(&s.window.rows[..t], h),
        progress,
        sinks,
    )
}

/// Score forecasts made by `forecast(series index, series, origin)`, called
/// for each series in order and, within a series, for its origins in
/// increasing order (a stateful forecaster may rely on it).
pub fn evaluate_with(
    name: &str,
    series: &[GriddedSeries],
    opts: EvalOptions,
    mut forecast: impl FnMut(
        usize,
        &GriddedSeries,
        usize,
    ) -> Result<QuantileForecast, crate::forecast::ForecastError>,
    mut progress: impl FnMut(),
    sinks: &mut [&mut dyn ForecastSink],
) -> csv::Result<ModelScores> {
    let h = opts.horizon;
    let mut errors = AbsErrors::new(series.len());
    let mut scales = Vec::with_capacity(series.len());
    let (mut sq, mut sum_abs_y, mut sum_y, mut sum_y2) = (0.0, 0.0, 0.0, 0.0);
    let mut pin = [0.0f64; 3];
    let (mut covered, mut width) = (0usize, 0.0);
    let mut below = [0usize; 3];
    let mut latencies: Vec<f32> = Vec::new();
    let (mut origins, mut skipped) = (0usize, 0usize);
    for (si, s) in series.iter().enumerate() {
        let y = s.target();
        scales.push(mase_scale(&y[..s.split.train_end], opts.season));
        let mut t = s.split.val_end;
        while t + h <= y.len() {
            let started = Instant::now();
            let fc = forecast(si, s, t);
            latencies.push(started.elapsed().as_secs_f32() * 1e6);
            let Ok(fc) = fc else {
                skipped += 1;
                t += h;
                continue;
            };
            origins += 1;
            for sink in sinks.iter_mut() {
                sink.record(&s.id, t, &y[t..t + h], &fc)?;
            }
            for k in 0..h {
                let yt = f64::from(y[t + k]);
                let f = [fc.p10[k], fc.p50[k], fc.p90[k]].map(f64::from);
                let e = yt - f[1];
                errors.add(si, e.abs());
                sq += e * e;
                sum_abs_y += yt.abs();
                sum_y += yt;
                sum_y2 += yt * yt;
                for (i, q) in QS.iter().enumerate() {
                    pin[i] += pinball(*q, yt, f[i]);
                }
                covered += usize::from(f[0] <= yt && yt <= f[2]);
                for (i, fi) in f.iter().enumerate() {
                    below[i] += usize::from(yt <= *fi);
                }
                width += f[2] - f[0];
            }
            t += h;
        }
        progress();
    }
    let n = errors.points();
    let nf = n.max(1) as f64;
    let mase = errors.mase(|s| scales[s]);
    let sst = sum_y2 - sum_y * sum_y / nf;
    let wql_q = pin.map(|p| 2.0 * p / sum_abs_y.max(f64::MIN_POSITIVE));
    let mase_series = mase.len();
    let mase_mean = mase.iter().sum::<f64>() / mase_series.max(1) as f64;
    Ok(ModelScores {
        model: name.to_owned(),
        series: series.len(),
        origins,
        points: n,
        mae: errors.mae(),
        rmse: (sq / nf).sqrt(),
        mase_median: median(&mase),
        mase_mean,
        mase_series,
        pinball: pin.iter().sum::<f64>() / nf / 3.0,
        pinball_q10: pin[0] / nf,
        pinball_q50: pin[1] / nf,
        pinball_q90: pin[2] / nf,
        wql: wql_q.iter().sum::<f64>() / 3.0,
        coverage: covered as f64 / nf,
        below_p10: below[0] as f64 / nf,
        below_p50: below[1] as f64 / nf,
        below_p90: below[2] as f64 / nf,
        mean_width: width / nf,
        r2: if sst > 0.0 { 1.0 - sq / sst } else { f64::NAN },
        latency_batch1_us: quantile(&mut latencies, 0.5).map_or(f64::NAN, f64::from),
        skipped,
    })
}

/// Absolute errors of a median forecast, in all and per series: the MAE
/// and the median over series of MASE, as EVAL.md defines them. The one
/// implementation [`evaluate`] and training's validation share.
#[derive(Debug, Clone)]
pub struct AbsErrors {
    sum: f64,
    n: usize,
    per_series: Vec<(f64, usize)>,
}

impl AbsErrors {
    pub fn new(series: usize) -> Self {
        Self {
            sum: 0.0,
            n: 0,
            per_series: vec![(0.0, 0); series],
        }
    }

    /// One point of series `s`: |y - p50|.
    pub fn add(&mut self, s: usize, abs_err: f64) {
        self.sum += abs_err;
        self.n += 1;
        self.per_series[s].0 += abs_err;
        self.per_series[s].1 += 1;
    }

    pub fn points(&self) -> usize {
        self.n
    }

    pub fn mae(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    /// MASE of every series that has points and a scale, in series order.
    pub fn mase(&self, scale: impl Fn(usize) -> Option<f64>) -> Vec<f64> {
        self.per_series
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .filter_map(|(s, (e, n))| Some(e / *n as f64 / scale(s)?))
            .collect()
    }

    /// The median over series of MASE (NaN when no series has a scale).
    pub fn median_mase(&self, scale: impl Fn(usize) -> Option<f64>) -> f64 {
        median(&self.mase(scale))
    }
}

/// The median of MASE values, taken in f32 as the reports always have.
fn median(mase: &[f64]) -> f64 {
    let mut m: Vec<f32> = mase.iter().map(|m| *m as f32).collect();
    quantile(&mut m, 0.5).map_or(f64::NAN, f64::from)
}

/// Mean |y[t] - y[t - season]| over the train segment; `None` when zero or
/// too short.
pub(crate) fn mase_scale(train: &[f32], season: usize) -> Option<f64> {
    if train.len() <= season {
        return None;
    }
    let d: f64 = (season..train.len())
        .map(|t| f64::from((train[t] - train[t - season]).abs()))
        .sum::<f64>()
        / (train.len() - season) as f64;
    (d > 0.0 && d.is_finite()).then_some(d)
}

/// What a report says about its inputs.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub dataset: String,
    pub series: usize,
    pub steps: usize,
    pub filled: usize,
    pub dropped_samples: u64,
    pub blanked_values: u64,
    pub command: String,
}

impl ReportContext {
    /// The context of `series` of `dataset`, loaded with `report`, by
    /// `command`.
    pub fn new(
        dataset: String,
        series: &[GriddedSeries],
        report: crate::data::LoadReport,
        command: String,
    ) -> Self {
        Self {
            dataset,
            series: series.len(),
            steps: series.iter().map(|s| s.split.len).sum(),
            filled: series.iter().map(|s| s.filled).sum(),
            dropped_samples: report.dropped_samples,
            blanked_values: report.blanked_values,
            command,
        }
    }
}

/// The Markdown table of every score, one row per model.
pub fn scores_table(scores: &[ModelScores]) -> String {
    use std::fmt::Write as _;
    let mut md = String::from(
        "| model | WQL | MAE | median MASE | coverage 80 | RMSE | mean MASE | pinball | width | R^2 | latency b1 (us) | points |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in scores {
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {:.2} | {:.3} | {:.1} | {} |",
            s.model,
            s.wql,
            s.mae,
            s.mase_median,
            s.coverage,
            s.rmse,
            s.mase_mean,
            s.pinball,
            s.mean_width,
            s.r2,
            s.latency_batch1_us,
            s.points
        );
    }
    md
}

/// Size, cost and speed of a trained model, beside its scores.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFacts {
    pub model: String,
    pub parameters: Option<u64>,
    /// Wall time of `forescale train`, seconds (from the model folder).
    pub train_seconds: Option<f64>,
    /// Peak resident memory of the training process, MB.
    pub train_peak_rss_mb: Option<f64>,
    /// Median wall time of one forecast call on one window, microseconds
    /// (as in the scores table).
    pub latency_batch1_us: f64,
    /// Median wall time of one call forecasting 5,000 windows, ms.
    pub latency_batch5000_ms: f64,
}

/// The Markdown table of [`ModelFacts`], with the ratio of each model's
/// latency to the first model's.
pub fn facts_table(facts: &[ModelFacts]) -> String {
    use std::fmt::Write as _;
    let opt = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |x| format!("{x:.p$}"));
    let mut md = String::from(
        "| model | parameters | training (s) | training peak memory (MB) | latency b1 (us) | latency b5000 (ms) | b1 / first | b5000 / first |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let first = facts.first();
    for f in facts {
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.2}", a / b));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |",
            f.model,
            f.parameters.map_or("-".to_owned(), |p| p.to_string()),
            opt(f.train_seconds, 0),
            opt(f.train_peak_rss_mb, 0),
            f.latency_batch1_us,
            f.latency_batch5000_ms,
            ratio(f.latency_batch1_us, first.map(|x| x.latency_batch1_us)),
            ratio(
                f.latency_batch5000_ms,
                first.map(|x| x.latency_batch5000_ms)
            ),
        );
    }
    md
}

/// Write `metrics.csv` and `report.md` into `dir`.
pub fn write_report(
    dir: &Path,
    ctx: &ReportContext,
    opts: EvalOptions,
    scores: &[ModelScores],
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut w = csv::Writer::from_path(dir.join("metrics.csv"))?;
    for s in scores {
        w.serialize(s).map_err(std::io::Error::other)?;
    }
    w.flush()?;

    let mut md = std::fs::File::create(dir.join("report.md"))?;
    writeln!(md, "# Forecast evaluation: {}\n", ctx.dataset)?;
    writeln!(
        md,
        "Protocol: EVAL.md v1. Horizon {} steps, quantiles 0.1/0.5/0.9, origins every {} steps over the test segment (last 15 %). \
         {} series, {} gridded steps, {} empty buckets filled by interpolation; {} samples dropped and {} values blanked by the bounds check.\n",
        opts.horizon,
        opts.horizon,
        ctx.series,
        ctx.steps,
        ctx.filled,
        ctx.dropped_samples,
        ctx.blanked_values
    )?;
    writeln!(md, "Command: `{}`\n", ctx.command)?;
    write!(md, "{}", scores_table(scores))?;
    writeln!(
        md,
        "\nMASE scale: mean |y[t] - y[t-{}]| over each series' train segment; {} of {} series have a non-zero scale. \
         Latency: median wall time of one forecast call on one thread, measured during this run.",
        opts.season,
        scores.first().map_or(0, |s| s.mase_series),
        ctx.series
    )?;
    if scores.iter().any(|s| s.skipped > 0) {
        writeln!(md, "\nSkipped origins (too little history):")?;
        for s in scores.iter().filter(|s| s.skipped > 0) {
            writeln!(md, "- {}: {}", s.model, s.skipped)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Series, prepare};
    use crate::domain::MetricSample;

    fn series(values: impl Fn(usize) -> f32, len: usize) -> Vec<GriddedSeries> {
        let samples = (0..len)
            .map(|i| MetricSample::cpu_only(i as i64 * 300, values(i)))
            .collect();
        prepare(
            &[Series {
                id: "s".into(),
                samples,
            }],
            300,
        )
    }

    #[test]
    fn perfect_seasonal_series_scores_zero_for_snaive() {
        let s = series(|i| 10.0 + (i % 288) as f32 / 10.0, 288 * 10);
        let m = Forecaster::by_name("snaive").unwrap();
        let r = evaluate(&m, &s, EvalOptions::default(), || (), &mut []).unwrap();
        assert!(r.origins > 0);
        assert_eq!(r.mae, 0.0);
        assert_eq!(r.wql, 0.0);
        assert_eq!(r.coverage, 1.0);
        // A perfectly periodic train segment has no seasonal error: no scale.
        assert_eq!(r.mase_series, 0);
        assert!(r.mase_median.is_nan());
    }

    #[test]
    fn naive_on_a_ramp_has_known_error() {
        // y = t / 4 (exact in f32): the naive forecast at horizon k is off by k / 4.
        let s = series(|i| i as f32 * 0.25, 2000);
        let m = Forecaster::by_name("naive").unwrap();
        let r = evaluate(&m, &s, EvalOptions::default(), || (), &mut []).unwrap();
        let expected = (1..=12).map(|k| k as f64 * 0.25).sum::<f64>() / 12.0;
        assert!((r.mae - expected).abs() < 1e-4, "{} vs {expected}", r.mae);
        // The residual band is exact on a ramp, so every point is covered.
        assert_eq!(r.coverage, 1.0);
        assert!(r.r2 > 0.9);
        // Scale: y[t] - y[t-288] = 72 everywhere.
        assert!((r.mase_median - expected / 72.0).abs() < 1e-6);
    }

    #[test]
    fn dump_has_one_row_per_forecast_point() {
        let s = series(|i| i as f32, 1000);
        let m = Forecaster::by_name("naive").unwrap();
        let mut dump = ForecastDump::new(Vec::new()).unwrap();
        let r = evaluate(&m, &s, EvalOptions::default(), || (), &mut [&mut dump]).unwrap();
        let text = String::from_utf8(dump.out.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "series_id,origin_index,h,y,q10,q50,q90");
        assert_eq!(lines.len() - 1, r.points);
        // First origin is the test start (floor(0.85 * 1000) = 850); naive = y[849].
        assert_eq!(lines[1], "s,850,1,850,849,849,850");
    }

    #[test]
    fn pinball_matches_definition() {
        assert_eq!(pinball(0.9, 10.0, 8.0), 0.9 * 2.0);
        assert!((pinball(0.1, 10.0, 12.0) - 0.9 * 2.0).abs() < 1e-12);
    }
}
