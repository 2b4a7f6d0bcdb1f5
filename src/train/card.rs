//! The model card (`README.md`) written beside a trained forecaster's
//! weights, on the template every card in `models/` follows: intended
//! use, model, data, how it was trained (with the validation log), scores
//! on the test segments against the baselines, limits, how to reproduce.

use super::Trained;
use crate::forecast::neural::Architecture;

/// Write the model card (`README.md`) beside the weights.
pub fn write_model_card(
    dir: &std::path::Path,
    file: &crate::forecast::neural::ModelFile,
    trained: &Trained,
    scores: &[crate::eval::ModelScores],
    params: usize,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let t = &file.training;
    let mut md = String::new();
    match &file.architecture {
        Architecture::Recurrent(c) => {
            let _ = writeln!(
                md,
                "# {}: {} quantile forecaster\n",
                file.model,
                if c.bidirectional {
                    "BiLSTM-attention"
                } else {
                    "unidirectional LSTM-attention (ablation)"
                }
            );
            let _ = writeln!(md, "{}", intended_use(&file.model));
            let _ = writeln!(
                md,
                "## Model\n\nForecasts p10/p50/p90 of `cpu_usage_pct` for the next {} steps (5 min) from the last {} steps of the 23 features. \
                 Architecture (`src/forecast/bilstm_attention.rs`): feature-wise softmax attention, {} LSTM layers of {} units{}, \
                 temporal softmax attention, dropout {}, non-crossing quantile head predicting a correction of the last CPU value. \
                 {params} parameters. Version `{}`.\n",
                c.horizon,
                c.lookback,
                c.layers,
                c.hidden,
                if c.bidirectional {
                    " per direction"
                } else {
                    ""
                },
                c.dropout,
                file.version
            );
        }
        Architecture::Tft(c) => {
            let _ = writeln!(
                md,
                "# {}: Temporal Fusion Transformer quantile forecaster (comparator)\n",
                file.model
            );
            let _ = writeln!(md, "{}", intended_use(&file.model));
            let _ = writeln!(
                md,
                "## Model\n\nForecasts p10/p50/p90 of `cpu_usage_pct` for the next {} steps (5 min) from the last {} steps of the 23 features \
                 and the calendar of the forecast steps (known future inputs). Architecture (`src/forecast/tft.rs`, Lim et al. 2021): \
                 variable selection networks over the 23 past inputs and the 3 known inputs (embeddings of {}), an LSTM encoder-decoder \
                 of {}, static enrichment without static covariates, interpretable multi-head attention ({} heads, shared values), \
                 gated residual networks with GLU gating throughout, dropout {}, and the same non-crossing quantile head as the BiLSTM. \
                 {params} parameters. Version `{}`.\n",
                c.horizon,
                c.lookback,
                c.hidden_continuous,
                c.hidden,
                c.heads,
                c.dropout,
                file.version
            );
        }
    }
    let _ = writeln!(md, "## Data\n");
    let fit_pct = t["options"]["fit_end_pct"].as_u64().unwrap_or(70);
    let window_inputs = t["options"]["window_inputs"].as_bool().unwrap_or(false);
    let stats = if window_inputs {
        "the calendar's z-score statistics (every measured input is scaled by its own window)"
    } else {
        "the z-score statistics"
    };
    let _ = match fit_pct {
        70 => writeln!(
            md,
            "`{}`, on the evaluation protocol's grid (EVAL.md, `docs/forecast-evaluation.md`); train split (first 70 % of each series) for fitting and {stats}, \
             validation split (next 15 %) for early stopping; the test split (last 15 %) is only scored below.",
            t["dataset"].as_str().unwrap_or("?")
        ),
        p if p > 70 => writeln!(
            md,
            "`{}`, on the evaluation protocol's grid (EVAL.md, `docs/forecast-evaluation.md`); the first {p} % of each series (train and validation splits) for fitting and \
             {stats}, a fixed number of epochs, the last one kept (validation is in-sample here, so it stops \
             nothing; its figures below are in-sample); the test split (last 15 %) is only scored below.",
            t["dataset"].as_str().unwrap_or("?")
        ),
        p => writeln!(
            md,
            "`{}`, on the evaluation protocol's grid (EVAL.md, `docs/forecast-evaluation.md`); the first {p} % of each series for fitting and {stats} \
             (a gap before validation), validation split (70-85 %) for early stopping; the test split (last 15 %) is \
             only scored below.",
            t["dataset"].as_str().unwrap_or("?")
        ),
    };
    let _ = writeln!(md, "\n## How it was trained\n");
    let _ = writeln!(
        md,
        "- {} train windows, {} validation origins; {} epochs run, kept epoch {} (validation MAE {:.4}); {:.0} s on {} CPU cores.",
        trained.train_windows,
        trained.val_windows,
        trained.log.len(),
        trained.best_epoch,
        trained.best_val_mae,
        trained.seconds,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = writeln!(
        md,
        "- Reference on the same validation origins: naive (last value) MAE {:.4}, median MASE {:.4}.",
        trained.naive_val.0, trained.naive_val.1
    );
    if !trained.val_by_dataset.is_empty() {
        let _ = writeln!(
            md,
            "- Validation by dataset (the kept weights; {}):\n\n  | dataset | origins | MAE | naive MAE | ratio | median MASE | naive median MASE |\n  |---|---|---|---|---|---|---|",
            if fit_pct > 70 {
                "in-sample here"
            } else {
                "out of sample"
            }
        );
        for d in &trained.val_by_dataset {
            let _ = writeln!(
                md,
                "  | {} | {} | {:.4} | {:.4} | {:.3} | {:.4} | {:.4} |",
                d.dataset,
                d.origins,
                d.mae,
                d.naive_mae,
                d.mae / d.naive_mae,
                d.mase_median,
                d.naive_mase_median
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "- Options: `{}`\n", t["options"]);
    let averaged = trained.log.iter().any(|e| e.raw_val_mae.is_some());
    if averaged {
        let _ = writeln!(
            md,
            "Validation MAE is that of the averaged weights (the ones saved); the raw weights' is beside it.\n\n\
             | epoch | train pinball (normalised) | validation MAE | raw weights' validation MAE | validation median MASE | seconds |\n\
             |---|---|---|---|---|---|"
        );
    } else {
        let _ = writeln!(
            md,
            "| epoch | train pinball (normalised) | validation MAE | validation median MASE | seconds |\n|---|---|---|---|---|"
        );
    }
    for e in &trained.log {
        let raw = match (averaged, e.raw_val_mae) {
            (false, _) => String::new(),
            (true, Some(r)) => format!(" {r:.4} |"),
            (true, None) => " - |".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {:.4} | {:.4} |{raw} {:.4} | {:.0} |",
            e.epoch, e.train_loss, e.val_mae, e.val_mase_median, e.seconds
        );
    }
    let _ = writeln!(md, "\n## Scores (test segments)\n");
    md.push_str(&crate::eval::scores_table(scores));
    let _ = writeln!(
        md,
        "\nLatency b1: median wall time of one forecast call during evaluation, on the training host. \
         Full report: `eval/report.md`."
    );
    let _ = writeln!(
        md,
        "\n## Limits\n\n- Scored above on the test segments of the series it was fitted on (their earlier part): \
         in-distribution accuracy. A group unlike these series is data it never saw; the generalisation suite \
         (`docs/forecast-evaluation.md`) measures that, and `docs/results.md` has the figures.\n\
         - It reads the last {} steps only, {}",
        file.architecture.lookback(),
        if window_inputs {
            "each measured input scaled by that window: it sees no absolute level, so it cannot tell a \
             busy group from an idle one with the same shape."
        } else {
            "and covariates at the scale of its training data."
        }
    );
    let _ = writeln!(
        md,
        "\n## How to reproduce\n\n- Weights: `{}` ({:.0} s here). Training is deterministic for a seed: \
         the same command gives the same `model.safetensors`.\n\
         - Scores: `forescale evaluate --dataset {} --models {},{}`.",
        t["command"].as_str().unwrap_or("?"),
        trained.seconds,
        t["dataset"].as_str().unwrap_or("?"),
        crate::forecast::Forecaster::NAMES.join(","),
        file.model
    );
    std::fs::write(dir.join("README.md"), md)
}

/// The card's first section: what the model is for.
fn intended_use(model: &str) -> String {
    let what = match model {
        "bilstm" => "the service's default forecaster",
        "lstm" => "the ablation the BiLSTM is compared with (same size, one direction)",
        "tft" => "the comparator the BiLSTM is scored against",
        _ => "a forecaster trained by `forescale train`",
    };
    format!(
        "## Intended use\n\nQuantile forecasts (p10, p50, p90) of an Auto Scaling group's CPU for the next hour, \
         for capacity planning: {what}. Served by name (`?model={model}`) once its folder is in `--models-dir`.\n"
    )
}
