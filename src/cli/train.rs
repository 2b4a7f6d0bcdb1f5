//! `forescale train`: fit a forecaster (bilstm, lstm, tft) on a dataset
//! and write its folder (weights, config, model card, test scores), or
//! train the scaling policy with PPO in the simulator.

use std::path::PathBuf;

use clap::Args;

use super::{DatasetArgs, GridArgs, ModelsArgs, command_line};
use crate::data::{GriddedSeries, LoadReport};
use crate::eval::ReportContext;

// The field docs are --help text, where <model> is a placeholder, not HTML.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// `bilstm` (bidirectional), `lstm` (the unidirectional ablation) or
    /// `policy` (the PPO scaling policy, trained in the simulator on the
    /// train segments of --policy-traces).
    #[arg(long, env = "FORESCALE_TRAIN_MODEL", default_value = "bilstm",
          value_parser = ["bilstm", "lstm", "tft", "policy"])]
    pub model: String,
    /// Policy: the traces whose train segments it learns on (`main` or
    /// one trace name).
    #[arg(long, env = "FORESCALE_POLICY_TRACES", default_value = "main")]
    pub policy_traces: String,
    /// Policy: the forecaster whose quantiles it reads (a trained model in
    /// --models-dir, or naive / snaive).
    #[arg(long, env = "FORESCALE_POLICY_FORECASTER", default_value = "bilstm")]
    pub policy_forecaster: String,
    /// Policy: PPO iterations (rollout of 512 steps per trace each).
    #[arg(long, env = "FORESCALE_POLICY_ITERATIONS", default_value_t = 300)]
    pub policy_iterations: usize,
    /// Policy: reward weight of a step in violation of the SLA (15, with
    /// validation every 2 iterations, had the best validation score of the
    /// runs in models/policy/README.md).
    #[arg(
        long,
        env = "FORESCALE_POLICY_VIOLATION_WEIGHT",
        default_value_t = 15.0
    )]
    pub policy_violation_weight: f64,
    /// Policy: train and select it with the default guardrails after it,
    /// as it is deployed.
    #[arg(long, env = "FORESCALE_POLICY_GUARDRAILS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub policy_guardrails: bool,
    /// Policy: discount factor of PPO's returns and GAE.
    #[arg(long, env = "FORESCALE_POLICY_GAMMA", default_value_t = 0.99)]
    pub policy_gamma: f64,
    /// Policy: agents per trace in each rollout, each replaying its own
    /// random stretch of the train segment.
    #[arg(long, env = "FORESCALE_POLICY_ENVS_PER_TRACE", default_value_t = 1)]
    pub policy_envs_per_trace: usize,
    /// Policy: divide rewards by the running standard deviation of the
    /// discounted return.
    #[arg(long, env = "FORESCALE_POLICY_SCALE_REWARDS", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub policy_scale_rewards: bool,
    /// Policy: AdamW learning rate of actor and critic.
    #[arg(long, env = "FORESCALE_POLICY_LR", default_value_t = 3e-4)]
    pub policy_lr: f64,
    /// Policy: validate (and keep the checkpoint if it is the best so far)
    /// every this many iterations.
    #[arg(long, env = "FORESCALE_POLICY_VALIDATE_EVERY", default_value_t = 2)]
    pub policy_validate_every: usize,
    /// Policy: start from this trained policy folder's weights (actor and
    /// critic) instead of random ones; it is validated first, as
    /// iteration 0, so it is kept if no iteration beats it.
    #[arg(long, env = "FORESCALE_POLICY_INIT")]
    pub policy_init: Option<PathBuf>,
    /// Folder of trained models (the policy's forecaster).
    #[command(flatten)]
    pub registry: ModelsArgs,
    /// Look-back L in steps.
    #[arg(long, env = "FORESCALE_TRAIN_LOOKBACK", default_value_t = 12)]
    pub lookback: usize,
    /// Most epochs.
    #[arg(long, env = "FORESCALE_TRAIN_EPOCHS", default_value_t = 25)]
    pub epochs: usize,
    /// Windows drawn per epoch.
    #[arg(
        long,
        env = "FORESCALE_TRAIN_WINDOWS_PER_EPOCH",
        default_value_t = 32_768
    )]
    pub windows_per_epoch: usize,
    /// Batch size.
    #[arg(long, env = "FORESCALE_TRAIN_BATCH", default_value_t = 256)]
    pub batch: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, env = "FORESCALE_TRAIN_LR", default_value_t = 1e-3)]
    pub lr: f64,
    /// LSTM units per direction (the TFT: its hidden width); a multiple of 4.
    #[arg(long, env = "FORESCALE_TRAIN_HIDDEN", default_value_t = 64)]
    pub hidden: usize,
    /// Epochs without a better validation MAE before stopping.
    #[arg(long, env = "FORESCALE_TRAIN_PATIENCE", default_value_t = 10)]
    pub patience: usize,
    /// Seed of every random choice (weights, window order, dropout).
    #[arg(long, env = "FORESCALE_TRAIN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Time budget; training stops after the epoch that passes it.
    #[arg(long, env = "FORESCALE_TRAIN_MAX_MINUTES", default_value_t = 15.0)]
    pub max_minutes: f64,
    /// Weight each series' windows by the inverse of its scale (median
    /// scale / own scale, clipped to [0.1, 10]) so near-idle series count.
    /// With --window-inputs: the loss in units of each series' scale
    /// (a window's unit / its series' MASE denominator, clipped to
    /// [0.05, 20]) instead of the window's own unit.
    #[arg(long, env = "FORESCALE_TRAIN_SCALE_WEIGHTING")]
    pub scale_weighting: bool,
    /// Head in units of each window's own CPU volatility (see
    /// `Config::window_scale`). Off by default: on validation it gave a
    /// lower median MASE but a higher MAE (models/experiments/README.md).
    #[arg(long, env = "FORESCALE_TRAIN_WINDOW_SCALE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub window_scale: bool,
    /// Model log(1 + cpu) instead of CPU % (quantiles are kept; errors
    /// weigh relatively, so near-idle series count). On by default: on
    /// validation it lowered both MAE and median MASE (models/experiments/README.md).
    #[arg(long, env = "FORESCALE_TRAIN_LOG_TARGET", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub log_target: bool,
    /// Scale every measured input and the target by the window the model
    /// reads (mean and standard deviation of each feature over the
    /// look-back) instead of the training set's statistics, so no absolute
    /// level decides a forecast and forecasts scale with a group's load.
    /// Models CPU itself (--log-target does not apply).
    #[arg(long, env = "FORESCALE_TRAIN_WINDOW_INPUTS")]
    pub window_inputs: bool,
    /// The name the model is served under (`?model=NAME`; its folder's
    /// config says it). Default: --model.
    #[arg(long, env = "FORESCALE_TRAIN_NAME")]
    pub name: Option<String>,
    /// Leave these datasets out of a --dataset list (leave-one-dataset-out
    /// runs), comma-separated.
    #[arg(long, env = "FORESCALE_TRAIN_EXCLUDE_DATASET", value_delimiter = ',')]
    pub exclude_dataset: Vec<String>,
    /// Average the weights over training (exponential moving average with
    /// this decay per step; 0 = off). Validation, early stopping and the
    /// saved model then use the averaged weights.
    #[arg(long, env = "FORESCALE_TRAIN_EMA_DECAY", default_value_t = 0.0)]
    pub ema_decay: f64,
    /// Fit on the first this many % of each series: 70 = the train split
    /// (validation stops training early); 85 = train + validation (a
    /// fixed number of epochs, the last one kept; validation is then
    /// in-sample); below 70 leaves a gap before validation.
    #[arg(long, env = "FORESCALE_TRAIN_FIT_END_PCT", default_value_t = crate::data::TRAIN_END_PCT)]
    pub fit_end_pct: usize,
    /// Make each measured covariate (every input but CPU and the
    /// calendar) absent for a whole training window with this probability,
    /// as for a group that does not publish it, so the network cannot
    /// lean on covariate levels it may never get (0 = off; see
    /// models/experiments/README.md, "Covariates").
    #[arg(long, env = "FORESCALE_TRAIN_COVARIATE_DROPOUT", default_value_t = 0.0)]
    pub covariate_dropout: f64,
    /// Output folder (default: models/<model>).
    #[arg(long, env = "FORESCALE_TRAIN_OUT")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub grid: GridArgs,
}

pub(super) fn run(args: &TrainArgs) -> anyhow::Result<()> {
    if args.model == "policy" {
        return train_policy(args);
    }
    let opts = crate::train::TrainOptions {
        kind: match args.model.as_str() {
            "lstm" => crate::train::NetKind::Lstm,
            "tft" => crate::train::NetKind::Tft,
            _ => crate::train::NetKind::Bilstm,
        },
        lookback: args.lookback,
        max_epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        patience: args.patience,
        seed: args.seed,
        max_minutes: args.max_minutes,
        windows_per_epoch: args.windows_per_epoch,
        hidden: args.hidden,
        scale_weighting: args.scale_weighting,
        window_scale: args.window_scale,
        log_target: args.log_target && !args.window_inputs,
        window_inputs: args.window_inputs,
        ema_decay: args.ema_decay,
        fit_end_pct: args.fit_end_pct,
        covariate_dropout: args.covariate_dropout,
        ..crate::train::TrainOptions::default()
    };
    // Bad options fail at once, before minutes of loading data.
    opts.check()?;
    if let Some(n) = &args.name {
        anyhow::ensure!(
            !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'),
            "--name {n:?}: use 1-64 characters of a-z, 0-9, '-' and '_'"
        );
        anyhow::ensure!(
            !crate::forecast::Forecaster::NAMES.contains(&n.as_str()),
            "--name {n:?} is a built-in model's name"
        );
    }
    anyhow::ensure!(
        args.lr > 0.0,
        "--lr must be more than 0 (0 would leave the initial weights), got {}",
        args.lr
    );
    let (name, series, report) = training_series(args)?;
    let trained = crate::train::train(&series, &opts, true)?;
    let served = args.name.clone().unwrap_or_else(|| args.model.clone());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models").join(&served));
    let ctx = ReportContext::new(name, &series, report, command_line());
    crate::train::write_model_folder(&out, &served, &trained, &opts, &series, &ctx)?;
    println!("model card: {}", out.join("README.md").display());
    Ok(())
}

/// The series to fit: one dataset, or several (`--dataset a,b,c`, less
/// `--exclude-dataset`) whose series are named `<dataset>/<id>`.
fn training_series(args: &TrainArgs) -> anyhow::Result<(String, Vec<GriddedSeries>, LoadReport)> {
    super::evaluate::load_datasets(&args.data, &args.exclude_dataset, args.grid.step_seconds)
}

fn train_policy(args: &TrainArgs) -> anyhow::Result<()> {
    use crate::train::ppo;
    anyhow::ensure!(
        args.policy_gamma > 0.0 && args.policy_gamma <= 1.0,
        "--policy-gamma must be in (0, 1], got {}",
        args.policy_gamma
    );
    anyhow::ensure!(
        (1..=64).contains(&args.policy_envs_per_trace),
        "--policy-envs-per-trace must be in 1..=64, got {}",
        args.policy_envs_per_trace
    );
    anyhow::ensure!(
        args.policy_lr > 0.0 && args.policy_lr < 1.0,
        "--policy-lr must be in (0, 1), got {}",
        args.policy_lr
    );
    anyhow::ensure!(
        args.policy_validate_every >= 1,
        "--policy-validate-every must be at least 1"
    );
    let opts = ppo::PpoOptions {
        iterations: args.policy_iterations,
        guardrails: args.policy_guardrails,
        gamma: args.policy_gamma,
        envs_per_trace: args.policy_envs_per_trace,
        scale_rewards: args.policy_scale_rewards,
        lr: args.policy_lr,
        validate_every: args.policy_validate_every,
        seed: args.seed,
        reward: ppo::RewardWeights {
            violation: args.policy_violation_weight,
            ..ppo::RewardWeights::default()
        },
        ..ppo::PpoOptions::default()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models").join("policy"));
    crate::train::policy::train_policy(&crate::train::policy::PolicyTraining {
        registry: args.registry.load()?,
        data_root: args.data.root.data_root.clone(),
        traces: args.policy_traces.clone(),
        forecaster: args.policy_forecaster.clone(),
        init: args.policy_init.clone(),
        opts,
        out,
        command: command_line(),
    })
}
