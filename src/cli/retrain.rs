//! `forescale retrain`: continuous improvement of the scaling policy. A
//! candidate is trained on recent histories (files, traces, or the
//! service's store) and promoted only if it beats the live policy on the
//! same replay; `--rollback-to` serves an archived version again.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{DataRootArgs, ModelsArgs, StoreArgs, command_line};
use crate::app::config::redact;
use crate::domain::ScalingGroup;
use crate::store::{StoreConfig, WindowStore};

#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// Histories from files or traces, comma-separated: CSV files with
    /// columns timestamp,value (Unix seconds, RFC 3339 or YYYY-MM-DD
    /// HH:MM:SS), trace names of the main set, or `main`.
    #[arg(long, env = "FORESCALE_RETRAIN_TRACE", value_delimiter = ',')]
    pub trace: Vec<String>,
    /// Histories from the service's store: these groups (comma-separated),
    /// or `all` for every group with enough history. Read from --redis-url
    /// when set, else from --data-dir without changing it (safe beside a
    /// running service).
    #[arg(long, env = "FORESCALE_RETRAIN_GROUPS", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// The service's store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only the newest this many days of each history (0 = all of it).
    #[arg(long, env = "FORESCALE_RETRAIN_RECENT_DAYS", default_value_t = 14.0)]
    pub recent_days: f64,
    /// The versioned policy folder: the live policy is read from it and a
    /// promoted candidate written to it (the old one kept in versions/).
    #[arg(long, env = "FORESCALE_POLICY_DIR", default_value = "models/policy")]
    pub policy_dir: PathBuf,
    /// Folder of trained models (the forecaster the policy reads).
    #[command(flatten)]
    pub registry: ModelsArgs,
    /// The shared datasets (for trace names).
    #[command(flatten)]
    pub root: DataRootArgs,
    /// Percent of each history PPO learns on (oldest part).
    #[arg(long, env = "FORESCALE_RETRAIN_FIT_PCT", default_value_t = 60)]
    pub fit_pct: usize,
    /// Percent after it on which the candidate checkpoint is chosen; the
    /// newest rest is the replay both policies are judged on.
    #[arg(long, env = "FORESCALE_RETRAIN_SELECT_PCT", default_value_t = 20)]
    pub select_pct: usize,
    /// PPO iterations.
    #[arg(long, env = "FORESCALE_RETRAIN_ITERATIONS", default_value_t = 40)]
    pub iterations: usize,
    /// Agents per history in each rollout.
    #[arg(long, env = "FORESCALE_RETRAIN_ENVS", default_value_t = 8)]
    pub envs_per_trace: usize,
    /// AdamW learning rate (a warm start moves gently).
    #[arg(long, env = "FORESCALE_RETRAIN_LR", default_value_t = 1e-4)]
    pub lr: f64,
    /// Reward weight of a step in violation of the SLA.
    #[arg(
        long,
        env = "FORESCALE_RETRAIN_VIOLATION_WEIGHT",
        default_value_t = 15.0
    )]
    pub violation_weight: f64,
    /// Seed of every random choice.
    #[arg(long, env = "FORESCALE_RETRAIN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Start from random weights instead of the live policy's.
    #[arg(long, env = "FORESCALE_RETRAIN_FROM_SCRATCH")]
    pub from_scratch: bool,
    /// Promote only when the replay objective (cost / oracle + 10 per SLA
    /// point under 99 %) drops by more than this.
    #[arg(long, env = "FORESCALE_RETRAIN_MIN_GAIN", default_value_t = 0.0)]
    pub min_gain: f64,
    /// Decide and log, never promote.
    #[arg(long, env = "FORESCALE_RETRAIN_DRY_RUN")]
    pub dry_run: bool,
    /// Instead of retraining: serve archived version N again (as a new
    /// version; the live one is archived first).
    #[arg(long, value_name = "N", conflicts_with_all = ["trace", "groups", "dry_run"])]
    pub rollback_to: Option<u32>,
    /// Longest hole in a history (steps) filled by interpolation; before
    /// a longer one the history is cut and only the newest stretch used.
    #[arg(long, env = "FORESCALE_RETRAIN_MAX_GAP_STEPS", default_value_t = 12)]
    pub max_gap_steps: usize,
    /// Also write the decision (JSON) to this file.
    #[arg(long, env = "FORESCALE_RETRAIN_OUT")]
    pub out: Option<PathBuf>,
    /// Draw each history's replay (demand against the live policy's, the
    /// candidate's and target tracking's ready capacity) as
    /// `<dir>/<history>.svg`.
    #[arg(long, env = "FORESCALE_RETRAIN_PLOTS")]
    pub plots: Option<PathBuf>,
}

impl RetrainArgs {
    pub fn options(&self) -> anyhow::Result<crate::train::retrain::RetrainOptions> {
        use crate::train::retrain::RetrainOptions;
        anyhow::ensure!(
            self.lr > 0.0 && self.lr < 1.0,
            "--lr must be in (0, 1), got {}",
            self.lr
        );
        anyhow::ensure!(
            (1..=64).contains(&self.envs_per_trace),
            "--envs-per-trace must be in 1..=64, got {}",
            self.envs_per_trace
        );
        anyhow::ensure!(
            self.recent_days.is_finite() && self.recent_days >= 0.0,
            "--recent-days must be a number >= 0, got {}",
            self.recent_days
        );
        let d = RetrainOptions::default();
        let o = RetrainOptions {
            fit_pct: self.fit_pct,
            select_pct: self.select_pct,
            warm_start: !self.from_scratch,
            min_gain: self.min_gain,
            max_gap_steps: self.max_gap_steps,
            ppo: crate::train::ppo::PpoOptions {
                iterations: self.iterations,
                envs_per_trace: self.envs_per_trace,
                lr: self.lr,
                seed: self.seed,
                reward: crate::train::ppo::RewardWeights {
                    violation: self.violation_weight,
                    ..crate::train::ppo::RewardWeights::default()
                },
                ..d.ppo
            },
        };
        o.check().map_err(|e| {
            anyhow::anyhow!("--fit-pct / --select-pct / --min-gain / --iterations: {e}")
        })?;
        Ok(o)
    }
}

/// The histories `retrain` was pointed at, as (id, points).
async fn retrain_histories(args: &RetrainArgs) -> anyhow::Result<Vec<(String, Vec<(i64, f64)>)>> {
    use crate::sim::traces;
    let mut out = Vec::new();
    for spec in &args.trace {
        for t in traces::load_spec(&args.root.data_root, spec)
            .with_context(|| format!("--trace {spec}"))?
        {
            let pts = t
                .load
                .iter()
                .enumerate()
                .map(|(i, v)| (t.timestamp(i), *v))
                .collect();
            out.push((t.id, pts));
        }
    }
    if !args.groups.is_empty() {
        let cfg = StoreConfig {
            retention_seconds: i64::MAX / 4,
            ..StoreConfig::default()
        };
        let store = match &args.store.redis_url {
            Some(url) => WindowStore::open(&args.store.backend(), cfg)
                .await
                .with_context(|| format!("--redis-url {}", redact(url)))?,
            None => WindowStore::Memory({
                anyhow::ensure!(
                    args.store.data_dir.join("samples.log").is_file(),
                    "--data-dir {}: no samples.log there (give the service's --data-dir, or \
                     --redis-url for a Redis store)",
                    args.store.data_dir.display()
                );
                crate::store::MemoryStore::open_read_only(&args.store.data_dir, cfg)
                    .with_context(|| format!("--data-dir {}", args.store.data_dir.display()))?
            }),
        };
        let all = args.groups.iter().any(|g| g == "all");
        let names: Vec<ScalingGroup> = if all {
            store.groups().await?.into_iter().map(|g| g.group).collect()
        } else {
            args.groups
                .iter()
                .map(|g| ScalingGroup::parse(g).map_err(|e| anyhow::anyhow!("--groups {g:?}: {e}")))
                .collect::<anyhow::Result<_>>()?
        };
        for g in names {
            let samples = store.samples_since(&g, 0).await?;
            if samples.is_empty() && !all {
                anyhow::bail!("--groups: the store has no samples of group {g}");
            }
            out.push((g.to_string(), crate::train::retrain::load_points(&samples)));
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no history: give --trace (files or trace names) or --groups (from the service's store)"
    );
    Ok(out)
}

pub(super) async fn run(args: RetrainArgs) -> anyhow::Result<()> {
    use crate::train::retrain::{self as rt, PolicyDir};
    if let Some(to) = args.rollback_to {
        let dir = PolicyDir::new(&args.policy_dir);
        let v = dir.rollback(to).with_context(|| {
            format!(
                "--rollback-to {to} in --policy-dir {}",
                args.policy_dir.display()
            )
        })?;
        println!(
            "version {v} is live in {}: the weights of version {to}; logged to {}",
            dir.path.display(),
            dir.log_path().display()
        );
        return Ok(());
    }
    let opts = args.options()?;
    let raw = retrain_histories(&args).await?;
    let all_groups = args.groups.iter().any(|g| g == "all");
    let mut histories = Vec::new();
    for (id, pts) in raw {
        let n = pts.len();
        match rt::history_trace(&id, rt::recent(pts, args.recent_days), &opts) {
            Ok(t) => histories.push(t),
            // `all` skips groups too young to judge; named ones must do.
            Err(e) if all_groups => eprintln!("skipping {id} ({n} samples): {e:#}"),
            Err(e) => return Err(e),
        }
    }
    anyhow::ensure!(
        !histories.is_empty(),
        "no group has the {} steps of history a retrain needs",
        rt::min_history_steps(&opts)
    );
    tokio::task::spawn_blocking(move || {
        let dir = PolicyDir::new(&args.policy_dir);
        anyhow::ensure!(
            dir.path.join("policy.json").is_file(),
            "--policy-dir {}: no policy.json there (a folder written by train --model policy)",
            args.policy_dir.display()
        );
        let registry = args.registry.load()?;
        eprintln!(
            "retraining the live policy in {} ({}) on {} histories: {}",
            dir.path.display(),
            if opts.warm_start { "warm start" } else { "from scratch" },
            histories.len(),
            histories
                .iter()
                .map(|t| format!("{} ({} steps)", t.id, t.load.len()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let started = std::time::Instant::now();
        let d = rt::retrain_dir(
            &dir,
            &histories,
            &registry,
            &opts,
            args.dry_run,
            serde_json::json!({"command": command_line()}),
            args.plots.as_deref(),
            |it, reward, v| {
                eprintln!(
                    "[{:>6.1}s] iteration {it:>4}/{}  mean reward {reward:>8.4}  select part: cost/oracle {:.3}  SLA {:.2} %  objective {:.3}",
                    started.elapsed().as_secs_f64(),
                    opts.ppo.iterations,
                    v.cost_vs_oracle,
                    v.sla_pct,
                    v.objective
                );
            },
        )?;
        println!("replay part (newest {} %), with guardrails:", 100 - opts.fit_pct - opts.select_pct);
        println!(
            "| history | steps | current v{} | candidate | target tracking |",
            d.current_version
        );
        println!("| --- | --- | --- | --- | --- |");
        let cell = |v: &crate::train::ppo::ValScore| {
            format!("{:.3} / {:.2} % ({:.3})", v.cost_vs_oracle, v.sla_pct, v.objective)
        };
        for t in &d.per_trace {
            println!(
                "| {} | {} | {} | {} | {} |",
                t.trace,
                t.steps,
                cell(&t.current),
                cell(&t.candidate),
                cell(&t.target_tracking)
            );
        }
        println!(
            "| mean | | {} | {} | {} |",
            cell(&d.current),
            cell(&d.candidate),
            cell(&d.target_tracking)
        );
        println!("(cost / oracle / SLA compliance (objective: cost / oracle + 10 per SLA point under 99 %))");
        match d.promoted_version {
            Some(v) => println!(
                "PROMOTED: version {v} is live in {} (version {} kept in {}): {}",
                dir.path.display(),
                d.current_version,
                dir.version_dir(d.current_version).display(),
                d.reason
            ),
            None => println!("not promoted: {}", d.reason),
        }
        println!("decision logged to {}", dir.log_path().display());
        if let Some(p) = &args.plots {
            println!("replay plots in {}", p.display());
        }
        if let Some(out) = &args.out {
            std::fs::write(out, serde_json::to_vec_pretty(&d)?)
                .with_context(|| format!("--out {}", out.display()))?;
        }
        Ok(())
    })
    .await?
}
