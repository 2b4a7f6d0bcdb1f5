//! The command line: one clap struct per command, `env` on every option,
//! doc comments as `--help`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::actuator::{Actuator, AuditLog, KILL_SWITCH_FILE, PlanSettings, WritePolicy};
use crate::aws::AwsSettings;
use crate::cache::EmbeddingCache;
use crate::control::{ControlLoop, ControlSettings, Lease};
use crate::data::{self, DatasetSource};
use crate::domain::ScalingGroup;
use crate::eval::{self, EvalOptions, ReportContext};
use crate::forecast::{Forecaster, ModelRegistry, NeuralModel, neural};
use crate::http::{self, AppState};
use crate::ingest::IngestLimits;
use crate::ingest::cloudwatch::CloudWatchPuller;
use crate::metrics::Metrics;
use crate::plots;
use crate::replay::{self, ReplayArgs};
use crate::store::{Backend, StoreConfig, WindowStore};

/// Workload forecasting and predictive scaling for AWS Auto Scaling groups.
#[derive(Debug, Parser)]
#[command(name = "forescale", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // built once per process
pub enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Score forecasters on a dataset by EVAL.md; writes CSV + Markdown.
    Evaluate(EvaluateArgs),
    /// Train the BiLSTM-attention forecaster (or the LSTM ablation).
    Train(TrainArgs),
    /// Convert a dataset to the generic long CSV.
    Import(ImportArgs),
    /// Replay demand traces against scaling policies (POLICY_EVAL.md):
    /// the cost / SLA table and demand-vs-capacity plots.
    Simulate(SimulateArgs),
    /// Continuous improvement: retrain a candidate policy on recent
    /// history in the simulator; promote it (a new version in the policy
    /// folder) only if it beats the live policy on the same replay.
    Retrain(RetrainArgs),
    /// Stream a trace into a running service at N x speed.
    Replay(ReplayArgs),
    /// Open-loop load test (HDR histograms) of a service: ingest,
    /// recommendations (cache hits and misses), mixed, 5,000 groups and
    /// fleet decision cycles; prints and writes a latency table.
    Loadtest(crate::loadgen::LoadtestArgs),
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FORESCALE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory where the in-process store keeps its durable log.
    #[arg(long, env = "FORESCALE_DATA_DIR", default_value = "forescale-data")]
    pub data_dir: PathBuf,
    /// Redis URL (redis://host:port/db). When set, samples live in Redis.
    #[arg(long, env = "FORESCALE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "FORESCALE_REDIS_PREFIX", default_value = "forescale")]
    pub redis_prefix: String,
    /// Grid step in seconds.
    #[arg(long, env = "FORESCALE_STEP_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(60..=86_400))]
    pub step_seconds: i64,
    /// Days of samples kept per group (relative to its newest sample).
    #[arg(long, env = "FORESCALE_RETENTION_DAYS", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(1..=366))]
    pub retention_days: u32,
    /// Longest gap (in steps) filled by interpolation; longer gaps are missing.
    #[arg(long, env = "FORESCALE_MAX_GAP_STEPS", default_value_t = 3)]
    pub max_gap_steps: usize,
    /// Most samples in one ingest request.
    #[arg(long, env = "FORESCALE_MAX_BATCH", default_value_t = 10_000)]
    pub max_batch: usize,
    /// Largest request body in bytes.
    #[arg(long, env = "FORESCALE_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Folder of trained models, loaded at start (one sub-folder each).
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Model used when a forecast request names none (default: bilstm when
    /// it is loaded, else naive).
    #[arg(long, env = "FORESCALE_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// Most encoder outputs kept in process by the embedding cache.
    #[arg(long, env = "FORESCALE_CACHE_CAPACITY", default_value_t = 20_000)]
    pub cache_capacity: usize,
    /// How long a cached encoder output is used (also the Redis TTL).
    #[arg(long, env = "FORESCALE_CACHE_TTL_SECONDS", default_value_t = 900)]
    pub cache_ttl_seconds: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "FORESCALE_WORKERS")]
    pub workers: Option<usize>,
    /// Auto Scaling groups the control loop manages (comma-separated).
    /// Empty: no control loop and no AWS calls at all.
    #[arg(long, env = "FORESCALE_ASG_GROUPS", value_delimiter = ',')]
    pub asg_groups: Vec<String>,
    /// Groups whose scheduled actions may be written (comma-separated,
    /// each one of --asg-groups). Every other group is forecast-only.
    #[arg(long, env = "FORESCALE_ACTUATOR_WRITE_GROUPS", value_delimiter = ',')]
    pub write_groups: Vec<String>,
    /// Groups whose actions set a MinSize floor instead of the desired
    /// capacity, as group=base (the group's normal MinSize), comma-separated.
    #[arg(long, env = "FORESCALE_ACTUATOR_FLOORS", value_delimiter = ',')]
    pub floor_groups: Vec<String>,
    /// Kill switch: when on, nothing is written for any group.
    #[arg(long, env = "FORESCALE_ACTUATOR_KILL_SWITCH")]
    pub kill_switch: bool,
    /// Name prefix of the scheduled actions the service owns.
    #[arg(long, env = "FORESCALE_ACTION_PREFIX", default_value = "forescale-")]
    pub action_prefix: String,
    /// Seconds before a step at which its scheduled action starts.
    #[arg(long, env = "FORESCALE_SCHEDULE_BUFFER_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(0..=3600))]
    pub schedule_buffer_seconds: i64,
    /// Most scheduled actions of ours per group (quota 125; 25 are always
    /// left for people).
    #[arg(long, env = "FORESCALE_MAX_ACTIONS", default_value_t = 96,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_actions: u32,
    /// Target CPU utilisation (%) of the forecast-at-target plan.
    #[arg(long, env = "FORESCALE_TARGET_UTILISATION", default_value_t = 60.0)]
    pub target_utilisation: f64,
    /// How the control loop plans: `forecast-at-target` (p50 at
    /// --target-utilisation) or `policy` (the trained scaling policy and
    /// the group's guardrails, the plan GET
    /// /v1/groups/{group}/recommendation answers).
    #[arg(long, env = "FORESCALE_PLANNER", value_enum,
          default_value_t = crate::control::Planner::ForecastAtTarget)]
    pub planner: crate::control::Planner,
    /// Pull metrics from CloudWatch for the managed groups (off: metrics
    /// are pushed over HTTP).
    #[arg(long, env = "FORESCALE_CLOUDWATCH_PULL", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub cloudwatch_pull: bool,
    /// AWS endpoint override (an emulator such as moto_server).
    #[arg(long, env = "FORESCALE_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// AWS region (default: the standard chain).
    #[arg(long, env = "FORESCALE_AWS_REGION")]
    pub aws_region: Option<String>,
    /// Bearer tokens every write endpoint needs (comma-separated, each at
    /// least 16 characters). None set: writes are open.
    #[arg(
        long,
        env = "FORESCALE_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<String>,
    /// File with one bearer token per line (added to --api-tokens).
    #[arg(long, env = "FORESCALE_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Identity of this replica for the per-group write lease (default:
    /// host name and process id).
    #[arg(long, env = "FORESCALE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Guardrail settings per group: a JSON file mapping group names to
    /// {"min", "max", "max_step_up", "max_scale_in_fraction",
    /// "scale_in_cooldown_steps", "emergency_utilisation",
    /// "emergency_target"} (each optional; defaults otherwise). Read at
    /// start; a bad file stops the start with the group and field named.
    #[arg(long, env = "FORESCALE_GROUP_SETTINGS")]
    pub group_settings: Option<PathBuf>,
    /// Retrain the policy in the background every this many hours on the
    /// stored groups' recent history, promoting a candidate (a new version
    /// in --models-dir/policy, served from the next decision) only if it
    /// beats the live policy on the same replay; 0 = off. Each round
    /// trains on both cores for minutes. See `forescale retrain`.
    #[arg(long, env = "FORESCALE_RETRAIN_EVERY_HOURS", default_value_t = 0.0)]
    pub retrain_every_hours: f64,
    /// Background retrain: only the newest this many days of each group.
    #[arg(long, env = "FORESCALE_RETRAIN_RECENT_DAYS", default_value_t = 14.0)]
    pub retrain_recent_days: f64,
}

impl ServeArgs {
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            step: self.step_seconds,
            retention_seconds: i64::from(self.retention_days) * 86_400,
            max_gap_steps: self.max_gap_steps,
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.redis_url {
            Some(url) => Backend::Redis {
                url: url.clone(),
                prefix: self.redis_prefix.clone(),
            },
            None => Backend::Memory {
                data_dir: Some(self.data_dir.clone()),
            },
        }
    }

    /// The bearer tokens of --api-tokens and --api-tokens-file.
    pub fn tokens(&self) -> anyhow::Result<Option<crate::http::auth::ApiTokens>> {
        let mut all = self.api_tokens.clone();
        if let Some(path) = &self.api_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --api-tokens-file {}", path.display()))?;
            all.extend(text.lines().map(str::to_owned));
        }
        crate::http::auth::ApiTokens::new(all).map_err(|e| anyhow::anyhow!("API tokens: {e}"))
    }

    /// The managed groups, parsed.
    pub fn managed_groups(&self) -> anyhow::Result<Vec<ScalingGroup>> {
        self.asg_groups
            .iter()
            .filter(|g| !g.trim().is_empty())
            .map(|g| ScalingGroup::parse(g.trim()).with_context(|| format!("--asg-groups: {g:?}")))
            .collect()
    }

    /// The write policy the flags describe; checks every named group is managed.
    pub fn write_policy(&self) -> anyhow::Result<WritePolicy> {
        let managed: Vec<String> = self
            .managed_groups()?
            .iter()
            .map(|g| g.to_string())
            .collect();
        let mut policy = WritePolicy::default();
        for g in self
            .write_groups
            .iter()
            .map(|g| g.trim())
            .filter(|g| !g.is_empty())
        {
            if !managed.iter().any(|m| m == g) {
                bail!(
                    "--write-groups: {g:?} is not one of --asg-groups ({})",
                    managed.join(", ")
                );
            }
            policy.enabled.insert(g.to_owned());
        }
        for f in self
            .floor_groups
            .iter()
            .map(|g| g.trim())
            .filter(|g| !g.is_empty())
        {
            let (g, base) = f
                .split_once('=')
                .with_context(|| format!("--floor-groups: {f:?} is not group=base"))?;
            let base: u32 = base
                .parse()
                .with_context(|| format!("--floor-groups: base of {g:?} is not a whole number"))?;
            if !managed.iter().any(|m| m == g) {
                bail!("--floor-groups: {g:?} is not one of --asg-groups");
            }
            policy.floors.insert(g.to_owned(), base);
        }
        let kill_file = self.data_dir.join(KILL_SWITCH_FILE);
        policy.kill_switch.store(
            self.kill_switch || kill_file.exists(),
            std::sync::atomic::Ordering::SeqCst,
        );
        policy.kill_file = Some(kill_file);
        Ok(policy)
    }

    pub fn aws_settings(&self) -> AwsSettings {
        AwsSettings {
            endpoint_url: self.aws_endpoint_url.clone(),
            region: self.aws_region.clone(),
            static_credentials: None,
            max_attempts: 5,
        }
    }

    /// The actuator, when groups are managed.
    pub async fn actuator(&self) -> anyhow::Result<Option<Arc<Actuator>>> {
        if self.managed_groups()?.is_empty() {
            if !self.write_groups.is_empty() {
                bail!("--write-groups needs --asg-groups");
            }
            return Ok(None);
        }
        let policy = self.write_policy()?;
        if !(self.target_utilisation > 0.0 && self.target_utilisation <= 100.0) {
            bail!(
                "--target-utilisation must be a percentage in (0, 100]; got {}",
                self.target_utilisation
            );
        }
        let sdk = self.aws_settings().load().await;
        let settings = PlanSettings {
            prefix: self.action_prefix.clone(),
            buffer_secs: self.schedule_buffer_seconds,
            max_actions: self.max_actions as usize,
            ..PlanSettings::default()
        };
        if settings.prefix.len() < 3 {
            bail!("--action-prefix must be at least 3 characters (it marks what the service owns)");
        }
        let audit = AuditLog::open(&self.data_dir).with_context(|| {
            format!(
                "opening the actuator audit log in {}",
                self.data_dir.display()
            )
        })?;
        Ok(Some(Arc::new(Actuator::new(&sdk, settings, policy, audit))))
    }

    /// The control loop over the managed groups, when there are any.
    pub async fn control_loop(
        &self,
        state: actix_web::web::Data<AppState>,
    ) -> anyhow::Result<Option<Arc<ControlLoop>>> {
        let Some(actuator) = state.actuator.clone() else {
            return Ok(None);
        };
        let puller = if self.cloudwatch_pull {
            Some(CloudWatchPuller::new(
                &self.aws_settings().load().await,
                self.step_seconds,
            ))
        } else {
            None
        };
        let lease = match &self.redis_url {
            None => Lease::Local,
            Some(url) => {
                let owner = self.replica_id.clone().unwrap_or_else(|| {
                    format!(
                        "{}-{}",
                        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
                        std::process::id()
                    )
                });
                Lease::redis(
                    url,
                    &self.redis_prefix,
                    &owner,
                    std::time::Duration::from_secs(self.step_seconds as u64 * 2),
                )
                .await
                .with_context(|| format!("connecting the write lease to {}", redact(url)))?
            }
        };
        Ok(Some(Arc::new(ControlLoop {
            state,
            puller,
            actuator,
            lease,
            settings: ControlSettings {
                groups: self.managed_groups()?,
                interval: std::time::Duration::from_secs(self.step_seconds as u64),
                target_utilisation: self.target_utilisation,
                planner: self.planner,
                ..ControlSettings::default()
            },
        })))
    }

    /// Open the store and build the state handlers share.
    pub async fn state(&self) -> anyhow::Result<AppState> {
        let models = ModelRegistry::load_dir(&self.models_dir)
            .with_context(|| format!("loading models from {}", self.models_dir.display()))?;
        let default_model = match &self.default_model {
            Some(m) => m.clone(),
            None if models.get("bilstm").is_some() => "bilstm".into(),
            None => "naive".into(),
        };
        if models.get(&default_model).is_none() {
            bail!(
                "--default-model {default_model:?} is not one of: {}",
                models.names().join(", ")
            );
        }
        for m in models.neural() {
            tracing::info!(model = m.name(), version = %m.file.version, lookback = m.lookback(), "loaded model");
        }
        let store = WindowStore::open(&self.backend(), self.store_config())
            .await
            .with_context(|| match &self.redis_url {
                Some(url) => format!("opening the Redis store at {}", redact(url)),
                None => format!("opening the store in {}", self.data_dir.display()),
            })?;
        let ttl = std::time::Duration::from_secs(self.cache_ttl_seconds);
        let cache = match &self.redis_url {
            None => EmbeddingCache::new(self.cache_capacity, ttl),
            Some(url) => {
                EmbeddingCache::with_redis(self.cache_capacity, ttl, url, &self.redis_prefix)
                    .await
                    .with_context(|| format!("connecting the embedding cache to {}", redact(url)))?
            }
        };
        let actuator = self.actuator().await?;
        let tokens = self.tokens()?;
        if tokens.is_none() {
            tracing::warn!(
                "no API tokens configured: write endpoints are open (set FORESCALE_API_TOKENS)"
            );
        }
        let policy_dir = self.models_dir.join("policy");
        let policy = if policy_dir.join("model.safetensors").is_file() {
            let p = crate::policy::rl::RlPolicy::load(&policy_dir)
                .with_context(|| format!("loading the policy from {}", policy_dir.display()))?;
            tracing::info!(forecaster = %p.config.forecaster, version = p.config.version, "loaded scaling policy");
            Some(p)
        } else {
            tracing::info!("no trained scaling policy; recommendations use predictive scaling");
            None
        };
        let group_settings = match &self.group_settings {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --group-settings {}", path.display()))?;
                let m = crate::policy::guardrails::parse_group_settings(&text)
                    .map_err(|e| anyhow::anyhow!("--group-settings {}: {e}", path.display()))?;
                tracing::info!(groups = m.len(), "group settings loaded");
                m
            }
            None => Default::default(),
        };
        Ok(AppState {
            group_settings: std::sync::Arc::new(group_settings),
            policy: crate::policy::rl::LivePolicy::new(policy),
            tokens,
            actuator,
            cache,
            store,
            metrics: Metrics::default(),
            ingest: IngestLimits {
                max_batch: self.max_batch,
                ..IngestLimits::default()
            },
            max_body_bytes: self.max_body_bytes,
            default_model,
            models,
        })
    }
}

/// A Redis URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// Dataset name (bitbrains-rnd, azure-v1-cpu, nab-aws-cloudwatch,
    /// google2019-job-tasks, datacenter-aggregates) or a long-CSV file.
    #[arg(long, env = "FORESCALE_DATASET", default_value = "bitbrains-rnd")]
    pub dataset: String,
    /// Folder holding the shared datasets.
    #[arg(long, env = "FORESCALE_DATA_ROOT", default_value = "../shared/data")]
    pub data_root: PathBuf,
}

impl DatasetArgs {
    pub fn source(&self) -> anyhow::Result<DatasetSource> {
        Ok(DatasetSource::parse(&self.dataset, &self.data_root)?)
    }
}

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
    /// Folder of trained models (bilstm, lstm, ...).
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Output folder for metrics.csv and report.md.
    #[arg(long, env = "FORESCALE_REPORT_DIR", default_value = "reports")]
    pub out: PathBuf,
    /// Forecast horizon in steps.
    #[arg(long, env = "FORESCALE_HORIZON", default_value_t = 12)]
    pub horizon: usize,
    /// Write every forecast point to this CSV
    /// (`series_id,origin_index,h,y,q10,q50,q90`); with several models,
    /// one file per model named `<stem>.<model>.csv`.
    #[arg(long, env = "FORESCALE_DUMP_FORECASTS")]
    pub dump_forecasts: Option<PathBuf>,
    /// Grid step in seconds.
    #[arg(long, env = "FORESCALE_STEP_SECONDS", default_value_t = 300)]
    pub step_seconds: i64,
}

// The field docs are --help text, where <model> is a placeholder, not HTML.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Policies, comma-separated: oracle, threshold, target-tracking, hold,
    /// predictive (seasonal-naive forecasts, POLICY_EVAL.md's reference),
    /// predictive-<forecaster> (naive, snaive, or a trained model in
    /// --models-dir, e.g. predictive-bilstm), provision-p<10|50|90>-<forecaster>
    /// (a fixed action of the learned policy) and rl. `@<n>` sweeps a
    /// setting: target utilisation % (target-tracking@40,
    /// predictive-bilstm@40) or headroom % (provision-p90-bilstm@25); swept
    /// policies are drawn in frontier.svg. `+guardrails` adds guardrails.
    #[arg(
        long,
        alias = "policies",
        env = "FORESCALE_SIM_POLICIES",
        value_delimiter = ',',
        default_value = "oracle,threshold,target-tracking,predictive,predictive-bilstm"
    )]
    pub policy: Vec<String>,
    /// `main` (POLICY_EVAL.md's 13 traces), one trace of it by name
    /// (e.g. bb-aug-svc3), or a CSV file with columns timestamp,value.
    #[arg(long, env = "FORESCALE_SIM_TRACE", default_value = "main")]
    pub trace: String,
    /// Folder holding the shared datasets.
    #[arg(long, env = "FORESCALE_DATA_ROOT", default_value = "../shared/data")]
    pub data_root: PathBuf,
    /// Folder of trained models (for predictive-<model>).
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Output folder: scores.csv, summary.csv, report.md, one
    /// demand-vs-capacity SVG per trace and, when a setting is swept,
    /// frontier.svg (cost vs SLA).
    #[arg(long, env = "FORESCALE_SIM_OUT", default_value = "reports/sim")]
    pub out: PathBuf,
    /// Segment to score: `test` (the benchmark) or `validation` (where
    /// POLICY_EVAL.md lets policies be tuned). The replay starts at the
    /// validation start either way.
    #[arg(long, env = "FORESCALE_SIM_SEGMENT", value_enum,
          default_value_t = crate::sim::Segment::Test)]
    pub segment: crate::sim::Segment,
}

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
    /// The service's data directory (in-process store).
    #[arg(long, env = "FORESCALE_DATA_DIR", default_value = "forescale-data")]
    pub data_dir: PathBuf,
    /// Redis URL of the service's store.
    #[arg(long, env = "FORESCALE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of the service's Redis keys.
    #[arg(long, env = "FORESCALE_REDIS_PREFIX", default_value = "forescale")]
    pub redis_prefix: String,
    /// Only the newest this many days of each history (0 = all of it).
    #[arg(long, env = "FORESCALE_RETRAIN_RECENT_DAYS", default_value_t = 14.0)]
    pub recent_days: f64,
    /// The versioned policy folder: the live policy is read from it and a
    /// promoted candidate written to it (the old one kept in versions/).
    #[arg(long, env = "FORESCALE_POLICY_DIR", default_value = "models/policy")]
    pub policy_dir: PathBuf,
    /// Folder of trained models (the forecaster the policy reads).
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Folder holding the shared datasets (for trace names).
    #[arg(long, env = "FORESCALE_DATA_ROOT", default_value = "../shared/data")]
    pub data_root: PathBuf,
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
    pub fn options(&self) -> anyhow::Result<crate::sim::retrain::RetrainOptions> {
        use crate::sim::retrain::RetrainOptions;
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
            ppo: crate::sim::ppo::PpoOptions {
                iterations: self.iterations,
                envs_per_trace: self.envs_per_trace,
                lr: self.lr,
                seed: self.seed,
                reward: crate::sim::ppo::RewardWeights {
                    violation: self.violation_weight,
                    ..crate::sim::ppo::RewardWeights::default()
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

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DatasetArgs,
    /// Output file (`-` for standard output).
    #[arg(long, env = "FORESCALE_IMPORT_OUT")]
    pub out: PathBuf,
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Evaluate(args) => tokio::task::spawn_blocking(move || evaluate(&args)).await?,
        Command::Train(args) => tokio::task::spawn_blocking(move || train(&args)).await?,
        Command::Import(args) => import(&args),
        Command::Simulate(args) => tokio::task::spawn_blocking(move || simulate(&args)).await?,
        Command::Retrain(args) => retrain(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Loadtest(args) => crate::loadgen::run(args).await,
        Command::Openapi => {
            print!("{}", http::openapi_json());
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let state = actix_web::web::Data::new(args.state().await?);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        store = state.store.backend_name(),
        default_model = %state.default_model,
        "forescale serving; docs at /docs/"
    );
    if let Some(control) = args.control_loop(state.clone()).await? {
        tracing::info!(
            groups = control.settings.groups.len(),
            writes = control.actuator.policy.enabled.len(),
            kill_switch = control
                .actuator
                .policy
                .kill_switch
                .load(std::sync::atomic::Ordering::SeqCst),
            "control loop on (forecast-only unless a group is in --write-groups)"
        );
        control.spawn();
    }
    if args.retrain_every_hours > 0.0 {
        anyhow::ensure!(
            args.retrain_every_hours.is_finite() && args.retrain_recent_days >= 0.0,
            "--retrain-every-hours must be a finite number of hours and --retrain-recent-days >= 0"
        );
        anyhow::ensure!(
            state.policy.get().is_some(),
            "--retrain-every-hours: no trained policy in {}/policy to retrain",
            args.models_dir.display()
        );
        let settings = crate::improve::ImproveSettings {
            every: std::time::Duration::from_secs_f64(args.retrain_every_hours * 3600.0),
            policy_dir: crate::sim::retrain::PolicyDir::new(args.models_dir.join("policy")),
            options: crate::sim::retrain::RetrainOptions::default(),
            recent_days: args.retrain_recent_days,
        };
        tracing::info!(
            every_hours = args.retrain_every_hours,
            "background policy retrain on"
        );
        crate::improve::spawn(state.clone(), settings);
    }
    let server = http::serve(listener, state)?;
    server.await?;
    Ok(())
}

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

/// This process's command line, as a user would type it.
fn command_line() -> String {
    std::iter::once("forescale".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Resolve model names against the baselines and a models folder.
fn resolve_models(names: &[String], registry: &ModelRegistry) -> anyhow::Result<Vec<Forecaster>> {
    names
        .iter()
        .map(|m| {
            registry.get(m.trim()).with_context(|| {
                format!(
                    "unknown model {m:?}; available: {}",
                    registry.names().join(", ")
                )
            })
        })
        .collect()
}

/// The dump file of one model: the path itself for a single model, else
/// `<stem>.<model>.<ext>` beside it.
fn dump_path(path: &std::path::Path, model: &str, models: usize) -> PathBuf {
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

/// Score models on gridded series; print and write the report.
fn score_and_report(
    models: &[Forecaster],
    series: &[data::GriddedSeries],
    ctx: &ReportContext,
    opts: EvalOptions,
    out: &std::path::Path,
    dump_to: Option<&std::path::Path>,
) -> anyhow::Result<Vec<eval::ModelScores>> {
    // Fan charts follow the first trained model named (else the last
    // model) on the three busiest series (by train-segment mean CPU).
    let featured = models
        .iter()
        .position(|m| matches!(m, Forecaster::Neural(_)))
        .unwrap_or(models.len().saturating_sub(1));
    let mut busiest: Vec<(f32, &data::GriddedSeries)> = series
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
        .and_then(std::path::Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut scores = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let pb = progress(series.len() as u64, m.name());
        let mut dump = match dump_to {
            None => None,
            Some(path) => {
                let path = dump_path(path, m.name(), models.len());
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                eprintln!("{}: forecasts to {}", m.name(), path.display());
                Some(eval::ForecastDump::new(std::io::BufWriter::new(f))?)
            }
        };
        let mut sinks: Vec<&mut dyn eval::ForecastSink> = Vec::new();
        if let Some(d) = dump.as_mut() {
            sinks.push(d);
        }
        if i == featured {
            sinks.push(&mut fans);
        }
        scores.push(eval::evaluate(m, series, opts, || pb.inc(1), &mut sinks)?);
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
                &plot_dir.join(format!("fan-{}-{}.svg", m.name(), s.id)),
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
    for m in models {
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
    eval::write_report(out, ctx, opts, &scores)
        .with_context(|| format!("writing the report to {}", out.display()))?;
    let facts = model_facts(models, series, opts.horizon, &scores)?;
    if !facts.is_empty() {
        let table = eval::facts_table(&facts);
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
    Ok(scores)
}

/// Parameters, training cost and latency of the trained models among
/// `models` (baselines have none), in the order given.
fn model_facts(
    models: &[Forecaster],
    series: &[data::GriddedSeries],
    step: usize,
    scores: &[eval::ModelScores],
) -> anyhow::Result<Vec<eval::ModelFacts>> {
    let mut out = Vec::new();
    for (m, s) in models.iter().zip(scores) {
        let Forecaster::Neural(n) = m else { continue };
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
        out.push(eval::ModelFacts {
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
    series: &[data::GriddedSeries],
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

fn report_context(
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

fn evaluate(args: &EvaluateArgs) -> anyhow::Result<()> {
    let registry = ModelRegistry::load_dir(&args.models_dir)
        .with_context(|| format!("loading models from {}", args.models_dir.display()))?;
    let models = resolve_models(&args.models, &registry)?;
    let (source, series, report) = load_series(&args.data, args.step_seconds)?;
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

fn train_policy(args: &TrainArgs) -> anyhow::Result<()> {
    use crate::sim::{self, SimForecaster, ppo};
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
    let registry = ModelRegistry::load_dir(&args.models_dir)
        .with_context(|| format!("loading models from {}", args.models_dir.display()))?;
    let forecaster =
        SimForecaster::by_name(&args.policy_forecaster, &registry).ok_or_else(|| {
            anyhow::anyhow!(
                "--policy-forecaster: no trained model {:?}",
                args.policy_forecaster
            )
        })?;
    let traces = sim::traces::load_spec(&args.data.data_root, &args.policy_traces)
        .with_context(|| format!("--policy-traces {}", args.policy_traces))?;
    eprintln!(
        "forecasting {} traces with {} (once, reused by every rollout)",
        traces.len(),
        forecaster.name()
    );
    let tables = traces
        .iter()
        .map(|t| forecaster.table(t, 13, sim::SIM_HORIZON))
        .collect::<Result<Vec<_>, _>>()?;
    let agents: Vec<ppo::Agent> = traces
        .iter()
        .zip(&tables)
        .map(|(t, f)| ppo::Agent::new(t, f))
        .collect();
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
    let init = match &args.policy_init {
        Some(dir) => {
            let (p, w) = crate::sim::retrain::PolicyDir::new(dir)
                .load()
                .with_context(|| format!("--policy-init {}", dir.display()))?;
            anyhow::ensure!(
                p.config.forecaster == forecaster.name(),
                "--policy-init {}: that policy reads {:?}, not --policy-forecaster {:?}",
                dir.display(),
                p.config.forecaster,
                forecaster.name()
            );
            eprintln!(
                "starting from {} (version {})",
                dir.display(),
                p.config.version
            );
            Some(w)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let (weights, report) = ppo::train_from(&agents, &opts, init.as_ref(), |it, reward, v| {
        eprintln!(
            "[{:>6.1}s] iteration {it:>4}/{}  mean reward {reward:>8.4}  validation: cost/oracle {:.3}  SLA {:.2} %  objective {:.3}",
            started.elapsed().as_secs_f64(),
            opts.iterations,
            v.cost_vs_oracle,
            v.sla_pct,
            v.objective
        );
    })?;
    // Validation context: the references and the best checkpoint with
    // guardrails, on the same validation segments.
    let mut context = Vec::new();
    let actor = crate::policy::rl::Actor::from_tensors(&weights, "actor")?;
    let rl = crate::policy::rl::RlPolicy {
        config: crate::policy::rl::PolicyConfig::default(),
        actor,
        last_action: crate::policy::rl::HOLD,
    };
    let mut candidates: Vec<Box<dyn crate::policy::Policy + Send>> = vec![
        Box::new(crate::policy::reference::TargetTracking::default()),
        Box::new(crate::policy::reference::Predictive {
            forecaster: forecaster.name(),
            target: 0.0,
        }),
        Box::new(crate::policy::Guarded::new(
            Box::new(rl),
            crate::policy::GuardrailSettings::default(),
        )),
    ];
    for p in &mut candidates {
        let v = ppo::validate(&agents, p.as_mut());
        eprintln!(
            "validation, {:<22} cost/oracle {:.3}  SLA {:.2} %",
            p.name(),
            v.cost_vs_oracle,
            v.sla_pct
        );
        context.push(serde_json::json!({"policy": p.name(), "validation": v}));
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models").join("policy"));
    let config = crate::policy::rl::PolicyConfig {
        forecaster: forecaster.name(),
        ..crate::policy::rl::PolicyConfig::default()
    };
    ppo::save(&out, &weights, &config)?;
    std::fs::write(
        out.join("training.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "command": command_line(),
            "traces": traces.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            "options": opts,
            "report": report,
            "validation_context": context,
        }))?,
    )?;
    eprintln!(
        "best validation at iteration {}: cost/oracle {:.3}, SLA {:.2} % ({:.0} s); wrote {}",
        report.best_iteration,
        report.best.cost_vs_oracle,
        report.best.sla_pct,
        report.seconds,
        out.display()
    );
    Ok(())
}

/// The histories `retrain` was pointed at, as (id, points).
async fn retrain_histories(args: &RetrainArgs) -> anyhow::Result<Vec<(String, Vec<(i64, f64)>)>> {
    use crate::sim::traces;
    let mut out = Vec::new();
    for spec in &args.trace {
        for t in
            traces::load_spec(&args.data_root, spec).with_context(|| format!("--trace {spec}"))?
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
        let store = match &args.redis_url {
            Some(url) => WindowStore::open(
                &Backend::Redis {
                    url: url.clone(),
                    prefix: args.redis_prefix.clone(),
                },
                cfg,
            )
            .await
            .with_context(|| format!("--redis-url {}", redact(url)))?,
            None => WindowStore::Memory({
                anyhow::ensure!(
                    args.data_dir.join("samples.log").is_file(),
                    "--data-dir {}: no samples.log there (give the service's --data-dir, or \
                     --redis-url for a Redis store)",
                    args.data_dir.display()
                );
                crate::store::MemoryStore::open_read_only(&args.data_dir, cfg)
                    .with_context(|| format!("--data-dir {}", args.data_dir.display()))?
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
            out.push((g.to_string(), crate::sim::retrain::load_points(&samples)));
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no history: give --trace (files or trace names) or --groups (from the service's store)"
    );
    Ok(out)
}

async fn retrain(args: RetrainArgs) -> anyhow::Result<()> {
    use crate::sim::retrain::{self as rt, PolicyDir};
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
        let registry = ModelRegistry::load_dir(&args.models_dir)
            .with_context(|| format!("loading models from {}", args.models_dir.display()))?;
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
        let cell = |v: &crate::sim::ppo::ValScore| {
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

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    use crate::sim::{self, PolicySpec, SimForecaster};
    let registry = ModelRegistry::load_dir(&args.models_dir)
        .with_context(|| format!("loading models from {}", args.models_dir.display()))?;
    let catalog = sim::Catalog {
        neural: registry
            .neural()
            .map(|m| (m.name().to_owned(), SimForecaster::Neural(m.clone())))
            .collect(),
        rl: match args.models_dir.join("policy") {
            d if d.join("model.safetensors").is_file() => Some(
                crate::policy::rl::RlPolicy::load(&d)
                    .with_context(|| format!("loading the policy from {}", d.display()))?,
            ),
            _ => None,
        },
    };
    let specs = args
        .policy
        .iter()
        .map(|p| PolicySpec::parse(p.trim(), &catalog))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--policy: {e}"))?;
    let traces = sim::traces::load_spec(&args.data_root, &args.trace)
        .with_context(|| format!("--trace {}", args.trace))?;
    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let segment = args.segment;
    let started = std::time::Instant::now();
    let runs = sim::run_all(&traces, &specs, segment, |trace, runs| {
        eprintln!(
            "[{:>5.1}s] {:<26} {} steps scored: {}",
            started.elapsed().as_secs_f64(),
            trace.id,
            runs.first().map_or(0, |r| r.scores.steps),
            runs.iter()
                .map(|r| format!("{} {:.1}%", r.scores.policy, r.scores.sla_pct))
                .collect::<Vec<_>>()
                .join(", ")
        );
    })?;
    for (trace, trace_runs) in traces.iter().zip(&runs) {
        // Swept settings (`@`) would crowd the time plot: they go to the
        // frontier plot instead.
        let mut refs: Vec<&sim::Run> = trace_runs
            .iter()
            .filter(|r| sim::report::family(&r.scores.policy).is_none())
            .collect();
        if refs.is_empty() {
            refs = trace_runs.iter().take(6).collect();
        }
        sim::report::plot(
            &args.out.join(format!("{}.svg", trace.id)),
            trace,
            &refs,
            segment,
        )?;
    }
    let scores: Vec<sim::Scores> = runs.iter().flatten().map(|r| r.scores.clone()).collect();
    let agg = sim::report::aggregate(&scores);
    if scores
        .iter()
        .any(|s| sim::report::family(&s.policy).is_some())
    {
        let path = args.out.join("frontier.svg");
        sim::report::frontier(&path, &agg, segment)?;
        eprintln!("cost / service-level trade-off: {}", path.display());
    }
    sim::report::write(&args.out, &scores, &agg, &command_line(), segment)?;
    println!(
        "mean over {} traces\n{}",
        traces.len(),
        sim::report::markdown_summary(&agg, "mean")
    );
    println!("median\n{}", sim::report::markdown_summary(&agg, "median"));
    println!("report: {}", args.out.join("report.md").display());
    Ok(())
}

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
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
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
    #[arg(long, env = "FORESCALE_TRAIN_SCALE_WEIGHTING")]
    pub scale_weighting: bool,
    /// Head in units of each window's own CPU volatility (see
    /// `Config::window_scale`). Off by default: on validation it gave a
    /// lower median MASE but a higher MAE (models/README.md).
    #[arg(long, env = "FORESCALE_TRAIN_WINDOW_SCALE", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub window_scale: bool,
    /// Model log(1 + cpu) instead of CPU % (quantiles are kept; errors
    /// weigh relatively, so near-idle series count). On by default: on
    /// validation it lowered both MAE and median MASE (models/README.md).
    #[arg(long, env = "FORESCALE_TRAIN_LOG_TARGET", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub log_target: bool,
    /// Average the weights over training (exponential moving average with
    /// this decay per step; 0 = off). Validation, early stopping and the
    /// saved model then use the averaged weights.
    #[arg(long, env = "FORESCALE_TRAIN_EMA_DECAY", default_value_t = 0.0)]
    pub ema_decay: f64,
    /// Fit on the first this many % of each series: 70 = the train split
    /// (validation stops training early); 85 = train + validation (a
    /// fixed number of epochs, the last one kept; validation is then
    /// in-sample); below 70 leaves a gap before validation.
    #[arg(long, env = "FORESCALE_TRAIN_FIT_END_PCT", default_value_t = data::TRAIN_END_PCT)]
    pub fit_end_pct: usize,
    /// Make each measured covariate (every input but CPU and the
    /// calendar) absent for a whole training window with this probability,
    /// as for a group that does not publish it, so the network cannot
    /// lean on covariate levels it may never get (0 = off; see
    /// models/README.md, "Covariates").
    #[arg(long, env = "FORESCALE_TRAIN_COVARIATE_DROPOUT", default_value_t = 0.0)]
    pub covariate_dropout: f64,
    /// Output folder (default: models/<model>).
    #[arg(long, env = "FORESCALE_TRAIN_OUT")]
    pub out: Option<PathBuf>,
    /// Grid step in seconds.
    #[arg(long, env = "FORESCALE_STEP_SECONDS", default_value_t = 300)]
    pub step_seconds: i64,
}

fn train(args: &TrainArgs) -> anyhow::Result<()> {
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
        log_target: args.log_target,
        ema_decay: args.ema_decay,
        fit_end_pct: args.fit_end_pct,
        covariate_dropout: args.covariate_dropout,
        ..crate::train::TrainOptions::default()
    };
    // Bad options fail at once, before minutes of loading data.
    opts.check()?;
    anyhow::ensure!(
        args.lr > 0.0,
        "--lr must be more than 0 (0 would leave the initial weights), got {}",
        args.lr
    );
    let (source, series, report) = load_series(&args.data, args.step_seconds)?;
    let trained = crate::train::train(&series, &opts, true)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("models").join(&args.model));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
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
        model: args.model.clone(),
        version,
        architecture: trained.cfg.clone(),
        norm: trained.stats.clone(),
        training: serde_json::json!({
            "dataset": source.name(),
            "command": command_line(),
            "options": opts,
            "parameters": params,
            "seconds": trained.seconds,
            "peak_rss_mb": trained.peak_rss_mb,
            "best_epoch": trained.best_epoch,
            "best_val_mae": trained.best_val_mae,
            "naive_val_mae": trained.naive_val.0,
            "naive_val_mase_median": trained.naive_val.1,
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
    let model = NeuralModel::load(&out)?;
    eprintln!(
        "saved {} ({params} parameters) to {}; scoring on the test segments",
        args.model,
        out.display()
    );
    let mut models: Vec<Forecaster> = Forecaster::NAMES
        .iter()
        .filter_map(|n| Forecaster::by_name(n))
        .collect();
    models.push(Forecaster::Neural(std::sync::Arc::new(model)));
    let ctx = report_context(&source, &series, report);
    let scores = score_and_report(
        &models,
        &series,
        &ctx,
        EvalOptions::default(),
        &out.join("eval"),
        None,
    )?;
    crate::train::write_model_card(&out, &file, &trained, &scores, params)?;
    println!("model card: {}", out.join("README.md").display());
    Ok(())
}

fn import(args: &ImportArgs) -> anyhow::Result<()> {
    let source = args.data.source()?;
    let started = Instant::now();
    let (series, report) = data::load(&source)?;
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    if args.out.as_os_str() == "-" {
        data::write_long_csv(&series, std::io::stdout().lock())?;
    } else {
        let f = std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        data::write_long_csv(&series, std::io::BufWriter::new(f))?;
    }
    eprintln!(
        "imported {} series, {n} samples from {} in {:.1} s ({} samples dropped, {} values blanked by the bounds check)",
        series.len(),
        source.name(),
        started.elapsed().as_secs_f64(),
        report.dropped_samples,
        report.blanked_values
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["forescale", "serve"].iter().chain(args)).expect("parse");
        match cli.command {
            Command::Serve(a) => a,
            _ => unreachable!("serve was asked for"),
        }
    }

    #[test]
    fn writes_are_off_unless_named_and_only_for_managed_groups() {
        let a = serve_args(&[]);
        assert!(a.managed_groups().expect("groups").is_empty());
        let a = serve_args(&["--asg-groups", "web,api"]);
        let p = a.write_policy().expect("policy");
        assert!(p.enabled.is_empty(), "forecast-only by default");
        let a = serve_args(&["--asg-groups", "web", "--write-groups", "api"]);
        let err = a
            .write_policy()
            .expect_err("api is not managed")
            .to_string();
        assert!(err.contains("--write-groups"), "{err}");
        let a = serve_args(&["--asg-groups", "web", "--floor-groups", "web=two"]);
        assert!(a.write_policy().is_err());
        let a = serve_args(&[
            "--asg-groups",
            "web",
            "--write-groups",
            "web",
            "--floor-groups",
            "web=2",
            "--kill-switch",
        ]);
        let p = a.write_policy().expect("policy");
        assert_eq!(p.floors.get("web"), Some(&2));
        assert!(
            !p.writes(&ScalingGroup::parse("web").expect("name")),
            "kill switch wins"
        );
    }

    #[tokio::test]
    async fn a_target_outside_0_100_is_refused_before_any_aws_call() {
        for bad in ["0", "-5", "150", "NaN"] {
            let flag = format!("--target-utilisation={bad}");
            let a = serve_args(&["--asg-groups", "web", &flag]);
            let err = a.actuator().await.expect_err(bad).to_string();
            assert!(err.contains("--target-utilisation"), "{err}");
        }
        assert!(
            serve_args(&[])
                .actuator()
                .await
                .expect("no groups")
                .is_none()
        );
    }
}
