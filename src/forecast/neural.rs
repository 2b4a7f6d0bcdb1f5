//! A trained network with everything it needs to serve: its architecture,
//! the normalisation statistics of its training split, and the weights.
//!
//! A model folder (`models/bilstm/`, `models/lstm/`, `models/tft/`) holds
//! `config.json` ([`ModelFile`]) and `model.safetensors`; `README.md` is its
//! model card. Two families: the recurrent networks of
//! `bilstm_attention.rs` (served by the SIMD path of `fast.rs`) and the
//! TFT of `tft.rs` (served by candle). Both split into an "encoder" whose
//! output the embedding cache keeps and a cheap head: for the recurrent
//! networks the encoder output is z = [context | last step]; for the TFT
//! it is the raw (a, m, b) of every step and the head only maps them to
//! quantiles.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::bilstm_attention::{BiLstmAttention, Config};
use super::fast::FastNet;
use super::tft::{Tft, TftConfig};
use super::{ForecastError, QuantileForecast};
use crate::domain::{N_FEATURES, TARGET};
use crate::features::{ModelInput, NormStats, encode, future_calendar};
use crate::store::{MetricWindow, WindowRow};

/// From this many windows on, a batch is split across all cores (below,
/// thread start-up costs more than it saves).
const PARALLEL_BATCH: usize = 64;

/// The network of a model folder: its `architecture` object, told apart by
/// its fields (a TFT has `heads`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Architecture {
    Tft(TftConfig),
    Recurrent(Config),
}

impl Architecture {
    pub fn lookback(&self) -> usize {
        match self {
            Self::Tft(c) => c.lookback,
            Self::Recurrent(c) => c.lookback,
        }
    }

    pub fn horizon(&self) -> usize {
        match self {
            Self::Tft(c) => c.horizon,
            Self::Recurrent(c) => c.horizon,
        }
    }

    /// Width of what the embedding cache keeps (besides last CPU and scale).
    pub fn embedding_dim(&self) -> usize {
        match self {
            Self::Tft(c) => 3 * c.horizon,
            Self::Recurrent(c) => c.embedding_dim(),
        }
    }
}

/// `config.json` of a model folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    /// `bilstm`, `lstm` or `tft`.
    pub model: String,
    /// Changes whenever the weights change (hash of the safetensors file).
    pub version: String,
    pub architecture: Architecture,
    pub norm: NormStats,
    /// How it was trained (free-form, for the card).
    #[serde(default)]
    pub training: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The encoder output of one window: all the head needs (what the
/// embedding cache keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Normalised CPU of the last input step.
    pub last_cpu: f32,
    /// The head's unit for this window (`Config::window_scale`).
    pub scale: f32,
    /// The input's target scaling (`ModelInput::shift`, `unit`): what turns
    /// the head's normalised quantiles back into CPU for window inputs.
    pub shift: f32,
    pub unit: f32,
    /// z = [context | last step].
    pub embedding: Vec<f32>,
}

/// Attention weights of one forecast, oldest step first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// `[L][23]`: the feature-wise softmax at each step (rows sum to 1); for
    /// the TFT its past variable-selection weights.
    pub feature_weights: Vec<Vec<f32>>,
    /// `[L]`: the temporal softmax over steps (sums to 1); for the TFT the
    /// attention of the forecast steps on the look-back, averaged over
    /// steps and heads and renormalised over the L past positions.
    pub step_weights: Vec<f32>,
    /// TFT only, `[H][3]`: variable-selection weights of the known future
    /// inputs (the calendar) at each forecast step.
    pub future_weights: Option<Vec<Vec<f32>>>,
    /// TFT only, [H][L + H]: each forecast step's attention over the
    /// look-back and the forecast steps up to itself (heads averaged).
    pub attention: Option<Vec<Vec<f32>>>,
}

/// The network itself, by family.
#[derive(Debug)]
pub enum Net {
    /// BiLSTM / LSTM with attention: the candle network (training,
    /// attention weights) and the same network for fast inference.
    Recurrent {
        net: Box<BiLstmAttention>,
        fast: Box<FastNet>,
    },
    /// Temporal Fusion Transformer (candle only).
    Tft(Box<Tft>),
}

/// A loaded network, ready to forecast. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct NeuralModel {
    pub file: ModelFile,
    pub net: Net,
}

/// TFT batches run through candle in chunks of this many windows.
const TFT_CHUNK: usize = 1_000;

/// Both cores from [`PARALLEL_BATCH`] windows up, one below.
fn threads_for(n: usize) -> usize {
    if n >= PARALLEL_BATCH {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}

/// FNV-1a of the bytes, as hex: a stable version id for a weights file.
pub fn content_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl NeuralModel {
    /// Load `dir/config.json` and `dir/model.safetensors`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| ModelError::Io {
            path: cfg_path.display().to_string(),
            source,
        })?;
        let file: ModelFile = serde_json::from_str(&text).map_err(|e| ModelError::Invalid {
            path: cfg_path.display().to_string(),
            message: e.to_string(),
        })?;
        file.norm
            .validate()
            .map_err(|message| ModelError::Invalid {
                path: cfg_path.display().to_string(),
                message,
            })?;
        let w_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&w_path).map_err(|source| ModelError::Io {
            path: w_path.display().to_string(),
            source,
        })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        let net = match &file.architecture {
            Architecture::Recurrent(cfg) => {
                let fast = FastNet::from_tensors(cfg, &tensors)?;
                let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
                Net::Recurrent {
                    net: Box::new(BiLstmAttention::new(cfg, vb)?),
                    fast: Box::new(fast),
                }
            }
            Architecture::Tft(cfg) => {
                let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
                Net::Tft(Box::new(Tft::new(cfg, vb)?))
            }
        };
        Ok(Self { file, net })
    }

    /// The recurrent network and its fast twin, when it is one.
    pub fn recurrent(&self) -> Option<(&BiLstmAttention, &FastNet)> {
        match &self.net {
            Net::Recurrent { net, fast } => Some((net, fast)),
            Net::Tft(_) => None,
        }
    }

    pub fn name(&self) -> &str {
        &self.file.model
    }

    pub fn horizon(&self) -> usize {
        self.file.architecture.horizon()
    }

    pub fn lookback(&self) -> usize {
        self.file.architecture.lookback()
    }

    /// The normalised input of the last L rows (and, for the TFT, the
    /// calendar of the H steps after them: the grid step is read off the
    /// last two rows, 300 s when there is one).
    pub fn input(&self, rows: &[WindowRow]) -> ModelInput {
        let l = self.lookback();
        let start = rows.len().saturating_sub(l);
        let w = MetricWindow {
            step: 0, // the encoding reads timestamps from the rows
            rows: rows[start..].to_vec(),
        };
        let mut input = encode(&w, &self.file.norm, l);
        if let (Net::Tft(_), Some(last)) = (&self.net, rows.last()) {
            let step = match rows.len() {
                n if n >= 2 => (last.timestamp - rows[n - 2].timestamp).max(1),
                _ => 300,
            };
            input.future = future_calendar(last.timestamp, step, self.horizon(), &self.file.norm);
        }
        input
    }

    /// Check what the network reads: L x 23 values (and H x 3 known future
    /// values for the TFT).
    fn check_input(&self, input: &ModelInput) -> Result<(), ModelError> {
        let expected = self.lookback() * N_FEATURES;
        let future = match &self.net {
            Net::Tft(t) => self.horizon() * t.cfg.known_dim,
            Net::Recurrent { .. } => 0,
        };
        if input.values.len() != expected || (future > 0 && input.future.len() != future) {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "input has {} values and {} future values, the model takes {expected} and {future}",
                input.values.len(),
                input.future.len()
            ))));
        }
        Ok(())
    }

    /// TFT: the raw head outputs of many inputs, chunk by chunk.
    fn tft_embed(&self, tft: &Tft, inputs: &[&ModelInput]) -> Result<Vec<Embedding>, ModelError> {
        let (l, h, k) = (self.lookback(), self.horizon(), tft.cfg.known_dim);
        let mut out = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(TFT_CHUNK) {
            let b = chunk.len();
            let mut xs = Vec::with_capacity(b * l * N_FEATURES);
            let mut fs = Vec::with_capacity(b * h * k);
            for x in chunk {
                xs.extend_from_slice(&x.values);
                fs.extend_from_slice(&x.future);
            }
            let x = Tensor::from_vec(xs, (b, l, N_FEATURES), &Device::Cpu)?;
            let f = Tensor::from_vec(fs, (b, h, k), &Device::Cpu)?;
            let o = tft.run(&x, &f, None)?;
            let raw = o.raw.reshape((b, 3 * h))?.to_vec2::<f32>()?;
            let last = o.last_cpu.flatten_all()?.to_vec1::<f32>()?;
            let scale = o.scale.flatten_all()?.to_vec1::<f32>()?;
            for (((embedding, last_cpu), scale), x) in
                raw.into_iter().zip(last).zip(scale).zip(chunk)
            {
                out.push(Embedding {
                    last_cpu,
                    scale,
                    shift: x.shift,
                    unit: x.unit,
                    embedding,
                });
            }
        }
        Ok(out)
    }

    /// Forecast from many inputs at once: one forward pass.
    pub fn forecast_batch(
        &self,
        inputs: &[ModelInput],
    ) -> Result<Vec<QuantileForecast>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        match &self.net {
            Net::Recurrent { fast, .. } => {
                let l = self.lookback();
                let mut buf = Vec::with_capacity(inputs.len() * l * N_FEATURES);
                for x in inputs {
                    self.check_input(x)?;
                    buf.extend_from_slice(&x.values);
                }
                let q = fast.forward(&buf, threads_for(inputs.len()));
                Ok(q.chunks_exact(3 * self.horizon())
                    .zip(inputs)
                    .map(|(steps, x)| self.denormalise_flat(steps, x.shift, x.unit))
                    .collect())
            }
            Net::Tft(_) => {
                let refs: Vec<&ModelInput> = inputs.iter().collect();
                Ok(self
                    .encode_batch(&refs)?
                    .iter()
                    .map(|e| {
                        let mut q = vec![0.0; 3 * self.horizon()];
                        super::fast::quantiles(&e.embedding, e.last_cpu, e.scale, &mut q);
                        self.denormalise_flat(&q, e.shift, e.unit)
                    })
                    .collect())
            }
        }
    }

    /// The attention of the network on the last L rows: which features and
    /// which steps the forecast drew on.
    pub fn explain(&self, rows: &[WindowRow]) -> Result<Explanation, ModelError> {
        let l = self.lookback();
        let input = self.input(rows);
        self.check_input(&input)?;
        let x = Tensor::from_vec(input.values, (1, l, N_FEATURES), &Device::Cpu)?;
        match &self.net {
            Net::Recurrent { net, .. } => {
                let e = net.encode(&x, None)?;
                Ok(Explanation {
                    feature_weights: e.feature_weights.squeeze(0)?.to_vec2::<f32>()?,
                    step_weights: e.step_weights.squeeze(0)?.to_vec1::<f32>()?,
                    future_weights: None,
                    attention: None,
                })
            }
            Net::Tft(t) => {
                let (h, k) = (self.horizon(), t.cfg.known_dim);
                let f = Tensor::from_vec(input.future, (1, h, k), &Device::Cpu)?;
                let o = t.run(&x, &f, None)?;
                let attention = o.attention.squeeze(0)?.to_vec2::<f32>()?;
                let mut past = vec![0.0f32; l];
                for row in &attention {
                    for (p, a) in past.iter_mut().zip(row) {
                        *p += a;
                    }
                }
                let total: f32 = past.iter().sum();
                if total > 0.0 {
                    past.iter_mut().for_each(|p| *p /= total);
                }
                Ok(Explanation {
                    feature_weights: o.past_weights.squeeze(0)?.to_vec2::<f32>()?,
                    step_weights: past,
                    future_weights: Some(o.future_weights.squeeze(0)?.to_vec2::<f32>()?),
                    attention: Some(attention),
                })
            }
        }
    }

    /// Refuse what the network cannot forecast: a horizon past H, or a
    /// look-back without one observed CPU value.
    pub fn check(&self, rows: &[WindowRow], horizon: usize) -> Result<(), ForecastError> {
        if horizon == 0 || horizon > self.horizon() {
            return Err(ForecastError::BadHorizon {
                got: horizon,
                max: self.horizon(),
            });
        }
        let recent = &rows[rows.len().saturating_sub(self.lookback())..];
        if !recent.iter().any(|r| r.values[TARGET].is_some()) {
            return Err(ForecastError::NotEnoughHistory {
                model: "neural",
                have: 0,
                need: 1,
            });
        }
        Ok(())
    }

    /// Run the encoder on one input.
    pub fn encode_input(&self, input: &ModelInput) -> Result<Embedding, ModelError> {
        self.check_input(input)?;
        match &self.net {
            Net::Recurrent { fast, .. } => {
                let (embedding, last_cpu, scale) = fast.embed(&input.values);
                Ok(Embedding {
                    last_cpu,
                    scale,
                    shift: input.shift,
                    unit: input.unit,
                    embedding,
                })
            }
            Net::Tft(t) => self
                .tft_embed(t, &[input])?
                .pop()
                .ok_or_else(|| ModelError::Candle(candle_core::Error::Msg("no output".into()))),
        }
    }

    /// Run the encoder on many inputs at once (both cores from
    /// `PARALLEL_BATCH` inputs up): what a decision cycle over many
    /// groups does with its cache misses.
    pub fn encode_batch(&self, inputs: &[&ModelInput]) -> Result<Vec<Embedding>, ModelError> {
        for x in inputs {
            self.check_input(x)?;
        }
        match &self.net {
            Net::Recurrent { fast, .. } => {
                let mut buf = Vec::with_capacity(inputs.len() * self.lookback() * N_FEATURES);
                for x in inputs {
                    buf.extend_from_slice(&x.values);
                }
                let zd = self.file.architecture.embedding_dim();
                Ok(fast
                    .embed_many(&buf, threads_for(inputs.len()))
                    .chunks_exact(zd + 2)
                    .zip(inputs)
                    .map(|(c, x)| Embedding {
                        embedding: c[..zd].to_vec(),
                        last_cpu: c[zd],
                        scale: c[zd + 1],
                        shift: x.shift,
                        unit: x.unit,
                    })
                    .collect())
            }
            Net::Tft(t) => self.tft_embed(t, inputs),
        }
    }

    /// Run only the head on an embedding: the forecast of `horizon` steps.
    pub fn forecast_from(
        &self,
        e: &Embedding,
        horizon: usize,
    ) -> Result<QuantileForecast, ForecastError> {
        if e.embedding.len() != self.file.architecture.embedding_dim() {
            return Err(ForecastError::Model(format!(
                "embedding has {} values, the model makes {}",
                e.embedding.len(),
                self.file.architecture.embedding_dim()
            )));
        }
        let mut q = vec![0.0; 3 * self.horizon()];
        match &self.net {
            Net::Recurrent { fast, .. } => fast.head(&e.embedding, e.last_cpu, e.scale, &mut q),
            Net::Tft(_) => super::fast::quantiles(&e.embedding, e.last_cpu, e.scale, &mut q),
        }
        let mut f = self.denormalise_flat(&q, e.shift, e.unit);
        f.truncate(horizon);
        Ok(f)
    }

    /// Normalised quantiles, flat [H * 3] -> CPU %, clamped at 0
    /// (monotone, so the order p10 <= p50 <= p90 is kept): by the window's
    /// (shift, unit) for window inputs, else by the global statistics.
    fn denormalise_flat(&self, q: &[f32], shift: f32, unit: f32) -> QuantileForecast {
        let norm = &self.file.norm;
        let de = |k: usize| -> Vec<f32> {
            q.chunks_exact(3)
                .map(|s| {
                    if norm.per_window {
                        (shift + unit * s[k]).max(0.0)
                    } else {
                        norm.denormalise_target(s[k])
                    }
                })
                .collect()
        };
        QuantileForecast {
            p10: de(0),
            p50: de(1),
            p90: de(2),
        }
    }

    /// Forecast the `horizon` (<= H) steps after `rows`: encoder, then head.
    pub fn forecast(
        &self,
        rows: &[WindowRow],
        horizon: usize,
    ) -> Result<QuantileForecast, ForecastError> {
        self.check(rows, horizon)?;
        let e = self
            .encode_input(&self.input(rows))
            .map_err(|e| ForecastError::Model(e.to_string()))?;
        self.forecast_from(&e, horizon)
    }
}
