//! The generalisation suite (EVAL.md v2, `docs/forecast-evaluation.md`):
//! every model on the test segments of five datasets, each scored against
//! the naive forecast on the same points, and the geometric mean of those
//! ratios across datasets. One dataset's report (with its plots) goes in
//! its own folder; the suite's table, CSV and ratio chart beside them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::auto::AutoSummary;
use super::run::score_and_report;
use super::{EvalModel, EvalOptions, ModelScores, ReportContext, plots};
use crate::data::{self, DatasetSource};

/// The datasets of the suite, in report order. `nab-aws-cloudwatch` is the
/// transfer check: no learned model may fit any of it.
pub const SUITE_V2: [&str; 5] = [
    "bitbrains-rnd",
    "azure-v1-cpu",
    "google2019-job-tasks",
    "datacenter-aggregates",
    "nab-aws-cloudwatch",
];

/// One model on one dataset, with its ratios to the naive forecast.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteRow {
    pub dataset: String,
    pub model: String,
    pub points: usize,
    /// Origins the model could not forecast (too little history).
    pub skipped: usize,
    pub wql: f64,
    pub mae: f64,
    pub mase_median: f64,
    pub coverage: f64,
    /// WQL / naive's WQL on the same dataset.
    pub wql_ratio: f64,
    /// MAE / naive's MAE on the same dataset.
    pub mae_ratio: f64,
}

/// Geometric mean of positive, finite values (NaN if there is none).
pub fn geometric_mean(values: &[f64]) -> f64 {
    let ok: Vec<f64> = values
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if ok.is_empty() {
        return f64::NAN;
    }
    (ok.iter().map(|v| v.ln()).sum::<f64>() / ok.len() as f64).exp()
}

/// The rows of one dataset: each model's scores against naive's (which
/// must be among them).
pub fn rows_for(dataset: &str, scores: &[ModelScores]) -> anyhow::Result<Vec<SuiteRow>> {
    let naive = scores
        .iter()
        .find(|s| s.model == "naive")
        .context("the suite needs the naive forecast among the models")?;
    Ok(scores
        .iter()
        .map(|s| SuiteRow {
            dataset: dataset.to_owned(),
            model: s.model.clone(),
            points: s.points,
            skipped: s.skipped,
            wql: s.wql,
            mae: s.mae,
            mase_median: s.mase_median,
            coverage: s.coverage,
            wql_ratio: s.wql / naive.wql,
            mae_ratio: s.mae / naive.mae,
        })
        .collect())
}

/// Run the suite: every model on every dataset of [`SUITE_V2`] under
/// `data_root`, one report per dataset in `out/<dataset>/`, then
/// `out/suite.csv`, `out/report.md` and `out/plots/ratios-wql.svg`.
pub fn run_suite(
    models: &[EvalModel],
    data_root: &Path,
    step: i64,
    opts: EvalOptions,
    out: &Path,
    command: &str,
) -> anyhow::Result<Vec<SuiteRow>> {
    anyhow::ensure!(
        models.iter().any(|m| m.name() == "naive"),
        "--suite needs naive among --models (every ratio is to it)"
    );
    let mut rows = Vec::new();
    let mut auto = Vec::new();
    for name in SUITE_V2 {
        let source = DatasetSource::parse(name, data_root)
            .with_context(|| format!("the suite's dataset {name}"))?;
        eprintln!("== {name}: loading ...");
        let (raw, report) = data::load(&source)?;
        let series = data::prepare(&raw, step);
        let ctx = ReportContext::new(source.name(), &series, report, command.to_owned());
        let run = score_and_report(models, &series, &ctx, opts, &out.join(name), None)?;
        rows.extend(rows_for(name, &run.scores)?);
        auto.extend(run.auto.map(|a| (name, a)));
    }
    write_suite(out, models, &rows, &auto, command)?;
    Ok(rows)
}

/// `suite.csv`, `report.md` and the ratio chart.
pub fn write_suite(
    out: &Path,
    models: &[EvalModel],
    rows: &[SuiteRow],
    auto: &[(&str, AutoSummary)],
    command: &str,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("plots"))?;
    let mut w = csv::Writer::from_path(out.join("suite.csv"))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    let names: Vec<&str> = models.iter().map(EvalModel::name).collect();
    let datasets: Vec<&str> = SUITE_V2
        .iter()
        .copied()
        .filter(|d| rows.iter().any(|r| r.dataset == *d))
        .collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Generalisation suite (EVAL.md v2)\n\n\
         Command: `{command}`\n\n\
         Every model on the test segments of each dataset (horizon 12, origins every 12 steps, \
         quantiles 0.1 / 0.5 / 0.9), scored on the original scale. Ratios are to the naive \
         forecast (last value) on the same points: above 1 is worse than doing nothing clever. \
         `nab-aws-cloudwatch` is the transfer check, never fitted by a learned model. Per-dataset \
         reports and plots are in the dataset's folder.\n"
    );
    let _ = writeln!(
        md,
        "## Ratios to naive, geometric mean over datasets\n\n| model | WQL ratio | MAE ratio | datasets where WQL and MAE beat naive | coverage range |\n| --- | --- | --- | --- | --- |"
    );
    for m in &names {
        let mine: Vec<&SuiteRow> = rows.iter().filter(|r| r.model == *m).collect();
        let wql: Vec<f64> = mine.iter().map(|r| r.wql_ratio).collect();
        let mae: Vec<f64> = mine.iter().map(|r| r.mae_ratio).collect();
        let wins = mine
            .iter()
            .filter(|r| r.wql_ratio < 1.0 && r.mae_ratio < 1.0)
            .count();
        let (lo, hi) = mine
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, r| {
                (a.0.min(r.coverage), a.1.max(r.coverage))
            });
        let _ = writeln!(
            md,
            "| {m} | {:.3} | {:.3} | {wins} of {} | {lo:.3} - {hi:.3} |",
            geometric_mean(&wql),
            geometric_mean(&mae),
            mine.len()
        );
    }
    for d in &datasets {
        let _ = writeln!(
            md,
            "\n## {d}\n\n| model | WQL | MAE | median MASE | coverage 80 | WQL / naive | MAE / naive | points | skipped |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for r in rows.iter().filter(|r| r.dataset == *d) {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
                r.model,
                r.wql,
                r.mae,
                r.mase_median,
                r.coverage,
                r.wql_ratio,
                r.mae_ratio,
                r.points,
                r.skipped
            );
        }
    }
    if !auto.is_empty() {
        let _ = writeln!(
            md,
            "\n## What auto served\n\nPer dataset, the share of scored origins each candidate served \
             and how often a series' choice changed (docs/accuracy.md).\n"
        );
        for (d, a) in auto {
            let _ = writeln!(md, "- {d}: {}", a.line());
        }
    }
    let _ = writeln!(
        md,
        "\n![WQL / naive per dataset](plots/ratios-wql.svg)\n\n![MAE / naive per dataset](plots/ratios-mae.svg)"
    );
    std::fs::write(out.join("report.md"), md)?;
    let table = |f: fn(&SuiteRow) -> f64| -> Vec<Vec<f64>> {
        names
            .iter()
            .map(|m| {
                datasets
                    .iter()
                    .map(|d| {
                        rows.iter()
                            .find(|r| r.model == *m && r.dataset == *d)
                            .map_or(f64::NAN, f)
                    })
                    .collect()
            })
            .collect()
    };
    plots::ratio_bars(
        &out.join("plots/ratios-wql.svg"),
        "WQL / naive's WQL (below 1: better than the last value)",
        &datasets,
        &names,
        &table(|r| r.wql_ratio),
    )?;
    plots::ratio_bars(
        &out.join("plots/ratios-mae.svg"),
        "MAE / naive's MAE (below 1: better than the last value)",
        &datasets,
        &names,
        &table(|r| r.mae_ratio),
    )?;
    eprintln!("suite report: {}", out.join("report.md").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(model: &str, wql: f64, mae: f64) -> ModelScores {
        ModelScores {
            model: model.into(),
            series: 1,
            origins: 1,
            points: 12,
            mae,
            rmse: 0.0,
            mase_median: 0.0,
            mase_mean: 0.0,
            mase_series: 1,
            pinball: 0.0,
            pinball_q10: 0.0,
            pinball_q50: 0.0,
            pinball_q90: 0.0,
            wql,
            coverage: 0.8,
            below_p10: 0.1,
            below_p50: 0.5,
            below_p90: 0.9,
            mean_width: 1.0,
            r2: 0.0,
            latency_batch1_us: 0.0,
            skipped: 0,
        }
    }

    #[test]
    fn ratios_are_to_naive_and_the_mean_is_geometric() {
        let rows = rows_for("d", &[scores("naive", 0.2, 2.0), scores("m", 0.1, 4.0)]).unwrap();
        assert_eq!(rows[0].wql_ratio, 1.0);
        assert_eq!(rows[1].wql_ratio, 0.5);
        assert_eq!(rows[1].mae_ratio, 2.0);
        assert!((geometric_mean(&[0.5, 2.0]) - 1.0).abs() < 1e-12);
        assert!((geometric_mean(&[0.25, 1.0, 4.0]) - 1.0).abs() < 1e-12);
        assert!(geometric_mean(&[]).is_nan());
        assert!(rows_for("d", &[scores("m", 0.1, 1.0)]).is_err());
    }
}
