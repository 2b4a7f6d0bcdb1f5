//! The learned scaling policy: an actor network (Table 12 of seed 003:
//! 128-128-64, ReLU) that picks, each step, which forecast quantile to
//! provision for and with how much headroom.
//!
//! Why this action and not a raw capacity change: the same network then
//! serves groups of any size (everything it sees and does is relative to
//! the group's capacity and the forecast), and a choice like "p90 + 10 %"
//! is an explanation an operator can read. The action set also has "hold"
//! (keep the current total).
//!
//! State ([`N_STATE`] numbers, all relative to the current total capacity
//! c at the 90 % SLA utilisation, so scale-free):
//! p10/p50/p90 of the next three steps / (0.9 c); last utilisation / 0.9;
//! ready / c; pending / c; last step's change and the change over three
//! steps / (0.9 c); the peak of the last 12 steps / (0.9 c); ln(c) / ln(100);
//! the mean absolute step change over the last 12 steps / (0.9 c).
//! No clock: some traces (the Azure aggregates) have only relative time.
//!
//! Training (PPO, `crate::train::ppo`) uses candle; inference here runs the
//! same weights through the forecaster's SIMD GEMM (`forecast::fast::gemm`),
//! one state or a batch of groups at a time (bit-identical answers).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};

use super::{Observation, Policy, SLA_UTILISATION};
use crate::forecast::fast::{GEMM_PAD, gemm};

pub const N_STATE: usize = 17;
/// Quantile index (0 = p10, 1 = p50, 2 = p90) and headroom of each
/// provisioning action; the last action is "hold".
pub const ACTIONS: [(usize, f64); 14] = [
    (0, 0.0),
    (0, 0.2),
    (1, -0.1),
    (1, 0.0),
    (1, 0.1),
    (1, 0.25),
    (1, 0.5),
    (1, 1.0),
    (2, -0.1),
    (2, 0.0),
    (2, 0.1),
    (2, 0.25),
    (2, 0.5),
    (2, 1.0),
];
/// Provisioning actions plus hold.
pub const N_ACTIONS: usize = ACTIONS.len() + 1;
pub const HOLD: usize = ACTIONS.len();
/// Forecast steps the state and the actions read.
pub const LOOKAHEAD: usize = 3;
/// Hidden layer widths of actor and critic.
pub const HIDDEN: [usize; 3] = [128, 128, 64];

/// What an action means, for explanations.
pub fn describe(action: usize) -> String {
    match ACTIONS.get(action) {
        Some((q, h)) => format!(
            "p{} of the next {LOOKAHEAD} steps {:+.0} %",
            [10, 50, 90][*q],
            h * 100.0
        ),
        None => "hold".into(),
    }
}

/// The state vector of an observation (forecast required: without one
/// the last load stands in for every quantile).
pub fn state(obs: &Observation) -> [f32; N_STATE] {
    let c = f64::from(obs.total().max(1));
    let unit = SLA_UTILISATION * c;
    let h = obs.history;
    let at = |k: usize| h.len().checked_sub(k).map_or(0.0, |i| h[i]);
    let last = at(1);
    let mut s = [0.0f32; N_STATE];
    for k in 0..LOOKAHEAD {
        let q = obs.forecast.and_then(|f| f.get(k)).copied();
        for j in 0..3 {
            let v = q.map_or(last, |q| f64::from(q[j]));
            s[3 * k + j] = (v / unit) as f32;
        }
    }
    s[9] = (last / f64::from(obs.last_ready.max(1)) / SLA_UTILISATION) as f32;
    s[10] = (f64::from(obs.ready) / c) as f32;
    s[11] = (f64::from(obs.pending) / c) as f32;
    s[12] = ((last - at(2)) / unit) as f32;
    s[13] = ((last - at(4)) / unit) as f32;
    let peak = h.iter().rev().take(12).copied().fold(0.0, f64::max);
    s[14] = (peak / unit) as f32;
    s[15] = (c.ln() / 100f64.ln()) as f32;
    let n = h.len().min(13);
    let recent = &h[h.len() - n..];
    let moves: f64 = recent.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
    s[16] = (moves / (n.max(2) - 1) as f64 / unit) as f32;
    // Hour of day would add two inputs; the traces with relative time
    // (Azure aggregates) have no real clock, so it is left out.
    for v in &mut s {
        *v = v.clamp(-10.0, 10.0);
    }
    s
}

/// The desired total for an action.
pub fn desired(obs: &Observation, action: usize) -> u32 {
    ACTIONS
        .get(action)
        .map_or(obs.total(), |&(q, head)| provision_for(obs, q, head))
}

/// Capacity at the SLA utilisation for the largest forecast quantile `q`
/// (0 = p10, 1 = p50, 2 = p90) of the next [`LOOKAHEAD`] steps plus
/// `headroom`; the last load stands in for a missing forecast.
pub fn provision_for(obs: &Observation, q: usize, headroom: f64) -> u32 {
    let last = obs.last_load();
    let peak = (0..LOOKAHEAD)
        .map(|k| {
            obs.forecast
                .and_then(|f| f.get(k))
                .map_or(last, |v| f64::from(v[q]))
        })
        .fold(0.0, f64::max);
    ((peak * (1.0 + headroom) / SLA_UTILISATION) - 1e-9)
        .ceil()
        .max(0.0) as u32
}

/// Settings saved with the weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyConfig {
    pub n_state: usize,
    pub n_actions: usize,
    pub hidden: Vec<usize>,
    /// The forecaster whose quantiles the policy was trained on.
    pub forecaster: String,
    /// Version of the policy in its folder: 1 for a policy written by
    /// `train --model policy`, one more at each promotion by `retrain`
    /// (`crate::train::retrain`). Absent in older files: 1.
    #[serde(default = "first_version")]
    pub version: u32,
    /// The version a promoted policy was retrained from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
}

fn first_version() -> u32 {
    1
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            n_state: N_STATE,
            n_actions: N_ACTIONS,
            hidden: HIDDEN.to_vec(),
            forecaster: "bilstm".into(),
            version: first_version(),
            parent: None,
        }
    }
}

/// Actor or critic: three hidden ReLU layers and a linear output.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    pub fn new(
        vb: VarBuilder,
        input: usize,
        hidden: &[usize],
        output: usize,
    ) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut d = input;
        for (i, h) in hidden.iter().chain(std::iter::once(&output)).enumerate() {
            layers.push(linear(d, *h, vb.pp(format!("l{i}")))?);
            d = *h;
        }
        Ok(Self { layers })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        let n = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(&x)?;
            if i + 1 < n {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// The actor's weights as plain vectors: `[out][in]` row-major per layer.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Layers laid out for [`crate::forecast::fast::gemm`]; shared, so a
    /// policy clone per decision costs nothing.
    layers: std::sync::Arc<Vec<Dense>>,
}

/// One dense layer: weights transposed `[in][n]` and bias `[n]`, with n
/// the output width padded to [`GEMM_PAD`] (padding weights and bias 0).
#[derive(Debug)]
struct Dense {
    w_t: Vec<f32>,
    bias: Vec<f32>,
    inp: usize,
    out: usize,
    n: usize,
}

/// States per batch of [`Actor::greedy_many`] (their activations stay in
/// L1 while every weight is read once per batch).
const ACTOR_BLOCK: usize = 32;

impl Actor {
    /// From named tensors `actor.l{i}.weight` / `.bias`.
    pub fn from_tensors(t: &HashMap<String, Tensor>, prefix: &str) -> candle_core::Result<Self> {
        let mut layers = Vec::new();
        for i in 0.. {
            let Some(w) = t.get(&format!("{prefix}.l{i}.weight")) else {
                break;
            };
            let b = t
                .get(&format!("{prefix}.l{i}.bias"))
                .ok_or_else(|| candle_core::Error::Msg(format!("missing {prefix}.l{i}.bias")))?;
            let (out, inp) = w.dims2()?;
            let w = w.flatten_all()?.to_vec1::<f32>()?;
            let n = out.div_ceil(GEMM_PAD) * GEMM_PAD;
            let mut w_t = vec![0.0; inp * n];
            for o in 0..out {
                for i in 0..inp {
                    w_t[i * n + o] = w[o * inp + i];
                }
            }
            let mut bias = b.to_vec1::<f32>()?;
            bias.resize(n, 0.0);
            layers.push(Dense {
                w_t,
                bias,
                inp,
                out,
                n,
            });
        }
        if layers.is_empty() {
            return Err(candle_core::Error::Msg(format!("no {prefix} weights")));
        }
        Ok(Self {
            layers: std::sync::Arc::new(layers),
        })
    }

    /// Action logits for one state.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.logits_rows(x, 1)
    }

    /// Logits of `rows` states laid out `[rows][in]`, `[rows][actions]`.
    fn logits_rows(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let last = self.layers.len() - 1;
        let mut cur = x.to_vec();
        let mut lda = x.len() / rows.max(1);
        for (i, l) in self.layers.iter().enumerate() {
            let mut c: Vec<f32> = Vec::with_capacity(rows * l.n);
            for _ in 0..rows {
                c.extend_from_slice(&l.bias);
            }
            gemm(&cur, lda, rows, l.inp, &l.w_t, l.n, &mut c);
            if i < last {
                for v in &mut c {
                    *v = v.max(0.0);
                }
            }
            cur = c;
            lda = l.n;
        }
        let out = self.layers[last].out;
        cur.chunks_exact(lda)
            .flat_map(|r| &r[..out])
            .copied()
            .collect()
    }

    /// The greedy action of many states at once: what
    /// [`Actor::greedy`] gives for each, bit for bit, with each weight
    /// read once per block of states instead of once per state.
    pub fn greedy_many(&self, xs: &[[f32; N_STATE]]) -> Vec<usize> {
        let mut out = Vec::with_capacity(xs.len());
        for block in xs.chunks(ACTOR_BLOCK) {
            let flat: Vec<f32> = block.iter().flatten().copied().collect();
            let l = self.logits_rows(&flat, block.len());
            let per = l.len() / block.len().max(1);
            out.extend(l.chunks_exact(per.max(1)).map(argmax));
        }
        out
    }

    /// The most likely action.
    pub fn greedy(&self, x: &[f32]) -> usize {
        argmax(&self.logits(x))
    }
}

/// Index of the largest logit (the last of equals); hold if none.
fn argmax(l: &[f32]) -> usize {
    l.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(HOLD, |(i, _)| i)
}

/// A trained policy folder: `policy.json` + `model.safetensors`.
#[derive(Debug, Clone)]
pub struct RlPolicy {
    pub config: PolicyConfig,
    pub actor: Actor,
    /// The last decision's action (for explanations).
    pub last_action: usize,
}

impl RlPolicy {
    /// A policy of freshly trained weights (default config, no decision
    /// made yet).
    pub fn from_actor(actor: Actor) -> Self {
        Self {
            config: PolicyConfig::default(),
            actor,
            last_action: HOLD,
        }
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let cfg_path = dir.join("policy.json");
        let config: PolicyConfig = serde_json::from_slice(
            &std::fs::read(&cfg_path).with_context(|| cfg_path.display().to_string())?,
        )
        .with_context(|| cfg_path.display().to_string())?;
        let w = dir.join("model.safetensors");
        let t = candle_core::safetensors::load(&w, &Device::Cpu)
            .with_context(|| w.display().to_string())?;
        let actor = Actor::from_tensors(&t, "actor")?;
        if config.n_state != N_STATE || config.n_actions != N_ACTIONS {
            anyhow::bail!(
                "{}: state {} / actions {} do not match this build ({N_STATE} / {N_ACTIONS})",
                cfg_path.display(),
                config.n_state,
                config.n_actions
            );
        }
        Ok(Self {
            config,
            actor,
            last_action: HOLD,
        })
    }
}

/// The policy a service serves, swappable while it runs (a promotion by
/// the background retrain); cloning an [`RlPolicy`] out of it is cheap
/// (the actor's weights are shared).
#[derive(Debug, Clone, Default)]
pub struct LivePolicy(std::sync::Arc<parking_lot::RwLock<Option<RlPolicy>>>, bool);

impl LivePolicy {
    pub fn new(policy: Option<RlPolicy>) -> Self {
        Self(std::sync::Arc::new(parking_lot::RwLock::new(policy)), false)
    }

    /// Whether decisions come from the trained policy (`--scaling-policy
    /// rl`) rather than the SLA planner.
    pub fn serving_rl(mut self, yes: bool) -> Self {
        self.1 = yes;
        self
    }

    /// Whether decisions come from the trained policy.
    pub fn serves_rl(&self) -> bool {
        self.1
    }

    /// The policy serving now.
    pub fn get(&self) -> Option<RlPolicy> {
        self.0.read().clone()
    }

    /// Serve `policy` from the next decision on.
    pub fn set(&self, policy: RlPolicy) {
        *self.0.write() = Some(policy);
    }
}

impl Policy for RlPolicy {
    fn name(&self) -> String {
        "rl".into()
    }

    fn reset(&mut self) {
        self.last_action = HOLD;
    }

    fn decide(&mut self, obs: &Observation) -> u32 {
        let a = self.actor.greedy(&state(obs));
        self.last_action = a;
        desired(obs, a)
    }

    fn explain(&self) -> Option<String> {
        Some(describe(self.last_action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs<'a>(
        history: &'a [f64],
        fc: &'a [[f32; 3]],
        ready: u32,
        pending: u32,
    ) -> Observation<'a> {
        Observation {
            t: history.len(),
            timestamp: 0,
            history,
            ready,
            pending,
            last_ready: ready,
            forecast: Some(fc),
        }
    }

    #[test]
    fn actions_provision_a_quantile_with_headroom() {
        let fc = [
            [1.0, 2.0, 3.0],
            [1.0, 4.0, 5.0],
            [0.0, 1.0, 2.0],
            [9.0, 9.0, 9.0],
        ];
        let o = obs(&[2.0], &fc, 3, 1);
        // p50 peak over 3 steps = 4 -> ceil(4 / 0.9) = 5.
        assert_eq!(desired(&o, 3), 5);
        // p90 peak 5, +10 % -> 5.5 / 0.9 = 6.1 -> 7.
        assert_eq!(desired(&o, 10), 7);
        assert_eq!(desired(&o, HOLD), 4);
        assert_eq!(describe(10), "p90 of the next 3 steps +10 %");
        assert_eq!(describe(HOLD), "hold");
    }

    #[test]
    fn state_is_relative_to_capacity() {
        let fc = [[1.8, 3.6, 5.4]; 3];
        let s = state(&obs(&[0.0, 1.8, 3.6], &fc, 3, 1));
        // Unit: 0.9 * 4 instances = 3.6.
        assert!(
            (s[0] - 0.5).abs() < 1e-6 && (s[1] - 1.0).abs() < 1e-6 && (s[2] - 1.5).abs() < 1e-6
        );
        // Last utilisation 3.6 / 3 ready / 0.9.
        assert!((s[9] - 3.6 / 3.0 / 0.9).abs() < 1e-5);
        assert!((s[10] - 0.75).abs() < 1e-6 && (s[11] - 0.25).abs() < 1e-6);
        assert!((s[12] - 0.5).abs() < 1e-6, "last change 1.8 / 3.6");
        assert!((s[14] - 1.0).abs() < 1e-6, "peak 3.6 / 3.6");
        // The same group twice as large, with twice the load: the same state.
        let fc2 = [[3.6, 7.2, 10.8]; 3];
        let s2 = state(&obs(&[0.0, 3.6, 7.2], &fc2, 6, 2));
        for i in (0..15).chain([16]) {
            assert!((s[i] - s2[i]).abs() < 1e-5, "{i}: {} vs {}", s[i], s2[i]);
        }
    }
}
