//! A whole evaluation run: every model scored on a dataset's test
//! segments (`evaluate`), then the report written with its plots (fan
//! charts of the busiest series, calibration, attention), the forecast
//! dumps, and the trained models' size, training cost and latency.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::auto::{AutoReplay, AutoSummary};
use super::{EvalModel, EvalOptions, ForecastDump, ForecastSink, ModelFacts, ModelScores};
use super::{ReportContext, evaluate, evaluate_with, facts_table, plots, write_report};
use crate::data::GriddedSeries;
use crate::forecast::Forecaster;

/// A progress bar on standard error, one tick per series.
fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_owned());
    pb
}

/// The dump file of one model: the path itself for a single model, else
/// `<stem>.<model>.<ext>` beside it.
fn dump_path(path: &Path, model: &str, models: usize) -> PathBuf {
    if models == 1 {
        return path.to_owned();
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("forecasts");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("csv");
    path.with_file_name(format!("{stem}.{model}.{ext}"))
}

/// Scores of every model and, for `auto`, which models it served.
#[derive(Debug, Clone)]
pub struct RunScores {
    pub scores: Vec<ModelScores>,
    pub auto: Option<AutoSummary>,
}

/// Score models on gridded series; print and write the report.
pub fn score_and_report(
    models: &[EvalModel],
    series: &[GriddedSeries],
    ctx: &ReportContext,
    opts: EvalOptions,
    out: &Path,
    dump_to: Option<&Path>,
) -> anyhow::Result<RunScores> {
    // Fan charts follow the first trained model named (else the last
    // model) on the three busiest series (by train-segment mean CPU).
    let featured = models
        .iter()
        .position(|m| matches!(m.forecaster(), Some(Forecaster::Neural(_))))
        .unwrap_or(models.len().saturating_sub(1));
    let mut busiest: Vec<(f32, &GriddedSeries)> = series
        .iter()
        .map(|s| {
            let y = s.target();
            let train = &y[..s.split.train_end];
            (train.iter().sum::<f32>() / train.len().max(1) as f32, s)
        })
        .collect();
    busiest.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut fans =
        plots::FanCollector::new(busiest.iter().take(3).map(|(_, s)| s.id.clone()).collect());
    // The dumps' folder (every model's file goes beside the path), made
    // once if it does not exist yet, as --out is.
    if let Some(dir) = dump_to
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut scores = Vec::new();
    let mut auto = None;
    for (i, m) in models.iter().enumerate() {
        let pb = progress(series.len() as u64, m.name());
        let mut dump = match dump_to {
            None => None,
            Some(path) => {
                let path = dump_path(path, m.name(), models.len());
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                eprintln!("{}: forecasts to {}", m.name(), path.display());
                Some(ForecastDump::new(std::io::BufWriter::new(f))?)
            }
        };
        let mut sinks: Vec<&mut dyn ForecastSink> = Vec::new();
        if let Some(d) = dump.as_mut() {
            sinks.push(d);
        }
        if i == featured {
            sinks.push(&mut fans);
        }
        match m {
            EvalModel::One(f) => scores.push(evaluate(f, series, opts, || pb.inc(1), &mut sinks)?),
            EvalModel::Auto(spec) => {
                let mut replay = AutoReplay::new(spec, opts.horizon);
                scores.push(evaluate_with(
                    "auto",
                    series,
                    opts,
                    |si, s, t| replay.forecast(si, s, t),
                    || pb.inc(1),
                    &mut sinks,
                )?);
                auto = Some(replay.finish());
            }
        }
        if let Some(d) = dump {
            d.finish()?;
        }
        pb.finish();
    }
    let plot_dir = out.join("plots");
    std::fs::create_dir_all(&plot_dir)?;
    plots::calibration(&plot_dir.join("calibration.svg"), &scores)?;
    if let Some(m) = models.get(featured) {
        for (_, s) in busiest.iter().take(3) {
            let Some(f) = fans.forecasts.get(&s.id) else {
                continue;
            };
            let from = s.split.val_end;
            plots::fan_chart(
                &plot_dir.join(format!("fan-{}-{}.svg", m.name(), file_safe(&s.id))),
                &format!("{} on {}: first 2 days of the test segment", m.name(), s.id),
                &s.target(),
                from,
                from + 576,
                f,
            )?;
        }
    }
    // The mean attention (for the TFT: variable selection) of every
    // trained model.
    for m in models.iter().filter_map(EvalModel::forecaster) {
        if let Some(w) = mean_attention(m, series, opts.horizon, 2_000) {
            plots::heatmap(
                &plot_dir.join(format!("attention-{}.svg", m.name())),
                &format!("{}: mean feature attention over test windows", m.name()),
                &w,
                &crate::domain::FEATURE_NAMES,
            )?;
        }
    }
    eprintln!("plots: {}", plot_dir.display());
    write_report(out, ctx, opts, &scores)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    if let Some(a) = &auto {
        use std::io::Write as _;
        let mut md = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join("report.md"))?;
        let names: Vec<&str> = models
            .iter()
            .find_map(|m| match m {
                EvalModel::Auto(spec) => {
                    Some(spec.candidates.iter().map(Forecaster::name).collect())
                }
                EvalModel::One(_) => None,
            })
            .unwrap_or_default();
        writeln!(
            md,
            "\n## auto\n\nThe service's per-group choice among {} (the first serves until there is evidence), \
             with calibrated quantiles, replayed from the start of each series' validation segment using only \
             rows before each origin (docs/accuracy.md). {}.",
            names.join(", "),
            a.line()
        )?;
        eprintln!("auto: {}", a.line());
    }
    let facts = model_facts(models, series, opts.horizon, &scores)?;
    if !facts.is_empty() {
        let table = facts_table(&facts);
        let mut w = csv::Writer::from_path(out.join("facts.csv"))?;
        for f in &facts {
            w.serialize(f)?;
        }
        w.flush()?;
        use std::io::Write as _;
        let mut md = std::fs::OpenOptions::new()
            .append(true)
            .open(out.join("report.md"))?;
        writeln!(
            md,
            "\n## Size, training cost and latency of the trained models\n\n\
             Latency b1: median of the per-origin calls above (one window, one thread for the recurrent \
             networks' SIMD path, candle's default threading for the TFT). Latency b5000: median of 3 calls \
             forecasting 5,000 test windows at once, on both cores. Training figures come from the model \
             folder's `config.json` (this machine, 2 cores).\n\n{table}"
        )?;
        eprintln!("{table}");
    }
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>8}",
        "model", "WQL", "MAE", "MASEmed", "cov80"
    );
    for s in &scores {
        println!(
            "{:<8} {:>8.4} {:>8.3} {:>8.3} {:>8.3}",
            s.model, s.wql, s.mae, s.mase_median, s.coverage
        );
    }
    println!("report: {}", out.join("report.md").display());
    Ok(RunScores { scores, auto })
}

/// Parameters, training cost and latency of the trained models among
/// `models` (baselines have none), in the order given.
fn model_facts(
    models: &[EvalModel],
    series: &[GriddedSeries],
    step: usize,
    scores: &[ModelScores],
) -> anyhow::Result<Vec<ModelFacts>> {
    let mut out = Vec::new();
    for (m, s) in models.iter().zip(scores) {
        let Some(Forecaster::Neural(n)) = m.forecaster() else {
            continue;
        };
        let mut inputs = Vec::with_capacity(5_000);
        'fill: while !series.is_empty() {
            for g in series {
                let mut t = g.split.val_end.max(n.lookback());
                while t < g.window.rows.len() {
                    inputs.push(n.input(&g.window.rows[..t]));
                    if inputs.len() == 5_000 {
                        break 'fill;
                    }
                    t += step;
                }
            }
            if inputs.is_empty() {
                break;
            }
        }
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            n.forecast_batch(&inputs)?;
            runs.push(t.elapsed().as_secs_f64() * 1e3);
        }
        runs.sort_by(f64::total_cmp);
        let t = &n.file.training;
        out.push(ModelFacts {
            model: n.name().to_owned(),
            parameters: t["parameters"].as_u64(),
            train_seconds: t["seconds"].as_f64(),
            train_peak_rss_mb: t["peak_rss_mb"].as_f64(),
            latency_batch1_us: s.latency_batch1_us,
            latency_batch5000_ms: runs[1],
        });
    }
    Ok(out)
}

/// Mean feature attention [L][23] of a trained model over test origins
/// (every `step` steps, at most `max_windows`); `None` for baselines.
fn mean_attention(
    model: &Forecaster,
    series: &[GriddedSeries],
    step: usize,
    max_windows: usize,
) -> Option<Vec<Vec<f32>>> {
    let mut sum: Option<Vec<Vec<f32>>> = None;
    let mut n = 0usize;
    'outer: for s in series {
        let mut t = s.split.val_end;
        while t < s.window.rows.len() {
            let e = model.explain(&s.window.rows[..t])?.ok()?;
            let acc = sum.get_or_insert_with(|| {
                vec![vec![0.0; e.feature_weights[0].len()]; e.feature_weights.len()]
            });
            for (a, r) in acc.iter_mut().zip(&e.feature_weights) {
                for (x, v) in a.iter_mut().zip(r) {
                    *x += v;
                }
            }
            n += 1;
            if n >= max_windows {
                break 'outer;
            }
            t += step;
        }
    }
    let mut w = sum?;
    for r in &mut w {
        for x in r.iter_mut() {
            *x /= n as f32;
        }
    }
    Some(w)
}

/// A series id as part of a file name: anything but letters, digits, '-',
/// '_' and '.' becomes '_' (ids of several datasets read `dataset/id`).
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_ids_become_file_names() {
        assert_eq!(file_safe("azure-v1-cpu/vm_027"), "azure-v1-cpu_vm_027");
        assert_eq!(file_safe("a.b-c_d"), "a.b-c_d");
        assert_eq!(file_safe("../x y"), ".._x_y");
    }
}
