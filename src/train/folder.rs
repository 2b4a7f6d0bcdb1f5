//! A trained forecaster as a model folder the service loads: weights,
//! `config.json` (architecture, normalisation, the training record), the
//! test-segment evaluation against the baselines (`eval/`) and the model
//! card.

use std::path::Path;

use anyhow::Context;

use super::{TrainOptions, Trained, write_model_card};
use crate::data::GriddedSeries;
use crate::eval::EvalModel;
use crate::eval::run::score_and_report;
use crate::eval::{EvalOptions, ReportContext};
use crate::forecast::{Forecaster, NeuralModel, neural};

/// Write `trained` to `out` as model `model`, load it back as the service
/// would, score it on the test segments and write its card.
pub fn write_model_folder(
    out: &Path,
    model: &str,
    trained: &Trained,
    opts: &TrainOptions,
    series: &[GriddedSeries],
    ctx: &ReportContext,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let weights = out.join("model.safetensors");
    trained.varmap.save(&weights)?;
    let version = neural::content_version(&std::fs::read(&weights)?);
    let params: usize = trained
        .varmap
        .all_vars()
        .iter()
        .map(|v| v.elem_count())
        .sum();
    let file = neural::ModelFile {
        model: model.to_owned(),
        version,
        architecture: trained.cfg.clone(),
        norm: trained.stats.clone(),
        training: serde_json::json!({
            "dataset": ctx.dataset,
            "command": ctx.command,
            "options": opts,
            "parameters": params,
            "seconds": trained.seconds,
            "peak_rss_mb": trained.peak_rss_mb,
            "best_epoch": trained.best_epoch,
            "best_val_mae": trained.best_val_mae,
            "naive_val_mae": trained.naive_val.0,
            "naive_val_mase_median": trained.naive_val.1,
            "val_by_dataset": trained.val_by_dataset,
            "train_windows": trained.train_windows,
            "val_origins": trained.val_windows,
            "log": trained.log,
        }),
    };
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&file)?,
    )?;
    // Load it back as the service would, then score it on the test segments.
    let loaded = NeuralModel::load(out)?;
    eprintln!(
        "saved {model} ({params} parameters) to {}; scoring on the test segments",
        out.display()
    );
    let mut models: Vec<EvalModel> = Forecaster::NAMES
        .iter()
        .filter_map(|n| Forecaster::by_name(n))
        .map(EvalModel::from)
        .collect();
    models.push(Forecaster::Neural(std::sync::Arc::new(loaded)).into());
    let scores = score_and_report(
        &models,
        series,
        ctx,
        EvalOptions::default(),
        &out.join("eval"),
        None,
    )?
    .scores;
    write_model_card(out, &file, trained, &scores, params)?;
    Ok(())
}
