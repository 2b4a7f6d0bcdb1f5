//! `forescale evaluate`: score forecasters on a dataset's test segments
//! (docs/forecast-evaluation.md); writes `metrics.csv`, `report.md`,
//! plots and, optionally, every forecast point.

use std::path::PathBuf;

use clap::Args;

use super::{DatasetArgs, GridArgs, ModelsArgs, command_line, resolve_models};
use crate::data::{self, DatasetSource};
use crate::domain::HORIZON;
use crate::eval::run::score_and_report;
use crate::eval::{EvalOptions, ReportContext};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Models to score, comma-separated: baselines (naive, snaive) and
    /// trained models found in --models-dir (bilstm, lstm).
    #[arg(
        long,
        env = "FORESCALE_MODELS",
        value_delimiter = ',',
        default_value = "naive,snaive"
    )]
    pub models: Vec<String>,
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
}

/// Load a dataset and put it on the EVAL.md grid.
pub(super) fn load_series(
    data: &DatasetArgs,
    step: i64,
) -> anyhow::Result<(DatasetSource, Vec<data::GriddedSeries>, data::LoadReport)> {
    let source = data.source()?;
    eprintln!("loading {} ...", source.name());
    let (raw, report) = data::load(&source)?;
    let series = data::prepare(&raw, step);
    Ok((source, series, report))
}

pub(super) fn report_context(
    source: &DatasetSource,
    series: &[data::GriddedSeries],
    report: data::LoadReport,
) -> ReportContext {
    ReportContext {
        dataset: source.name(),
        series: series.len(),
        steps: series.iter().map(|s| s.split.len).sum(),
        filled: series.iter().map(|s| s.filled).sum(),
        dropped_samples: report.dropped_samples,
        blanked_values: report.blanked_values,
        command: command_line(),
    }
}

pub(super) fn run(args: &EvaluateArgs) -> anyhow::Result<()> {
    let registry = args.registry.load()?;
    let models = resolve_models(&args.models, &registry)?;
    let (source, series, report) = load_series(&args.data, args.grid.step_seconds)?;
    let opts = EvalOptions {
        horizon: args.horizon,
        ..EvalOptions::default()
    };
    let ctx = report_context(&source, &series, report);
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
