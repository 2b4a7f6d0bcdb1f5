//! Temporal Fusion Transformer (Lim et al. 2021, Int. J. Forecasting
//! 37:1748), in candle: the comparator of the BiLSTM forecaster.
//!
//! ```text
//! past x [B, L, 23]          known future k [B, H, 3] (the calendar of the
//!   |                          forecast steps: hour, weekday, minute)
//! prescalers: per variable Linear(1 -> c)   (shared by past and future)
//! variable selection (VSN): softmax(GRN(flat)) weights the per-variable
//!   GRN(c -> d) outputs           -> past [B, L, d], future [B, H, d]
//! LSTM encoder (past) -> its final (h, c) starts the LSTM decoder (future)
//! gate, add the VSN output, layer norm            -> phi [B, L+H, d]
//! static enrichment: GRN(d -> d) (no static covariates: no context)
//! interpretable multi-head attention: queries the H future positions,
//!   keys/values all L+H (causal: step j sees up to L+j), one value
//!   projection shared by the heads, heads averaged
//! gate, add, norm; position-wise GRN; gate, add phi (the LSTM output), norm
//! output_layer: Linear(d -> 3) per future step -> (a, m, b)
//!   p50 = x_L[cpu] + s m,  p10 = p50 - s softplus(a),  p90 = p50 + s softplus(b)
//! ```
//!
//! Choices, said once:
//! - **No static covariates.** The service forecasts groups it has never
//!   seen, so a learned group embedding would not transfer; the static
//!   contexts of the paper (LSTM initial state, enrichment context,
//!   selection context) are therefore absent, and static enrichment is a
//!   GRN without context.
//! - **The same non-crossing head as the BiLSTM** (a correction of the last
//!   observed CPU in units of the window's volatility, softplus offsets for
//!   the outer quantiles), so the comparison is of the encoders, not of the
//!   output parametrisation. The paper's head is a plain linear layer per
//!   quantile, which can cross.
//! - Layer norm, softmax and ELU are composed of elementary ops: candle's
//!   fused `LayerNorm` and `softmax_last_dim` pass no gradient.
//!
//! Weight names follow pytorch-forecasting's `TemporalFusionTransformer`
//! (`prescalers.<var>`, `encoder_variable_selection.flattened_grn.fc1`,
//! `encoder_variable_selection.single_variable_grns.<var>.gate_norm.glu.fc`,
//! `lstm_encoder.weight_ih_l0`, `multihead_attn.q_layers.0`,
//! `multihead_attn.v_layer`, `multihead_attn.w_h`, `post_attn_gate_norm`,
//! `pos_wise_ff`, `pre_output_gate_norm`, `output_layer`), so the PyTorch
//! reference in `notebooks/tft_reference.py` loads them one to one.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};

use super::bilstm_attention::{LstmDirection, MaskSource, quantile_head, window_scale_if};
use crate::domain::{FEATURE_NAMES, N_FEATURES, N_MEASURED};

/// Architecture of the network (`config.json` beside the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TftConfig {
    /// Past inputs per step (the 23 features).
    pub input_dim: usize,
    /// Known future inputs per step: the last `known_dim` features (the
    /// calendar), computed for the forecast steps.
    pub known_dim: usize,
    /// d_model: width of every hidden layer.
    pub hidden: usize,
    /// Width of each variable's embedding (pytorch-forecasting's
    /// `hidden_continuous_size`).
    pub hidden_continuous: usize,
    /// Attention heads.
    pub heads: usize,
    /// Look-back L in steps.
    pub lookback: usize,
    /// Forecast steps H.
    pub horizon: usize,
    pub dropout: f32,
    /// The head's unit is the window's CPU volatility, as for the BiLSTM
    /// (`bilstm_attention::Config::window_scale`).
    pub window_scale: bool,
}

impl TftConfig {
    /// The comparator's default: d = 64 (as the outside reference's TFT),
    /// 4 heads, variable embeddings of 16.
    pub fn standard(lookback: usize) -> Self {
        Self {
            input_dim: N_FEATURES,
            known_dim: N_FEATURES - N_MEASURED,
            hidden: 64,
            hidden_continuous: 16,
            heads: 4,
            lookback,
            horizon: crate::domain::HORIZON,
            dropout: 0.1,
            window_scale: true,
        }
    }

    /// Index in the 23 features of known input `k`.
    pub fn known_index(&self, k: usize) -> usize {
        self.input_dim - self.known_dim + k
    }

    fn var_name(&self, j: usize) -> String {
        if self.input_dim == N_FEATURES {
            FEATURE_NAMES[j].to_owned()
        } else {
            format!("x{j}")
        }
    }
}

/// Dropout during training (masks from the caller), nothing otherwise.
pub struct Dropout<'a> {
    source: Option<&'a mut dyn MaskSource>,
    p: f32,
}

impl std::fmt::Debug for Dropout<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dropout")
            .field("training", &self.source.is_some())
            .field("p", &self.p)
            .finish()
    }
}

impl<'a> Dropout<'a> {
    pub fn new(source: Option<&'a mut dyn MaskSource>, p: f32) -> Self {
        Self { source, p }
    }

    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        match self.source.as_deref_mut() {
            Some(s) if self.p > 0.0 => x * s.mask(x.dims(), self.p, x)?,
            _ => Ok(x.clone()),
        }
    }
}

/// ELU (alpha 1), composed: relu(x) + exp(min(x, 0)) - 1.
fn elu(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.minimum(0f32)?.exp()? - 1.0)?
}

/// Softmax over the last dimension, composed (gradients flow).
fn softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// Layer norm over the last dimension (PyTorch's: eps 1e-5, `weight`,
/// `bias`), composed of elementary ops.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let c = x.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        c.broadcast_div(&(var + 1e-5)?.sqrt()?)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Gated linear unit: dropout, Linear(in -> 2 out), a * sigmoid(b).
#[derive(Debug, Clone)]
struct Glu {
    fc: Linear,
    out: usize,
}

impl Glu {
    fn new(input: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc: linear(input, 2 * out, vb.pp("fc"))?,
            out,
        })
    }

    fn forward(&self, x: &Tensor, d: &mut Dropout) -> Result<Tensor> {
        let y = self.fc.forward(&d.apply(x)?)?;
        let a = y.narrow(D::Minus1, 0, self.out)?;
        let b = y.narrow(D::Minus1, self.out, self.out)?;
        a * candle_nn::ops::sigmoid(&b)?
    }
}

/// norm(GLU(x) + skip).
#[derive(Debug, Clone)]
struct GateAddNorm {
    glu: Glu,
    norm: LayerNorm,
}

impl GateAddNorm {
    fn new(input: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            glu: Glu::new(input, out, vb.pp("glu"))?,
            norm: LayerNorm::new(out, vb.pp("add_norm").pp("norm"))?,
        })
    }

    fn forward(&self, x: &Tensor, skip: &Tensor, d: &mut Dropout) -> Result<Tensor> {
        self.norm.forward(&(self.glu.forward(x, d)? + skip)?)
    }
}

/// Gated residual network: norm(GLU(fc2(elu(fc1(x)))) + skip(x)); the skip
/// is a linear map when the widths differ.
#[derive(Debug, Clone)]
struct Grn {
    fc1: Linear,
    fc2: Linear,
    gate_norm: GateAddNorm,
    skip_layer: Option<Linear>,
}

impl Grn {
    fn new(input: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: linear(input, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, hidden, vb.pp("fc2"))?,
            gate_norm: GateAddNorm::new(hidden, out, vb.pp("gate_norm"))?,
            skip_layer: if input == out {
                None
            } else {
                Some(linear(input, out, vb.pp("skip_layer"))?)
            },
        })
    }

    fn forward(&self, x: &Tensor, d: &mut Dropout) -> Result<Tensor> {
        let skip = match &self.skip_layer {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        let a = self.fc2.forward(&elu(&self.fc1.forward(x)?)?)?;
        self.gate_norm.forward(&a, &skip, d)
    }
}

/// Variable selection: per-variable GRNs weighted by a softmax over the
/// variables computed from all of them.
#[derive(Debug, Clone)]
struct VariableSelection {
    flattened_grn: Grn,
    single_variable_grns: Vec<Grn>,
}

impl VariableSelection {
    fn new(names: &[String], c: usize, d: usize, vb: VarBuilder) -> Result<Self> {
        let n = names.len();
        let single = vb.pp("single_variable_grns");
        Ok(Self {
            flattened_grn: Grn::new(n * c, n.min(d), n, vb.pp("flattened_grn"))?,
            single_variable_grns: names
                .iter()
                .map(|name| Grn::new(c, c.min(d), d, single.pp(name)))
                .collect::<Result<_>>()?,
        })
    }

    /// Embeddings, one [B, T, c] per variable -> (selected [B, T, d],
    /// weights [B, T, n]).
    fn forward(&self, emb: &[Tensor], d: &mut Dropout) -> Result<(Tensor, Tensor)> {
        let flat = Tensor::cat(emb, D::Minus1)?;
        let w = softmax(&self.flattened_grn.forward(&flat, d)?)?;
        let mut out: Option<Tensor> = None;
        for (j, (grn, e)) in self.single_variable_grns.iter().zip(emb).enumerate() {
            let v = grn
                .forward(e, d)?
                .broadcast_mul(&w.narrow(D::Minus1, j, 1)?)?;
            out = Some(match out {
                None => v,
                Some(o) => (o + v)?,
            });
        }
        match out {
            Some(o) => Ok((o, w)),
            None => candle_core::bail!("variable selection over no variables"),
        }
    }
}

/// Multi-head attention with one value projection shared by the heads and
/// the heads averaged (so the average attention is interpretable).
#[derive(Debug, Clone)]
struct InterpretableAttention {
    q_layers: Vec<Linear>,
    k_layers: Vec<Linear>,
    v_layer: Linear,
    w_h: Linear,
    d_k: usize,
}

impl InterpretableAttention {
    fn new(d: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let d_k = d / heads;
        let q = vb.pp("q_layers");
        let k = vb.pp("k_layers");
        Ok(Self {
            q_layers: (0..heads)
                .map(|i| linear(d, d_k, q.pp(i)))
                .collect::<Result<_>>()?,
            k_layers: (0..heads)
                .map(|i| linear(d, d_k, k.pp(i)))
                .collect::<Result<_>>()?,
            v_layer: linear(d, d_k, vb.pp("v_layer"))?,
            w_h: linear(d_k, d, vb.pp("w_h"))?,
            d_k,
        })
    }

    /// queries [B, H, d], keys/values [B, T, d], additive mask [H, T] ->
    /// (output [B, H, d], attention averaged over heads [B, H, T]).
    fn forward(
        &self,
        q_in: &Tensor,
        kv: &Tensor,
        mask: &Tensor,
        d: &mut Dropout,
    ) -> Result<(Tensor, Tensor)> {
        let v = self.v_layer.forward(kv)?;
        let scale = 1.0 / (self.d_k as f64).sqrt();
        let heads = self.q_layers.len();
        let (mut sum_h, mut sum_a): (Option<Tensor>, Option<Tensor>) = (None, None);
        for (ql, kl) in self.q_layers.iter().zip(&self.k_layers) {
            let q = ql.forward(q_in)?;
            let k = kl.forward(kv)?;
            let s = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? * scale)?.broadcast_add(mask)?;
            let a = softmax(&s)?;
            let h = d.apply(&a)?.matmul(&v)?;
            sum_h = Some(match sum_h {
                None => h,
                Some(x) => (x + h)?,
            });
            sum_a = Some(match sum_a {
                None => a,
                Some(x) => (x + a)?,
            });
        }
        let (Some(h), Some(a)) = (sum_h, sum_a) else {
            candle_core::bail!("attention with no heads");
        };
        let n = heads as f64;
        let out = self.w_h.forward(&(h / n)?)?;
        Ok((d.apply(&out)?, (a / n)?))
    }
}

/// Everything one forward pass produces.
#[derive(Debug, Clone)]
pub struct TftOutput {
    /// The head's raw output (a, m, b) per step, [B, H, 3].
    pub raw: Tensor,
    /// Normalised CPU of the last input step, [B, 1].
    pub last_cpu: Tensor,
    /// The head's unit, [B, 1].
    pub scale: Tensor,
    /// Past variable selection weights, [B, L, 23].
    pub past_weights: Tensor,
    /// Known-future variable selection weights, [B, H, 3].
    pub future_weights: Tensor,
    /// Attention of each forecast step over the L + H positions, averaged
    /// over heads, [B, H, L + H].
    pub attention: Tensor,
}

/// The whole network.
#[derive(Debug, Clone)]
pub struct Tft {
    pub cfg: TftConfig,
    /// Per variable: weight [c, 1] and bias [c] of Linear(1 -> c).
    prescalers: Vec<Linear>,
    encoder_variable_selection: VariableSelection,
    decoder_variable_selection: VariableSelection,
    lstm_encoder: LstmDirection,
    lstm_decoder: LstmDirection,
    post_lstm_gate: GateAddNorm,
    static_enrichment: Grn,
    multihead_attn: InterpretableAttention,
    post_attn_gate_norm: GateAddNorm,
    pos_wise_ff: Grn,
    pre_output_gate_norm: GateAddNorm,
    output_layer: Linear,
}

impl Tft {
    pub fn new(cfg: &TftConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.heads == 0 || !cfg.hidden.is_multiple_of(cfg.heads) {
            candle_core::bail!(
                "hidden {} is not a multiple of heads {}",
                cfg.hidden,
                cfg.heads
            );
        }
        if cfg.known_dim > cfg.input_dim {
            candle_core::bail!("more known inputs than inputs");
        }
        let (c, d) = (cfg.hidden_continuous, cfg.hidden);
        let names: Vec<String> = (0..cfg.input_dim).map(|j| cfg.var_name(j)).collect();
        let known: Vec<String> = (0..cfg.known_dim)
            .map(|k| names[cfg.known_index(k)].clone())
            .collect();
        let pre = vb.pp("prescalers");
        let prescalers = names
            .iter()
            .map(|n| linear(1, c, pre.pp(n)))
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            prescalers,
            encoder_variable_selection: VariableSelection::new(
                &names,
                c,
                d,
                vb.pp("encoder_variable_selection"),
            )?,
            decoder_variable_selection: VariableSelection::new(
                &known,
                c,
                d,
                vb.pp("decoder_variable_selection"),
            )?,
            lstm_encoder: LstmDirection::new(d, d, 0, false, &vb.pp("lstm_encoder"))?,
            lstm_decoder: LstmDirection::new(d, d, 0, false, &vb.pp("lstm_decoder"))?,
            post_lstm_gate: GateAddNorm::new(d, d, vb.pp("post_lstm_gate_encoder"))?,
            static_enrichment: Grn::new(d, d, d, vb.pp("static_enrichment"))?,
            multihead_attn: InterpretableAttention::new(d, cfg.heads, vb.pp("multihead_attn"))?,
            post_attn_gate_norm: GateAddNorm::new(d, d, vb.pp("post_attn_gate_norm"))?,
            pos_wise_ff: Grn::new(d, d, d, vb.pp("pos_wise_ff"))?,
            pre_output_gate_norm: GateAddNorm::new(d, d, vb.pp("pre_output_gate_norm"))?,
            output_layer: linear(d, 3, vb.pp("output_layer"))?,
        })
    }

    fn prescale(&self, j: usize, x: &Tensor) -> Result<Tensor> {
        // x [B, T] -> [B, T, c]
        self.prescalers[j].forward(&x.unsqueeze(D::Minus1)?)
    }

    /// Causal mask [H, L + H]: forecast step j sees positions up to L + j.
    fn mask(&self, device: &candle_core::Device) -> Result<Tensor> {
        let (l, h) = (self.cfg.lookback, self.cfg.horizon);
        let v: Vec<f32> = (0..h)
            .flat_map(|j| (0..l + h).map(move |t| if t <= l + j { 0.0 } else { -1e9 }))
            .collect();
        Tensor::from_vec(v, (h, l + h), device)
    }

    /// x [B, L, 23] and the known future inputs [B, H, known_dim], both
    /// normalised -> [`TftOutput`]. `dropout` is `Some` only in training.
    pub fn run(
        &self,
        x: &Tensor,
        future: &Tensor,
        dropout: Option<&mut dyn MaskSource>,
    ) -> Result<TftOutput> {
        let mut d = Dropout::new(dropout, self.cfg.dropout);
        let (b, l, f) = x.dims3()?;
        if f != self.cfg.input_dim || l != self.cfg.lookback {
            candle_core::bail!(
                "input is [{b}, {l}, {f}], the model takes [B, {}, {}]",
                self.cfg.lookback,
                self.cfg.input_dim
            );
        }
        let h = self.cfg.horizon;
        let past: Vec<Tensor> = (0..f)
            .map(|j| self.prescale(j, &x.narrow(2, j, 1)?.squeeze(2)?))
            .collect::<Result<_>>()?;
        let fut: Vec<Tensor> = (0..self.cfg.known_dim)
            .map(|k| {
                self.prescale(
                    self.cfg.known_index(k),
                    &future.narrow(2, k, 1)?.squeeze(2)?,
                )
            })
            .collect::<Result<_>>()?;
        let (past_sel, past_w) = self.encoder_variable_selection.forward(&past, &mut d)?;
        let (fut_sel, fut_w) = self.decoder_variable_selection.forward(&fut, &mut d)?;
        let (enc, state) = self.lstm_encoder.forward_from(&past_sel, None)?;
        let (dec, _) = self.lstm_decoder.forward_from(&fut_sel, Some(state))?;
        let lstm_out = Tensor::cat(&[&enc, &dec], 1)?;
        let selected = Tensor::cat(&[&past_sel, &fut_sel], 1)?;
        let phi = self.post_lstm_gate.forward(&lstm_out, &selected, &mut d)?;
        let enriched = self.static_enrichment.forward(&phi, &mut d)?;
        let queries = enriched.narrow(1, l, h)?;
        let (att, attention) =
            self.multihead_attn
                .forward(&queries, &enriched, &self.mask(x.device())?, &mut d)?;
        let a = self.post_attn_gate_norm.forward(&att, &queries, &mut d)?;
        let ff = self.pos_wise_ff.forward(&a, &mut d)?;
        let o = self
            .pre_output_gate_norm
            .forward(&ff, &phi.narrow(1, l, h)?, &mut d)?;
        let raw = self.output_layer.forward(&o)?;
        Ok(TftOutput {
            raw,
            last_cpu: x.narrow(1, l - 1, 1)?.narrow(2, 0, 1)?.reshape((b, 1))?,
            scale: window_scale_if(self.cfg.window_scale, x)?,
            past_weights: past_w,
            future_weights: fut_w,
            attention,
        })
    }

    /// The quantile head: raw (a, m, b) [B, H, 3] -> p10, p50, p90 [B, H, 3]
    /// (normalised), non-crossing.
    pub fn quantiles(raw: &Tensor, last_cpu: &Tensor, scale: &Tensor) -> Result<Tensor> {
        quantile_head(raw, last_cpu, scale)
    }

    /// x, future -> quantiles [B, H, 3] (normalised).
    pub fn forward(
        &self,
        x: &Tensor,
        future: &Tensor,
        dropout: Option<&mut dyn MaskSource>,
    ) -> Result<Tensor> {
        let o = self.run(x, future, dropout)?;
        Self::quantiles(&o.raw, &o.last_cpu, &o.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn close(got: &Tensor, want: &Tensor, what: &str) {
        let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g.len(), w.len(), "{what}: sizes");
        for (a, b) in g.iter().zip(&w) {
            assert!((a - b).abs() < 1e-4, "{what}: candle {a} vs torch {b}");
        }
    }

    /// Parity with an independent PyTorch implementation (stock `nn.LSTM`,
    /// `nn.LayerNorm`, `F.glu`), fixture exported by
    /// `notebooks/tft_reference.py` (d = 8, 2 heads, L = 6, H = 4): the
    /// quantiles, both variable-selection weights and the attention.
    #[test]
    fn matches_the_pytorch_reference() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tft");
        let cfg: TftConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let weights =
            candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let n_weights = weights.len();
        let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let net = Tft::new(&cfg, vb).unwrap();
        // Every PyTorch weight has exactly one candle twin, and no more.
        assert_eq!(varmap.all_vars().len(), n_weights);
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let w = weights
                .get(name)
                .unwrap_or_else(|| panic!("{name} not in the fixture"));
            var.set(w).unwrap();
        }
        let o = net.run(&io["input"], &io["future"], None).unwrap();
        close(
            &Tft::quantiles(&o.raw, &o.last_cpu, &o.scale).unwrap(),
            &io["output"],
            "quantiles",
        );
        close(&o.past_weights, &io["past_weights"], "past weights");
        close(&o.future_weights, &io["future_weights"], "future weights");
        close(&o.attention, &io["attention"], "attention");
    }

    #[test]
    fn the_mask_is_causal() {
        let mut cfg = TftConfig::standard(5);
        cfg.hidden = 8;
        cfg.hidden_continuous = 2;
        cfg.heads = 2;
        cfg.horizon = 3;
        let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
        let net = Tft::new(&cfg, vb).unwrap();
        let m = net.mask(&Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        for (j, row) in m.iter().enumerate() {
            for (t, v) in row.iter().enumerate() {
                assert_eq!(*v == 0.0, t <= cfg.lookback + j, "step {j} position {t}");
            }
        }
    }
}
