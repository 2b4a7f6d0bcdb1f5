//! BiLSTM with feature-wise and temporal attention and a non-crossing
//! quantile head: the forecaster of seed 003 (Tables 8 and 11), in candle.
//!
//! ```text
//! x [B, L, 23] --feature attention--> x * softmax(W_f x + b_f) * 23
//!   --2-layer LSTM, 64 per direction (bi: concat fwd|bwd = 128)--> h [B, L, D]
//!   --temporal attention: beta = softmax_t(v . tanh(W_a h_t + b_a))--> ctx [B, D]
//!   z = [ctx | h_L]  (the encoder output, cached per window)
//!   head: Linear(2D -> 3H) -> per step (a, m, b), s = the window's scale:
//!     p50 = x_L[cpu] + s m,  p10 = p50 - s softplus(a),  p90 = p50 + s softplus(b)
//!   s = mean_t |cpu_t - cpu_{t-1}| + 0.02 over the look-back (1 for models
//!   trained without `window_scale`)
//! ```
//! Quantiles never cross, by construction. The median is a correction of
//! the last observed (normalised) CPU, so the network starts from the naive
//! forecast and learns what the look-back, covariates and calendar add.
//!
//! Weight names equal the `state_dict` of the PyTorch reference in
//! `notebooks/` (`nn.LSTM(batch_first=True, bidirectional=True)` naming:
//! `lstm.weight_ih_l0`, `lstm.weight_hh_l0_reverse`, ...; gate order
//! i, f, g, o). candle's own LSTM with `Direction::Backward` only renames
//! weights, so the backward direction here walks the time axis itself.
//! `tanh` is computed as `2 * sigmoid(2x) - 1` (the same function; candle's
//! CPU tanh is much slower).

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};

/// Architecture of the network (stored as `config.json` beside the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Features per step (23).
    pub input_dim: usize,
    /// LSTM units per direction.
    pub hidden: usize,
    pub layers: usize,
    /// false = the unidirectional ablation (`lstm`).
    pub bidirectional: bool,
    /// Width of the temporal attention's hidden layer.
    pub attention_dim: usize,
    /// Look-back L in steps.
    pub lookback: usize,
    /// Forecast steps H.
    pub horizon: usize,
    pub dropout: f32,
    /// Head in units of the window's own CPU volatility: corrections and
    /// interval half-widths are multiplied by s = mean |step change of
    /// CPU| over the look-back + [`SCALE_FLOOR`] (normalised units), so a
    /// quiet series gets small corrections and narrow intervals and a
    /// bursty one wide ones. Off (older models): s = 1.
    #[serde(default)]
    pub window_scale: bool,
}

/// Added to the window's volatility (normalised CPU units; about 0.4 CPU
/// points with Bitbrains' statistics), so a flat window still gets room.
pub const SCALE_FLOOR: f32 = 0.02;

impl Config {
    /// Table 8 of seed 003, with a chosen look-back.
    pub fn paper(lookback: usize, bidirectional: bool) -> Self {
        Self {
            input_dim: crate::domain::N_FEATURES,
            hidden: 64,
            layers: 2,
            bidirectional,
            attention_dim: 64,
            lookback,
            horizon: crate::domain::HORIZON,
            dropout: 0.3,
            window_scale: true,
        }
    }

    /// Width of one step of LSTM output.
    pub fn lstm_out(&self) -> usize {
        self.hidden * if self.bidirectional { 2 } else { 1 }
    }

    /// Width of the encoder output z = [context | last step].
    pub fn embedding_dim(&self) -> usize {
        2 * self.lstm_out()
    }

    /// Multiply-adds of the network's matrix products for one window:
    /// feature attention, the LSTM gates, temporal attention and head
    /// (softmaxes and the cell's nonlinearities not counted). What bounds
    /// its speed from below at a CPU's FMA peak.
    pub fn multiply_adds(&self) -> usize {
        let (l, f, h, d) = (self.lookback, self.input_dim, self.hidden, self.lstm_out());
        let dirs = if self.bidirectional { 2 } else { 1 };
        let gates: usize = (0..self.layers)
            .map(|k| {
                let input = if k == 0 { f } else { d };
                dirs * 4 * h * (input + h)
            })
            .sum();
        l * (f * f + gates + d * self.attention_dim + self.attention_dim) + 2 * d * 3 * self.horizon
    }
}

/// Dropout with masks drawn by the caller (so training is reproducible
/// from a seed; candle's CPU RNG cannot be seeded).
pub trait MaskSource {
    /// A tensor of `shape` with entries 0 or 1/(1-p).
    fn mask(&mut self, shape: &[usize], p: f32, like: &Tensor) -> Result<Tensor>;
}

/// `tanh` as `2 sigmoid(2x) - 1`.
pub(crate) fn tanh(x: &Tensor) -> Result<Tensor> {
    (candle_nn::ops::sigmoid(&(x * 2.0)?)? * 2.0)? - 1.0
}

/// Numerically stable softplus: relu(x) + log(1 + exp(-|x|)).
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The head's unit per window, [B, 1] (see [`Config::window_scale`]).
pub fn window_scale(cfg: &Config, x: &Tensor) -> Result<Tensor> {
    window_scale_if(cfg.window_scale, x)
}

/// [`window_scale`] when `on`, else ones.
pub(crate) fn window_scale_if(on: bool, x: &Tensor) -> Result<Tensor> {
    let (b, l, _) = x.dims3()?;
    if !on || l < 2 {
        return Tensor::ones((b, 1), x.dtype(), x.device());
    }
    let cpu = x.narrow(2, 0, 1)?.squeeze(2)?;
    let d = (cpu.narrow(1, 1, l - 1)? - cpu.narrow(1, 0, l - 1)?)?.abs()?;
    d.mean_keepdim(1)? + f64::from(SCALE_FLOOR)
}

/// One direction of one LSTM layer (PyTorch parameter layout).
#[derive(Debug, Clone)]
pub struct LstmDirection {
    /// [4H, in]
    pub weight_ih: Tensor,
    /// [4H, H]
    pub weight_hh: Tensor,
    /// b_ih + b_hh, `[4H]`
    pub bias_ih: Tensor,
    pub bias_hh: Tensor,
    hidden: usize,
    reverse: bool,
}

impl LstmDirection {
    pub(crate) fn new(
        in_dim: usize,
        hidden: usize,
        layer: usize,
        reverse: bool,
        vb: &VarBuilder,
    ) -> Result<Self> {
        let suffix = if reverse { "_reverse" } else { "" };
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = candle_nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let name = |w: &str| format!("{w}_l{layer}{suffix}");
        Ok(Self {
            weight_ih: vb.get_with_hints((4 * hidden, in_dim), &name("weight_ih"), init)?,
            weight_hh: vb.get_with_hints((4 * hidden, hidden), &name("weight_hh"), init)?,
            bias_ih: vb.get_with_hints(4 * hidden, &name("bias_ih"), init)?,
            bias_hh: vb.get_with_hints(4 * hidden, &name("bias_hh"), init)?,
            hidden,
            reverse,
        })
    }

    /// x [B, L, in] -> h [B, L, H], in time order whatever the direction.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_from(x, None)?.0)
    }

    /// x [B, L, in] from the state (h, c) (zeros when `None`) -> (h [B, L,
    /// H] in time order, the final (h, c)): an encoder hands its final
    /// state to a decoder this way.
    pub(crate) fn forward_from(
        &self,
        x: &Tensor,
        state: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, l, _) = x.dims3()?;
        let h4 = 4 * self.hidden;
        // Input projections of every step at once: [B, L, 4H].
        let bias = (&self.bias_ih + &self.bias_hh)?;
        let xp = x
            .reshape((b * l, ()))?
            .matmul(&self.weight_ih.t()?)?
            .broadcast_add(&bias)?
            .reshape((b, l, h4))?;
        let whh = self.weight_hh.t()?;
        let (mut h, mut c) = match state {
            Some(s) => s,
            None => {
                let z = Tensor::zeros((b, self.hidden), x.dtype(), x.device())?;
                (z.clone(), z)
            }
        };
        let mut out: Vec<Tensor> = Vec::with_capacity(l);
        let steps: Vec<usize> = if self.reverse {
            (0..l).rev().collect()
        } else {
            (0..l).collect()
        };
        for t in steps {
            let gates = (xp.narrow(1, t, 1)?.squeeze(1)? + h.matmul(&whh)?)?;
            let chunk = |k: usize| gates.narrow(1, k * self.hidden, self.hidden);
            let i = candle_nn::ops::sigmoid(&chunk(0)?)?;
            let f = candle_nn::ops::sigmoid(&chunk(1)?)?;
            let g = tanh(&chunk(2)?)?;
            let o = candle_nn::ops::sigmoid(&chunk(3)?)?;
            c = ((f * &c)? + (i * g)?)?;
            h = (o * tanh(&c)?)?;
            out.push(h.clone());
        }
        if self.reverse {
            out.reverse();
        }
        Ok((Tensor::stack(&out, 1)?, (h, c)))
    }
}

/// One layer: a forward direction and, when bidirectional, a backward one.
#[derive(Debug, Clone)]
pub struct LstmLayer {
    pub forward: LstmDirection,
    pub backward: Option<LstmDirection>,
}

impl LstmLayer {
    fn run(&self, x: &Tensor) -> Result<Tensor> {
        let f = self.forward.forward(x)?;
        match &self.backward {
            Some(b) => Tensor::cat(&[&f, &b.forward(x)?], 2),
            None => Ok(f),
        }
    }
}

/// Attention over steps: beta = softmax_t(v . tanh(W h_t + b)).
#[derive(Debug, Clone)]
pub struct TemporalAttention {
    proj: Linear,
    score: Linear,
}

impl TemporalAttention {
    fn new(dim: usize, attn: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj: linear(dim, attn, vb.pp("proj"))?,
            score: candle_nn::linear_no_bias(attn, 1, vb.pp("score"))?,
        })
    }

    /// h [B, L, D] -> (context [B, D], weights [B, L]).
    fn forward(&self, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let e = self
            .score
            .forward(&tanh(&self.proj.forward(h)?)?)?
            .squeeze(2)?;
        let beta = candle_nn::ops::softmax(&e, 1)?;
        let ctx = beta.unsqueeze(2)?.broadcast_mul(h)?.sum(1)?;
        Ok((ctx, beta))
    }
}

/// What the encoder hands the head (and what the embedding cache keeps).
#[derive(Debug, Clone)]
pub struct Encoded {
    /// z = [context | last step], [B, 2D].
    pub embedding: Tensor,
    /// Normalised CPU of the last input step, [B, 1].
    pub last_cpu: Tensor,
    /// The head's unit, [B, 1] ([`window_scale`]).
    pub scale: Tensor,
    /// Feature attention, [B, L, 23].
    pub feature_weights: Tensor,
    /// Temporal attention, [B, L].
    pub step_weights: Tensor,
}

/// The whole network.
#[derive(Debug, Clone)]
pub struct BiLstmAttention {
    pub cfg: Config,
    feature_attn: Linear,
    lstm: Vec<LstmLayer>,
    temporal_attn: TemporalAttention,
    head: Linear,
}

impl BiLstmAttention {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let feature_attn = linear(cfg.input_dim, cfg.input_dim, vb.pp("feature_attn"))?;
        let mut lstm = Vec::with_capacity(cfg.layers);
        let vl = vb.pp("lstm");
        for layer in 0..cfg.layers {
            let in_dim = if layer == 0 {
                cfg.input_dim
            } else {
                cfg.lstm_out()
            };
            lstm.push(LstmLayer {
                forward: LstmDirection::new(in_dim, cfg.hidden, layer, false, &vl)?,
                backward: if cfg.bidirectional {
                    Some(LstmDirection::new(in_dim, cfg.hidden, layer, true, &vl)?)
                } else {
                    None
                },
            });
        }
        let temporal_attn =
            TemporalAttention::new(cfg.lstm_out(), cfg.attention_dim, vb.pp("temporal_attn"))?;
        let head = linear(cfg.embedding_dim(), 3 * cfg.horizon, vb.pp("head"))?;
        Ok(Self {
            cfg: cfg.clone(),
            feature_attn,
            lstm,
            temporal_attn,
            head,
        })
    }

    /// The encoder: x [B, L, 23] (normalised) -> [`Encoded`]. `dropout`
    /// is `Some` only in training.
    pub fn encode(&self, x: &Tensor, mut dropout: Option<&mut dyn MaskSource>) -> Result<Encoded> {
        let (b, l, f) = x.dims3()?;
        let alpha = candle_nn::ops::softmax(&self.feature_attn.forward(x)?, D::Minus1)?;
        // Scaled so uniform attention leaves the input unchanged.
        let mut h = ((x * &alpha)? * f as f64)?;
        for (k, layer) in self.lstm.iter().enumerate() {
            h = layer.run(&h)?;
            if k + 1 < self.lstm.len()
                && let Some(d) = dropout.as_deref_mut()
            {
                let m = d.mask(h.dims(), self.cfg.dropout, &h)?;
                h = (h * m)?;
            }
        }
        let (ctx, beta) = self.temporal_attn.forward(&h)?;
        let last = h.narrow(1, l - 1, 1)?.squeeze(1)?;
        let mut z = Tensor::cat(&[&ctx, &last], 1)?;
        if let Some(d) = dropout {
            let m = d.mask(z.dims(), self.cfg.dropout, &z)?;
            z = (z * m)?;
        }
        Ok(Encoded {
            embedding: z,
            last_cpu: x.narrow(1, l - 1, 1)?.narrow(2, 0, 1)?.reshape((b, 1))?,
            scale: window_scale(&self.cfg, x)?,
            feature_weights: alpha,
            step_weights: beta,
        })
    }

    /// The head: (z [B, 2D], last_cpu [B, 1], scale [B, 1]) -> quantiles
    /// [B, H, 3] (p10, p50, p90), normalised.
    pub fn head(&self, embedding: &Tensor, last_cpu: &Tensor, scale: &Tensor) -> Result<Tensor> {
        let b = embedding.dim(0)?;
        let o = self
            .head
            .forward(embedding)?
            .reshape((b, self.cfg.horizon, 3))?;
        quantile_head(&o, last_cpu, scale)
    }

    /// Encoder then head.
    pub fn forward(&self, x: &Tensor, dropout: Option<&mut dyn MaskSource>) -> Result<Tensor> {
        let e = self.encode(x, dropout)?;
        self.head(&e.embedding, &e.last_cpu, &e.scale)
    }
}

/// The non-crossing quantile map: raw (a, m, b) [B, H, 3], last CPU [B, 1]
/// and scale [B, 1] -> p10, p50, p90 [B, H, 3] (normalised):
/// p50 = last + s m, p10 = p50 - s softplus(a), p90 = p50 + s softplus(b).
pub fn quantile_head(raw: &Tensor, last_cpu: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let s = scale.unsqueeze(2)?;
    let p50 = raw
        .narrow(2, 1, 1)?
        .broadcast_mul(&s)?
        .broadcast_add(&last_cpu.unsqueeze(2)?)?;
    let lo = (&p50 - softplus(&raw.narrow(2, 0, 1)?)?.broadcast_mul(&s)?)?;
    let hi = (&p50 + softplus(&raw.narrow(2, 2, 1)?)?.broadcast_mul(&s)?)?;
    Tensor::cat(&[&lo, &p50, &hi], 2)
}

/// Mean pinball loss over the quantiles: pred [B, H, 3], target [B, H].
pub fn pinball_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    weighted_pinball_loss(pred, target, None)
}

/// Pinball loss with a weight per window (`weights` `[B]`, mean 1 expected).
pub fn weighted_pinball_loss(
    pred: &Tensor,
    target: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (k, q) in [0.1f64, 0.5, 0.9].into_iter().enumerate() {
        let d = (target - pred.narrow(2, k, 1)?.squeeze(2)?)?;
        let mut per = (&d * q)?.maximum(&(&d * (q - 1.0))?)?;
        if let Some(w) = weights {
            per = per.broadcast_mul(&w.unsqueeze(1)?)?;
        }
        let l = per.mean_all()?;
        total = Some(match total {
            None => l,
            Some(t) => (t + l)?,
        });
    }
    match total {
        Some(t) => t / 3.0,
        None => candle_core::bail!("no quantiles"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::fast::FastNet;
    use candle_core::{DType, Device};

    /// The multiply-add count equals the one read off the weights: every
    /// weight matrix is used once per step, the head's once per window.
    #[test]
    fn multiply_adds_count_every_weight_once_per_use() {
        for bidirectional in [true, false] {
            let cfg = Config::paper(12, bidirectional);
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            BiLstmAttention::new(&cfg, vb).unwrap();
            let data = varmap.data().lock().unwrap();
            let weights = |head: bool| -> usize {
                data.iter()
                    .filter(|(k, _)| k.contains("weight") && k.starts_with("head") == head)
                    .map(|(_, v)| v.as_tensor().elem_count())
                    .sum()
            };
            assert_eq!(
                cfg.multiply_adds(),
                cfg.lookback * weights(false) + weights(true),
                "bidirectional {bidirectional}"
            );
        }
        // By hand for the shipped bilstm (L = 12): the gates 12 x (2 x 256
        // x (23 + 64) + 2 x 256 x (128 + 64)) = 1,714,176 (the issue's
        // "about 1.7 M"), feature attention 12 x 23 x 23 = 6,348, temporal
        // attention 12 x (128 x 64 + 64) = 99,072, head 256 x 36 = 9,216.
        assert_eq!(Config::paper(12, true).multiply_adds(), 1_828_812);
    }

    /// Parity with an independent PyTorch implementation (stock
    /// `nn.LSTM`), fixtures exported by
    /// `notebooks/bilstm_attention_reference.py`:
    ///
    /// ```python
    /// torch.manual_seed(seed)
    /// net = BiLstmAttention(cfg).eval()   # hidden 8, lookback 7, horizon 4
    /// x = torch.randn(5, 7, 23)
    /// y = net(x)                          # [5, 4, 3]: p10, p50, p90
    /// save_file(net.state_dict(), "model.safetensors")
    /// save_file({"input": x, "output": y}, "io.safetensors")
    /// ```
    #[test]
    fn matches_the_pytorch_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
        for name in ["bilstm", "lstm", "bilstm-unscaled"] {
            let dir = root.join(name);
            let cfg: Config =
                serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                    .unwrap();
            let weights =
                candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
                    .unwrap();
            let io =
                candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
            let (x, want) = (&io["input"], &io["output"]);
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let fast = FastNet::from_tensors(&cfg, &weights).unwrap();
            let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
            let net = BiLstmAttention::new(&cfg, vb).unwrap();
            let got = net
                .forward(x, None)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let got_fast = fast.forward(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), 1);
            assert_eq!(got.len(), want.len());
            assert_eq!(got_fast.len(), want.len());
            for ((g, f), w) in got.iter().zip(&got_fast).zip(&want) {
                assert!((g - w).abs() < 1e-4, "{name}: candle {g} vs torch {w}");
                assert!((f - w).abs() < 1e-4, "{name}: fast {f} vs torch {w}");
            }
        }
    }
}
