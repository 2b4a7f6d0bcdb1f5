//! A trained network with everything it needs to serve: its architecture,
//! the normalisation statistics of its training split, and the weights.
//!
//! A model folder (`models/bilstm/`, `models/lstm/`) holds `config.json`
//! ([`ModelFile`]) and `model.safetensors`; `README.md` is its model card.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::bilstm_attention::{BiLstmAttention, Config};
use super::fast::FastNet;
use super::{ForecastError, QuantileForecast};
use crate::domain::{N_FEATURES, TARGET};
use crate::features::{ModelInput, NormStats, encode};
use crate::store::{MetricWindow, WindowRow};

/// From this many windows on, a batch is split across all cores (below,
/// thread start-up costs more than it saves).
const PARALLEL_BATCH: usize = 64;

/// `config.json` of a model folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    /// `bilstm` or `lstm`.
    pub model: String,
    /// Changes whenever the weights change (hash of the safetensors file).
    pub version: String,
    pub architecture: Config,
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
    /// z = [context | last step].
    pub embedding: Vec<f32>,
}

/// Attention weights of one forecast, oldest step first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// [L][23]: the feature-wise softmax at each step (rows sum to 1).
    pub feature_weights: Vec<Vec<f32>>,
    /// [L]: the temporal softmax over steps (sums to 1).
    pub step_weights: Vec<f32>,
}

/// A loaded network, ready to forecast. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct NeuralModel {
    pub file: ModelFile,
    /// The candle network (training, attention weights).
    pub net: BiLstmAttention,
    /// The same network for fast inference (forecasts, embeddings).
    pub fast: FastNet,
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
        let fast = FastNet::from_tensors(&file.architecture, &tensors)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let net = BiLstmAttention::new(&file.architecture, vb)?;
        Ok(Self { file, net, fast })
    }

    pub fn name(&self) -> &str {
        &self.file.model
    }

    pub fn horizon(&self) -> usize {
        self.file.architecture.horizon
    }

    pub fn lookback(&self) -> usize {
        self.file.architecture.lookback
    }

    /// The normalised input of the last L rows.
    pub fn input(&self, rows: &[WindowRow]) -> ModelInput {
        let l = self.lookback();
        let start = rows.len().saturating_sub(l);
        let w = MetricWindow {
            step: 0, // the encoding reads timestamps from the rows
            rows: rows[start..].to_vec(),
        };
        encode(&w, &self.file.norm, l)
    }

    /// Forecast from many inputs at once: one forward pass.
    pub fn forecast_batch(
        &self,
        inputs: &[ModelInput],
    ) -> Result<Vec<QuantileForecast>, ModelError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let l = self.lookback();
        let mut buf = Vec::with_capacity(inputs.len() * l * N_FEATURES);
        for x in inputs {
            buf.extend_from_slice(&x.values);
        }
        let threads = if inputs.len() >= PARALLEL_BATCH {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        let q = self.fast.forward(&buf, threads);
        Ok(q.chunks_exact(3 * self.horizon())
            .map(|steps| self.denormalise_flat(steps))
            .collect())
    }

    /// The attention of the network on the last L rows: which features and
    /// which steps the forecast drew on.
    pub fn explain(&self, rows: &[WindowRow]) -> Result<Explanation, ModelError> {
        let l = self.lookback();
        let x = self.input(rows);
        let x = Tensor::from_vec(x.values, (1, l, N_FEATURES), &Device::Cpu)?;
        let e = self.net.encode(&x, None)?;
        Ok(Explanation {
            feature_weights: e.feature_weights.squeeze(0)?.to_vec2::<f32>()?,
            step_weights: e.step_weights.squeeze(0)?.to_vec1::<f32>()?,
        })
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
        let expected = self.lookback() * N_FEATURES;
        if input.values.len() != expected {
            return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                "input has {} values, the model takes {expected}",
                input.values.len()
            ))));
        }
        let (embedding, last_cpu, scale) = self.fast.embed(&input.values);
        Ok(Embedding {
            last_cpu,
            scale,
            embedding,
        })
    }

    /// Run the encoder on many inputs at once (both cores from
    /// [`PARALLEL_BATCH`] inputs up): what a decision cycle over many
    /// groups does with its cache misses.
    pub fn encode_batch(&self, inputs: &[&ModelInput]) -> Result<Vec<Embedding>, ModelError> {
        let expected = self.lookback() * N_FEATURES;
        let mut buf = Vec::with_capacity(inputs.len() * expected);
        for x in inputs {
            if x.values.len() != expected {
                return Err(ModelError::Candle(candle_core::Error::Msg(format!(
                    "input has {} values, the model takes {expected}",
                    x.values.len()
                ))));
            }
            buf.extend_from_slice(&x.values);
        }
        let threads = if inputs.len() >= PARALLEL_BATCH {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        let zd = self.file.architecture.embedding_dim();
        Ok(self
            .fast
            .embed_many(&buf, threads)
            .chunks_exact(zd + 2)
            .map(|c| Embedding {
                embedding: c[..zd].to_vec(),
                last_cpu: c[zd],
                scale: c[zd + 1],
            })
            .collect())
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
        self.fast.head(&e.embedding, e.last_cpu, e.scale, &mut q);
        let mut f = self.denormalise_flat(&q);
        f.truncate(horizon);
        Ok(f)
    }

    /// Normalised quantiles, flat [H * 3] -> CPU %, clamped at 0
    /// (monotone, so the order p10 <= p50 <= p90 is kept).
    fn denormalise_flat(&self, q: &[f32]) -> QuantileForecast {
        let norm = &self.file.norm;
        let de = |k: usize| -> Vec<f32> {
            q.chunks_exact(3)
                .map(|s| norm.denormalise_target(s[k]))
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
