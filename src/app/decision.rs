//! The decision cycle: for one group or thousands, windows from the store
//! -> forecasts -> the scaling policy and its guardrails.
//!
//! A cycle over N groups reads their windows (concurrently), looks every
//! group's encoder output up in the embedding cache, runs the encoder once
//! over all the misses as one batch (both cores), then runs the forecast
//! head and the policy per group. The recommendation endpoint is the same
//! code with N = 1; `GET /v1/recommendations` is a cycle over every group.
//!
//! Load is CPU utilisation times capacity: one instance at 100 % is one
//! unit (the simulator's unit).

use std::time::Instant;

use futures_util::{StreamExt, stream};
use serde::Serialize;
use utoipa::ToSchema;

use std::sync::Arc;

use super::forecast::{Lookup, Miss, ModelSpec, Served, encode, lookup, serve};
use super::{AppError, AppState};
use crate::domain::{HORIZON, ScalingGroup};
use crate::forecast::{Forecaster, NeuralModel, QuantileForecast};
use crate::policy::GuardrailSettings;
use crate::policy::recommend::{Decider, Recommendation, Situation, recommend_many};
use crate::store::MetricWindow;

/// Largest group size a decision accepts.
pub const MAX_GROUP_SIZE: u32 = 10_000;
/// From this many groups on, the policy stage runs on every core.
const PARALLEL_DECISIONS: usize = 256;
/// Window reads in flight at once during a cycle.
const READS_IN_FLIGHT: usize = 64;

/// What every decision of a cycle shares.
#[derive(Debug, Clone)]
pub struct DecisionSettings {
    pub guardrails: GuardrailSettings,
    /// Steps planned ahead (the forecast horizon used).
    pub plan_steps: usize,
    /// History older than this many steps is stale: no scale-in on it.
    pub stale_steps: i64,
}

impl Default for DecisionSettings {
    fn default() -> Self {
        Self {
            guardrails: GuardrailSettings::default(),
            plan_steps: HORIZON,
            stale_steps: 3,
        }
    }
}

/// One group to decide for.
#[derive(Debug, Clone)]
pub struct GroupRequest {
    pub group: ScalingGroup,
    /// Instances in service; `None`: the newest `capacity` in its samples.
    pub capacity: Option<u32>,
    /// The group's own guardrails (from `--group-settings`); `None`: the
    /// cycle's [`DecisionSettings::guardrails`].
    pub guardrails: Option<GuardrailSettings>,
}

/// The decision for one group.
#[derive(Debug, Clone)]
pub struct Decision {
    pub group: ScalingGroup,
    /// The model that forecast (with `auto`, the one that served).
    pub model: String,
    /// With `auto`: why that model served ([`Served::reason`]).
    pub model_reason: Option<&'static str>,
    /// With `auto`: the group's chosen model is degraded.
    pub degraded: bool,
    pub step_seconds: i64,
    /// Timestamp of the last step of history used.
    pub history_end: i64,
    pub capacity_now: u32,
    pub stale: bool,
    /// The forecast read, CPU % (p10, p50, p90 per step).
    pub forecast: QuantileForecast,
    pub recommendation: Recommendation,
}

/// Where a cycle spent its time.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct CycleStats {
    pub groups: usize,
    pub decided: usize,
    pub failed: usize,
    /// Encoder outputs found in the cache (either tier).
    pub cache_hits: usize,
    /// Windows run through the encoder (one batch).
    pub encoded: usize,
    pub read_ms: f64,
    pub encode_ms: f64,
    pub decide_ms: f64,
    pub total_ms: f64,
}

fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// A group between the stages.
struct Pending {
    req: GroupRequest,
    served: Served,
    window: MetricWindow,
    capacity_now: u32,
    /// For the SLA planner: the load per step over its longer past, and
    /// whether each step was over the SLA's utilisation.
    sla_past: Option<(Vec<f64>, Vec<bool>)>,
    /// Set once the forecast is known.
    forecast: Option<QuantileForecast>,
    /// Cache miss: the key and input to encode.
    miss: Option<Miss>,
}

/// Decide for every requested group; one result per request, in order.
/// With [`ModelSpec::Auto`] each group is forecast by the model its
/// ledger chose, calibrated; misses of each trained model run as one batch.
pub async fn decide(
    state: &AppState,
    spec: &ModelSpec,
    requests: Vec<GroupRequest>,
    settings: &DecisionSettings,
    now: i64,
) -> (Vec<Result<Decision, AppError>>, CycleStats) {
    let total = Instant::now();
    let mut stats = CycleStats {
        groups: requests.len(),
        ..CycleStats::default()
    };
    let h = settings.plan_steps;
    let decider = match (state.policy.serves_rl(), state.policy.get()) {
        (false, _) => Decider::Sla,
        (true, Some(p)) => Decider::Rl(p),
        (true, None) => Decider::Predictive,
    };
    let sla = matches!(decider, Decider::Sla);

    // 1. The model serving each group, and its window.
    let t = Instant::now();
    let read: Vec<_> = stream::iter(requests)
        .map(|req| async move {
            let served = serve(state, spec, &req.group, true).await;
            // The SLA planner calibrates on a longer past than most models
            // read; the model gets its own lookback's tail (`sla_past`).
            let w = match &served {
                Ok(s) => {
                    let n = s.model.lookback(h);
                    let n = if sla {
                        n.max(crate::policy::sla::HISTORY)
                    } else {
                        n
                    };
                    state.store.window(&req.group, n).await
                }
                Err(_) => Ok(None),
            };
            (req, served, w)
        })
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    stats.read_ms = ms(t);
    let mut slots: Vec<Result<Pending, AppError>> = read
        .into_iter()
        .map(|(req, served, w)| {
            let served = served?;
            let mut window = w?.ok_or_else(|| AppError::GroupNotFound(req.group.to_string()))?;
            let capacity_now = resolve_capacity(req.capacity, &window)?;
            let sla_past = sla.then(|| {
                let past = past_load(&window, capacity_now);
                let keep = served.model.lookback(h);
                let cut = window.rows.len().saturating_sub(keep);
                window.rows.drain(..cut);
                past
            });
            Ok(Pending {
                req,
                served,
                window,
                capacity_now,
                sla_past,
                forecast: None,
                miss: None,
            })
        })
        .collect();

    // 2. Forecasts: cache lookups, then one encoder batch per trained
    // model for the misses.
    let t = Instant::now();
    for slot in slots.iter_mut() {
        let Ok(p) = slot else { continue };
        let r = match &p.served.model {
            Forecaster::Neural(m) => match m.check(&p.window.rows, h) {
                Err(e) => Err(e),
                Ok(()) => match lookup(state, m, &p.req.group, &p.window).await {
                    Lookup::Hit(e) => {
                        stats.cache_hits += 1;
                        m.forecast_from(&e, h).map(Some)
                    }
                    Lookup::Miss(miss) => {
                        p.miss = Some(miss);
                        Ok(None)
                    }
                },
            },
            model => model.forecast(&p.window.rows, h).map(Some),
        };
        match r {
            Ok(f) => p.forecast = f,
            Err(e) => *slot = Err(e.into()),
        }
    }
    // Misses by trained model, in request order.
    let mut batches: Vec<(Arc<NeuralModel>, Vec<Miss>, Vec<usize>)> = Vec::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        if let Ok(p) = slot
            && let Some(miss) = p.miss.take()
            && let Forecaster::Neural(m) = &p.served.model
        {
            match batches.iter_mut().find(|b| Arc::ptr_eq(&b.0, m)) {
                Some(b) => {
                    b.1.push(miss);
                    b.2.push(i);
                }
                None => batches.push((m.clone(), vec![miss], vec![i])),
            }
        }
    }
    for (m, misses, at) in batches {
        stats.encoded += at.len();
        match encode(state, &m, misses).await {
            Ok(embs) => {
                for (&i, e) in at.iter().zip(embs) {
                    let slot = &mut slots[i];
                    let Ok(p) = slot else { continue };
                    match m.forecast_from(&e, h) {
                        Ok(f) => p.forecast = Some(f),
                        Err(err) => *slot = Err(err.into()),
                    }
                }
            }
            Err(e) => {
                for &i in &at {
                    slots[i] = Err(AppError::model(e.to_string()));
                }
            }
        }
    }
    for p in slots.iter_mut().flatten() {
        p.forecast = p.forecast.take().map(|f| p.served.calibrate(f));
    }
    stats.encode_ms = ms(t);

    // 3. The policy and guardrails, per group.
    let t = Instant::now();
    let settings2 = settings.clone();
    let decide_all = move || -> Vec<Result<Decision, AppError>> {
        let one = |c: Vec<Result<Pending, AppError>>| decide_chunk(&decider, &settings2, now, c);
        let threads = if slots.len() >= PARALLEL_DECISIONS {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        if threads == 1 {
            return one(slots);
        }
        let per = slots.len().div_ceil(threads);
        let mut chunks: Vec<Vec<Result<Pending, AppError>>> = Vec::new();
        let mut it = slots.into_iter();
        loop {
            let c: Vec<_> = it.by_ref().take(per).collect();
            if c.is_empty() {
                break;
            }
            chunks.push(c);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| (c.len(), scope.spawn(|| one(c))))
                .collect();
            handles
                .into_iter()
                .flat_map(|(n, h)| {
                    h.join()
                        .unwrap_or_else(|_| failed(n, "a decision thread panicked"))
                })
                .collect()
        })
    };
    let out = if stats.groups >= PARALLEL_DECISIONS {
        tokio::task::spawn_blocking(decide_all)
            .await
            .unwrap_or_else(|e| failed(stats.groups, &format!("decision task: {e}")))
    } else {
        decide_all()
    };
    for d in out.iter().flatten() {
        state.metrics.recommendation_served(d.recommendation.policy);
    }
    stats.decide_ms = ms(t);
    stats.decided = out.iter().filter(|r| r.is_ok()).count();
    stats.failed = stats.groups - stats.decided;
    stats.total_ms = ms(total);
    (out, stats)
}

/// `n` copies of an internal failure (one per group, so results stay in
/// request order).
fn failed(n: usize, why: &str) -> Vec<Result<Decision, AppError>> {
    (0..n).map(|_| Err(AppError::model(why))).collect()
}

/// Load per step (instances: CPU % of each step's capacity, else of the
/// capacity now) and whether utilisation was over the SLA's 90 %.
fn past_load(window: &MetricWindow, capacity_now: u32) -> (Vec<f64>, Vec<bool>) {
    let cap = f64::from(capacity_now);
    window
        .rows
        .iter()
        .map(|r| {
            let u = f64::from(r.target());
            (
                u / 100.0 * r.capacity.map_or(cap, f64::from),
                u > crate::policy::SLA_UTILISATION * 100.0 + 1e-9,
            )
        })
        .unzip()
}

/// The capacity in service: the one given, else the newest in the data.
fn resolve_capacity(given: Option<u32>, window: &MetricWindow) -> Result<u32, AppError> {
    match given {
        Some(c) if (1..=MAX_GROUP_SIZE).contains(&c) => Ok(c),
        Some(_) => Err(AppError::bad(
            "capacity",
            format!("must be from 1 to {MAX_GROUP_SIZE}"),
        )),
        None => window
            .rows
            .iter()
            .rev()
            .find_map(|r| r.capacity)
            .filter(|c| *c >= 0.5)
            .map(|c| (c.round() as u32).min(MAX_GROUP_SIZE))
            .ok_or_else(|| {
                AppError::bad(
                    "capacity",
                    "the group's samples carry no capacity; pass ?capacity=<instances in service>",
                )
            }),
    }
}

/// A group ready for the policy: its inputs in load units.
struct Prepared {
    group: ScalingGroup,
    model: String,
    model_reason: Option<&'static str>,
    degraded: bool,
    end: i64,
    step: i64,
    capacity_now: u32,
    stale: bool,
    forecast: QuantileForecast,
    history: Vec<f64>,
    over_sla: Vec<bool>,
    quantiles: Vec<[f32; 3]>,
    guardrails: Option<GuardrailSettings>,
}

fn prepare(p: Pending, now: i64, stale_steps: i64) -> Result<Prepared, AppError> {
    let forecast = p
        .forecast
        .ok_or_else(|| AppError::model("no forecast was made"))?;
    let window = &p.window;
    let end = window.end().unwrap_or_default();
    let step = window.step;
    let cap = f64::from(p.capacity_now);
    let (history, over_sla) = match p.sla_past {
        Some(past) => past,
        None => (past_load(window, p.capacity_now).0, Vec::new()),
    };
    let u = |x: f32| (f64::from(x.max(0.0)) / 100.0 * cap) as f32;
    let quantiles: Vec<[f32; 3]> = (0..forecast.horizon())
        .map(|k| [u(forecast.p10[k]), u(forecast.p50[k]), u(forecast.p90[k])])
        .collect();
    Ok(Prepared {
        model: p.served.model.name().to_owned(),
        model_reason: p.served.reason,
        degraded: p.served.degraded,
        guardrails: p.req.guardrails,
        group: p.req.group,
        end,
        step,
        capacity_now: p.capacity_now,
        stale: now - end > stale_steps * step,
        forecast,
        history,
        over_sla,
        quantiles,
    })
}

/// The policy stage for a run of groups (results in the same order): the
/// trained policy decides for all of them as one batch per plan step.
fn decide_chunk(
    decider: &Decider,
    settings: &DecisionSettings,
    now: i64,
    chunk: Vec<Result<Pending, AppError>>,
) -> Vec<Result<Decision, AppError>> {
    let prepared: Vec<Result<Prepared, AppError>> = chunk
        .into_iter()
        .map(|slot| slot.and_then(|p| prepare(p, now, settings.stale_steps)))
        .collect();
    let situations: Vec<Situation> = prepared
        .iter()
        .flatten()
        .map(|p| Situation {
            history: &p.history,
            forecast: &p.quantiles,
            capacity_now: p.capacity_now,
            stale: p.stale,
            guardrails: p.guardrails.as_ref().unwrap_or(&settings.guardrails),
            over_sla: &p.over_sla,
        })
        .collect();
    let mut recs = recommend_many(decider, &situations).into_iter();
    drop(situations);
    prepared
        .into_iter()
        .map(|r| {
            let p = r?;
            let recommendation = recs
                .next()
                .ok_or_else(|| AppError::model("no decision was made"))?;
            Ok(Decision {
                group: p.group,
                model: p.model,
                model_reason: p.model_reason,
                degraded: p.degraded,
                step_seconds: p.step,
                history_end: p.end,
                capacity_now: p.capacity_now,
                stale: p.stale,
                forecast: p.forecast,
                recommendation,
            })
        })
        .collect()
}
