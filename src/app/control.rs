//! The control loop: on each step, for each managed group, ingest ->
//! forecast -> plan -> actuator.
//!
//! - **Ingest**: CloudWatch `GetMetricData` since the newest stored sample
//!   (re-reading late periods) into the store.
//! - **Forecast**: the service's default model on the group's window (the
//!   embedding cache applies, as for the HTTP endpoint).
//! - **Plan** ([`Planner`]): `forecast-at-target` (the default): the p50
//!   CPU forecast times the capacity in service, divided by the target
//!   utilisation, rounded up; or `policy`: the decision stage the
//!   recommendation endpoint runs (the trained policy when shipped, else
//!   AWS-style predictive scaling, then the group's guardrails), its
//!   12-step plan. No plan on stale data (never scale on data older than
//!   `max_staleness_steps`).
//! - **Act**: [`Actuator::apply`] (forecast-only unless enabled).
//!
//! One group's failure is reported in its [`GroupTick`] and never stops the
//! others. With several replicas on one Redis, a lease per group
//! (`SET NX PX`, renewed by its holder) makes exactly one replica work on a
//! group per tick; without Redis the single process holds every lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;

use super::accuracy::OnDegraded;
use super::decision::{DecisionSettings, GroupRequest, decide};
use super::forecast::forecast_stored;
use super::{AppError, AppState, Shutdown};
use crate::actuator::{Actuator, ActuatorError, ApplyReport, PlanStep};
use crate::domain::{HORIZON, ScalingGroup, Utilisation};
use crate::ingest::cloudwatch::{CloudWatchPuller, PullError};
use crate::store::StoreError;

/// Why a tick stopped early for a group.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("lease: {0}")]
    Lease(#[from] redis::RedisError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("forecast: {0}")]
    Forecast(AppError),
    #[error("stale data: the newest sample is {age_seconds} s old; no plan")]
    Stale { age_seconds: i64 },
    #[error(
        "forecast degraded: {model} has been worse than naive over the last day; no plan (--on-degraded hold)"
    )]
    Degraded { model: String },
    #[error("plan: {0}")]
    Plan(AppError),
    #[error(transparent)]
    Actuate(#[from] ActuatorError),
}

/// Acquire the lease, or renew it if this owner holds it. 1 = held.
const LEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Who works on a group this tick.
#[derive(Clone)]
pub enum Lease {
    /// One process: it holds every lease.
    Local,
    /// Replicas sharing a Redis: `{prefix}:lease:{group}` holds the owner.
    Redis {
        conn: ConnectionManager,
        prefix: String,
        owner: String,
        ttl: Duration,
    },
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Lease::Local"),
            Self::Redis {
                prefix, owner, ttl, ..
            } => f
                .debug_struct("Lease::Redis")
                .field("prefix", prefix)
                .field("owner", owner)
                .field("ttl", ttl)
                .finish(),
        }
    }
}

impl Lease {
    /// A Redis lease for `owner` (unique per replica).
    pub async fn redis(
        url: &str,
        prefix: &str,
        owner: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Self> {
        let conn = ConnectionManager::new(redis::Client::open(url)?).await?;
        Ok(Self::Redis {
            conn,
            prefix: prefix.to_owned(),
            owner: owner.to_owned(),
            ttl,
        })
    }

    /// True when this process holds (or now took, or renewed) the lease.
    pub async fn acquire(&self, group: &ScalingGroup) -> redis::RedisResult<bool> {
        match self {
            Self::Local => Ok(true),
            Self::Redis {
                conn,
                prefix,
                owner,
                ttl,
            } => {
                let mut conn = conn.clone();
                let held: i64 = redis::Script::new(LEASE_SCRIPT)
                    .key(format!("{prefix}:lease:{group}"))
                    .arg(owner)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(held == 1)
            }
        }
    }
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub groups: Vec<ScalingGroup>,
    /// Time between ticks (the grid step).
    pub interval: Duration,
    /// Periods read from CloudWatch for a group with no data yet.
    pub initial_lookback_periods: i64,
    /// Target CPU utilisation of the forecast-at-target plan.
    pub target_utilisation: Utilisation,
    pub horizon: usize,
    /// No plan when the newest sample is older than this many steps.
    pub max_staleness_steps: i64,
    pub planner: Planner,
}

/// How the loop turns a forecast into a capacity plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Planner {
    /// Capacity for the p50 forecast at the target utilisation.
    #[default]
    ForecastAtTarget,
    /// The scaling policy and guardrails (`decision::decide`), as
    /// `GET /v1/groups/{group}/recommendation` answers.
    Policy,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            planner: Planner::default(),
            groups: Vec::new(),
            interval: Duration::from_secs(300),
            initial_lookback_periods: 288,
            target_utilisation: Utilisation::DEFAULT_TARGET,
            horizon: HORIZON,
            max_staleness_steps: 3,
        }
    }
}

/// What one tick did for one group.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupTick {
    pub group: String,
    /// False when another replica holds the group's lease (nothing done).
    pub leased: bool,
    /// Samples read from CloudWatch and stored.
    pub pulled: usize,
    pub capacity_now: Option<u32>,
    pub plan: Vec<PlanStep>,
    pub report: Option<ApplyReport>,
    /// Why the tick stopped early for this group, if it did.
    pub error: Option<String>,
}

/// See the module docs.
#[derive(Debug)]
pub struct ControlLoop {
    pub state: Arc<AppState>,
    pub puller: Option<CloudWatchPuller>,
    pub actuator: Arc<Actuator>,
    pub lease: Lease,
    pub settings: ControlSettings,
}

/// Forecast at target: capacity = ceil(capacity_now * p50 / target) per
/// step; steps at `end + k * step`, k = 1..=H. No capacity in service: no
/// plan (utilisation of nothing says nothing about demand).
pub fn forecast_at_target(
    end: i64,
    step: i64,
    p50: &[f32],
    capacity_now: u32,
    target: Utilisation,
) -> Vec<PlanStep> {
    if capacity_now == 0 {
        return Vec::new();
    }
    // The p50 is a percentage: divide by the target as a percentage.
    let target_pct = target.percent();
    p50.iter()
        .enumerate()
        .map(|(k, u)| PlanStep {
            at: end + (k as i64 + 1) * step,
            capacity: (f64::from(capacity_now) * f64::from(u.max(0.0)) / target_pct)
                .ceil()
                .max(1.0) as u32,
        })
        .collect()
}

impl ControlLoop {
    /// One tick over every group. Never fails: errors are per group.
    pub async fn tick(&self, now: i64) -> Vec<GroupTick> {
        let mut out = Vec::with_capacity(self.settings.groups.len());
        for g in &self.settings.groups {
            let mut t = GroupTick {
                group: g.to_string(),
                leased: false,
                pulled: 0,
                capacity_now: None,
                plan: Vec::new(),
                report: None,
                error: None,
            };
            if let Err(e) = self.tick_group(g, now, &mut t).await {
                tracing::warn!(group = %g, error = %e, "control loop: group skipped this tick");
                t.error = Some(e.to_string());
            }
            out.push(t);
        }
        out
    }

    async fn tick_group(
        &self,
        g: &ScalingGroup,
        now: i64,
        t: &mut GroupTick,
    ) -> Result<(), ControlError> {
        let metrics = &self.state.metrics;
        let started = Instant::now();
        t.leased = self.lease.acquire(g).await?;
        if !t.leased {
            return Ok(());
        }
        // Ingest.
        if let Some(puller) = &self.puller {
            let s = Instant::now();
            let newest = self.state.store.newest(g).await?;
            if let Some((start, end)) =
                puller.window(newest, self.settings.initial_lookback_periods, now)
            {
                let samples = puller.pull(g, start, end).await;
                metrics.control_stage("ingest", samples.is_ok(), s.elapsed().as_secs_f64());
                let samples = samples?;
                t.pulled = samples.len();
                self.state.store.append(g, samples).await?;
            }
        }
        // Forecast.
        let s = Instant::now();
        let fc = forecast_stored(&self.state, g, self.settings.horizon).await;
        metrics.control_stage("forecast", fc.is_ok(), s.elapsed().as_secs_f64());
        let fc = fc.map_err(ControlError::Forecast)?;
        if fc.degraded {
            let on = self.state.ledgers.on_degraded();
            tracing::warn!(group = %g, model = %fc.model, reason = fc.reason.unwrap_or_default(), on_degraded = ?on, "control loop: the group's forecast is degraded");
            if *on == OnDegraded::Hold {
                return Err(ControlError::Degraded { model: fc.model });
            }
        }
        let step = fc.step_seconds;
        if now - fc.end > self.settings.max_staleness_steps * step + step {
            return Err(ControlError::Stale {
                age_seconds: now - fc.end,
            });
        }
        // Plan: forecast at target, from the capacity in service.
        // Without capacity in the data, the group's desired capacity; the
        // limits read for it are reused by the actuator below.
        let limits = match fc.capacity_now {
            Some(_) => None,
            None => self.actuator.limits(g).await.ok(),
        };
        let capacity_now = fc.capacity_now.or(limits.map(|l| l.desired));
        t.capacity_now = capacity_now;
        let why = match (fc.reason, fc.degraded) {
            (Some(r), true) => format!(" (auto: {r}, degraded)"),
            (Some(r), false) => format!(" (auto: {r})"),
            (None, _) => String::new(),
        };
        let context = format!(
            "model {}{why}, history to {}, capacity now {}",
            fc.model,
            crate::domain::rfc3339(fc.end),
            capacity_now.map_or("unknown".into(), |c| c.to_string())
        );
        let reason = match self.settings.planner {
            Planner::ForecastAtTarget => {
                t.plan = forecast_at_target(
                    fc.end,
                    step,
                    &fc.p50,
                    capacity_now.unwrap_or(0),
                    self.settings.target_utilisation,
                );
                format!(
                    "forecast at target {:.0} %: {context}",
                    self.settings.target_utilisation.percent()
                )
            }
            Planner::Policy => {
                let s = Instant::now();
                let planned = self.policy_plan(g, capacity_now, now).await;
                metrics.control_stage("plan", planned.is_ok(), s.elapsed().as_secs_f64());
                let (plan, why) = planned?;
                t.plan = plan;
                format!("{why}: {context}")
            }
        };
        // Act.
        let s = Instant::now();
        let report = match limits {
            Some(l) => {
                self.actuator
                    .apply_with_limits(g, l, &t.plan, &reason, now)
                    .await
            }
            None => self.actuator.apply(g, &t.plan, &reason, now).await,
        };
        metrics.control_stage("actuate", report.is_ok(), s.elapsed().as_secs_f64());
        t.report = Some(report?);
        tracing::debug!(group = %g, elapsed_ms = started.elapsed().as_millis() as u64, "control loop: group done");
        Ok(())
    }

    /// The decision stage's plan for a group: one step per planned
    /// capacity, from the step after the newest data; and its reason.
    async fn policy_plan(
        &self,
        g: &ScalingGroup,
        capacity: Option<u32>,
        now: i64,
    ) -> Result<(Vec<PlanStep>, String), ControlError> {
        let state = &self.state;
        let spec = super::forecast::pick_model(state, None).map_err(ControlError::Plan)?;
        let req = GroupRequest {
            group: g.clone(),
            capacity,
            guardrails: Some(state.guardrails(g)),
        };
        let settings = DecisionSettings {
            plan_steps: self.settings.horizon,
            ..DecisionSettings::default()
        };
        let (mut out, _) = decide(state, &spec, vec![req], &settings, now).await;
        let d = out
            .pop()
            .ok_or_else(|| ControlError::Plan(AppError::model("no decision was made")))?
            .map_err(ControlError::Plan)?;
        let r = &d.recommendation;
        let plan = r
            .plan
            .iter()
            .enumerate()
            .map(|(k, c)| PlanStep {
                at: d.history_end + (k as i64 + 1) * d.step_seconds,
                capacity: *c,
            })
            .collect();
        let version = r.policy_version.map_or(String::new(), |v| format!(" v{v}"));
        let fired = if r.guardrails_fired.is_empty() {
            String::new()
        } else {
            format!(", guardrails {:?}", r.guardrails_fired)
        };
        Ok((
            plan,
            format!("policy {}{version} ({}{fired})", r.policy, r.reason),
        ))
    }

    /// Run ticks every `interval` until `shutdown` is signalled; a tick
    /// under way finishes first (its writes are never cut in half).
    pub fn spawn(self: Arc<Self>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(self.settings.interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.wait() => break,
                }
                let ticks = self.tick(chrono::Utc::now().timestamp()).await;
                let failed = ticks.iter().filter(|t| t.error.is_some()).count();
                tracing::info!(groups = ticks.len(), failed, "control loop: tick done");
            }
            tracing::info!("control loop stopped");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_at_target_scales_capacity_by_utilisation() {
        let at60 = Utilisation::from_percent(60.0).expect("valid");
        let plan = forecast_at_target(1000, 300, &[30.0, 60.0, 90.0, 0.0], 4, at60);
        let caps: Vec<u32> = plan.iter().map(|s| s.capacity).collect();
        assert_eq!(caps, [2, 4, 6, 1]);
        assert_eq!(plan[0].at, 1300);
        assert!(forecast_at_target(1000, 300, &[50.0], 0, at60).is_empty());
    }
}
