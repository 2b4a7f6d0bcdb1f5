//! The service's configuration: one clap struct, `env` on every option,
//! doc comments as `--help`; and the composition root that builds the
//! service's state, actuator and control loop from it. The flag groups
//! shared with other commands (store, models, grid) are declared once
//! here and flattened where they are used.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::AppState;
use super::accuracy::OnDegraded;
use super::auth::ApiTokens;
use super::control::{ControlLoop, ControlSettings, Lease};
use crate::actuator::{Actuator, AuditLog, KILL_SWITCH_FILE, PlanSettings, WritePolicy};
use crate::aws::AwsSettings;
use crate::cache::EmbeddingCache;
use crate::domain::{ScalingGroup, Utilisation};
use crate::forecast::ModelRegistry;
use crate::ingest::IngestLimits;
use crate::ingest::cloudwatch::CloudWatchPuller;
use crate::metrics::Metrics;
use crate::store::{Backend, StoreConfig, WindowStore};

/// Where the service's samples live: the in-process store's folder, or
/// Redis when a URL is given.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the in-process store's durable log (also the actuator's
    /// audit log and kill-switch file).
    #[arg(long, env = "FORESCALE_DATA_DIR", default_value = "forescale-data")]
    pub data_dir: PathBuf,
    /// Redis URL (redis://host:port/db). When set, samples live in Redis.
    #[arg(long, env = "FORESCALE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "FORESCALE_REDIS_PREFIX", default_value = "forescale")]
    pub redis_prefix: String,
}

impl StoreArgs {
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

    /// Where the samples are, for messages (any password hidden).
    pub fn describe(&self) -> String {
        match &self.redis_url {
            Some(url) => format!("the Redis store at {}", redact(url)),
            None => format!("the store in {}", self.data_dir.display()),
        }
    }
}

/// The folder of trained models.
#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Folder of trained models (one sub-folder each: bilstm, lstm, tft,
    /// policy).
    #[arg(long, env = "FORESCALE_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
}

impl ModelsArgs {
    /// The baselines and every trained model in the folder.
    pub fn load(&self) -> anyhow::Result<ModelRegistry> {
        ModelRegistry::load_dir(&self.models_dir)
            .with_context(|| format!("loading models from {}", self.models_dir.display()))
    }
}

/// The step grid.
#[derive(Debug, Clone, Args)]
pub struct GridArgs {
    /// Grid step in seconds.
    #[arg(long, env = "FORESCALE_STEP_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(i64).range(60..=86_400))]
    pub step_seconds: i64,
}

#[derive(Debug, Args)]
pub struct ServiceConfig {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub registry: ModelsArgs,
    /// Address to listen on.
    #[arg(long, env = "FORESCALE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
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
    /// Model used when a request names none: `auto` (per group, the
    /// candidate with the best recent accuracy, calibrated; bilstm until a
    /// group has evidence) or a model's name.
    #[arg(long, env = "FORESCALE_DEFAULT_MODEL", default_value = "auto")]
    pub default_model: String,
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
          default_value_t = super::control::Planner::ForecastAtTarget)]
    pub planner: super::control::Planner,
    /// What decides capacity in recommendations, the fleet cycle and the
    /// control loop's `policy` planner: `sla` (provision for the group's
    /// SLA target, `sla_target` in --group-settings, default 0.99) or `rl`
    /// (the trained policy in --models-dir/policy; predictive scaling
    /// without one).
    #[arg(long, env = "FORESCALE_SCALING_POLICY", value_enum, default_value_t = ScalingPolicy::Sla)]
    pub scaling_policy: ScalingPolicy,
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
    /// Advance every group's accuracy ledger in the background as samples
    /// arrive (one group at a time, at most one core), so its scores, the
    /// model `auto` serves and the gauges in /metrics follow the data.
    /// `false`: a ledger advances only when `/accuracy` asks, and `auto`
    /// serves what it last chose. A step costs 1.5 to 22 ms a group,
    /// mostly mstl (more where it finds a daily season).
    #[arg(long, env = "FORESCALE_TRACK_ACCURACY", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub track_accuracy: bool,
    /// What planning (recommendations and the control loop) does with a
    /// group whose served forecast has been worse than naive over the last
    /// day: `fallback` (plan from --fallback-model), `keep` (plan from it
    /// all the same) or `hold` (the control loop writes nothing for it).
    /// Every case is logged and shown in the recommendation.
    #[arg(long, env = "FORESCALE_ON_DEGRADED", value_enum, default_value_t = DegradedAction::Fallback)]
    pub on_degraded: DegradedAction,
    /// The model a degraded group is planned from with `--on-degraded
    /// fallback`.
    #[arg(long, env = "FORESCALE_FALLBACK_MODEL", default_value = "naive")]
    pub fallback_model: String,
}

/// `--on-degraded`: see [`OnDegraded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DegradedAction {
    Fallback,
    Keep,
    Hold,
}

impl ServiceConfig {
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            step: self.grid.step_seconds,
            retention_seconds: i64::from(self.retention_days) * 86_400,
            max_gap_steps: self.max_gap_steps,
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// The bearer tokens of --api-tokens and --api-tokens-file.
    pub fn tokens(&self) -> anyhow::Result<Option<ApiTokens>> {
        let mut all = self.api_tokens.clone();
        if let Some(path) = &self.api_tokens_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --api-tokens-file {}", path.display()))?;
            all.extend(text.lines().map(str::to_owned));
        }
        ApiTokens::new(all).map_err(|e| anyhow::anyhow!("API tokens: {e}"))
    }

    /// --target-utilisation as a utilisation.
    pub fn target(&self) -> anyhow::Result<Utilisation> {
        Utilisation::from_percent(self.target_utilisation)
            .map_err(|e| anyhow::anyhow!("--target-utilisation: {e}"))
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
        let kill_file = self.store.data_dir.join(KILL_SWITCH_FILE);
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
        self.target()?;
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
        let audit = AuditLog::open(&self.store.data_dir).with_context(|| {
            format!(
                "opening the actuator audit log in {}",
                self.store.data_dir.display()
            )
        })?;
        Ok(Some(Arc::new(Actuator::new(&sdk, settings, policy, audit))))
    }

    /// The control loop over the managed groups, when there are any.
    pub async fn control_loop(
        &self,
        state: Arc<AppState>,
    ) -> anyhow::Result<Option<Arc<ControlLoop>>> {
        let Some(actuator) = state.actuator.clone() else {
            return Ok(None);
        };
        let puller = if self.cloudwatch_pull {
            Some(CloudWatchPuller::new(
                &self.aws_settings().load().await,
                self.grid.step_seconds,
            ))
        } else {
            None
        };
        let lease = match &self.store.redis_url {
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
                    &self.store.redis_prefix,
                    &owner,
                    std::time::Duration::from_secs(self.grid.step_seconds as u64 * 2),
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
                interval: std::time::Duration::from_secs(self.grid.step_seconds as u64),
                target_utilisation: self.target()?,
                planner: self.planner,
                ..ControlSettings::default()
            },
        })))
    }

    /// Open the store and build the state handlers share.
    pub async fn state(&self) -> anyhow::Result<AppState> {
        let models = self.registry.load()?;
        let default_model = self.default_model.clone();
        if default_model != super::forecast::AUTO && models.get(&default_model).is_none() {
            bail!(
                "--default-model {default_model:?} is not one of: {}, auto",
                models.names().join(", ")
            );
        }
        if models.get(&self.fallback_model).is_none() {
            bail!(
                "--fallback-model {:?} is not one of: {}",
                self.fallback_model,
                models.names().join(", ")
            );
        }
        let on_degraded = match self.on_degraded {
            DegradedAction::Fallback => OnDegraded::Fallback(self.fallback_model.clone()),
            DegradedAction::Keep => OnDegraded::Keep,
            DegradedAction::Hold => OnDegraded::Hold,
        };
        for m in models.neural() {
            tracing::info!(model = m.name(), version = %m.file.version, lookback = m.lookback(), "loaded model");
        }
        let store = WindowStore::open(&self.backend(), self.store_config())
            .await
            .with_context(|| format!("opening {}", self.store.describe()))?;
        let ttl = std::time::Duration::from_secs(self.cache_ttl_seconds);
        let cache = match &self.store.redis_url {
            None => EmbeddingCache::new(self.cache_capacity, ttl),
            Some(url) => {
                EmbeddingCache::with_redis(self.cache_capacity, ttl, url, &self.store.redis_prefix)
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
        let policy_dir = self.registry.models_dir.join("policy");
        let policy = if policy_dir.join("model.safetensors").is_file() {
            let p = crate::policy::rl::RlPolicy::load(&policy_dir)
                .with_context(|| format!("loading the policy from {}", policy_dir.display()))?;
            tracing::info!(forecaster = %p.config.forecaster, version = p.config.version, "loaded scaling policy");
            Some(p)
        } else {
            if self.scaling_policy == ScalingPolicy::Rl {
                tracing::warn!(
                    "--scaling-policy rl but no trained policy; recommendations use predictive scaling"
                );
            }
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
        // Ledgers are kept where the samples are.
        let candidates = super::accuracy::default_candidates(&models);
        let ledger_config = crate::accuracy::LedgerConfig::default();
        let ledgers = match &self.store.redis_url {
            None => {
                let dir = self.store.data_dir.join("ledgers");
                super::accuracy::LedgerBook::new(candidates, ledger_config, Some(dir.clone()))
                    .with_context(|| format!("creating the ledger folder {}", dir.display()))?
            }
            Some(url) => super::accuracy::LedgerBook::with_redis(
                candidates,
                ledger_config,
                url,
                &self.store.redis_prefix,
            )
            .await
            .with_context(|| format!("connecting the ledgers to {}", redact(url)))?,
        }
        .with_on_degraded(on_degraded);
        Ok(AppState {
            ledgers,
            group_settings: std::sync::Arc::new(group_settings),
            policy: crate::policy::rl::LivePolicy::new(policy)
                .serving_rl(self.scaling_policy == ScalingPolicy::Rl),
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

/// What decides capacity (`--scaling-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalingPolicy {
    /// The chance-constrained planner for each group's SLA target.
    Sla,
    /// The trained policy (models/policy).
    Rl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServiceConfig,
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    fn serve_args(args: &[&str]) -> ServiceConfig {
        Serve::try_parse_from(["serve"].iter().chain(args))
            .expect("parse")
            .config
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

    #[test]
    fn auto_is_the_default_and_its_ledgers_advance_unless_told_not_to() {
        let a = serve_args(&[]);
        assert_eq!(a.default_model, "auto");
        assert!(a.track_accuracy);
        assert_eq!(a.on_degraded, DegradedAction::Fallback);
        assert_eq!(a.fallback_model, "naive");
        let a = serve_args(&["--track-accuracy", "false", "--on-degraded", "hold"]);
        assert!(!a.track_accuracy);
        assert_eq!(a.on_degraded, DegradedAction::Hold);
        assert!(Serve::try_parse_from(["serve", "--on-degraded", "panic"]).is_err());
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
