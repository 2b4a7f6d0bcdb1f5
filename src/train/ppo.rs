//! PPO (clipped surrogate, GAE) for the learned scaling policy of
//! `crate::policy::rl`, in candle. One policy is shared by all groups:
//! each training trace is an agent replaying a random stretch of its train
//! segment in the simulator. The checkpoint kept is the one with the best
//! validation score (cost relative to the oracle, with a penalty below
//! 99 % SLA compliance); test segments are never seen.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::Serialize;

use super::SplitMix64;
use crate::policy::rl::{
    Actor, HIDDEN, Mlp, N_ACTIONS, N_STATE, PolicyConfig, RlPolicy, desired, state,
};
use crate::policy::{GroupState, Guarded, GuardrailSettings, Guardrails, needed};
use crate::sim::{ForecastTable, Group, Trace, replay_scores, simulate_oracle_in};

/// Reward per step, relative to the trace's mean need S (instances):
/// `-(cost * exists / S + violation * [d > 0.9 ready] + overload *
/// max(0, d - 0.9 ready) / S + change * [capacity changed])`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RewardWeights {
    pub cost: f64,
    pub violation: f64,
    pub overload: f64,
    pub change: f64,
}

impl Default for RewardWeights {
    fn default() -> Self {
        Self {
            cost: 1.0,
            violation: 15.0,
            overload: 2.0,
            change: 0.02,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PpoOptions {
    pub iterations: usize,
    /// Steps per agent per rollout (one episode: a random stretch of the
    /// train segment).
    pub rollout: usize,
    pub epochs: usize,
    pub minibatch: usize,
    pub lr: f64,
    pub gamma: f64,
    pub lambda: f64,
    pub clip: f64,
    pub entropy: f64,
    pub value_coef: f64,
    /// Validate (and maybe keep the checkpoint) every this many iterations.
    pub validate_every: usize,
    pub seed: u64,
    pub reward: RewardWeights,
    /// Train and validate with the default guardrails after the policy
    /// (how it is deployed).
    pub guardrails: bool,
    /// Agents per trace in a rollout, each on its own random stretch.
    pub envs_per_trace: usize,
    /// Divide rewards by the running standard deviation of the discounted
    /// return, so the critic's targets stay near unit scale whatever the
    /// reward weights.
    pub scale_rewards: bool,
}

impl Default for PpoOptions {
    fn default() -> Self {
        Self {
            iterations: 300,
            rollout: 512,
            epochs: 4,
            minibatch: 1024,
            lr: 3e-4,
            gamma: 0.99,
            lambda: 0.95,
            clip: 0.2,
            entropy: 0.01,
            value_coef: 0.5,
            validate_every: 2,
            seed: 42,
            reward: RewardWeights::default(),
            guardrails: true,
            envs_per_trace: 1,
            scale_rewards: false,
        }
    }
}

/// A trace with its forecasts, ready for training.
#[derive(Debug)]
pub struct Agent<'a> {
    pub trace: &'a Trace,
    pub forecasts: &'a ForecastTable,
    /// Mean instances needed over the train segment (the reward's unit).
    scale: f64,
}

impl<'a> Agent<'a> {
    pub fn new(trace: &'a Trace, forecasts: &'a ForecastTable) -> Self {
        let n = trace.split.train_end.max(1);
        let scale = trace.load[..n]
            .iter()
            .map(|d| f64::from(needed(*d)))
            .sum::<f64>()
            / n as f64;
        Self {
            trace,
            forecasts,
            scale: scale.max(1.0),
        }
    }
}

/// Validation score of a policy: mean cost / oracle over the validation
/// segments, plus 10 per SLA point under 99 % (mean compliance).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ValScore {
    pub cost_vs_oracle: f64,
    pub sla_pct: f64,
    pub objective: f64,
}

pub fn validate(agents: &[Agent], policy: &mut dyn crate::policy::Policy) -> ValScore {
    ValScore::mean(&score_each(agents, policy, crate::sim::Segment::Validation))
}

/// The score of `policy` on each agent's `segment` (replayed from the
/// validation start, as every replay is).
pub fn score_each(
    agents: &[Agent],
    policy: &mut dyn crate::policy::Policy,
    segment: crate::sim::Segment,
) -> Vec<ValScore> {
    agents
        .iter()
        .map(|a| {
            let t = a.trace;
            let score: Range<usize> = segment.range(t);
            let start = t.split.train_end;
            let o = simulate_oracle_in(t, start, score.clone());
            let r = replay_scores(t, policy, Some(a.forecasts), start, score);
            ValScore::new(
                r.scores.cost_usd / o.scores.cost_usd.max(1e-9),
                r.scores.sla_pct,
            )
        })
        .collect()
}

impl ValScore {
    /// The objective of a cost / oracle and an SLA compliance (%).
    pub fn new(cost_vs_oracle: f64, sla_pct: f64) -> Self {
        Self {
            cost_vs_oracle,
            sla_pct,
            objective: cost_vs_oracle + 10.0 * (99.0 - sla_pct).max(0.0),
        }
    }

    /// Mean cost / oracle and mean compliance over traces, and the
    /// objective of the two means.
    pub fn mean(each: &[Self]) -> Self {
        let n = each.len().max(1) as f64;
        Self::new(
            each.iter().map(|v| v.cost_vs_oracle).sum::<f64>() / n,
            each.iter().map(|v| v.sla_pct).sum::<f64>() / n,
        )
    }
}

/// Welford's running variance (of the discounted return, for reward
/// scaling).
#[derive(Debug, Default)]
struct RunningStd {
    n: f64,
    mean: f64,
    m2: f64,
}

impl RunningStd {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    fn std(&self) -> f64 {
        if self.n < 2.0 {
            1.0
        } else {
            (self.m2 / (self.n - 1.0)).sqrt()
        }
    }
}

/// Rollout buffers, flat over (step, agent).
#[derive(Default)]
struct Buffer {
    states: Vec<f32>,
    actions: Vec<u32>,
    logp: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
}

fn sample(probs: &[f32], rng: &mut SplitMix64) -> usize {
    let u = rng.next_f32();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
    // Composed ops: candle's fused softmax passes no gradient.
    let m = logits.max_keepdim(D::Minus1)?.detach();
    let z = logits.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    z.broadcast_sub(&lse)
}

/// The networks being trained.
pub struct Nets {
    pub varmap: VarMap,
    pub actor: Mlp,
    pub critic: Mlp,
}

impl std::fmt::Debug for Nets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nets").finish_non_exhaustive()
    }
}

impl Nets {
    pub fn new(seed: u64) -> candle_core::Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let actor = Mlp::new(vb.pp("actor"), N_STATE, &HIDDEN, N_ACTIONS)?;
        let critic = Mlp::new(vb.pp("critic"), N_STATE, &HIDDEN, 1)?;
        // Deterministic initialisation from the seed (uniform, fan-in).
        let mut rng = SplitMix64::new(seed);
        let mut names: Vec<_> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?
            .keys()
            .cloned()
            .collect();
        names.sort();
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        for name in names {
            let var = &data[&name];
            let dims = var.dims().to_vec();
            let fan_in = if dims.len() == 2 { dims[1] } else { 64 };
            let mut bound = (1.0 / fan_in as f32).sqrt();
            // Small output layers: a near-uniform first policy.
            if name.ends_with("l3.weight") {
                bound *= 0.01;
            }
            let n: usize = dims.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                .collect();
            var.set(&Tensor::from_vec(v, dims.as_slice(), &Device::Cpu)?)?;
        }
        drop(data);
        Ok(Self {
            varmap,
            actor,
            critic,
        })
    }

    /// Set every weight from `t` (names as [`Nets::tensors`] gives them);
    /// a missing or misshapen tensor is an error naming it.
    pub fn load(&self, t: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        for (name, var) in data.iter() {
            let v = t
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no tensor {name}")))?;
            if v.dims() != var.dims() {
                return Err(candle_core::Error::Msg(format!(
                    "{name}: shape {:?}, expected {:?}",
                    v.dims(),
                    var.dims()
                )));
            }
            var.set(&v.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    /// The actor as plain loops (for replays and serving).
    pub fn actor_snapshot(&self) -> candle_core::Result<Actor> {
        Actor::from_tensors(&self.tensors()?, "actor")
    }

    pub fn tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
        data.iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// PPO loss of a minibatch: (total, policy, value, entropy).
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &self,
        s: &Tensor,
        onehot: &Tensor,
        old_logp: &Tensor,
        adv: &Tensor,
        ret: &Tensor,
        clip: f64,
        value_coef: f64,
        entropy: f64,
    ) -> candle_core::Result<(Tensor, f32, f32, f32)> {
        let logp_all = log_softmax(&self.actor.forward(s)?)?;
        let logp = (&logp_all * onehot)?.sum(D::Minus1)?;
        let ratio = (logp - old_logp)?.exp()?;
        let s1 = (&ratio * adv)?;
        let s2 = (ratio.clamp(1.0 - clip, 1.0 + clip)? * adv)?;
        let pg = s1.minimum(&s2)?.mean_all()?.neg()?;
        let v = self.critic.forward(s)?.squeeze(D::Minus1)?;
        let vl = (v - ret)?.sqr()?.mean_all()?;
        let ent = (logp_all.exp()? * &logp_all)?
            .sum(D::Minus1)?
            .mean_all()?
            .neg()?;
        let total = ((&pg + (&vl * value_coef)?)? - (&ent * entropy)?)?;
        Ok((
            total,
            pg.to_scalar::<f32>()?,
            vl.to_scalar::<f32>()?,
            ent.to_scalar::<f32>()?,
        ))
    }
}

/// One agent's group state during a rollout.
struct Env {
    t: usize,
    group: Group,
    rails: Guardrails,
}

/// What training printed and chose.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub best_iteration: usize,
    pub best: ValScore,
    pub seconds: f64,
    pub history: Vec<(usize, ValScore)>,
}

/// Train; returns the best checkpoint's weights (by validation) and a
/// report. `progress` hears each validation.
pub fn train(
    agents: &[Agent],
    opts: &PpoOptions,
    progress: impl FnMut(usize, f32, &ValScore),
) -> anyhow::Result<(HashMap<String, Tensor>, TrainReport)> {
    train_from(agents, opts, None, progress)
}

/// [`train`], starting from `init` (actor and critic of a trained policy)
/// instead of the seed's random weights. A warm start is validated once
/// before the first rollout, as iteration 0, so that the starting policy
/// itself is a candidate checkpoint: if no iteration beats it on
/// validation, its own weights come back.
pub fn train_from(
    agents: &[Agent],
    opts: &PpoOptions,
    init: Option<&HashMap<String, Tensor>>,
    mut progress: impl FnMut(usize, f32, &ValScore),
) -> anyhow::Result<(HashMap<String, Tensor>, TrainReport)> {
    let started = Instant::now();
    let nets = Nets::new(opts.seed)?;
    let mut best: Option<(usize, ValScore, HashMap<String, Tensor>)> = None;
    let mut history = Vec::new();
    if let Some(init) = init {
        nets.load(init)?;
        let v = validate_nets(agents, &nets, opts.guardrails)?;
        progress(0, f32::NAN, &v);
        history.push((0, v));
        best = Some((0, v, nets.tensors()?));
    }
    let mut opt = AdamW::new(
        nets.varmap.all_vars(),
        ParamsAdamW {
            lr: opts.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = SplitMix64::new(opts.seed ^ 0x9e37_79b9);
    // Every trace `envs_per_trace` times, each copy on its own stretch.
    let trainers: Vec<&Agent> = agents
        .iter()
        .flat_map(|a| std::iter::repeat_n(a, opts.envs_per_trace.max(1)))
        .collect();
    let n_agents = trainers.len();
    let mut ret_stats = RunningStd::default();
    let mut running_ret = vec![0.0f64; n_agents];
    let t_len = opts.rollout;
    for it in 1..=opts.iterations {
        // Rollout: every agent replays a random stretch of its train
        // segment; forecasts start at the table's first step.
        let mut envs: Vec<Env> = trainers
            .iter()
            .map(|a| {
                let lo = a.forecasts.from.max(13);
                let hi = a
                    .trace
                    .split
                    .train_end
                    .saturating_sub(t_len + 1)
                    .max(lo + 1);
                let t = lo + rng.below(hi - lo);
                Env {
                    t,
                    group: Group::start(a.trace.load[t - 1]),
                    rails: Guardrails::new(GuardrailSettings::default()),
                }
            })
            .collect();
        let mut buf = Buffer::default();
        let mut mean_reward = 0.0f64;
        running_ret.fill(0.0);
        for _ in 0..t_len {
            let mut states = Vec::with_capacity(n_agents * N_STATE);
            for (a, e) in trainers.iter().zip(&envs) {
                let obs = e.group.observe(a.trace, e.t, Some(a.forecasts));
                states.extend_from_slice(&state(&obs));
            }
            let st = Tensor::from_vec(states.clone(), (n_agents, N_STATE), &Device::Cpu)?;
            let logp = log_softmax(&nets.actor.forward(&st)?)?.to_vec2::<f32>()?;
            let values = nets.critic.forward(&st)?.squeeze(1)?.to_vec1::<f32>()?;
            for (i, (a, e)) in trainers.iter().zip(envs.iter_mut()).enumerate() {
                let probs: Vec<f32> = logp[i].iter().map(|l| l.exp()).collect();
                let act = sample(&probs, &mut rng);
                let obs = e.group.observe(a.trace, e.t, Some(a.forecasts));
                let mut want = desired(&obs, act);
                if opts.guardrails {
                    want = e
                        .rails
                        .apply(
                            want,
                            GroupState {
                                total: obs.total(),
                                last_ready: obs.last_ready,
                                last_load: obs.history.last().copied(),
                            },
                        )
                        .0;
                }
                let d = a.trace.load[e.t];
                let out = e.group.apply(want);
                let sla = crate::policy::SLA_UTILISATION * f64::from(out.ready);
                let w = &opts.reward;
                let r = -(w.cost * f64::from(out.exists) / a.scale
                    + w.violation * f64::from(u8::from(d > sla + 1e-9))
                    + w.overload * (d - sla).max(0.0) / a.scale
                    + w.change * f64::from(u8::from(out.changed)));
                e.group.advance();
                e.t += 1;
                buf.actions.push(act as u32);
                buf.logp.push(logp[i][act]);
                buf.values.push(values[i]);
                running_ret[i] = running_ret[i] * opts.gamma + r;
                ret_stats.push(running_ret[i]);
                buf.rewards.push(r as f32);
                mean_reward += r;
            }
            buf.states.extend_from_slice(&states);
        }
        mean_reward /= (t_len * n_agents) as f64;
        // Bootstrap values of the states after the rollout.
        let mut last = Vec::with_capacity(n_agents * N_STATE);
        for (a, e) in trainers.iter().zip(&envs) {
            last.extend_from_slice(&state(&e.group.observe(a.trace, e.t, Some(a.forecasts))));
        }
        let last_v = nets
            .critic
            .forward(&Tensor::from_vec(last, (n_agents, N_STATE), &Device::Cpu)?)?
            .squeeze(1)?
            .to_vec1::<f32>()?;
        if opts.scale_rewards {
            let sd = ret_stats.std().max(1e-6) as f32;
            for r in &mut buf.rewards {
                *r /= sd;
            }
        }
        // GAE per agent, backwards in time.
        let n = t_len * n_agents;
        let mut adv = vec![0.0f32; n];
        for (i, &last_vi) in last_v.iter().enumerate() {
            let mut gae = 0.0f32;
            for t in (0..t_len).rev() {
                let k = t * n_agents + i;
                let next_v = if t + 1 == t_len {
                    last_vi
                } else {
                    buf.values[k + n_agents]
                };
                let delta = buf.rewards[k] + opts.gamma as f32 * next_v - buf.values[k];
                gae = delta + (opts.gamma * opts.lambda) as f32 * gae;
                adv[k] = gae;
            }
        }
        let ret: Vec<f32> = adv.iter().zip(&buf.values).map(|(a, v)| a + v).collect();
        let mean = adv.iter().sum::<f32>() / n as f32;
        let sd = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n as f32).sqrt() + 1e-8;
        let adv_n: Vec<f32> = adv.iter().map(|a| (a - mean) / sd).collect();
        // PPO epochs over shuffled minibatches.
        let mut idx: Vec<usize> = (0..n).collect();
        for _ in 0..opts.epochs {
            for i in (1..n).rev() {
                idx.swap(i, rng.below(i + 1));
            }
            for mb in idx.chunks(opts.minibatch) {
                let m = mb.len();
                let mut s = Vec::with_capacity(m * N_STATE);
                let mut oh = vec![0.0f32; m * N_ACTIONS];
                for (j, &k) in mb.iter().enumerate() {
                    s.extend_from_slice(&buf.states[k * N_STATE..(k + 1) * N_STATE]);
                    oh[j * N_ACTIONS + buf.actions[k] as usize] = 1.0;
                }
                let pick = |v: &[f32]| -> candle_core::Result<Tensor> {
                    Tensor::from_vec(
                        mb.iter().map(|&k| v[k]).collect::<Vec<_>>(),
                        m,
                        &Device::Cpu,
                    )
                };
                let (loss, ..) = nets.loss(
                    &Tensor::from_vec(s, (m, N_STATE), &Device::Cpu)?,
                    &Tensor::from_vec(oh, (m, N_ACTIONS), &Device::Cpu)?,
                    &pick(&buf.logp)?,
                    &pick(&adv_n)?,
                    &pick(&ret)?,
                    opts.clip,
                    opts.value_coef,
                    opts.entropy,
                )?;
                opt.backward_step(&loss)?;
            }
        }
        if it % opts.validate_every == 0 || it == opts.iterations {
            let v = validate_nets(agents, &nets, opts.guardrails)?;
            progress(it, mean_reward as f32, &v);
            history.push((it, v));
            if best.as_ref().is_none_or(|b| v.objective < b.1.objective) {
                best = Some((it, v, nets.tensors()?));
            }
        }
    }
    let (best_iteration, best_score, weights) =
        best.context("no validation ran (iterations must be at least 1)")?;
    Ok((
        weights,
        TrainReport {
            best_iteration,
            best: best_score,
            seconds: started.elapsed().as_secs_f64(),
            history,
        },
    ))
}

/// The validation score of the actor as it stands (greedy, with the
/// default guardrails after it when `guardrails`).
fn validate_nets(agents: &[Agent], nets: &Nets, guardrails: bool) -> anyhow::Result<ValScore> {
    let actor = nets.actor_snapshot()?;
    Ok(if guardrails {
        validate(agents, &mut guarded(actor))
    } else {
        validate(agents, &mut RlPolicy::from_actor(actor))
    })
}

/// The learned policy of `actor` with the default guardrails after it,
/// as it is deployed.
pub fn guarded(actor: Actor) -> Guarded {
    Guarded::new(
        Box::new(RlPolicy::from_actor(actor)),
        GuardrailSettings::default(),
    )
}

/// Write `policy.json` and `model.safetensors` (actor and critic); not
/// `config.json`, which marks a forecaster folder for `ModelRegistry`.
pub fn save(
    dir: &Path,
    weights: &HashMap<String, Tensor>,
    config: &PolicyConfig,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    candle_core::safetensors::save(weights, dir.join("model.safetensors"))?;
    std::fs::write(dir.join("policy.json"), serde_json::to_vec_pretty(config)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_weight_gets_a_gradient() {
        let nets = Nets::new(3).unwrap();
        let m = 64;
        let mut rng = SplitMix64::new(5);
        let s: Vec<f32> = (0..m * N_STATE).map(|_| rng.next_f32() * 2.0).collect();
        let mut oh = vec![0.0f32; m * N_ACTIONS];
        for j in 0..m {
            oh[j * N_ACTIONS + rng.below(N_ACTIONS)] = 1.0;
        }
        let v = |n: usize, rng: &mut SplitMix64| -> Tensor {
            let x: Vec<f32> = (0..n).map(|_| rng.next_f32() - 0.5).collect();
            Tensor::from_vec(x, n, &Device::Cpu).unwrap()
        };
        let old = (v(m, &mut rng) - (N_ACTIONS as f64).ln()).unwrap();
        let (loss, pg, vl, ent) = nets
            .loss(
                &Tensor::from_vec(s, (m, N_STATE), &Device::Cpu).unwrap(),
                &Tensor::from_vec(oh, (m, N_ACTIONS), &Device::Cpu).unwrap(),
                &old,
                &v(m, &mut rng),
                &v(m, &mut rng),
                0.2,
                0.5,
                0.01,
            )
            .unwrap();
        assert!(pg.is_finite() && vl > 0.0);
        // A near-uniform first policy: entropy close to ln(13).
        assert!((ent - (N_ACTIONS as f32).ln()).abs() < 0.01, "{ent}");
        let grads = loss.backward().unwrap();
        let data = nets.varmap.data().lock().unwrap();
        assert_eq!(
            data.len(),
            16,
            "4 layers x (weight, bias) x (actor, critic)"
        );
        for (name, var) in data.iter() {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let norm = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name}: zero gradient");
        }
    }

    #[test]
    fn initialisation_is_deterministic() {
        let a = Nets::new(11).unwrap().tensors().unwrap();
        let b = Nets::new(11).unwrap().tensors().unwrap();
        for (k, t) in &a {
            let d = (t - &b[k]).unwrap().abs().unwrap().sum_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{k}");
        }
    }

    /// The inference actor of `policy::rl` equals the candle network it
    /// was snapshotted from.
    #[test]
    fn plain_actor_equals_the_candle_network() {
        let nets = Nets::new(7).unwrap();
        let actor = nets.actor_snapshot().unwrap();
        for seed in 0..4 {
            let x: Vec<f32> = (0..N_STATE)
                .map(|i| ((i + 3 * seed) as f32 * 0.37).sin() * 2.0)
                .collect();
            let t = Tensor::from_vec(x.clone(), (1, N_STATE), &Device::Cpu).unwrap();
            let want = nets
                .actor
                .forward(&t)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let got = actor.logits(&x);
            assert_eq!(got.len(), N_ACTIONS);
            assert!(want.iter().any(|v| v.abs() > 1e-5), "{want:?}");
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() < 1e-6 + 1e-4 * a.abs(), "{a} vs {b}");
            }
        }
    }
}
