//! `forescale train`: fits the BiLSTM-attention forecaster (or its
//! unidirectional ablation, or the TFT comparator) on the train split of a dataset (EVAL.md (docs/forecast-evaluation.md) grid
//! and split), with early stopping on the validation split, or on train +
//! validation for a fixed number of epochs (`fit_end_pct` 85, how the
//! shipped models are fitted, as the statistical peers are). The
//! test split is never read here.
//!
//! Table 11 of seed 003: pinball loss, AdamW, cosine schedule with a 5-epoch
//! linear warm-up, batch 256, dropout 0.3, early stopping on validation MAE
//! with patience 10, z-score normalisation fit on the fitted rows only. One
//! difference, for the time budget: an "epoch" is `windows_per_epoch`
//! (32,768) windows drawn at random from all train windows (482k on
//! bitbrains-rnd at L = 12), and there are at most 25 of them, because
//! training here runs at about 1,000 windows/s on two cores: 25 x 32,768
//! windows is about 14 minutes, so warm-up, cosine decay and patience all
//! act inside the 15-minute budget. Everything random (initial weights,
//! window order, dropout masks) comes from one seeded generator.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::{GriddedSeries, TRAIN_END_PCT, VAL_END_PCT};
use crate::domain::{N_FEATURES, N_MEASURED, TARGET};
use crate::eval::mase_scale;
use crate::features::{NormStats, encode, normalise_rows, raw_rows};
use crate::forecast::DAY_STEPS;
use crate::forecast::bilstm_attention::{
    BiLstmAttention, Config, MaskSource, pinball_loss, weighted_pinball_loss,
};
use crate::forecast::neural::Architecture;
use crate::forecast::tft::{Tft, TftConfig};

mod card;
mod folder;
pub mod policy;
pub mod ppo;
pub mod retrain;
mod rng;
mod validation;

pub use validation::DatasetVal;
use validation::{naive_val_metrics, val_by_dataset, val_metrics};

pub use card::write_model_card;
pub use folder::write_model_folder;
pub use rng::SplitMix64;

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Bilstm,
    Lstm,
    Tft,
}

impl NetKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bilstm => "bilstm",
            Self::Lstm => "lstm",
            Self::Tft => "tft",
        }
    }
}

/// The network being trained.
enum TrainNet {
    Recurrent(BiLstmAttention),
    Tft(Box<Tft>),
}

impl TrainNet {
    /// x [B, L, 23], future [B, H, known] -> quantiles [B, H, 3].
    fn forward(
        &self,
        x: &Tensor,
        future: &Tensor,
        dropout: Option<&mut dyn MaskSource>,
    ) -> candle_core::Result<Tensor> {
        match self {
            Self::Recurrent(n) => n.forward(x, dropout),
            Self::Tft(n) => n.forward(x, future, dropout),
        }
    }
}

/// Training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOptions {
    pub kind: NetKind,
    pub lookback: usize,
    pub max_epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_epochs: usize,
    pub patience: usize,
    pub seed: u64,
    /// Stop (keeping the best epoch) once this much time has passed.
    pub max_minutes: f64,
    pub windows_per_epoch: usize,
    /// Shrink the network (tests): hidden units per direction.
    pub hidden: usize,
    /// Weight each window's loss by median_scale / scale of its series
    /// (clipped to [0.1, 10]; scale = the train segment's mean daily
    /// seasonal difference, the MASE denominator), so near-idle series
    /// count as much as bursty ones. With `window_inputs`, whose errors
    /// are in units of each window, the weight is the window's unit /
    /// its series' scale (clipped to [0.05, 20]): the loss is then in
    /// units of the series' scale. Off: every window weighs the same.
    pub scale_weighting: bool,
    /// Head in units of the window's volatility ([`Config::window_scale`]).
    pub window_scale: bool,
    /// Model log(1 + cpu) ([`NormStats::log_target`]). Ignored with
    /// `window_inputs`, which model CPU itself.
    pub log_target: bool,
    /// Scale every measured input and the target by the window itself
    /// ([`NormStats::per_window`]) instead of the training set's
    /// statistics: inputs that transfer to groups unlike the training
    /// data.
    #[serde(default)]
    pub window_inputs: bool,
    /// Keep an exponential moving average of the weights with this decay
    /// per optimiser step (0: off). When on, validation, early stopping
    /// and the saved model use the averaged weights; the raw weights'
    /// validation MAE is logged beside them.
    pub ema_decay: f64,
    /// Fit on the first `fit_end_pct` % of each series (floor, as the
    /// EVAL.md cut points): windows whose targets lie there, and the
    /// z-score statistics of those rows. 70 (the default) is the train
    /// split, and the validation split then stops training early. Above
    /// 70 the fit reaches into validation (85 = train + validation, the
    /// refit the statistical peers make): validation is then in-sample,
    /// so nothing stops early, and the last epoch is kept. Below 70 leaves
    /// a gap before validation (how much the most recent data is worth).
    pub fit_end_pct: usize,
    /// Each measured covariate (every input but CPU and the calendar) is
    /// made absent, the neutral value a group that does not publish it
    /// gets, for a whole training window with this probability,
    /// independently per covariate (0: off, and no random draw is made,
    /// so training is unchanged). Groups often publish no memory or disk
    /// metrics, and a network that leans on covariate levels it learned
    /// per VM does badly on a group whose levels it never saw.
    pub covariate_dropout: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            kind: NetKind::Bilstm,
            lookback: 12,
            max_epochs: 25,
            batch: 256,
            lr: 1e-3,
            weight_decay: 1e-4,
            warmup_epochs: 5,
            patience: 10,
            seed: 42,
            max_minutes: 15.0,
            windows_per_epoch: 32_768,
            hidden: 64,
            scale_weighting: false,
            window_scale: false,
            log_target: true,
            window_inputs: false,
            ema_decay: 0.0,
            fit_end_pct: TRAIN_END_PCT,
            covariate_dropout: 0.0,
        }
    }
}

impl TrainOptions {
    /// The fit reaches into validation: no early stopping, last epoch kept.
    pub fn refit(&self) -> bool {
        self.fit_end_pct > TRAIN_END_PCT
    }

    /// The options' own limits, checked before any data is read; each
    /// error names the `forescale train` flag. (A learning rate of 0 is
    /// allowed here, frozen weights, for tests; the CLI refuses it.)
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        ensure!(
            self.lookback >= 1,
            "--lookback must be at least 1 step, got 0"
        );
        ensure!(self.max_epochs >= 1, "--epochs must be at least 1, got 0");
        ensure!(self.batch >= 1, "--batch must be at least 1, got 0");
        ensure!(
            self.windows_per_epoch >= 1,
            "--windows-per-epoch must be at least 1, got 0"
        );
        ensure!(
            self.hidden >= 4 && self.hidden.is_multiple_of(4),
            "--hidden must be a positive multiple of 4 (the fast inference path packs 4 x hidden \
             gate columns in SIMD vectors; the TFT splits it over 4 attention heads), got {}",
            self.hidden
        );
        ensure!(
            self.lr.is_finite() && self.lr >= 0.0,
            "--lr must be a finite number >= 0, got {}",
            self.lr
        );
        ensure!(self.patience >= 1, "--patience must be at least 1, got 0");
        ensure!(
            self.max_minutes > 0.0,
            "--max-minutes must be more than 0, got {}",
            self.max_minutes
        );
        ensure!(
            (0.0..1.0).contains(&self.ema_decay),
            "--ema-decay must be in [0, 1) (0 turns the weight average off), got {}",
            self.ema_decay
        );
        ensure!(
            (0.0..1.0).contains(&self.covariate_dropout),
            "--covariate-dropout must be in [0, 1) (0 = off), got {}",
            self.covariate_dropout
        );
        ensure!(
            (1..=VAL_END_PCT).contains(&self.fit_end_pct),
            "--fit-end-pct must be in 1-{VAL_END_PCT} ({TRAIN_END_PCT} = the train split, \
             {VAL_END_PCT} = train + validation), got {}",
            self.fit_end_pct
        );
        Ok(())
    }
}

/// End (exclusive) of the fitted rows of a series of `len` steps.
fn fit_end(len: usize, pct: usize) -> usize {
    len * pct / 100
}

/// One line of the training log.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_mae: f64,
    /// Median over series of validation MAE / train seasonal scale.
    pub val_mase_median: f64,
    /// With a weight average: validation MAE of the raw (not averaged)
    /// weights at the end of the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_val_mae: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
}

/// What training produced.
pub struct Trained {
    pub cfg: Architecture,
    pub stats: NormStats,
    /// Weights of the best epoch.
    pub varmap: VarMap,
    pub log: Vec<EpochLog>,
    pub best_epoch: usize,
    pub best_val_mae: f64,
    /// Naive (last value) on the same validation origins: (MAE, median MASE).
    pub naive_val: (f64, f64),
    /// With series of several datasets (ids `<dataset>/<id>`): per dataset,
    /// the kept weights' validation (MAE, median MASE) and naive's on the
    /// same origins, so a pooled score cannot hide one dataset's loss.
    pub val_by_dataset: Vec<DatasetVal>,
    pub seconds: f64,
    pub train_windows: usize,
    pub val_windows: usize,
    /// Peak resident memory of the process at the end of training (Linux
    /// `VmHWM`), MB; `None` where the kernel does not say.
    pub peak_rss_mb: Option<f64>,
}

/// Peak resident set size of this process so far, MB (Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

impl std::fmt::Debug for Trained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trained")
            .field("cfg", &self.cfg)
            .field("best_epoch", &self.best_epoch)
            .field("best_val_mae", &self.best_val_mae)
            .finish_non_exhaustive()
    }
}

/// Normalised inputs and targets of one series.
struct Prepared {
    /// `[n][23]`: normalised by the global statistics; for window inputs,
    /// raw (NaN where absent), normalised window by window in [`gather`].
    x: Vec<f32>,
    y_norm: Vec<f32>,
    y_raw: Vec<f32>,
    /// MASE denominator of the train segment (None when zero).
    scale: Option<f64>,
}

fn prepare(series: &[GriddedSeries], stats: &NormStats) -> Vec<Prepared> {
    series
        .iter()
        .map(|s| {
            let n = s.window.rows.len();
            let x = if stats.per_window {
                raw_rows(&s.window.rows, n)
            } else {
                encode(&s.window, stats, n).values
            };
            let y_raw = s.target();
            let y_norm = y_raw.iter().map(|v| stats.normalise(TARGET, *v)).collect();
            let scale = mase_scale(&y_raw[..s.split.train_end], DAY_STEPS);
            Prepared {
                x,
                y_norm,
                y_raw,
                scale,
            }
        })
        .collect()
}

/// Covariate dropout on one normalised window `[L][23]`: each measured
/// feature but CPU (the target) is set to 0, the neutral value of an absent
/// feature, on every step with probability `p`, one draw per feature.
fn drop_covariates(window: &mut [f32], p: f64, rng: &mut SplitMix64) {
    for k in (0..N_MEASURED).filter(|k| *k != TARGET) {
        if f64::from(rng.next_f32()) < p {
            for row in window.chunks_exact_mut(N_FEATURES) {
                row[k] = 0.0;
            }
        }
    }
}

/// (series, origin): the window is rows [t - L, t), the target [t, t + H).
type Origin = (usize, usize);

/// A batch: inputs [B, L, 23], known future inputs [B, H, known] (the
/// calendar columns of the target rows; `known` = 0 for the recurrent
/// networks), targets [B, H], and each window's target (shift, unit) to
/// turn normalised forecasts back into CPU.
struct Batch {
    x: Tensor,
    future: Tensor,
    y: Tensor,
    scaling: Vec<(f32, f32)>,
}

/// The batch of the origins `idx`.
///
/// `absent`: (probability, rng) of [`TrainOptions::covariate_dropout`];
/// `None` (or probability 0) draws nothing and changes nothing.
fn gather(
    data: &[Prepared],
    stats: &NormStats,
    idx: &[Origin],
    (l, h, known): (usize, usize, usize),
    absent: Option<(f64, &mut SplitMix64)>,
) -> candle_core::Result<Batch> {
    let mut xb = Vec::with_capacity(idx.len() * l * N_FEATURES);
    let mut fb = Vec::with_capacity(idx.len() * h * known);
    let mut yb = Vec::with_capacity(idx.len() * h);
    let mut scaling = Vec::with_capacity(idx.len());
    let mut absent = absent.filter(|(p, _)| *p > 0.0);
    for &(s, t) in idx {
        let at = xb.len();
        let window = &data[s].x[(t - l) * N_FEATURES..t * N_FEATURES];
        if stats.per_window {
            let (values, _, shift, unit) = normalise_rows(window, stats);
            xb.extend_from_slice(&values);
            yb.extend(data[s].y_raw[t..t + h].iter().map(|y| (y - shift) / unit));
            scaling.push((shift, unit));
        } else {
            xb.extend_from_slice(window);
            yb.extend_from_slice(&data[s].y_norm[t..t + h]);
            scaling.push((0.0, 1.0));
        }
        if let Some((p, rng)) = absent.as_mut() {
            drop_covariates(&mut xb[at..], *p, rng);
        }
        for r in t..t + h {
            let row = &data[s].x[r * N_FEATURES..(r + 1) * N_FEATURES];
            for (j, v) in row.iter().enumerate().skip(N_FEATURES - known) {
                fb.push(if stats.per_window {
                    stats.normalise(j, *v)
                } else {
                    *v
                });
            }
        }
    }
    Ok(Batch {
        x: Tensor::from_vec(xb, (idx.len(), l, N_FEATURES), &Device::Cpu)?,
        future: Tensor::from_vec(fb, (idx.len(), h, known), &Device::Cpu)?,
        y: Tensor::from_vec(yb, (idx.len(), h), &Device::Cpu)?,
        scaling,
    })
}

/// Overwrite every weight with a seeded draw from PyTorch's default
/// distributions: U(-1/sqrt(H), 1/sqrt(H)) for the LSTM, U(-1/sqrt(fan_in),
/// 1/sqrt(fan_in)) for linear layers; layer norms start at weight 1, bias 0.
fn seeded_init(varmap: &VarMap, hidden: usize, rng: &mut SplitMix64) -> candle_core::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        if name.ends_with("norm.weight") || name.ends_with("norm.bias") {
            let v: f32 = if name.ends_with("weight") { 1.0 } else { 0.0 };
            var.set(&Tensor::full(v, var.shape(), &Device::Cpu)?)?;
            continue;
        }
        let bound = if name.starts_with("lstm") {
            1.0 / (hidden as f32).sqrt()
        } else {
            let w = name
                .strip_suffix(".bias")
                .map_or(name.clone(), |p| format!("{p}.weight"));
            let fan_in = data
                .get(&w)
                .map_or(1, |v| v.dims().last().copied().unwrap_or(1));
            1.0 / (fan_in as f32).sqrt()
        };
        let n = var.elem_count();
        let v: Vec<f32> = (0..n)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
            .collect();
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?)?;
    }
    Ok(())
}

fn snapshot(varmap: &VarMap) -> candle_core::Result<HashMap<String, Tensor>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    data.iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Exponential moving average of the weights (Polyak averaging), with
/// the usual warm-up: the decay used at step t is min(decay, (1 + t) /
/// (10 + t)), so early averages are not dominated by the initial weights.
struct Ema {
    decay: f64,
    steps: usize,
    weights: HashMap<String, Tensor>,
}

impl Ema {
    fn new(varmap: &VarMap, decay: f64) -> candle_core::Result<Self> {
        Ok(Self {
            decay,
            steps: 0,
            weights: snapshot(varmap)?,
        })
    }

    fn update(&mut self, varmap: &VarMap) -> candle_core::Result<()> {
        let t = self.steps as f64;
        let d = self.decay.min((1.0 + t) / (10.0 + t));
        self.steps += 1;
        let data = varmap
            .data()
            .lock()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        for (k, v) in data.iter() {
            if let Some(avg) = self.weights.get_mut(k) {
                *avg = (avg.affine(d, 0.0)? + v.as_tensor().affine(1.0 - d, 0.0)?)?;
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        self.weights
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.copy()?)))
            .collect()
    }
}

fn restore(varmap: &VarMap, snap: &HashMap<String, Tensor>) -> candle_core::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    for (k, v) in data.iter() {
        if let Some(t) = snap.get(k) {
            v.set(t)?;
        }
    }
    Ok(())
}

/// Per-series loss weights: median scale / scale, clipped to [0.1, 10].
fn series_weights(data: &[Prepared]) -> Vec<f32> {
    let mut scales: Vec<f32> = data
        .iter()
        .filter_map(|d| d.scale)
        .map(|s| s as f32)
        .collect();
    let median = crate::forecast::quantile(&mut scales, 0.5).unwrap_or(1.0);
    data.iter()
        .map(|d| {
            d.scale
                .map_or(1.0, |s| (median / s as f32).clamp(0.1, 10.0))
        })
        .collect()
}

/// The loss weight of one window: the series' weight, or with window
/// inputs (whose errors are in units of the window) unit / the series'
/// scale, clipped to [0.05, 20], so the loss is in units of the series'
/// scale: a flat window that jumps, whose unit is tiny, no longer
/// dominates the loss.
fn window_weight(series: &Prepared, weight: f32, unit: f32, stats: &NormStats) -> f32 {
    if !stats.per_window {
        return weight;
    }
    series
        .scale
        .map_or(1.0, |s| (unit / s as f32).clamp(0.05, 20.0))
}

fn lr_at(opts: &TrainOptions, step: usize, per_epoch: usize) -> f64 {
    let warm = opts.warmup_epochs * per_epoch;
    let total = opts.max_epochs * per_epoch;
    if step < warm {
        return opts.lr * (step + 1) as f64 / warm as f64;
    }
    let p = (step - warm) as f64 / (total - warm).max(1) as f64;
    opts.lr * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos())
}

/// The architecture `opts` ask for: Table 8 of seed 003 for the recurrent
/// networks, [`TftConfig::standard`] for the TFT, with `opts.hidden` as the
/// width (TFT: d_model, variable embeddings of hidden / 4).
pub fn architecture(opts: &TrainOptions) -> Architecture {
    match opts.kind {
        NetKind::Bilstm | NetKind::Lstm => {
            let mut cfg = Config::paper(opts.lookback, opts.kind == NetKind::Bilstm);
            cfg.hidden = opts.hidden;
            cfg.attention_dim = opts.hidden;
            cfg.window_scale = opts.window_scale;
            Architecture::Recurrent(cfg)
        }
        NetKind::Tft => {
            let mut cfg = TftConfig::standard(opts.lookback);
            cfg.hidden = opts.hidden;
            cfg.hidden_continuous = (opts.hidden / 4).max(1);
            cfg.window_scale = opts.window_scale;
            Architecture::Tft(cfg)
        }
    }
}

fn known_inputs(arch: &Architecture) -> usize {
    match arch {
        Architecture::Tft(c) => c.known_dim,
        Architecture::Recurrent(_) => 0,
    }
}

fn build(arch: &Architecture, vb: VarBuilder) -> candle_core::Result<TrainNet> {
    Ok(match arch {
        Architecture::Recurrent(c) => TrainNet::Recurrent(BiLstmAttention::new(c, vb)?),
        Architecture::Tft(c) => TrainNet::Tft(Box::new(Tft::new(c, vb)?)),
    })
}

/// Train on the train split (or the rows `fit_end_pct` says); stop early on
/// the validation split unless the fit covers it.
pub fn train(
    series: &[GriddedSeries],
    opts: &TrainOptions,
    show_progress: bool,
) -> anyhow::Result<Trained> {
    let started = Instant::now();
    opts.check()?;
    let cfg = architecture(opts);
    let (l, h, known) = (cfg.lookback(), cfg.horizon(), known_inputs(&cfg));
    let mut stats = NormStats::fit_with(
        series
            .iter()
            .flat_map(|s| &s.window.rows[..fit_end(s.window.rows.len(), opts.fit_end_pct)]),
        opts.log_target && !opts.window_inputs,
    );
    stats.per_window = opts.window_inputs;
    let data = prepare(series, &stats);
    let weights = opts.scale_weighting.then(|| series_weights(&data));
    let mut train_origins: Vec<Origin> = Vec::new();
    let mut val_origins: Vec<Origin> = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let sp = s.split;
        // Targets inside the fitted rows only (the train split by default).
        let end = fit_end(s.window.rows.len(), opts.fit_end_pct);
        train_origins.extend((l..(end + 1).saturating_sub(h)).map(|t| (i, t)));
        // Origins every H steps over validation, as EVAL.md does over test.
        let mut t = sp.train_end.max(l);
        while t + h <= sp.val_end {
            val_origins.push((i, t));
            t += h;
        }
    }
    anyhow::ensure!(
        !train_origins.is_empty() && !val_origins.is_empty(),
        "the series are too short for look-back {l} and horizon {h}"
    );
    let mut rng = SplitMix64::new(opts.seed);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = build(&cfg, vb)?;
    seeded_init(&varmap, opts.hidden, &mut rng)?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let per_epoch = opts
        .windows_per_epoch
        .min(train_origins.len())
        .div_ceil(opts.batch);
    let mut log = Vec::new();
    let (mut best, mut best_epoch, mut since_best) = (f64::INFINITY, 0usize, 0usize);
    let mut best_weights = snapshot(&varmap)?;
    let mut ema = (opts.ema_decay > 0.0)
        .then(|| Ema::new(&varmap, opts.ema_decay))
        .transpose()?;
    let mut step = 0usize;
    let naive_val = naive_val_metrics(&data, &val_origins, h);
    if show_progress {
        eprintln!(
            "naive on the validation origins: MAE {:.4}, median MASE {:.4}",
            naive_val.0, naive_val.1
        );
        eprintln!(
            "training {} (L={l}, H={h}): {} train windows, {} validation origins, {per_epoch} batches of {} per epoch",
            opts.kind.name(),
            train_origins.len(),
            val_origins.len(),
            opts.batch
        );
        if opts.refit() {
            eprintln!(
                "fitting on the first {} % of each series: validation is in-sample, so it stops nothing; the last epoch is kept",
                opts.fit_end_pct
            );
        }
    }
    for epoch in 1..=opts.max_epochs {
        let pb = if show_progress {
            let pb = ProgressBar::new(per_epoch as u64);
            pb.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix:>3} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb.set_prefix(epoch.to_string());
            pb
        } else {
            ProgressBar::hidden()
        };
        let mut loss_sum = 0.0;
        for _ in 0..per_epoch {
            let idx: Vec<Origin> = (0..opts.batch)
                .map(|_| train_origins[rng.below(train_origins.len())])
                .collect();
            let Batch {
                x,
                future: f,
                y,
                scaling,
            } = gather(
                &data,
                &stats,
                &idx,
                (l, h, known),
                Some((opts.covariate_dropout, &mut rng)),
            )?;
            let lr = lr_at(opts, step, per_epoch);
            opt.set_learning_rate(lr);
            let pred = net.forward(&x, &f, Some(&mut rng))?;
            let loss = match &weights {
                None => pinball_loss(&pred, &y)?,
                Some(w) => {
                    let wb: Vec<f32> = idx
                        .iter()
                        .zip(&scaling)
                        .map(|((s, _), (_, unit))| window_weight(&data[*s], w[*s], *unit, &stats))
                        .collect();
                    let mean = wb.iter().sum::<f32>() / wb.len() as f32;
                    let wb: Vec<f32> = wb.iter().map(|v| v / mean).collect();
                    let wt = Tensor::from_vec(wb, idx.len(), &Device::Cpu)?;
                    weighted_pinball_loss(&pred, &y, Some(&wt))?
                }
            };
            opt.backward_step(&loss)?;
            if let Some(ema) = &mut ema {
                ema.update(&varmap)?;
            }
            let lv = f64::from(loss.to_scalar::<f32>()?);
            loss_sum += lv;
            step += 1;
            pb.set_message(format!("loss {lv:.4} lr {lr:.2e}"));
            pb.inc(1);
        }
        pb.finish_and_clear();
        // With a weight average, validate (and keep) the averaged weights;
        // the raw ones are put back for the next epoch's steps.
        let mut raw_val_mae = None;
        let (mae, mase) = match &ema {
            None => val_metrics(&net, &cfg, &data, &val_origins, &stats)?,
            Some(ema) => {
                raw_val_mae = Some(val_metrics(&net, &cfg, &data, &val_origins, &stats)?.0);
                let raw = snapshot(&varmap)?;
                restore(&varmap, &ema.weights)?;
                let scores = val_metrics(&net, &cfg, &data, &val_origins, &stats)?;
                restore(&varmap, &raw)?;
                scores
            }
        };
        let entry = EpochLog {
            epoch,
            train_loss: loss_sum / per_epoch as f64,
            val_mae: mae,
            val_mase_median: mase,
            raw_val_mae,
            lr: lr_at(opts, step.saturating_sub(1), per_epoch),
            seconds: started.elapsed().as_secs_f64(),
        };
        // A refit keeps its last epoch: validation is in-sample there.
        if mae < best || opts.refit() {
            best = mae;
            best_epoch = epoch;
            since_best = 0;
            best_weights = match &ema {
                Some(ema) => ema.snapshot()?,
                None => snapshot(&varmap)?,
            };
        } else {
            since_best += 1;
        }
        if show_progress {
            eprintln!(
                "epoch {epoch:>3}: train pinball {:.4}  val MAE {mae:.4}{}  val median MASE {mase:.4}{}  ({:.0} s)",
                entry.train_loss,
                if best_epoch == epoch { " *" } else { "" },
                raw_val_mae.map_or(String::new(), |r| format!(
                    "  (raw weights: val MAE {r:.4})"
                )),
                entry.seconds
            );
        }
        log.push(entry);
        if since_best >= opts.patience && !opts.refit() {
            if show_progress {
                eprintln!(
                    "early stop: no better validation MAE for {} epochs",
                    opts.patience
                );
            }
            break;
        }
        if started.elapsed().as_secs_f64() > opts.max_minutes * 60.0 {
            if show_progress {
                eprintln!("time budget of {} min reached", opts.max_minutes);
            }
            break;
        }
    }
    restore(&varmap, &best_weights)?;
    let ids: Vec<&str> = series.iter().map(|s| s.id.as_str()).collect();
    let by_dataset = val_by_dataset(&net, &cfg, &data, &ids, &val_origins, &stats)?;
    if show_progress {
        for d in &by_dataset {
            eprintln!(
                "validation, {}: MAE {:.4} (naive {:.4}, ratio {:.3}), median MASE {:.4} (naive {:.4}), {} origins",
                d.dataset,
                d.mae,
                d.naive_mae,
                d.mae / d.naive_mae,
                d.mase_median,
                d.naive_mase_median,
                d.origins
            );
        }
    }
    Ok(Trained {
        cfg,
        stats,
        varmap,
        log,
        best_epoch,
        best_val_mae: best,
        naive_val,
        val_by_dataset: by_dataset,
        seconds: started.elapsed().as_secs_f64(),
        train_windows: train_origins.len(),
        val_windows: val_origins.len(),
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Gradient of the loss for every weight of a freshly built network (the
/// check that no op silently drops gradients).
pub fn gradient_norms(
    cfg: &Architecture,
    hidden: usize,
    seed: u64,
) -> candle_core::Result<Vec<(String, f32)>> {
    let mut rng = SplitMix64::new(seed);
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let net = build(cfg, vb)?;
    seeded_init(&varmap, hidden, &mut rng)?;
    let (b, l, h, k) = (4, cfg.lookback(), cfg.horizon(), known_inputs(cfg));
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect() };
    let x = Tensor::from_vec(draw(b * l * N_FEATURES), (b, l, N_FEATURES), &Device::Cpu)?;
    let f = Tensor::from_vec(draw(b * h * k), (b, h, k), &Device::Cpu)?;
    let y = Tensor::from_vec(draw(b * h), (b, h), &Device::Cpu)?;
    let loss = pinball_loss(&net.forward(&x, &f, Some(&mut rng))?, &y)?;
    let grads = loss.backward()?;
    let data = varmap
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut out: Vec<(String, f32)> = data
        .iter()
        .map(|(k, v): (&String, &Var)| {
            let g = grads
                .get(v.as_tensor())
                .and_then(|g| g.abs().ok()?.sum_all().ok()?.to_scalar::<f32>().ok())
                .unwrap_or(0.0);
            (k.clone(), g)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests;
