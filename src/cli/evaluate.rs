//! `forescale evaluate`: score forecasters on a dataset's test segments
//! (docs/forecast-evaluation.md); writes `metrics.csv`, `report.md`,
//! plots and, optionally, every forecast point.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{DatasetArgs, GridArgs, ModelsArgs, command_line, resolve_models};
use crate::accuracy::LedgerConfig;
use crate::data::{self, DatasetSource};
use crate::domain::HORIZON;
use crate::eval::auto::AutoSpec;
use crate::eval::run::score_and_report;
use crate::eval::suite::run_suite;
use crate::eval::{EvalModel, EvalOptions, ReportContext};
use crate::forecast::Forecaster;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Models to score, comma-separated: baselines (naive, snaive), the
    /// statistical models (ets, mstl), trained models found in
    /// --models-dir (bilstm, lstm, tft), and `auto`: the service's
    /// per-group choice among --auto-candidates, replayed.
    #[arg(
        long,
        env = "FORESCALE_MODELS",
        value_delimiter = ',',
        default_value = "naive,snaive"
    )]
    pub models: Vec<String>,
    /// The candidates `auto` chooses among; the first serves until there
    /// is evidence.
    #[arg(
        long,
        env = "FORESCALE_AUTO_CANDIDATES",
        value_delimiter = ',',
        default_value = "bilstm,mstl,naive,snaive"
    )]
    pub auto_candidates: Vec<String>,
    #[command(flatten)]
    pub registry: ModelsArgs,
    /// Output folder for metrics.csv and report.md.
    #[arg(long, env = "FORESCALE_REPORT_DIR", default_value = "reports")]
    pub out: PathBuf,
    /// Forecast horizon in steps.
    #[arg(long, env = "FORESCALE_HORIZON", default_value_t = HORIZON)]
    pub horizon: usize,
    /// Write every forecast point to this CSV
    /// (`series_id,origin_index,h,y,q10,q50,q90`); with several models,
    /// one file per model named `<stem>.<model>.csv`.
    #[arg(long, env = "FORESCALE_DUMP_FORECASTS")]
    pub dump_forecasts: Option<PathBuf>,
    #[command(flatten)]
    pub grid: GridArgs,
    /// Instead of one dataset: the generalisation suite (`v2`), every
    /// model on the five datasets of docs/forecast-evaluation.md, scored
    /// against naive (which it adds when not named); one report per
    /// dataset in --out, and the suite's table, CSV and ratio charts.
    #[arg(
        long,
        env = "FORESCALE_SUITE",
        value_enum,
        conflicts_with = "dump_forecasts"
    )]
    pub suite: Option<Suite>,
}

/// A suite of datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// EVAL.md v2: bitbrains-rnd, azure-v1-cpu, google2019-job-tasks,
    /// datacenter-aggregates, nab-aws-cloudwatch.
    V2,
}

/// Load a dataset and put it on the EVAL.md grid.
fn load_series(
    data: &DatasetArgs,
    step: i64,
) -> anyhow::Result<(DatasetSource, Vec<data::GriddedSeries>, data::LoadReport)> {
    let source = data.source()?;
    eprintln!("loading {} ...", source.name());
    let (raw, report) = data::load(&source)?;
    let series = data::prepare(&raw, step);
    Ok((source, series, report))
}

/// Load one dataset, or several (`a,b,c`, less `exclude`) pooled, their
/// series named `<dataset>/<id>`. Returns the label (the names joined),
/// the series and the summed load report.
pub(super) fn load_datasets(
    data: &DatasetArgs,
    exclude: &[String],
    step: i64,
) -> anyhow::Result<(String, Vec<data::GriddedSeries>, data::LoadReport)> {
    let mut names: Vec<&str> = data
        .dataset
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for x in exclude {
        let before = names.len();
        names.retain(|n| n != x);
        anyhow::ensure!(
            names.len() < before,
            "--exclude-dataset {x:?} is not one of --dataset ({})",
            data.dataset
        );
    }
    anyhow::ensure!(!names.is_empty(), "--dataset: no dataset left to use");
    let several = names.len() > 1;
    let mut all = Vec::new();
    let mut labels = Vec::new();
    let mut report = data::LoadReport::default();
    for n in &names {
        let one = DatasetArgs {
            dataset: (*n).to_owned(),
            root: data.root.clone(),
        };
        let (source, series, r) = load_series(&one, step)?;
        labels.push(source.name());
        report.dropped_samples += r.dropped_samples;
        report.blanked_values += r.blanked_values;
        all.extend(series.into_iter().map(|mut s| {
            if several {
                s.id = format!("{n}/{}", s.id);
            }
            s
        }));
    }
    Ok((labels.join(","), all, report))
}

pub(super) fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let registry = args.registry.load()?;
    let mut models: Vec<EvalModel> = Vec::with_capacity(args.models.len());
    for name in &args.models {
        if name.trim() == "auto" {
            let candidates =
                resolve_models(&args.auto_candidates, &registry).context("--auto-candidates")?;
            anyhow::ensure!(
                !candidates.is_empty(),
                "--auto-candidates: name at least one model"
            );
            models.push(EvalModel::Auto(AutoSpec {
                candidates,
                config: LedgerConfig::default(),
            }));
        } else {
            models.extend(
                resolve_models(std::slice::from_ref(name), &registry)?
                    .into_iter()
                    .map(EvalModel::from),
            );
        }
    }
    if let Some(Suite::V2) = args.suite {
        if !models.iter().any(|m| m.name() == "naive") {
            models.extend(Forecaster::by_name("naive").map(EvalModel::from));
        }
        let opts = EvalOptions {
            horizon: args.horizon,
            ..EvalOptions::default()
        };
        let rows = run_suite(
            &models,
            &args.data.root.data_root,
            args.grid.step_seconds,
            opts,
            &args.out,
            &command_line(),
        )?;
        println!(
            "{:<24} {:<8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "dataset", "model", "WQL", "MAE", "WQL/nv", "MAE/nv", "cov80"
        );
        for r in &rows {
            println!(
                "{:<24} {:<8} {:>8.4} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                r.dataset, r.model, r.wql, r.mae, r.wql_ratio, r.mae_ratio, r.coverage
            );
        }
        println!("report: {}", args.out.join("report.md").display());
        return Ok(());
    }
    let (name, series, report) = load_datasets(&args.data, &[], args.grid.step_seconds)?;
    let opts = EvalOptions {
        horizon: args.horizon,
        ..EvalOptions::default()
    };
    let ctx = ReportContext::new(name, &series, report, command_line());
    score_and_report(
        &models,
        &series,
        &ctx,
        opts,
        &args.out,
        args.dump_forecasts.as_deref(),
    )?;
    Ok(())
}
